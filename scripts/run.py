#!/usr/bin/env python
"""Entry point: ``python scripts/run.py --data demo --mode generate`` (same as the ``pyg-sparse-stgcn``
console script; see ``docs/cli.md``)."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from pyg_sparse_stgcn.cli import main  # noqa: E402

if __name__ == "__main__":
    main(prog_name="scripts/run.py")
