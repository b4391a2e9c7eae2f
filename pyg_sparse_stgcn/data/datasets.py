r"""Named skeleton datasets with PyG :class:`~torch_geometric.data.Dataset` semantics.

Registry (what the engine and the CLI use)::

    build_dataset(name: str, root: str | PathLike | None = None, split: str = "train",
                  transform: Callable | None = None, **options) -> SkeletonDataset
    DATASETS: dict[str, DatasetInfo]      # facts: num_classes, layout, 2-D/3-D, default root, ...
    dataset_info(name) -> DatasetInfo     # with a clear ValueError for unknown names
    check_dataset(name, root=None, **options) -> Path   # raises DatasetNotFoundError before any work

``root`` defaults to ``data/<name>`` (``DatasetInfo.default_root``); ``split`` is ``"train"`` or ``"val"``
(``"test"`` is an alias of ``"val"``; ``pyskl`` accepts any split name of its pickle). When the files are
missing, :class:`DatasetNotFoundError` (a :class:`ValueError`) lists the files expected under ``root`` and
where the dataset comes from.

Processing happens once per (dataset, split, options): every sample is read with the readers of
:mod:`pyg_sparse_stgcn.data.readers` and streamed into ``<processed_dir>`` (default
``<root>/processed/<name>-<split>``)::

    keypoint.npy        float32 (sum_i M_i * T_i, V, C): all frames of all persons, concatenated
    keypoint_score.npy  float32 (sum_i M_i * T_i, V)     (2-D data only)
    index.npz           offset, num_person, num_frames, label, img_shape, frame_dir (no pickles)
    skipped.json        [{"id", "source", "reason"}, ...]: bad or excluded samples, with reasons
    meta.json           dataset facts and the options used (written last: marks a complete cache)

Each file is written to a temporary name, fsync-ed and moved into place with :func:`os.replace`. Samples are
read back through a memory map, so the dataset forks cheaply into DataLoader workers. ``transform`` runs at
access (``dataset[i]``), on the :class:`~pyg_sparse_stgcn.data.SkeletonData` returned by :meth:`get`; use
:func:`~pyg_sparse_stgcn.data.transforms.build_pipeline` for the standard pipelines. ``pre_transform``
(a callable on a results dict, e.g. ``PreNormalize3D()``) runs once during processing and ``pre_filter`` (a
callable on a :class:`~pyg_sparse_stgcn.data.SkeletonSample` returning :obj:`bool`) drops samples.
"""
from __future__ import annotations

import io
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch_geometric.data import Dataset
from tqdm.auto import tqdm

from ..atomic import atomic_write_bytes, atomic_write_json
from .sample import SkeletonData, SkeletonFormatError, SkeletonSample

__all__ = ["SkeletonDataset", "DatasetInfo", "DATASETS", "DatasetNotFoundError", "build_dataset",
           "dataset_info", "check_dataset", "available_datasets", "CACHE_VERSION"]

#: Version of the processed-cache layout; a cache of another version is rebuilt.
CACHE_VERSION = 1


class DatasetNotFoundError(ValueError):
    """The files of a named dataset are not under its root. The message lists what is expected and where the
    dataset comes from."""


