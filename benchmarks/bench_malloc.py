"""What page faults cost a CPU training step, and what ``pyg_sparse_stgcn.malloc.keep_freed_memory`` (the CLI's
``run.keep_freed_memory``, on by default) saves: ``benchmarks/results/malloc.json``.

Two measurements of the training step of ``bench_models`` (forward, cross entropy, backward, SGD step; the
NTU shape N = 8, M = 2, T = 100, V = 25 unless ``--shape``), for our ST-GCN and, where it is installed,
mmaction2's:

* ``processes``: one fresh process per (side, setting), the settings alternating over ``--repeats`` rounds:
  glibc's defaults against ``keep_freed_memory()``. Each process warms up, then times ``--steps`` steps and
  reads ``getrusage`` around them: median seconds per step, minor page faults, system and user CPU seconds
  per step, and the peak resident size. Wall time between processes is exposed to the machine's drift; the
  faults and the system time are not.
* ``in_process``: in one process, steps alternating between two allocator regimes set with ``mallopt``:
  every block above 128 KiB mapped afresh and unmapped when freed (what glibc's defaults do to blocks above
  32 MiB, and to smaller ones until its threshold has risen) against the kept regime; the same machine state
  for both, so the ratio is the cost of faulting a step's buffers in.

    python benchmarks/bench_malloc.py [--models stgcn] [--shape ntu] [--repeats 3] [--steps 5] [--threads 2]
"""
from __future__ import annotations

import argparse
import ctypes
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS_DIR, machine_info, shadowed_torch, write_results  # noqa: E402

from pyg_sparse_stgcn.malloc import keep_freed_memory, supported  # noqa: E402

#: The allocator settings the fresh processes compare.
SETTINGS = ("default", "keep")

# mallopt parameters (glibc's malloc.h), for the in-process 'mapped' regime
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -3, -4


