"""The one registry of named datasets: ``--data`` name → source class (facts included)."""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TypeVar

from ..registry import Registry
from .base import DatasetInfo, DatasetSource

__all__ = ["SOURCES", "register_source", "get_source", "available_datasets", "dataset_info", "DATASETS"]

#: ``--data`` name → :class:`~pyg_sparse_stgcn.data.datasets.base.DatasetSource` subclass.
SOURCES: Registry[type[DatasetSource]] = Registry("dataset")

S = TypeVar("S", bound=type[DatasetSource])


def register_source(cls: S) -> S:
    """Class decorator: registers a :class:`DatasetSource` subclass under each of its ``names``."""
    if not cls.names:
        raise ValueError(f"{cls.__name__} has no names to register")
    SOURCES.register(*cls.names)(cls)
    return cls


def get_source(name: str) -> type[DatasetSource]:
    """The source class of dataset ``name``.

    Raises:
        ValueError: For an unknown name, listing the valid ones.
    """
    return SOURCES.get(name)


def available_datasets() -> list[str]:
    """Names accepted by :func:`~pyg_sparse_stgcn.data.build_dataset`, in registration order."""
    return SOURCES.names()


def dataset_info(name: str) -> DatasetInfo:
    """Facts about the dataset ``name``.

    Raises:
        ValueError: For an unknown name, listing the valid ones.
    """
    return get_source(name).facts(name)


class _Facts(Mapping[str, DatasetInfo]):
    """A read-only view of the registry: name → :class:`DatasetInfo`."""

    def __getitem__(self, name: str) -> DatasetInfo:
        if name not in SOURCES:
            raise KeyError(name)
        return dataset_info(name)

    def __iter__(self) -> Iterator[str]:
        return iter(SOURCES)

    def __len__(self) -> int:
        return len(SOURCES)

    def __repr__(self) -> str:
        return f"DATASETS({', '.join(SOURCES)})"


#: ``--data`` name → :class:`DatasetInfo`, a read-only view of :data:`SOURCES`.
DATASETS: Mapping[str, DatasetInfo] = _Facts()
