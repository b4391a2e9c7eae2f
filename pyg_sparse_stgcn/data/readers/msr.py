"""MSR Action3D skeletons ("real world coordinates" release, ``aAA_sSS_eEE_skeleton3D.txt``).

Each line is ``x y z c`` (metres, y up, c a confidence in [0, 1]); 20 lines make one frame. The files use the
**MSR joint order** (1-based: 1/2 left/right shoulder, 3 shoulder centre, 4 spine, 5/6 left/right hip, 7 hip
centre, 8/9 elbows, 10/11 wrists, 12/13 hands, 14/15 knees, 16/17 ankles, 18/19 feet, 20 head; left before
right). The reader reorders the joints into the Kinect v1 SDK order, so MSR Action3D, NW-UCLA and UTKinect
all use the ``'nw-ucla'`` layout: ``keypoint[..., v, :] = raw[..., MSR_TO_KINECT_V1[v], :]``.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..sample import SkeletonFormatError, SkeletonSample
from ._names import parse_sample_name

__all__ = ["read_msr_action3d", "read_msr_file_list", "parse_msr_name", "msr_action3d_split", "MSRName",
           "MSR_TO_KINECT_V1", "MSR_ACTION3D_CLASSES", "MSR_ACTION_SETS", "MSR_EXCLUDED_SEQUENCES"]

#: For each Kinect v1 SDK joint (0-based, ``nw-ucla`` layout order) the 0-based MSR joint it is read from.
MSR_TO_KINECT_V1: tuple[int, ...] = (6, 3, 2, 19, 0, 7, 9, 11, 1, 8, 10, 12, 4, 13, 15, 17, 5, 14, 16, 18)
#: The 20 action names; 0-based label = action id - 1.
MSR_ACTION3D_CLASSES = (
    "high arm wave", "horizontal arm wave", "hammer", "hand catch", "forward punch", "high throw", "draw X",
    "draw tick", "draw circle", "hand clap", "two hand wave", "side boxing", "bend", "forward kick",
    "side kick", "jogging", "tennis swing", "tennis serve", "golf swing", "pickup and throw")
#: The action subsets of Li et al. 2010 (1-based action ids).
MSR_ACTION_SETS: dict[str, frozenset[int]] = {
    "AS1": frozenset((2, 3, 5, 6, 10, 13, 18, 20)),
    "AS2": frozenset((1, 4, 7, 8, 9, 11, 12, 14)),
    "AS3": frozenset((6, 14, 15, 16, 17, 18, 19, 20)),
}
#: The 10 of the 567 released sequences left out of the standard 557-file list (Wang et al. 2012).
MSR_EXCLUDED_SEQUENCES = frozenset((
    "a02_s03_e02", "a04_s03_e01", "a07_s04_e01", "a13_s09_e01", "a13_s09_e02", "a13_s09_e03", "a14_s03_e01",
    "a20_s07_e01", "a20_s07_e03", "a20_s10_e03"))

_NAME_RE = re.compile(r"a(\d{2})_s(\d{2})_e(\d{2})")
_JOINTS = 20


@dataclass(frozen=True)
class MSRName:
    """Ids of an MSR Action3D name ``aAA_sSS_eEE`` (action 1..20, subject 1..10, repetition 1..3)."""

    action: int
    subject: int
    episode: int


def parse_msr_name(name: str | os.PathLike) -> MSRName:
    """Parse ``aAA_sSS_eEE`` from a name, file name (``aAA_sSS_eEE_skeleton3D.txt``) or path.

    Raises:
        ValueError: If the name does not follow the pattern.
    """
    return parse_sample_name(name, _NAME_RE, MSRName, "MSR Action3D", "aAA_sSS_eEE[_skeleton3D.txt]",
                             "a01_s01_e01", whole_stem=False)


def msr_action3d_split(name: str | os.PathLike) -> str:
    """Standard cross-subject split: odd subjects (1, 3, 5, 7, 9) ``'train'``, even subjects ``'val'``."""
    return "train" if parse_msr_name(name).subject % 2 == 1 else "val"


def read_msr_file_list(path: str | os.PathLike) -> list[str]:
    """Read ``files_used_in_cvpr12_paper.txt`` (one ``aAA_sSS_eEE`` per line; 557 names in the release).

    Raises:
        SkeletonFormatError: If a line is not a sample name (names the line).
    """
    p = Path(path)
    out = []
    for i, line in enumerate(p.read_text(encoding="ascii", errors="replace").splitlines()):
        s = line.strip()
        if not s:
            continue
        if _NAME_RE.fullmatch(s) is None:
            raise SkeletonFormatError(p, f"expected a name aAA_sSS_eEE, got {s[:40]!r}",
                                      where=f"line {i + 1}")
        out.append(s)
    return out


def _parse_rows(p: Path, lines: list[str], ncols: int, what: str) -> np.ndarray:
    """Parse whitespace-separated numeric rows with numpy; on failure name the offending line."""
    try:  # numpy's C text parser; it also rejects lines whose column count differs
        vals = np.loadtxt(lines, dtype=np.float64, comments=None, ndmin=2)
    except ValueError:
        vals = None
    if vals is None or vals.shape != (len(lines), ncols):
        for i, line in enumerate(lines):
            fields = line.split()
            if len(fields) != ncols:
                raise SkeletonFormatError(p, f"{what} line must hold {ncols} values, got {len(fields)}",
                                          where=f"line {i + 1}")
            for k, f in enumerate(fields):
                try:
                    float(f)
                except ValueError:
                    raise SkeletonFormatError(p, f"value {f!r} (column {k + 1}) is not a number",
                                              where=f"line {i + 1}") from None
        if vals is None:  # tokens Python's float() accepts but numpy does not
            vals = np.array([float(f) for line in lines for f in line.split()], dtype=np.float64)
    return vals.reshape(len(lines), ncols)


def _text_lines(p: Path) -> list[str]:
    raw = p.read_bytes()
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError as e:
        raise SkeletonFormatError(p, "not an ASCII text file", where=f"byte {e.start}") from None
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def read_msr_action3d(path: str | os.PathLike) -> SkeletonSample:
    r"""Read one MSR Action3D skeleton file and reorder its joints to the Kinect v1 SDK order.

    All-zero frames (tracking failures, present in 13 of the 557 standard files) are kept as they are.

    Args:
        path (str or os.PathLike): ``aAA_sSS_eEE_skeleton3D.txt``.

    Returns:
        SkeletonSample: ``keypoint`` :math:`(1, T, 20, 3)` float32 x, y, z in metres, ``layout='nw-ucla'``;
        ``label`` = action - 1 when the name follows ``aAA_sSS_eEE`` (else :obj:`None`); ``frame_dir``
        ``aAA_sSS_eEE``; ``meta`` holds ``confidence`` :math:`(1, T, 20)` (reordered like the joints),
        ``action, subject, episode`` and the cross-subject ``split``.

    Raises:
        SkeletonFormatError: If a line does not hold 4 numbers, the line count is not a positive multiple of
            20, or the file is not text; the message names the file and line.
    """
    p = Path(path)
    lines = _text_lines(p)
    if not lines:
        raise SkeletonFormatError(p, "the file holds no frames", where="line 1")
    if len(lines) % _JOINTS:
        raise SkeletonFormatError(p, f"{len(lines)} lines is not a multiple of {_JOINTS} (one line per "
                                  "joint)", where=f"line {len(lines)}")
    rows = _parse_rows(p, lines, 4, "joint").reshape(-1, _JOINTS, 4)[:, list(MSR_TO_KINECT_V1)]
    stem = p.name.split(".")[0].removesuffix("_skeleton3D")
    meta: dict = {"confidence": rows[None, :, :, 3].astype(np.float32), "source": str(p)}
    label = None
    try:
        ids = parse_msr_name(stem)
    except ValueError:
        ids = None
    if ids is not None:
        label = ids.action - 1
        meta.update(action=ids.action, subject=ids.subject, episode=ids.episode,
                    split="train" if ids.subject % 2 == 1 else "val")
        stem = f"a{ids.action:02d}_s{ids.subject:02d}_e{ids.episode:02d}"
    return SkeletonSample(keypoint=rows[None, :, :, :3], label=label, frame_dir=stem,
                          total_frames=rows.shape[0], layout="nw-ucla", meta=meta)
