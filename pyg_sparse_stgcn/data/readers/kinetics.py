"""Kinetics-skeleton: the original ST-GCN release (one OpenPose JSON per video plus a label JSON).

Semantics follow the ST-GCN Kinetics feeder: the first ``num_person_in`` bodies listed in each frame are read,
``x`` and ``y`` are centred by :math:`-0.5`, coordinates are zeroed wherever the joint score is 0, persons are
ranked *per frame* by their summed joint score (descending, ties keep file order) and the best
``num_person_out`` are kept. Frames are placed by ``frame_index`` (1-based in the files) into 0-based slots.
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np

from ...graph import get_layout
from ..io_safe import load_json
from ..sample import SkeletonFormatError, SkeletonSample

__all__ = ["read_kinetics_json", "read_kinetics_labels", "KineticsLabels"]


def _is_int(v: Any) -> TypeGuard[int]:
    return isinstance(v, int) and not isinstance(v, bool)


def _require_fields(path: Path, obj: Any, keys: Iterable[str], what: str, where: str) -> None:
    """``obj`` must be a JSON object holding ``keys``; otherwise :class:`SkeletonFormatError` names the field."""
    if not isinstance(obj, dict):
        raise SkeletonFormatError(path, f"{what} must be an object, got {type(obj).__name__}", where=where)
    for key in keys:
        if key not in obj:
            raise SkeletonFormatError(path, f"missing field '{key}'", where=f"{where}.{key}")


def _float_array(path: Path, values: Any, n: int, where: str) -> np.ndarray:
    if not isinstance(values, list):
        raise SkeletonFormatError(path, f"expected a list of {n} numbers, got {type(values).__name__}",
                                  where=where)
    if len(values) != n:
        raise SkeletonFormatError(path, f"expected {n} numbers, got {len(values)}", where=where)
    try:
        arr = np.asarray(values, dtype=np.float32)
    except (TypeError, ValueError):
        bad = next((i for i, v in enumerate(values)
                    if isinstance(v, bool) or not isinstance(v, (int, float))), 0)
        raise SkeletonFormatError(path, f"value {values[bad]!r} is not a number",
                                  where=f"{where}[{bad}]") from None
    if arr.shape != (n,):
        raise SkeletonFormatError(path, f"expected {n} plain numbers", where=where)
    return arr


def _as_matrix(rows: list[Any], n: int) -> np.ndarray | None:
    """The rows as one (N, n) float32 array (one numpy call), or None unless they are N lists of n numbers."""
    try:
        arr = np.asarray(rows, dtype=np.float32)
    except (TypeError, ValueError):
        return None
    return arr if arr.shape == (len(rows), n) else None


def read_kinetics_json(path: str | os.PathLike, num_person_in: int = 5, num_person_out: int = 2,
                       layout: str = "openpose", label: int | None = None) -> SkeletonSample:
    r"""Read one Kinetics-skeleton video JSON (ST-GCN release format).

    The file is ``{"data": [{"frame_index": i, "skeleton": [{"pose": [x0, y0, ...], "score": [s0, ...]},
    ...]}, ...], "label": str, "label_index": int}``. With :math:`s` the joint score, the returned coordinates
    are

    .. math::
        (x', y') = \begin{cases} (x - 0.5,\ y - 0.5) & s > 0 \\ (0, 0) & s = 0 \end{cases}

    and persons are sorted per frame by :math:`\sum_v s_v`.

    Args:
        path (str or os.PathLike): The per-video JSON file.
        num_person_in (int, optional): Bodies read per frame, in file order (default: :obj:`5`).
        num_person_out (int, optional): Persons kept after ranking, :math:`M` (default: :obj:`2`).
        layout (str, optional): Skeleton layout; its joint count fixes :math:`V` (default: :obj:`"openpose"`,
            18 joints).
        label (int, optional): 0-based label overriding the file's ``label_index`` (e.g. from the label file)
            (default: :obj:`None`).

    Returns:
        SkeletonSample: ``keypoint`` :math:`(M, T, V, 2)` centred ``(x, y)``, ``keypoint_score``
        :math:`(M, T, V)`; the ST-GCN feeder's ``C = (x, y, score)`` tensor is their concatenation (what
        ``GenSkeFeat``/``FormatGCNInput`` build). ``T`` is the largest ``frame_index``; frames absent from the
        file stay zero (an index above ``max(1000, 10 × listed frames)`` is rejected as garbled).
        ``frame_dir`` is the file stem; ``label`` is ``label_index`` (or ``label``); ``meta`` holds
        ``label_name`` and ``max_bodies`` (most bodies listed in one frame).

    Shapes:
        - **keypoint**: :math:`(M, T, V, 2)` float32; **keypoint_score**: :math:`(M, T, V)` float32.

    Raises:
        SkeletonFormatError: If the JSON is invalid or a field is missing or has the wrong type or length; the
            message names the JSON path, e.g. ``data[3].skeleton[1].pose``.
    """
    if num_person_in < 1 or num_person_out < 1:
        raise ValueError(f"num_person_in and num_person_out must be >= 1, got {num_person_in}, "
                         f"{num_person_out}")
    p = Path(path)
    V = get_layout(layout).num_nodes
    doc = load_json(p)
    if not isinstance(doc, dict):
        raise SkeletonFormatError(p, f"top level must be an object with 'data', got {type(doc).__name__}",
                                  where="$")
    frames = doc.get("data")
    if not isinstance(frames, list):
        raise SkeletonFormatError(p, "missing or non-list field 'data' (the list of frames)", where="data")
    if label is None and "label_index" in doc:
        if not _is_int(doc["label_index"]) or doc["label_index"] < -1:
            raise SkeletonFormatError(p, f"label_index must be an int >= 0, got {doc['label_index']!r}",
                                      where="label_index")
        # ST-GCN's unlabelled test files carry label_index -1
        label = doc["label_index"] if doc["label_index"] >= 0 else None
    label_name = doc.get("label")
    if label_name is not None and not isinstance(label_name, str):
        raise SkeletonFormatError(p, f"label must be a string, got {type(label_name).__name__}",
                                  where="label")

    persons: list[list[int]] = []  # per body read: (slot, rank-in-file)
    poses: list[Any] = []
    scores: list[Any] = []
    wheres: list[str] = []
    seen: set[int] = set()
    max_bodies = 0
    for fi, frame in enumerate(frames):
        where = f"data[{fi}]"
        if not isinstance(frame, dict):
            raise SkeletonFormatError(p, f"frame must be an object, got {type(frame).__name__}", where=where)
        idx = frame.get("frame_index")
        if not _is_int(idx) or idx < 1:
            raise SkeletonFormatError(p, f"frame_index must be an int >= 1 (1-based), got {idx!r}",
                                      where=f"{where}.frame_index")
        if idx in seen:
            raise SkeletonFormatError(p, f"frame_index {idx} occurs twice", where=f"{where}.frame_index")
        seen.add(idx)
        bodies = frame.get("skeleton")
        if not isinstance(bodies, list):
            raise SkeletonFormatError(p, "missing or non-list field 'skeleton'", where=f"{where}.skeleton")
        max_bodies = max(max_bodies, len(bodies))
        for m, body in enumerate(bodies[:num_person_in]):
            bw = f"{where}.skeleton[{m}]"
            _require_fields(p, body, ("pose", "score"), "body", bw)
            poses.append(body["pose"])
            scores.append(body["score"])
            wheres.append(bw)
            persons.append([idx - 1, m])

    T = max(seen) if seen else 0
    if T == 0:
        raise SkeletonFormatError(p, "the video has no frames ('data' is empty)", where="data")
    if T > max(1000, 10 * len(frames)):  # a garbled index would otherwise allocate a huge array
        bad = next(i for i, fr in enumerate(frames) if fr["frame_index"] == T)
        raise SkeletonFormatError(p, f"frame_index {T} is implausible for a video listing {len(frames)} "
                                  "frames (more than 10x, and over 1000)", where=f"data[{bad}].frame_index")
    full = np.zeros((num_person_out, T, V, 3), dtype=np.float32)
    if poses:
        pose, score = _as_matrix(poses, 2 * V), _as_matrix(scores, V)
        if pose is None or score is None:  # locate the first bad body for the message
            for bw, po, sc in zip(wheres, poses, scores):
                _float_array(p, po, 2 * V, f"{bw}.pose")
                _float_array(p, sc, V, f"{bw}.score")
            raise SkeletonFormatError(p, "pose/score lists are not plain numbers", where="data")
        body = np.concatenate([pose.reshape(-1, V, 2), score[:, :, None]], axis=2)  # (N, V, 3)
        body[:, :, :2] -= 0.5
        body[:, :, :2][body[:, :, 2] == 0] = 0.0
        pm = np.asarray(persons, dtype=np.int64)  # (N, 2): frame slot, position in the frame
        # rank the bodies of each frame by summed score (descending; ties keep file order)
        order = np.lexsort((pm[:, 1], -body[:, :, 2].sum(axis=1), pm[:, 0]))
        t_sorted = pm[order, 0]
        rank = np.arange(len(order)) - np.searchsorted(t_sorted, t_sorted, side="left")
        keep = rank < num_person_out
        full[rank[keep], t_sorted[keep]] = body[order[keep]]
    return SkeletonSample(
        keypoint=np.ascontiguousarray(full[..., :2]),
        keypoint_score=np.ascontiguousarray(full[..., 2]),
        label=label,
        frame_dir=p.stem,
        total_frames=T,
        layout=get_layout(layout).name,
        meta={"label_name": label_name, "max_bodies": max_bodies, "source": str(p)},
    )


@dataclass
class KineticsLabels:
    """The content of a Kinetics-skeleton label file (``kinetics_{train,val}_label.json``).

    Attributes:
        labels: ``video_id -> label_index`` for every entry with ``has_skeleton: true`` (samples to read).
        skipped: ``video_id -> reason`` for every entry with ``has_skeleton: false``, in file order (the
            ST-GCN feeder's ``ignore_empty_sample`` drops them; datasets list them in
            ``processed/skipped.json``).
        class_names: ``label_index -> label`` name over all entries.
    """

    labels: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    class_names: dict[int, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        """``max(label_index) + 1`` over all entries (400 for Kinetics-400)."""
        seen = list(self.class_names) + list(self.labels.values())
        return max(seen) + 1 if seen else 0

    def video_ids(self) -> Iterable[str]:
        return self.labels.keys()


def read_kinetics_labels(path: str | os.PathLike) -> KineticsLabels:
    """Read a Kinetics-skeleton label file.

    The file is ``{"<video_id>": {"has_skeleton": bool, "label": str, "label_index": int}, ...}``.

    Args:
        path (str or os.PathLike): ``kinetics_train_label.json`` or ``kinetics_val_label.json``.

    Returns:
        KineticsLabels: the usable entries (``labels``), the ``has_skeleton: false`` entries (``skipped``,
        with the reason ``"has_skeleton is false"``) and the class names.

    Raises:
        SkeletonFormatError: If an entry lacks a field or has a wrong type; the message names the JSON key,
            e.g. ``['--07WQ2iBlw'].label_index``.
    """
    p = Path(path)
    doc = load_json(p)
    if not isinstance(doc, dict):
        raise SkeletonFormatError(p, f"top level must be an object mapping video ids to entries, got "
                                  f"{type(doc).__name__}", where="$")
    out = KineticsLabels()
    for vid, entry in doc.items():
        where = f"[{vid!r}]"
        _require_fields(p, entry, ("has_skeleton", "label_index"), "entry", where)
        has, idx, name = entry["has_skeleton"], entry["label_index"], entry.get("label")
        if not isinstance(has, bool):
            raise SkeletonFormatError(p, f"has_skeleton must be true or false, got {has!r}",
                                      where=f"{where}.has_skeleton")
        if not _is_int(idx) or idx < 0:
            raise SkeletonFormatError(p, f"label_index must be an int >= 0, got {idx!r}",
                                      where=f"{where}.label_index")
        if name is not None:
            if not isinstance(name, str):
                raise SkeletonFormatError(p, f"label must be a string, got {name!r}", where=f"{where}.label")
            prev = out.class_names.setdefault(idx, name)
            if prev != name:
                raise SkeletonFormatError(p, f"label_index {idx} is named both {prev!r} and {name!r}",
                                          where=f"{where}.label")
        if has:
            out.labels[vid] = idx
        else:
            out.skipped[vid] = "has_skeleton is false"
    return out
