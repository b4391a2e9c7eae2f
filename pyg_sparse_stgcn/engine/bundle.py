"""The dataset splits a mode trains and tests on, built from ``cfg.data`` with the standard pipelines."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from torch.utils.data import Dataset

if TYPE_CHECKING:
    from .config import Config

__all__ = ["DataBundle", "build_data", "holdout_split"]


@dataclass
class DataBundle:
    """The splits and facts of a dataset that the modes need.

    Attributes:
        name (str): Dataset name (``--data``).
        train (Dataset): Training split (training pipeline); :obj:`None` when the mode does not train.
        val (Dataset): Test split with one clip per sample (validation during training); :obj:`None` in a
            bundle of facts only (:meth:`facts`).
        test (Dataset): Test split with ``eval.num_clips`` clips per sample; :obj:`None` likewise.
        num_classes (int): Number of classes.
        layout (str): Skeleton layout name.
        in_channels (int): Channels :math:`C` of a sample's ``x``.
        num_person (int): Persons :math:`M` of a sample's ``x``.
        collate_fn (callable): Batch collation of the library's loader.
    """

    name: str
    train: Dataset | None
    val: Dataset | None
    test: Dataset | None
    num_classes: int
    layout: str
    in_channels: int
    num_person: int
    collate_fn: Callable | None = None

    @classmethod
    def facts(cls, name: str, num_classes: int, layout: str, in_channels: int, num_person: int) -> DataBundle:
        """A bundle with no split: the facts a model is built from (analysis and prediction of a checkpoint)."""
        return cls(name, None, None, None, num_classes, layout, in_channels, num_person)


def build_data(cfg: Config, train: bool = True, log: bool = True, clip_len: int = 0) -> DataBundle:
    """Open the dataset named by ``cfg.data`` with the standard pipeline of its kind
    (:func:`~pyg_sparse_stgcn.data.transforms.build_pipeline`).

    Args:
        cfg (Config): The configuration.
        train (bool, optional): Also open the training split. (default: :obj:`True`)
        log (bool, optional): Log processing. (default: :obj:`True`)
        clip_len (int, optional): Frames per clip of this mode (e.g. ``generator.clip_len``); 0 =
            ``data.clip_len`` or the dataset's recommendation. (default: :obj:`0`)

    Raises:
        DatasetNotFoundError: (a :class:`ValueError`) when the files are missing, listing the files expected
            under the root and where the dataset comes from; raised before any processing or training.
    """
    from ..data import build_dataset, build_pipeline, collate_skeletons, dataset_info

    d = cfg.data
    info = dataset_info(d.name)
    root = d.root or None
    opts = dict(d.kwargs)
    clip_len = clip_len or d.clip_len or info.clip_len
    num_person = d.num_person or info.num_person
    train_split, test_split = d.train_split or "train", d.test_split or "val"
    if d.holdout > 0:  # the held-out part of the training split replaces the test split
        return _with_holdout(cfg, build_data(_without_holdout(cfg, train_split), train, log, clip_len))
    val = build_dataset(d.name, root, test_split, log=log, **opts)  # raises DatasetNotFoundError first
    layout = cfg.model.layout or val.layout  # e.g. kinetics: openpose (JSON) or coco (PYSKL pickle)
    kind = val.pipeline_kind
    common: dict[str, Any] = dict(feats=d.feats, clip_len=clip_len, num_person=num_person, layout=layout)
    val.transform = build_pipeline(kind, train=False, num_clips=1, **common)
    nc = cfg.eval.num_clips
    test = val if nc == 1 else build_dataset(
        d.name, root, test_split, transform=build_pipeline(kind, train=False, num_clips=nc, **common),
        log=False, **opts)
    train_set = build_dataset(d.name, root, train_split, log=log, transform=build_pipeline(
        kind, train=True, augment=d.augment, **common), **opts) if train else None
    ref = train_set if train_set is not None else val
    if len(ref) == 0 or len(val) == 0:
        raise ValueError(f"--data {d.name}: split {train_split if len(ref) == 0 else test_split!r} is "
                         f"empty under {root or info.default_root}")
    x = ref[0].x
    num_classes = info.num_classes or val.num_classes
    return DataBundle(d.name, train_set, val, test, int(num_classes), str(layout), int(x.shape[-1]),
                      int(x.shape[-4]), collate_skeletons)


def holdout_split(labels: np.ndarray, fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    r"""Split sample positions into a training part and a held-out part of about ``fraction`` of the samples
    of every class (at least one of each class with two or more samples), drawn with ``seed``.

    Args:
        labels (numpy.ndarray): :math:`(N,)` class labels.
        fraction (float): Fraction in :math:`(0, 1)` held out per class.
        seed (int, optional): Seed of the draw. (default: :obj:`0`)

    Returns:
        ``(keep, held)``: sorted int64 positions, disjoint, together :math:`0..N-1`.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"holdout fraction must be in (0, 1), got {fraction!r}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    held: list[np.ndarray] = []
    for c in np.unique(labels):
        pos = np.flatnonzero(labels == c)
        n = min(len(pos) - 1, max(1, round(fraction * len(pos))))
        if n > 0:
            held.append(rng.permutation(pos)[:n])
    out = np.sort(np.concatenate(held)) if held else np.zeros(0, dtype=np.int64)
    keep = np.setdiff1d(np.arange(len(labels)), out)
    return keep.astype(np.int64), out.astype(np.int64)


def _without_holdout(cfg: Config, train_split: str) -> Config:
    """A copy of ``cfg`` that tests on the training split itself (the held-out part is cut out after)."""
    import copy

    c = copy.deepcopy(cfg)
    c.data.holdout, c.data.test_split = 0.0, train_split
    return c


def _with_holdout(cfg: Config, full: DataBundle) -> DataBundle:
    """``full`` (whose test splits are the training split with the test pipeline) cut into the training part
    and the held-out part (:func:`holdout_split` of ``data.holdout``, ``data.holdout_seed``)."""
    from ..data import SkeletonDataset

    train, val, test = (cast(SkeletonDataset | None, d) for d in (full.train, full.val, full.test))
    ref = train if train is not None else val
    assert ref is not None and val is not None and test is not None
    keep, held = holdout_split(ref.labels, cfg.data.holdout, cfg.data.holdout_seed)
    if len(keep) == 0 or len(held) == 0:
        raise ValueError(f"data.holdout = {cfg.data.holdout}: the training split of --data {cfg.data.name} "
                         f"({len(ref)} samples) leaves an empty part")
    held_val = val.index_select(held)
    return DataBundle(full.name, None if train is None else train.index_select(keep), held_val,
                      held_val if test is val else test.index_select(held), full.num_classes, full.layout,
                      full.in_channels, full.num_person, full.collate_fn)
