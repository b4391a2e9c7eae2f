"""Sparsity benchmark: the generator's training-step overhead, the speed of exported sparse models, and the
aggregation over joints against edge sparsity.

1. ``generator_step``: one training step (forward, backward, SGD step) of a :class:`SparseGenerator`-wrapped
   ST-GCN classifier divided by the same step of the plain dense model with identical weights
   (target <= 1.15 on CPU). The generator is past its warm-up, so every step recomputes the exact-sparsity
   thresholds (``kthvalue`` over the scores) and applies the masks with the straight-through estimator.
2. ``export_inference``: eval-mode inference (``torch.no_grad``) of the dense model vs the masked model vs
   :func:`to_sparse_kernels` (default ``layout='auto'``: the channel-major whole-backbone path when it is
   measured faster than the channels-last model, else per-layer swaps) of the model pruned by magnitude
   (``scope='layer'``, weights and edges) at
   80 / 95 / 99 % sparsity; ``speedup`` = dense median / exported median (target >= 2x at 95 %).
3. ``edge_aggregation``: the dense-weight model with 0 / 50 / 80 / 95 % of every layer's *real* edge
   entries removed (smallest ``|base weight|`` first, exact count per layer: ``prune(scope="layer")``), folded and
   its pruned edges removed (``prune_edges_``); then, summed over all graph convolutions of the model on
   the inputs they receive, (a) the aggregation alone (input: the 1x1 convolution's output) in the layer's
   ``dense``, ``sparse`` and ``scatter`` backends and in the channel-major export's dense kernel, and (b) the
   graph convolution (1x1 convolution + aggregation) in the three layer backends and in both channel-major
   kernels (``dense``; ``sparse``: one product per kept entry). Interleaved rounds; min / median / max.

Both models use the ``'dense'`` aggregation backend so that the comparisons differ only in what is measured.
Timings are on a possibly shared machine; the JSON records the load average.

Usage (from the repository root)::

    python benchmarks/bench_sparsity.py            # ST-GCN (10 stages, 64 ch), NTU layout, CPU (+ CUDA)
    python benchmarks/bench_sparsity.py --small    # small model and inputs
    python benchmarks/bench_sparsity.py --quick    # smoke run in seconds (small, 2 repeats, no JSON
                                                   # unless --out is given)
    python benchmarks/bench_sparsity.py --sections edges   # only the edge-aggregation section
"""
from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS_DIR, machine_info, time_interleaved, write_results  # noqa: E402

from pyg_sparse_stgcn.nn import STGCN, GCNHead, SkeletonClassifier, STGCNConv  # noqa: E402
from pyg_sparse_stgcn.sparsity import (  # noqa: E402
    SparseGenerator,
    fold,
    prune,
    report,
    to_sparse_kernels,
)
from pyg_sparse_stgcn.sparsity.export import (  # noqa: E402
    ChannelMajorSTGCN,
    CSRLinear,
    CSRTemporalConv,
    remove_pruned_edges,
)


def build(small: bool, num_classes: int = 60) -> SkeletonClassifier:
    if small:
        bb = STGCN({"layout": "nturgb+d", "mode": "spatial"}, base_channels=16, num_stages=4,
                   inflate_stages=(3,), down_stages=(3,), backend="dense")
    else:
        bb = STGCN({"layout": "nturgb+d", "mode": "spatial"}, backend="dense")
    return SkeletonClassifier(bb, GCNHead(num_classes, bb.out_channels))


def interleaved(fns: dict, rounds: int, device: torch.device, warmup: int = 1,
                clock: str = "wall") -> dict[str, dict]:
    """Time every function once per round, in turn (:func:`pyg_sparse_stgcn.timing.interleaved_times`), so
    that load from other processes hits all of them; report min, median and max seconds per function.
    ``clock='thread'`` measures the calling thread's CPU time (``time.thread_time``; with
    ``torch.set_num_threads(1)`` all compute runs on it), which other processes on a shared machine cannot
    inflate by preempting us."""
    tick = time.thread_time if clock == "thread" else time.perf_counter
    times = time_interleaved(fns, rounds, warmup, device, clock=tick)
    return {k: {"min_s": v["min_s"], "median_s": v["median_s"], "max_s": max(v["times_s"]),
                "times_s": v["times_s"]} for k, v in times.items()}


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


