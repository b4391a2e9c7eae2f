"""Sparsity benchmark: sparse inference of the exported ST-GCN against the fastest dense path of the same
model (issue 12 item 3), the generator's training-step overhead, and the aggregation over joints against edge
sparsity.

1. ``grid`` (default): the full PYSKL ST-GCN (10 stages, 64/128/256 channels, NTU layout, spatial graph, 60
   classes) on NTU windows ``(N, M=2, T=100, V=25, C=3)`` for N in {1 (streaming), 8, 64}, on 1 and 2 threads.
   Masks: ``uniform_layer`` (magnitude, every weight tensor at the same sparsity: ``prune(scope='layer',
   kinds='weight')``) and ``generator_global`` (the sparse generator's masks at its target sparsity:
   ``SparseGenerator(model, s)``, weights, one global threshold over kaiming-uniform scores, so layers end up
   unevenly sparse: these are the generator's masks at initialisation, where the score scale 1/sqrt(fan_in)
   removes the high-fan-in temporal convolutions first — every weight of some of them, listed per export as
   ``empty_products`` — the most uneven case, not a trained generator's masks), each at 95 % and 99 %,
   exported with :func:`to_sparse_kernels` (``layout='auto'``: the
   fastest of its layouts on the example batch). Dense paths of the same architecture, each measured: the eager
   model (``'dense'`` aggregation backend), the folded channel-major dense model (BN folded, dense products and
   aggregation: ``to_sparse_kernels(layout='channel_major', force=False, aggregation='dense')``) and the eager
   model under ``torch.compile`` and under ``compile_model`` (inductor's layout pass off; both skipped with
   ``--no-compile``); the fastest per cell is the reference. A dense
   GEMM does the same work whatever the weights' values, so one set of dense timings per (batch, threads) serves
   all four sparse models, timed in the same interleaved rounds. Clock: the thread's CPU time on 1 thread (other
   processes cannot inflate it), the wall clock on 2 threads. ``speedup`` = fastest dense median / sparse median.
2. ``generator``: one training step of a :class:`SparseGenerator`-wrapped ST-GCN divided by the same step of the
   dense model (target <= 1.15 on CPU), past the warm-up.
3. ``edges`` (not in the default run): the aggregation over joints against edge sparsity (0 / 50 / 80 / 95 %
   of every layer's real entries removed), summed over all graph convolutions, in the layer backends and the
   channel-major kernels.

Timings are on a possibly shared machine; the JSON records the load average around every section.

Usage (from the repository root)::

    python benchmarks/bench_sparsity.py                  # grid + generator, about 10 minutes
    python benchmarks/bench_sparsity.py --quick          # batch 1 only, no compile, 3 rounds (no JSON
                                                         # unless --out is given)
    python benchmarks/bench_sparsity.py --sections edges # only the edge-aggregation section
    python benchmarks/bench_sparsity.py --table benchmarks/results/sparsity.json  # docs/sparsity.md's tables
    python benchmarks/bench_sparsity.py --sparsities 0.5,0.7,0.8,0.9 --batches 1,8 --sections grid \
        --out benchmarks/results/sparsity_breakeven.json  # where sparse stops paying (no targets there)
"""
from __future__ import annotations

import argparse
import copy
import functools
import json
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS_DIR, machine_info, markdown_table, time_interleaved, write_results  # noqa: E402

