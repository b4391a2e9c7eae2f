"""The dataset splits a mode trains and tests on, built from ``cfg.data`` with the standard pipelines."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from torch.utils.data import Dataset

if TYPE_CHECKING:
    from .config import Config

__all__ = ["DataBundle", "build_data"]


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
