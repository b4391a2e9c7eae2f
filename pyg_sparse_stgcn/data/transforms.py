r"""Skeleton transforms with PYSKL semantics and PyG's transform contract, and the standard pipelines.

Every transform subclasses :class:`torch_geometric.transforms.BaseTransform`: calling it shallow-copies its
input (PyG's ``__call__``) and runs :meth:`SkeletonTransform.forward` on the copy, so the caller's object is
never modified. The input is a :class:`~pyg_sparse_stgcn.data.SkeletonData` (the output of
``SkeletonDataset.get``; the transforms serve as PyG ``transform=`` arguments) or a PYSKL-style *results
dict* (``keypoint`` float ``(M, T, V, C)``, optional ``keypoint_score`` ``(M, T, V)``, ``total_frames``,
``label``, ``img_shape``, ...). The work happens on a results dict (:meth:`SkeletonTransform.forward_results`),
so a :class:`SkeletonData` is converted there and back once per call — once for a whole :class:`Compose`.

Transforms are registered by name with :func:`register_transform`, so a pipeline can be written as a list of
spec dicts, as in PYSKL's configs::

    [{"type": "PreNormalize3D"}, {"type": "GenSkeFeat", "feats": "j+b"},
     {"type": "UniformSample", "clip_len": 100}, {"type": "FormatGCNInput", "num_person": 2}]

The pipelines the engine uses come from one helper::

    build_pipeline(kind: str | Sequence[dict], feats: str | Sequence[str] = "j", clip_len: int = 100, *,
                   train: bool = True, num_clips: int = 1, num_person: int = 2, layout: str | None = None,
                   img_shape: tuple[int, int] | None = None, augment: bool = False,
                   seed: int = 255) -> Compose

``kind`` is ``"3d"`` (NTU-like: ``PreNormalize3D``), ``"2d"`` (PYSKL COCO pixel coordinates with
``keypoint_score``: ``PreNormalize2D``) or ``"2d-normalized"`` (Kinetics-skeleton JSON / ``demo``, already
centred coordinates with the score in channel 2), or a list of spec dicts. :func:`standard_pipeline` gives
the spec list of a kind. ``feats`` is one of :data:`FEATS`: one stream (``"j"``, ``"b"``, ``"jm"``, ``"bm"``)
or several joined by ``"+"`` (``"j+b"``), concatenated along channels. Train pipelines sample randomly
(``UniformSampleFrames``); test pipelines are seeded (``seed``) and may take ``num_clips > 1``, in which case
``x`` gets a leading ``num_clips`` dimension.
"""
from __future__ import annotations

import itertools
import math
from abc import abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar, cast

import numpy as np
import torch
from torch_geometric.transforms import BaseTransform

from .registry import Registry
from .sample import SkeletonData

__all__ = [
    "SkeletonTransform", "Compose", "PreNormalize3D", "PreNormalize2D", "UniformSampleFrames", "UniformSample",
    "PadTo", "RandomRot", "RandomScale", "RandomGaussianNoise", "JointToBone", "ToMotion", "GenSkeFeat",
    "FormatGCNInput", "build_pipeline", "standard_pipeline", "build_transform", "register_transform",
    "TRANSFORMS", "results_to_data", "data_to_results", "parse_feats", "PIPELINE_KINDS", "STREAMS", "FEATS",
    "TWO_D_LAYOUTS",
]

#: Layouts whose third channel (when ``C == 3``) is a confidence score, not a coordinate.
TWO_D_LAYOUTS = frozenset({"openpose", "coco", "handmp", "openpose-body25"})
#: Valid ``kind`` values of :func:`build_pipeline`.
PIPELINE_KINDS = ("3d", "2d", "2d-normalized")
#: The single feature streams of :class:`GenSkeFeat`: joints, bones, joint motion, bone motion.
STREAMS = ("j", "b", "jm", "bm")
#: Every valid ``feats`` string of :class:`GenSkeFeat` / :func:`build_pipeline`: one stream, or distinct
#: streams joined by ``"+"`` in the order of concatenation (``"j"``, ..., ``"j+b"``, ``"b+j"``, ...,
#: ``"j+b+jm+bm"``; 64 values). The one list of stream choices (the configuration takes it from here).
FEATS: tuple[str, ...] = tuple("+".join(p) for r in range(1, len(STREAMS) + 1)
                               for p in itertools.permutations(STREAMS, r))

_DEFAULT_LAYOUT = {"3d": "nturgb+d", "2d": "coco", "2d-normalized": "openpose"}


# ---------------------------------------------------------------------------------------------------------
# dict <-> SkeletonData
# ---------------------------------------------------------------------------------------------------------
def data_to_results(data: SkeletonData) -> dict[str, Any]:
    """A :class:`SkeletonData` as a results dict (``x`` becomes numpy ``keypoint``)."""
    results: dict[str, Any] = {}
    for key, value in data.items():
        if key == "x":
            results["keypoint"] = value.detach().cpu().numpy()
        elif key == "y":
            results["label"] = int(value.reshape(-1)[0])
        elif key == "keypoint_score" and isinstance(value, torch.Tensor):
            results["keypoint_score"] = value.detach().cpu().numpy()
        elif key == "img_shape" and isinstance(value, torch.Tensor):
            results["img_shape"] = tuple(int(v) for v in value.reshape(-1).tolist())
        elif key == "num_nodes":
            continue
        else:
            results[key] = value
    if "total_frames" not in results and "keypoint" in results:
        results["total_frames"] = int(results["keypoint"].shape[-3])
    return results


