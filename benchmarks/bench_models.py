"""Backbone speed: ours (channels-last, message passing) vs a PYSKL-style channels-first dense reference with
the same weights, for AAGCN, CTR-GCN and DG-STGCN at NTU shapes (N=8, M=2, T=100, V=25), inference and one
training step (forward + backward). Outputs are checked equal first.

    .venv/bin/python benchmarks/bench_models.py            # NTU shapes, writes benchmarks/results/models.json
    .venv/bin/python benchmarks/bench_models.py --quick    # seconds-long smoke run (tiny shapes), no file

The reference (``tests/backbone_reference.py``) is a functional re-implementation of PYSKL's
equations on ``(N M, C, T, V)`` tensors with ``F.conv2d`` / ``torch.matmul`` / ``einsum`` (PYSKL's own ops).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import backbone_reference as ref  # noqa: E402
from _common import machine_info, write_results  # noqa: E402

from pyg_sparse_stgcn.nn import AAGCN, CTRGCN, DGSTGCN  # noqa: E402
from pyg_sparse_stgcn.timing import best_times  # noqa: E402

SPATIAL = dict(layout="nturgb+d", mode="spatial")
RANDOM = dict(layout="nturgb+d", mode="random", num_filter=8, init_off=0.04, init_std=0.02, seed=0)


def build(kind: str, quick: bool) -> torch.nn.Module:
    size = dict(base_channels=8, num_stages=4, inflate_stages=(3,), down_stages=(3,)) if quick else {}
    if kind == "aagcn":
        return AAGCN(SPATIAL, backend="dense", **size)
    if kind == "ctrgcn":
        return CTRGCN(SPATIAL, backend="dense", **size)
    return DGSTGCN(RANDOM, backend="dense", gcn_ratio=0.125, gcn_ctr="T", gcn_ada="T", **size)


def bench_one(kind: str, quick: bool, x: torch.Tensor, rounds: int) -> dict:
    model = build(kind, quick)
    with torch.no_grad():  # non-trivial gates so every path runs
        for name, p in model.named_parameters():
            if name.endswith(("alpha", "beta", "add_coeff")):
                p.fill_(0.1)
    P = {k: v.detach().clone().requires_grad_(v.is_floating_point() and not k.endswith(("running_mean",
                                                                                        "running_var")))
         for k, v in model.state_dict().items()}
    strides = [b.stride for b in model.blocks]
    model.eval()
    with torch.no_grad():
        want = ref.backbone(kind, P, x, strides)
        diff = (model(x) - want).abs().max().item() / max(want.abs().max().item(), 1.0)
    assert diff < 1e-3, f"{kind}: outputs differ by {diff} (relative to the largest output)"

    def ours_inf():
        with torch.no_grad():
            model(x)

    def ref_inf():
        with torch.no_grad():
            ref.backbone(kind, P, x, strides)

    inf = best_times({"ours": ours_inf, "reference": ref_inf}, rounds=rounds, warmup=1)

    def ours_train():
        model.train()
        model.zero_grad(set_to_none=True)
        model(x).square().mean().backward()

    def ref_train():
        ref.TRAIN_BN[0] = True
        try:
            ref.backbone(kind, P, x, strides).square().mean().backward()
        finally:
            ref.TRAIN_BN[0] = False
        for t in P.values():
            t.grad = None

    train = best_times({"ours": ours_train, "reference": ref_train}, rounds=rounds, warmup=1)
    row = {"max_rel_diff": diff,
           "inference_s": inf, "inference_ratio_ref_over_ours": inf["reference"] / inf["ours"],
           "train_step_s": train, "train_ratio_ref_over_ours": train["reference"] / train["ours"]}
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny shapes, one round, no result file")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/models.json"))
    args = ap.parse_args()
    N, M, T, V = (2, 2, 16, 25) if args.quick else (8, 2, 100, 25)
    rounds = 1 if args.quick else args.rounds
    torch.manual_seed(0)
    x = torch.randn(N, M, T, V, 3)
    results = {"machine": machine_info(), "rounds": rounds, "shape": dict(N=N, M=M, T=T, V=V),
               "threads": torch.get_num_threads(), "models": {}}
    for kind in ("aagcn", "ctrgcn", "dgstgcn"):
        row = bench_one(kind, args.quick, x, rounds)
        results["models"][kind] = row
        inf, train = row["inference_s"], row["train_step_s"]
        print(f"{kind:8s} inference ours {inf['ours']:.3f}s ref {inf['reference']:.3f}s "
              f"(ref/ours {row['inference_ratio_ref_over_ours']:.2f}) | train ours {train['ours']:.3f}s "
              f"ref {train['reference']:.3f}s (ref/ours {row['train_ratio_ref_over_ours']:.2f})", flush=True)
    if not args.quick:
        write_results(args.out, results)
        print("wrote", args.out)


if __name__ == "__main__":
    main()
