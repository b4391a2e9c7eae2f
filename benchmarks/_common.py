"""Shared helpers for the benchmark scripts: machine/date/command metadata, timing and atomic JSON output.

Every result file written through :func:`write_results` records the exact command, the UTC date, the git
commit, the machine (CPU model, cores, load average while running), and library versions, as required for
any number quoted in the README or docs.
"""
from __future__ import annotations

import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from pyg_sparse_stgcn.atomic import atomic_write_json
from pyg_sparse_stgcn.timing import interleaved_times

__all__ = ["machine_info", "command_line", "time_fn", "time_interleaved", "write_results", "markdown_table",
           "shadowed_torch", "RESULTS_DIR"]

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def shadowed_torch(pythonpath: str | None = None, torch_file: str | None = None) -> str | None:
    """Why the imported torch is not this environment's, or :obj:`None`: a directory of ``PYTHONPATH`` (e.g. the
    benchmark peer's ``pip install --target`` directory, where pip puts a torch of its own when it resolves the
    peer's requirements, a multi-GB CUDA build) holds the torch that was imported, so every timing would be of
    that build instead of the pinned one."""
    pythonpath = os.environ.get("PYTHONPATH", "") if pythonpath is None else pythonpath
    here = Path(torch_file or torch.__file__).resolve()
    for entry in filter(None, pythonpath.split(os.pathsep)):
        root = Path(entry).resolve()
        if here.is_relative_to(root):
            return (f"torch {torch.__version__} is imported from {here.parent}, inside PYTHONPATH entry {root}: "
                    f"it shadows this environment's torch (delete torch and its CUDA packages from {root}, or "
                    f"install the peer there without its own torch)")
    return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git_commit() -> str | None:
    """``git rev-parse --short HEAD``, or ``$PYG_SPARSE_STGCN_COMMIT`` where the checkout has no ``.git`` (a
    working-tree copy on a lent GPU machine: ``benchmarks/gpu_check.sh``)."""
    if os.environ.get("PYG_SPARSE_STGCN_COMMIT"):
        return os.environ["PYG_SPARSE_STGCN_COMMIT"]
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             timeout=10, cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def command_line() -> str:
    """The command that produced the results, as it could be re-run from the repository root."""
    return " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv])


def machine_info(device: torch.device | str | None = None) -> dict[str, Any]:
    """Date, command, commit, CPU/GPU model, core count, load average and library versions."""
    info: dict[str, Any] = {
        "date_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": command_line(),
        "git_commit": _git_commit(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    try:
        info["load_average_1_5_15"] = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        pass
    try:
        import torch_geometric
        import torch_geometric.typing as pyg_typing

        info["torch_geometric"] = torch_geometric.__version__
        info["torch_sparse_available"] = bool(pyg_typing.WITH_TORCH_SPARSE)
    except ImportError:
        pass
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    if device is not None:
        info["device"] = str(device)
    return info


def time_fn(fn: Callable[[], Any], repeats: int = 5, warmup: int = 1,
            device: torch.device | str = "cpu") -> dict[str, Any]:
    """Median (and all) wall-clock seconds of ``fn()`` over ``repeats`` runs after ``warmup`` runs."""
    return time_interleaved({"fn": fn}, repeats, warmup, device)["fn"]


def time_interleaved(fns: dict[str, Callable[[], Any]], repeats: int = 5, warmup: int = 1,
                     device: torch.device | str = "cpu",
                     clock: Callable[[], float] = time.perf_counter) -> dict[str, dict[str, Any]]:
    """Time several functions round-robin with the library's one timer
    (:func:`pyg_sparse_stgcn.timing.interleaved_times`: one run of each per round, so that a machine whose load
    changes during the benchmark affects every candidate alike). Returns median, min and every time per name."""
    times = interleaved_times(fns, torch.device(device), rounds=repeats, warmup=warmup, clock=clock)
    return {name: {"median_s": statistics.median(t), "min_s": min(t), "times_s": t} for name, t in times.items()}


def write_results(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` as indented JSON atomically (temporary file, fsync, rename)."""
    return atomic_write_json(path, payload, indent=2)


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]], align: str = "") -> list[str]:
    """The lines of a markdown table: ``header``, its separator (``---:`` for an ``"r"`` at a column's position
    in ``align``, ``---`` otherwise) and one line per row, each cell as ``str(cell)`` (an empty one as ``| |``)."""
    seps = ["---:" if align[i:i + 1] == "r" else "---" for i in range(len(header))]
    return ["|" + "".join(f" {c} |" if str(c) else " |" for c in cells) for cells in (header, seps, *rows)]
