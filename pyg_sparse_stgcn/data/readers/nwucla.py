"""Northwestern-UCLA Multiview Action3D in the CTR-GCN ``all_sqe`` JSON form (Kinect v1, 20 joints).

Each file ``aAA_sSS_eEE_vVV.json`` is ``{"file_name": str, "skeletons": [T][20][3], "label": int}`` with x,
y, z in metres and a **1-based** label 1..10; the action ids in the names are not contiguous (a01-a06, a08,
a09, a11, a12 map to labels 1..10). The standard cross-view split trains on views 1 and 2 and tests on view 3.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..io_safe import load_json, load_pickle
from ..sample import SkeletonFormatError, SkeletonSample
from ._names import parse_sample_name

__all__ = ["read_nwucla_json", "read_nwucla_index", "parse_nwucla_name", "nwucla_split", "NWUCLAName",
           "NWUCLA_CLASSES", "NWUCLA_ACTION_TO_LABEL", "NWUCLA_TRAIN_VIEWS"]

#: Class names in label order (0-based index = label - 1).
NWUCLA_CLASSES = ("pick up with one hand", "pick up with two hands", "drop trash", "walk around", "sit down",
                  "stand up", "donning", "doffing", "throw", "carry")
#: Action id in the file name -> 0-based label.
NWUCLA_ACTION_TO_LABEL = {a: i for i, a in enumerate((1, 2, 3, 4, 5, 6, 8, 9, 11, 12))}
#: Views used for training in the cross-view protocol (view 3 is the test view).
NWUCLA_TRAIN_VIEWS = frozenset((1, 2))

_NAME_RE = re.compile(r"a(\d+)_s(\d+)_e(\d+)_v(\d+)")


@dataclass(frozen=True)
class NWUCLAName:
    """Ids in an NW-UCLA name ``aAA_sSS_eEE_vVV`` (action, subject, episode, view)."""

    action: int
    subject: int
    episode: int
    view: int


def parse_nwucla_name(name: str | os.PathLike) -> NWUCLAName:
    """Parse ``aAA_sSS_eEE_vVV`` (a name, file name or path).

    Raises:
        ValueError: If the name does not follow the pattern.
    """
    return parse_sample_name(name, _NAME_RE, NWUCLAName, "NW-UCLA", "aAA_sSS_eEE_vVV", "a01_s01_e00_v01")


def nwucla_split(name: str | os.PathLike) -> str:
    """Cross-view subset of a sample: ``'train'`` for views 1 and 2, ``'val'`` for view 3."""
    view = parse_nwucla_name(name).view
    if view not in (1, 2, 3):
        raise ValueError(f"{name!r}: NW-UCLA views are 1, 2 and 3, got {view}")
    return "train" if view in NWUCLA_TRAIN_VIEWS else "val"


def read_nwucla_json(path: str | os.PathLike) -> SkeletonSample:
    r"""Read one NW-UCLA ``all_sqe`` JSON file.

    Args:
        path (str or os.PathLike): ``aAA_sSS_eEE_vVV.json``.

    Returns:
        SkeletonSample: ``keypoint`` :math:`(1, T, 20, 3)` float32 (x, y, z in metres, Kinect v1 SDK joint
        order, ``layout='nw-ucla'``); ``label`` the file's label minus 1; ``frame_dir`` the ``file_name``;
        ``meta`` holds ``action, subject, episode, view`` and ``split`` (``'train'``/``'val'``, cross-view)
        when the name follows the pattern.

    Raises:
        SkeletonFormatError: If the JSON is invalid, a field is missing or mistyped, ``skeletons`` is not
            ``[T][20][3]`` numbers, the label is outside 1..10 or disagrees with the action id in the name.
    """
    p = Path(path)
    doc = load_json(p)
    if not isinstance(doc, dict):
        raise SkeletonFormatError(p, f"top level must be an object, got {type(doc).__name__}", where="$")
    for key in ("skeletons", "label"):
        if key not in doc:
            raise SkeletonFormatError(p, f"missing field '{key}' (expected file_name, skeletons, label)",
                                      where=key)
    sk, label = doc["skeletons"], doc["label"]
    if not isinstance(label, int) or isinstance(label, bool) or not 1 <= label <= 10:
        raise SkeletonFormatError(p, f"label must be an int in 1..10 (1-based), got {label!r}", where="label")
    if not isinstance(sk, list) or not sk:
        raise SkeletonFormatError(p, "skeletons must be a non-empty list of frames [T][20][3]",
                                  where="skeletons")
    try:
        kp = np.asarray(sk, dtype=np.float32)
    except (ValueError, TypeError):
        kp = None
    if kp is None or kp.shape[1:] != (20, 3):
        for t, frame in enumerate(sk):
            if not isinstance(frame, list) or len(frame) != 20:
                n = len(frame) if isinstance(frame, list) else type(frame).__name__
                raise SkeletonFormatError(p, f"frame must list 20 joints, got {n}", where=f"skeletons[{t}]")
            for v, joint in enumerate(frame):
                ok = isinstance(joint, list) and len(joint) == 3 and all(
                    isinstance(x, (int, float)) and not isinstance(x, bool) for x in joint)
                if not ok:
                    raise SkeletonFormatError(p, f"joint must be 3 numbers [x, y, z], got {joint!r}"[:120],
                                              where=f"skeletons[{t}][{v}]")
        raise SkeletonFormatError(p, f"skeletons must be [T][20][3], got shape {np.shape(sk)}",
                                  where="skeletons")
    name = doc.get("file_name", p.name.split(".")[0])
    if not isinstance(name, str):
        raise SkeletonFormatError(p, f"file_name must be a string, got {name!r}", where="file_name")
    meta: dict = {"source": str(p)}
    try:
        ids = parse_nwucla_name(name)
    except ValueError:
        ids = None
    if ids is not None:
        expected = NWUCLA_ACTION_TO_LABEL.get(ids.action)
        if expected is not None and expected != label - 1:
            raise SkeletonFormatError(p, f"label {label} disagrees with action a{ids.action:02d} in the name "
                                      f"(expected {expected + 1})", where="label")
        meta.update(action=ids.action, subject=ids.subject, episode=ids.episode, view=ids.view,
                    split="train" if ids.view in NWUCLA_TRAIN_VIEWS else "val")
    return SkeletonSample(keypoint=kp[None], label=label - 1, frame_dir=name, total_frames=kp.shape[0],
                          layout="nw-ucla", meta=meta)


def read_nwucla_index(path: str | os.PathLike) -> list[dict]:
    """Read an NW-UCLA label pickle (``val_label.pkl``): a list of ``{'file_name', 'length', 'label'}``.

    Loaded through the restricted unpickler. Labels are returned as in the file (1-based).

    Raises:
        SkeletonFormatError: If the pickle is not a list of such dicts; the message names the index and key.
    """
    p = Path(path)
    obj = load_pickle(p)
    if not isinstance(obj, list):
        raise SkeletonFormatError(p, f"expected a list of dicts, got {type(obj).__name__}",
                                  where="pickle root")
    out = []
    for i, d in enumerate(obj):
        if not isinstance(d, dict):
            raise SkeletonFormatError(p, f"entry must be a dict, got {type(d).__name__}", where=f"[{i}]")
        for key, typ in (("file_name", str), ("length", int), ("label", int)):
            if key not in d:
                raise SkeletonFormatError(p, f"missing key '{key}'", where=f"[{i}]['{key}']")
            if not isinstance(d[key], typ):
                raise SkeletonFormatError(p, f"'{key}' must be {typ.__name__}, got {d[key]!r}",
                                          where=f"[{i}]['{key}']")
        out.append({"file_name": d["file_name"], "length": d["length"], "label": d["label"]})
    return out
