"""The temporal unit's convolution (PYSKL ``unit_tcn``: a 9 x 1 conv over time) on channels-last activations
``(B, T, V, C)``: which lowering is fastest, by measurement. Candidates, all equal in values (checked first):

* ``channels_last_conv2d`` (what :class:`~pyg_sparse_stgcn.nn.TemporalConv` runs): ``F.conv2d`` on the
  ``permute(0, 3, 1, 2)`` view, i.e. oneDNN's channels-last convolution with no copy;
* ``nchw_conv2d``: PYSKL's layout, ``F.conv2d`` on a contiguous ``(B, C, T, V)`` tensor (the input copy is not
  timed: PYSKL has that layout already);
* ``conv1d``: ``F.conv1d`` over ``(B V, C, T)`` (a copy in, a copy out);
* ``unfold_gemm``: one GEMM over the unfolded taps, ``(B T' V, 9 C) @ (9 C, C')``;
* ``channels_last_bf16``: the first under ``torch.autocast('cpu', torch.bfloat16)`` (native-bf16 CPUs only).

    .venv/bin/python benchmarks/bench_temporal.py            # writes benchmarks/results/temporal.json
    .venv/bin/python benchmarks/bench_temporal.py --quick    # seconds, no file

Shapes: the five temporal convs of ST-GCN at NTU (N=8, M=2, T=100, V=25): 64 channels at T=100, the strided
128 (T 100 -> 50), 128 at T=50, the strided 256 (50 -> 25) and 256 at T=25. Forward (no grad) and forward +
backward (input and weight gradients), interleaved rounds, median and min.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import machine_info, time_interleaved, write_results  # noqa: E402

from pyg_sparse_stgcn.engine.trainer import cpu_bf16_flags  # noqa: E402

K = 9
PAD = 4
#: (name, B, T, C_in, C_out, stride)
SHAPES = [("64@T100", 16, 100, 64, 64, 1), ("128@T100/2", 16, 100, 128, 128, 2), ("128@T50", 16, 50, 128, 128, 1),
          ("256@T50/2", 16, 50, 256, 256, 2), ("256@T25", 16, 25, 256, 256, 1)]


def candidates(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, s: int) -> dict[str, Callable[[], torch.Tensor]]:
    """Each returns ``(B, T', V, C_out)`` (a view or a tensor) from ``x`` ``(B, T, V, C_in)``."""
    B, T, V, C = x.shape
    xc = x.detach().permute(0, 3, 1, 2).contiguous().requires_grad_(x.requires_grad)
    w_taps = w[:, :, :, 0].permute(0, 2, 1).reshape(w.size(0), K * C)  # (C_out, K C_in), tap-major

    def cl() -> torch.Tensor:
        return F.conv2d(x.permute(0, 3, 1, 2), w, b, stride=(s, 1), padding=(PAD, 0)).permute(0, 2, 3, 1)

    def nchw() -> torch.Tensor:
        return F.conv2d(xc, w, b, stride=(s, 1), padding=(PAD, 0)).permute(0, 2, 3, 1)

    def c1d() -> torch.Tensor:
        y = F.conv1d(x.permute(0, 2, 3, 1).reshape(B * V, C, T), w[..., 0], b, stride=s, padding=PAD)
        return y.view(B, V, -1, y.size(-1)).permute(0, 3, 1, 2)

    def unfold() -> torch.Tensor:
        cols = F.pad(x, (0, 0, 0, 0, PAD, PAD)).unfold(1, K, s)  # (B, T', V, C, K)
        cols = cols.transpose(-1, -2).reshape(B, cols.size(1), V, K * C)  # tap-major columns
        return F.linear(cols, w_taps, b)

    return {"channels_last_conv2d": cl, "nchw_conv2d": nchw, "conv1d": c1d, "unfold_gemm": unfold}


def _summary(t: dict[str, Any]) -> dict[str, float]:
    return {"median_s": statistics.median(t["times_s"]), "min_s": min(t["times_s"]),
            "max_s": max(t["times_s"])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one small shape, one round, no result file")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/temporal.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    shapes = [("8@T16", 2, 16, 8, 8, 1)] if args.quick else SHAPES
    rounds = 1 if args.quick else args.rounds
    bf16 = bool(cpu_bf16_flags())
    results: dict[str, Any] = {"machine": machine_info(), "rounds": rounds, "V": 25, "kernel": K, "shapes": {}}
    for name, B, T, C, Co, s in shapes:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(B, T, 25, C, generator=g).requires_grad_()
        w = (torch.randn(Co, C, K, 1, generator=g) / (C * K) ** 0.5).requires_grad_()
        b = torch.randn(Co, generator=g).requires_grad_()
        fns = candidates(x, w, b, s)
        with torch.no_grad():
            want = fns["channels_last_conv2d"]()
            diffs = {n: (f() - want).abs().max().item() for n, f in fns.items()}
        assert max(diffs.values()) < 1e-3, diffs
        if bf16:
            def cl_bf16(f=fns["channels_last_conv2d"]) -> torch.Tensor:
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    return f()
            fns["channels_last_bf16"] = cl_bf16
        grad = torch.randn(want.shape, generator=g)

        def fwd(f: Callable[[], torch.Tensor]) -> Callable[[], None]:
            def run() -> None:
                with torch.no_grad():
                    f()
            return run

        def fwd_bwd(f: Callable[[], torch.Tensor], leaves=(x, w, b), grad=grad) -> Callable[[], None]:
            def run() -> None:
                for t in leaves:
                    t.grad = None
                f().backward(grad)
            return run

        row: dict[str, Any] = {"B": B, "T": T, "C_in": C, "C_out": Co, "stride": s, "max_abs_diff": diffs}
        for task, wrap in (("forward", fwd), ("forward_backward", fwd_bwd)):
            t = time_interleaved({n: wrap(f) for n, f in fns.items()}, repeats=rounds, warmup=1)
            row[task] = {n: _summary(v) for n, v in t.items()}
            best = min(row[task], key=lambda n: row[task][n]["median_s"])
            row[task + "_fastest"] = best
            cur = row[task]["channels_last_conv2d"]["median_s"]
            print(f"{name:11s} {task:16s} " + ", ".join(f"{n} {v['median_s'] * 1e3:.1f} ms"
                                                         for n, v in row[task].items())
                  + f" | fastest {best} (x{cur / row[task][best]['median_s']:.2f} of channels_last_conv2d)",
                  flush=True)
        results["shapes"][name] = row
    results["load_average_end"] = machine_info()["load_average_1_5_15"]
    if not args.quick:
        write_results(args.out, results)
        print("wrote", args.out)


if __name__ == "__main__":
    main()
