r"""Batches of skeleton samples for ST-GCN models, and their PyG disjoint-union view.

:class:`SkeletonLoader` is a :class:`torch.utils.data.DataLoader` whose batches are :class:`SkeletonBatch`
objects: ``x`` float32 :math:`(N, M, T, V, C)` (or :math:`(N, \text{num\_clips}, M, T, V, C)` for multi-clip
test pipelines), ``y`` long :math:`(N,)`, ``frame_dir`` (list of str), ``.to(device)``, ``pin_memory()``
(so ``pin_memory=True`` works) and :meth:`SkeletonBatch.to_pyg_batch`, which gives a disjoint-union
:class:`torch_geometric.data.Batch` (one graph of :math:`V` joint nodes per sample, the per-sample skeleton
``edge_index`` shifted by :math:`V` per graph, and a ``batch`` vector) for stock PyG models.
Any sampler works (e.g. :class:`~torch.utils.data.distributed.DistributedSampler`; :func:`make_loader`
builds one when ``distributed=True``), and so do ``num_workers >= 1`` workers: the collate function and the
batch class are module-level and picklable.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler
from torch_geometric.data import Batch, Data

from .sample import SkeletonData

__all__ = ["SkeletonBatch", "SkeletonLoader", "collate", "collate_skeletons", "make_loader"]


class SkeletonBatch:
    r"""A batch of skeleton samples.

    Args:
        x (torch.Tensor): :math:`(N, M, T, V, C)` or :math:`(N, \text{num\_clips}, M, T, V, C)` float32.
        y (torch.Tensor): :math:`(N,)` long labels (``-1`` where unknown).
        frame_dir (list of str, optional): Sample ids. (default: :obj:`None`)
        layout (str, optional): Skeleton layout name. (default: :obj:`None`)
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, frame_dir: Sequence[str] | None = None,
                 layout: str | None = None) -> None:
        if x.dim() not in (5, 6):
            raise ValueError(f"x must be (N, M, T, V, C) or (N, num_clips, M, T, V, C), got shape "
                             f"{tuple(x.shape)}")
        if y.dim() != 1 or y.shape[0] != x.shape[0]:
            raise ValueError(f"y must be (N,) with N = {x.shape[0]}, got shape {tuple(y.shape)}")
        self.x = x
        self.y = y
        self.frame_dir = list(frame_dir) if frame_dir is not None else []
        self.layout = layout

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def num_graphs(self) -> int:
        """Number of samples :math:`N` (PyG's name)."""
        return len(self)

    @property
    def num_clips(self) -> int:
        return int(self.x.shape[1]) if self.x.dim() == 6 else 1

    def to(self, device: torch.device | str, non_blocking: bool = False) -> SkeletonBatch:
        """Moves ``x`` and ``y`` to ``device``."""
        return SkeletonBatch(self.x.to(device, non_blocking=non_blocking),
                             self.y.to(device, non_blocking=non_blocking), self.frame_dir, self.layout)

    def pin_memory(self) -> SkeletonBatch:
        """Pins ``x`` and ``y`` (called by :class:`~torch.utils.data.DataLoader` with ``pin_memory=True``)."""
        return SkeletonBatch(self.x.pin_memory(), self.y.pin_memory(), self.frame_dir, self.layout)

    def to_pyg_batch(self, graph_mode: str = "binary_adj", layout: str | None = None) -> Batch:
        r"""The disjoint union of the :math:`N` skeleton graphs.

        Node :math:`n \cdot V + v` is joint :math:`v` of sample :math:`n`; its features are all that sample's
        values of that joint, ``x[n]`` moved to joints-first and flattened, in the order
        ``(clips,) M, T, C``. ``edge_index`` is ``SkeletonGraph(layout, graph_mode).edge_index`` of every
        sample, shifted by :math:`n \cdot V`.

        Args:
            graph_mode (str, optional): :class:`~pyg_sparse_stgcn.graph.SkeletonGraph` mode; the default
                ``"binary_adj"`` gives the bones in both directions without self loops (what ``GCNConv`` and
                friends expect). (default: :obj:`"binary_adj"`)
            layout (str, optional): Layout; default the batch's. (default: :obj:`None`)

        Returns:
            torch_geometric.data.Batch: ``x`` :math:`(N V, F)`, ``edge_index`` :math:`(2, N E)`, ``y``
            :math:`(N,)`, ``batch`` :math:`(N V,)`, ``ptr``.
        """
        from ..graph import SkeletonGraph

        name = layout or self.layout
        if name is None:
            raise ValueError("to_pyg_batch needs a layout: the batch has none, pass layout=")
        graph = SkeletonGraph(name, graph_mode)
        V = graph.num_nodes
        if self.x.shape[-2] != V:
            raise ValueError(f"layout {name!r} has {V} joints but x has V={self.x.shape[-2]}")
        N = len(self)
        feats = self.x.movedim(-2, 1).reshape(N, V, -1)
        edge_index = graph.edge_index.to(self.x.device)
        data = [Data(x=feats[n], edge_index=edge_index, y=self.y[n:n + 1], num_nodes=V) for n in range(N)]
        return Batch.from_data_list(data)

    def __repr__(self) -> str:
        return (f"SkeletonBatch(x={list(self.x.shape)}, y={list(self.y.shape)}, layout={self.layout!r}, "
                f"device={self.x.device})")


