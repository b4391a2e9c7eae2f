"""The README's main command, measured over seeds: ``python scripts/run.py --data demo --mode generate``.

Runs the command once per seed in a subprocess (into a temporary ``--out``), reads each run's ``summary.json``
and writes the dense and 95 %-sparse top-1 of every seed, their mean ± sample standard deviation, the drop in
points, the wall-clock time, the SHA-256 of the recipe (``configs/demo.toml``) and the machine facts to
``benchmarks/results/demo.json``. The README (through ``benchmarks/report.py``) and the demo's own printout
(``engine.modes.generate.demo_expectation``) quote this file.

    python benchmarks/bench_demo.py --seeds 8 [--out benchmarks/results/demo.json]
    python benchmarks/bench_demo.py --seeds 8 --precision bf16    # -> demo_bf16.json: bf16 accuracy parity

Resumable: every finished seed is kept in ``benchmarks/runs/demo/<precision>.json`` (git-ignored) and is not run
again by the next invocation while the recipe (its SHA-256) is the same.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS_DIR, command_line, machine_info, write_results  # noqa: E402

from pyg_sparse_stgcn.atomic import atomic_write_json  # noqa: E402
from pyg_sparse_stgcn.engine.modes.generate import recipe_digest  # noqa: E402
from pyg_sparse_stgcn.engine.trainer import PRECISIONS  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
#: Finished seeds of an interrupted invocation, per precision (git-ignored).
PARTIAL_DIR = REPO / "benchmarks" / "runs" / "demo"
DEMO_COMMAND = "python scripts/run.py --data demo --mode generate"


def run_demo(seed: int, precision: str = "fp32") -> dict[str, Any]:
    """Run the demo command once with ``--seed seed`` (and ``train.precision``); its summary plus the
    wall-clock seconds it took and the load average after it."""
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, str(REPO / "scripts" / "run.py"), "--data", "demo", "--mode", "generate",
               "--out", out, "--no-progress", "--seed", str(seed)]
        if precision != "fp32":
            cmd += ["--set", f"train.precision={precision}"]
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"demo command failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        (run_dir,) = Path(out).iterdir()
        summary = json.loads((run_dir / "summary.json").read_text())
    summary.pop("run_dir", None)
    return {"seed": seed, "wall_s": round(wall, 1), "load_average_after": [round(v, 2) for v in os.getloadavg()],
            "summary": summary}


def finished_runs(path: Path, digest: str) -> dict[int, dict[str, Any]]:
    """The seeds already run into ``path`` with the recipe of SHA-256 ``digest`` (none for another recipe)."""
    if not path.exists():
        return {}
    rec = json.loads(path.read_text())
    return {r["seed"]: r for r in rec.get("runs", [])} if rec.get("recipe_sha256") == digest else {}


def save_runs(path: Path, digest: str, runs: dict[int, dict[str, Any]]) -> None:
    """Write the finished seeds atomically."""
    atomic_write_json(path, {"recipe_sha256": digest, "runs": [runs[s] for s in sorted(runs)]})


def spread(values: list[float], scale: float = 1.0) -> dict[str, Any]:
    """``{"mean", "std", "values"}`` (sample standard deviation; 0 for one value), times ``scale``."""
    v = [scale * x for x in values]
    return {"mean": statistics.fmean(v), "std": statistics.stdev(v) if len(v) > 1 else 0.0, "values": v}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="results file (default benchmarks/results/demo.json, demo_bf16.json for "
                                      "--precision bf16)")
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS,
                        help="train.precision of both runs (bf16: the accuracy parity of bfloat16 autocast)")
    parser.add_argument("--seeds", type=int, default=3, help="run seeds 0 .. N-1 (default 3)")
    args = parser.parse_args()
    if args.seeds < 1:
        raise SystemExit(f"--seeds must be >= 1, got {args.seeds}")
    digest, partial = recipe_digest("demo"), PARTIAL_DIR / f"{args.precision}.json"
    done = finished_runs(partial, digest)
    for seed in range(args.seeds):
        if seed in done:
            print(f"seed {seed}: finished in an earlier invocation ({partial})", flush=True)
            continue
        done[seed] = run_demo(seed, args.precision)
        save_runs(partial, digest, done)
        print(json.dumps(done[seed], indent=2), flush=True)
    runs = [done[seed] for seed in range(args.seeds)]
    dense = [r["summary"]["dense"]["top1"] for r in runs]
    sparse = [r["summary"]["top1"] for r in runs]
    suffix = "" if args.precision == "fp32" else f" --set train.precision={args.precision}"
    payload = {"benchmark": "demo (synthetic data): dense baseline vs 95 %-sparse generator, over seeds",
               "command": command_line(), "demo_command": DEMO_COMMAND + " --seed N" + suffix,
               "precision": args.precision,
               "recipe": "pyg_sparse_stgcn/configs/demo.toml", "recipe_sha256": digest,
               "seeds": [r["seed"] for r in runs], "machine": machine_info(),
               "dense_top1": spread(dense), "sparse_top1": spread(sparse),
               "drop_points": spread([d - s for d, s in zip(dense, sparse, strict=True)], 100.0),
               "weight_sparsity": runs[0]["summary"]["weight_sparsity"],
               "params_kept": {"dense": runs[0]["summary"]["dense"]["params_kept"],
                               "sparse": runs[0]["summary"]["params_kept"]},
               "wall_s": spread([r["wall_s"] for r in runs]), "runs": runs}
    default = RESULTS_DIR / ("demo.json" if args.precision == "fp32" else f"demo_{args.precision}.json")
    write_results(args.out or default, payload)


if __name__ == "__main__":
    main()
