r"""Build and load the library's native CPU kernels: :func:`load_library`.

A kernel's C source is compiled once per machine with the system C compiler (``$CC``, else ``cc`` /
``gcc``; :data:`FLAGS`) into ``$PYG_SPARSE_STGCN_CACHE`` (default ``~/.cache/pyg_sparse_stgcn``), named by
a hash of the source, the flags, the compiler and the CPU, and loaded through :mod:`ctypes`. Without a
compiler, off Linux, or with ``PYG_SPARSE_STGCN_NATIVE=0``, nothing is built and the callers use PyTorch's
own operators instead (the same results, slower).
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Any

__all__ = ["FLAGS", "load_library", "native_enabled"]

#: The compiler flags of every kernel (OpenMP threads follow ``torch.get_num_threads()`` at each call).
FLAGS = ["-O3", "-march=native", "-fopenmp", "-shared", "-fPIC"]

_lock = threading.Lock()
_loaded: dict[str, ctypes.CDLL | None] = {}


def native_enabled() -> bool:
    """Whether native kernels may be built here at all (Linux, and ``PYG_SPARSE_STGCN_NATIVE`` not ``0``)."""
    return os.environ.get("PYG_SPARSE_STGCN_NATIVE", "1") != "0" and platform.system() == "Linux"


def _cpu_id() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            return "".join(line for line in fh if line.startswith(("model name", "flags")))[:4096]
    except OSError:
        return platform.processor()


def _build(name: str, source: str, what: str) -> ctypes.CDLL | None:
    if not native_enabled():
        return None
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    key = hashlib.sha256("\0".join([source, *FLAGS, cc, _cpu_id()]).encode()).hexdigest()[:16]
    root = Path(os.environ.get("PYG_SPARSE_STGCN_CACHE", Path.home() / ".cache" / "pyg_sparse_stgcn"))
    lib = root / f"{name}_{key}.so"
    if not lib.exists():
        try:
            root.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=root) as tmp:
                src = Path(tmp) / f"{name}.c"
                src.write_text(source, encoding="utf-8")
                out = Path(tmp) / f"{name}.so"
                proc = subprocess.run([cc, *FLAGS, str(src), "-o", str(out)], capture_output=True, text=True,
                                      timeout=120)
                if proc.returncode != 0:
                    warnings.warn(f"{what}: the native kernel did not compile with {cc} (PyTorch's operators are "
                                  f"used instead):\n{proc.stderr[-2000:]}", UserWarning, stacklevel=4)
                    return None
                os.replace(out, lib)  # atomic: concurrent builds leave one complete library
        except (OSError, subprocess.SubprocessError) as err:
            warnings.warn(f"{what}: could not build the native kernel ({err}); PyTorch's operators are used "
                          "instead", UserWarning, stacklevel=4)
            return None
    return ctypes.CDLL(str(lib))


def load_library(name: str, source: str, signatures: dict[str, list[Any]], what: str) -> ctypes.CDLL | None:
    r"""The compiled ``source`` (built on the first call, then cached on disk and in this process), or
    :obj:`None` where no native kernel can be built (a warning says why when a compiler failed).

    Args:
        name (str): The library's file-name stem (one per kernel source).
        source (str): The C source.
        signatures (dict[str, list]): ``ctypes`` argument types of each exported function (all return
            ``void``).
        what (str): Who asks, for the warnings (e.g. ``"sparse export"``).
    """
    if name not in _loaded:
        with _lock:
            if name not in _loaded:
                dll = _build(name, source, what)
                if dll is not None:
                    for fn, argtypes in signatures.items():
                        getattr(dll, fn).argtypes = argtypes
                        getattr(dll, fn).restype = None
                _loaded[name] = dll
    return _loaded[name]