def collate_skeletons(samples: Sequence[SkeletonData]) -> SkeletonBatch:
    """Stacks transformed samples (equal ``x`` shapes) into a :class:`SkeletonBatch`: ``x``
    :math:`(N, M, T, V, C)` (or with a ``num_clips`` dimension), ``y`` :math:`(N,)`, the ``frame_dir`` list and
    the layout. Also available as :func:`collate`.

    Raises:
        ValueError: For an empty list or samples whose ``x`` shapes differ.
    """
    if len(samples) == 0:
        raise ValueError("cannot collate an empty list of samples")
    shapes = {tuple(s.x.shape) for s in samples}
    if len(shapes) != 1:
        raise ValueError(f"samples have different x shapes {sorted(shapes)}; use a transform that fixes "
                         "M and T (e.g. build_pipeline(...) with UniformSampleFrames and FormatGCNInput)")
    x = torch.stack([s.x for s in samples])
    y = torch.cat([s.y.reshape(-1)[:1] for s in samples]).long()
    frame_dir = [getattr(s, "frame_dir", "") for s in samples]
    layout = getattr(samples[0], "layout", None)
    return SkeletonBatch(x, y, frame_dir, layout)


#: The library's collate function (the name the engine uses); the same as :func:`collate_skeletons`.
collate = collate_skeletons


class SkeletonLoader(DataLoader):
    """A :class:`torch.utils.data.DataLoader` yielding :class:`SkeletonBatch` objects.

    Args:
        dataset (Dataset): A dataset of :class:`SkeletonData` (e.g. a transformed
            :class:`~pyg_sparse_stgcn.data.SkeletonDataset`).
        batch_size (int, optional): Samples per batch. (default: :obj:`1`)
        shuffle (bool, optional): Shuffle each epoch. (default: :obj:`False`)
        **kwargs: Other :class:`~torch.utils.data.DataLoader` arguments (``num_workers``, ``pin_memory``,
            ``sampler``, ``drop_last``, ``persistent_workers``, ...).
    """

    def __init__(self, dataset: Dataset, batch_size: int = 1, shuffle: bool = False, **kwargs: Any) -> None:
        kwargs.pop("collate_fn", None)
        super().__init__(dataset, batch_size=batch_size, shuffle=shuffle, collate_fn=collate_skeletons,
                         **kwargs)


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool = False, num_workers: int = 0,
                pin_memory: bool = False, drop_last: bool = False, distributed: bool = False,
                seed: int = 0, **kwargs: Any) -> SkeletonLoader:
    """A :class:`SkeletonLoader` with the usual training settings.

    With ``distributed=True`` a :class:`~torch.utils.data.distributed.DistributedSampler` (``shuffle``,
    ``seed``, ``drop_last``) splits the data over the process group; call ``loader.sampler.set_epoch(epoch)``
    each epoch. ``persistent_workers`` is on when ``num_workers > 0``.

    Args:
        dataset (Dataset): The dataset.
        batch_size (int): Samples per batch (per process).
        shuffle (bool, optional): Shuffle. (default: :obj:`False`)
        num_workers (int, optional): Worker processes. (default: :obj:`0`)
        pin_memory (bool, optional): Pin batches. (default: :obj:`False`)
        drop_last (bool, optional): Drop the last incomplete batch. (default: :obj:`False`)
        distributed (bool, optional): Use a :class:`DistributedSampler`. (default: :obj:`False`)
        seed (int, optional): Shuffle seed (the sampler's, or a :class:`torch.Generator`'s).
            (default: :obj:`0`)
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if not isinstance(num_workers, int) or num_workers < 0:
        raise ValueError(f"num_workers must be an int >= 0, got {num_workers!r}")
    if num_workers > 0:
        kwargs.setdefault("persistent_workers", True)
    if distributed:
        sampler: DistributedSampler[int] = DistributedSampler(dataset, shuffle=shuffle, seed=seed,
                                                              drop_last=drop_last)
        return SkeletonLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                              pin_memory=pin_memory, drop_last=drop_last, **kwargs)
    gen = torch.Generator()
    gen.manual_seed(seed)
    return SkeletonLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers,
                          pin_memory=pin_memory, drop_last=drop_last, generator=gen, **kwargs)
