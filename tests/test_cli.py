"""The CLI end to end on a tiny synthetic demo configuration (every mode), resume, and bad input."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from tiny_config import TINY_DEMO, run_tiny, to_pyskl_state

from pyg_sparse_stgcn.cli import main
from pyg_sparse_stgcn.engine.config import tomllib

TINY = TINY_DEMO


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    (d / "tiny.toml").write_text(TINY)
    return d


def run(env: Path, *args: str, ok: bool = True):
    return run_tiny(env, *args, ok=ok)[1]


def run_dir(res) -> Path:
    line = [ln for ln in res.output.splitlines() if ln.startswith("run directory: ")][-1]
    return Path(line.split(": ", 1)[1])


def check_run(d: Path, mode: str) -> dict:
    for f in ("config.toml", "metrics.jsonl", "summary.json", "sparsity_report.json", "scores/test.pt"):
        assert (d / f).is_file(), f
    assert (d / "checkpoints" / "model.pt").is_file() == (mode != "evaluate")
    assert not list(d.rglob("*.tmp"))
    cfg = tomllib.loads((d / "config.toml").read_text())
    assert cfg["run"]["mode"] == mode and cfg["data"]["name"] == "demo"
    s = json.loads((d / "summary.json").read_text())
    for k in ("mode", "data", "top1", "top5", "mean_class_accuracy", "weight_sparsity", "edge_sparsity",
              "edge_sparsity_connections", "params_stored", "params_kept"):
        assert k in s, k
    for k in ("top1", "top5", "mean_class_accuracy", "weight_sparsity", "edge_sparsity"):
        assert 0.0 <= s[k] <= 1.0, k
    assert s["mode"] == mode and s["top1"] <= s["top5"]
    assert 0 < s["params_kept"] <= s["params_stored"]
    if mode != "evaluate":
        ck = torch.load(d / "checkpoints" / "model.pt", weights_only=True)
        assert ck["format"] == "pyg-sparse-stgcn" and ck["kind"] in ("classifier", "generator", "ensemble")
    sc = torch.load(d / "scores" / "test.pt", weights_only=True)
    assert sc["scores"].shape == (len(sc["ids"]), 8)
    torch.testing.assert_close(sc["scores"].sum(1), torch.ones(len(sc["ids"])))  # softmax probabilities
    return s


@pytest.fixture(scope="module")
def train_run(env):
    res = run(env, "--data", "demo", "--mode", "train")
    assert "top-1" in res.output and "run directory" in res.output
    return run_dir(res)


def test_train(train_run):
    s = check_run(train_run, "train")
    assert s["weight_sparsity"] == 0.0 and s["params_kept"] == s["params_stored"]
    recs = [json.loads(ln) for ln in (train_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in recs if r["stage"] == "train" and "epoch" in r] == [1, 2]


def test_generate_reports_dense_and_95_percent_sparse(env):
    res = run(env, "--data", "demo", "--mode", "generate")
    d = run_dir(res)
    s = check_run(d, "generate")
    assert s["weight_sparsity"] == pytest.approx(0.95, abs=1e-3)
    assert s["dense"]["weight_sparsity"] == 0.0 and s["dense"]["top1"] is not None
    assert s["params_kept"] < s["dense"]["params_kept"]
    assert "dense baseline" in res.output and "sparse (generator)" in res.output
    assert (d / "masks" / "generate.pt").is_file()
    # a stage checkpoint (the dense baseline, random learnable graph) evaluates to its recorded accuracy
    ev = json.loads((run_dir(run(env, "--data", "demo", "--mode", "evaluate", "--checkpoint",
                                 str(d / "checkpoints" / "dense-final.pt"))) / "summary.json").read_text())
    assert ev["top1"] == pytest.approx(s["dense"]["top1"]) and ev["kind"] == "classifier"


def test_generate_with_edge_sparsity(env):
    s = check_run(run_dir(run(env, "--data", "demo", "--mode", "generate", "--sparsity", "0.8",
                              "--edge-sparsity", "0.5", "--set", "dense.baseline=false",
                              "--set", "generator.two_phase=0.5")), "generate")
    assert s["weight_sparsity"] == pytest.approx(0.8, abs=1e-3)
    assert s["edge_sparsity"] == pytest.approx(0.5, abs=1e-2)
    assert "dense" not in s


def test_ensemble(env):
    s = check_run(run_dir(run(env, "--data", "demo", "--mode", "ensemble", "--set", "dense.baseline=false")),
                  "ensemble")
    assert s["weight_sparsity"] == pytest.approx((0.5 + 0.9) / 2, abs=1e-2)
    assert s["ensemble"]["paper_kept_fraction"] == pytest.approx(0.6)


def test_lottery(env):
    d = run_dir(run(env, "--data", "demo", "--mode", "lottery"))
    s = check_run(d, "lottery")
    assert s["weight_sparsity"] == pytest.approx(0.2, abs=1e-3)
    assert (d / "lottery" / "level_1" / "mask.pt").is_file() and len(s["levels"]) == 2
    assert s["dense"]["weight_sparsity"] == 0.0
    before = torch.load(d / "checkpoints" / "model.pt", weights_only=True)["model"]
    res = CliRunner().invoke(main, ["--resume", str(d)], catch_exceptions=False)  # every level done: no work
    assert res.exit_code == 0, res.output
    after = torch.load(d / "checkpoints" / "model.pt", weights_only=True)["model"]
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert json.loads((d / "summary.json").read_text())["top1"] == s["top1"]


def test_prune_a_checkpoint_then_evaluate_it(env, train_run):
    d = run_dir(run(env, "--data", "demo", "--mode", "prune", "--checkpoint", str(train_run),
                    "--sparsity", "0.5"))
    s = check_run(d, "prune")
    assert s["weight_sparsity"] == pytest.approx(0.5, abs=1e-3)
    # the dense figures are the checkpoint's own, evaluated again
    assert s["dense"]["top1"] == pytest.approx(json.loads((train_run / "summary.json").read_text())["top1"])
    ev = check_run(run_dir(run(env, "--data", "demo", "--mode", "evaluate", "--checkpoint", str(d))),
                   "evaluate")
    assert ev["top1"] == pytest.approx(s["top1"]) and ev["weight_sparsity"] == pytest.approx(0.5, abs=1e-3)


def test_evaluate_reproduces_the_runs_accuracy_and_scores(env, train_run):
    d = run_dir(run(env, "--data", "demo", "--mode", "evaluate", "--checkpoint",
                    str(train_run / "checkpoints" / "model.pt")))
    a = torch.load(train_run / "scores" / "test.pt", weights_only=True)
    b = torch.load(d / "scores" / "test.pt", weights_only=True)
    assert a["ids"] == b["ids"]
    torch.testing.assert_close(a["scores"], b["scores"])


def test_evaluate_fuses_saved_scores(env, train_run):
    res = run(env, "--mode", "evaluate", "--fuse", str(train_run), "--fuse", str(train_run))
    s = json.loads((run_dir(res) / "summary.json").read_text())
    assert s["top1"] == pytest.approx(json.loads((train_run / "summary.json").read_text())["top1"])
    assert len(s["streams"]) == 2


def test_analyze_positional(env, train_run):
    res = CliRunner().invoke(main, ["analyze", str(train_run)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "edge entries" in res.output and f"report: {train_run / 'analysis' / 'index.html'}" in res.output


def test_interrupted_run_resumes_to_the_same_weights(env):
    full = run_dir(run(env, "--data", "demo", "--mode", "generate"))
    res = run(env, "--data", "demo", "--mode", "generate", "--set", "train.max_epochs_this_run=3")
    assert "Continue with" in res.output  # stopped after dense (2 epochs) + 1 generator epoch
    cut = Path(res.output.split("--resume ")[-1].strip())
    assert (cut / "checkpoints" / "generate-last.pt").is_file() and not (cut / "summary.json").exists()
    res2 = CliRunner().invoke(main, ["--resume", str(cut)], catch_exceptions=False)
    assert res2.exit_code == 0, res2.output
    a = torch.load(full / "checkpoints" / "model.pt", weights_only=True)["model"]
    b = torch.load(cut / "checkpoints" / "model.pt", weights_only=True)["model"]
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    sa, sb = (json.loads((p / "summary.json").read_text()) for p in (full, cut))
    assert sa["top1"] == sb["top1"] and sa["dense"] == sb["dense"]


@pytest.mark.parametrize("args,match", [
    (["--data", "mnist"], r"--data: unknown dataset 'mnist'; valid choices: .*ntu60-xsub.*demo"),
    (["--data", "demo", "--mode", "generate", "--sparsity", "1.5"],
     r"--sparsity: 1.5 is not a fraction in \[0, 1\)"),
    (["--data", "nw-ucla", "--root", "/nonexistent/nw"], r"--root: directory /nonexistent/nw does not exist"),
    (["--data", "demo", "--mode", "fly"], r"Invalid value for '--mode'.*'train'.*'analyze'"),
    (["--data", "demo", "--model", "resnet"], r"Invalid value for '--model'.*'stgcn'.*'stgcn\+\+'"),
    (["--data", "demo", "--feats", "xyz"], r"Invalid value for '--feats'.*'j'.*'bm'"),
    (["--data", "demo", "--mode", "train", "--sparsity", "0.5"], r"--sparsity applies to --mode prune"),
    (["--data", "demo", "--resume", "x", "--checkpoint", "y"], r"--checkpoint conflicts with --resume"),
    (["--data", "demo", "--mode", "evaluate"], r"--mode evaluate needs --checkpoint"),
    (["--data", "demo", "--mode", "ensemble", "--sparsity", "0.9"],
     r"--sparsity conflicts with --mode ensemble"),
    (["--data", "demo", "--set", "train.lrr=1"], r"unknown key 'train.lrr'; valid keys of \[train\]: .*lr,"),
    (["--data", "demo", "--set", "train.epochs=0"], r"--set train.epochs: must be >= 1"),
    (["generate", "--data", "demo", "--mode", "train"],
     r"positional mode 'generate' conflicts with --mode train"),
    (["--data", "demo", "--mode", "generate", "--checkpoint", "x"], r"--checkpoint applies to --mode prune"),
    (["--data", "demo", "--config", "/nonexistent.toml"], r"--config: file /nonexistent.toml does not exist"),
])
def test_bad_input_fails_before_any_work(tmp_path, args, match):
    out = tmp_path / "runs"
    res = CliRunner().invoke(main, [*args, "--out", str(out)])
    assert res.exit_code != 0
    assert re.search(match, res.output, re.S), res.output
    assert not out.exists()  # nothing was created


def test_missing_dataset_lists_expected_files(tmp_path):
    root = tmp_path / "empty"
    root.mkdir()
    res = CliRunner().invoke(main, ["--data", "nw-ucla", "--root", str(root), "--out",
                                    str(tmp_path / "runs")])
    assert res.exit_code != 0
    assert "not found under" in res.output and "all_sqe" in res.output and "Where it comes from" in res.output
    assert not (tmp_path / "runs").exists()


def test_resume_rejects_changed_settings(env, train_run):
    res = CliRunner().invoke(main, ["--resume", str(train_run), "--lr", "0.3"])
    assert res.exit_code != 0 and "--lr 0.3 conflicts with --resume" in res.output


def test_pyskl_checkpoint_evaluates_through_checkpoint(env, train_run, tmp_path):
    """Write our trained model in PYSKL's format (``backbone.*`` with (out, in, 1, 1) conv weights,
    ``cls_head.fc_cls.*``, mmcv's ``state_dict``/``meta`` wrapper) and evaluate it via --checkpoint."""
    pyskl = to_pyskl_state(torch.load(train_run / "checkpoints" / "model.pt", weights_only=True)["model"])
    path = tmp_path / "stgcn_pyskl.pth"
    torch.save({"meta": {"epoch": 2}, "state_dict": pyskl}, path)
    d = run_dir(run(env, "--data", "demo", "--mode", "evaluate", "--checkpoint", str(path)))
    s = check_run(d, "evaluate")
    assert s["source"] == "pyskl"
    a = torch.load(train_run / "scores" / "test.pt", weights_only=True)
    b = torch.load(d / "scores" / "test.pt", weights_only=True)
    torch.testing.assert_close(b["scores"], a["scores"], atol=1e-5, rtol=1e-4)


