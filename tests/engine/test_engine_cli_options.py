"""Options reach the algorithms: the lottery's --sparsity, edge pruning by lottery.edge_fraction alone,
conflicting options rejected before any work, and the summaries' edge and ensemble parameter figures."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from tiny_config import TINY_DEMO, run_tiny

from pyg_sparse_stgcn.cli import main


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli-options")
    (d / "tiny.toml").write_text(TINY_DEMO)
    return d


def run(env: Path, *args: str):
    d, res = run_tiny(env, "--data", "demo", *args)
    return d, json.loads((d / "summary.json").read_text()), res.output


def test_lottery_sparsity_reaches_the_target(env):
    """0.3 at 0.2 per level: two levels, the second trimmed to 1 - 0.7 / 0.8 = 0.125 of the remaining."""
    d, s, out = run(env, "--mode", "lottery", "--sparsity", "0.3")
    assert [lv["level"] for lv in s["levels"]] == [0, 1, 2]
    assert s["weight_sparsity"] == pytest.approx(0.3, abs=1e-3)
    assert s["levels"][1]["sparsity"]["weight"] == pytest.approx(0.2, abs=1e-3)
    rep = json.loads((d / "lottery" / "level_2" / "sparsity_report.json").read_text())
    assert rep["kinds"]["weight"]["sparsity"] == pytest.approx(0.3, abs=1e-3)
    cfg = (d / "config.toml").read_text()
    assert "levels = 0" in cfg  # config.toml records the resolved choice, so --resume repeats it
    assert "level 2: weights 30.0% sparse" in out


def test_lottery_edge_fraction_alone_prunes_edges(env):
    d, s, _ = run(env, "--mode", "lottery", "--set", "lottery.edge_fraction=0.5")
    assert s["weight_sparsity"] == pytest.approx(0.2, abs=1e-3)
    assert s["edge_sparsity"] == pytest.approx(0.5, abs=0.02)
    assert "edge" in json.loads((d / "lottery" / "imp.json").read_text())["kinds"]
    assert "edge_sparsity_connections" in s and "edge_sparsity_connections" in s["dense"]


def test_ensemble_summary_separates_inference_and_training_parameters(env):
    _, s, out = run(env, "--mode", "ensemble", "--set", "dense.baseline=false", "--set", "train.epochs=1")
    assert s["inference_parameters"] == s["ensemble"]["inference_parameters"]
    if s.get("training_parameters") is not None:
        assert s["inference_parameters"] < s["training_parameters"]
        assert "ensemble parameters: inference" in out


@pytest.mark.parametrize("args,match", [
    (["--mode", "lottery", "--sparsity", "0.9", "--set", "lottery.levels=3"],
     r"--sparsity 0.9 conflicts with --set lottery.levels=3"),
    (["--mode", "lottery", "--edge-sparsity", "0.5"], r"--edge-sparsity applies to .*lottery.edge_fraction"),
    (["--mode", "train", "--set", "generator.paper=true"], r"--set generator.paper applies to --mode generate"),
    (["--mode", "generate", "--set", "generator.score_init=zeros"], r"--set generator.score_init"),
    (["--mode", "prune", "--set", "sparsity.scope=everywhere"], r"sparsity.scope: invalid value 'everywhere'"),
    (["--mode", "train", "--set", "train.lrr=1"], r"did you mean train.lr"),
    (["--mode", "train", "runs/nonexistent-dir-xyz"], r"unexpected argument"),
])
def test_conflicting_or_unread_options_fail_before_any_work(env, tmp_path, args, match):
    out = tmp_path / "runs"
    res = CliRunner().invoke(main, ["--config", str(env / "tiny.toml"), "--data", "demo", "--root",
                                    str(tmp_path / "demo"), "--out", str(out), *args])
    assert res.exit_code == 2, res.output
    assert __import__("re").search(match, res.output, __import__("re").S), res.output
    assert not out.exists() and not (tmp_path / "demo").exists()


def test_trainer_default_collate_is_the_librarys():
    from pyg_sparse_stgcn.data import collate_skeletons
    from pyg_sparse_stgcn.engine.trainer import Trainer

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    t = Trainer(model, [(torch.zeros(4), torch.tensor(0))], epochs=1, batch_size=1, progress=False)
    assert t.collate_fn is collate_skeletons
