"""Finding a dataset's files under its root (pure path functions; the sources raise the errors)."""
from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

__all__ = ["resolve_file", "find_pickle", "find_files", "glob_files", "data_folder"]


def resolve_file(root: Path, path: str | os.PathLike) -> Path:
    """``path`` as given when it is absolute or exists, else relative to ``root``."""
    p = Path(path)
    return p if p.is_absolute() or p.exists() else root / p


def find_pickle(root: Path, names: Iterable[str]) -> Path | None:
    """``root`` itself when it is a ``.pkl`` file, else the first of ``names`` that is a file under ``root``,
    else :obj:`None`."""
    if root.is_file() and root.suffix == ".pkl":
        return root
    for n in names:
        if (root / n).is_file():
            return root / n
    return None


def find_files(root: Path, pattern: str) -> list[Path]:
    """Files matching ``pattern`` at any depth under ``root`` (not inside a ``processed`` folder), sorted by
    file name."""
    return sorted((p for p in root.rglob(pattern) if "processed" not in p.relative_to(root).parts[:-1]),
                  key=lambda p: p.name)


def data_folder(root: Path, sub: str) -> Path:
    """``root / sub`` when that folder exists, else ``root`` (files may sit directly under root)."""
    folder = root / sub
    return folder if folder.is_dir() else root


def glob_files(folder: Path, pattern: str) -> list[Path]:
    """Files of ``folder`` matching ``pattern``, sorted; empty when ``folder`` is not a directory."""
    return sorted(folder.glob(pattern)) if folder.is_dir() else []
