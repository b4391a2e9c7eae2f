"""Deployment benchmark: batch-1 window latency (p50, p99) and windows/s of ST-GCN for dense torch, the
95 %-sparse export (``to_sparse_kernels``) and onnxruntime, at NTU (T = 100, V = 25, M = 2) and Kinetics
(T = 100, V = 18, M = 2) windows, with 1 and 2 threads; and the streaming recognizer's per-prediction latency
(pipeline included) on the NTU window.

The models are PYSKL's ST-GCN (10 blocks, 64/128/256 channels, ``stgcn_spatial`` graph, importance
weighting) with random weights. The 95 %-sparse models are the two mask families of
``bench_sparsity.py`` (weights only), each exported with ``to_sparse_kernels``: ``uniform_layer`` (magnitude,
every weight tensor at 95 %, what ``scope = "layer"`` recipes train) and ``generator_global`` (the sparse
generator's masks at its target: one global threshold over kaiming-uniform scores, uneven per layer). The
cost of inference depends on how many weights each layer keeps, not on what they learned. A *global
magnitude* threshold over random weights is not used: it keeps none of the temporal convolutions' weights
(their init scale is 1/3 of the graph convolutions'), a degenerate model no training produces. The runtimes
are timed round-robin per (window, threads) so that a changing load on a shared CPU hits them alike, in
blocks of ``BLOCK`` timed calls after one untimed call: a deployed model runs alone, and the call after
another runtime's pays for that runtime's thread pool still spinning and its data leaving the caches.

Reference, on different hardware: OpenDR reports 13.26 inferences/s for ST-GCN on an Intel Xeon Gold 6230R
CPU (OpenDR documentation, skeleton-based action recognition benchmarks). It is quoted, not re-measured; the
JSON states this machine's CPU beside it. Issue 15's target: the 95 %-sparse model >= 40 windows/s at batch 1
(three times OpenDR's figure). Every cell records the load average before and after it (the machine is shared).

Usage (from the repository root)::

    python benchmarks/bench_deploy.py              # writes benchmarks/results/deploy.json
    python benchmarks/bench_deploy.py --quick      # fewer repeats
    python benchmarks/bench_deploy.py --threads 1  # one thread only
    python benchmarks/bench_deploy.py --table benchmarks/results/deploy.json  # docs/deploy.md's table
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS_DIR, machine_info, markdown_table, write_results  # noqa: E402
from bench_sparsity import sparse_models  # noqa: E402

from pyg_sparse_stgcn.deploy import OnnxModel, PipelineSpec, Predictor, StreamingRecognizer, export_onnx  # noqa: E402
from pyg_sparse_stgcn.nn import STGCN, GCNHead, SkeletonClassifier  # noqa: E402
from pyg_sparse_stgcn.sparsity.export import to_sparse_kernels  # noqa: E402

OPENDR = {"inferences_per_s": 13.26, "model": "ST-GCN", "hardware": "Intel Xeon Gold 6230R (OpenDR docs)",
          "note": "quoted from OpenDR's documentation; different hardware, not measured here"}
#: Timed calls per runtime in a row (after an untimed one) in every round.
BLOCK = 5
TARGET_WINDOWS_PER_S = 40.0  # issue 15: the 95 %-sparse model at batch 1, three times OpenDR's figure
WINDOWS = {"ntu": ("nturgb+d", 60), "kinetics": ("openpose", 400)}


def build(layout: str, classes: int) -> torch.nn.Module:
    torch.manual_seed(0)
    bb = STGCN({"layout": layout, "mode": "stgcn_spatial"}, in_channels=3, gcn_adaptive="importance")
    return SkeletonClassifier(bb, GCNHead(classes, bb.out_channels)).eval()


def stats(times: list[float]) -> dict[str, float]:
    ms = sorted(1e3 * t for t in times)
    p99 = ms[min(len(ms) - 1, int(round(0.99 * (len(ms) - 1))))]
    return {"p50_ms": round(statistics.median(ms), 2), "p99_ms": round(p99, 2),
            "mean_ms": round(statistics.fmean(ms), 2), "windows_per_s": round(1e3 / statistics.fmean(ms), 2),
            "runs": len(ms)}


#: The columns of docs/deploy.md's table: results key → header.
TABLE_COLUMNS = {"dense_torch": "dense torch", "sparse95_uniform_layer": "95 % export, uniform masks",
                 "sparse95_generator_global": "95 % export, generator masks",
                 "onnxruntime_dense": "onnxruntime dense", "onnxruntime_95_folded": "onnxruntime 95 % (folded)"}


def windows_table(results: dict) -> str:
    """The window cells of a results file as docs/deploy.md's table: windows/s (p50 latency) per runtime."""
    rows = []
    for name, cell in results["windows"].items():
        window, threads = name.split("_threads")
        entries = []
        for key in TABLE_COLUMNS:
            r = cell.get(key)
            if r is None:
                entries.append("not run")
                continue
            rate = f"{r['windows_per_s']:.1f}"
            entries.append(f"{f'**{rate}**' if key.startswith('sparse') else rate} ({r['p50_ms']:.1f} ms)")
        label = "NTU" if window == "ntu" else window.capitalize()
        rows.append([f"{label}, {threads}", *entries])
    return "\n".join(markdown_table(["window, threads", *TABLE_COLUMNS.values()], rows))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=40)
    ap.add_argument("--quick", action="store_true", help="8 repeats instead of --repeats")
    ap.add_argument("--threads", default="1,2", help="thread counts, comma-separated (default 1,2)")
    ap.add_argument("--out", default=str(RESULTS_DIR / "deploy.json"))
    ap.add_argument("--table", metavar="JSON", default=None,
                    help="measure nothing: print the windows of this results file as docs/deploy.md's table")
    args = ap.parse_args()
    if args.table:
        results = json.loads(Path(args.table).read_text(encoding="utf-8"))
        if not results.get("windows"):
            ap.error(f"--table: {args.table} has no windows")
        print(windows_table(results))
        return
    repeats = 8 if args.quick else args.repeats
    try:
        thread_counts = tuple(int(t) for t in args.threads.split(",") if t)
    except ValueError:
        ap.error(f"--threads: comma-separated positive integers expected, got {args.threads!r}")
    if not thread_counts or min(thread_counts) < 1:
        ap.error(f"--threads: comma-separated positive integers expected, got {args.threads!r}")
    machine = machine_info("cpu")
    results: dict = {"machine": machine, "reference_opendr": OPENDR,
                     "this_machine": f"{machine['cpu']}, {machine['cpu_count']} logical cores (measured here)",
                     "target_sparse_windows_per_s": TARGET_WINDOWS_PER_S, "frames": 100, "persons": 2,
               "timed_calls_per_block": BLOCK,
                     "sparsity": 0.95,
               "masks": {"uniform_layer": "prune(model, 0.95, scope='layer', kinds='weight')",
                         "generator_global": "SparseGenerator(model, 0.95) at its target (weights, one global "
                                             "threshold over kaiming-uniform scores)"},
               "windows": {}, "streaming": {}}
    tmp = tempfile.TemporaryDirectory()
    for wname, (layout, classes) in WINDOWS.items():
        V = 18 if layout == "openpose" else 25
        x = torch.randn(1, 2, 100, V, 3)
        dense = build(layout, classes)
        pruned = sparse_models(dense, 0.95)
        torch.set_num_threads(2)
        sparse = {f"sparse95_{k}": to_sparse_kernels(m, x) for k, m in pruned.items()}
        onnx_path = export_onnx(dense, Path(tmp.name) / f"{wname}.onnx", frames=100, persons=2)
        onnx_sparse_path = export_onnx(pruned["uniform_layer"], Path(tmp.name) / f"{wname}-95.onnx", frames=100,
                                       persons=2)
        for threads in thread_counts:
            torch.set_num_threads(threads)
            runtimes = {"dense_torch": dense, **sparse,
                        "onnxruntime_dense": OnnxModel(onnx_path, threads=threads),
                        "onnxruntime_95_folded": OnnxModel(onnx_sparse_path, threads=threads)}
            times: dict[str, list[float]] = {k: [] for k in runtimes}
            load0 = [round(v, 2) for v in os.getloadavg()]
            with torch.no_grad():
                for m in runtimes.values():
                    for _ in range(2):
                        m(x)
                for _ in range(-(-repeats // BLOCK)):
                    for k, m in runtimes.items():
                        m(x)  # untimed: the previous runtime's threads and data leave
                        for _ in range(BLOCK):
                            t0 = time.perf_counter()
                            m(x)
                            times[k].append(time.perf_counter() - t0)
            entry: dict = {k: stats(v) for k, v in times.items()}
            entry["sparse_export_layout"] = {k: getattr(m, "layout", None) for k, m in sparse.items()}
            entry["load_average_start_end"] = [load0, [round(v, 2) for v in os.getloadavg()]]
            for k in sparse:
                sp = entry[k]["windows_per_s"]
                entry[k] |= {"meets_target": sp >= TARGET_WINDOWS_PER_S,
                             "vs_opendr": round(sp / OPENDR["inferences_per_s"], 2),
                             "vs_dense_torch_p50": round(entry["dense_torch"]["p50_ms"] / entry[k]["p50_ms"], 2)}
            results["windows"][f"{wname}_threads{threads}"] = entry
            print(wname, threads, {k: (v["p50_ms"], v["windows_per_s"]) for k, v in entry.items()
                                   if isinstance(v, dict) and "p50_ms" in v}, flush=True)
        if wname == "ntu":  # streaming: per-prediction latency with the pipeline (T = 100 window, stride 10)
            torch.set_num_threads(2)
            spec = PipelineSpec("3d", layout, clip_len=100, num_person=2, num_classes=classes)
            g = torch.Generator().manual_seed(0)
            frames = (torch.randn(100 + 10 * repeats, 2, V, 3, generator=g) * 0.3 + torch.tensor([0, 0, 3.0]))
            for name, model in (("dense_torch", dense), *sparse.items()):
                rec = StreamingRecognizer(Predictor(model, spec), window=100, stride=10)
                lat = [p.latency_ms / 1e3 for f in frames.numpy() if (p := rec.push(f)) is not None]
                results["streaming"][f"ntu_threads2_{name}"] = stats(lat[1:]) | {"window": 100, "stride": 10}
            print("streaming", results["streaming"], flush=True)
    path = write_results(args.out, results)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
