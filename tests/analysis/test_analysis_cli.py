"""``pyg-sparse-stgcn analyze`` end to end on tiny demo runs: files, the sparsity report's counts, a lottery
run's levels, ``--compare``, a PYSKL checkpoint, bad input, and the HTML page rendered in headless Chromium."""
from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from tiny_config import TINY_DEMO

from pyg_sparse_stgcn.cli import main


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("analysis")
    (d / "tiny.toml").write_text(TINY_DEMO)
    out = {}
    for name, args in (("generate", ["--mode", "generate", "--edge-sparsity", "0.5"]),
                       ("lottery", ["--mode", "lottery", "--set", "lottery.edge_fraction=0.3"])):
        res = CliRunner().invoke(main, ["--config", str(d / "tiny.toml"), "--root", str(d / "demo"),
                                        "--out", str(d / "runs"), "--data", "demo", *args], catch_exceptions=False)
        assert res.exit_code == 0, res.output
        line = [ln for ln in res.output.splitlines() if ln.startswith("run directory: ")][-1]
        out[name] = Path(line.split(": ", 1)[1])
    out["root"] = d
    return out


def analyze(*args: str, ok: bool = True):
    res = CliRunner().invoke(main, ["analyze", *args], catch_exceptions=False)
    if ok:
        assert res.exit_code == 0, res.output
    return res


def test_analyze_run_end_to_end(runs):
    run = runs["generate"]
    res = analyze(str(run))
    a = run / "analysis"
    assert f"report: {a / 'index.html'}" in res.output
    assert re.search(r"edge entries [\d,]+/[\d,]+ kept \(50\.0% removed\)", res.output)
    assert "rediscovers the skeleton?" in res.output  # the generator's graph is the dense random one
    figs = sorted(p.name for p in (a / "figures").glob("*.png"))
    assert {"skeleton_layers.png", "skeleton_subsets.png", "sparsity_bars.png", "rediscovery.png",
            "heatmap_layer0.png"} <= set(figs)
    assert not list(a.rglob("*.tmp"))
    # the table agrees with the run's own sparsity report (real entries and connections)
    rep = json.loads((run / "sparsity_report.json").read_text())
    rows = list(csv.DictReader((a / "survival.csv").open()))
    assert len(rows) == rep["kinds"]["edge"]["total"]
    assert sum(r["kept"] == "True" for r in rows) == rep["kinds"]["edge"]["kept"]
    s = json.loads((a / "summary.json").read_text())["summary"]["overall"]
    assert (s["connections"]["total"], s["connections"]["kept"]) == (rep["connections"]["total"],
                                                                     rep["connections"]["kept"])
    assert (s["connections"]["bones"]["kept"], s["connections"]["links"]["kept"]) == (
        rep["connections"]["bones"]["kept"], rep["connections"]["links"]["kept"])


def test_lottery_levels(runs):
    run = runs["lottery"]
    res = CliRunner().invoke(main, ["--mode", "analyze", "--resume", str(run)], catch_exceptions=False)  # = analyze RUN
    assert res.exit_code == 0, res.output
    assert "level 0: edges 0.0% removed" in res.output and re.search(r"level 1: edges 30\.\d% removed", res.output)
    a = run / "analysis"
    levels = json.loads((a / "summary.json").read_text())["levels"]["levels"]
    assert list(levels) == ["level 0", "level 1"]
    assert levels["level 0"]["kept_fraction"]["bones"] == 1.0
    assert (a / "figures" / "survival_curves.png").is_file() and (a / "levels.csv").is_file()


def test_compare_two_runs(runs):
    g, lt = runs["generate"], runs["lottery"]
    res = analyze(str(g), str(lt), "--compare")
    assert f"Jaccard of kept connections, {g.name} vs {lt.name}" in res.output
    c = g / "analysis" / "compare"
    assert (c / "index.html").is_file() and (c / "levels.csv").is_file()
    assert len(json.loads((c / "summary.json").read_text())["labels"]) == 2
    res = analyze(str(g), "--compare", ok=False)
    assert res.exit_code == 2 and "--compare needs at least two run directories" in res.output
    res = CliRunner().invoke(main, ["--mode", "train", "--compare"], catch_exceptions=False)
    assert res.exit_code == 2 and "--compare only applies to analyze" in res.output


def test_pyskl_checkpoint_is_analysed_dense(runs, tmp_path):
    import sys

    compat = str(Path(__file__).resolve().parents[1] / "compat")  # on sys.path only when tests/compat is collected
    if compat not in sys.path:
        sys.path.insert(0, compat)
    from test_compat_pyskl import make_pyskl_state

    from pyg_sparse_stgcn.graph import SkeletonGraph

    sd = make_pyskl_state(SkeletonGraph("openpose", "stgcn_spatial").A, "stgcn", num_classes=8)
    p = tmp_path / "pyskl_stgcn.pth"
    torch.save({"state_dict": sd}, p)
    res = analyze(str(p), "--data", "demo", "--set", "model.base_channels=8", "--set", "model.num_stages=4",
                  "--set", "model.backbone={inflate_stages = [3], down_stages = [3]}")
    assert "(dense: no mask)" in res.output and "0.0% removed" in res.output
    rows = list(csv.DictReader((tmp_path / "pyskl_stgcn-analysis" / "survival.csv").open()))
    assert rows and {r["kept"] for r in rows} == {"True"} and len({r["base_weight"] for r in rows}) > 10


def test_bad_input(runs, tmp_path):
    empty = tmp_path / "empty-run"
    (empty / "masks").mkdir(parents=True)
    shutil.copy(runs["generate"] / "config.toml", empty / "config.toml")
    res = analyze(str(empty), ok=False)
    assert res.exit_code != 0 and f"{empty}: no model to analyse: checkpoints/model.pt is missing" in res.output
    assert not (empty / "analysis").exists()
    junk = tmp_path / "other.pth"
    torch.save({"state_dict": {"encoder.layer.weight": torch.zeros(2, 2)}}, junk)
    res = analyze(str(junk), "--data", "demo", ok=False)
    assert res.exit_code != 0 and f"{junk}: not a checkpoint of a known backbone" in res.output
    assert not (tmp_path / "other-analysis").exists()


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
_CHECK = ("<script>window.addEventListener('load',function(){var d=document.createElement('pre');d.id='imgcheck';"
          "d.textContent=Array.from(document.images).map(function(i){return (i.complete?1:0)+':'+i.naturalWidth+'x'"
          "+i.naturalHeight}).join(' ');document.body.appendChild(d);});</script>")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium; "
                                             ".ci/run installs it)")
def test_html_renders_in_headless_chromium(runs, tmp_path):
    run = runs["generate"]
    page = run / "analysis" / "index.html"
    if not page.is_file():
        analyze(str(run))
    html = page.read_text()
    n = html.count("<img")
    probe = tmp_path / "probe.html"
    probe.write_text(html.replace("</body>", _CHECK + "</body>"))
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    m = re.search(r'<pre id="imgcheck">([^<]*)</pre>', out.stdout)
    assert m, f"chromium rendered no page: rc={out.returncode} {out.stderr[-2000:]}"
    sizes = m.group(1).split()
    assert len(sizes) == n >= 5
    for s in sizes:
        done, wh = s.split(":")
        w, h = map(int, wh.split("x"))
        assert done == "1" and w >= 300 and h >= 200, s  # every figure decoded, at a sane pixel size
