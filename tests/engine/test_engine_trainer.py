"""Trainer: LR schedule, learning, hooks, checkpoints and exact resume (tiny stand-in models, seconds)."""
from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset, default_collate

from pyg_sparse_stgcn.engine.rundir import RunDir
from pyg_sparse_stgcn.engine.trainer import (
    CHECKPOINT_FORMAT,
    EpochBudget,
    Trainer,
    TrainingInterrupted,
    get_rng_state,
    set_rng_state,
)


class Blobs(Dataset):
    """Separable 3-class problem shaped like skeleton input (N, M, T, V, C) = (., 1, 4, 3, 2)."""

    def __init__(self, n: int = 48, seed: int = 0) -> None:
        self.y = torch.arange(n) % 3
        centres = torch.randn(3, 1, 4, 3, 2, generator=torch.Generator().manual_seed(123)) * 2
        g = torch.Generator().manual_seed(seed)
        self.x = centres[self.y] + 0.5 * torch.randn(n, 1, 4, 3, 2, generator=g)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


class Net(nn.Module):
    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(24)
        self.fc1 = nn.Linear(24, 16)
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(16, 3)

    def forward(self, x):
        return self.fc2(self.drop(torch.relu(self.fc1(self.bn(x.flatten(1))))))


def make(tmp_path=None, epochs=3, budget=None, stage="train", **kw):
    torch.manual_seed(0)
    model = Net(kw.pop("dropout", 0.2))
    run = RunDir(tmp_path) if tmp_path is not None else None
    return Trainer(model, Blobs(), epochs=epochs, batch_size=8, test_data=Blobs(24, seed=1),
                   val_data=Blobs(24, seed=1), collate_fn=default_collate, progress=False, run_dir=run,
                   budget=budget, stage=stage, **kw)


def test_cosine_per_iteration_with_warmup():
    t = make(epochs=4, lr=0.2, warmup_epochs=1.0, min_lr=0.02)
    it = t.iters_per_epoch
    assert it == 6
    lrs = []
    for _ in range(4 * it):
        lrs.append(t.optimizer.param_groups[0]["lr"])
        t.optimizer.step()
        t.scheduler.step()
    total, warm = 4 * it, it
    ref = [0.2 * (i + 1) / warm if i < warm else
           0.02 + 0.18 * 0.5 * (1 + math.cos(math.pi * (i - warm) / (total - warm))) for i in range(total)]
    np.testing.assert_allclose(lrs, ref, rtol=1e-12)


def test_cosine_per_epoch_is_constant_within_an_epoch():
    t = make(epochs=3, lr=0.1, lr_schedule="cosine_epoch")
    lrs = []
    for _ in range(3 * t.iters_per_epoch):
        lrs.append(t.optimizer.param_groups[0]["lr"])
        t.optimizer.step()
        t.scheduler.step()
    per_epoch = [lrs[e * t.iters_per_epoch:(e + 1) * t.iters_per_epoch] for e in range(3)]
    ref = [0.1 * 0.5 * (1 + math.cos(math.pi * e * t.iters_per_epoch / (3 * t.iters_per_epoch)))
           for e in range(3)]
    for e in range(3):
        np.testing.assert_allclose(per_epoch[e], [ref[e]] * t.iters_per_epoch, rtol=1e-12)


def test_sgd_recipe_defaults():
    g = make().optimizer.param_groups[0]
    assert (g["lr"], g["momentum"], g["nesterov"], g["weight_decay"]) == (0.1, 0.9, True, 5e-4)


def test_learns_separable_problem(tmp_path):
    res = make(tmp_path, epochs=4, lr=0.05).fit()
    assert res["test"]["top1"] >= 0.9
    assert res["history"][-1]["loss"] < res["history"][0]["loss"]
    assert set(res["test"]) >= {"top1", "top5", "mean_class_accuracy", "confusion_matrix", "scores"}
    run = RunDir(tmp_path)
    recs = run.read_metrics()
    assert [r["epoch"] for r in recs] == [1, 2, 3, 4] and all("val_top1" in r for r in recs)
    assert not (run.checkpoints / "train-last.pt").exists()  # superseded by the final checkpoint
    fin = torch.load(run.checkpoints / "train-final.pt", weights_only=True)
    assert fin["format"] == CHECKPOINT_FORMAT and fin["epoch"] == 4
    assert fin["test"]["top1"] == res["test"]["top1"]


def _weights(t):
    return {k: v.clone() for k, v in t.model.state_dict().items()}


