"""UTKinect-Action3D: one continuous recording per subject and repetition (``joints_sSS_eEE.txt``) cut into
action segments by a label file (``actionLabel.txt``).

Joint file: one line per frame, a frame id followed by 60 floats (20 joints × x, y, z in metres, Kinect v1
camera space, Kinect v1 SDK joint order, i.e. the ``'nw-ucla'`` layout). Frame ids are sparse, non-decreasing
and sometimes repeated. Label file: per recording a line ``sSS_eEE`` and 10 lines ``name: start end``
(inclusive frame ids) in the fixed order walk, sitDown, standUp, pickUp, carry, throw, push, pull,
waveHands, clapHands; ``NaN NaN`` marks a segment that does not exist (``s10_e02 carry``), leaving 199
segments.
"""
from __future__ import annotations

import math
import os
import re
from pathlib import Path

import numpy as np

from ..sample import SkeletonFormatError, SkeletonSample
from .msr import _parse_rows, _text_lines

__all__ = ["read_utkinect", "read_utkinect_labels", "utkinect_split", "UTKINECT_CLASSES"]

#: Action names in label order (0-based label = position).
UTKINECT_CLASSES = ("walk", "sitDown", "standUp", "pickUp", "carry", "throw", "push", "pull", "waveHands",
                    "clapHands")
_REC_RE = re.compile(r"s(\d{2})_e(\d{2})")


def utkinect_split(name: str) -> str:
    """Cross-subject odd/even split: subjects 1, 3, 5, 7, 9 ``'train'``, the others ``'val'``."""
    m = _REC_RE.search(Path(name).name)
    if m is None:
        raise ValueError(f"{name!r} holds no UTKinect recording id sSS_eEE")
    return "train" if int(m.group(1)) % 2 == 1 else "val"


def read_utkinect_labels(path: str | os.PathLike) -> dict[str, dict[str, tuple[int, int] | None]]:
    """Read ``actionLabel.txt`` (or the third-party ``actionLabel_modified.txt``, same layout).

    Returns:
        dict: ``{'s01_e01': {'walk': (252, 390), ...}, ...}`` with inclusive frame-id ranges; a segment
        given as ``NaN NaN`` maps to :obj:`None`.

    Raises:
        SkeletonFormatError: If a recording header, an action name, the action order or a range is wrong;
            the message names the line.
    """
    p = Path(path)
    lines = _text_lines(p)
    out: dict[str, dict[str, tuple[int, int] | None]] = {}
    rec: str | None = None
    for i, line in enumerate(lines):
        s = line.strip()
        if not s:
            continue
        where = f"line {i + 1}"
        if ":" not in s:
            if _REC_RE.fullmatch(s) is None:
                raise SkeletonFormatError(p, "expected a recording id sSS_eEE or 'action: start end', "
                                          f"got {s!r}", where=where)
            if rec is not None and len(out[rec]) != len(UTKINECT_CLASSES):
                raise SkeletonFormatError(p, f"recording {rec} lists {len(out[rec])} actions, expected "
                                          f"{len(UTKINECT_CLASSES)}", where=where)
            if s in out:
                raise SkeletonFormatError(p, f"recording {s} appears twice", where=where)
            rec = s
            out[rec] = {}
            continue
        if rec is None:
            raise SkeletonFormatError(p, "action line before the first recording id", where=where)
        name, _, rng = s.partition(":")
        name = name.strip()
        k = len(out[rec])
        if k >= len(UTKINECT_CLASSES) or name != UTKINECT_CLASSES[k]:
            exp = UTKINECT_CLASSES[k] if k < len(UTKINECT_CLASSES) else "a recording id"
            raise SkeletonFormatError(p, f"expected action {exp!r}, got {name!r} (order: "
                                      f"{', '.join(UTKINECT_CLASSES)})", where=where)
        parts = rng.split()
        if len(parts) != 2:
            raise SkeletonFormatError(p, f"expected 'start end', got {rng.strip()!r}", where=where)
        try:
            a, b = float(parts[0]), float(parts[1])
        except ValueError:
            raise SkeletonFormatError(p, f"start/end must be frame ids or NaN, got {rng.strip()!r}",
                                      where=where) from None
        if math.isnan(a) or math.isnan(b):
            out[rec][name] = None
        elif a != int(a) or b != int(b) or a > b:
            raise SkeletonFormatError(p, f"start/end must be integer frame ids with start <= end, got "
                                      f"{rng.strip()!r}", where=where)
        else:
            out[rec][name] = (int(a), int(b))
    if rec is not None and len(out[rec]) != len(UTKINECT_CLASSES):
        raise SkeletonFormatError(p, f"recording {rec} lists {len(out[rec])} actions, expected "
                                  f"{len(UTKINECT_CLASSES)}", where=f"line {len(lines)}")
    if not out:
        raise SkeletonFormatError(p, "no recordings in the label file", where="line 1")
    return out


