"""Native skeleton readers: each returns a :class:`~pyg_sparse_stgcn.data.SkeletonSample` and raises
:class:`~pyg_sparse_stgcn.data.SkeletonFormatError`
(naming the file and line / JSON path / key) on bad input."""
from .kinetics import KineticsLabels, read_kinetics_json, read_kinetics_labels

__all__ = ["KineticsLabels", "read_kinetics_json", "read_kinetics_labels"]
