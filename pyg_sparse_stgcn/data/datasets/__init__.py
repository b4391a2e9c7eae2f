r"""Named skeleton datasets with PyG :class:`~torch_geometric.data.Dataset` semantics.

Registry (what the engine and the CLI use)::

    build_dataset(name: str, root: str | PathLike | None = None, split: str = "train",
                  transform: Callable | None = None, **options) -> SkeletonDataset
    DATASETS: Mapping[str, DatasetInfo]   # facts: num_classes, layout, 2-D/3-D, default root, ...
    dataset_info(name) -> DatasetInfo     # with a clear ValueError for unknown names
    check_dataset(name, root=None, **options) -> Path   # raises DatasetNotFoundError before any work

Modules: :mod:`.base` (:class:`DatasetSource`: one class per dataset family, facts as class attributes;
:class:`DatasetInfo`), :mod:`.registry` (the one registry, filled by :func:`register_source`), one module per
family (:mod:`.ntu`, :mod:`.kinetics`, :mod:`.finegym`, :mod:`.nwucla`, :mod:`.msr`, :mod:`.utkinect`,
:mod:`.pyskl`, :mod:`.demo`; :mod:`.pickled` is the shared PYSKL-pickle base), :mod:`.locate` (file
locators), :mod:`.npy_stream` (the ``.npy`` row writer), :mod:`.cache` (the processed cache) and
:mod:`.dataset` (:class:`SkeletonDataset`).

``root`` defaults to ``data/<name>`` (``DatasetInfo.default_root``); ``split`` is ``"train"`` or ``"val"``
(``"test"`` is an alias of ``"val"``; ``pyskl`` accepts any split name of its pickle). When the files are
missing, :class:`DatasetNotFoundError` (a :class:`ValueError`) lists the files expected under ``root`` and
where the dataset comes from. ``transform`` runs at access (``dataset[i]``), on the
:class:`~pyg_sparse_stgcn.data.SkeletonData` returned by :meth:`SkeletonDataset.get`; use
:func:`~pyg_sparse_stgcn.data.transforms.build_pipeline` for the standard pipelines. ``pre_transform`` (a
callable on a results dict, e.g. ``PreNormalize3D()``) runs once during processing and ``pre_filter`` (a
callable on a :class:`~pyg_sparse_stgcn.data.SkeletonSample` returning :obj:`bool`) drops samples.
"""
# The family modules register their sources on import; this order is the order of ``available_datasets()``.
from . import ntu, kinetics, finegym, nwucla, msr, utkinect, pyskl, demo  # noqa: F401, I001
from .base import DatasetInfo, DatasetNotFoundError, DatasetSource, Item
from .cache import CACHE_FILES, CACHE_VERSION, CacheWriter, ProcessedCache
from .dataset import SkeletonDataset, build_dataset, check_dataset, check_sample
from .registry import DATASETS, SOURCES, available_datasets, dataset_info, get_source, register_source

__all__ = ["SkeletonDataset", "DatasetInfo", "DATASETS", "DatasetNotFoundError", "build_dataset",
           "dataset_info", "check_dataset", "available_datasets", "CACHE_VERSION", "CACHE_FILES",
           "DatasetSource", "Item", "SOURCES", "register_source", "get_source", "ProcessedCache", "CacheWriter",
           "check_sample"]
