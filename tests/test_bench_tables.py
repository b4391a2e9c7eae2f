"""The benchmark tables the docs quote (``bench_sparsity.py --table``, ``bench_deploy.py --table``): docs/sparsity.md
and docs/deploy.md hold them as generated, and every ratio and verdict is recomputed here from the stored timings."""
from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import bench_sparsity  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "sparsity.json"


def test_docs_quote_the_committed_tables():
    payload = json.loads(RESULTS.read_text(encoding="utf-8"))
    docs = (REPO / "docs" / "sparsity.md").read_text(encoding="utf-8")
    assert bench_sparsity.grid_table(payload["sparse_vs_dense"]) in docs
    assert bench_sparsity.generator_table(payload["generator_step"]) in docs


def test_docs_quote_the_committed_breakeven_grid():
    grid = json.loads((RESULTS.parent / "sparsity_breakeven.json").read_text(encoding="utf-8"))["sparse_vs_dense"]
    assert all(r["target"] is None for c in grid["cells"] for r in c["rows"])
    assert bench_sparsity.breakeven_table(grid) in (REPO / "docs" / "sparsity.md").read_text(encoding="utf-8")


def test_generator_rows_follow_from_the_stored_timings():
    steps = json.loads(RESULTS.read_text(encoding="utf-8"))["generator_step"]
    for row in steps["cpu"] + steps["cpu_1thread_cputime"]:
        assert abs(row["ratio_min"] - row["generator_step"]["min_s"] / row["dense_step"]["min_s"]) < 1e-9
        assert abs(row["ratio_median"] - row["generator_step"]["median_s"] / row["dense_step"]["median_s"]) < 1e-9


def test_grid_rows_follow_from_the_stored_timings():
    grid = json.loads(RESULTS.read_text(encoding="utf-8"))["sparse_vs_dense"]
    for cell in grid["cells"]:
        dense = {k: statistics.median(v["times_s"]) for k, v in cell["times"].items() if k.startswith("dense_")}
        assert cell["fastest_dense"] == min(dense, key=dense.__getitem__)
        for row in cell["rows"]:
            sparse = statistics.median(cell["times"][f"sparse_{row['masks']}@{row['sparsity']}"]["times_s"])
            speedup = dense[cell["fastest_dense"]] / sparse
            assert abs(row["speedup_median"] - speedup) < 1e-9 * speedup
            assert row["meets_target"] == (speedup >= {0.95: 3.0, 0.99: 5.0}[row["sparsity"]])
            assert abs(row["windows_per_s"] - cell["batch"] / sparse) < 1e-6 * row["windows_per_s"]


def test_deploy_docs_quote_the_committed_windows():
    import bench_deploy

    results = json.loads((REPO / "benchmarks" / "results" / "deploy.json").read_text(encoding="utf-8"))
    assert bench_deploy.windows_table(results) in (REPO / "docs" / "deploy.md").read_text(encoding="utf-8")
    for cell in results["windows"].values():
        for r in cell.values():
            if isinstance(r, dict) and "meets_target" in r:
                assert r["meets_target"] == (r["windows_per_s"] >= results["target_sparse_windows_per_s"])
