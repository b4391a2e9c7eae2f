"""The held-out split (``data.holdout``: hyper-parameters chosen without the test split), edges-only pruning
(``--sparsity 0 --edge-sparsity S``), the seed in every summary and the demo's expected range."""
from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_config import TINY_DEMO, run_tiny

from pyg_sparse_stgcn.data import build_dataset
from pyg_sparse_stgcn.engine.bundle import holdout_split
from pyg_sparse_stgcn.engine.modes.generate import demo_expectation, recipe_digest


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    d = tmp_path_factory.mktemp("holdout")
    (d / "tiny.toml").write_text(TINY_DEMO)
    return d


def test_holdout_split_per_class():
    labels = np.array([0] * 10 + [1] * 5 + [2] * 1 + [3] * 2)
    keep, held = holdout_split(labels, 0.2, seed=3)
    assert np.intersect1d(keep, held).size == 0
    assert sorted(np.concatenate([keep, held]).tolist()) == list(range(len(labels)))
    # 20 % of 10 = 2, of 5 = 1; a class of one sample stays in training, a class of two gives one
    assert np.bincount(labels[held], minlength=4).tolist() == [2, 1, 0, 1]
    k2, h2 = holdout_split(labels, 0.2, seed=3)
    assert np.array_equal(h2, held) and np.array_equal(k2, keep)
    draws = {tuple(holdout_split(labels, 0.2, seed=s)[1]) for s in range(8)}
    assert len(draws) > 1  # the seed changes the draw
    with pytest.raises(ValueError, match="holdout"):
        holdout_split(labels, 1.0)


def test_holdout_replaces_the_test_split(env):
    d, _ = run_tiny(env, "--data", "demo", "--mode", "train", "--set", "data.holdout=0.25")
    scores = torch.load(d / "scores" / "test.pt", weights_only=True)
    ids = set(scores["ids"])
    kw = tomllib.loads(TINY_DEMO)["data"]["kwargs"]  # the tiny recipe's dataset
    train = build_dataset("demo", env / "demo", "train", **kw)
    val = build_dataset("demo", env / "demo", "val", **kw)
    train_ids = {train.get(i).frame_dir for i in range(len(train))}
    val_ids = {val.get(i).frame_dir for i in range(len(val))}
    _, held = holdout_split(train.labels, 0.25, seed=0)
    assert len(ids) == len(held) and ids <= train_ids and not ids & val_ids
    assert "holdout = 0.25" in (d / "config.toml").read_text()


def test_prune_edges_alone(env):
    dense, _ = run_tiny(env, "--data", "demo", "--mode", "train", "--set", "model.graph_mode=random")
    d, res = run_tiny(env, "--data", "demo", "--mode", "prune", "--checkpoint", str(dense), "--sparsity", "0",
                      "--edge-sparsity", "0.5")
    s = json.loads((d / "summary.json").read_text())
    assert s["weight_sparsity"] == 0.0
    assert s["edge_sparsity"] == pytest.approx(0.5, abs=0.01)
    masks = torch.load(d / "masks" / "finetune.pt", weights_only=True)
    assert masks and all(k.endswith("edge_gate") for k in masks)
    assert s["seed"] == 0


def test_demo_expectation(tmp_path: Path):
    assert demo_expectation(tmp_path / "missing.json") == []
    rec = {"seeds": [0, 1], "dense_top1": {"mean": 0.9, "std": 0.02, "values": [0.88, 0.92]},
           "sparse_top1": {"mean": 0.8, "std": 0.04, "values": [0.77, 0.83]},
           "drop_points": {"mean": 10.0, "std": 1.5, "values": [11.0, 9.0]},
           "machine": {"date_utc": "2026-01-02T00:00:00Z"}, "recipe_sha256": recipe_digest("demo")}
    (tmp_path / "demo.json").write_text(json.dumps(rec))
    (line,) = demo_expectation(tmp_path / "demo.json")
    assert "seeds 0, 1" in line and "dense 90.0% ± 2.0" in line and "95 %-sparse 80.0% ± 4.0" in line
    assert "drop 10.0 ± 1.5 points" in line and "88.0%, 92.0%" in line
    rec["recipe_sha256"] = "0" * 64
    (tmp_path / "demo.json").write_text(json.dumps(rec))
    assert "another configs/demo.toml" in demo_expectation(tmp_path / "demo.json")[-1]