@pytest.mark.parametrize("stop_after", [1, 2])
def test_resume_gives_identical_weights(tmp_path, stop_after):
    full = make(tmp_path / "full", epochs=3)
    full.fit()
    ref = _weights(full)

    first = make(tmp_path / "cut", epochs=3, budget=EpochBudget(stop_after))
    with pytest.raises(TrainingInterrupted):
        first.fit()
    ck = torch.load(tmp_path / "cut" / "checkpoints" / "train-last.pt", weights_only=True)
    assert ck["format"] == CHECKPOINT_FORMAT and ck["epoch"] == stop_after
    assert set(ck) >= {"model", "optimizer", "scheduler", "scaler", "rng", "epoch"}
    # RNG consumed between the interruption and the resume must not matter
    torch.rand(100), np.random.rand(10), random.random()
    second = make(tmp_path / "cut", epochs=3)
    res = second.fit()
    assert second.start_epoch == stop_after
    got = _weights(second)
    assert ref.keys() == got.keys()
    for k in ref:
        assert torch.equal(ref[k], got[k]), k
    assert [r["epoch"] for r in RunDir(tmp_path / "cut").read_metrics()] == [1, 2, 3]
    assert res["test"]["top1"] == pytest.approx(full.evaluate(Blobs(24, seed=1))["top1"])


def test_finished_stage_is_not_retrained(tmp_path):
    make(tmp_path, epochs=2).fit()
    again = make(tmp_path, epochs=2)
    before = torch.load(tmp_path / "checkpoints" / "train-final.pt", weights_only=True)["model"]
    fin = torch.load(tmp_path / "checkpoints" / "train-final.pt", weights_only=True)
    res = again.fit()
    assert again.start_epoch == 2 and res["test"]["top1"] == fin["test"]["top1"]
    for k, v in again.model.state_dict().items():
        assert torch.equal(v, before[k])


class Hooked(Net):
    def __init__(self) -> None:
        super().__init__(0.0)
        self.calls: list[tuple[int, int]] = []
        self.loss_calls = 0

    def set_epoch(self, epoch, total):
        self.calls.append((epoch, total))

    def compute_loss(self, out, y):
        self.loss_calls += 1
        return nn.functional.cross_entropy(out, y) * 0.0 + nn.functional.cross_entropy(out, y)

    def extra_loss(self):
        return 10.0 * sum((p ** 2).sum() for p in self.fc1.parameters())


class Cb:
    def __init__(self):
        self.calls = []

    def set_epoch(self, epoch, total):
        self.calls.append((epoch, total))

    def extra_loss(self):
        return None


def test_hooks_set_epoch_compute_loss_extra_loss():
    torch.manual_seed(0)
    m, cb = Hooked(), Cb()
    w0 = m.fc1.weight.detach().abs().sum()
    t = Trainer(m, Blobs(), epochs=2, batch_size=8, collate_fn=default_collate, progress=False,
                callbacks=[cb], lr=0.01)
    t.fit()
    assert m.calls == [(0, 2), (1, 2)] and cb.calls == [(0, 2), (1, 2)]
    assert m.loss_calls == 2 * t.iters_per_epoch
    # the strong L2 extra loss shrinks fc1 far more than weight decay alone would
    assert m.fc1.weight.detach().abs().sum() < 0.3 * w0


def test_grad_clip_bounds_the_step():
    torch.manual_seed(0)
    m = Net(0.0)
    before = [p.detach().clone() for p in m.parameters()]
    t = Trainer(m, Blobs(8), epochs=1, batch_size=8, collate_fn=default_collate, progress=False,
                grad_clip=1e-3, momentum=0.0, weight_decay=0.0, lr=1.0, lr_schedule="constant")
    t.fit()
    step = torch.sqrt(sum(((p.detach() - b) ** 2).sum() for p, b in zip(m.parameters(), before)))
    assert step.item() == pytest.approx(1e-3, rel=1e-3)


def test_rng_state_roundtrip_is_weights_only_loadable(tmp_path):
    random.gauss(0, 1)
    np.random.randn(3)
    st = get_rng_state()
    torch.save(st, tmp_path / "r.pt")
    st = torch.load(tmp_path / "r.pt", weights_only=True)
    a = (random.random(), random.gauss(0, 1), np.random.rand(), np.random.randn(), torch.rand(1).item())
    set_rng_state(st)
    b = (random.random(), random.gauss(0, 1), np.random.rand(), np.random.randn(), torch.rand(1).item())
    assert a == b


def test_bad_arguments():
    with pytest.raises(ValueError, match="lr_schedule"):
        make(lr_schedule="step")
    with pytest.raises(ValueError, match="epochs"):
        make(epochs=0)


def test_start_step_and_on_step_follow_the_schedule():
    steps: list[int] = []
    full = make(epochs=2, lr=0.1)
    n = 2 * full.iters_per_epoch
    lrs_full = []
    for _ in range(n):
        lrs_full.append(full.optimizer.param_groups[0]["lr"])
        full.optimizer.step()
        full.scheduler.step()
    t = make(epochs=2, lr=0.1, start_step=8, on_step=steps.append)
    assert t.optimizer.param_groups[0]["lr"] == pytest.approx(lrs_full[8])
    t.fit()
    assert steps == list(range(9, n + 1))
    with pytest.raises(ValueError, match="start_step"):
        make(epochs=2, start_step=n)
