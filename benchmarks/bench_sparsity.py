"""Sparsity benchmark: the generator's training-step overhead and the speed of exported sparse models.

1. ``generator_step``: one training step (forward, backward, SGD step) of a :class:`SparseGenerator`-wrapped
   ST-GCN classifier divided by the same step of the plain dense model with identical weights
   (target <= 1.15 on CPU). The generator is past its warm-up, so every step recomputes the exact-sparsity
   thresholds (``kthvalue`` over the scores) and applies the masks with the straight-through estimator.
2. ``export_inference``: eval-mode inference (``torch.no_grad``) of the dense model vs the masked model vs
   :func:`to_sparse_kernels` (default ``layout='auto'``: the channel-major whole-backbone path when it is
   measured faster than the dense model, else per-layer swaps) of the model pruned by magnitude
   (``scope='layer'``, weights and edges) at
   80 / 95 / 99 % sparsity; ``speedup`` = dense median / exported median (target >= 2x at 95 %).
3. Parameter counts: stored, non-zero, CSR non-zeros and replaced layers per sparsity.

Both models use the ``'dense'`` aggregation backend so that the comparisons differ only in what is measured.
Timings are medians on a possibly shared machine; the JSON records the load average.

Usage (from the repository root)::

    python benchmarks/bench_sparsity.py            # ST-GCN (10 stages, 64 ch), NTU layout, CPU (+ CUDA)
    python benchmarks/bench_sparsity.py --small    # quick run on a small model
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS_DIR, machine_info, write_results  # noqa: E402

from pyg_sparse_stgcn.nn import STGCN, GCNHead, SkeletonClassifier  # noqa: E402
from pyg_sparse_stgcn.sparsity import SparseGenerator, prune, report, to_sparse_kernels  # noqa: E402
from pyg_sparse_stgcn.sparsity.export import ChannelMajorSTGCN, CSRLinear, CSRTemporalConv  # noqa: E402


def build(small: bool, num_classes: int = 60) -> SkeletonClassifier:
    if small:
        bb = STGCN({"layout": "nturgb+d", "mode": "spatial"}, base_channels=16, num_stages=4,
                   inflate_stages=(3,), down_stages=(3,), backend="dense")
    else:
        bb = STGCN({"layout": "nturgb+d", "mode": "spatial"}, backend="dense")
    return SkeletonClassifier(bb, GCNHead(num_classes, bb.out_channels))


def interleaved(fns: dict, rounds: int, device: torch.device, warmup: int = 1,
                clock: str = "wall") -> dict[str, dict]:
    """Time every function once per round, in turn, so that load from other processes hits all of them;
    report min and median seconds per function. ``clock='thread'`` measures the calling thread's CPU time
    (``time.thread_time``; with ``torch.set_num_threads(1)`` all compute runs on it), which other processes
    on a shared machine cannot inflate by preempting us."""
    tick = time.thread_time if clock == "thread" else time.perf_counter
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = tick()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times[k].append(tick() - t0)
    return {k: {"min_s": min(v), "median_s": statistics.median(v), "times_s": v} for k, v in times.items()}


def train_step_fn(model, x, y):
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, nesterov=True, weight_decay=5e-4)

    def step():
        loss = F.cross_entropy(model(x), y)
        extra = getattr(model, "extra_loss", lambda: None)()
        if extra is not None:
            loss = loss + extra
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def bench_generator(small: bool, device: torch.device, repeats: int, clock: str = "wall") -> list[dict]:
    N, T = (4, 16) if small else (8, 50)
    x = torch.randn(N, 2, T, 25, 3, device=device)
    y = torch.randint(0, 60, (N,), device=device)
    out = []
    for kinds, scope in ((("weight",), "global"), (("weight", "edge"), "block")):
        torch.manual_seed(0)
        dense = build(small).to(device).train()
        gen = SparseGenerator(copy.deepcopy(dense), 0.95, kinds=kinds, scope=scope).to(device).train()
        gen.set_epoch(1, 2)  # past the (zero) warm-up: thresholds at the target every step
        t = interleaved({"dense": train_step_fn(dense, x, y), "generator": train_step_fn(gen, x, y)},
                        repeats, device, warmup=2, clock=clock)
        ratio_min = t["generator"]["min_s"] / t["dense"]["min_s"]
        ratio_med = t["generator"]["median_s"] / t["dense"]["median_s"]
        out.append({"clock": clock, "torch_threads": torch.get_num_threads(), "kinds": list(kinds),
                    "scope": scope, "sparsity": 0.95, "input": [N, 2, T, 25, 3],
                    "dense_step": t["dense"], "generator_step": t["generator"],
                    "ratio_min": ratio_min, "ratio_median": ratio_med, "target_ratio": 1.15,
                    "meets_target_min": ratio_min <= 1.15, "meets_target_median": ratio_med <= 1.15})
        tag = f"[{device}, {clock} clock, {torch.get_num_threads()} threads]"
        print(f"{tag} generator step {kinds} {scope}: dense {1e3 * t['dense']['min_s']:.1f} ms, "
              f"generator {1e3 * t['generator']['min_s']:.1f} ms (min), ratio min {ratio_min:.3f}, "
              f"median {ratio_med:.3f}", flush=True)
    return out


def bench_export(small: bool, repeats: int, clock: str = "wall") -> tuple[list[dict], dict]:
    N, T = (4, 32) if small else (8, 100)
    x = torch.randn(N, 2, T, 25, 3)
    torch.manual_seed(0)
    dense = build(small).eval()
    rep0 = report(dense)
    rows = []
    for s in (0.8, 0.95, 0.99):
        masked = copy.deepcopy(dense)
        prune(masked, s, scope="layer")
        masked.eval()
        exported = to_sparse_kernels(masked, x, repeats=3)
        with torch.no_grad():
            err = float((exported(x) - masked(x)).abs().max())
            t = interleaved({"dense": lambda: dense(x), "masked": lambda m=masked: m(x),
                             "exported": lambda m=exported: m(x)}, repeats, torch.device("cpu"),
                            clock=clock)
        rep = report(masked)
        if isinstance(exported, ChannelMajorSTGCN):
            csr_nnz = sum(p.nnz for p in exported.products() if p.use_csr)
        else:
            csr_nnz = sum(m.weight_csr.values().numel() if isinstance(m, CSRLinear) else m.nnz
                          for m in exported.modules() if isinstance(m, (CSRLinear, CSRTemporalConv)))
        replaced = [c["name"] for c in exported.sparse_kernel_choices if c["sparse"]]
        d, e = t["dense"], t["exported"]
        rows.append({
            "clock": clock, "torch_threads": torch.get_num_threads(), "sparsity": s,
            "input": [N, 2, T, 25, 3], "dense": d, "masked": t["masked"], "exported": e,
            "speedup_min": d["min_s"] / e["min_s"], "speedup_median": d["median_s"] / e["median_s"],
            "masked_vs_dense_median": t["masked"]["median_s"] / d["median_s"],
            "max_abs_err_vs_masked": err,
            "weight_sparsity": rep.kinds["weight"]["sparsity"],
            "edge_sparsity": rep.kinds["edge"]["sparsity"],
            "parameters": rep.parameters, "nonzero_parameters": rep.parameters["effective"],
            "csr_nonzeros": csr_nnz, "edges_removed": exported.edges_removed,
            "layers_replaced": len(replaced), "layers_considered": len(exported.sparse_kernel_choices),
            "layer_choices": exported.sparse_kernel_choices,
            "layout": exported.layout, "layout_choice": exported.layout_choice,
        })
        tag = f"[cpu, {clock} clock, {torch.get_num_threads()} threads]"
        print(f"{tag} export s={s}: dense {1e3 * d['min_s']:.1f} ms, "
              f"masked {1e3 * t['masked']['min_s']:.1f} ms, exported {1e3 * e['min_s']:.1f} ms (min); "
              f"speedup min {rows[-1]['speedup_min']:.2f}x, "
              f"median {rows[-1]['speedup_median']:.2f}x; replaced {len(replaced)}/"
              f"{len(exported.sparse_kernel_choices)} ({exported.layout}), err {err:.1e}", flush=True)
    return rows, rep0.parameters


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", action="store_true", help="small model and inputs (quick run)")
    ap.add_argument("--repeats", type=int, default=5, help="timed repetitions per measurement")
    ap.add_argument("--out", default=None,
                    help="output JSON (default benchmarks/results/sparsity[_small].json)")
    args = ap.parse_args()
    payload = {"machine": machine_info("cpu"), "model": "ST-GCN small (16 ch, 4 stages)" if args.small
               else "ST-GCN (PYSKL default: 10 stages, 64/128/256 ch), NTU layout, spatial graph, 60 classes"}
    payload["generator_step"] = {"cpu": bench_generator(args.small, torch.device("cpu"), args.repeats)}
    if torch.cuda.is_available():
        payload["generator_step"]["cuda"] = bench_generator(args.small, torch.device("cuda"), args.repeats)
    rows, dense_params = bench_export(args.small, args.repeats)
    payload["export_inference_cpu"] = rows
    payload["dense_parameters"] = dense_params
    # The same on one thread, timed by the thread's CPU time: robust to other processes on a shared machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        payload["generator_step"]["cpu_1thread_cputime"] = bench_generator(
            args.small, torch.device("cpu"), args.repeats, clock="thread")
        payload["export_inference_cpu_1thread_cputime"] = bench_export(args.small, args.repeats,
                                                                       clock="thread")[0]
    finally:
        torch.set_num_threads(threads)
    payload["machine"]["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    name = "sparsity_small.json" if args.small else "sparsity.json"
    out = Path(args.out) if args.out else RESULTS_DIR / name
    write_results(out, payload)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