def results_to_data(results: Mapping[str, Any]) -> SkeletonData:
    """A results dict as a :class:`SkeletonData` (``keypoint`` → float32 ``x``, ``label`` → long ``y``)."""
    if "keypoint" not in results:
        raise ValueError(f"results dict has no 'keypoint'; keys are {sorted(results)}")
    kp = np.ascontiguousarray(results["keypoint"], dtype=np.float32)
    kwargs: dict[str, Any] = {"x": torch.from_numpy(kp), "num_nodes": int(kp.shape[-2])}
    label = results.get("label")
    kwargs["y"] = torch.tensor([-1 if label is None else int(label)], dtype=torch.long)
    if results.get("keypoint_score") is not None:
        kwargs["keypoint_score"] = torch.from_numpy(np.ascontiguousarray(results["keypoint_score"],
                                                                         dtype=np.float32))
    for key in ("frame_dir", "layout"):
        if key in results:
            kwargs[key] = results[key]
    if "total_frames" in results:
        kwargs["total_frames"] = int(results["total_frames"])
    if results.get("img_shape") is not None:
        kwargs["img_shape"] = torch.tensor([list(results["img_shape"])], dtype=torch.long)
    return SkeletonData(**kwargs)


class SkeletonTransform(BaseTransform):
    r"""Base class of the skeleton transforms (PyG's :class:`~torch_geometric.transforms.BaseTransform`
    contract: ``transform(data)`` runs :meth:`forward` on a shallow copy of ``data``).

    Subclasses implement :meth:`forward_results` on a results dict; :meth:`forward` accepts a results dict
    (transformed as it is: it is already the copy) or a :class:`SkeletonData` (converted to a results dict and
    back). Arrays are never modified in place, so the caller's ``data`` and its arrays stay as they were.
    """

    def forward(self, data: dict[str, Any] | SkeletonData) -> dict[str, Any] | SkeletonData:
        """Transforms ``data``, a results dict or a :class:`SkeletonData` (the copy made by ``__call__``).

        Raises:
            ValueError: For any other input type.
        """
        if isinstance(data, SkeletonData):
            return results_to_data(self.forward_results(data_to_results(data)))
        if not isinstance(data, dict):
            raise ValueError(f"{type(self).__name__} expects a results dict or SkeletonData, "
                             f"got {type(data).__name__}")
        return self.forward_results(data)

    @abstractmethod
    def forward_results(self, results: dict[str, Any]) -> dict[str, Any]:
        """Transforms a PYSKL-style results dict owned by this call (its keys may be set or removed; its
        arrays must not be modified in place) and returns it."""

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


#: Transform type name → class, filled by :func:`register_transform` (the ``type`` of a spec dict).
TRANSFORMS: Registry[type[SkeletonTransform]] = Registry("transform type")

_T = TypeVar("_T", bound=type[SkeletonTransform])


def register_transform(*aliases: str) -> Callable[[_T], _T]:
    """Class decorator: registers a :class:`SkeletonTransform` under its class name and ``aliases``, so that
    :func:`build_transform` (and a pipeline list in a config) can name it."""

    def deco(cls: _T) -> _T:
        TRANSFORMS.register(cls.__name__, *aliases)(cls)
        return cls

    return deco


def _keypoint(results: Mapping[str, Any], name: str, key: str = "keypoint") -> np.ndarray:
    if key not in results:
        raise ValueError(f"{name}: results dict has no {key!r}; keys are {sorted(results)}")
    kp = np.asarray(results[key])
    if kp.ndim != 4:
        raise ValueError(f"{name}: {key!r} must be (M, T, V, C), got shape {kp.shape}")
    return kp


# ---------------------------------------------------------------------------------------------------------
# Compose
# ---------------------------------------------------------------------------------------------------------
@register_transform()
class Compose(SkeletonTransform):
    """Applies transforms in order (each a callable on a results dict, or a spec dict for
    :func:`build_transform`); a :class:`SkeletonData` is converted to a results dict once for the whole
    chain.

    Args:
        transforms (sequence of callables or dicts): The transforms.
    """

    def __init__(self, transforms: Iterable[Callable | Mapping[str, Any]]) -> None:
        self.transforms = [build_transform(t) if isinstance(t, Mapping) else t for t in transforms]
        for t in self.transforms:
            if not callable(t):
                raise ValueError(f"Compose: every transform must be callable or a spec dict, got {t!r}")

    def forward_results(self, results: dict[str, Any]) -> dict[str, Any]:
        for t in self.transforms:
            results = t(results)
        return results

    def __len__(self) -> int:
        return len(self.transforms)

    def __repr__(self) -> str:
        inner = ",\n  ".join(repr(t) for t in self.transforms)
        return f"Compose([\n  {inner}\n])"


# ---------------------------------------------------------------------------------------------------------
# normalisation
# ---------------------------------------------------------------------------------------------------------
def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _angle_between(v1: np.ndarray, v2: np.ndarray) -> float:
    if np.abs(v1).sum() < 1e-6 or np.abs(v2).sum() < 1e-6:
        return 0.0
    return float(np.arccos(np.clip(np.dot(_unit(v1), _unit(v2)), -1.0, 1.0)))


def _rotation_matrix(axis: np.ndarray, theta: float) -> np.ndarray:
    """Euler-Rodrigues matrix for a rotation by ``theta`` about ``axis`` (2s-AGCN / PYSKL convention; the
    caller applies it as ``einsum('...d,kd->...k')``, i.e. ``p' = R p``)."""
    if np.abs(axis).sum() < 1e-6 or abs(theta) < 1e-6:
        return np.eye(3)
    axis = _unit(np.asarray(axis, dtype=np.float64))
    a = math.cos(theta / 2.0)
    b, c, d = -axis * math.sin(theta / 2.0)
    aa, bb, cc, dd = a * a, b * b, c * c, d * d
    bc, ad, ac, ab, bd, cd = b * c, a * d, a * c, a * b, b * d, c * d
    return np.array([[aa + bb - cc - dd, 2 * (bc + ad), 2 * (bd - ac)],
                     [2 * (bc - ad), aa + cc - bb - dd, 2 * (cd + ab)],
                     [2 * (bd + ac), 2 * (cd - ab), aa + dd - bb - cc]])


