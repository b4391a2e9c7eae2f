"""Reader benchmark: samples per second for each native skeleton format, on the real files in ``../shared``.

Each format is read file by file through its public reader (parsing, validation and the conversion to a
float32 ``SkeletonSample``), ``repeats`` times; the median pass gives samples/s and MB/s of source text.

* ``ntu_skeleton``: the 3 NTU RGB+D ``.skeleton`` files of ``realdata/`` (70-82 frames, 1-2 bodies);
* ``kinetics_json``: the 3 Kinetics-skeleton JSON files of ``realdata/`` (164-299 frames, up to 5 bodies);
* ``nwucla_json``, ``msr_action3d``, ``utkinect``: the complete datasets under ``datasets/`` (1,484 files,
  567 files, 20 recordings cut into 199 segments).

Usage (from the repository root)::

    python benchmarks/bench_readers.py                  # writes benchmarks/results/readers.json
    python benchmarks/bench_readers.py --repeats 5

:func:`bench_readers` returns the same dict without writing, for other benchmark scripts to import.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS_DIR, machine_info, write_results  # noqa: E402

from pyg_sparse_stgcn.data.readers import (  # noqa: E402
    read_kinetics_json,
    read_msr_action3d,
    read_ntu_skeleton,
    read_nwucla_json,
    read_utkinect,
    read_utkinect_labels,
)

DEFAULT_SHARED = Path(__file__).resolve().parents[2] / "shared"


def _time_reader(files: Sequence[Path], read: Callable[[Path], Any], repeats: int,
                 rounds: int = 1) -> dict[str, Any]:
    """Median over ``repeats`` passes; one pass reads every file ``rounds`` times."""
    nbytes = sum(f.stat().st_size for f in files) * rounds
    samples_per_pass = 0
    times = []
    for r in range(repeats + 1):  # the first pass warms the page cache and is not counted
        n = 0
        start = time.perf_counter()
        for _ in range(rounds):
            for f in files:
                out = read(f)
                n += len(out) if isinstance(out, list) else 1
        elapsed = time.perf_counter() - start
        if r:
            times.append(elapsed)
        samples_per_pass = n
    med = statistics.median(times)
    return {"files": len(files), "samples_per_pass": samples_per_pass, "rounds": rounds,
            "median_pass_s": round(med, 5), "pass_times_s": [round(t, 5) for t in times],
            "samples_per_s": round(samples_per_pass / med, 1), "mb_per_s": round(nbytes / med / 1e6, 2)}


def bench_readers(shared: str | Path | None = None, repeats: int = 3) -> dict[str, Any]:
    """Measure the readers on the real data in ``shared`` (default: ``../shared`` next to the repository).

    Returns:
        dict: per format, ``samples_per_s``, ``mb_per_s``, the median pass time and the pass times.
        Formats whose files are absent are left out and listed under ``missing``.
    """
    root = Path(shared) if shared is not None else DEFAULT_SHARED
    real, ds = root / "realdata", root / "datasets"
    results: dict[str, Any] = {}
    missing: list[str] = []

    def run(name: str, files: list[Path], read: Callable[[Path], Any], rounds: int = 1) -> None:
        if files:
            results[name] = _time_reader(files, read, repeats, rounds)
        else:
            missing.append(name)

    run("ntu_skeleton", sorted(real.glob("*.skeleton")), read_ntu_skeleton, rounds=20)
    run("kinetics_json", sorted(real.glob("__*.json")), read_kinetics_json, rounds=20)
    run("nwucla_json", sorted((ds / "nw-ucla" / "all_sqe").glob("*.json")), read_nwucla_json)
    run("msr_action3d", sorted((ds / "msr-action3d" / "real_world_coordinates").glob("*_skeleton3D.txt")),
        read_msr_action3d)
    label_file = ds / "utkinect-action3d" / "joints" / "actionLabel.txt"
    if label_file.is_file():
        labels = read_utkinect_labels(label_file)
        recordings = sorted(label_file.parent.glob("joints_s*_e*.txt"))
        run("utkinect", recordings, lambda f: read_utkinect(f, labels))
    else:
        missing.append("utkinect")
    return {"results": results, "missing": missing, "shared": str(root), "repeats": repeats}


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shared", default=None, help="the shared data folder (default: ../shared)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(RESULTS_DIR / "readers.json"))
    args = ap.parse_args(argv)
    res = bench_readers(args.shared, args.repeats)
    payload = {"benchmark": "bench_readers", "meta": machine_info(), **res}
    write_results(args.out, payload)
    for name, r in res["results"].items():
        print(f"{name:15s} {r['samples_per_s']:10.1f} samples/s  {r['mb_per_s']:7.2f} MB/s  "
              f"({r['samples_per_pass']} samples in {r['median_pass_s']:.3f} s)")
    if res["missing"]:
        print("missing:", ", ".join(res["missing"]))
    print("wrote", args.out)


if __name__ == "__main__":
    main()
