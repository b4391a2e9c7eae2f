r"""Keep freed memory in the process, so that CPU training steps do not page-fault their buffers in again.

PyTorch's CPU tensors come from the C library's ``malloc``. glibc serves blocks above its mmap threshold
(128 KiB, rising with use up to 32 MiB) with ``mmap`` and unmaps them when they are freed, and it returns the
top of its heap to the system past a trim threshold. A training step frees almost everything it allocated
(activations, gradients, the convolutions' scratch buffers, some of them larger than 32 MiB), so the next step
touches fresh pages again, and every 4 KiB page costs a fault and the kernel's zeroing of it.
:func:`keep_freed_memory` switches both off for the process: what a step frees, the next step reuses. It is what
``LD_PRELOAD``-ing jemalloc or tcmalloc does for PyTorch's CPU training, with nothing to install. The measured
effect is in ``benchmarks/results/malloc.json`` (``benchmarks/bench_malloc.py``; docs/nn.md "Speed").

The cost: the process keeps the memory of its peak (its resident size does not shrink after a step, as with
PyTorch's CUDA caching allocator). The CLI calls it unless ``run.keep_freed_memory = false``.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import platform

__all__ = ["keep_freed_memory", "supported"]

# mallopt parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
#: The largest trim threshold mallopt takes (an int): free memory at the top of the heap is returned past it.
_TRIM_NEVER = 2**31 - 1


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.mallopt.restype = ctypes.c_int
    except (OSError, AttributeError):
        return None
    return libc


def supported() -> bool:
    """Whether this process's allocator is glibc's, whose settings :func:`keep_freed_memory` changes."""
    return _glibc() is not None


def keep_freed_memory() -> bool:
    r"""Make glibc's ``malloc`` keep freed memory for reuse: no ``mmap`` for large blocks (they come from the
    heap, whatever their size) and no trimming of the heap's top (below 2 GiB of free memory there). It applies
    to the whole process from this call on (and to processes it forks later).

    Returns:
        bool: :obj:`True` where the settings were applied, :obj:`False` where the C library is not glibc
        (nothing is changed then).

    Example:
        >>> from pyg_sparse_stgcn.malloc import keep_freed_memory
        >>> applied = keep_freed_memory()  # then build and train the model as usual
    """
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_NEVER))
