"""The README's main command, measured: ``python scripts/run.py --data demo --mode generate``.

Runs the command in a subprocess (into a temporary ``--out``), reads the run's ``summary.json`` and writes the
dense-vs-sparse figures, the wall-clock time and the machine facts to ``benchmarks/results/demo.json``. The
README quotes this file.

    python benchmarks/bench_demo.py [--out benchmarks/results/demo.json] [--seed 0]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS_DIR, command_line, machine_info, write_results  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def run_demo(seed: int | None = None) -> dict:
    """Run the demo command once; return its summary plus the wall-clock seconds it took."""
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, str(REPO / "scripts" / "run.py"), "--data", "demo", "--mode", "generate",
               "--out", out, "--no-progress"]
        if seed is not None:
            cmd += ["--seed", str(seed)]
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"demo command failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        (run_dir,) = Path(out).iterdir()
        summary = json.loads((run_dir / "summary.json").read_text())
    summary.pop("run_dir", None)
    return {"demo_command": "python scripts/run.py --data demo --mode generate", "wall_s": round(wall, 1),
            "summary": summary,
            "printed": proc.stdout.strip().splitlines()[-5:]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(RESULTS_DIR / "demo.json"))
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    result = run_demo(args.seed)
    payload = {"benchmark": "demo (synthetic data): dense baseline vs 95 %-sparse generator",
               "command": command_line(), "machine": machine_info(), **result}
    print(json.dumps(result, indent=2))
    write_results(args.out, payload)


if __name__ == "__main__":
    main()
