"""Loading that never executes code from a file.

* :func:`load_pickle` unpickles with a restricted :class:`pickle.Unpickler`. Its ``find_class`` hands out
  only the numpy callables that rebuild arrays, dtypes and numpy scalars (plus ``_codecs.encode``, which
  protocol-2 pickles written by Python 3 use for raw bytes). Plain containers and scalars (dict, list, tuple,
  set, frozenset, OrderedDict, str, bytes, int, float, complex, bool, None) always load. Anything else, e.g. a
  ``__reduce__`` that names ``os.system``, is refused *before* it can be called, with a
  :class:`~pyg_sparse_stgcn.data.sample.SkeletonFormatError` naming the file and the global.
* :func:`load_json` parses JSON and turns a syntax error into a :class:`SkeletonFormatError` naming the file,
  line and column.
* :func:`load_torch` is :func:`torch.load` with ``weights_only=True`` forced.
"""
from __future__ import annotations

import codecs
import collections
import importlib
import io
import json
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from .sample import SkeletonFormatError

__all__ = ["load_pickle", "loads_pickle", "load_json", "load_torch", "SafeUnpickler", "ALLOWED_GLOBALS"]

_NP_CORE = "numpy._core" if hasattr(np, "_core") else "numpy.core"  # numpy 2 / numpy 1
_np_multiarray = importlib.import_module(f"{_NP_CORE}.multiarray")
_np_numeric = importlib.import_module(f"{_NP_CORE}.numeric")


def _frombuffer(*args: Any) -> np.ndarray:
    return _np_numeric._frombuffer(*args)


#: ``(module, name)`` pairs the restricted unpickler resolves, and what they resolve to. numpy 1 writes
#: ``numpy.core.*`` and numpy 2 ``numpy._core.*``; both map to the installed numpy without importing the
#: deprecated ``numpy.core`` shim.
ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,
}
# plain containers that older protocols rebuild through a global (Python 2 pickles name ``__builtin__``)
for _mod in ("builtins", "__builtin__"):
    for _obj in (set, frozenset, bytearray, complex):
        ALLOWED_GLOBALS[(_mod, _obj.__name__)] = _obj
ALLOWED_GLOBALS[("collections", "OrderedDict")] = collections.OrderedDict
for _mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
    ALLOWED_GLOBALS[(_mod, "_reconstruct")] = _np_multiarray._reconstruct
    ALLOWED_GLOBALS[(_mod, "scalar")] = _np_multiarray.scalar
for _mod in ("numpy.core.numeric", "numpy._core.numeric"):
    ALLOWED_GLOBALS[(_mod, "_frombuffer")] = _frombuffer
# numpy dtype classes (numpy >= 1.25 pickles dtypes as ``numpy.dtypes.Float32DType`` etc. in some paths).
for _name in ("Float16DType", "Float32DType", "Float64DType", "Int8DType", "Int16DType", "Int32DType",
              "Int64DType", "UInt8DType", "UInt16DType", "UInt32DType", "UInt64DType", "BoolDType"):
    if hasattr(np, "dtypes") and hasattr(np.dtypes, _name):
        ALLOWED_GLOBALS[("numpy.dtypes", _name)] = getattr(np.dtypes, _name)


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :data:`ALLOWED_GLOBALS` and refuses persistent ids.

    Args:
        file: A binary file object.
        source (str): Name used in error messages (usually the file path).
    """

    def __init__(self, file: Any, source: str = "<bytes>") -> None:
        super().__init__(file, encoding="latin1")
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise SkeletonFormatError(
                self._source,
                f"refusing to load global {module}.{name}: only numpy arrays, numpy scalars and plain "
                "containers (dict, list, tuple, str, int, float, bool, None) may appear in a skeleton pickle",
                where=f"pickle global {module}.{name}") from None

    def persistent_load(self, pid: Any) -> Any:
        raise SkeletonFormatError(self._source, "persistent ids are not allowed in a skeleton pickle",
                                  where="pickle persistent id")


def loads_pickle(data: bytes, source: str = "<bytes>") -> Any:
    """Unpickle ``data`` with :class:`SafeUnpickler` (see :func:`load_pickle`)."""
    try:
        return SafeUnpickler(io.BytesIO(data), source).load()
    except SkeletonFormatError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, UnicodeDecodeError, MemoryError, RecursionError, OverflowError) as e:
        raise SkeletonFormatError(source, f"not a readable pickle ({type(e).__name__}: {e})",
                                  where="pickle stream") from None


def load_pickle(path: str | os.PathLike) -> Any:
    """Load a pickle without executing code from it.

    Only numpy array/dtype/scalar reconstruction and plain containers are allowed; any other global (a class,
    ``os.system``, ``builtins.eval``, ...) raises before it is called.

    Args:
        path (str or os.PathLike): The pickle file.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        SkeletonFormatError: If the stream is truncated/garbled or names a global outside
            :data:`ALLOWED_GLOBALS`.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"pickle file not found: {p}")
    return loads_pickle(p.read_bytes(), str(p))


def load_json(path: str | os.PathLike) -> Any:
    """Parse a JSON file; a syntax error becomes a :class:`SkeletonFormatError` with line and column.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        SkeletonFormatError: If the file is not valid UTF-8 JSON.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"JSON file not found: {p}")
    raw = p.read_bytes()
    try:
        return json.loads(raw)
    except json.JSONDecodeError as e:
        raise SkeletonFormatError(p, f"invalid JSON: {e.msg}",
                                  where=f"line {e.lineno}, column {e.colno}") from None
    except UnicodeDecodeError as e:
        raise SkeletonFormatError(p, f"not UTF-8 text ({e.reason})", where=f"byte {e.start}") from None


def load_torch(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """:func:`torch.load` with ``weights_only=True`` (tensors, plain containers and primitive types only)."""
    import torch

    return torch.load(path, map_location=map_location, weights_only=True)
