"""Shared fixtures. Real data lives in ../shared (never copied into this repository)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def shared_path(*parts: str) -> Path:
    """Path under ../shared; skips the calling test with a reason when it is absent."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"real data not available: {p} is missing (tests read ../shared, never a copy)")
    return p


@pytest.fixture
def realdata() -> Path:
    return shared_path("realdata")


@pytest.fixture
def datasets_dir() -> Path:
    return shared_path("datasets")


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` skip, with the reason, where no CUDA device is present (``pytest -m cuda`` selects
    them all on a GPU machine: ``benchmarks/gpu_check.sh``)."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed_and_threads():
    """Seed every test and undo a thread-count change (the CLI applies ``run.threads`` in-process)."""
    threads = torch.get_num_threads()
    torch.manual_seed(0)
    np.random.seed(0)
    yield
    torch.set_num_threads(threads)


def _perturb_off_init(modules, seed: int) -> torch.Generator:
    """Move every parameter and BN statistic of ``modules`` off its initial value (BN weights / variances to
    0.5-1.5, graph matrices ``A`` / ``PA`` scaled by about 1 ± 0.2, the rest random with fan-in scaling), so
    that a comparison against a reference exercises every path (alpha and zero-init BNs included). Returns the
    generator (seeded ``seed``), to draw the inputs from next."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in modules:
            for name, t in list(module.named_parameters()) + list(module.named_buffers()):
                if name.endswith("num_batches_tracked"):
                    continue
                if name.endswith("running_var") or (name.endswith(".weight") and t.dim() == 1):
                    t.copy_(0.5 + torch.rand(t.shape, generator=gen))
                elif name.endswith(".A") or name == "A" or name.endswith("PA"):
                    t.mul_(1.0 + 0.2 * torch.randn(t.shape, generator=gen))
                else:
                    t.copy_(0.5 * torch.randn(t.shape, generator=gen) / max(1, t[0].numel()) ** 0.5)
    return gen


@pytest.fixture
def perturb_off_init():
    """:func:`_perturb_off_init`: ``perturb_off_init((backbone, head), seed)`` (the mmaction2 comparisons)."""
    return _perturb_off_init
