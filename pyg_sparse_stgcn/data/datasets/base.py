r"""The source of a named dataset: its facts (class attributes) and how to list the samples of a split.

A *source class* describes one dataset family, the way a PyG dataset class carries ``names`` and ``urls``:
which ``--data`` names it serves, the number of classes, the skeleton layout, the files expected under
``root`` and where they come from, the recommended clip length and person count. An instance is bound to a
``root`` and the user's options; :meth:`DatasetSource.locate` finds the files (raising
:class:`DatasetNotFoundError` before any work) and :meth:`DatasetSource.items` lists the entries of a split,
each read lazily so that one bad file is skipped and listed without losing the rest.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

from ..sample import SkeletonSample
from .locate import find_pickle, resolve_file

__all__ = ["DatasetInfo", "DatasetNotFoundError", "DatasetSource", "Item"]


class DatasetNotFoundError(ValueError):
    """The files of a named dataset are not under its root. The message lists what is expected and where the
    dataset comes from."""


@dataclass(frozen=True)
class DatasetInfo:
    """Facts about a named dataset (a snapshot of its source class's attributes).

    Attributes:
        name: Registry name (``--data``).
        num_classes: Number of classes (:obj:`None` for ``pyskl``: read from the file).
        layout: Skeleton layout name (:obj:`None` for ``pyskl``: inferred from the file).
        dims: 2 (image coordinates + score) or 3 (camera-space x, y, z).
        pipeline_kind: ``kind`` for :func:`~pyg_sparse_stgcn.data.transforms.build_pipeline`.
        clip_len: Recommended frames per clip.
        num_person: Recommended persons :math:`M` per sample.
        splits: Split names (``"test"`` is an alias of ``"val"``).
        expected: What must be under ``root``.
        origin: Where the dataset comes from.
    """

    name: str
    num_classes: int | None
    layout: str | None
    dims: int
    pipeline_kind: str
    clip_len: int
    num_person: int
    splits: tuple[str, ...]
    expected: str
    origin: str

    @property
    def default_root(self) -> str:
        """``data/<name>``."""
        return f"data/{self.name}"

    def to_dict(self) -> dict[str, Any]:
        """The facts as a JSON-ready dict (``default_root`` included)."""
        return {**asdict(self), "default_root": self.default_root}


_INFO_FIELDS = tuple(f.name for f in fields(DatasetInfo) if f.name != "name")


@dataclass
class Item:
    """One entry of a split: ``load()`` returns its sample(s); ``skip`` is a reason to skip it unread.

    Attributes:
        id: Sample id (file stem or PYSKL ``frame_dir``).
        source: The file (and pickle key) it comes from.
        load: Reads the entry; may raise :class:`~pyg_sparse_stgcn.data.SkeletonFormatError`,
            :class:`ValueError` or :class:`OSError`.
        skip: Why the entry is excluded without reading it.
    """

    id: str
    source: str
    load: Callable[[], SkeletonSample | list[SkeletonSample]] | None = None
    skip: str | None = None


class DatasetSource(ABC):
    r"""Base class of the dataset families: facts as class attributes, file location and item listing as
    methods. Subclasses are registered with :func:`~pyg_sparse_stgcn.data.datasets.register_source`.

    Class attributes (the facts; :attr:`variants` overrides them per name):

    * ``names``: the ``--data`` names served;
    * ``num_classes``, ``layout``, ``dims``, ``pipeline_kind``, ``clip_len``, ``num_person``, ``splits``,
      ``expected``, ``origin``: see :class:`DatasetInfo`;
    * ``option_names``: the keyword options :func:`~pyg_sparse_stgcn.data.build_dataset` accepts;
    * ``any_split``: the split names come from the file (PYSKL pickles), not from ``splits``;
    * ``synthetic``: the data are generated, not recorded (labelled ``SYNTHETIC`` everywhere).

    Args:
        name (str): One of :attr:`names`.
        root (pathlib.Path): Folder holding the dataset's files.
        options (dict): Dataset options (checked against :attr:`option_names`).
    """

    names: ClassVar[tuple[str, ...]] = ()
    variants: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    num_classes: ClassVar[int | None] = None
    layout: ClassVar[str | None] = None
    dims: ClassVar[int] = 3
    pipeline_kind: ClassVar[str] = "3d"
    clip_len: ClassVar[int] = 100
    num_person: ClassVar[int] = 2
    splits: ClassVar[tuple[str, ...]] = ("train", "val")
    expected: ClassVar[str] = ""
    origin: ClassVar[str] = ""
    option_names: ClassVar[tuple[str, ...]] = ()
    any_split: ClassVar[bool] = False
    synthetic: ClassVar[bool] = False

    def __init__(self, name: str, root: Path, options: Mapping[str, Any]) -> None:
        self.name = name
        self.info = self.facts(name)
        self.root = root
        self.options: dict[str, Any] = dict(options)
        bad = sorted(set(self.options) - set(self.option_names))
        if bad:
            raise ValueError(f"dataset {name!r}: unknown option(s) {', '.join(bad)}; valid: "
                             f"{', '.join(self.option_names) or 'none'}")

    # --- facts ------------------------------------------------------------------------------------------
    @classmethod
    def facts(cls, name: str) -> DatasetInfo:
        """The facts of ``name`` (class attributes, overridden by ``variants[name]``)."""
        if name not in cls.names:
            raise ValueError(f"{cls.__name__} serves {', '.join(cls.names)}, not {name!r}")
        over = cls.variants.get(name, {})
        return DatasetInfo(name, **{f: over.get(f, getattr(cls, f)) for f in _INFO_FIELDS})

    @classmethod
    def resolve_split(cls, name: str, split: str) -> str:
        """``split`` of dataset ``name`` checked against :attr:`splits` (``"test"`` means ``"val"``; any name
        if :attr:`any_split`).

        Raises:
            ValueError: For an unknown split, listing the valid ones.
        """
        if cls.any_split:
            return split
        split = "val" if split == "test" else split
        if split not in cls.splits:
            raise ValueError(f"dataset {name!r}: unknown split {split!r}; valid: {', '.join(cls.splits)} "
                             f"(or 'test' for 'val')")
        return split

    # --- what subclasses implement ----------------------------------------------------------------------
    @abstractmethod
    def locate(self) -> None:
        """Finds the dataset's files under ``root``.

        Raises:
            DatasetNotFoundError: When they are missing (see :meth:`not_found`).
        """

    @abstractmethod
    def items(self, split: str) -> Iterator[Item]:
        """The entries of ``split``, one per sample file or annotation, in a deterministic order."""

    # --- helpers ----------------------------------------------------------------------------------------
    def not_found(self, detail: str = "") -> DatasetNotFoundError:
        """The error for missing files: the root, what is expected under it and where the dataset comes
        from."""
        info = self.info
        return DatasetNotFoundError(
            f"dataset {info.name!r} not found under {self.root}{': ' + detail if detail else ''}.\n"
            f"  Expected under root: {info.expected}.\n  Where it comes from: {info.origin}.\n"
            f"  Point --root (root=) at the folder holding these files (default: {info.default_root}).")

    def locate_pickle(self, names: tuple[str, ...]) -> Path | None:
        """The annotation pickle: the ``ann_file`` option (relative to ``root`` unless it exists as given),
        ``root`` itself when it is a ``.pkl`` file, or the first of ``names`` under ``root``.

        Raises:
            DatasetNotFoundError: If ``ann_file`` is given but does not exist.
        """
        ann_file = self.options.get("ann_file")
        if ann_file is not None:
            p = resolve_file(self.root, ann_file)
            if not p.is_file():
                raise self.not_found(f"ann_file {p} does not exist")
            return p
        return find_pickle(self.root, names)
