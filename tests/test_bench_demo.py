"""``benchmarks/bench_demo.py`` without training: an interrupted invocation resumes with the seeds it finished,
a changed recipe starts again, and the results file holds every seed's numbers."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import bench_demo  # noqa: E402


def _summary(seed: int) -> dict:
    return {"seed": seed, "wall_s": 1.0, "load_average_after": [0.0, 0.0, 0.0],
            "summary": {"top1": 0.5 + seed / 10, "weight_sparsity": 0.95, "params_kept": 5,
                        "dense": {"top1": 0.9, "params_kept": 100}}}


def test_resumes_finished_seeds(tmp_path, monkeypatch):
    ran: list[tuple[int, str]] = []

    def fake(seed, precision="fp32"):
        if seed == 1 and not ran[1:]:
            ran.append((seed, precision))
            raise KeyboardInterrupt  # killed while seed 1 trains
        ran.append((seed, precision))
        return _summary(seed)

    monkeypatch.setattr(bench_demo, "run_demo", fake)
    monkeypatch.setattr(bench_demo, "PARTIAL_DIR", tmp_path / "partial")
    out = tmp_path / "demo_bf16.json"
    argv = ["bench_demo.py", "--seeds", "3", "--precision", "bf16", "--out", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(KeyboardInterrupt):
        bench_demo.main()
    assert not out.exists() and (tmp_path / "partial" / "bf16.json").exists()
    bench_demo.main()  # seed 0 is not run again
    assert ran == [(0, "bf16"), (1, "bf16"), (1, "bf16"), (2, "bf16")]
    res = json.loads(out.read_text())
    assert res["precision"] == "bf16" and res["seeds"] == [0, 1, 2]
    assert res["sparse_top1"]["values"] == pytest.approx([0.5, 0.6, 0.7])
    assert res["demo_command"].endswith("--set train.precision=bf16")
    # another recipe: the finished seeds do not count
    monkeypatch.setattr(bench_demo, "recipe_digest", lambda name: "another")
    bench_demo.main()
    assert len(ran) == 7
