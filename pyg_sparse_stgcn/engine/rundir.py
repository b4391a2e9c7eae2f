"""Run directories and atomic file writes.

A run directory ``runs/<data>-<mode>-<YYYYmmdd-HHMMSS>/`` holds ``config.toml`` (fully resolved),
``metrics.jsonl``, ``checkpoints/``, ``masks/``, ``sparsity_report.json``, ``scores/`` and ``summary.json``.
Every file is written atomically: to a temporary file in the same directory, flushed and ``fsync``-ed, then
renamed over the target, so a killed run never leaves a half-written file behind.
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..atomic import atomic_torch_save, atomic_write_bytes, atomic_write_json, atomic_write_text, json_safe

__all__ = ["atomic_write_bytes", "atomic_write_text", "atomic_write_json", "atomic_torch_save", "RunDir",
           "json_safe"]


class RunDir:
    """A run directory.

    Args:
        path (str or Path): The directory. It is created (with ``checkpoints/``, ``masks/`` and ``scores/``)
            if missing.
    """

    SUBDIRS = ("checkpoints", "masks", "scores")

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        for sub in self.SUBDIRS:
            (self.path / sub).mkdir(exist_ok=True)

    @classmethod
    def create(cls, out: str | os.PathLike, data: str, mode: str, now: float | None = None) -> RunDir:
        """Create ``<out>/<data>-<mode>-<YYYYmmdd-HHMMSS>`` (a ``-2``, ``-3``, ... suffix when two runs
        start in the same second)."""
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(time.time() if now is None else now))
        base = Path(out) / f"{data}-{mode}-{stamp}"
        path, i = base, 1
        while True:
            try:
                path.mkdir(parents=True, exist_ok=False)
                break
            except FileExistsError:
                i += 1
                path = base.with_name(f"{base.name}-{i}")
        return cls(path)

    @classmethod
    def open(cls, path: str | os.PathLike) -> RunDir:
        """Open an existing run directory (one that holds a ``config.toml``).

        Raises:
            ValueError: if ``path`` is not a run directory.
        """
        p = Path(path)
        if not (p / "config.toml").is_file():
            raise ValueError(f"--resume/--checkpoint: {p} is not a run directory (no config.toml in it); "
                             f"pass a directory created by a previous run, e.g. runs/<data>-<mode>-<time>")
        return cls(p)

    # --- files --------------------------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.path / "config.toml"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def masks(self) -> Path:
        return self.path / "masks"

    @property
    def scores(self) -> Path:
        return self.path / "scores"

    def file(self, *parts: str) -> Path:
        """A path inside the run directory (sub-directories are created)."""
        p = self.path.joinpath(*parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def write_text(self, name: str, text: str) -> Path:
        return atomic_write_text(self.file(name), text)

    def write_json(self, name: str, obj: Any) -> Path:
        return atomic_write_json(self.file(name), obj)

    def save(self, name: str, obj: Any) -> Path:
        """:func:`atomic_torch_save` under the run directory."""
        return atomic_torch_save(obj, self.file(name))

    def read_metrics(self) -> list[dict]:
        """All records of ``metrics.jsonl``."""
        if not self.metrics_path.exists():
            return []
        return [json.loads(line) for line in self.metrics_path.read_text().splitlines() if line.strip()]

    def log_metrics(self, record: Mapping[str, Any]) -> None:
        """Append one record to ``metrics.jsonl``. The file is rewritten atomically, so a reader (or a killed
        run) only ever sees whole lines."""
        old = self.metrics_path.read_bytes() if self.metrics_path.exists() else b""
        line = json.dumps(json_safe(dict(record))) + "\n"
        atomic_write_bytes(self.metrics_path, old + line.encode("utf-8"))

    def truncate_metrics(self, keep: Callable[[dict], bool]) -> None:
        """Keep only the records for which ``keep(record)`` is true (used on resume to drop records written
        after the last checkpoint)."""
        recs = [r for r in self.read_metrics() if keep(r)]
        atomic_write_text(self.metrics_path, "".join(json.dumps(r) + "\n" for r in recs))

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"
