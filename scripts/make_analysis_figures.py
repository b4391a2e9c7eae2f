"""Regenerate the figures of docs/analysis.md from a tiny demo (about a minute on two CPU cores).

    python scripts/make_analysis_figures.py [--out docs/figures/analysis] [--keep WORK_DIR]

Trains two tiny demo runs in a temporary directory with the CLI — ``generate`` (the paper's learnable random
graph, 80 % edge sparsity) and ``lottery`` (ST-GCN's skeleton partition, 3 levels removing 30 % of the edge
entries each) — analyses them with ``pyg-sparse-stgcn analyze`` (and ``--compare``), and copies the figures
named in docs/analysis.md to ``--out``. Synthetic data and two epochs: the figures show what the analysis
draws, not what a trained model learns.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from click.testing import CliRunner

from pyg_sparse_stgcn.cli import main
from pyg_sparse_stgcn.engine.tiny_demo import TINY_DEMO  # the tests' recipe ([ensemble]/[prune] unused here)

#: (run, file under RUN_DIR/analysis, name under --out)
FIGURES = [
    ("generate", "figures/skeleton_layers.png", "generate_skeleton_layers.png"),
    ("generate", "figures/heatmap_layer0.png", "generate_heatmap_layer0.png"),
    ("generate", "figures/rediscovery.png", "generate_rediscovery.png"),
    ("generate", "figures/sparsity_bars.png", "generate_sparsity_bars.png"),
    ("lottery", "figures/survival_curves.png", "lottery_survival_curves.png"),
    ("lottery", "figures/skeleton_subsets.png", "lottery_skeleton_subsets.png"),
    ("generate", "compare/figures/survival_curves.png", "compare_survival_curves.png"),
]


def _cli(*args: str) -> str:
    res = CliRunner().invoke(main, list(args), catch_exceptions=False)
    if res.exit_code != 0:
        sys.exit(f"pyg-sparse-stgcn {' '.join(args)} failed:\n{res.output}")
    return res.output


def main_(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "docs" / "figures" / "analysis"))
    ap.add_argument("--keep", help="work in this directory and keep it (default: a temporary one)")
    a = ap.parse_args(argv)
    work = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="analysis-figures-"))
    work.mkdir(parents=True, exist_ok=True)
    (work / "tiny.toml").write_text(TINY_DEMO)
    common = ["--config", str(work / "tiny.toml"), "--root", str(work / "demo"), "--out", str(work / "runs"),
              "--data", "demo"]
    runs = {}
    for name, args in (("generate", ["--mode", "generate", "--edge-sparsity", "0.8"]),
                       ("lottery", ["--mode", "lottery", "--set", "lottery.levels=3",
                                    "--set", "lottery.edge_fraction=0.3"])):
        out = _cli(*common, *args)
        runs[name] = Path([ln for ln in out.splitlines() if ln.startswith("run directory: ")][-1].split(": ", 1)[1])
    print(_cli("analyze", str(runs["generate"]), str(runs["lottery"]), "--compare"))
    dest = Path(a.out)
    dest.mkdir(parents=True, exist_ok=True)
    for run, src, name in FIGURES:
        shutil.copyfile(runs[run] / "analysis" / src, dest / name)
        print(f"wrote {dest / name}")
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main_()