LabelTable = dict[str, dict[str, "tuple[int, int] | None"]]


def read_utkinect(path: str | os.PathLike, labels: str | os.PathLike | LabelTable) -> list[SkeletonSample]:
    r"""Read one UTKinect recording and cut it into its labelled action segments.

    A segment holds the frames whose id lies in ``[start, end]``; a repeated frame id keeps its first line.
    Segments marked ``NaN NaN`` are absent from the result.

    Args:
        path (str or os.PathLike): ``joints_sSS_eEE.txt``.
        labels (str, os.PathLike or dict): The label file or the dict from :func:`read_utkinect_labels`.

    Returns:
        list[SkeletonSample]: one per segment, in label order: ``keypoint`` :math:`(1, T, 20, 3)` float32,
        ``layout='nw-ucla'``, ``label`` the 0-based index in :data:`UTKINECT_CLASSES`, ``frame_dir``
        ``sSS_eEE_<action>``; ``meta`` holds ``subject, episode, action, start, end, frame_ids`` and the
        cross-subject ``split``.

    Raises:
        SkeletonFormatError: If a line does not hold a frame id and 60 numbers, frame ids decrease, the
            recording is missing from the labels, or a segment holds no frame.
    """
    p = Path(path)
    m = _REC_RE.search(p.name)
    if m is None:
        raise ValueError(f"{p}: the file name must hold the recording id sSS_eEE (e.g. joints_s01_e01.txt)")
    rec = m.group(0)
    table = labels if isinstance(labels, dict) else read_utkinect_labels(labels)
    if rec not in table:
        raise SkeletonFormatError(p, f"recording {rec} is not in the label file (it lists "
                                  f"{', '.join(sorted(table))})", where="file name")
    lines = _text_lines(p)
    if not lines:
        raise SkeletonFormatError(p, "the file holds no frames", where="line 1")
    rows = _parse_rows(p, lines, 61, "frame")
    ids = rows[:, 0]
    if (ids != np.round(ids)).any():
        bad = int(np.flatnonzero(ids != np.round(ids))[0])
        raise SkeletonFormatError(p, f"frame id {ids[bad]} is not an integer", where=f"line {bad + 1}")
    ids = ids.astype(np.int64)
    if (np.diff(ids) < 0).any():
        bad = int(np.flatnonzero(np.diff(ids) < 0)[0]) + 1
        raise SkeletonFormatError(p, f"frame ids must not decrease ({ids[bad - 1]} then {ids[bad]})",
                                  where=f"line {bad + 1}")
    uniq, first = np.unique(ids, return_index=True)
    joints = rows[first, 1:].reshape(-1, 20, 3).astype(np.float32)
    subject, episode = int(m.group(1)), int(m.group(2))
    out = []
    for label, action in enumerate(UTKINECT_CLASSES):
        rng = table[rec].get(action)
        if rng is None:
            continue
        sel = (uniq >= rng[0]) & (uniq <= rng[1])
        if not sel.any():
            raise SkeletonFormatError(p, f"segment {action} [{rng[0]}, {rng[1]}] holds no frame (ids run "
                                      f"{uniq[0]}..{uniq[-1]})", where=f"{rec} {action}")
        out.append(SkeletonSample(
            keypoint=joints[sel][None], label=label, frame_dir=f"{rec}_{action}", total_frames=int(sel.sum()),
            layout="nw-ucla",
            meta={"subject": subject, "episode": episode, "action": action, "start": rng[0], "end": rng[1],
                  "frame_ids": uniq[sel], "split": "train" if subject % 2 == 1 else "val", "source": str(p)}))
    return out
