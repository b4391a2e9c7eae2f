"""A name → class registry filled by a decorator (dataset sources, transforms)."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    r"""Names mapped to objects (here: classes), in registration order.

    .. code-block:: python

        SOURCES = Registry("dataset")

        @SOURCES.register("nw-ucla")
        class NWUCLASource(DatasetSource): ...

        SOURCES.get("nw-ucla")      # NWUCLASource
        SOURCES.get("ucla")         # ValueError: unknown dataset 'ucla'; valid: nw-ucla, ...

    Args:
        kind (str): What the names name, for error messages (e.g. ``"dataset"``).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, *names: str) -> Callable[[T], T]:
        """A decorator registering its argument under every name in ``names``.

        Raises:
            ValueError: If no name is given or a name is taken.
        """
        if not names:
            raise ValueError(f"register a {self.kind} under at least one name")

        def deco(obj: T) -> T:
            for name in names:
                if name in self._entries:
                    raise ValueError(f"{self.kind} {name!r} is registered twice")
                self._entries[name] = obj
            return obj

        return deco

    def get(self, name: str) -> T:
        """The object registered as ``name``.

        Raises:
            ValueError: For an unknown name, listing the valid ones.
        """
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise ValueError(f"unknown {self.kind} {name!r}; valid: {', '.join(self._entries)}") from None

    def names(self) -> list[str]:
        """The registered names, in registration order."""
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"
