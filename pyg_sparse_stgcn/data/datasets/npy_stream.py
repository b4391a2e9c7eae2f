"""Appending rows to a ``.npy`` file without holding the array in memory."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["NpyStream"]

_HEADER_LEN = 128  # bytes reserved for the .npy header, rewritten in place once the row count is known


def _npy_header(shape: tuple[int, ...], descr: str) -> bytes:
    """A version-1.0 ``.npy`` header padded to :data:`_HEADER_LEN` bytes."""
    d = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + repr(tuple(shape)) + ", }"
    body = d.encode("latin1")
    pad = _HEADER_LEN - 10 - len(body) - 1
    if pad < 0:
        raise ValueError(f"array shape {shape} too large for the cache header")
    return b"\x93NUMPY\x01\x00" + (_HEADER_LEN - 10).to_bytes(2, "little") + body + b" " * pad + b"\n"


class NpyStream:
    r"""Writes a little-endian float32 ``.npy`` file of shape :math:`(n, *\text{row\_shape})` row block by
    row block; :meth:`close` writes the final row count into the header, flushes and ``fsync``-s.

    Args:
        path (pathlib.Path): File to write (created or truncated).
        row_shape (tuple of int): Shape of one row.
    """

    def __init__(self, path: Path, row_shape: tuple[int, ...]) -> None:
        self.path, self.row_shape, self.rows = path, tuple(row_shape), 0
        self.f = open(path, "wb")
        self.f.write(_npy_header((0, *self.row_shape), "<f4"))

    def append(self, arr: np.ndarray) -> None:
        """Appends the rows of ``arr`` (shape ``(k, *row_shape)``)."""
        arr = np.ascontiguousarray(arr, dtype="<f4")
        if arr.shape[1:] != self.row_shape:
            raise ValueError(f"row shape {arr.shape[1:]} does not match {self.row_shape}")
        self.f.write(arr.tobytes())
        self.rows += arr.shape[0]

    @property
    def closed(self) -> bool:
        """Whether the file is closed."""
        return self.f.closed

    def close(self) -> None:
        """Writes the header with the final row count and closes the file (durably)."""
        self.f.seek(0)
        self.f.write(_npy_header((self.rows, *self.row_shape), "<f4"))
        self.f.flush()
        os.fsync(self.f.fileno())
        self.f.close()