def _step(model_name: str, shape: str, side: str, threads: int):
    """One side's training step, built alone (``bench_models.side_task``)."""
    import bench_models as bm

    torch.set_num_threads(threads)
    return bm.side_task({"model": model_name, "shape": shape, "side": side, "quick": False, "task": "train"})


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """One fresh process: the setting, warm-up, then ``steps`` timed steps with ``getrusage`` around them."""
    if spec["setting"] == "keep" and not keep_freed_memory():
        raise SystemExit("bench_malloc: the C library is not glibc; keep_freed_memory changes nothing here")
    step = _step(spec["model"], spec["shape"], spec["side"], spec["threads"])
    for _ in range(2):
        step()
    times = []
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(spec["steps"]):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    n = spec["steps"]
    return {"median_s": statistics.median(times), "times_s": times,
            "minor_faults_per_step": (r1.ru_minflt - r0.ru_minflt) / n,
            "system_cpu_s_per_step": (r1.ru_stime - r0.ru_stime) / n,
            "user_cpu_s_per_step": (r1.ru_utime - r0.ru_utime) / n, "max_rss_mib": r1.ru_maxrss / 1024}


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def in_process(model_name: str, shape: str, side: str, threads: int, rounds: int) -> dict[str, Any]:
    """Steps alternating between 'mapped' (every block above 128 KiB mapped afresh) and 'kept'."""
    libc = ctypes.CDLL("libc.so.6")
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]

    def regime(name: str) -> None:
        if name == "kept":
            keep_freed_memory()
        else:
            libc.mallopt(_M_MMAP_MAX, 65536)
            libc.mallopt(_M_MMAP_THRESHOLD, 128 * 1024)
            libc.mallopt(_M_TRIM_THRESHOLD, 128 * 1024)
            libc.malloc_trim(0)

    step = _step(model_name, shape, side, threads)
    times: dict[str, list[float]] = {"mapped": [], "kept": []}
    faults = dict.fromkeys(times, 0)
    for name in times:
        regime(name)
        step()
    for i in range(rounds):
        for name in (("mapped", "kept") if i % 2 == 0 else ("kept", "mapped")):
            regime(name)
            step()  # one untimed step: the regime's own steady state
            f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            t = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - t)
            faults[name] += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"median_s": med, "times_s": times, "minor_faults_per_step": {k: v / rounds for k, v in faults.items()},
            "mapped_over_kept": med["mapped"] / med["kept"],
            "paired_ratio_median": statistics.median(a / b for a, b in zip(times["mapped"], times["kept"]))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="stgcn", help="comma-separated bench_models names (default stgcn)")
    ap.add_argument("--shape", default="ntu", help="bench_models shape (ntu, kinetics)")
    ap.add_argument("--repeats", type=int, default=3, help="rounds of fresh processes per setting")
    ap.add_argument("--steps", type=int, default=5, help="timed steps per fresh process")
    ap.add_argument("--rounds", type=int, default=6, help="timed steps per regime in the in-process comparison")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-mmaction2", dest="mmaction2", action="store_false")
    ap.add_argument("--out", default=str(RESULTS_DIR / "malloc.json"))
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    if (why := shadowed_torch()) is not None:
        ap.error(why)
    if not supported():
        raise SystemExit("bench_malloc: the C library is not glibc; there is nothing to compare")
    import bench_models as bm

    sides = ["ours"] + (["mmaction2"] if args.mmaction2 and bm.mmaction2_available() else [])
    if args.mmaction2 and "mmaction2" not in sides:
        print("bench_malloc: mmaction2 is not importable; its column is skipped", flush=True)
    results: dict[str, Any] = {}
    for model in args.models.split(","):
        row: dict[str, Any] = {"processes": {}, "in_process": {}}
        for side in sides:
            runs: dict[str, list[dict[str, Any]]] = {s: [] for s in SETTINGS}
            for r in range(args.repeats):
                for setting in (SETTINGS if r % 2 == 0 else SETTINGS[::-1]):
                    spec = {"model": model, "shape": args.shape, "side": side, "setting": setting,
                            "steps": args.steps, "threads": args.threads}
                    res = run_child(spec)
                    runs[setting].append(res)
                    print(f"{model} {side} {setting:>7}: {res['median_s']:.3f} s/step, "
                          f"{res['minor_faults_per_step']:.0f} faults/step, sys {res['system_cpu_s_per_step']:.3f} s, "
                          f"user {res['user_cpu_s_per_step']:.3f} s, max RSS {res['max_rss_mib']:.0f} MiB", flush=True)
            summary = {s: {k: statistics.median(run[k] for run in v) for k in
                           ("median_s", "minor_faults_per_step", "system_cpu_s_per_step", "user_cpu_s_per_step",
                            "max_rss_mib")} for s, v in runs.items()}
            row["processes"][side] = {"runs": runs, "median_of_runs": summary,
                                      "default_over_keep_s": summary["default"]["median_s"]
                                      / summary["keep"]["median_s"]}
            ip = in_process(model, args.shape, side, args.threads, args.rounds)
            row["in_process"][side] = ip
            print(f"{model} {side} in one process: mapped {ip['median_s']['mapped']:.3f} s "
                  f"({ip['minor_faults_per_step']['mapped']:.0f} faults/step), kept {ip['median_s']['kept']:.3f} s "
                  f"({ip['minor_faults_per_step']['kept']:.0f}): x{ip['mapped_over_kept']:.3f} "
                  f"(paired x{ip['paired_ratio_median']:.3f})", flush=True)
        results[model] = row
    payload = {"benchmark": "page faults of a CPU training step: glibc's defaults against keep_freed_memory "
                            "(fresh processes), and every block mapped afresh against kept (one process)",
               "machine": machine_info(), "shape": args.shape, "threads": args.threads, "repeats": args.repeats,
               "steps": args.steps, "rounds": args.rounds, "results": results}
    write_results(args.out, payload)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
