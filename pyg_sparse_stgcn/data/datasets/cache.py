r"""The processed cache of one (dataset, split, options): written once, read through memory maps.

Files of a cache folder::

    keypoint.npy        float32 (sum_i M_i * T_i, V, C): all frames of all persons, concatenated
    keypoint_score.npy  float32 (sum_i M_i * T_i, V)     (2-D data only)
    index.npz           offset, num_person, num_frames, label, img_shape, has_score, frame_dir (no pickles)
    skipped.json        [{"id", "source", "reason"}, ...]: bad or excluded samples, with reasons
    meta.json           dataset facts and the configuration used (written last: marks a complete cache)

The arrays are streamed to temporary files (:class:`~pyg_sparse_stgcn.data.datasets.npy_stream.NpyStream`)
and every file is moved into place atomically; ``meta.json`` comes last, so an interrupted build leaves no
cache that looks complete. A cache is *current* when all files exist and ``meta.json`` records the same
configuration.
"""
from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ...atomic import atomic_write_bytes, atomic_write_json
from ..sample import SkeletonSample
from .npy_stream import NpyStream

__all__ = ["CACHE_VERSION", "CACHE_FILES", "ProcessedCache", "CacheWriter"]

#: Version of the processed-cache layout; a cache of another version is rebuilt.
CACHE_VERSION = 1
#: Files every complete cache holds (``keypoint_score.npy`` only with 2-D data).
CACHE_FILES = ("keypoint.npy", "index.npz", "skipped.json", "meta.json")

_INDEX_KEYS = ("offset", "num_person", "num_frames", "label", "img_shape", "frame_dir", "has_score")


