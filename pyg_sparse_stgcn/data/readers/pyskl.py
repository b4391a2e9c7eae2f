"""PYSKL / mmaction2 skeleton annotation pickles.

Three forms are read (anchors §A.4, FORMATS §2.3-2.4):

* ``{'split': {name: [frame_dir, ...]}, 'annotations': [dict, ...]}`` — the standard PYSKL file
  (``ntu60_3danno.pkl``, ``ntu60_hrnet.pkl``, ``gym_hrnet.pkl``, ...); a plain list of annotation dicts is
  read the same way, without splits;
* one annotation dict (e.g. PaddleVideo's ``example_UCF101_skeleton.pkl``);
* the Kinetics-400 kpfile form: annotations without ``keypoint`` but with ``raw_file`` (a pickle holding
  ``{frame_dir: {'keypoint': (N, V, 3) x, y, score}}`` or ``{frame_dir: (N, V, 3)}``), ``frame_inds``
  (1-based frame of each of the N detected skeletons) and ``box_score``.

An annotation holds ``keypoint`` ``(M, T, V, C)`` (C = 2 with ``keypoint_score`` ``(M, T, V)`` for 2-D poses,
C = 3 for 3-D), ``frame_dir``, ``total_frames``, ``label`` and, for 2-D, ``img_shape``/``original_shape``.
float16 arrays are cast to float32. Every pickle goes through the restricted unpickler of
:mod:`pyg_sparse_stgcn.data.io_safe`.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ...graph import get_layout
from ..io_safe import load_pickle
from ..sample import SkeletonFormatError, SkeletonSample

__all__ = ["read_pyskl_annotations", "iter_pyskl_annotations", "iter_pyskl_items", "PysklItem",
           "pyskl_splits", "infer_layout"]

_LAYOUT_BY_JOINTS_3D = {25: "nturgb+d", 20: "nw-ucla", 17: "coco", 18: "openpose", 21: "handmp"}
_LAYOUT_BY_JOINTS_2D = {17: "coco", 18: "openpose", 25: "openpose-body25", 21: "handmp", 20: "nw-ucla"}
_ANNOTATION_KEYS = ("frame_dir, total_frames, label, keypoint (+ keypoint_score for 2-D) or raw_file + "
                    "frame_inds")


def infer_layout(num_joints: int, num_channels: int) -> str:
    """Default layout for ``V`` joints: 3-D 25 → ``nturgb+d``, 2-D 25 → ``openpose-body25``, 17 → ``coco``,
    18 → ``openpose``, 20 → ``nw-ucla``, 21 → ``handmp``.

    Raises:
        ValueError: For any other joint count (pass ``layout=`` explicitly).
    """
    table = _LAYOUT_BY_JOINTS_3D if num_channels == 3 else _LAYOUT_BY_JOINTS_2D
    if num_joints not in table:
        raise ValueError(f"no built-in layout has {num_joints} joints; pass layout= (known joint counts: "
                         f"{sorted(table)})")
    return table[num_joints]


def _load_root(path: Path) -> tuple[dict[str, list[str]] | None, list[Any], str]:
    obj = load_pickle(path)
    if isinstance(obj, dict) and "annotations" in obj:
        anns, split = obj["annotations"], obj.get("split")
        if not isinstance(anns, list):
            raise SkeletonFormatError(path, f"'annotations' must be a list, got {type(anns).__name__}",
                                      where="key 'annotations'")
        if split is not None:
            if not isinstance(split, dict) or not all(
                    isinstance(k, str) and isinstance(v, (list, tuple)) for k, v in split.items()):
                raise SkeletonFormatError(path, "'split' must map split names to lists of frame_dir",
                                          where="key 'split'")
            split = {k: [str(x) for x in v] for k, v in split.items()}
        return split, anns, "annotations"
    if isinstance(obj, dict) and ("keypoint" in obj or "raw_file" in obj or "frame_dir" in obj):
        return None, [obj], "annotation"
    if isinstance(obj, list):
        return None, obj, ""
    found = sorted(map(str, obj)) if isinstance(obj, dict) else type(obj).__name__
    raise SkeletonFormatError(path, "not a PYSKL annotation file: expected {'split', 'annotations'}, a "
                              f"list of annotation dicts or one annotation dict ({_ANNOTATION_KEYS}); "
                              f"found {found}", where="pickle root")


def pyskl_splits(path: str | os.PathLike) -> dict[str, list[str]]:
    """The ``split`` dict of a PYSKL pickle (empty when the file has none)."""
    split, _, _ = _load_root(Path(path))
    return split or {}


class _KpfileCache:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.files: dict[Path, tuple[Path, Any]] = {}

    def get(self, raw_file: Any, ann_path: Path, where: str) -> Any:
        if not isinstance(raw_file, (str, os.PathLike)):
            raise SkeletonFormatError(ann_path, f"raw_file must be a path, got {raw_file!r}", where=where)
        f = Path(raw_file)
        f = f if f.is_absolute() else self.base / f
        if f not in self.files:
            if not f.is_file():
                raise SkeletonFormatError(ann_path, f"kpfile {f} is missing: this K400-style annotation "
                                          "keeps its keypoints in separate kpfiles (PYSKL 'raw_file'); put "
                                          "them there or pass kpfile_root=", where=where)
            self.files[f] = (f, load_pickle(f))
        return self.files[f]


def _get(ann: dict, key: str, path: Path, where: str) -> Any:
    if key not in ann:
        raise SkeletonFormatError(path, f"missing key '{key}' (annotation keys: {sorted(map(str, ann))})",
                                  where=f"{where}['{key}']")
    return ann[key]


def _array(value: Any, path: Path, where: str, ndim: int) -> np.ndarray:
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "fiu" or value.ndim != ndim:
        desc = f"{value.dtype} array of shape {value.shape}" if isinstance(value, np.ndarray) else \
            type(value).__name__
        raise SkeletonFormatError(path, f"expected a numeric {ndim}-D array, got {desc}", where=where)
    return value.astype(np.float32)


def _expand_kpfile(ann: dict, kp: Any, path: Path, where: str, box_thr: float | None,
                   max_person: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    """(N, V, 3) skeletons + 1-based frame_inds → (M, T, V, 2) keypoint, (M, T, V) score."""
    kfile, kdict = kp
    fd = ann.get("frame_dir")
    if not isinstance(kdict, dict) or fd not in kdict:
        raise SkeletonFormatError(kfile, f"kpfile holds no entry for frame_dir {fd!r}", where=f"key {fd!r}")
    entry = kdict[fd]
    if isinstance(entry, dict):
        entry = _get(entry, "keypoint", kfile, f"[{fd!r}]")
    skel = _array(entry, kfile, f"[{fd!r}]['keypoint']", 3)
    if skel.shape[2] != 3:
        raise SkeletonFormatError(kfile, f"kpfile skeletons must be (N, V, 3) x, y, score; got {skel.shape}",
                                  where=f"[{fd!r}]['keypoint']")
    inds = _get(ann, "frame_inds", path, where)
    if not isinstance(inds, np.ndarray) or inds.dtype.kind not in "iu" or inds.ndim != 1:
        raise SkeletonFormatError(path, "frame_inds must be a 1-D integer array",
                                  where=f"{where}['frame_inds']")
    if len(inds) != len(skel):
        raise SkeletonFormatError(path, f"frame_inds has {len(inds)} entries but the kpfile holds "
                                  f"{len(skel)} skeletons", where=f"{where}['frame_inds']")
    T = int(_get(ann, "total_frames", path, where))
    inds = inds.astype(np.int64)
    if len(inds) and (inds.min() < 1 or inds.max() > T):
        raise SkeletonFormatError(path, f"frame_inds must lie in 1..total_frames={T} (1-based), got "
                                  f"{inds.min()}..{inds.max()}", where=f"{where}['frame_inds']")
    if box_thr is not None:
        bs = _get(ann, "box_score", path, where)
        if not isinstance(bs, np.ndarray) or bs.shape != inds.shape:
            raise SkeletonFormatError(path, "box_score must be an array as long as frame_inds",
                                      where=f"{where}['box_score']")
        keep = bs.astype(np.float32) >= box_thr
        skel, inds = skel[keep], inds[keep]
    t0 = inds - 1
    # rank the skeletons of each frame by summed joint score (descending), stable in file order
    order = np.lexsort((-skel[:, :, 2].sum(1), t0))
    skel, t0 = skel[order], t0[order]
    first = np.searchsorted(t0, t0, side="left")
    rank = np.arange(len(t0)) - first
    M = int(rank.max()) + 1 if len(rank) else 1
    if max_person is not None:
        M = min(M, max_person)
    keep = rank < M
    V = skel.shape[1]
    kpt = np.zeros((M, T, V, 2), np.float32)
    score = np.zeros((M, T, V), np.float32)
    kpt[rank[keep], t0[keep]] = skel[keep, :, :2]
    score[rank[keep], t0[keep]] = skel[keep, :, 2]
    return kpt, score, T


class PysklItem(NamedTuple):
    """One annotation of a PYSKL pickle, not yet converted: ``load()`` returns its
    :class:`~pyg_sparse_stgcn.data.SkeletonSample` or raises :class:`SkeletonFormatError`, so a dataset can
    skip and list one bad annotation without losing the rest of the file."""

    frame_dir: str
    where: str
    load: Callable[[], SkeletonSample]


def iter_pyskl_items(path: str | os.PathLike, split: str | None = None, layout: str | None = None,
                     kpfile_root: str | os.PathLike | None = None, box_thr: float | None = None,
                     max_person: int | None = None) -> Iterator[PysklItem]:
    """Yield a :class:`PysklItem` per annotation (of ``split``); arguments as in
    :func:`read_pyskl_annotations`.

    Structural errors of the file itself (globals, root keys, an unknown ``split``) raise at once; errors of
    one annotation raise from its ``load()``.
    """
    p = Path(path)
    splits, anns, prefix = _load_root(p)
    wanted: set[str] | None = None
    if split is not None:
        if splits is None:
            raise SkeletonFormatError(p, f"split {split!r} requested but the file has no 'split' dict",
                                      where="key 'split'")
        if split not in splits:
            raise SkeletonFormatError(p, f"unknown split {split!r}; valid: {', '.join(sorted(splits))}",
                                      where="key 'split'")
        wanted = set(splits[split])
    cache = _KpfileCache(Path(kpfile_root) if kpfile_root is not None else p.parent)
    for i, ann in enumerate(anns):
        where = "annotation" if prefix == "annotation" else f"{prefix}[{i}]"
        fd = ann.get("frame_dir") if isinstance(ann, dict) else None
        fd = fd.decode() if isinstance(fd, bytes) else (None if fd is None else str(fd))
        if wanted is not None and fd not in wanted:
            continue

        def load(ann: Any = ann, where: str = where) -> SkeletonSample:
            if not isinstance(ann, dict):
                raise SkeletonFormatError(p, f"annotation must be a dict, got {type(ann).__name__}",
                                          where=where)
            name = _get(ann, "frame_dir", p, where)
            name = name.decode() if isinstance(name, bytes) else str(name)
            return _annotation_to_sample(ann, name, p, where, layout, cache, box_thr, max_person)

        yield PysklItem(fd if fd is not None else f"<{where}>", where, load)


def iter_pyskl_annotations(path: str | os.PathLike, split: str | None = None, layout: str | None = None,
                           kpfile_root: str | os.PathLike | None = None, box_thr: float | None = None,
                           max_person: int | None = None) -> Iterator[SkeletonSample]:
    """Yield the samples of a PYSKL pickle one at a time (see :func:`read_pyskl_annotations`); the first bad
    annotation raises."""
    for item in iter_pyskl_items(path, split, layout, kpfile_root, box_thr, max_person):
        yield item.load()


def _annotation_to_sample(ann: dict, fd: str, p: Path, where: str, layout: str | None, cache: _KpfileCache,
                          box_thr: float | None, max_person: int | None) -> SkeletonSample:
    meta: dict[str, Any] = {"source": str(p)}
    if "keypoint" in ann:
        kp = _array(ann["keypoint"], p, f"{where}['keypoint']", 4)
        if kp.shape[-1] not in (2, 3):
            raise SkeletonFormatError(p, f"keypoint must be (M, T, V, C) with C = 2 or 3, got {kp.shape}",
                                      where=f"{where}['keypoint']")
        score = None
        if "keypoint_score" in ann:
            score = _array(ann["keypoint_score"], p, f"{where}['keypoint_score']", 3)
            if score.shape != kp.shape[:3]:
                raise SkeletonFormatError(p, f"keypoint_score shape {score.shape} does not match keypoint "
                                          f"{kp.shape[:3]} (M, T, V)", where=f"{where}['keypoint_score']")
        elif kp.shape[-1] == 2:
            raise SkeletonFormatError(p, "2-D keypoint (C = 2) without keypoint_score",
                                      where=f"{where}['keypoint_score']")
        if max_person is not None and kp.shape[0] > max_person:
            kp = kp[:max_person]
            score = None if score is None else score[:max_person]
        T = kp.shape[1]
        tf = ann.get("total_frames", T)
        if not isinstance(tf, (int, np.integer)) or isinstance(tf, bool):
            raise SkeletonFormatError(p, f"total_frames must be an int, got {tf!r}",
                                      where=f"{where}['total_frames']")
        if int(tf) != T:
            meta["annotated_total_frames"] = int(tf)
    elif "raw_file" in ann:
        kfile = cache.get(ann["raw_file"], p, f"{where}['raw_file']")
        kp, score, T = _expand_kpfile(ann, kfile, p, where, box_thr, max_person)
        meta["raw_file"] = str(kfile[0])
    else:
        raise SkeletonFormatError(
            p, f"annotation {fd!r} has neither 'keypoint' nor 'raw_file': this is an index-only file "
            "(PYSKL's K400 form keeps keypoints in separate kpfiles named by 'raw_file'); it holds no poses",
            where=f"{where}['keypoint']")
    label = ann.get("label")
    bad_label = not isinstance(label, (int, np.integer)) or isinstance(label, bool) or label < 0
    if label is not None and bad_label:
        raise SkeletonFormatError(p, f"label must be an int >= 0, got {label!r}", where=f"{where}['label']")
    img_shape = ann.get("img_shape")
    if img_shape is not None:
        if not (isinstance(img_shape, (tuple, list)) and len(img_shape) == 2):
            raise SkeletonFormatError(p, f"img_shape must be (height, width), got {img_shape!r}",
                                      where=f"{where}['img_shape']")
        img_shape = (int(img_shape[0]), int(img_shape[1]))
    for key in ("original_shape", "box_score", "valid", "frame_inds"):
        if key in ann:
            meta[key] = ann[key]
    lay = layout if layout is not None else _infer(kp, p, where)
    V = get_layout(lay).num_nodes
    if kp.shape[2] != V:
        raise SkeletonFormatError(p, f"keypoint has {kp.shape[2]} joints but layout {lay!r} has {V}",
                                  where=f"{where}['keypoint']")
    return SkeletonSample(keypoint=kp, label=label, frame_dir=fd, total_frames=T, layout=get_layout(lay).name,
                          keypoint_score=score, img_shape=img_shape, meta=meta)


def _infer(kp: np.ndarray, p: Path, where: str) -> str:
    try:
        return infer_layout(kp.shape[2], kp.shape[3])
    except ValueError as e:
        raise SkeletonFormatError(p, str(e), where=f"{where}['keypoint']") from None


def read_pyskl_annotations(path: str | os.PathLike, split: str | None = None, layout: str | None = None,
                           kpfile_root: str | os.PathLike | None = None, box_thr: float | None = None,
                           max_person: int | None = None) -> list[SkeletonSample]:
    r"""Read a PYSKL annotation pickle into samples.

    For the K400 kpfile form, the :math:`N` skeletons of an annotation are placed by ``frame_inds`` (1-based)
    into 0-based frames of a :math:`T` = ``total_frames`` sequence; within a frame they are ranked by summed
    joint score (highest first, as PYSKL's ``DecompressPose`` does) into person slots :math:`M` = the most
    skeletons in any frame (capped by ``max_person``). Frames without a skeleton stay zero.

    Args:
        path (str or os.PathLike): The pickle (loaded with the restricted unpickler).
        split (str, optional): Keep only annotations whose ``frame_dir`` is in ``split[split]``, e.g.
            ``'xsub_train'`` (default: :obj:`None`, all annotations).
        layout (str, optional): Skeleton layout; by default inferred from ``V`` and ``C`` with
            :func:`infer_layout` (default: :obj:`None`).
        kpfile_root (str or os.PathLike, optional): Directory that relative ``raw_file`` paths are resolved
            against (default: :obj:`None`, the pickle's directory).
        box_thr (float, optional): K400 form: drop skeletons whose ``box_score`` is below this (PYSKL's
            ``box_thr``) (default: :obj:`None`).
        max_person (int, optional): Keep at most this many persons (default: :obj:`None`).

    Returns:
        list[SkeletonSample]: ``keypoint`` :math:`(M, T, V, C)` float32 (float16 input is cast) with
        ``keypoint_score`` :math:`(M, T, V)` for 2-D data; ``img_shape`` as annotated; ``meta`` keeps
        ``original_shape``, ``box_score``, ``valid``, ``frame_inds`` and ``raw_file`` when present.

    Raises:
        SkeletonFormatError: If the pickle holds disallowed globals, has the wrong structure or keys, an
            unknown ``split``, arrays of the wrong shape or type, an index-only annotation (no ``keypoint``
            and no ``raw_file``) or a ``raw_file`` that does not exist (named in the message).
    """
    return list(iter_pyskl_annotations(path, split, layout, kpfile_root, box_thr, max_person))