@dataclass(frozen=True)
class DatasetInfo:
    """Facts about a named dataset.

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
        return {**asdict(self), "default_root": self.default_root}


_NTU_EXPECTED = ("either the raw NTU RGB+D skeleton files `*.skeleton` (any folder depth, e.g. "
                 "`nturgb+d_skeletons/S001C001P001R001A001.skeleton`), or the PYSKL annotation pickle "
                 "`{pkl}`")
_NTU_ORIGIN = ("NTU RGB+D / NTU RGB+D 120 (ROSE Lab, NTU Singapore): request the skeleton archives "
               "(nturgb+d_skeletons.zip, nturgbd_skeletons_s018_to_s032.zip) at "
               "https://rose1.ntu.edu.sg/dataset/actionRecognition/ ; PYSKL's pre-processed {pkl} is at "
               "https://download.openmmlab.com/mmaction/pyskl/data/nturgbd/{pkl}")
_K400_ORIGIN = ("Kinetics-skeleton (ST-GCN release, OpenPose on Kinetics-400): see "
                "https://github.com/yysijie/st-gcn (README 'Kinetics-skeleton', 7.5 GB); or PYSKL's "
                "k400_hrnet.pkl with its kpfiles: https://github.com/kennymckormick/pyskl/blob/main/tools/data/"
                "README.md")

DATASETS: dict[str, DatasetInfo] = {}


def _register(info: DatasetInfo) -> None:
    DATASETS[info.name] = info


for _bench, _classes in (("ntu60-xsub", 60), ("ntu60-xview", 60), ("ntu120-xsub", 120), ("ntu120-xset", 120)):
    _pkl = "ntu60_3danno.pkl" if _classes == 60 else "ntu120_3danno.pkl"
    _register(DatasetInfo(_bench, _classes, "nturgb+d", 3, "3d", 100, 2, ("train", "val"),
                          _NTU_EXPECTED.format(pkl=_pkl), _NTU_ORIGIN.format(pkl=_pkl)))
_register(DatasetInfo(
    "kinetics", 400, "openpose", 2, "2d-normalized", 150, 2, ("train", "val"),
    "the ST-GCN release layout `kinetics_train/`, `kinetics_val/` (one JSON per video) with "
    "`kinetics_train_label.json` and `kinetics_val_label.json`; or a PYSKL `k400_hrnet.pkl` (option "
    "ann_file=) with the kpfiles its `raw_file` entries name (option kpfile_root=)", _K400_ORIGIN))
_register(DatasetInfo(
    "finegym", 99, "coco", 2, "2d", 100, 1, ("train", "val"),
    "the PYSKL annotation pickle `gym_hrnet.pkl` (HRNet 2-D poses, splits train/val)",
    "FineGYM (Shao et al., CVPR 2020) poses by PYSKL: "
    "https://download.openmmlab.com/mmaction/pyskl/data/gym/gym_hrnet.pkl"))
_register(DatasetInfo(
    "nw-ucla", 10, "nw-ucla", 3, "3d", 52, 1, ("train", "val"),
    "the CTR-GCN `all_sqe` JSON files `aAA_sSS_eEE_vVV.json` (in `all_sqe/` or directly under root); "
    "views 1-2 train, view 3 val",
    "Northwestern-UCLA Multiview Action3D (Wang et al., CVPR 2014); the all_sqe.zip JSON conversion linked "
    "from https://github.com/Uason-Chen/CTR-GCN (README, NW-UCLA)"))
_register(DatasetInfo(
    "msr-action3d", 20, "nw-ucla", 3, "3d", 52, 1, ("train", "val"),
    "`real_world_coordinates/aAA_sSS_eEE_skeleton3D.txt` (or the .txt files directly under root) and "
    "`files_used_in_cvpr12_paper.txt` (the 557 sequences of the standard protocol; without it all files "
    "are used); odd subjects train, even subjects val",
    "MSR Action3D (Li, Zhang, Liu, CVPRW 2010; Microsoft Research), skeleton 'real world coordinates' "
    "release: https://sites.google.com/view/wanqingli/data-sets/msr-action3d"))
_register(DatasetInfo(
    "utkinect", 10, "nw-ucla", 3, "3d", 32, 1, ("train", "val"),
    "`joints/joints_sSS_eEE.txt` and `joints/actionLabel.txt` (or both directly under root); odd subjects "
    "train, even subjects val",
    "UTKinect-Action3D (Xia, Chen, Aggarwal, CVPRW 2012): https://cvrc.ece.utexas.edu/KinectDatasets/"
    "HOJ3D.html"))
_register(DatasetInfo(
    "pyskl", None, None, 2, "2d", 100, 2, ("train", "val"),
    "one PYSKL / mmaction2 annotation pickle `{split, annotations}` (pass ann_file= or keep exactly one "
    ".pkl under root); split = any key of its 'split' dict",
    "PYSKL pre-processed annotations: https://github.com/kennymckormick/pyskl/blob/main/tools/data/README.md"))
_register(DatasetInfo(
    "demo", 8, "openpose", 2, "2d-normalized", 32, 2, ("train", "val"),
    "nothing: the SYNTHETIC demo data are generated into root on first use (Kinetics-skeleton JSON layout)",
    "pyg_sparse_stgcn.data.readers.demo.generate_demo (procedural, synthetic; no real recordings)"))


def available_datasets() -> list[str]:
    """Names accepted by :func:`build_dataset`."""
    return list(DATASETS)


def dataset_info(name: str) -> DatasetInfo:
    """Facts about the dataset ``name``.

    Raises:
        ValueError: For an unknown name, listing the valid ones.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid: {', '.join(DATASETS)}")
    return DATASETS[name]


# ---------------------------------------------------------------------------------------------------------
# sources: locate the files of a dataset and list its samples
# ---------------------------------------------------------------------------------------------------------
@dataclass
class _Item:
    """One entry to process: ``load()`` returns the sample(s); ``skip`` is a reason to skip it unread."""

    id: str
    source: str
    load: Callable[[], SkeletonSample | list[SkeletonSample]] | None = None
    skip: str | None = None


def _not_found(info: DatasetInfo, root: Path, detail: str = "") -> DatasetNotFoundError:
    return DatasetNotFoundError(
        f"dataset {info.name!r} not found under {root}{': ' + detail if detail else ''}.\n"
        f"  Expected under root: {info.expected}.\n  Where it comes from: {info.origin}.\n"
        f"  Point --root (root=) at the folder holding these files (default: {info.default_root}).")


