"""Iterative magnitude pruning: per-level sparsities, rewinding, files, resume, controls."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from pyg_sparse_stgcn.nn import STGCN, GCNHead, SkeletonClassifier
from pyg_sparse_stgcn.sparsity import IterativeMagnitudePruning, mask_state_dict, masked_targets
from pyg_sparse_stgcn.sparsity.magnitude import num_to_remove


def tiny() -> SkeletonClassifier:
    bb = STGCN({"layout": "coco", "mode": "spatial"}, base_channels=8, num_stages=3, inflate_stages=(3,),
               down_stages=(3,), backend="dense")
    return SkeletonClassifier(bb, GCNHead(3, bb.out_channels))


class Recorder:
    """A training function: a few SGD steps on a fixed synthetic batch; records what it saw."""

    def __init__(self, steps: int = 3) -> None:
        self.steps = steps
        g = torch.Generator().manual_seed(1)
        self.x = torch.randn(4, 1, 8, 17, 3, generator=g)
        self.y = torch.tensor([0, 1, 2, 0])
        self.calls: list[dict] = []

    def __call__(self, model, *, level, out_dir, start_step, on_step):
        self.calls.append({"level": level, "out_dir": out_dir, "start_step": start_step,
                           "state": {k: v.clone() for k, v in model.state_dict().items()},
                           "masks": mask_state_dict(model)})
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        model.train()
        for step in range(1, self.steps + 1):
            loss = F.cross_entropy(model(self.x), self.y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            on_step(start_step + step)
        return {"loss": float(loss)}


def expected_kept(total: int, fraction: float, levels: int) -> list[int]:
    kept = [total]
    for _ in range(levels):
        kept.append(kept[-1] - num_to_remove(fraction, kept[-1]))
    return kept


def test_levels_sparsities_files_and_rewind_to_init(tmp_path):
    torch.manual_seed(0)
    model = tiny()
    rec = Recorder()
    imp = IterativeMagnitudePruning(model, rec, tmp_path, levels=3, fraction=0.2, edge_fraction=0.05)
    init = {k: v.clone() for k, v in model.state_dict().items()}  # masks attached (all ones)
    results = imp.run()
    assert [r["level"] for r in results] == [0, 1, 2, 3]
    tot_w = sum(t.numel for t, _ in masked_targets(model, "weight"))
    tot_e = sum(int((t.module._A_init != 0).sum()) for t, _ in masked_targets(model, "edge"))  # real entries
    kw, ke = expected_kept(tot_w, 0.2, 3), expected_kept(tot_e, 0.05, 3)
    for level, r in enumerate(results):
        assert r["sparsity"]["weight"] == pytest.approx(1 - kw[level] / tot_w)
        assert r["sparsity"]["edge"] == pytest.approx(1 - ke[level] / tot_e)
        assert "loss" in r
    assert [round(r["sparsity"]["weight"], 2) for r in results] == [0.0, 0.2, 0.36, 0.49]
    # files per level
    for level in range(4):
        d = tmp_path / f"level_{level}"
        masks = torch.load(d / "mask.pt", weights_only=True)
        rep = json.loads((d / "sparsity_report.json").read_text())
        assert sum(int(m.sum()) for k, m in masks.items() if not k.endswith("edge_gate")) == kw[level]
        assert rep["kinds"]["weight"]["kept"] == kw[level]
        assert json.loads((d / "metrics.json").read_text())["level"] == level
        torch.load(d / "trained.pt", weights_only=True)
    # rewinding: every level >= 1 starts from the initial state (masks aside)
    for call in rec.calls:
        assert call["start_step"] == 0
        for k, v in call["state"].items():
            if not k.endswith(".0.mask"):
                assert torch.equal(v, init[k]), (call["level"], k)
    # masks are nested and pruned from the previous level's trained magnitudes
    for a, b in zip(rec.calls[1:], rec.calls[2:]):
        for k in a["masks"]:
            assert not (b["masks"][k] & ~a["masks"][k]).any()
    # level 2 removed the smallest trained |w| of level 1 among the kept entries, globally
    prev = torch.load(tmp_path / "level_1" / "trained.pt", weights_only=True)
    suffix = ".parametrizations.weight.original"
    kept_vals, removed_vals = [], []
    for k in prev:
        if not k.endswith(suffix):
            continue
        name = k[: -len(suffix)] + ".weight"
        m1, m2 = rec.calls[1]["masks"][name], rec.calls[2]["masks"][name]
        kept_vals.append(prev[k].abs()[m2])
        removed_vals.append(prev[k].abs()[m1 & ~m2])
    kept_vals, removed_vals = torch.cat(kept_vals), torch.cat(removed_vals)
    assert removed_vals.numel() == num_to_remove(0.2, kw[1])
    assert removed_vals.max() <= kept_vals.min()


def test_late_rewinding_restores_state_at_rewind_step(tmp_path):
    torch.manual_seed(0)
    model = tiny()
    rec = Recorder(steps=4)
    snapshots = {}
    orig_call = rec.__call__

    def train_fn(model, *, level, out_dir, start_step, on_step):
        def spy(step):
            on_step(step)
            if level == 0 and step == 2:
                snapshots["s2"] = {k: v.clone() for k, v in model.state_dict().items()}
        return orig_call(model, level=level, out_dir=out_dir, start_step=start_step, on_step=spy)

    IterativeMagnitudePruning(model, train_fn, tmp_path, levels=1, kinds="weight", rewind_step=2).run()
    lvl1 = rec.calls[1]
    assert lvl1["start_step"] == 2
    for k, v in lvl1["state"].items():
        if not k.endswith(".0.mask"):
            assert torch.equal(v, snapshots["s2"][k]), k


def test_resume_and_extend(tmp_path):
    torch.manual_seed(0)
    rec = Recorder()
    IterativeMagnitudePruning(tiny(), rec, tmp_path, levels=1, kinds="weight").run()
    assert [c["level"] for c in rec.calls] == [0, 1]
    rec2 = Recorder()
    res = IterativeMagnitudePruning(tiny(), rec2, tmp_path, levels=2, kinds="weight").run()
    assert [c["level"] for c in rec2.calls] == [2]  # levels 0 and 1 are skipped
    assert [r["level"] for r in res] == [0, 1, 2]
    with pytest.raises(ValueError, match="configuration"):
        IterativeMagnitudePruning(tiny(), rec2, tmp_path, levels=2, fraction=0.5, kinds="weight").run()


def test_controls_random_reinit_and_random_prune(tmp_path):
    torch.manual_seed(0)
    model = tiny()
    rec = Recorder(steps=1)
    imp = IterativeMagnitudePruning(model, rec, tmp_path, levels=1,
                                    branches=("random_reinit", "random_prune"))
    init = {k: v.clone() for k, v in model.state_dict().items()}
    imp.run()
    by = {(c["level"], c["out_dir"].name): c for c in rec.calls}
    main, reinit, rprune = by[(1, "level_1")], by[(1, "random_reinit")], by[(1, "random_prune")]
    for k in main["masks"]:
        assert torch.equal(reinit["masks"][k], main["masks"][k])
        assert int(rprune["masks"][k].sum()) == int(main["masks"][k].sum())
    assert any(not torch.equal(rprune["masks"][k], main["masks"][k]) for k in main["masks"])
    w = "backbone.gcn.1.tcn.conv.parametrizations.weight.original"
    assert not torch.equal(reinit["state"][w], init[w])  # fresh initialisation
    assert torch.equal(rprune["state"][w], init[w])  # rewound
    for b in ("random_reinit", "random_prune"):
        assert (tmp_path / "level_1" / b / "metrics.json").exists()


def test_bad_arguments_and_missing_on_step(tmp_path):
    with pytest.raises(ValueError, match="fraction"):
        IterativeMagnitudePruning(tiny(), Recorder(), tmp_path, levels=1, fraction=1.0)
    with pytest.raises(ValueError, match="branches"):
        IterativeMagnitudePruning(tiny(), Recorder(), tmp_path, levels=1, branches=("shuffle",))
    with pytest.raises(ValueError, match="train_fn"):
        IterativeMagnitudePruning(tiny(), None, tmp_path, levels=1)

    def lazy(model, *, level, out_dir, start_step, on_step):
        return {}

    with pytest.raises(ValueError, match="on_step"):
        IterativeMagnitudePruning(tiny(), lazy, tmp_path / "x", levels=1, rewind_step=3).run()
