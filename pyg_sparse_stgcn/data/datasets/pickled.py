"""Sources whose samples are the annotations of one PYSKL pickle (``{split, annotations}``)."""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

from ..readers.pyskl import iter_pyskl_items
from .base import DatasetSource, Item

__all__ = ["pyskl_items", "PysklPickleSource"]


def pyskl_items(path: Path, split: str, layout: str | None, kpfile_root: str | os.PathLike | None = None,
                box_thr: float | None = None, max_person: int | None = None) -> Iterator[Item]:
    """One :class:`Item` per annotation of ``split``, each converted lazily so that one bad annotation is
    skipped without losing the rest of the file."""
    for item in iter_pyskl_items(path, split, layout, kpfile_root, box_thr, max_person):
        yield Item(item.frame_dir, f"{path}:{item.where}", item.load)


class PysklPickleSource(DatasetSource):
    """Base of the families read from one PYSKL annotation pickle: ``ann_file=`` or the first of
    :attr:`pickle_names` under ``root`` (with no names: the only ``.pkl`` under ``root``). Not registered
    itself.

    Options: ``ann_file``, ``kpfile_root`` (where the K400 ``raw_file`` kpfiles are), ``box_thr``,
    ``max_person``, ``layout`` (default: the class's, else inferred from the joint count).
    """

    #: File names looked for under ``root``; empty: the only ``.pkl`` there.
    pickle_names: ClassVar[tuple[str, ...]] = ()
    option_names = ("ann_file", "kpfile_root", "box_thr", "max_person", "layout")
    dims = 2
    pipeline_kind = "2d"

    def locate(self) -> None:
        self.pickle = self.locate_pickle(self.pickle_names)
        if self.pickle is None and not self.pickle_names and self.root.is_dir():
            pkls = sorted(self.root.glob("*.pkl"))
            if len(pkls) == 1:
                self.pickle = pkls[0]
            elif len(pkls) > 1:
                raise self.not_found("several .pkl files (" + ", ".join(p.name for p in pkls)
                                     + "); choose one with ann_file=")
        if self.pickle is None:
            raise self.not_found()

    def items(self, split: str) -> Iterator[Item]:
        assert self.pickle is not None, "call locate() first"
        o = self.options
        yield from pyskl_items(self.pickle, split, o.get("layout") or self.info.layout, o.get("kpfile_root"),
                               o.get("box_thr"), o.get("max_person"))