def _find_pickle(info: DatasetInfo, root: Path, names: Iterable[str], ann_file: Any) -> Path | None:
    if ann_file is not None:
        p = Path(ann_file)
        p = p if p.is_absolute() or p.exists() else root / p
        if not p.is_file():
            raise _not_found(info, root, f"ann_file {p} does not exist")
        return p
    if root.is_file() and root.suffix == ".pkl":
        return root
    for n in names:
        if (root / n).is_file():
            return root / n
    return None


def _pyskl_items(path: Path, split: str, layout: str | None, kpfile_root: Any = None,
                 box_thr: float | None = None, max_person: int | None = None) -> Iterator[_Item]:
    """One item per annotation of ``split``, each converted lazily so that one bad annotation is skipped
    without losing the rest of the file."""
    from .readers.pyskl import iter_pyskl_items

    for item in iter_pyskl_items(path, split, layout, kpfile_root, box_thr, max_person):
        yield _Item(item.frame_dir, f"{path}:{item.where}", item.load)


class _Source(ABC):
    """Locates a dataset under ``root`` and lists the items of a split."""

    def __init__(self, info: DatasetInfo, root: Path, options: dict[str, Any]) -> None:
        self.info, self.root, self.options = info, root, dict(options)

    @abstractmethod
    def locate(self) -> None:
        """Find the dataset's files under ``root``; raise :class:`DatasetNotFoundError` when they are missing."""

    @abstractmethod
    def items(self, split: str) -> Iterator[_Item]:
        """The entries of ``split``, one per sample file or annotation."""

    def layout(self) -> str | None:
        return self.info.layout

    def _pop(self, valid: tuple[str, ...]) -> None:
        bad = sorted(set(self.options) - set(valid))
        if bad:
            raise ValueError(f"dataset {self.info.name!r}: unknown option(s) {', '.join(bad)}; valid: "
                             f"{', '.join(valid) or 'none'}")


def _rglob_files(root: Path, pattern: str) -> list[Path]:
    return sorted((p for p in root.rglob(pattern) if "processed" not in p.relative_to(root).parts[:-1]),
                  key=lambda p: p.name)


class _NTUSource(_Source):
    def locate(self) -> None:
        self._pop(("ann_file", "max_bodies"))
        bench = self.info.name
        pkl = "ntu60_3danno.pkl" if bench.startswith("ntu60") else "ntu120_3danno.pkl"
        self.pickle = _find_pickle(self.info, self.root, (pkl,), self.options.get("ann_file"))
        self.files: list[Path] = []
        if self.pickle is None:
            if self.root.is_dir():
                self.files = _rglob_files(self.root, "*.skeleton")
            if not self.files:
                raise _not_found(self.info, self.root)

    def items(self, split: str) -> Iterator[_Item]:
        from .readers import is_missing_skeleton, ntu_split, parse_ntu_name, read_ntu_skeleton

        bench = self.info.name
        if self.pickle is not None:
            prefix = bench.split("-")[1]
            yield from _pyskl_items(self.pickle, f"{prefix}_{split}", "nturgb+d")
            return
        which = "ntu60" if bench.startswith("ntu60") else "ntu120"
        max_bodies = int(self.options.get("max_bodies", 2))
        for f in self.files:
            stem = f.name.split(".")[0]
            try:
                n = parse_ntu_name(stem)
            except ValueError as e:
                yield _Item(stem, str(f), skip=f"not an NTU sample name: {e}")
                continue
            if which == "ntu60" and (n.setup > 17 or n.action > 60):
                continue  # an NTU-120 sample, not part of the NTU-60 benchmarks
            if is_missing_skeleton(stem, which):
                if self._split_of(n, bench) == split:
                    yield _Item(stem, str(f), skip=f"on the official {which} missing-skeleton list")
                continue
            if ntu_split(stem, bench) == split:
                yield _Item(stem, str(f), lambda f=f: read_ntu_skeleton(f, max_bodies=max_bodies))

    @staticmethod
    def _split_of(n: Any, bench: str) -> str:
        from .readers import ntu as _ntu

        train = {"ntu60-xsub": n.performer in _ntu.NTU60_XSUB_TRAIN_SUBJECTS,
                 "ntu60-xview": n.camera in _ntu.NTU60_XVIEW_TRAIN_CAMERAS,
                 "ntu120-xsub": n.performer in _ntu.NTU120_XSUB_TRAIN_SUBJECTS,
                 "ntu120-xset": n.setup in _ntu.NTU120_XSET_TRAIN_SETUPS}[bench]
        return "train" if train else "val"


class _KineticsJSONMixin:
    root: Path
    options: dict[str, Any]

    def _json_items(self, split: str, layout: str = "openpose") -> Iterator[_Item]:
        from .readers import read_kinetics_json, read_kinetics_labels

        label_file = self.root / f"kinetics_{split}_label.json"
        folder = self.root / f"kinetics_{split}"
        labels = read_kinetics_labels(label_file)
        for vid, reason in labels.skipped.items():
            yield _Item(vid, str(folder / f"{vid}.json"), skip=reason)
        n_in = int(self.options.get("num_person_in", 5))
        n_out = int(self.options.get("num_person_out", 2))
        for vid, label in labels.labels.items():
            path = folder / f"{vid}.json"
            if not path.is_file():
                yield _Item(vid, str(path), skip="listed in the label file but the JSON file is missing")
                continue
            yield _Item(vid, str(path), lambda p=path, lab=label: read_kinetics_json(
                p, num_person_in=n_in, num_person_out=n_out, layout=layout, label=lab))


