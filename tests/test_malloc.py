"""``keep_freed_memory``: a freed large block is reused without page faults (in a fresh interpreter, against
glibc's defaults there), and the CLI applies it unless ``run.keep_freed_memory = false``."""
from __future__ import annotations

import subprocess
import sys

import pytest
from tiny_config import TINY_DEMO, run_tiny

from pyg_sparse_stgcn import malloc
from pyg_sparse_stgcn.engine import session

pytestmark = pytest.mark.skipif(not malloc.supported(), reason="the C library is not glibc")

# A training step's pattern: buffers alive together (two above glibc's largest dynamic mmap threshold, 32 MiB),
# then all freed; by default the large ones are mapped afresh and faulted in page by page at every step
_SIZES_MIB = (40, 30, 10, 10, 30, 48)
_CHILD = f"""
import resource, sys, torch
from pyg_sparse_stgcn.malloc import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
def step():
    held = [torch.empty(mb * 2**18).fill_(1.0) for mb in {_SIZES_MIB!r}]
    del held
for _ in range(3):
    step()
before = resource.getrusage(resource.RUSAGE_SELF)
for _ in range(10):
    step()
after = resource.getrusage(resource.RUSAGE_SELF)
print(after.ru_minflt - before.ru_minflt, after.ru_maxrss)
"""


def _run(setting: str) -> tuple[int, int]:
    """Minor page faults over 10 steps, and the peak resident size (KiB)."""
    out = subprocess.run([sys.executable, "-c", _CHILD, setting], capture_output=True, text=True, timeout=120,
                         check=True)
    faults, rss = out.stdout.split()[-2:]
    return int(faults), int(rss)


def test_freed_blocks_are_reused_without_page_faults():
    (default, rss_default), (keep, rss_keep) = _run("default"), _run("keep")
    pages = 10 * sum(_SIZES_MIB) * 2**20 // 4096
    assert default > 0.2 * pages, default  # glibc's defaults: large blocks mapped and faulted in again
    assert keep < 0.1 * pages, keep  # measured here: 0 in most runs, 16 896 (4 %) in some
    assert rss_keep < rss_default + 2 * sum(_SIZES_MIB) * 1024  # kept for reuse, not piled up


@pytest.mark.parametrize("keep", [True, False])
def test_the_cli_applies_it_unless_switched_off(keep, monkeypatch, tmp_path):
    (tmp_path / "tiny.toml").write_text(TINY_DEMO)
    calls = []
    monkeypatch.setattr(session, "keep_freed_memory", lambda: calls.append(1) or True)
    run_tiny(tmp_path, "--data", "demo", "--epochs", "1", "--set", f"run.keep_freed_memory={str(keep).lower()}")
    assert calls == ([1] if keep else [])
