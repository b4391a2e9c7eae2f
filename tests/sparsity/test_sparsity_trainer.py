"""The sparsity algorithms driven by the engine's Trainer (set_epoch, compute_loss, extra_loss, on_step)."""
from __future__ import annotations

import pytest
import torch
from torch.utils.data import TensorDataset, default_collate

from pyg_sparse_stgcn.nn import STGCN, GCNHead, SkeletonClassifier
from pyg_sparse_stgcn.sparsity import (
    IterativeMagnitudePruning,
    MultiSparsityEnsemble,
    SparseGenerator,
    report,
)

Trainer = pytest.importorskip("pyg_sparse_stgcn.engine.trainer").Trainer


def make_backbone() -> STGCN:
    return STGCN({"layout": "coco", "mode": "spatial"}, base_channels=8, num_stages=3, inflate_stages=(3,),
                 down_stages=(3,), backend="dense")


def tiny() -> SkeletonClassifier:
    bb = make_backbone()
    return SkeletonClassifier(bb, GCNHead(3, bb.out_channels))


def data() -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(4, 1, 8, 17, 3, generator=g), torch.tensor([0, 1, 2, 0]))


def trainer(model, epochs=2, **kw) -> Trainer:
    return Trainer(model, data(), epochs=epochs, batch_size=2, collate_fn=default_collate, progress=False,
                   lr=0.01, **kw)


def test_generator_in_trainer_schedule_and_penalty():
    gen = SparseGenerator(tiny(), 0.8, warm_up=1, penalty="GSGL")
    seen = []
    orig = gen.extra_loss

    def spy():
        t = orig()
        seen.append((gen.epoch, t is not None and t.requires_grad))
        return t
    gen.extra_loss = spy
    out = trainer(gen, epochs=3).fit(resume=False)
    assert len(out["history"]) == 3
    assert gen.epoch == 2 and gen.total_epochs == 3
    # penalty active (with gradient) while epoch <= warm_up, then None
    assert {e for e, active in seen if active} == {1} and all(not a for e, a in seen if e == 2)
    gen.eval()
    gen(data().tensors[0])
    assert abs(report(gen).kinds["weight"]["sparsity"] - 0.8) < 1e-3


def test_ensemble_in_trainer_uses_compute_loss():
    ens = MultiSparsityEnsemble(make_backbone, 3, sparsities=(0.5, 0.9))
    calls = []
    orig = ens.compute_loss

    def spy(output, target):
        calls.append(isinstance(output, tuple))
        return orig(output, target)
    ens.compute_loss = spy
    out = trainer(ens, epochs=1).fit(resume=False)
    assert calls and all(calls)  # training outputs are (fused, experts) tuples
    assert 0.0 <= out["history"][0]["train_top1"] <= 1.0


def test_imp_with_trainer_as_train_fn(tmp_path):
    def train_fn(model, *, level, out_dir, start_step, on_step):
        res = trainer(model, epochs=2, start_step=start_step, on_step=on_step).fit(resume=False)
        return {"loss": res["history"][-1]["loss"]}

    imp = IterativeMagnitudePruning(tiny(), train_fn, tmp_path, levels=2, kinds="weight", rewind_step=1)
    res = imp.run()
    assert [round(r["sparsity"]["weight"], 2) for r in res] == [0.0, 0.2, 0.36]
    assert (tmp_path / "rewind.pt").exists()
