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


@pytest.fixture(autouse=True)
def _seed_and_threads():
    """Seed every test and undo a thread-count change (the CLI applies ``run.threads`` in-process)."""
    threads = torch.get_num_threads()
    torch.manual_seed(0)
    np.random.seed(0)
    yield
    torch.set_num_threads(threads)
