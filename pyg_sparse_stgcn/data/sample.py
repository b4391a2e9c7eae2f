"""Skeleton samples: the numpy record readers return (:class:`SkeletonSample`) and its PyG form
(:class:`SkeletonData`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch_geometric.data import Data

__all__ = ["SkeletonFormatError", "SkeletonSample", "SkeletonData"]


class SkeletonFormatError(ValueError):
    """A skeleton file does not follow its format. The message names the file and the line, JSON path or
    pickle key, and the field that is wrong."""

    def __init__(self, path: Any, message: str, *, where: str | None = None) -> None:
        self.path = str(path)
        self.where = where
        loc = f"{self.path}" + (f" ({where})" if where else "")
        super().__init__(f"{loc}: {message}")


@dataclass
class SkeletonSample:
    """One skeleton sequence as read from a native file.

    Attributes:
        keypoint: float32 ``(M, T, V, C)`` coordinates (persons, frames, joints, channels).
        label: 0-based class index, or :obj:`None` when the file carries none.
        frame_dir: sample id (PYSKL's ``frame_dir``).
        total_frames: number of frames ``T`` in the source.
        layout: name of the skeleton layout (see :func:`pyg_sparse_stgcn.graph.get_layout`).
        keypoint_score: float32 ``(M, T, V)`` confidences for 2-D poses, else :obj:`None`.
        img_shape: ``(height, width)`` of the source frames where known.
        meta: any further per-sample facts (source file, split tags, camera, ...).
    """

    keypoint: np.ndarray
    label: int | None
    frame_dir: str
    total_frames: int
    layout: str
    keypoint_score: np.ndarray | None = None
    img_shape: tuple[int, int] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        kp = np.asarray(self.keypoint)
        if kp.ndim != 4:
            raise ValueError(f"{self.frame_dir}: keypoint must be (M, T, V, C), got shape {kp.shape}")
        self.keypoint = kp.astype(np.float32, copy=False)
        if self.keypoint_score is not None:
            sc = np.asarray(self.keypoint_score, dtype=np.float32)
            if sc.shape != kp.shape[:3]:
                raise ValueError(f"{self.frame_dir}: keypoint_score must be (M, T, V) = {kp.shape[:3]}, "
                                 f"got {sc.shape}")
            self.keypoint_score = sc
        if self.label is not None:
            self.label = int(self.label)
        self.total_frames = int(self.total_frames)

    def to_dict(self) -> dict[str, Any]:
        """PYSKL annotation dict (``keypoint``, ``keypoint_score``, ``label``, ``frame_dir``, ...)."""
        out: dict[str, Any] = {"keypoint": self.keypoint, "frame_dir": self.frame_dir,
                               "total_frames": self.total_frames, "layout": self.layout}
        if self.label is not None:
            out["label"] = self.label
        if self.keypoint_score is not None:
            out["keypoint_score"] = self.keypoint_score
        if self.img_shape is not None:
            out["img_shape"] = tuple(self.img_shape)
        out.update(self.meta)
        return out


class SkeletonData(Data):
    """A :class:`torch_geometric.data.Data` holding one sample after the transforms.

    ``x`` is float32 ``(M, T, V, C)`` (or ``(num_clips, M, T, V, C)`` for multi-clip test pipelines) and ``y``
    a long ``(1,)`` label; ``frame_dir`` is kept as a string attribute; ``num_nodes`` is set to V.
    ``x`` concatenates along a new batch dimension (see :meth:`__cat_dim__`), so a
    :class:`~torch_geometric.loader.DataLoader` of these gives ``x`` of shape ``(N, M, T, V, C)``.
    """

    def __cat_dim__(self, key: str, value: Any, *args, **kwargs) -> Any:
        if key in ("x", "keypoint_score") and isinstance(value, torch.Tensor):
            return None  # stack along a new leading dimension
        return super().__cat_dim__(key, value, *args, **kwargs)
