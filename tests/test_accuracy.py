"""``benchmarks/accuracy.py`` without training: the arm names the issue fixes, the IMP levels, how an arm-seed
resumes (a finished one never runs again, an interrupted one continues with ``--resume``, one killed before its
first checkpoint restarts) and the per-arm aggregation."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import accuracy  # noqa: E402


def test_arm_names():
    required = {"dense", "generate-0.8", "generate-0.95", "generate-0.99", "generate-0.95-edges-0.5", "ensemble",
                "dense-budget", "magnitude-0.95", "edges-0.5", "edges-0.8"}
    assert required <= set(accuracy.ARMS)
    imp = [a for a in accuracy.ARMS if a.startswith("imp-")]
    tickets = [a for a in imp if not a.endswith(("-random-reinit", "-random-prune"))]
    for t in tickets:
        assert f"{t}-random-reinit" in imp and f"{t}-random-prune" in imp
    assert max(float(t[len("imp-"):]) for t in tickets) >= 0.9  # the issue: tickets reaching >= 90 %
    # 0.7 per level: 1 - 0.3 = 0.7, then trimmed to 0.9
    assert accuracy._imp_levels() == pytest.approx([0.7, 0.9])


def test_execute_job_resumes(tmp_path, monkeypatch):
    calls: list[list[str]] = []

    def fake(argv, log):
        calls.append(list(argv))
        if "--out" in argv:
            run = Path(argv[argv.index("--out") + 1]) / "demo-train-1"
            (run / "checkpoints").mkdir(parents=True)
            (run / "config.toml").write_text("")
        return 0

    monkeypatch.setattr(accuracy, "run_cli", fake)
    out = tmp_path / "arm" / "seed0"
    run, _, rc = accuracy.execute_job(["--mode", "train"], out)  # new: starts the run
    assert rc == 0 and calls[-1] == ["--mode", "train", "--out", str(out)] and run == out / "demo-train-1"
    # interrupted before its first checkpoint: removed and started again
    accuracy.execute_job(["--mode", "train"], out)
    assert calls[-1][:2] == ["--mode", "train"] and len(calls) == 2
    # interrupted after a checkpoint: continued with --resume
    (run / "checkpoints" / "train-last.pt").write_bytes(b"")
    accuracy.execute_job(["--mode", "train"], out)
    assert calls[-1] == ["--resume", str(run), "--no-progress"]
    # finished: nothing runs
    (run / "summary.json").write_text("{}")
    assert accuracy.execute_job(["--mode", "train"], out)[2] == 0 and len(calls) == 3


def test_aggregate():
    rec = {"weight_sparsity": 0.95, "edge_sparsity": 0.0, "params_kept": 10, "params_stored": 20, "command": "c"}
    runs = {"generate-0.95": {"1": {**rec, "top1": 0.7, "mean_class_accuracy": 0.6, "seconds": 30.0},
                              "0": {**rec, "top1": 0.8, "mean_class_accuracy": 0.7, "seconds": 10.0}}}
    arms = accuracy.aggregate(runs, accuracy.ARMS)
    assert list(arms) == ["generate-0.95"]
    a = arms["generate-0.95"]
    assert a["seeds"] == [0, 1] and a["top1"] == [0.8, 0.7] and a["mean_class_accuracy"] == [0.7, 0.6]
    assert a["seconds"] == 20.0 and a["weight_sparsity"] == 0.95 and a["params_kept"] == 10


def test_two_workers_share_a_study(tmp_path, monkeypatch):
    """A second worker started while the first trains a job skips that job and trains the rest; the first
    worker (arm ``a`` only) does not train what the second finished, and its last write keeps the second's
    arm ``b``: every arm-seed is trained once and none is lost."""
    trained: list[tuple[str, str]] = []
    results = tmp_path / "accuracy_demo.json"

    def fake(argv, log):
        out = Path(argv[argv.index("--out") + 1])
        trained.append((out.parent.name, out.name))
        if len(trained) == 1:  # while the first worker trains its first job, a second worker runs the study
            accuracy.study("demo", ["a", "b"], [0, 1])
        run = out / "demo-train-1"
        run.mkdir(parents=True)
        (run / "config.toml").write_text("[model]\nbase_channels = 8\n")
        (run / "metrics.jsonl").write_text('{"stage": "train", "time_s": 2.0}\n')
        top1 = 0.5 + 0.1 * len(trained)
        (run / "summary.json").write_text(f'{{"top1": {top1}, "mean_class_accuracy": {top1}}}')
        return 0

    def job(name):
        return accuracy.Job(name, (name,), lambda r, s, c: ["--mode", "train", "--seed", str(s)], multi_seed=True,
                            stages={name: ("train",)})

    monkeypatch.setattr(accuracy, "run_cli", fake)
    monkeypatch.setattr(accuracy, "jobs", lambda: [job("a"), job("b")])
    monkeypatch.setattr(accuracy, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(accuracy, "DATASETS", {"demo": tmp_path})
    monkeypatch.setattr(accuracy, "TUNE_CANDIDATES", {})
    monkeypatch.setattr(accuracy, "choose_recipe", lambda d: (accuracy.Recipe("e1-w8", 1, 8), {}))
    monkeypatch.setattr(accuracy, "results_path", lambda d, tuning=False: results.with_stem(
        results.stem + ("_tuning" if tuning else "")))
    accuracy.study("demo", ["a"], [0, 1])

    assert sorted(trained) == [("a", "seed0"), ("a", "seed1"), ("b", "seed0"), ("b", "seed1")]
    res = accuracy.load_results(results)
    assert {a: sorted(r) for a, r in res["runs"].items()} == {"a": ["0", "1"], "b": ["0", "1"]}
    assert res["runs"]["a"]["0"]["top1"] == pytest.approx(0.5 + 0.1 * 4)  # the first worker's job finished last
    assert res["pending"] == [] and res["arms"]["b"]["top1"] == [res["runs"]["b"][s]["top1"] for s in "01"]


def test_flock_is_exclusive_across_open_files(tmp_path):
    with accuracy._flock(tmp_path / "x.lock") as first:
        with accuracy._flock(tmp_path / "x.lock", blocking=False) as second:
            assert first and not second
    with accuracy._flock(tmp_path / "x.lock", blocking=False) as again:
        assert again