from pyg_sparse_stgcn.nn import STGCN, GCNHead, SkeletonClassifier, STGCNConv, compile_model  # noqa: E402
from pyg_sparse_stgcn.sparsity import (  # noqa: E402
    SparseGenerator,
    fold,
    prune,
    report,
    to_sparse_kernels,
)
from pyg_sparse_stgcn.sparsity.export import (  # noqa: E402
    ChannelMajorSTGCN,
    JointMajorSTGCN,
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


def sparse_models(dense: nn.Module, s: float) -> dict[str, nn.Module]:
    """The two mask families of the grid at sparsity ``s`` (copies of ``dense``; weights only), on ``dense``'s
    device (the generator's scores are drawn on the CPU, so that both devices get the same masks)."""
    device = next(dense.parameters()).device
    uniform = copy.deepcopy(dense)
    prune(uniform, s, scope="layer", kinds="weight")
    torch.manual_seed(0)
    gen = SparseGenerator(copy.deepcopy(dense).cpu(), s).to(device)  # weights, global threshold, kaiming scores
    return {"uniform_layer": uniform.eval(), "generator_global": gen.eval()}


def _export_row(model: nn.Module, x: torch.Tensor, repeats: int) -> tuple[nn.Module, dict]:
    """``to_sparse_kernels(model, x)`` with what it decided, how long it took and its error."""
    t0 = time.perf_counter()
    exported = to_sparse_kernels(model, x, repeats=repeats)
    seconds = time.perf_counter() - t0
    res = exported.export_result
    with torch.no_grad():
        ref = model(x)
        err = float((exported(x) - ref).abs().max())
    spars = [c.sparsity for c in res.products]
    rep = report(model).kinds["weight"]
    info = {"export_seconds": round(seconds, 2), "example_input": list(x.shape), "layout": res.layout,
            "layout_choice": res.to_dict()["layout_choice"],
            "max_abs_err_vs_masked": err, "max_abs_output": float(ref.abs().max()),
            "weight_sparsity": rep["sparsity"], "kept_weights": rep["kept"], "maskable_weights": rep["total"],
            "operator_sparsity_min_max": [min(spars, default=0.0), max(spars, default=0.0)],
            # products whose every weight is removed (their output is the bias, plus the residual)
            "empty_products": [c.name for c in res.products if c.sparsity >= 1.0],
            "sparse_products": sum(c.sparse for c in res.products), "products": len(res.products),
            "edges_removed": res.edges_removed}
    if isinstance(exported, JointMajorSTGCN):
        info["stored_nonzeros"] = exported.nnz
    return exported, info


#: Issue 12's targets: the speed-up over the fastest dense path at these weight sparsities.
TARGETS = {0.95: 3.0, 0.99: 5.0}


def bench_grid(repeats: int, batches: tuple[int, ...], threads: tuple[int, ...], compile_dense: bool,
               export_repeats: int, on_cell=None, sparsities: tuple[float, ...] = tuple(TARGETS),
               device: torch.device | str = "cpu") -> dict:
    """Issue 12 item 3: every sparse model against the fastest dense path, per (batch, threads);
    ``on_cell(result_so_far)`` after every cell (the script writes the JSON each time, so that an interrupted
    run keeps what it measured). On CUDA the thread count does not apply: one cell per batch, wall clock
    between synchronisations."""
    device = torch.device(device)
    torch.manual_seed(0)
    dense = build(False).eval().to(device)
    if device.type == "cuda":
        threads = (torch.get_num_threads(),)
    masked = {(kind, s): m for s in sparsities for kind, m in sparse_models(dense, s).items()}
    default_threads = torch.get_num_threads()
    exports: dict[tuple[str, float], nn.Module] = {}
    export_info: dict[str, dict] = {}
    # every kernel and layout choice is measured on one streaming window (N = 1), and the export serves every
    # batch size (its workspaces follow the input)
    x1 = torch.randn(1, 2, 100, 25, 3, device=device)
    for (kind, s), m in masked.items():
        exports[(kind, s)], info = _export_row(m, x1, export_repeats)
        export_info[f"{kind}@{s}"] = info
        print(f"export {kind} s={s}: {info['layout']} in {info['export_seconds']} s, "
              f"err {info['max_abs_err_vs_masked']:.1e}, operator sparsity "
              f"{info['operator_sparsity_min_max'][0]:.3f}-{info['operator_sparsity_min_max'][1]:.3f}",
              flush=True)
    folded_dense = to_sparse_kernels(dense, x1, layout="channel_major", force=False,
                                     aggregation="dense", repeats=1)
    # inductor's defaults and the library's compile_model (layout pass off): the faster one is the reference
    compiled = {"dense_compiled": torch.compile(dense), "dense_compile_model": compile_model(dense)} \
        if compile_dense else {}
    cells: list[dict] = []
    result = {"device": str(device),
              "model": "ST-GCN (PYSKL default: 10 stages, 64/128/256 ch), NTU layout, spatial graph, 60 classes",
              "input": "(N, 2, 100, 25, 3)", "masks": {
                  "uniform_layer": "prune(model, s, scope='layer', kinds='weight'): every weight tensor at s",
                  "generator_global": "SparseGenerator(model, s) folded at its target: weights, one global "
                                      "threshold over kaiming-uniform scores (uneven per layer)"},
              "dense_paths": {"dense_eager": "the model, 'dense' aggregation backend",
                              "dense_folded": "to_sparse_kernels(layout='channel_major', force=False, "
                                              "aggregation='dense'): BN folded, dense GEMMs",
                              "dense_compiled": "torch.compile(model)",
                              "dense_compile_model": "pyg_sparse_stgcn.nn.compile_model(model) (inductor's "
                                                     "layout pass off)"},
              "exports": export_info, "cells": cells, "complete": False}
    for n in batches:
        x = torch.randn(n, 2, 100, 25, 3, device=device)
        fns = {"dense_eager": functools.partial(dense, x), "dense_folded": functools.partial(folded_dense, x)}
        compile_s: dict[str, float] = {}
        for name, net in compiled.items():
            t0 = time.perf_counter()
            with torch.no_grad():
                err = float((net(x) - dense(x)).abs().max())  # .item() waits for the GPU
            compile_s[name] = time.perf_counter() - t0
            tol = 1e-4 if device.type == "cpu" else 1e-3  # CUDA: float32 too (TF32 off), other summation orders
            if err > tol:
                raise RuntimeError(f"{name}: the compiled dense model differs from the eager one by {err}")
            fns[name] = functools.partial(net, x)
        for (kind, s) in masked:
            fns[f"sparse_{kind}@{s}"] = functools.partial(exports[(kind, s)], x)
        rounds = repeats if n <= 8 else max(2, repeats // 2)
        for th in threads:
            torch.set_num_threads(th)
            clock = "thread" if th == 1 and device.type == "cpu" else "wall"
            load0 = [round(v, 2) for v in os.getloadavg()]
            with torch.no_grad():
                t = interleaved(fns, rounds, device, clock=clock)
            load1 = [round(v, 2) for v in os.getloadavg()]
            dense_names = [k for k in t if k.startswith("dense_")]
            best = min(dense_names, key=lambda k: t[k]["median_s"])
            cell = {"batch": n, "threads": th, "clock": clock, "rounds": rounds, "load_average_start": load0,
                    "load_average_end": load1, "compile_seconds": compile_s, "fastest_dense": best,
                    "times": t, "rows": []}
            for (kind, s) in masked:
                sp = t[f"sparse_{kind}@{s}"]
                speed = t[best]["median_s"] / sp["median_s"]
                target = TARGETS.get(s)
                cell["rows"].append({
                    "masks": kind, "sparsity": s, "layout": export_info[f"{kind}@{s}"]["layout"],
                    "dense_median_ms": 1e3 * t[best]["median_s"], "sparse_median_ms": 1e3 * sp["median_s"],
                    "speedup_median": speed,
                    "speedup_range": [t[best]["min_s"] / sp["max_s"], t[best]["max_s"] / sp["min_s"]],
                    "windows_per_s": n / sp["median_s"], "target": target,
                    "meets_target": None if target is None else speed >= target})
                goal = f"x{target:g}" if target else "none"
                print(f"[N={n}, {th} thread(s), {clock} clock] {kind} s={s}: dense ({best}) "
                      f"{1e3 * t[best]['median_s']:.1f} ms, sparse {1e3 * sp['median_s']:.1f} ms: "
                      f"x{speed:.2f} (target {goal}); {n / sp['median_s']:.1f} windows/s", flush=True)
            cells.append(cell)
            if on_cell is not None:
                on_cell(result)
    torch.set_num_threads(default_threads)
    result["complete"] = True
    return result


def grid_table(grid: dict) -> str:
    """The grid of a results file (``payload["sparse_vs_dense"]``) as the markdown table docs/sparsity.md
    quotes: one row per (batch, threads, masks, sparsity), speed-up = fastest dense median / sparse median."""
    rows = []
    for cell in grid["cells"]:
        for row in cell["rows"]:
            lo, hi = row["speedup_range"]
            target = "none" if row["target"] is None else (
                f"x{row['target']:g} {'met' if row['meets_target'] else 'missed'}")
            rows.append([cell["batch"], f"{cell['threads']} ({cell['clock']})", cell["fastest_dense"], row["masks"],
                         f"{row['sparsity']:g}", f"{row['dense_median_ms']:.1f}", f"{row['sparse_median_ms']:.1f}",
                         f"**x{row['speedup_median']:.2f}**", f"{lo:.2f}-{hi:.2f}", f"{row['windows_per_s']:.1f}",
                         target])
    return "\n".join(markdown_table(["batch", "threads (clock)", "fastest dense", "mask", "sparsity", "dense ms",
                                     "sparse ms", "speedup (median)", "range", "windows/s", "target"], rows))


def breakeven_table(grid: dict) -> str:
    """A grid below the targeted sparsities (``--sparsities 0.5,...``) as docs/sparsity.md's break-even table:
    one row per (masks, sparsity), the median speed-up per (batch, threads)."""
    cols = [(c["batch"], c["threads"]) for c in grid["cells"]]
    speed = {(c["batch"], c["threads"], r["masks"], r["sparsity"]): r["speedup_median"]
             for c in grid["cells"] for r in c["rows"]}
    keys = sorted({(r["sparsity"], r["masks"]) for c in grid["cells"] for r in c["rows"]},
                  key=lambda k: (k[0], k[1] != "uniform_layer"))
    header = ["mask", "sparsity", "layout `auto` chose"] + [
        f"batch {n}, {t} thread{'s' if t > 1 else ''}" for n, t in cols]
    rows = [[masks, f"{sp:.2f}", grid["exports"][f"{masks}@{sp}"]["layout"]]
            + [f"x{speed[(n, t, masks, sp)]:.2f}" for n, t in cols] for sp, masks in keys]
    return "\n".join(markdown_table(header, rows))


def generator_table(steps: dict) -> str:
    """The generator section of a results file (``payload["generator_step"]``) as docs/sparsity.md's table:
    dense step → generator step (min), min / median ratio, per masks and clock."""
    label = {("weight",): "weights", ("weight", "edge"): "weights + edges"}
    rows = []
    for wall, cpu in zip(steps["cpu"], steps.get("cpu_1thread_cputime", [None] * len(steps["cpu"]))):
        cells = [f"{1e3 * r['dense_step']['min_s']:.1f} → {1e3 * r['generator_step']['min_s']:.1f} ms: "
                 f"**{r['ratio_min']:.3f}** / {r['ratio_median']:.3f}" if r else "not run" for r in (wall, cpu)]
        rows.append([label.get(tuple(wall["kinds"]), "+".join(wall["kinds"])), wall["scope"], *cells])
    return "\n".join(markdown_table(["masks", "scope", "wall clock, 2 threads (min / median ratio)",
                                     "thread CPU time, 1 thread (min / median ratio)"], rows))


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


SECTIONS = ("grid", "generator", "edges")
DEFAULT_SECTIONS = ("grid", "generator")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: grid at batch 1 only, no torch.compile, 3 rounds; generator and edges "
                         "sections on the small model; writes JSON only with --out")
    ap.add_argument("--repeats", type=int, default=7, help="interleaved rounds per measurement (batch 64: half)")
    ap.add_argument("--batches", default="1,8,64", help="grid batch sizes (comma-separated)")
    ap.add_argument("--threads", default="1,2", help="grid thread counts (comma-separated)")
    ap.add_argument("--sparsities", default=",".join(f"{v:g}" for v in TARGETS),
                    help="grid weight sparsities (comma-separated; issue 12's targets exist for 0.95 and 0.99)")
    ap.add_argument("--no-compile", action="store_true", help="leave torch.compile out of the dense paths")
    ap.add_argument("--sections", default=",".join(DEFAULT_SECTIONS),
                    help=f"comma-separated subset of {','.join(SECTIONS)} (default: "
                         f"{','.join(DEFAULT_SECTIONS)})")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                    help="where the grid and the generator step run (the edges section is CPU only)")
    ap.add_argument("--out", default=None,
                    help="output JSON (default benchmarks/results/sparsity.json, sparsity_cuda.json on cuda)")
    ap.add_argument("--table", metavar="JSON", default=None,
                    help="measure nothing: print the grid and generator sections of this results file as the "
                         "markdown tables of docs/sparsity.md")
    args = ap.parse_args()
    if args.table:
        payload = json.loads(Path(args.table).read_text(encoding="utf-8"))
        grid, steps = payload.get("sparse_vs_dense"), payload.get("generator_step")
        if not (grid and "cells" in grid) and not (steps and "cpu" in steps):
            ap.error(f"--table: {args.table} has neither a grid (sparse_vs_dense.cells) nor generator steps")
        targeted = grid and any(r["target"] is not None for c in grid["cells"] for r in c["rows"])
        tables = [] if not (grid and "cells" in grid) else [grid_table(grid) if targeted else breakeven_table(grid)]
        print("\n\n".join(tables + ([generator_table(steps)] if steps and "cpu" in steps else [])))
        return
    sections = [x for x in args.sections.split(",") if x]
    if any(x not in SECTIONS for x in sections):
        ap.error(f"--sections: unknown section in {args.sections!r}; valid: {', '.join(SECTIONS)}")
    try:
        batches = tuple(int(b) for b in args.batches.split(",") if b)
        threads = tuple(int(t) for t in args.threads.split(",") if t)
    except ValueError:
        ap.error(f"--batches / --threads: comma-separated positive integers expected, got {args.batches!r}, "
                 f"{args.threads!r}")
    if not batches or not threads or min(batches + threads) < 1:
        ap.error("--batches / --threads: comma-separated positive integers expected")
    try:
        sparsities = tuple(float(v) for v in args.sparsities.split(",") if v)
    except ValueError:
        sparsities = ()
    if not sparsities or not all(0 < v < 1 for v in sparsities):
        ap.error(f"--sparsities: comma-separated fractions in (0, 1) expected, got {args.sparsities!r}")
    if args.quick:
        batches, repeats = (1,), 3
    else:
        repeats = args.repeats
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA device is available here")
    if device.type == "cuda" and "edges" in sections:
        ap.error("--sections edges: the edge-aggregation section is CPU only (leave it out with --device cuda)")
    if device.type == "cuda":  # float32 everywhere: cuDNN's TF32 default would give the dense paths fewer bits
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    payload: dict = {"machine": machine_info(device)}
    loads: dict[str, dict[str, list[float]]] = {}  # the machine is shared: load average around each section

    def section(name: str, fn, *a, **kw):
        start = [round(v, 2) for v in os.getloadavg()]
        out = fn(*a, **kw)
        loads[name] = {"start": start, "end": [round(v, 2) for v in os.getloadavg()]}
        return out

    out = Path(args.out) if args.out else RESULTS_DIR / ("sparsity_cuda.json" if device.type == "cuda"
                                                         else "sparsity.json")
    write = not args.quick or args.out is not None

    def partial(grid: dict) -> None:
        if write:
            write_results(out, payload | {"sparse_vs_dense": grid})

    if "grid" in sections:
        payload["sparse_vs_dense"] = section("sparse_vs_dense", bench_grid, repeats, batches, threads,
                                             not (args.quick or args.no_compile), 1, partial, sparsities, device)
    if "generator" in sections:
        payload["generator_step"] = {device.type: section(f"generator_step.{device.type}", bench_generator,
                                                          args.quick, device, repeats)}
        if not args.quick and device.type == "cpu":
            th = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                payload["generator_step"]["cpu_1thread_cputime"] = section(
                    "generator_step.cpu_1thread_cputime", bench_generator, False, torch.device("cpu"), repeats,
                    clock="thread")
            finally:
                torch.set_num_threads(th)
    if "edges" in sections:
        payload["edge_aggregation_cpu"] = section("edge_aggregation_cpu", bench_edges, args.quick, repeats,
                                                  quick=args.quick)
    payload["load_average_per_section"] = loads
    payload["machine"]["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    if not write:
        print("--quick: no JSON written (pass --out to write one)")
        return
    write_results(out, payload)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