class _KineticsSource(_KineticsJSONMixin, _Source):
    def locate(self) -> None:
        self._pop(("ann_file", "kpfile_root", "box_thr", "num_person_in", "num_person_out"))
        self.pickle = _find_pickle(self.info, self.root, ("k400_hrnet.pkl",), self.options.get("ann_file"))
        if self.pickle is None:
            need = [self.root / n for n in ("kinetics_train", "kinetics_val")]
            labels = [self.root / f"kinetics_{s}_label.json" for s in ("train", "val")]
            missing = [str(p.name) for p in need + labels if not p.exists()]
            if missing:
                raise _not_found(self.info, self.root, "missing " + ", ".join(missing))

    def layout(self) -> str | None:
        return "coco" if self.pickle is not None else "openpose"

    def items(self, split: str) -> Iterator[_Item]:
        if self.pickle is not None:
            yield from _pyskl_items(self.pickle, split, "coco", self.options.get("kpfile_root"),
                                    self.options.get("box_thr"), int(self.options.get("num_person_out", 2)))
        else:
            yield from self._json_items(split)


class _PysklSource(_Source):
    default_names: tuple[str, ...] = ()

    def locate(self) -> None:
        self._pop(("ann_file", "kpfile_root", "box_thr", "max_person", "layout"))
        self.pickle = _find_pickle(self.info, self.root, self.default_names, self.options.get("ann_file"))
        if self.pickle is None and not self.default_names and self.root.is_dir():
            pkls = sorted(self.root.glob("*.pkl"))
            if len(pkls) == 1:
                self.pickle = pkls[0]
            elif len(pkls) > 1:
                raise _not_found(self.info, self.root, "several .pkl files ("
                                 + ", ".join(p.name for p in pkls) + "); choose one with ann_file=")
        if self.pickle is None:
            raise _not_found(self.info, self.root)

    def layout(self) -> str | None:
        return self.options.get("layout") or self.info.layout

    def items(self, split: str) -> Iterator[_Item]:
        yield from _pyskl_items(self.pickle, split, self.layout(), self.options.get("kpfile_root"),
                                self.options.get("box_thr"), self.options.get("max_person"))


class _FineGymSource(_PysklSource):
    default_names = ("gym_hrnet.pkl",)


class _NWUCLASource(_Source):
    def locate(self) -> None:
        self._pop(())
        folder = self.root / "all_sqe"
        folder = folder if folder.is_dir() else self.root
        self.files = sorted(folder.glob("a*_s*_e*_v*.json")) if folder.is_dir() else []
        if not self.files:
            raise _not_found(self.info, self.root)

    def items(self, split: str) -> Iterator[_Item]:
        from .readers import nwucla_split, read_nwucla_json

        for f in self.files:
            try:
                sub = nwucla_split(f)
            except ValueError as e:
                yield _Item(f.stem, str(f), skip=str(e))
                continue
            if sub == split:
                yield _Item(f.stem, str(f), lambda f=f: read_nwucla_json(f))


class _MSRSource(_Source):
    def locate(self) -> None:
        from .readers import read_msr_file_list

        self._pop(("subset",))
        subset = self.options.get("subset", "cvpr12")
        if subset not in ("cvpr12", "all"):
            raise ValueError(f"msr-action3d: subset must be 'cvpr12' (the 557 listed files) or 'all', "
                             f"got {subset!r}")
        folder = self.root / "real_world_coordinates"
        folder = folder if folder.is_dir() else self.root
        self.files = sorted(folder.glob("a*_s*_e*_skeleton3D.txt")) if folder.is_dir() else []
        if not self.files:
            raise _not_found(self.info, self.root)
        listing = folder / "files_used_in_cvpr12_paper.txt"
        self.used = set(read_msr_file_list(listing)) if subset == "cvpr12" and listing.is_file() else None

    def items(self, split: str) -> Iterator[_Item]:
        from .readers import msr_action3d_split, read_msr_action3d

        for f in self.files:
            key = f.name.replace("_skeleton3D.txt", "")
            if self.used is not None and key not in self.used:
                continue
            try:
                sub = msr_action3d_split(key)
            except ValueError as e:
                yield _Item(key, str(f), skip=str(e))
                continue
            if sub == split:
                yield _Item(key, str(f), lambda f=f: read_msr_action3d(f))


