"""Data benchmark: reader, processing and transform throughput, and whether the loader keeps up with training.

Measured on the real data in ``../shared`` (skipped parts are listed under ``missing``):

* ``readers``: samples/s of reading NTU ``.skeleton`` and Kinetics-skeleton JSON files (from
  ``benchmarks/bench_readers.py``'s :func:`bench_readers`, the readers engineer's benchmark);
* ``processing``: samples/s of building the NW-UCLA train cache (read every JSON file, stream the memmap
  cache);
* ``pipelines``: samples/s of ``dataset[i]`` (cache read + the training transform pipeline) for NW-UCLA
  (``build_pipeline('3d', 'j', 52)``, M=1), the NTU files (``'3d'``, clip_len 100, M=2, ``j+b``) and the
  synthetic demo (``'2d-normalized'``, 32 frames);
* ``loader_vs_training``: NW-UCLA shapes (batch 16, ``(16, 1, 52, 20, 3)``, 10 classes): the median time of
  one ST-GCN training step (``pyg_sparse_stgcn.nn.STGCN`` + ``GCNHead``, forward, backward, SGD) on a
  batch already in memory, the time a 2-worker :class:`SkeletonLoader` takes per batch while nothing else
  runs, and steps fed by that loader (workers and training share the CPU), alternated with in-memory steps;
  it keeps up when a batch takes no longer than a step and a fed step is within 10 % of an in-memory one.

Usage (from the repository root)::

    python benchmarks/bench_data.py            # writes benchmarks/results/data.json
    python benchmarks/bench_data.py --quick    # fewer repeats/steps
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from _common import RESULTS_DIR, machine_info, write_results  # noqa: E402

from pyg_sparse_stgcn.data import SkeletonLoader, build_dataset, build_pipeline  # noqa: E402

DEFAULT_SHARED = Path(__file__).resolve().parents[2] / "shared"


def _readers(shared: Path, repeats: int) -> dict[str, Any]:
    try:
        from bench_readers import bench_readers
    except ImportError:  # the readers benchmark is absent: time the two readers directly
        from pyg_sparse_stgcn.data.readers import read_kinetics_json, read_ntu_skeleton

        out = {}
        for name, pattern, read in (("ntu_skeleton", "*.skeleton", read_ntu_skeleton),
                                    ("kinetics_json", "__*.json", read_kinetics_json)):
            files = sorted((shared / "realdata").glob(pattern))
            if files:
                start = time.perf_counter()
                for _ in range(repeats):
                    for f in files:
                        read(f)
                out[name] = {"samples_per_s": round(repeats * len(files) / (time.perf_counter() - start), 1)}
        return {"source": "direct timing", "results": out}
    res = bench_readers(shared, repeats=repeats)
    keep = {k: v for k, v in res["results"].items() if k in ("ntu_skeleton", "kinetics_json")}
    return {"source": "benchmarks/bench_readers.py:bench_readers", "results": keep}


def _access_rate(ds, repeats: int) -> dict[str, Any]:
    n = len(ds)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(n):
            ds[i]
        times.append(time.perf_counter() - start)
    med = statistics.median(times)
    return {"samples": n, "median_pass_s": round(med, 4), "samples_per_s": round(n / med, 1),
            "output_shape": list(ds[0].x.shape)}


def _train_step_fn(model: torch.nn.Module, opt: torch.optim.Optimizer):
    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    return step


def _loader_vs_training(ds, steps: int, batch_size: int) -> dict[str, Any]:
    from pyg_sparse_stgcn.nn import STGCN, GCNHead, SkeletonClassifier

    torch.manual_seed(0)
    model = SkeletonClassifier(STGCN({"layout": "nw-ucla", "mode": "spatial"}, in_channels=3, num_person=1),
                               GCNHead(ds.num_classes, 256))
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    step = _train_step_fn(model, opt)
    batch = next(iter(SkeletonLoader(ds, batch_size=batch_size, shuffle=True, drop_last=True)))
    for _ in range(2):  # warm-up (also lets backend='auto' settle)
        step(batch.x, batch.y)

    loader = SkeletonLoader(ds, batch_size=batch_size, shuffle=True, drop_last=True, num_workers=2,
                            persistent_workers=True, prefetch_factor=2)
    it = iter(loader)
    next(it)  # workers started
    start = time.perf_counter()
    n = 0
    for _ in range(steps):
        try:
            next(it)
        except StopIteration:
            it = iter(loader)
            next(it)
        n += 1
    loader_s = (time.perf_counter() - start) / n

    # round robin: one step on the in-memory batch, one step fed by the loader, so that a change of load on
    # the shared CPU affects both alike
    it = iter(loader)
    next(it)
    t_step, fed = [], []
    for _ in range(steps):
        start = time.perf_counter()
        step(batch.x, batch.y)
        t_step.append(time.perf_counter() - start)
        start = time.perf_counter()
        try:
            b = next(it)
        except StopIteration:
            it = iter(loader)
            b = next(it)
        step(b.x, b.y)
        fed.append(time.perf_counter() - start)
    step_s = statistics.median(t_step)
    fed_s = statistics.median(fed)
    del it, loader
    return {"batch_shape": list(batch.x.shape), "steps": steps,
            "train_step_median_s": round(step_s, 4),
            "loader_2_workers_s_per_batch_alone": round(loader_s, 4),
            "fed_by_loader_median_s_per_step": round(fed_s, 4),
            "fed_overhead_fraction": round(fed_s / step_s - 1, 3),
            "keeps_up": bool(loader_s <= step_s and fed_s <= 1.10 * step_s),
            "train_step_times_s": [round(t, 4) for t in t_step], "fed_times_s": [round(t, 4) for t in fed]}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shared", default=str(DEFAULT_SHARED),
                    help="the shared data folder (default: ../shared)")
    ap.add_argument("--quick", action="store_true", help="fewer repeats and training steps")
    ap.add_argument("--out", default=str(RESULTS_DIR / "data.json"))
    args = ap.parse_args(argv)
    shared = Path(args.shared)
    repeats = 2 if args.quick else 3
    steps = 6 if args.quick else 15
    payload: dict[str, Any] = {"benchmark": "bench_data", "meta": machine_info(), "missing": []}
    payload["readers"] = _readers(shared, repeats)
    print("readers:", {k: v["samples_per_s"] for k, v in payload["readers"]["results"].items()}, "samples/s")

    with tempfile.TemporaryDirectory() as tmp:
        tmp_p = Path(tmp)
        ucla = shared / "datasets" / "nw-ucla"
        pipes: dict[str, Any] = {}
        if ucla.is_dir():
            start = time.perf_counter()
            train = build_dataset("nw-ucla", ucla, "train", processed_dir=tmp_p / "ucla", log=False)
            proc_s = time.perf_counter() - start
            payload["processing"] = {"dataset": "nw-ucla train", "samples": len(train),
                                     "seconds": round(proc_s, 3),
                                     "samples_per_s": round(len(train) / proc_s, 1)}
            print("processing:", payload["processing"])
            train.transform = build_pipeline("3d", "j", 52, layout="nw-ucla", num_person=1)
            pipes["nw-ucla train ('3d', j, clip_len 52, M=1)"] = _access_rate(train, repeats)
        else:
            payload["missing"].append("datasets/nw-ucla")
            train = None
        real = shared / "realdata"
        if any(real.glob("*.skeleton")):
            ntu_root = tmp_p / "ntu"
            ntu_root.mkdir()
            for f in real.glob("*.skeleton"):
                (ntu_root / f.name).symlink_to(f.resolve())
            ntu = build_dataset("ntu60-xsub", ntu_root, "train", processed_dir=tmp_p / "ntu-p", log=False,
                                transform=build_pipeline("3d", "j+b", 100))
            pipes["ntu60 files ('3d', j+b, clip_len 100, M=2)"] = _access_rate(ntu, repeats * 20)
        else:
            payload["missing"].append("realdata/*.skeleton")
        demo = build_dataset("demo", tmp_p / "demo", "train", log=False,
                             transform=build_pipeline("2d-normalized", "j", 32, augment=True))
        pipes["demo train SYNTHETIC ('2d-normalized', j, clip_len 32, augment)"] = _access_rate(demo, repeats)
        payload["pipelines"] = pipes
        for k, v in pipes.items():
            print(f"pipeline {k}: {v['samples_per_s']} samples/s")
        if train is not None:
            payload["loader_vs_training"] = _loader_vs_training(train, steps, 16)
            print("loader vs training:", payload["loader_vs_training"])
    write_results(args.out, payload)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
