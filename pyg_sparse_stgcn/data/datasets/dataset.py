r"""The PyG dataset over a named source and its processed cache."""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch_geometric.data import Dataset
from tqdm.auto import tqdm

from ..sample import SkeletonData, SkeletonFormatError, SkeletonSample
from .base import DatasetSource, Item
from .cache import CACHE_FILES, CACHE_VERSION, CacheWriter, ProcessedCache
from .registry import dataset_info, get_source

__all__ = ["SkeletonDataset", "build_dataset", "check_dataset", "check_sample"]


def check_sample(sample: SkeletonSample, num_classes: int | None, layout: str | None) -> str | None:
    """Why ``sample`` cannot be stored (empty or non-finite keypoints, no label or one outside
    ``0..num_classes-1``, a layout other than the dataset's), or :obj:`None`."""
    kp = sample.keypoint
    if kp.shape[0] == 0 or kp.shape[1] == 0:
        return f"empty keypoint array of shape {kp.shape}"
    if not np.isfinite(kp).all():
        return "keypoint holds NaN or infinite values"
    if sample.label is None:
        return "no label"
    if num_classes is not None and not 0 <= sample.label < num_classes:
        return f"label {sample.label} outside 0..{num_classes - 1}"
    if layout is not None and sample.layout != layout:
        return f"layout {sample.layout!r} differs from the dataset's {layout!r}"
    return None


def _read(item: Item) -> tuple[list[SkeletonSample], str | None]:
    """The samples of ``item``, or why it is skipped (its ``skip`` reason or the reader's error)."""
    if item.skip is not None:
        return [], item.skip
    assert item.load is not None
    try:
        loaded = item.load()
    except (SkeletonFormatError, ValueError, OSError) as e:
        return [], f"{type(e).__name__}: {e}"
    return ([loaded] if isinstance(loaded, SkeletonSample) else list(loaded)), None