class _UTKinectSource(_Source):
    def locate(self) -> None:
        self._pop(("label_file",))
        folder = self.root / "joints"
        folder = folder if folder.is_dir() else self.root
        name = self.options.get("label_file", "actionLabel.txt")
        self.label_file = folder / name
        self.files = sorted(folder.glob("joints_s*_e*.txt")) if folder.is_dir() else []
        if not self.files or not self.label_file.is_file():
            detail = f"label file {self.label_file} missing" if self.files else \
                f"no joints_sSS_eEE.txt files in {folder}"
            raise _not_found(self.info, self.root, detail)

    def items(self, split: str) -> Iterator[_Item]:
        from .readers import read_utkinect, read_utkinect_labels, utkinect_split

        table = read_utkinect_labels(self.label_file)
        for f in self.files:
            key = f.stem.replace("joints_", "")
            try:
                sub = utkinect_split(key)
            except ValueError as e:
                yield _Item(key, str(f), skip=str(e))
                continue
            if sub == split:
                yield _Item(key, str(f), lambda f=f: read_utkinect(f, table))


def _as_list(x: Any) -> list[SkeletonSample]:
    return [x] if isinstance(x, SkeletonSample) else list(x)


class _DemoSource(_KineticsJSONMixin, _Source):
    def locate(self) -> None:
        from .readers.demo import generate_demo

        self._pop(("seed", "num_train", "num_val", "num_empty", "min_frames", "max_frames"))
        generate_demo(self.root, **self.options)
        self.options = {}

    def items(self, split: str) -> Iterator[_Item]:
        yield from self._json_items(split)


_SOURCES: dict[str, type[_Source]] = {
    "ntu60-xsub": _NTUSource, "ntu60-xview": _NTUSource, "ntu120-xsub": _NTUSource,
    "ntu120-xset": _NTUSource, "kinetics": _KineticsSource, "finegym": _FineGymSource,
    "nw-ucla": _NWUCLASource, "msr-action3d": _MSRSource, "utkinect": _UTKinectSource, "pyskl": _PysklSource,
    "demo": _DemoSource,
}


def _resolve_split(info: DatasetInfo, split: str) -> str:
    if info.name == "pyskl":
        return split
    split = "val" if split == "test" else split
    if split not in info.splits:
        raise ValueError(f"dataset {info.name!r}: unknown split {split!r}; valid: "
                         f"{', '.join(info.splits)} (or 'test' for 'val')")
    return split


def check_dataset(name: str, root: str | os.PathLike | None = None, **options: Any) -> Path:
    """Checks that dataset ``name`` is present under ``root`` (default ``data/<name>``) without processing it
    (the ``demo`` data are generated).

    Returns:
        pathlib.Path: The root.

    Raises:
        DatasetNotFoundError: Listing the expected files and the dataset's origin.
        ValueError: For an unknown name or option.
    """
    info = dataset_info(name)
    root_p = Path(root if root is not None else info.default_root).expanduser()
    _SOURCES[name](info, root_p, options).locate()
    return root_p


# ---------------------------------------------------------------------------------------------------------
# the processed cache
# ---------------------------------------------------------------------------------------------------------
_HEADER_LEN = 128  # bytes reserved for a .npy header, rewritten in place once the row count is known


def _npy_header(shape: tuple[int, ...], descr: str) -> bytes:
    d = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + repr(tuple(shape)) + ", }"
    body = d.encode("latin1")
    pad = _HEADER_LEN - 10 - len(body) - 1
    if pad < 0:
        raise ValueError(f"array shape {shape} too large for the cache header")
    return b"\x93NUMPY\x01\x00" + (_HEADER_LEN - 10).to_bytes(2, "little") + body + b" " * pad + b"\n"


class _NpyStream:
    """Appends rows to a ``.npy`` file of shape ``(n, *row_shape)`` without holding them in memory."""

    def __init__(self, path: Path, row_shape: tuple[int, ...]) -> None:
        self.path, self.row_shape, self.rows = path, tuple(row_shape), 0
        self.f = open(path, "wb")
        self.f.write(_npy_header((0, *self.row_shape), "<f4"))

    def append(self, arr: np.ndarray) -> None:
        arr = np.ascontiguousarray(arr, dtype="<f4")
        if arr.shape[1:] != self.row_shape:
            raise ValueError(f"row shape {arr.shape[1:]} does not match {self.row_shape}")
        self.f.write(arr.tobytes())
        self.rows += arr.shape[0]

    def close(self) -> None:
        self.f.seek(0)
        self.f.write(_npy_header((self.rows, *self.row_shape), "<f4"))
        self.f.flush()
        os.fsync(self.f.fileno())
        self.f.close()


