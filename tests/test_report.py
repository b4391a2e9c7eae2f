"""``benchmarks/report.py``: the README's generated blocks and docs/results.md equal what the results files give
(run ``python benchmarks/report.py`` after a results file changes), pending arms are shown as pending, and the
figures in the tables are those of the results (checked against numbers computed here)."""
from __future__ import annotations

import statistics
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import report  # noqa: E402


def _docs() -> tuple[str, str, str]:
    return tuple((REPO / p).read_text(encoding="utf-8")  # type: ignore[return-value]
                 for p in ("README.md", "docs/results.md", "docs/reproducing.md"))


def test_readme_and_docs_are_generated():
    assert report.stale(*_docs()) == [], "out of date: run python benchmarks/report.py"


def test_a_hand_edited_block_is_detected():
    readme, _, repro = _docs()
    for name, body in report.generate().items():  # up to date, whatever the results files hold now
        readme = report.replace_block(readme, name, body)
    repro = report.replace_block(repro, "epoch", report.epoch_block(report.load("epoch.json")))
    studies = {ds: report.load(f"accuracy_{ds}.json") for ds in report.DATASETS}
    results = report.results_md(studies, report.load("demo.json"), report.figure_names(studies))
    assert report.stale(readme, results, repro) == []
    body = report.block(readme, "results")
    edited = report.replace_block(readme, "results", body + "\n| `dense` | 99.9 | | | | | |")
    assert report.stale(edited, results, repro) == ["results"]
    assert report.stale(readme, results + "x", repro) == ["docs/results.md"]
    assert report.stale(readme, results, report.replace_block(repro, "epoch", "1 h")) == ["docs/reproducing.md"]
    with pytest.raises(ValueError, match="markers"):
        report.block(readme.replace("<!-- demo:end -->", ""), "demo")


def _study(arms: dict) -> dict:
    return {"recipe": {"width": 24, "epochs": 7}, "selection": {"held_out": {"fraction": 0.2}}, "graph": "g",
            "runs": {a: {str(i): {} for i in range(len(v["top1"]))} for a, v in arms.items()}, "pending": ["x"],
            "arms": arms, "wall_time_s": 3600.0}


def test_tables_show_the_results_and_pending_arms():
    dense = {"top1": [0.90, 0.80], "mean_class_accuracy": [0.5], "weight_sparsity": 0.0, "edge_sparsity": 0.0,
             "edge_sparsity_connections": 0.0, "params_kept": 1234, "params_stored": 1234, "seconds": 12.0,
             "command": "c"}
    gen = {**dense, "top1": [0.84], "weight_sparsity": 0.95, "params_kept": 100, "params_stored": 2500}
    res = _study({"dense": dense, "generate-0.95": gen})
    rows = "\n".join(report.arm_rows(res, full=True))
    # mean 85.0, sample std sqrt(((0.05)^2 * 2) / 1) = 0.0707 -> 7.1
    assert "| `dense` | 85.0 ± 7.1 (2 seeds) | 50.0 | 0.0 | 0.0 / 0.0 | 1,234 / 1,234 | 12 |" in rows
    assert "| `generate-0.95` | 84.0 | 50.0 | 95.0 |" in rows
    assert "| `ensemble` | pending |" in rows and "| `imp-0.9-random-prune` | pending |" in rows
    claims = "\n".join(report.claims(res))
    # 84.0 - 85.0 = -1.0 point: within 1 point
    assert "84.0 vs 85.0 (-1.0 points) | holds |" in claims
    assert "| ensemble ≥ dense + 1 point and ≥ the parameter-matched dense | pending | pending |" in claims
    res["arms"]["generate-0.95"]["top1"] = [0.70]
    assert "**refuted** here" in "\n".join(report.claims(res))
    # the ensemble without its parameter-matched control: decided only when it misses dense + 1 point
    res["arms"]["ensemble"] = {**dense, "top1": [0.86]}
    assert "86.0 vs dense 85.0, dense-budget pending | pending (dense-budget) |" in "\n".join(report.claims(res))
    res["arms"]["ensemble"]["top1"] = [0.855]
    assert "85.5 vs dense 85.0, dense-budget pending | **refuted** here |" in "\n".join(report.claims(res))
    res["arms"]["dense-budget"] = {**dense, "top1": [0.80]}
    res["arms"]["ensemble"]["top1"] = [0.87]
    assert "87.0 vs dense 85.0, dense-budget 80.0 | holds |" in "\n".join(report.claims(res))
    del res["arms"]["ensemble"], res["arms"]["dense-budget"]
    assert "24 channels" in report.study_header("nw-ucla", res)[0]
    assert "not run yet" in report.study_header("nw-ucla", {})[0]