@register_transform()
class PreNormalize3D(SkeletonTransform):
    r"""PYSKL's 3-D pre-normalisation (from 2s-AGCN).

    Drops frames in which the main person is absent, puts the person tracked in more frames first,
    subtracts the centre joint (joint 1 for 25-joint skeletons, the last joint otherwise) of person 0 in
    frame 0 from every non-zero joint, then rotates so that the bone ``zaxis[0] → zaxis[1]`` of person 0 in
    frame 0 points along :math:`+z` and the bone ``xaxis[1] → xaxis[0]`` along :math:`+x`.

    Args:
        zaxis (sequence of int, optional): Joints defining the spine. (default: :obj:`(0, 1)`)
        xaxis (sequence of int, optional): Joints defining the shoulders. (default: :obj:`(8, 4)`)
        align_spine (bool, optional): Rotate. (default: :obj:`True`)
        align_center (bool, optional): Centre. (default: :obj:`True`)
        center (int, optional): Centre joint; :obj:`None` uses PYSKL's rule (joint 1 when :math:`V = 25`,
            else joint :math:`V - 1`). (default: :obj:`None`)

    Shapes:
        - **input:** ``keypoint`` :math:`(M, T, V, 3)`
        - **output:** ``keypoint`` :math:`(M, T', V, 3)` with :math:`T' \le T`; ``total_frames = T'``
    """

    def __init__(self, zaxis: Sequence[int] = (0, 1), xaxis: Sequence[int] = (8, 4), align_spine: bool = True,
                 align_center: bool = True, center: int | None = None) -> None:
        if len(zaxis) != 2 or len(xaxis) != 2:
            raise ValueError(f"PreNormalize3D: zaxis and xaxis must be two joint indices each, "
                             f"got {zaxis}, {xaxis}")
        self.zaxis = tuple(int(v) for v in zaxis)
        self.xaxis = tuple(int(v) for v in xaxis)
        self.align_spine = align_spine
        self.align_center = align_center
        self.center = center

    def forward_results(self, results: dict[str, Any]) -> dict[str, Any]:
        skeleton = _keypoint(results, "PreNormalize3D").astype(np.float32)
        M, T, V, C = skeleton.shape
        if C != 3:
            raise ValueError(f"PreNormalize3D: keypoint must have C=3 (x, y, z), got C={C}")
        c_joint = (1 if V == 25 else V - 1) if self.center is None else self.center
        if max(self.zaxis + self.xaxis + (c_joint,)) >= V:
            raise ValueError(f"PreNormalize3D: zaxis {self.zaxis} / xaxis {self.xaxis} / center {c_joint} "
                             f"out of range for V={V}")
        if T == 0 or not skeleton.any():
            return results
        valid = ~np.all(np.isclose(skeleton, 0), axis=(2, 3))  # (M, T)
        order = np.argsort(-valid.sum(1), kind="stable")  # longest track first (PYSKL swaps 2 persons)
        skeleton = skeleton[order]
        skeleton = skeleton[:, valid[order[0]]]
        center = skeleton[0, 0, c_joint].copy()
        if self.align_center:
            mask = ((skeleton != 0).sum(-1) > 0)[..., None]
            skeleton = (skeleton - center) * mask
        if self.align_spine:
            bottom, top = skeleton[0, 0, self.zaxis[0]], skeleton[0, 0, self.zaxis[1]]
            axis = np.cross(top - bottom, [0, 0, 1])
            rz = _rotation_matrix(axis, _angle_between(top - bottom, np.array([0.0, 0.0, 1.0])))
            skeleton = np.einsum("abcd,kd->abck", skeleton, rz)
            right, left = skeleton[0, 0, self.xaxis[0]], skeleton[0, 0, self.xaxis[1]]
            axis = np.cross(right - left, [1, 0, 0])
            rx = _rotation_matrix(axis, _angle_between(right - left, np.array([1.0, 0.0, 0.0])))
            skeleton = np.einsum("abcd,kd->abck", skeleton, rx)
        results["keypoint"] = skeleton.astype(np.float32)
        results["total_frames"] = int(skeleton.shape[1])
        results["body_center"] = center
        return results


@register_transform()
class PreNormalize2D(SkeletonTransform):
    r"""PYSKL's 2-D pre-normalisation: scales pixel coordinates to :math:`[-1, 1]`.

    ``keypoint_score`` (if present) is merged into channel 2 first. Mode ``"fix"`` uses the frame size
    (``results['img_shape']`` or ``img_shape``): :math:`x' = (x - w/2) / (w/2)`, :math:`y' = (y - h/2)/(h/2)`;
    mode ``"auto"`` uses the bounding box of the joints with score above ``threshold`` (when it spans more
    than 10 pixels both ways). Joints at or below ``threshold`` get coordinates 0.

    Args:
        img_shape (tuple of int, optional): Default ``(height, width)``. (default: :obj:`(1080, 1920)`)
        threshold (float, optional): Score threshold. (default: :obj:`0.01`)
        mode (str, optional): ``"fix"`` or ``"auto"``. (default: :obj:`"fix"`)
    """

    def __init__(self, img_shape: tuple[int, int] = (1080, 1920), threshold: float = 0.01,
                 mode: str = "fix") -> None:
        if mode not in ("fix", "auto"):
            raise ValueError(f"PreNormalize2D: mode must be 'fix' or 'auto', got {mode!r}")
        self.img_shape = tuple(img_shape)
        self.threshold = float(threshold)
        self.mode = mode

    def forward_results(self, results: dict[str, Any]) -> dict[str, Any]:
        keypoint = _keypoint(results, "PreNormalize2D").astype(np.float32)
        if results.get("keypoint_score") is not None:
            score = np.asarray(results.pop("keypoint_score"), dtype=np.float32)
            keypoint = np.concatenate([keypoint, score[..., None]], axis=-1)
        else:
            results.pop("keypoint_score", None)
        if keypoint.shape[-1] not in (2, 3):
            raise ValueError(f"PreNormalize2D: keypoint must have C=2 or C=3 (x, y[, score]), "
                             f"got C={keypoint.shape[-1]}")
        maskout = keypoint[..., 2] <= self.threshold if keypoint.shape[-1] == 3 else None
        if self.mode == "auto":
            sel = keypoint[~maskout] if maskout is not None else keypoint.reshape(-1, keypoint.shape[-1])
            if sel.size:
                x_max, x_min = sel[:, 0].max(), sel[:, 0].min()
                y_max, y_min = sel[:, 1].max(), sel[:, 1].min()
            else:
                x_max = x_min = y_max = y_min = 0.0
            if (x_max - x_min) > 10 and (y_max - y_min) > 10:
                keypoint[..., 0] = (keypoint[..., 0] - (x_max + x_min) / 2) / (x_max - x_min) * 2
                keypoint[..., 1] = (keypoint[..., 1] - (y_max + y_min) / 2) / (y_max - y_min) * 2
        else:
            h, w = results.get("img_shape") or self.img_shape
            keypoint[..., 0] = (keypoint[..., 0] - w / 2) / (w / 2)
            keypoint[..., 1] = (keypoint[..., 1] - h / 2) / (h / 2)
        if maskout is not None:
            keypoint[..., 0][maskout] = 0
            keypoint[..., 1][maskout] = 0
        results["keypoint"] = keypoint
        return results