# ---------------------------------------------------------------------------------------------------------
# the dataset
# ---------------------------------------------------------------------------------------------------------
class SkeletonDataset(Dataset):
    r"""A named skeleton dataset (see the module docstring for names, files and the cache).

    ``dataset[i]`` is a :class:`~pyg_sparse_stgcn.data.SkeletonData` with ``x`` float32 :math:`(M, T, V, C)`
    (the stored sample, before ``transform``), ``y`` long :math:`(1,)`, ``keypoint_score`` :math:`(M, T, V)`
    for 2-D data, ``frame_dir``, ``layout``, ``total_frames`` and ``img_shape`` (where known); ``transform``
    (e.g. :func:`~pyg_sparse_stgcn.data.transforms.build_pipeline`) is applied to it.

    Args:
        root (str or PathLike, optional): Folder with the dataset's files (default: ``data/<name>``).
        name (str, optional): One of :func:`available_datasets`. (default: :obj:`"demo"`)
        split (str, optional): ``"train"`` or ``"val"`` (``"test"`` = ``"val"``); for ``pyskl`` any split of
            the pickle. (default: :obj:`"train"`)
        transform (callable, optional): Applied at access. (default: :obj:`None`)
        pre_transform (callable, optional): Applied once during processing, to the results dict of each
            sample. (default: :obj:`None`)
        pre_filter (callable, optional): Keeps a :class:`SkeletonSample` when it returns :obj:`True`.
            (default: :obj:`None`)
        processed_dir (str or PathLike, optional): Cache folder.
            (default: ``<root>/processed/<name>-<split>``)
        force_reload (bool, optional): Re-process even if a cache exists. (default: :obj:`False`)
        log (bool, optional): Show a progress bar while processing. (default: :obj:`True`)
        **options: Dataset options: NTU ``ann_file``, ``max_bodies``; kinetics ``ann_file``,
            ``kpfile_root``, ``box_thr``, ``num_person_in``, ``num_person_out``; finegym/pyskl ``ann_file``,
            ``kpfile_root``, ``box_thr``, ``max_person``, ``layout``; msr-action3d ``subset``
            (``"cvpr12"``/``"all"``); utkinect ``label_file``; demo ``seed``, ``num_train``, ``num_val``,
            ``num_empty``, ``min_frames``, ``max_frames``.

    Raises:
        DatasetNotFoundError: If the files are not under ``root`` (before any work).
    """

    def __init__(self, root: str | os.PathLike | None = None, name: str = "demo", split: str = "train",
                 transform: Callable | None = None, pre_transform: Callable | None = None,
                 pre_filter: Callable | None = None, processed_dir: str | os.PathLike | None = None,
                 force_reload: bool = False, log: bool = True, **options: Any) -> None:
        self.info = dataset_info(name)
        self.name = name
        self.split = _resolve_split(self.info, split)
        root_p = Path(root if root is not None else self.info.default_root).expanduser()
        self._source = _SOURCES[name](self.info, root_p, options)
        self._source.locate()
        self.options = {k: (str(v) if isinstance(v, os.PathLike) else v) for k, v in options.items()}
        self._processed_dir = Path(processed_dir) if processed_dir is not None else \
            root_p / "processed" / f"{name}-{self.split}"
        self._kp: np.ndarray | None = None
        self._score: np.ndarray | None = None
        super().__init__(str(root_p), transform, pre_transform, pre_filter, log=log,
                         force_reload=force_reload)
        self._load_index()

    # --- PyG Dataset API -----------------------------------------------------------------------------------
    @property
    def raw_dir(self) -> str:
        return self.root

    @property
    def processed_dir(self) -> str:
        return str(self._processed_dir)

    @property
    def raw_file_names(self) -> list[str]:
        return []

    @property
    def processed_file_names(self) -> list[str]:
        return ["keypoint.npy", "index.npz", "skipped.json", "meta.json"]

    def _config(self) -> dict[str, Any]:
        return {"cache_version": CACHE_VERSION, "name": self.name, "split": self.split,
                "options": self.options, "pre_transform": repr(self.pre_transform),
                "pre_filter": repr(self.pre_filter)}

    def _process(self) -> None:
        meta_path = self._processed_dir / "meta.json"
        if not self.force_reload and meta_path.is_file() and all(
                (self._processed_dir / f).is_file() for f in self.processed_file_names):
            try:
                if json.loads(meta_path.read_text()).get("config") == self._config():
                    return
            except (OSError, ValueError):
                pass
        self._processed_dir.mkdir(parents=True, exist_ok=True)
        meta_path.unlink(missing_ok=True)
        self.process()

    def process(self) -> None:
        """Reads every sample of the split and writes the cache (see the module docstring)."""
        out = self._processed_dir
        items = list(self._source.items(self.split))
        tmp = {n: out / f".{n}.tmp-{os.getpid()}" for n in ("keypoint.npy", "keypoint_score.npy")}
        kp_stream: _NpyStream | None = None
        sc_stream: _NpyStream | None = None
        index: dict[str, list] = {k: [] for k in ("offset", "num_person", "num_frames", "label", "img_shape",
                                                 "frame_dir", "has_score")}
        skipped: list[dict[str, str]] = []
        layout: str | None = None
        shape_vc: tuple[int, int] | None = None
        rows = 0
        num_classes = self.info.num_classes
        bar = tqdm(items, desc=f"processing {self.name}/{self.split}", unit="sample", disable=not self.log,
                   leave=False)
        try:
            for item in bar:
                if item.skip is not None:
                    skipped.append({"id": item.id, "source": item.source, "reason": item.skip})
                    continue
                try:
                    loaded = item.load()
                except (SkeletonFormatError, ValueError, OSError) as e:
                    skipped.append({"id": item.id, "source": item.source,
                                    "reason": f"{type(e).__name__}: {e}"})
                    continue
                for sample in _as_list(loaded):
                    reason = self._check(sample, num_classes, layout, shape_vc)
                    if reason is None and self.pre_filter is not None and not self.pre_filter(sample):
                        reason = "rejected by pre_filter"
                    if reason is not None:
                        skipped.append({"id": sample.frame_dir, "source": item.source, "reason": reason})
                        continue
                    kp, score = sample.keypoint, sample.keypoint_score
                    if self.pre_transform is not None:
                        res = self.pre_transform(sample.to_dict())
                        kp = np.asarray(res["keypoint"], np.float32)
                        score = res.get("keypoint_score")
                    M, T, V, C = kp.shape
                    if kp_stream is None:
                        layout, shape_vc = sample.layout, (V, C)
                        kp_stream = _NpyStream(tmp["keypoint.npy"], (V, C))
                        sc_stream = _NpyStream(tmp["keypoint_score.npy"], (V,))
                    elif (V, C) != shape_vc:
                        skipped.append({"id": sample.frame_dir, "source": item.source,
                                        "reason": f"shape (V, C) = {(V, C)} differs from the dataset's "
                                                  f"{shape_vc}"})
                        continue
                    kp_stream.append(kp.reshape(M * T, V, C))
                    has_score = score is not None
                    if has_score:
                        sc_stream.append(np.asarray(score, np.float32).reshape(M * T, V))
                    else:
                        sc_stream.append(np.zeros((M * T, V), np.float32))
                    index["offset"].append(rows)
                    rows += M * T
                    index["num_person"].append(M)
                    index["num_frames"].append(T)
                    index["label"].append(-1 if sample.label is None else sample.label)
                    index["img_shape"].append(list(sample.img_shape) if sample.img_shape else [-1, -1])
                    index["frame_dir"].append(sample.frame_dir)
                    index["has_score"].append(has_score)
        finally:
            bar.close()
            for s in (kp_stream, sc_stream):
                if s is not None and not s.f.closed:
                    s.close()
        if kp_stream is None:
            for p in tmp.values():
                p.unlink(missing_ok=True)
            detail = "; ".join(f"{s['id']}: {s['reason']}" for s in skipped[:5])
            raise ValueError(f"dataset {self.name!r} split {self.split!r} under {self.root}: no usable "
                             f"sample ({len(items)} entries, {len(skipped)} skipped"
                             f"{': ' + detail if detail else ''})")
        has_any_score = any(index["has_score"])
        os.replace(tmp["keypoint.npy"], out / "keypoint.npy")
        if has_any_score:
            os.replace(tmp["keypoint_score.npy"], out / "keypoint_score.npy")
        else:
            tmp["keypoint_score.npy"].unlink(missing_ok=True)
            (out / "keypoint_score.npy").unlink(missing_ok=True)
        buf = io.BytesIO()
        np.savez(buf, offset=np.asarray(index["offset"], np.int64),
                 num_person=np.asarray(index["num_person"], np.int64),
                 num_frames=np.asarray(index["num_frames"], np.int64),
                 label=np.asarray(index["label"], np.int64),
                 img_shape=np.asarray(index["img_shape"], np.int64).reshape(-1, 2),
                 has_score=np.asarray(index["has_score"], bool),
                 frame_dir=np.asarray(index["frame_dir"], dtype=str))
        atomic_write_bytes(out / "index.npz", buf.getvalue())
        atomic_write_json(out / "skipped.json", skipped, indent=1)
        labels = np.asarray(index["label"])
        if num_classes is None:
            num_classes = int(labels.max()) + 1 if labels.size and labels.max() >= 0 else 0
        meta = {"config": self._config(), "dataset": self.info.to_dict(), "layout": layout,
                "num_classes": num_classes, "num_samples": len(index["offset"]), "num_skipped": len(skipped),
                "num_rows": rows, "shape_vc": list(shape_vc), "has_score": has_any_score,
                "synthetic": self.name == "demo"}
        atomic_write_json(out / "meta.json", meta, indent=1)

    def _check(self, sample: SkeletonSample, num_classes: int | None, layout: str | None,
               shape_vc: tuple[int, int] | None) -> str | None:
        kp = sample.keypoint
        if kp.shape[0] == 0 or kp.shape[1] == 0:
            return f"empty keypoint array of shape {kp.shape}"
        if not np.isfinite(kp).all():
            return "keypoint holds NaN or infinite values"
        if sample.label is None:
            return "no label"
        if num_classes is not None and not 0 <= sample.label < num_classes:
            return f"label {sample.label} outside 0..{num_classes - 1}"
        if layout is not None and sample.layout != layout:
            return f"layout {sample.layout!r} differs from the dataset's {layout!r}"
        return None

    def _load_index(self) -> None:
        out = self._processed_dir
        self.meta: dict[str, Any] = json.loads((out / "meta.json").read_text())
        with np.load(out / "index.npz", allow_pickle=False) as z:
            self._index = {k: z[k] for k in z.files}
        self.skipped: list[dict[str, str]] = json.loads((out / "skipped.json").read_text())
        self._kp = None
        self._score = None

    def _arrays(self) -> tuple[np.ndarray, np.ndarray | None]:
        if self._kp is None:
            out = self._processed_dir
            self._kp = np.load(out / "keypoint.npy", mmap_mode="r", allow_pickle=False)
            if self.meta.get("has_score"):
                self._score = np.load(out / "keypoint_score.npy", mmap_mode="r", allow_pickle=False)
        return self._kp, self._score

    def __getstate__(self) -> dict[str, Any]:  # memory maps are reopened in the receiving process
        state = self.__dict__.copy()
        state["_kp"] = None
        state["_score"] = None
        return state

    def len(self) -> int:
        return int(self._index["offset"].shape[0])

    def get(self, idx: int) -> SkeletonData:
        kp_all, sc_all = self._arrays()
        ix = self._index
        off, M, T = int(ix["offset"][idx]), int(ix["num_person"][idx]), int(ix["num_frames"][idx])
        V, C = kp_all.shape[1:]
        x = np.array(kp_all[off:off + M * T]).reshape(M, T, V, C)
        kwargs: dict[str, Any] = {"x": torch.from_numpy(x), "num_nodes": V,
                                  "y": torch.tensor([int(ix["label"][idx])], dtype=torch.long),
                                  "frame_dir": str(ix["frame_dir"][idx]), "layout": self.layout,
                                  "total_frames": T}
        if sc_all is not None and bool(ix["has_score"][idx]):
            kwargs["keypoint_score"] = torch.from_numpy(np.array(sc_all[off:off + M * T]).reshape(M, T, V))
        if int(ix["img_shape"][idx][0]) >= 0:
            kwargs["img_shape"] = torch.as_tensor(ix["img_shape"][idx][None], dtype=torch.long)
        return SkeletonData(**kwargs)

    def sample(self, idx: int) -> SkeletonSample:
        """The stored sample ``idx`` as a :class:`SkeletonSample` (no transform)."""
        d = self.get(idx)
        score = d.keypoint_score.numpy() if "keypoint_score" in d else None
        img = tuple(int(v) for v in d.img_shape.reshape(-1).tolist()) if "img_shape" in d else None
        label = int(d.y[0])
        return SkeletonSample(keypoint=d.x.numpy(), label=None if label < 0 else label, frame_dir=d.frame_dir,
                              total_frames=int(d.total_frames), layout=self.layout, keypoint_score=score,
                              img_shape=img)

    # --- facts ---------------------------------------------------------------------------------------------
    @property
    def layout(self) -> str:
        """The skeleton layout of the stored samples."""
        return self.meta["layout"]

    @property
    def num_classes(self) -> int:
        return int(self.meta["num_classes"])

    @property
    def labels(self) -> np.ndarray:
        """All labels, ``(len(self),)`` int64."""
        return self._index["label"][np.asarray(self.indices())]

    @property
    def num_skipped(self) -> int:
        return len(self.skipped)

    @property
    def pipeline_kind(self) -> str:
        """``kind`` for :func:`~pyg_sparse_stgcn.data.transforms.build_pipeline` (``2d`` for a PYSKL 2-D
        pickle, ``3d`` for 3-D data, ``2d-normalized`` for Kinetics-skeleton JSON)."""
        if self.meta["shape_vc"][1] == 3 and not self.meta["has_score"]:
            return "3d"
        return "2d-normalized" if self.info.pipeline_kind == "2d-normalized" and self.layout == "openpose" \
            else "2d"

    def __repr__(self) -> str:
        synthetic = ", SYNTHETIC" if self.name == "demo" else ""
        return (f"SkeletonDataset({self.name}, split={self.split!r}, samples={len(self)}, "
                f"skipped={self.num_skipped}, classes={self.num_classes}, layout={self.layout!r}{synthetic})")


def build_dataset(name: str, root: str | os.PathLike | None = None, split: str = "train",
                  transform: Callable | None = None, **kwargs: Any) -> SkeletonDataset:
    """Builds the named dataset; see :class:`SkeletonDataset` for the arguments.

    Example::

        from pyg_sparse_stgcn.data import build_dataset, build_pipeline
        info = dataset_info("nw-ucla")
        train = build_dataset("nw-ucla", "data/nw-ucla", "train",
                              transform=build_pipeline(info.pipeline_kind, "j", info.clip_len,
                                                       layout=info.layout, num_person=info.num_person))
    """
    return SkeletonDataset(root, name=name, split=split, transform=transform, **kwargs)