def bench_export(small: bool, repeats: int, clock: str = "wall", quick: bool = False) -> tuple[list[dict], dict]:
    N, T = (2, 16) if quick else (4, 32) if small else (8, 100)
    x = torch.randn(N, 2, T, 25, 3)
    torch.manual_seed(0)
    dense = build(small).eval()
    rep0 = report(dense)
    rows = []
    for s in ((0.95,) if quick else (0.8, 0.95, 0.99)):
        masked = copy.deepcopy(dense)
        prune(masked, s, scope="layer")
        masked.eval()
        exported = to_sparse_kernels(masked, x, repeats=3)
        res = exported.export_result
        with torch.no_grad():
            err = float((exported(x) - masked(x)).abs().max())
            t = interleaved({"dense": lambda: dense(x), "masked": lambda m=masked: m(x),
                             "exported": lambda m=exported: m(x)}, repeats, torch.device("cpu"),
                            clock=clock)
        rep = report(masked)
        if isinstance(exported, ChannelMajorSTGCN):
            csr_nnz = sum(p.nnz for p in exported.products() if p.use_csr)
        else:
            csr_nnz = sum(m.nnz for m in exported.modules() if isinstance(m, (CSRLinear, CSRTemporalConv)))
        replaced = [c.name for c in res.products if c.sparse]
        sparse_aggs = [a.name for a in res.aggregations if a.choice == "sparse"]
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
            "csr_nonzeros": csr_nnz, "edges_removed": res.edges_removed,
            "layers_replaced": len(replaced), "layers_considered": len(res.products),
            "aggregations_sparse": len(sparse_aggs), "aggregations_considered": len(res.aggregations),
            "export_result": res.to_dict(),
        })
        tag = f"[cpu, {clock} clock, {torch.get_num_threads()} threads]"
        print(f"{tag} export s={s}: dense {1e3 * d['min_s']:.1f} ms, "
              f"masked {1e3 * t['masked']['min_s']:.1f} ms, exported {1e3 * e['min_s']:.1f} ms (min); "
              f"speedup min {rows[-1]['speedup_min']:.2f}x, "
              f"median {rows[-1]['speedup_median']:.2f}x; CSR {len(replaced)}/{len(res.products)}, "
              f"sparse aggregation {len(sparse_aggs)}/{len(res.aggregations)} ({res.layout}), "
              f"err {err:.1e}", flush=True)
    return rows, rep0.parameters


# --------------------------------------------------------------------------------------------------------
# aggregation over joints against edge sparsity
# --------------------------------------------------------------------------------------------------------

def mask_real_edges(model: nn.Module, sparsity: float) -> dict[str, int]:
    """Mask, in every graph convolution, exactly ``floor(s n + 1/2)`` of its ``n`` real entries
    (``edge_real``), smallest ``|edge_weight_base()|`` first (ties: lower flat index first): :func:`prune`
    with ``scope='layer'`` on edges only. Returns the real and kept entry counts."""
    edges = prune(model, sparsity, scope="layer", kinds="edge").kinds["edge"]
    return {"real_entries": edges["total"], "kept_entries": edges["kept"]}


def _aggregation_only(conv: STGCNConv, backend: str) -> STGCNConv:
    """A layer that aggregates exactly like the folded, edge-pruned ``conv`` and does nothing else: its graph
    is ``conv.adjacency()`` (the kept entries), its input what ``conv.conv`` outputs ``(B, T, V, K C)``."""
    K, C = conv.num_subsets, conv.out_channels
    agg = STGCNConv(K * C, C, conv.adjacency().detach(), adaptive=None, conv_pos="pre", backend=backend,
                    norm=None, act=None)
    agg.conv = nn.Identity()
    return agg.eval()


