"""Atomic writes: content, no temporary files left behind, permissions of a plainly created file."""
from __future__ import annotations

import os
import stat

import pytest

from pyg_sparse_stgcn.atomic import atomic_write_bytes, atomic_write_json


def test_atomic_file_has_the_permissions_of_a_plain_file(tmp_path):
    plain = tmp_path / "plain"
    plain.write_bytes(b"x")
    out = atomic_write_bytes(tmp_path / "sub" / "a.bin", b"abc")
    assert out.read_bytes() == b"abc"
    assert stat.S_IMODE(out.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)
    assert [p.name for p in out.parent.iterdir()] == ["a.bin"]


def test_a_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(TypeError):
        atomic_write_json(tmp_path / "b.json", {"x": object()})
    assert os.listdir(tmp_path) == []