class SkeletonDataset(Dataset):
    r"""A named skeleton dataset with PyG :class:`~torch_geometric.data.Dataset` semantics: the native files
    under ``root`` are read once, with the readers of :mod:`pyg_sparse_stgcn.data.readers`, into a processed
    cache (:mod:`~pyg_sparse_stgcn.data.datasets.cache`) in ``processed_dir``; later runs with the same
    configuration memory-map it.

    ``dataset[i]`` is a :class:`~pyg_sparse_stgcn.data.SkeletonData` with ``x`` float32 :math:`(M, T, V, C)`
    (the stored sample, before ``transform``), ``y`` long :math:`(1,)`, ``keypoint_score`` :math:`(M, T, V)`
    for 2-D data, ``frame_dir``, ``layout``, ``total_frames`` and ``img_shape`` (where known); ``transform``
    (e.g. :func:`~pyg_sparse_stgcn.data.transforms.build_pipeline`) is applied to it.

    Processing (PyG's ``process`` step) is :meth:`build_cache`; it is run by this class, not by PyG: PyG's
    :class:`~torch_geometric.data.Dataset` runs its private ``_process`` only for subclasses that define
    ``process()``, and that step (i) skips as soon as the processed files exist, so it cannot rebuild a cache
    whose split, options, ``pre_transform`` or ``pre_filter`` changed, and (ii) afterwards pickles
    ``pre_transform.pt`` and ``pre_filter.pt`` into the processed folder, which this cache keeps free of
    pickles. No public hook changes either, so this class defines no ``process()`` and calls
    :meth:`build_cache` after PyG's constructor when :meth:`ProcessedCache.is_current` says so.

    Args:
        root (str or PathLike, optional): Folder with the dataset's files (default: ``data/<name>``).
        name (str, optional): One of :func:`~pyg_sparse_stgcn.data.available_datasets`.
            (default: :obj:`"demo"`)
        split (str, optional): ``"train"`` or ``"val"`` (``"test"`` = ``"val"``); for ``pyskl`` any split of
            the pickle. (default: :obj:`"train"`)
        transform (callable, optional): Applied at access. (default: :obj:`None`)
        pre_transform (callable, optional): Applied once during processing, to the results dict of each
            sample. (default: :obj:`None`)
        pre_filter (callable, optional): Keeps a :class:`SkeletonSample` when it returns :obj:`True`.
            (default: :obj:`None`)
        processed_dir (str or PathLike, optional): Cache folder.
            (default: ``<root>/processed/<name>-<split>``)
        force_reload (bool, optional): Re-process even if a cache exists. (default: :obj:`False`)
        log (bool, optional): Show a progress bar while processing. (default: :obj:`True`)
        **options: Dataset options (each source class's ``option_names``): NTU ``ann_file``,
            ``max_bodies``; kinetics ``ann_file``, ``kpfile_root``, ``box_thr``, ``num_person_in``,
            ``num_person_out``; finegym/pyskl ``ann_file``, ``kpfile_root``, ``box_thr``, ``max_person``,
            ``layout``; msr-action3d ``subset`` (``"cvpr12"``/``"all"``); utkinect ``label_file``; demo
            ``seed``, ``num_train``, ``num_val``, ``num_empty``, ``min_frames``, ``max_frames``.

    Raises:
        DatasetNotFoundError: If the files are not under ``root`` (before any work).
        ValueError: For an unknown name, split or option.
    """

    def __init__(self, root: str | os.PathLike | None = None, name: str = "demo", split: str = "train",
                 transform: Callable | None = None, pre_transform: Callable | None = None,
                 pre_filter: Callable | None = None, processed_dir: str | os.PathLike | None = None,
                 force_reload: bool = False, log: bool = True, **options: Any) -> None:
        source_cls = get_source(name)
        self.info = source_cls.facts(name)
        self.name = name
        self.split = source_cls.resolve_split(name, split)
        root_p = Path(root if root is not None else self.info.default_root).expanduser()
        self.source: DatasetSource = source_cls(name, root_p, options)
        self.source.locate()
        self.options = {k: (str(v) if isinstance(v, os.PathLike) else v) for k, v in options.items()}
        self._processed_dir = Path(processed_dir) if processed_dir is not None else \
            root_p / "processed" / f"{name}-{self.split}"
        self.cache = ProcessedCache(self._processed_dir)
        self._kp: np.ndarray | None = None
        self._score: np.ndarray | None = None
        super().__init__(str(root_p), transform, pre_transform, pre_filter, log=log,
                         force_reload=force_reload)
        if force_reload or not self.cache.is_current(self.cache_config()):
            self.build_cache()
        self._load_index()

    # --- PyG Dataset API -----------------------------------------------------------------------------------
    @property
    def raw_dir(self) -> str:
        return self.root

    @property
    def processed_dir(self) -> str:
        return str(self._processed_dir)

    @property
    def raw_file_names(self) -> list[str]:
        return []

    @property
    def processed_file_names(self) -> list[str]:
        return list(CACHE_FILES)

    def len(self) -> int:
        return int(self._index["offset"].shape[0])

    def get(self, idx: int) -> SkeletonData:
        kp_all, sc_all = self._arrays()
        ix = self._index
        off, M, T = int(ix["offset"][idx]), int(ix["num_person"][idx]), int(ix["num_frames"][idx])
        V, C = kp_all.shape[1:]
        x = np.array(kp_all[off:off + M * T]).reshape(M, T, V, C)
        kwargs: dict[str, Any] = {"x": torch.from_numpy(x), "num_nodes": V,
                                  "y": torch.tensor([int(ix["label"][idx])], dtype=torch.long),
                                  "frame_dir": str(ix["frame_dir"][idx]), "layout": self.layout,
                                  "total_frames": T}
        if sc_all is not None and bool(ix["has_score"][idx]):
            kwargs["keypoint_score"] = torch.from_numpy(np.array(sc_all[off:off + M * T]).reshape(M, T, V))
        if int(ix["img_shape"][idx][0]) >= 0:
            kwargs["img_shape"] = torch.as_tensor(ix["img_shape"][idx][None], dtype=torch.long)
        return SkeletonData(**kwargs)

    # --- processing ----------------------------------------------------------------------------------------
    def cache_config(self) -> dict[str, Any]:
        """What makes a cache current: cache version, name, split, options, ``pre_transform`` and
        ``pre_filter`` (by their repr)."""
        return {"cache_version": CACHE_VERSION, "name": self.name, "split": self.split,
                "options": self.options, "pre_transform": repr(self.pre_transform),
                "pre_filter": repr(self.pre_filter)}

    def build_cache(self) -> None:
        """Reads every entry of the split and writes the processed cache; bad or excluded samples are
        listed in ``skipped.json`` with their reasons.

        Raises:
            ValueError: If no sample of the split is usable (quoting the first reasons).
        """
        items = list(self.source.items(self.split))
        bar = tqdm(items, desc=f"processing {self.name}/{self.split}", unit="sample", disable=not self.log,
                   leave=False)
        with self.cache.writer() as writer:
            try:
                for item in bar:
                    self._store(item, writer)
            finally:
                bar.close()
            if writer.num_samples == 0:
                detail = "; ".join(f"{s['id']}: {s['reason']}" for s in writer.skipped[:5])
                raise ValueError(f"dataset {self.name!r} split {self.split!r} under {self.root}: no usable "
                                 f"sample ({len(items)} entries, {len(writer.skipped)} skipped"
                                 f"{': ' + detail if detail else ''})")
            writer.commit(self.cache_config(), self.info.to_dict(), self.info.num_classes,
                          self.source.synthetic)

    def _store(self, item: Item, writer: CacheWriter) -> None:
        """Reads ``item`` and stores (or skips and lists) each of its samples."""
        samples, reason = _read(item)
        if reason is not None:
            writer.skip(item.id, item.source, reason)
        for sample in samples:
            reason = check_sample(sample, self.info.num_classes, writer.layout)
            if reason is None and self.pre_filter is not None and not self.pre_filter(sample):
                reason = "rejected by pre_filter"
            if reason is None:
                kp, score = self._pre_transformed(sample)
                reason = writer.add(sample, kp, score)
            if reason is not None:
                writer.skip(sample.frame_dir, item.source, reason)

    def _pre_transformed(self, sample: SkeletonSample) -> tuple[np.ndarray, np.ndarray | None]:
        """``keypoint`` and ``keypoint_score`` of ``sample`` after ``pre_transform``."""
        if self.pre_transform is None:
            return sample.keypoint, sample.keypoint_score
        res = self.pre_transform(sample.to_dict())
        return np.asarray(res["keypoint"], np.float32), res.get("keypoint_score")

    # --- reading the cache ---------------------------------------------------------------------------------
    def _load_index(self) -> None:
        self.meta, self._index, self.skipped = self.cache.load()
        self._kp = None
        self._score = None

    def _arrays(self) -> tuple[np.ndarray, np.ndarray | None]:
        if self._kp is None:
            self._kp, self._score = self.cache.arrays(bool(self.meta.get("has_score")))
        return self._kp, self._score

    def __getstate__(self) -> dict[str, Any]:  # memory maps are reopened in the receiving process
        state = self.__dict__.copy()
        state["_kp"] = None
        state["_score"] = None
        return state

    def sample(self, idx: int) -> SkeletonSample:
        """The stored sample ``idx`` as a :class:`SkeletonSample` (no transform)."""
        d = self.get(idx)
        score = d.keypoint_score.numpy() if "keypoint_score" in d else None
        img: tuple[int, int] | None = None
        if "img_shape" in d:
            h, w = d.img_shape.reshape(-1).tolist()
            img = (int(h), int(w))
        label = int(d.y[0])
        return SkeletonSample(keypoint=d.x.numpy(), label=None if label < 0 else label, frame_dir=d.frame_dir,
                              total_frames=int(d.total_frames), layout=self.layout, keypoint_score=score,
                              img_shape=img)

    # --- facts ---------------------------------------------------------------------------------------------
    @property
    def layout(self) -> str:
        """The skeleton layout of the stored samples."""
        return self.meta["layout"]

    @property
    def num_classes(self) -> int:
        """Number of classes (the dataset's, or the largest stored label + 1 for ``pyskl``)."""
        return int(self.meta["num_classes"])

    @property
    def labels(self) -> np.ndarray:
        """All labels, ``(len(self),)`` int64."""
        return self._index["label"][np.asarray(self.indices())]

    @property
    def num_skipped(self) -> int:
        """Number of samples that were not stored."""
        return len(self.skipped)

    @property
    def synthetic(self) -> bool:
        """Whether the data are generated (the ``demo`` dataset)."""
        return self.source.synthetic

    @property
    def pipeline_kind(self) -> str:
        """``kind`` for :func:`~pyg_sparse_stgcn.data.transforms.build_pipeline` (``2d`` for a PYSKL 2-D
        pickle, ``3d`` for 3-D data, ``2d-normalized`` for Kinetics-skeleton JSON)."""
        if self.meta["shape_vc"][1] == 3 and not self.meta["has_score"]:
            return "3d"
        return "2d-normalized" if self.info.pipeline_kind == "2d-normalized" and self.layout == "openpose" \
            else "2d"

    def __repr__(self) -> str:
        synthetic = ", SYNTHETIC" if self.synthetic else ""
        return (f"SkeletonDataset({self.name}, split={self.split!r}, samples={len(self)}, "
                f"skipped={self.num_skipped}, classes={self.num_classes}, layout={self.layout!r}{synthetic})")


def build_dataset(name: str, root: str | os.PathLike | None = None, split: str = "train",
                  transform: Callable | None = None, **kwargs: Any) -> SkeletonDataset:
    """Builds the named dataset; see :class:`SkeletonDataset` for the arguments.

    Example::

        from pyg_sparse_stgcn.data import build_dataset, build_pipeline, dataset_info
        info = dataset_info("nw-ucla")
        train = build_dataset("nw-ucla", "data/nw-ucla", "train",
                              transform=build_pipeline(info.pipeline_kind, "j", info.clip_len,
                                                       layout=info.layout, num_person=info.num_person))
    """
    return SkeletonDataset(root, name=name, split=split, transform=transform, **kwargs)


def check_dataset(name: str, root: str | os.PathLike | None = None, **options: Any) -> Path:
    """Checks that dataset ``name`` is present under ``root`` (default ``data/<name>``) without processing it
    (the ``demo`` data are generated).

    Returns:
        pathlib.Path: The root.

    Raises:
        DatasetNotFoundError: Listing the expected files and the dataset's origin.
        ValueError: For an unknown name or option.
    """
    info = dataset_info(name)
    root_p = Path(root if root is not None else info.default_root).expanduser()
    get_source(name)(name, root_p, options).locate()
    return root_p