def _edges_row(dense: nn.Module, x: torch.Tensor, s: float, repeats: int, clock: str) -> dict:
    """One edge sparsity of :func:`bench_edges`."""
    cpu = torch.device("cpu")
    masked = copy.deepcopy(dense)
    counts = mask_real_edges(masked, s)
    folded = fold(masked).eval()
    removed = remove_pruned_edges(folded)
    convs = [m for m in folded.modules() if isinstance(m, STGCNConv)]
    inputs: dict[int, torch.Tensor] = {}
    hooks = [c.register_forward_pre_hook(lambda m, a, i=i: inputs.setdefault(i, a[0]))
             for i, c in enumerate(convs)]
    y_ref = folded(x)
    for h in hooks:
        h.remove()
    cm = ChannelMajorSTGCN(folded).eval()
    gcs = cm.graph_convs()
    cm_in: dict[int, torch.Tensor] = {}
    hooks = [g.register_forward_pre_hook(lambda m, a, i=i: cm_in.setdefault(i, a[0].clone()))
             for i, g in enumerate(gcs)]
    err_cm = float((cm(x) - y_ref).abs().max())
    for h in hooks:
        h.remove()

    # (a) the aggregation alone, on the 1x1 convolution's output
    h_cl = [c.conv(inputs[i]) for i, c in enumerate(convs)]  # (B, T, V, K C)
    aggs = {b: [_aggregation_only(c, b) for c in convs] for b in ("dense", "sparse", "scatter")}
    h_cm = [(g.weight.view(-1, g.in_channels) @ cm_in[i].reshape(g.in_channels, -1)).view(-1, *cm_in[i].shape[1:])
            for i, g in enumerate(gcs)]  # (L C_out, T, B, V)

    def layer_agg(b: str) -> list:
        return [a(h) for a, h in zip(aggs[b], h_cl)]

    def cm_agg() -> list:
        return [g.aggregate_dense(h) for g, h in zip(gcs, h_cm)]

    ref = layer_agg("dense")
    agg_err = max((float((o - r).abs().max()) for b in aggs for o, r in zip(layer_agg(b), ref)), default=0.0)
    fns_a = {f"layer_{b}": (lambda b=b: layer_agg(b)) for b in aggs}
    fns_a["channel_major_dense"] = cm_agg
    t_a = interleaved(fns_a, repeats, cpu, clock=clock)

    # (b) the graph convolution: 1x1 convolution + aggregation
    layers = {}
    for b in ("dense", "sparse", "scatter"):
        layers[b] = [copy.deepcopy(c) for c in convs]
        for c in layers[b]:
            c.backend = b

    def layer_conv(b: str) -> list:
        return [c(inputs[i]) for i, c in enumerate(layers[b])]

    def cm_conv(kind: str) -> list:
        out = []
        for i, g in enumerate(gcs):
            g.aggregation = kind
            out.append(g(cm_in[i]))
        return out

    cm_dense = [o.clone() for o in cm_conv("dense")]
    cm_err = max((float((a - b).abs().max()) for a, b in zip(cm_dense, cm_conv("sparse"))), default=0.0)
    fns_b = {f"layer_{b}": (lambda b=b: layer_conv(b)) for b in layers}
    fns_b["channel_major_dense"] = lambda: cm_conv("dense")
    fns_b["channel_major_sparse"] = lambda: cm_conv("sparse")
    t_b = interleaved(fns_b, repeats, cpu, clock=clock)
    row = {
        "edge_sparsity_of_real_entries": s, **counts, "edges_removed": removed,
        "candidate_edges_left": sum(c.num_edges for c in convs),
        "live_subsets": sum(g.num_subsets for g in gcs),
        "aggregation_only": t_a, "graph_conv": t_b,
        "max_abs_diff_between_layer_backends": agg_err,
        "max_abs_diff_channel_major_dense_vs_sparse": cm_err,
        "max_abs_err_channel_major_vs_folded_model": err_cm,
    }
    print(f"[cpu, {clock} clock, {torch.get_num_threads()} threads] edges s={s}: kept "
          f"{counts['kept_entries']}/{counts['real_entries']} real entries; aggregation only (median ms) "
          + ", ".join(f"{k} {1e3 * v['median_s']:.2f}" for k, v in t_a.items())
          + "; graph conv (median ms) "
          + ", ".join(f"{k} {1e3 * v['median_s']:.2f}" for k, v in t_b.items()), flush=True)
    return row


