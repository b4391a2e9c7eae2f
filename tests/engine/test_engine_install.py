"""A non-editable install, run from another directory, reads the shipped recipes (package data), has one
version and the PEP 561 marker."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """``pip install --no-deps --target`` of a copy of the project (no build isolation: no network)."""
    tmp = tmp_path_factory.mktemp("install")
    src = tmp / "src"
    src.mkdir()
    for f in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / f, src / f)
    shutil.copytree(REPO / "pyg_sparse_stgcn", src / "pyg_sparse_stgcn",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    site = tmp / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-compile",
                        "--no-index", "-q", "--target", str(site), str(src)], capture_output=True, text=True,
                       timeout=600)
    if r.returncode != 0 and "No module named pip" in r.stderr:
        pytest.skip("pip is not available in this environment")
    assert r.returncode == 0, r.stderr[-3000:]
    return site


def _run(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(site)  # the installed copy, not the checkout
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_installed_package_reads_the_demo_recipe_from_another_directory(installed, tmp_path):
    code = ("import importlib.metadata as md, pathlib, pyg_sparse_stgcn as p\n"
            "from pyg_sparse_stgcn.engine.config import load_recipe, recipe_names\n"
            "print(pathlib.Path(p.__file__).resolve())\n"
            "print(load_recipe('demo')['model']['base_channels'])\n"
            "print(','.join(recipe_names()))\n"
            "print(md.version('pyg-sparse-stgcn') == p.__version__)\n"
            "print((pathlib.Path(p.__file__).parent / 'py.typed').is_file())\n")
    r = _run(installed, tmp_path, "-c", code)
    assert r.returncode == 0, r.stderr[-3000:]
    where, channels, names, version_ok, typed = r.stdout.split()
    assert Path(where).is_relative_to(installed.resolve())
    assert channels == "16" and "demo" in names.split(",") and "ntu60-xsub" in names.split(",")
    assert version_ok == "True" and typed == "True"


def test_installed_cli_resolves_the_recipe(installed, tmp_path):
    r = _run(installed, tmp_path, "-m", "pyg_sparse_stgcn.cli", "--data", "demo", "--mode", "generate",
             "--show-config")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "base_channels = 16" in r.stdout and "warm_up = 0.5" in r.stdout  # demo.toml, not the defaults