class CacheWriter:
    r"""Builds a cache folder sample by sample.

    :meth:`add` streams a sample's frames to temporary ``.npy`` files and records it in the index;
    :meth:`skip` records an excluded sample; :meth:`commit` moves everything into place (``meta.json``
    last). The first added sample fixes the dataset's layout and :math:`(V, C)`. Use as a context manager:
    leaving it without :meth:`commit` removes the temporary files.

    Args:
        folder (pathlib.Path): The cache folder (must exist).
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._tmp = {n: folder / f".{n}.tmp-{os.getpid()}" for n in ("keypoint.npy", "keypoint_score.npy")}
        self._kp: NpyStream | None = None
        self._score: NpyStream | None = None
        self.index: dict[str, list] = {k: [] for k in _INDEX_KEYS}
        self.skipped: list[dict[str, str]] = []
        self.layout: str | None = None
        self.shape_vc: tuple[int, int] | None = None
        self.rows = 0
        self._committed = False

    @property
    def num_samples(self) -> int:
        """Samples added so far."""
        return len(self.index["offset"])

    def skip(self, id: str, source: str, reason: str) -> None:
        """Records a sample that is not stored."""
        self.skipped.append({"id": id, "source": source, "reason": reason})

    def add(self, sample: SkeletonSample, kp: np.ndarray, score: np.ndarray | None) -> str | None:
        r"""Stores ``kp`` :math:`(M, T, V, C)` and ``score`` :math:`(M, T, V)` (or :obj:`None`) with the
        label, id and image shape of ``sample``.

        Returns:
            str or None: Why the sample was not stored (its :math:`(V, C)` differs from the dataset's), or
            :obj:`None`.
        """
        M, T, V, C = kp.shape
        if self._kp is None:
            self.layout, self.shape_vc = sample.layout, (V, C)
            self._kp = NpyStream(self._tmp["keypoint.npy"], (V, C))
            self._score = NpyStream(self._tmp["keypoint_score.npy"], (V,))
        elif (V, C) != self.shape_vc:
            return f"shape (V, C) = {(V, C)} differs from the dataset's {self.shape_vc}"
        assert self._score is not None
        self._kp.append(kp.reshape(M * T, V, C))
        has_score = score is not None
        if has_score:
            self._score.append(np.asarray(score, np.float32).reshape(M * T, V))
        else:
            self._score.append(np.zeros((M * T, V), np.float32))
        ix = self.index
        ix["offset"].append(self.rows)
        self.rows += M * T
        ix["num_person"].append(M)
        ix["num_frames"].append(T)
        ix["label"].append(-1 if sample.label is None else sample.label)
        ix["img_shape"].append(list(sample.img_shape) if sample.img_shape else [-1, -1])
        ix["frame_dir"].append(sample.frame_dir)
        ix["has_score"].append(has_score)
        return None

    def close(self) -> None:
        """Closes the temporary array files (idempotent)."""
        for s in (self._kp, self._score):
            if s is not None and not s.closed:
                s.close()

    def discard(self) -> None:
        """Closes and removes the temporary array files."""
        self.close()
        for p in self._tmp.values():
            p.unlink(missing_ok=True)

    def commit(self, config: dict[str, Any], dataset: dict[str, Any], num_classes: int | None,
               synthetic: bool) -> dict[str, Any]:
        """Moves the arrays into place and writes ``index.npz``, ``skipped.json`` and, last, ``meta.json``.

        Args:
            config (dict): The configuration that makes the cache current.
            dataset (dict): The dataset's facts (:meth:`DatasetInfo.to_dict`).
            num_classes (int, optional): Number of classes; :obj:`None` takes the largest label + 1.
            synthetic (bool): Whether the data are generated.

        Returns:
            dict: The meta data written.
        """
        if self._kp is None or self.shape_vc is None:
            raise ValueError("no sample was added; nothing to commit")
        self.close()
        out = self.folder
        has_any_score = any(self.index["has_score"])
        os.replace(self._tmp["keypoint.npy"], out / "keypoint.npy")
        if has_any_score:
            os.replace(self._tmp["keypoint_score.npy"], out / "keypoint_score.npy")
        else:
            self._tmp["keypoint_score.npy"].unlink(missing_ok=True)
            (out / "keypoint_score.npy").unlink(missing_ok=True)
        atomic_write_bytes(out / "index.npz", self._index_bytes())
        atomic_write_json(out / "skipped.json", self.skipped, indent=1)
        labels = np.asarray(self.index["label"])
        if num_classes is None:
            num_classes = int(labels.max()) + 1 if labels.size and labels.max() >= 0 else 0
        meta = {"config": config, "dataset": dataset, "layout": self.layout, "num_classes": num_classes,
                "num_samples": self.num_samples, "num_skipped": len(self.skipped), "num_rows": self.rows,
                "shape_vc": list(self.shape_vc), "has_score": has_any_score, "synthetic": synthetic}
        atomic_write_json(out / "meta.json", meta, indent=1)
        self._committed = True
        return meta

    def _index_bytes(self) -> bytes:
        ix = self.index
        buf = io.BytesIO()
        np.savez(buf, offset=np.asarray(ix["offset"], np.int64),
                 num_person=np.asarray(ix["num_person"], np.int64),
                 num_frames=np.asarray(ix["num_frames"], np.int64),
                 label=np.asarray(ix["label"], np.int64),
                 img_shape=np.asarray(ix["img_shape"], np.int64).reshape(-1, 2),
                 has_score=np.asarray(ix["has_score"], bool),
                 frame_dir=np.asarray(ix["frame_dir"], dtype=str))
        return buf.getvalue()

    def __enter__(self) -> CacheWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._committed:
            self.close()
        else:
            self.discard()


class ProcessedCache:
    """A cache folder: whether it is current, how to (re)build it and how to read it back.

    Args:
        folder (str or PathLike): The cache folder.
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)

    def is_current(self, config: dict[str, Any]) -> bool:
        """Whether every file exists and ``meta.json`` records ``config``."""
        meta_path = self.folder / "meta.json"
        if not meta_path.is_file() or not all((self.folder / f).is_file() for f in CACHE_FILES):
            return False
        try:
            return json.loads(meta_path.read_text()).get("config") == config
        except (OSError, ValueError):
            return False

    def writer(self) -> CacheWriter:
        """A :class:`CacheWriter` for a rebuild: creates the folder and first removes ``meta.json``, so the old
        cache stops counting as complete."""
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "meta.json").unlink(missing_ok=True)
        return CacheWriter(self.folder)

    def load(self) -> tuple[dict[str, Any], dict[str, np.ndarray], list[dict[str, str]]]:
        """``meta.json``, the arrays of ``index.npz`` (loaded without pickles) and ``skipped.json``."""
        meta = json.loads((self.folder / "meta.json").read_text())
        with np.load(self.folder / "index.npz", allow_pickle=False) as z:
            index = {k: z[k] for k in z.files}
        skipped = json.loads((self.folder / "skipped.json").read_text())
        return meta, index, skipped

    def arrays(self, has_score: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """Read-only memory maps of ``keypoint.npy`` and (when ``has_score``) ``keypoint_score.npy``."""
        kp = np.load(self.folder / "keypoint.npy", mmap_mode="r", allow_pickle=False)
        score = np.load(self.folder / "keypoint_score.npy", mmap_mode="r", allow_pickle=False) \
            if has_score else None
        return kp, score