def _kinetics_json_root(root: Path) -> None:
    """A tiny ST-GCN Kinetics-skeleton release (random OpenPose-18 poses, 3 classes)."""
    g = torch.Generator().manual_seed(0)
    for split, n in (("train", 12), ("val", 6)):
        (root / f"kinetics_{split}").mkdir(parents=True)
        labels = {}
        for i in range(n):
            vid, k = f"{split}{i:03d}", i % 3
            frames = [{"frame_index": t + 1, "skeleton": [{
                "pose": [round(v, 3) for v in torch.rand(36, generator=g).tolist()],
                "score": [round(v, 3) for v in (0.5 + 0.5 * torch.rand(18, generator=g)).tolist()]}]}
                for t in range(20)]
            (root / f"kinetics_{split}" / f"{vid}.json").write_text(json.dumps(
                {"data": frames, "label": f"class{k}", "label_index": k}))
            labels[vid] = {"has_skeleton": True, "label": f"class{k}", "label_index": k}
        (root / f"kinetics_{split}_label.json").write_text(json.dumps(labels))


def _kinetics_pyskl_root(root: Path) -> None:
    """A tiny PYSKL ``k400_hrnet.pkl`` (random COCO-17 poses in pixels with scores, 3 classes)."""
    import pickle

    import numpy as np

    rng = np.random.default_rng(0)
    anns = [{"frame_dir": f"v{i:03d}", "label": i % 3, "total_frames": 20, "img_shape": (480, 640),
             "keypoint": (rng.random((1, 20, 17, 2)) * [640, 480]).astype(np.float32),
             "keypoint_score": rng.random((1, 20, 17)).astype(np.float32)} for i in range(18)]
    root.mkdir(parents=True)
    with open(root / "k400_hrnet.pkl", "wb") as f:
        pickle.dump({"split": {"train": [f"v{i:03d}" for i in range(12)],
                             "val": [f"v{i:03d}" for i in range(12, 18)]}, "annotations": anns}, f)


@pytest.mark.parametrize("form,layout,joints", [("json", "openpose", 18), ("pyskl", "coco", 17)])
def test_kinetics_reads_whichever_form_is_under_root(env, tmp_path, form, layout, joints):
    root = tmp_path / form
    (_kinetics_json_root if form == "json" else _kinetics_pyskl_root)(root)
    res = CliRunner().invoke(main, ["--config", str(env / "tiny.toml"), "--data", "kinetics", "--root", str(root),
                                    "--out", str(tmp_path / "runs"), "--set", "data.kwargs={}",
                                    "--set", "train.epochs=1"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    d = run_dir(res)
    ck = torch.load(d / "checkpoints" / "model.pt", weights_only=True)
    assert ck["layout"] == layout and ck["num_classes"] == 400
    assert ck["model"]["backbone.data_bn.weight"].numel() == joints * ck["in_channels"]