# ---------------------------------------------------------------------------------------------------------
# temporal sampling
# ---------------------------------------------------------------------------------------------------------
@register_transform("UniformSample")
class UniformSampleFrames(SkeletonTransform):
    r"""PYSKL's uniform sampling: ``clip_len`` frames per clip, one per equal segment, and selects them.

    For each of ``num_clips`` clips a sub-interval of relative length :math:`r \sim U(p_0, p_1)` is chosen
    (``p_interval``); if it has fewer than ``clip_len`` frames a looping window is taken; with
    ``clip_len ≤ n < 2·clip_len`` frames ``n - clip_len`` random frames are skipped; otherwise one random
    frame is picked from each of ``clip_len`` equal segments. Indices wrap modulo the number of frames (short
    videos loop). In training the draws use :mod:`numpy.random` (seeded per worker by PyTorch); in test mode a
    private ``RandomState(seed)``, so test clips are the same every time and equal PYSKL's.
    The selected frames replace ``keypoint`` (and ``keypoint_score``), giving ``num_clips · clip_len`` frames
    (PYSKL's ``PoseDecode`` is folded in); ``frame_inds`` records them.

    Args:
        clip_len (int): Frames per clip.
        num_clips (int, optional): Clips. (default: :obj:`1`)
        p_interval (float or (float, float), optional): Relative interval length range. (default: :obj:`1`)
        seed (int, optional): Seed of test mode. (default: :obj:`255`)
        test_mode (bool, optional): Force test (:obj:`True`) or train (:obj:`False`) sampling; :obj:`None`
            reads ``results['test_mode']`` like PYSKL. (default: :obj:`None`)

    Shapes:
        - **input:** ``keypoint`` :math:`(M, T, V, C)`
        - **output:** ``keypoint`` :math:`(M, \text{num\_clips} \cdot \text{clip\_len}, V, C)`
    """

    def __init__(self, clip_len: int, num_clips: int = 1, p_interval: float | Sequence[float] = 1,
                 seed: int = 255, test_mode: bool | None = None) -> None:
        if not isinstance(clip_len, (int, np.integer)) or clip_len < 1:
            raise ValueError(f"UniformSampleFrames: clip_len must be an int >= 1, got {clip_len!r}")
        if not isinstance(num_clips, (int, np.integer)) or num_clips < 1:
            raise ValueError(f"UniformSampleFrames: num_clips must be an int >= 1, got {num_clips!r}")
        p = (p_interval, p_interval) if isinstance(p_interval, (int, float)) else tuple(p_interval)
        if len(p) != 2 or not 0 < p[0] <= p[1] <= 1:
            raise ValueError(f"UniformSampleFrames: p_interval must be a float or (low, high) with "
                             f"0 < low <= high <= 1, got {p_interval!r}")
        self.clip_len = int(clip_len)
        self.num_clips = int(num_clips)
        self.p_interval = (float(p[0]), float(p[1]))
        self.seed = int(seed)
        self.test_mode = test_mode

    def _clip(self, rng: Any, num_frames: int, clip_idx: int, test: bool) -> np.ndarray:
        clip_len = self.clip_len
        lo, hi = self.p_interval
        ratio = rng.rand() * (hi - lo) + lo
        n = int(ratio * num_frames)
        off = rng.randint(num_frames - n + 1)
        if n < clip_len:
            if test:
                start = clip_idx if n < self.num_clips else clip_idx * n // self.num_clips
            else:
                start = rng.randint(0, max(n, 1))
            inds = np.arange(start, start + clip_len)
        elif n < 2 * clip_len:
            skip = rng.choice(clip_len + 1, n - clip_len, replace=False)
            offset = np.zeros(clip_len + 1, dtype=np.int64)
            offset[skip] = 1
            inds = np.arange(clip_len) + np.cumsum(offset)[:-1]
        else:
            bids = np.array([i * n // clip_len for i in range(clip_len + 1)])
            inds = bids[:clip_len] + rng.randint(np.diff(bids))
        return inds + off

    def frame_indices(self, num_frames: int, test_mode: bool = False) -> np.ndarray:
        """The ``num_clips · clip_len`` frame indices (already wrapped modulo ``num_frames``)."""
        if num_frames < 1:
            raise ValueError(f"UniformSampleFrames: cannot sample from {num_frames} frames")
        rng = np.random.RandomState(self.seed) if test_mode else np.random
        inds = [self._clip(rng, num_frames, i, test_mode) for i in range(self.num_clips)]
        return np.mod(np.concatenate(inds), num_frames).astype(np.int64)

    def forward_results(self, results: dict[str, Any]) -> dict[str, Any]:
        kp = _keypoint(results, "UniformSampleFrames")
        num_frames = kp.shape[1]
        test = results.get("test_mode", False) if self.test_mode is None else self.test_mode
        inds = self.frame_indices(num_frames, bool(test))
        results["keypoint"] = kp[:, inds]
        if results.get("keypoint_score") is not None:
            results["keypoint_score"] = np.asarray(results["keypoint_score"])[:, inds]
        results["frame_inds"] = inds
        results["clip_len"] = self.clip_len
        results["num_clips"] = self.num_clips
        results["total_frames"] = int(len(inds))
        return results


#: PYSKL's alias.
UniformSample = UniformSampleFrames


@register_transform()
class PadTo(SkeletonTransform):
    r"""Pads the sequence to ``length`` frames by looping it (``"loop"``) or with zeros (``"zero"``) — the
    vanilla ST-GCN 300-frame input.

    Args:
        length (int): Target number of frames; longer sequences raise :class:`ValueError`.
        mode (str, optional): ``"loop"`` or ``"zero"``. (default: :obj:`"loop"`)
    """

    def __init__(self, length: int, mode: str = "loop") -> None:
        if mode not in ("loop", "zero"):
            raise ValueError(f"PadTo: mode must be 'loop' or 'zero', got {mode!r}")
        if not isinstance(length, (int, np.integer)) or length < 1:
            raise ValueError(f"PadTo: length must be an int >= 1, got {length!r}")
        self.length = int(length)
        self.mode = mode

    def forward_results(self, results: dict[str, Any]) -> dict[str, Any]:
        kp = _keypoint(results, "PadTo")
        T = kp.shape[1]
        if T > self.length:
            raise ValueError(f"PadTo: sequence has {T} frames, more than length={self.length}; "
                             f"use UniformSampleFrames or a larger length")
        if T == 0:
            raise ValueError("PadTo: cannot pad an empty sequence (0 frames)")
        inds = np.mod(np.arange(self.length), T)
        for key in ("keypoint", "keypoint_score"):
            if results.get(key) is None:
                continue
            arr = np.asarray(results[key])[:, inds].copy()
            if self.mode == "zero":
                arr[:, T:] = 0
            results[key] = arr
        results["total_frames"] = self.length
        return results


# ---------------------------------------------------------------------------------------------------------
# augmentation
# ---------------------------------------------------------------------------------------------------------
def _num_coords(C: int, dims: int | None, name: str) -> int:
    d = C if dims is None else dims
    if d not in (2, 3) or d > C:
        raise ValueError(f"{name}: needs 2 or 3 coordinate channels, got C={C}, dims={dims}")
    return d


@register_transform()
class RandomRot(SkeletonTransform):
    r"""Random rotation (PYSKL): 3-D angles :math:`\theta \sim U(-\theta_{max}, \theta_{max})^3`,
    :math:`R = R_z R_y R_x`; 2-D one angle. Applied as :math:`p' = R p` to the first ``dims`` channels.

    Args:
        theta (float, optional): Largest angle in radians. (default: :obj:`0.3`)
        dims (int, optional): Coordinate channels (2 or 3); :obj:`None` uses all of ``C`` (2 or 3). Set 2 for
            ``(x, y, score)`` arrays. (default: :obj:`None`)
    """

    def __init__(self, theta: float = 0.3, dims: int | None = None) -> None:
        self.theta = float(theta)
        self.dims = dims

    @staticmethod
    def rot3d(theta: np.ndarray) -> np.ndarray:
        """:math:`R_z R_y R_x` for angles ``theta = (a_x, a_y, a_z)``."""
        cos, sin = np.cos(theta), np.sin(theta)
        rx = np.array([[1, 0, 0], [0, cos[0], sin[0]], [0, -sin[0], cos[0]]])
        ry = np.array([[cos[1], 0, -sin[1]], [0, 1, 0], [sin[1], 0, cos[1]]])
        rz = np.array([[cos[2], sin[2], 0], [-sin[2], cos[2], 0], [0, 0, 1]])
        return rz @ ry @ rx

    @staticmethod
    def rot2d(theta: float) -> np.ndarray:
        cos, sin = np.cos(theta), np.sin(theta)
        return np.array([[cos, -sin], [sin, cos]])

    def forward_results(self, results: dict[str, Any]) -> dict[str, Any]:
        kp = _keypoint(results, "RandomRot")
        d = _num_coords(kp.shape[-1], self.dims, "RandomRot")
        if np.all(np.isclose(kp, 0)):
            return results
        if d == 3:
            rot = self.rot3d(np.random.uniform(-self.theta, self.theta, size=3))
        else:
            rot = self.rot2d(np.random.uniform(-self.theta, self.theta))
        out = kp.astype(np.float32, copy=True)
        out[..., :d] = np.einsum("ab,mtvb->mtva", rot, kp[..., :d])
        results["keypoint"] = out
        return results


@register_transform()
class RandomScale(SkeletonTransform):
    r"""Random per-axis scaling (PYSKL): :math:`p'_c = p_c (1 + u_c s_c)`, :math:`u_c \sim U(-1, 1)`.

    Args:
        scale (float or sequence of float, optional): :math:`s` for every or each coordinate.
            (default: :obj:`0.2`)
        dims (int, optional): Coordinate channels; :obj:`None` uses all. (default: :obj:`None`)
    """

    def __init__(self, scale: float | Sequence[float] = 0.2, dims: int | None = None) -> None:
        self.scale = scale
        self.dims = dims

    def forward_results(self, results: dict[str, Any]) -> dict[str, Any]:
        kp = _keypoint(results, "RandomScale")
        d = kp.shape[-1] if self.dims is None else self.dims
        if not 1 <= d <= kp.shape[-1]:
            raise ValueError(f"RandomScale: dims={self.dims} invalid for C={kp.shape[-1]}")
        scale = np.full(d, float(cast(float, self.scale))) if np.isscalar(self.scale) else \
            np.asarray(self.scale, float)
        if scale.shape != (d,):
            raise ValueError(f"RandomScale: scale needs 1 or {d} values, got {self.scale!r}")
        factor = 1 + np.random.uniform(-1, 1, size=d) * scale
        out = kp.astype(np.float32, copy=True)
        out[..., :d] = kp[..., :d] * factor
        results["keypoint"] = out
        return results


@register_transform()
class RandomGaussianNoise(SkeletonTransform):
    r"""Random joint jitter (PYSKL): each joint moves along a random unit direction by
    :math:`\mathcal{N}(0, \sigma^2)` times the size of the skeleton — the diagonal of the frame's bounding box
    (``base='frame'``) or of the whole video's (``'video'``). Frames with no joints get no noise.

    Args:
        sigma (float, optional): Relative noise std. (default: :obj:`0.01`)
        base (str, optional): ``"frame"`` or ``"video"``. (default: :obj:`"frame"`)
        shared (bool, optional): Same noise for every frame. (default: :obj:`False`)
        dims (int, optional): Coordinate channels; :obj:`None` uses all. (default: :obj:`None`)
    """

    def __init__(self, sigma: float = 0.01, base: str = "frame", shared: bool = False,
                 dims: int | None = None) -> None:
        if base not in ("frame", "video"):
            raise ValueError(f"RandomGaussianNoise: base must be 'frame' or 'video', got {base!r}")
        self.sigma = float(sigma)
        self.base = base
        self.shared = shared
        self.dims = dims

    def forward_results(self, results: dict[str, Any]) -> dict[str, Any]:
        kp = _keypoint(results, "RandomGaussianNoise")
        M, T, V, C = kp.shape
        d = C if self.dims is None else self.dims
        coords = kp[..., :d].reshape(M * T, V, d).astype(np.float64)
        flag = np.abs(coords).sum(axis=(1, 2)) > 1e-6  # (MT,)
        if not flag.any():
            return results
        lo, hi = coords.min(axis=1), coords.max(axis=1)  # (MT, d)
        if self.base == "frame":
            norm = np.linalg.norm(hi - lo, axis=1) * flag
        else:
            norm = np.full(M * T, np.linalg.norm(hi[flag].max(0) - lo[flag].min(0))) * flag
        if self.shared:
            mag = np.broadcast_to(np.random.randn(V) * self.sigma, (M * T, V))
            direction = np.random.uniform(-1, 1, size=(V, d))
            direction = np.broadcast_to(direction, (M * T, V, d))
        else:
            mag = np.random.randn(M * T, V) * self.sigma
            direction = np.random.uniform(-1, 1, size=(M * T, V, d))
        direction = direction / np.maximum(np.linalg.norm(direction, axis=-1, keepdims=True), 1e-12)
        noise = direction * (mag * norm[:, None])[..., None]
        out = kp.astype(np.float32, copy=True)
        out[..., :d] = (coords + noise).reshape(M, T, V, d)
        results["keypoint"] = out
        return results


# ---------------------------------------------------------------------------------------------------------
# feature streams
# ---------------------------------------------------------------------------------------------------------
def _layout_of(dataset: Any) -> tuple[str, tuple[tuple[int, int], ...]]:
    from ..graph import get_layout

    layout = get_layout(dataset)
    return layout.name, layout.bone_pairs()


@register_transform()
class JointToBone(SkeletonTransform):
    r"""Bones: :math:`b_v = p_v - p_{\mathrm{parent}(v)}` (the centre joint gets 0). For 2-D layouts with
    ``C == 3`` the third channel is the mean score of the two joints.

    Args:
        dataset (str, optional): Layout name. (default: :obj:`"nturgb+d"`)
        target (str, optional): Key to write. (default: :obj:`"keypoint"`)
        source (str, optional): Key to read. (default: :obj:`"keypoint"`)
    """

    def __init__(self, dataset: str = "nturgb+d", target: str = "keypoint", source: str = "keypoint") -> None:
        self.dataset, pairs = _layout_of(dataset)
        self._pairs = np.asarray(pairs, dtype=np.int64)
        self.target = target
        self.source = source

    def forward_results(self, results: dict[str, Any]) -> dict[str, Any]:
        kp = _keypoint(results, "JointToBone", self.source)
        C = kp.shape[-1]
        if C not in (2, 3):
            raise ValueError(f"JointToBone: keypoint must have C=2 or 3, got C={C}")
        if kp.shape[2] != len(self._pairs):
            raise ValueError(f"JointToBone: layout {self.dataset!r} has {len(self._pairs)} joints, "
                             f"keypoint has V={kp.shape[2]}")
        child, parent = self._pairs[:, 0], self._pairs[:, 1]
        bone = np.zeros(kp.shape, dtype=np.float32)
        bone[..., child, :] = kp[..., child, :] - kp[..., parent, :]
        if C == 3 and self.dataset in TWO_D_LAYOUTS:
            bone[..., child, 2] = (kp[..., child, 2] + kp[..., parent, 2]) / 2
        results[self.target] = bone
        return results


@register_transform()
class ToMotion(SkeletonTransform):
    r"""Motion: :math:`m_t = p_{t+1} - p_t`, last frame 0. For 2-D layouts with ``C == 3`` the third channel
    is the mean score of the two frames.

    Args:
        dataset (str, optional): Layout name. (default: :obj:`"nturgb+d"`)
        source (str, optional): Key to read. (default: :obj:`"keypoint"`)
        target (str, optional): Key to write. (default: :obj:`"motion"`)
    """

    def __init__(self, dataset: str = "nturgb+d", source: str = "keypoint", target: str = "motion") -> None:
        self.dataset, _ = _layout_of(dataset)
        self.source = source
        self.target = target

    def forward_results(self, results: dict[str, Any]) -> dict[str, Any]:
        data = _keypoint(results, "ToMotion", self.source).astype(np.float32)
        T, C = data.shape[1], data.shape[-1]
        motion = np.zeros_like(data)
        if T > 1:
            motion[:, :-1] = np.diff(data, axis=1)
            if C == 3 and self.dataset in TWO_D_LAYOUTS:
                motion[:, :-1, :, 2] = (data[:, :-1, :, 2] + data[:, 1:, :, 2]) / 2
        results[self.target] = motion
        return results


def parse_feats(feats: str | Sequence[str]) -> tuple[str, ...]:
    """The streams of ``feats`` (``"j+b"`` or ``["j", "b"]`` → ``("j", "b")``).

    Raises:
        ValueError: Unless ``feats`` names one or more distinct :data:`STREAMS` (i.e. is one of :data:`FEATS`).
    """
    out = tuple(feats.split("+")) if isinstance(feats, str) else tuple(feats)
    if not out or any(f not in STREAMS for f in out) or len(set(out)) != len(out):
        raise ValueError(f"feats must be one or more distinct of {', '.join(STREAMS)} (a list or joined by "
                         f"'+', e.g. 'j+b'), got {feats!r}")
    return out


@register_transform()
class GenSkeFeat(SkeletonTransform):
    r"""Feature streams (PYSKL): joints ``j``, bones ``b``, joint motion ``jm``, bone motion ``bm``,
    concatenated along ``axis`` in the given order. ``keypoint_score`` is merged into channel 2 first.

    Args:
        dataset (str, optional): Layout name. (default: :obj:`"nturgb+d"`)
        feats (str or sequence of str, optional): Streams, e.g. ``"j"``, ``["j", "b"]`` or ``"j+b"``.
            (default: :obj:`"j"`)
        axis (int, optional): Concatenation axis. (default: :obj:`-1`)

    Shapes:
        - **input:** ``keypoint`` :math:`(M, T, V, C)`
        - **output:** ``keypoint`` :math:`(M, T, V, C \cdot |\text{feats}|)` for ``axis=-1``
    """

    def __init__(self, dataset: str = "nturgb+d", feats: str | Sequence[str] = "j", axis: int = -1) -> None:
        self.dataset, _ = _layout_of(dataset)
        self.feats = parse_feats(feats)
        self.axis = axis
        self._bone = JointToBone(self.dataset, target="b")
        self._jm = ToMotion(self.dataset, source="j", target="jm")
        self._bm = ToMotion(self.dataset, source="b", target="bm")

    def forward_results(self, results: dict[str, Any]) -> dict[str, Any]:
        kp = _keypoint(results, "GenSkeFeat")
        if results.get("keypoint_score") is not None:
            if kp.shape[-1] != 2:
                raise ValueError(f"GenSkeFeat: keypoint_score given but keypoint has C={kp.shape[-1]} "
                                 "(need C=2)")
            kp = np.concatenate([kp, np.asarray(results["keypoint_score"])[..., None]], axis=-1)
        results.pop("keypoint_score", None)
        results["keypoint"] = kp.astype(np.float32)
        if "b" in self.feats or "bm" in self.feats:
            self._bone.forward_results(results)
        results["j"] = results.pop("keypoint")
        if "jm" in self.feats:
            self._jm.forward_results(results)
        if "bm" in self.feats:
            self._bm.forward_results(results)
        parts = [results[f] for f in self.feats]
        for key in STREAMS:
            results.pop(key, None)
        results["keypoint"] = np.concatenate(parts, axis=self.axis)
        return results


@register_transform()
class FormatGCNInput(SkeletonTransform):
    r"""Pads or crops persons to ``num_person`` (zero or ``"loop"`` copies of a single person) and reshapes
    to clips: ``(num_clips, M, T / num_clips, V, C)``, squeezed to ``(M, T, V, C)`` when ``num_clips == 1``.
    ``keypoint_score`` (if still present) is merged into the channels; the result is float32.

    Args:
        num_person (int, optional): Persons :math:`M`. (default: :obj:`2`)
        mode (str, optional): ``"zero"`` or ``"loop"``. (default: :obj:`"zero"`)
    """

    def __init__(self, num_person: int = 2, mode: str = "zero") -> None:
        if mode not in ("zero", "loop"):
            raise ValueError(f"FormatGCNInput: mode must be 'zero' or 'loop', got {mode!r}")
        if not isinstance(num_person, (int, np.integer)) or num_person < 1:
            raise ValueError(f"FormatGCNInput: num_person must be an int >= 1, got {num_person!r}")
        self.num_person = int(num_person)
        self.mode = mode

    def forward_results(self, results: dict[str, Any]) -> dict[str, Any]:
        kp = _keypoint(results, "FormatGCNInput").astype(np.float32)
        if results.get("keypoint_score") is not None:
            kp = np.concatenate([kp, np.asarray(results.pop("keypoint_score"), np.float32)[..., None]], -1)
        results.pop("keypoint_score", None)
        M = kp.shape[0]
        if M < self.num_person:
            pad = np.zeros((self.num_person - M,) + kp.shape[1:], dtype=np.float32)
            if self.mode == "loop" and M == 1:
                pad[:] = kp[0]
            kp = np.concatenate([kp, pad], axis=0)
        elif M > self.num_person:
            kp = kp[: self.num_person]
        M, T, V, C = kp.shape
        nc = int(results.get("num_clips", 1))
        if T % nc:
            raise ValueError(f"FormatGCNInput: {T} frames do not split into num_clips={nc} clips")
        kp = kp.reshape(M, nc, T // nc, V, C).transpose(1, 0, 2, 3, 4)
        results["keypoint"] = np.ascontiguousarray(kp[0] if nc == 1 else kp)
        return results


# ---------------------------------------------------------------------------------------------------------
# spec dicts and pipelines
# ---------------------------------------------------------------------------------------------------------
def build_transform(spec: Mapping[str, Any]) -> SkeletonTransform:
    """A transform from a spec dict ``{"type": "RandomRot", "theta": 0.2}`` (e.g. from a TOML config); the
    ``type`` is a name of :data:`TRANSFORMS`.

    Raises:
        ValueError: For an unknown type (listing the valid ones) or bad arguments.
    """
    spec = dict(spec)
    name = spec.pop("type", None)
    cls = TRANSFORMS.get(name)
    try:
        return cls(**spec)
    except TypeError as e:
        raise ValueError(f"bad arguments for transform {name}: {e}") from None


def _prenormalize3d_spec(layout: str) -> dict[str, Any]:
    """PreNormalize3D with the spine/shoulder joints of ``layout`` (PYSKL's defaults for ``nturgb+d``)."""
    from ..graph import get_layout

    names = get_layout(layout).joint_names

    def find(*cands: str) -> int | None:
        return next((names.index(c) for c in cands if c in names), None)

    bottom, top = find("spine_base", "hip_center"), find("spine_mid", "spine")
    right, left = find("right_shoulder"), find("left_shoulder")
    if None in (bottom, top, right, left):
        return {"type": "PreNormalize3D"}
    return {"type": "PreNormalize3D", "zaxis": [bottom, top], "xaxis": [right, left], "center": top}


def standard_pipeline(kind: str, feats: str | Sequence[str] = "j", clip_len: int = 100, *, train: bool = True,
                      num_clips: int = 1, num_person: int = 2, layout: str | None = None,
                      img_shape: Sequence[int] | None = None, augment: bool = False,
                      seed: int = 255) -> list[dict[str, Any]]:
    r"""The standard PYSKL-style pipeline of a dataset kind, as a list of spec dicts (what a configuration
    holds; :func:`build_pipeline` builds it).

    * ``"3d"``: ``PreNormalize3D → [RandomRot] → GenSkeFeat → UniformSampleFrames → FormatGCNInput``
      (PYSKL's NTU ST-GCN recipe; ``augment`` adds ``RandomRot(0.1)`` like ST-GCN++'s configs).
    * ``"2d"``: ``PreNormalize2D → [RandomScale, RandomRot] → GenSkeFeat → UniformSampleFrames →
      FormatGCNInput`` (COCO HRNet poses in pixels with ``keypoint_score``).
    * ``"2d-normalized"``: ``[RandomScale/RandomRot on x, y] → GenSkeFeat → UniformSampleFrames →
      FormatGCNInput`` (Kinetics-skeleton JSON and ``demo``: coordinates already centred, score in channel 2).

    Args:
        kind (str): One of :obj:`PIPELINE_KINDS`.
        feats (str or sequence of str, optional): Feature streams, one of :data:`FEATS`.
            (default: :obj:`"j"`)
        clip_len (int, optional): Frames per clip. (default: :obj:`100`)
        train (bool, optional): Random sampling (train) or seeded sampling (test). (default: :obj:`True`)
        num_clips (int, optional): Clips per sample (test-time multi-clip). (default: :obj:`1`)
        num_person (int, optional): Persons :math:`M` of the output. (default: :obj:`2`)
        layout (str, optional): Layout name; default ``nturgb+d`` / ``coco`` / ``openpose`` per kind.
            (default: :obj:`None`)
        img_shape (tuple of int, optional): Fallback ``(h, w)`` for ``PreNormalize2D``. (default: :obj:`None`)
        augment (bool, optional): Add random rotation/scaling in training. (default: :obj:`False`)
        seed (int, optional): Seed of test sampling. (default: :obj:`255`)

    Raises:
        ValueError: For an unknown ``kind``.
    """
    if kind not in PIPELINE_KINDS:
        raise ValueError(f"unknown pipeline kind {kind!r}; valid: {', '.join(PIPELINE_KINDS)}")
    layout = layout or _DEFAULT_LAYOUT[kind]
    augment_2d = [{"type": "RandomScale", "scale": 0.1, "dims": 2}, {"type": "RandomRot", "theta": 0.1, "dims": 2}]
    specs: list[dict[str, Any]] = []
    if kind == "3d":
        specs.append(_prenormalize3d_spec(layout))
        if augment and train:
            specs.append({"type": "RandomRot", "theta": 0.1, "dims": 3})
    elif kind == "2d":
        specs.append({"type": "PreNormalize2D", **({"img_shape": list(img_shape)} if img_shape else {})})
        if augment and train:
            specs += augment_2d
    elif augment and train:
        specs += augment_2d
    specs.append({"type": "GenSkeFeat", "dataset": layout,
                  "feats": feats if isinstance(feats, str) else list(feats)})
    specs.append({"type": "UniformSampleFrames", "clip_len": clip_len, "num_clips": num_clips, "seed": seed,
                  "test_mode": not train})
    specs.append({"type": "FormatGCNInput", "num_person": num_person})
    return specs


def build_pipeline(kind: str | Sequence[Mapping[str, Any] | Callable], feats: str | Sequence[str] = "j",
                   clip_len: int = 100, *, train: bool = True, num_clips: int = 1, num_person: int = 2,
                   layout: str | None = None, img_shape: Sequence[int] | None = None, augment: bool = False,
                   seed: int = 255) -> Compose:
    r"""A :class:`Compose` of the standard pipeline of ``kind`` (see :func:`standard_pipeline` for the
    arguments), or of ``kind`` itself when it is a list of spec dicts / transforms (a pipeline written in a
    configuration, as in PYSKL; the other arguments are then not used).

    Example::

        build_pipeline("3d", "j+b", 100, layout="nturgb+d")
        build_pipeline([{"type": "PreNormalize3D"}, {"type": "GenSkeFeat", "feats": "j+b"},
                        {"type": "UniformSample", "clip_len": 100}, {"type": "FormatGCNInput"}])

    Raises:
        ValueError: For an unknown kind or transform type, or bad arguments.
    """
    if not isinstance(kind, str):
        return Compose(kind)
    return Compose(standard_pipeline(kind, feats, clip_len, train=train, num_clips=num_clips,
                                     num_person=num_person, layout=layout, img_shape=img_shape,
                                     augment=augment, seed=seed))
