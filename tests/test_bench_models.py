"""The roofline of ``benchmarks/bench_models.py``: the GEMMs it records are those torch's flop counter sees,
and its replay runs exactly them."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_models  # noqa: E402


def _step() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 5, 7, 6, requires_grad=True)          # (B, T, V, C): a linear, a batched product, a conv
    w, b = torch.randn(9, 6, requires_grad=True), torch.randn(9, requires_grad=True)
    h = F.linear(x, w, b).reshape(10, 7, 9)
    a = torch.randn(7, 7, requires_grad=True)
    h = torch.bmm(a.expand(10, 7, 7), h).reshape(2, 5, 7, 9)
    k = torch.randn(4, 9, 3, 1, requires_grad=True)
    y = F.conv2d(h.permute(0, 3, 1, 2), k, padding=(1, 0), stride=(2, 1))
    y.square().sum().backward()


def test_recorded_gemms_are_the_flop_counters_and_the_replay_runs_them():
    gemms = bench_models.record_gemms(_step)
    assert {kind for kind, _ in gemms} == {"mm", "bmm"}
    assert sum(gemms.values()) == bench_models.count_flops(_step)
    replay = bench_models.GemmReplay(gemms)
    assert replay.flops == sum(gemms.values())
    assert bench_models.count_flops(replay) == replay.flops


def test_roofline_from_the_replays_times():
    replay = bench_models.GemmReplay({("mm", (4, 5, 6)): 2 * 4 * 5 * 6 * 3})
    assert replay.calls == [("mm", (1, 4, 5, 6), 3)]
    roof = bench_models.roofline(replay, {"median_s": 2e-6, "times_s": [1e-6, 2e-6, 3e-6]})
    assert roof["gemm_flops"] == 720 and roof["roofline_gflops"] == pytest.approx(0.36)  # 720 flop in 2 µs
    assert roof["times_s"] == [1e-6, 2e-6, 3e-6]


def test_a_peer_directory_that_shadows_torch_is_refused(tmp_path):
    """``pip install --target`` of the mmaction2 peer may put a torch of its own into that directory; a
    benchmark run with it on ``PYTHONPATH`` would time that build, so the scripts refuse it by name."""
    import os

    from _common import shadowed_torch

    peer = tmp_path / "mmpeer"
    torch_file = peer / "torch" / "__init__.py"
    why = shadowed_torch(os.pathsep.join(["", str(tmp_path / "other"), str(peer)]), str(torch_file))
    assert why is not None and f"inside PYTHONPATH entry {peer.resolve()}" in why
    assert f"imported from {torch_file.parent.resolve()}" in why
    assert shadowed_torch(str(tmp_path / "other"), str(torch_file)) is None
    assert shadowed_torch("", str(torch_file)) is None
    assert shadowed_torch(str(peer), torch.__file__) is None  # this environment's torch