def test_dense_target_line_uses_the_dense_arm_and_the_tuning_runs():
    dense = {"top1": [0.92, 0.86]}
    res = _study({"dense": dense})
    res["selection"]["candidates"] = {"a": {"epochs": 40, "width": 32, "top1": 0.7, "train_top1": 0.8}}
    (line,) = report.dense_target("nw-ucla", res)
    assert "reaches 89.0 on the test split: **missed**" in line  # mean of 92 and 86
    assert "40 epochs × 32 channels: 70.0 held-out, 80.0 train" in line
    res["arms"]["dense"]["top1"] = [0.91]
    assert ": met" in report.dense_target("nw-ucla", res)[0]
    assert report.dense_target("msr-action3d", res) == []  # no target there


def test_bf16_parity_line():
    res = _study({"dense": {"top1": [0.86, 0.88, 0.84], "seconds": 100.0},
                  "dense-bf16": {"top1": [0.85, 0.87, 0.84], "seconds": 60.0}})
    (line,) = report.bf16_parity(res)
    # means 86.0 and 85.333: -0.67 points; standard error sqrt(4/3 + 2.333/3) = 1.453 points
    assert "-0.7 ± 1.5 points" in line and "over 3 / 3 seeds: **missed**, but within 2 standard errors" in line
    # 2 standard errors are 2.9 points over 3 seeds; 0.5 takes 3 * (2.906 / 0.5)^2 = 101.3 seeds
    assert "these seeds resolve ±2.9 points; ±0.5 would take about 102 seeds each" in line
    assert "60 s against 100 s" in line
    res["arms"]["dense-bf16"]["top1"] = [0.86, 0.87, 0.86]  # 86.333: +0.3
    assert "+0.3 ± 1.2 points" in report.bf16_parity(res)[0] and "seeds: met;" in report.bf16_parity(res)[0]
    res["arms"]["dense-bf16"]["top1"] = [0.80]  # one seed: no verdict yet
    assert "seeds: pending (1 of 3 seeds so far)" in report.bf16_parity(res)[0]
    res["arms"]["dense-bf16"]["top1"] = [0.80, 0.80, 0.80]  # -6 points, far outside the noise
    assert "seeds: **missed**; train time 60 s against 100 s per seed" in report.bf16_parity(res)[0]
    assert report.bf16_parity(_study({"dense": {"top1": [0.9]}})) == []  # not run: no line


def test_dense_target_line_names_the_limit_checks():
    res = _study({"dense": {"top1": [0.86]}})
    limits = {"e40-w64": {"epochs": 40, "width": 64, "settings": [], "top1": 0.81, "train_top1": 0.9},
              "e40-w32-skeleton": {"epochs": 40, "width": 32, "settings": ["model.graph_mode=stgcn_spatial"],
                                   "top1": None}}  # not finished: not quoted
    (line,) = report.dense_target("nw-ucla", res, limits)
    assert "--limits`): 40 epochs × 64 channels: 81.0 held-out, 90.0 train." in line
    assert "stgcn_spatial" not in line
    assert "What limits it" not in report.dense_target("nw-ucla", res)[0]


def test_demo_bf16_line_compares_the_means_with_their_noise():
    def demo(dense, sparse, wall):
        return {"seeds": [0, 1, 2], "dense_top1": {"mean": statistics.fmean(dense), "std": 0.01, "values": dense},
                "sparse_top1": {"mean": statistics.fmean(sparse), "std": 0.02, "values": sparse},
                "wall_s": {"values": [wall] * 3}, "machine": {"git_commit": "abc"}}

    line = report.demo_bf16_line(demo([0.95, 0.95, 0.95], [0.89, 0.90, 0.88], 300.0),
                                 demo([0.953, 0.953, 0.953], [0.886, 0.886, 0.886], 150.0))
    assert "dense 95.3 ± 1.0 %, +0.3 ± 0.0 points: met;" in line
    assert "95 %-sparse 88.6 ± 2.0 %, -0.4 ± 0.6 points: met;" in line and "150 s against 300 s" in line
    far = report.demo_bf16_line(demo([0.95] * 3, [0.89] * 3, 1.0), demo([0.95] * 3, [0.80] * 3, 1.0))
    assert "-9.0 ± 0.0 points: **missed**;" in far
    assert report.demo_bf16_line(demo([0.95] * 3, [0.89] * 3, 1.0), {}) == ""