@torch.no_grad()
def bench_edges(small: bool, repeats: int, quick: bool = False, clock: str = "wall") -> dict:
    N, T = (2, 16) if quick else (4, 32) if small else (8, 100)
    x = torch.randn(N, 2, T, 25, 3)
    torch.manual_seed(0)
    dense = build(small).eval()
    rows = [_edges_row(dense, x, s, repeats, clock) for s in (0.0, 0.5, 0.8, 0.95)]
    return {"clock": clock, "torch_threads": torch.get_num_threads(), "input": [N, 2, T, 25, 3],
            "layers": len(dense.backbone.gcn), "weights": "dense (no weight masks)",
            "edge_masks": "per layer, exact count of real entries, smallest |edge_weight_base()| first",
            "timed_over": "all graph convolutions of the model, each on the input it gets from `input`",
            "rows": rows}


SECTIONS = ("generator", "export", "edges")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", action="store_true", help="small model and inputs")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run in seconds: small model, tiny inputs, 2 repeats, one thread setting; "
                         "writes JSON only with --out")
    ap.add_argument("--repeats", type=int, default=5, help="timed repetitions per measurement")
    ap.add_argument("--sections", default=",".join(SECTIONS),
                    help=f"comma-separated subset of {','.join(SECTIONS)} (default: all)")
    ap.add_argument("--out", default=None,
                    help="output JSON (default benchmarks/results/sparsity[_small].json)")
    args = ap.parse_args()
    sections = [x for x in args.sections.split(",") if x]
    if any(x not in SECTIONS for x in sections):
        ap.error(f"--sections: unknown section in {args.sections!r}; valid: {', '.join(SECTIONS)}")
    small = args.small or args.quick
    repeats = 2 if args.quick else args.repeats
    payload = {"machine": machine_info("cpu"), "model": "ST-GCN small (16 ch, 4 stages)" if small
               else "ST-GCN (PYSKL default: 10 stages, 64/128/256 ch), NTU layout, spatial graph, 60 classes"}
    loads: dict[str, dict[str, list[float]]] = {}  # the machine is shared: load average around each section

    def section(name: str, fn, *a, **kw):
        start = [round(v, 2) for v in os.getloadavg()]
        out = fn(*a, **kw)
        loads[name] = {"start": start, "end": [round(v, 2) for v in os.getloadavg()]}
        return out

    if "generator" in sections:
        payload["generator_step"] = {"cpu": section("generator_step.cpu", bench_generator, small,
                                                    torch.device("cpu"), repeats)}
        if torch.cuda.is_available() and not args.quick:
            payload["generator_step"]["cuda"] = bench_generator(small, torch.device("cuda"), repeats)
    if "export" in sections:
        rows, dense_params = section("export_inference_cpu", bench_export, small, repeats, quick=args.quick)
        payload["export_inference_cpu"] = rows
        payload["dense_parameters"] = dense_params
    if "edges" in sections:
        payload["edge_aggregation_cpu"] = section("edge_aggregation_cpu", bench_edges, small, repeats,
                                                  quick=args.quick)
    # The same on one thread, timed by the thread's CPU time: robust to other processes on a shared machine.
    if not args.quick:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            if "generator" in sections:
                payload["generator_step"]["cpu_1thread_cputime"] = section(
                    "generator_step.cpu_1thread_cputime", bench_generator, small, torch.device("cpu"), repeats,
                    clock="thread")
            if "export" in sections:
                payload["export_inference_cpu_1thread_cputime"] = section(
                    "export_inference_cpu_1thread_cputime", bench_export, small, repeats, clock="thread")[0]
            if "edges" in sections:
                payload["edge_aggregation_cpu_1thread_cputime"] = section(
                    "edge_aggregation_cpu_1thread_cputime", bench_edges, small, repeats, clock="thread")
        finally:
            torch.set_num_threads(threads)
    payload["load_average_per_section"] = loads
    payload["machine"]["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    if args.quick and args.out is None:
        print("--quick: no JSON written (pass --out to write one)")
        return
    name = "sparsity_small.json" if small else "sparsity.json"
    out = Path(args.out) if args.out else RESULTS_DIR / name
    write_results(out, payload)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
