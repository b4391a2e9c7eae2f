"""Time a fraction of a full-size training epoch (the shipped NTU-60 XSub recipe's ST-GCN and sparse generator)
on synthetic NTU-shaped batches, and extrapolate to one epoch.

The model is the one ``--data ntu60-xsub --mode train`` / ``--mode generate`` builds from the shipped recipe
(``configs/ntu60-xsub.toml``: 64 channels, 10 stages, 2 persons, 25 joints, 60 classes); the batches are random
``(N, M=2, T, V=25, C=3)`` tensors (no data loading is timed). One iteration = forward, cross entropy (plus the
generator's warm-up penalty where it has one), backward and an SGD step (momentum 0.9, Nesterov, wd 5e-4: the
recipe's optimiser). Dense and generator iterations alternate (``_common.time_interleaved``); the per-sample
time of the median iteration times the training-set size is the extrapolated epoch. This is an estimate from
``--iters`` iterations, not a measured epoch, and says so in its output.

    python benchmarks/bench_epoch.py [--batch 16] [--iters 10] [--train-samples 40091]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS_DIR, machine_info, time_interleaved, write_results  # noqa: E402

#: NTU-60 XSub training samples in PYSKL's ``ntu60_3danno.pkl`` (``xsub_train``; the 302 samples with missing
#: skeletons excluded).
NTU60_XSUB_TRAIN = 40091


def build(mode: str, clip_len: int) -> torch.nn.Module:
    """The model ``--data ntu60-xsub --mode MODE`` builds from the shipped recipe (no data needed)."""
    from pyg_sparse_stgcn.engine.bundle import DataBundle
    from pyg_sparse_stgcn.engine.config import resolve_config
    from pyg_sparse_stgcn.engine.models import build_classifier, build_generator

    cfg = resolve_config({"data.name": ("ntu60-xsub", "--data"), "run.mode": (mode, "--mode")},
                         [f"data.clip_len={clip_len}"])
    facts = DataBundle.facts("ntu60-xsub", 60, "nturgb+d", 3, 2)
    return build_generator(cfg, facts) if mode == "generate" else build_classifier(cfg, facts)


def step_fn(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> Any:
    from pyg_sparse_stgcn.engine.trainer import call_set_epoch

    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    model.train()
    call_set_epoch([model], 99, 100)  # the generator's schedule: past its dense warm-up, at the target sparsity

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        out = model(x)
        loss = torch.nn.functional.cross_entropy(out, y)
        extra = getattr(model, "extra_loss", None)  # as the trainer: the generator's penalty, if any
        e = extra() if callable(extra) else None
        if isinstance(e, torch.Tensor):
            loss = loss + e
        loss.backward()
        opt.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16, help="samples per timed iteration (recipe: 128)")
    parser.add_argument("--iters", type=int, default=10, help="timed iterations per model")
    parser.add_argument("--clip-len", type=int, default=100, help="frames (the recipe's train: 100)")
    parser.add_argument("--train-samples", type=int, default=NTU60_XSUB_TRAIN)
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0 = PyTorch's default")
    parser.add_argument("--out", default=str(RESULTS_DIR / "epoch.json"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(args.batch, 2, args.clip_len, 25, 3)
    y = torch.randint(0, 60, (args.batch,))
    models = {m: build(m, args.clip_len) for m in ("train", "generate")}
    fns = {m: step_fn(model, x, y) for m, model in models.items()}
    times = time_interleaved(fns, repeats=args.iters, warmup=1)
    out: dict[str, Any] = {}
    for m, t in times.items():
        per_sample = t["median_s"] / args.batch
        out[m] = {**t, "per_sample_s": per_sample, "epoch_s_extrapolated": per_sample * args.train_samples,
                  "epoch_h_extrapolated": per_sample * args.train_samples / 3600}
        print(f"{m:>8}: {t['median_s']:.2f} s per {args.batch}-sample iteration (median of {args.iters}, min "
              f"{t['min_s']:.2f}) -> {out[m]['epoch_h_extrapolated']:.1f} h per NTU-60 XSub epoch "
              f"({args.train_samples} samples), extrapolated")
    payload = {"benchmark": "a fraction of an NTU-60 XSub training epoch on synthetic NTU-shaped batches, "
                            "extrapolated (the shipped recipe's ST-GCN and sparse generator)",
               "machine": machine_info(), "batch": args.batch, "iters": args.iters, "clip_len": args.clip_len,
               "train_samples": args.train_samples, "extrapolated": True,
               "params": {m: sum(p.numel() for p in model.parameters()) for m, model in models.items()},
               "results": out}
    write_results(args.out, payload)


if __name__ == "__main__":
    main()
