"""ST-GCN style ``(C, T, V, M)`` ``.npy`` arrays (one sample per file, zero-padded to a fixed T)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ...graph import get_layout
from ..sample import SkeletonFormatError, SkeletonSample

__all__ = ["read_skeleton_npy"]


def read_skeleton_npy(path: str | os.PathLike, layout: str = "nturgb+d", score_channel: bool = False,
                      label: int | None = None, drop_empty_persons: bool = True) -> SkeletonSample:
    r"""Read one ``(C, T, V, M)`` array saved with :func:`numpy.save` (ST-GCN / PaddleVideo layout).

    Trailing frames that are zero in every channel, joint and person (the fixed-length padding, e.g. to
    T = 300 or 2500) are trimmed; zero frames *inside* the sequence are kept. The file is loaded with
    ``allow_pickle=False``, so object arrays are refused.

    Args:
        path (str or os.PathLike): The ``.npy`` file.
        layout (str, optional): Skeleton layout; its joint count must equal :math:`V`
            (default: :obj:`"nturgb+d"`; use ``"openpose-body25"`` for FSD-10, ``"openpose"`` for Kinetics).
        score_channel (bool, optional): The last channel is a confidence (2-D OpenPose data such as FSD-10):
            it becomes ``keypoint_score`` and ``keypoint`` keeps the first :math:`C-1` channels
            (default: :obj:`False`).
        label (int, optional): 0-based label to attach; the format carries none (default: :obj:`None`).
        drop_empty_persons (bool, optional): Drop persons that are zero in every frame (at least one person
            is kept) (default: :obj:`True`).

    Returns:
        SkeletonSample: ``keypoint`` :math:`(M, T', V, C)` float32 with :math:`T'` the trimmed length;
        ``frame_dir`` the file stem; ``meta['padded_frames']`` the stored :math:`T`.

    Raises:
        SkeletonFormatError: If the file is not a readable numeric ``.npy`` array, is not 4-D, has a joint
            count other than the layout's, has fewer than 2 channels with ``score_channel``, or is all zeros.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"array file not found: {p}")
    try:
        arr = np.load(p, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise SkeletonFormatError(p, f"not a readable numeric .npy array ({e})",
                                  where="npy header/data") from None
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "fiub":
        raise SkeletonFormatError(p, f"expected a numeric array, got {getattr(arr, 'dtype', type(arr))}",
                                  where="dtype")
    if arr.ndim != 4:
        raise SkeletonFormatError(p, f"expected a (C, T, V, M) array, got shape {arr.shape}", where="shape")
    C, T, V, M = arr.shape
    lay = get_layout(layout)
    if V != lay.num_nodes:
        raise SkeletonFormatError(p, f"joint axis has {V} joints but layout {lay.name!r} has {lay.num_nodes} "
                                  f"(shape {arr.shape} read as (C, T, V, M))", where="shape[2]")
    if score_channel and C < 2:
        raise SkeletonFormatError(p, f"score_channel needs at least 2 channels, got C={C}", where="shape[0]")
    kp = np.ascontiguousarray(arr.transpose(3, 1, 2, 0), dtype=np.float32)  # (M, T, V, C)
    nonzero_t = np.flatnonzero((kp != 0).any(axis=(0, 2, 3)))
    if nonzero_t.size == 0:
        raise SkeletonFormatError(p, f"the array {arr.shape} is all zeros", where="data")
    kp = kp[:, : nonzero_t[-1] + 1]
    if drop_empty_persons:
        present = (kp != 0).any(axis=(1, 2, 3))
        present[0] |= not present.any()
        kp = kp[present]
    score = None
    if score_channel:
        kp, score = kp[..., :-1], kp[..., -1]
    return SkeletonSample(keypoint=np.ascontiguousarray(kp), label=label, frame_dir=p.name.split(".")[0],
                          total_frames=kp.shape[1], layout=lay.name,
                          keypoint_score=None if score is None else np.ascontiguousarray(score),
                          meta={"padded_frames": T, "source": str(p)})
