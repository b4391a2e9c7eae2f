"""Accuracy study on real data: how much of an ST-GCN is needed, in weights and in graph edges?

One command per dataset trains every arm of the study through the library's own modes (``scripts/run.py``'s
``--mode train | generate | ensemble | lottery | prune`` with ``--set``, run in this process) and writes
``benchmarks/results/accuracy_<dataset>.json``:

    python benchmarks/accuracy.py --dataset msr-action3d            # the whole study, resumable
    python benchmarks/accuracy.py --dataset msr-action3d nw-ucla    # both, the DG-STGCN Assemble of each last
    python benchmarks/accuracy.py --dataset nw-ucla --arms dense generate-0.95 --seeds 0 1 2
    python benchmarks/accuracy.py --dataset nw-ucla --tune          # hyper-parameters on the held-out split
    python benchmarks/accuracy.py --dataset nw-ucla --limits        # what limits the dense baseline (held-out)

Arms (``ARMS``, in the order they run): ``dense``, ``generate-0.95`` and, on NW-UCLA, ``dense-bf16`` (the dense
arm under ``train.precision = "bf16"``: its accuracy parity) with three seeds, then ``ensemble``
(0.6 / 0.8 / 0.95 / 0.99), ``dense-budget`` (a dense model whose width gives the ensemble's kept-parameter
budget at test), ``generate-0.8``, ``generate-0.99``, ``generate-0.95-edges-0.5``, ``magnitude-0.95``
(one-shot magnitude pruning of the dense model + fine-tuning), ``edges-0.5`` and ``edges-0.8`` (real edge
entries alone, pruned by magnitude + fine-tuning), IMP (``imp-<s>``, two levels of ``IMP_FRACTION``, with
``-random-reinit`` and ``-random-prune`` controls at the same sparsities) and ``ensemble-dgstgcn`` (the
paper's DG-STGCN Assemble at the study's width); the others with one seed. Every arm uses the same backbone
width, graph (the paper's learnable random graph, ``gcn_adaptive='init'``) and recipe.

**Resumable at arm/seed granularity.** Each arm-seed trains in its own run directory under
``benchmarks/runs/accuracy/<dataset>/<arm>/seed<k>/`` (git-ignored; its log is ``log.txt`` there). A finished
one is recorded in the results file at once (atomic write) and never runs again; an unfinished one continues
from its last epoch with the engine's ``--resume`` (or restarts when it never wrote a checkpoint). Killing the
study and running the same command again continues it.

**Several workers may share a study** (one per core: ``--arms`` picks what each starts with). A worker holds a
lock on the job directory it trains in (another worker skips that job), re-reads the results file before each
job (a job another worker finished is not run again) and merges its arm-seeds into the file under a lock.

**Hyper-parameters are chosen on a held-out part of the training split, never on the test split.** ``--tune``
trains the candidate recipes of ``TUNE_CANDIDATES`` with ``data.holdout = HOLDOUT`` (that fraction of every
class of the training split, drawn with a fixed seed, replaces the test split) and writes
``accuracy_<dataset>_tuning.json``; the study takes the candidate with the best held-out top-1 (ties: fewer
epochs) from that file, and records the selection in its results.
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import shutil
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS_DIR, command_line, machine_info, write_results  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RUNS = REPO / "benchmarks" / "runs" / "accuracy"

#: Dataset → its files (``../shared/datasets``; never copied into the repository).
DATASETS = {"nw-ucla": REPO.parent / "shared" / "datasets" / "nw-ucla",
            "msr-action3d": REPO.parent / "shared" / "datasets" / "msr-action3d"}

#: Fraction of every class of the training split held out for choosing hyper-parameters (``data.holdout``).
HOLDOUT = 0.2

#: The recipes compared on the held-out split (``--tune``): name → (epochs, width).
TUNE_CANDIDATES: dict[str, tuple[int, int]] = {"e40-w32": (40, 32), "e80-w32": (80, 32)}

#: What limits the dense baseline, measured on the held-out split against the 40-epoch candidate (``--limits``;
#: never the study's recipe, whose width stays CPU-sized): name → (epochs, width, extra settings). ``e40-w32-skeleton``
#: replaces the paper's learnable random graph with ST-GCN's physical-skeleton partition (still learnable,
#: ``init``); ``e40-w64`` doubles the width (the stock ST-GCN's 64 channels, about 4x the FLOPs).
LIMIT_CHECKS: dict[str, tuple[int, int, tuple[str, ...]]] = {
    "e40-w32-skeleton": (40, 32, ("model.graph_mode=stgcn_spatial",)), "e40-w64": (40, 64, ())}

#: The recipe used when no tuning file exists (the shipped ``configs/<dataset>.toml``: 40 epochs, 32 channels).
DEFAULT_CANDIDATE = "e40-w32"

#: IMP: fraction of the remaining weights removed per level, and the final weight sparsity (two levels).
IMP_FRACTION, IMP_SPARSITY = 0.7, 0.9

#: Seeds of the multi-seed arms (``--seeds``); the other arms run with the first.
SEEDS = (0, 1, 2)

#: Settings every arm shares (one thread: the study shares a 2-core machine): the learnable random graph of
#: the paper's generator, for the dense arms too, so that every arm has the same architecture.
COMMON_SETS = ("run.threads=1", "train.eval_every=10", "model.graph_mode=random", "model.backbone.gcn_adaptive=init")


@dataclass(frozen=True)
class Recipe:
    """The study's hyper-parameters (chosen on the held-out split)."""

    name: str
    epochs: int
    width: int

    @property
    def finetune_epochs(self) -> int:
        """Fine-tuning epochs after one-shot pruning of the dense arm's model."""
        return max(1, self.epochs // 2)

    def sets(self) -> list[str]:
        return [f"train.epochs={self.epochs}", f"model.base_channels={self.width}"]


@dataclass
class Job:
    """One training run (a mode invocation) that produces one or more arms.

    Attributes:
        name (str): The job's name (its run directory under the dataset's directory).
        arms (tuple of str): The arms its run reports.
        argv (callable): ``argv(recipe, seed, ctx)`` → the ``scripts/run.py`` arguments, or a reason (str) why
            it cannot run yet (an arm it depends on has not finished).
        multi_seed (bool): Runs with every seed of ``--seeds`` (else the first only).
        stages (dict): Arm → the trainer stage(s) whose epochs are its training time.
        datasets (tuple of str): The datasets it runs on (empty: every one).
    """

    name: str
    arms: tuple[str, ...]
    argv: Callable[[Recipe, int, Context], list[str] | str]
    multi_seed: bool = False
    stages: dict[str, tuple[str, ...]] = field(default_factory=dict)
    datasets: tuple[str, ...] = ()

    def runs_on(self, dataset: str) -> bool:
        return not self.datasets or dataset in self.datasets


@dataclass
class Context:
    """What a job's arguments may depend on: the dataset, its root and the results so far."""

    dataset: str
    root: Path
    results: dict[str, Any]

    def finished(self, arm: str, seed: int) -> dict[str, Any] | None:
        return self.results.get("runs", {}).get(arm, {}).get(str(seed))


def _fmt(s: float) -> str:
    return f"{s:g}"


def _imp_levels() -> list[float]:
    """The weight sparsity after each IMP level (the lottery mode's levels: the last one trimmed)."""
    from pyg_sparse_stgcn.sparsity.lottery import level_fractions, levels_for

    out, kept = [], 1.0
    for f in level_fractions(IMP_FRACTION, levels_for(IMP_SPARSITY, IMP_FRACTION), IMP_SPARSITY):
        kept *= 1 - f
        out.append(round(1 - kept, 6))
    return out


def _base(mode: str, seed: int, recipe: Recipe, ctx: Context, *extra: str) -> list[str]:
    argv = ["--data", ctx.dataset, "--root", str(ctx.root), "--mode", mode, "--seed", str(seed), "--no-progress"]
    for s in (*COMMON_SETS, *recipe.sets()):
        argv += ["--set", s]
    return argv + list(extra)


def _generate(sparsity: float, edges: float = 0.0) -> Callable[[Recipe, int, Context], list[str]]:
    def argv(r: Recipe, seed: int, ctx: Context) -> list[str]:
        extra = ["--sparsity", _fmt(sparsity), "--set", "dense.baseline=false"]
        if edges:
            extra += ["--edge-sparsity", _fmt(edges)]
        return _base("generate", seed, r, ctx, *extra)
    return argv


def _from_dense(sparsity: float, edges: float = 0.0) -> Callable[[Recipe, int, Context], list[str] | str]:
    """One-shot magnitude pruning of the ``dense`` arm's model of the same seed, then fine-tuning."""
    def argv(r: Recipe, seed: int, ctx: Context) -> list[str] | str:
        dense = ctx.finished("dense", seed)
        if dense is None:
            return f"waits for dense seed {seed}"
        ckpt = REPO / dense["run_dir"] / "checkpoints" / "model.pt"  # (an absolute run_dir stays as it is)
        if not ckpt.exists():
            return f"the dense seed {seed} checkpoint {ckpt} is gone (rerun --arms dense)"
        extra = ["--checkpoint", str(ckpt), "--sparsity", _fmt(sparsity), "--set",
                 f"prune.finetune_epochs={r.finetune_epochs}"]
        if edges:
            extra += ["--edge-sparsity", _fmt(edges)]
        return _base("prune", seed, r, ctx, *extra)
    return argv


def _dense_budget(r: Recipe, seed: int, ctx: Context) -> list[str] | str:
    ens = ctx.finished("ensemble", seed)
    if ens is None:
        return f"waits for ensemble seed {seed}"
    width = budget_width(ctx, r, int(ens["inference_parameters"]))
    return _base("train", seed, r, ctx, "--set", f"model.base_channels={width}")


def _ensemble(r: Recipe, seed: int, ctx: Context) -> list[str]:
    return _base("ensemble", seed, r, ctx, "--set", "dense.baseline=false")


def _ensemble_dg(r: Recipe, seed: int, ctx: Context) -> list[str]:
    argv = ["--data", ctx.dataset, "--root", str(ctx.root), "--mode", "ensemble", "--model", "dgstgcn", "--seed",
            str(seed), "--no-progress"]
    for s in (*COMMON_SETS[:2], *r.sets(), "dense.baseline=false"):  # the DG-STGCN recipe's own graph
        argv += ["--set", s]
    return argv


def _lottery(r: Recipe, seed: int, ctx: Context) -> list[str]:
    return _base("lottery", seed, r, ctx, "--sparsity", _fmt(IMP_SPARSITY), "--set",
                 f"lottery.fraction={_fmt(IMP_FRACTION)}", "--set", "lottery.random_reinit=true", "--set",
                 "lottery.random_prune=true")


def _imp_job() -> Job:
    arms, stages = [], {}
    for level, s in enumerate(_imp_levels(), start=1):
        for suffix, stage in (("", f"level_{level}"), ("-random-reinit", f"level_{level}-random_reinit"),
                              ("-random-prune", f"level_{level}-random_prune")):
            arms.append(f"imp-{_fmt(s)}{suffix}")
            stages[arms[-1]] = (stage,)
    return Job("imp", tuple(arms), _lottery, stages=stages)


def jobs() -> list[Job]:
    """Every job of the study, in the order they run (the most valuable first)."""
    return [
        Job("dense", ("dense",), lambda r, s, c: _base("train", s, r, c), multi_seed=True,
            stages={"dense": ("train",)}),
        Job("generate-0.95", ("generate-0.95",), _generate(0.95), multi_seed=True,
            stages={"generate-0.95": ("generate",)}),
        Job("dense-bf16", ("dense-bf16",), lambda r, s, c: _base("train", s, r, c, "--set", "train.precision=bf16"),
            multi_seed=True, stages={"dense-bf16": ("train",)}, datasets=("nw-ucla",)),
        Job("ensemble", ("ensemble",), _ensemble, stages={"ensemble": ("ensemble",)}),
        Job("dense-budget", ("dense-budget",), _dense_budget, stages={"dense-budget": ("train",)}),
        Job("generate-0.8", ("generate-0.8",), _generate(0.8), stages={"generate-0.8": ("generate",)}),
        Job("generate-0.99", ("generate-0.99",), _generate(0.99), stages={"generate-0.99": ("generate",)}),
        Job("generate-0.95-edges-0.5", ("generate-0.95-edges-0.5",), _generate(0.95, 0.5),
            stages={"generate-0.95-edges-0.5": ("generate",)}),
        Job("magnitude-0.95", ("magnitude-0.95",), _from_dense(0.95), stages={"magnitude-0.95": ("finetune",)}),
        Job("edges-0.5", ("edges-0.5",), _from_dense(0.0, 0.5), stages={"edges-0.5": ("finetune",)}),
        Job("edges-0.8", ("edges-0.8",), _from_dense(0.0, 0.8), stages={"edges-0.8": ("finetune",)}),
        _imp_job(),
        Job("ensemble-dgstgcn", ("ensemble-dgstgcn",), _ensemble_dg, stages={"ensemble-dgstgcn": ("ensemble",)}),
    ]


#: Every arm name, in order (the results file lists those not finished as pending).
ARMS: tuple[str, ...] = tuple(a for j in jobs() for a in j.arms)

#: Arms that run after every other arm of every dataset given (the DG-STGCN Assemble costs several times
#: the other arms together on a CPU).
DEFERRED: tuple[str, ...] = ("ensemble-dgstgcn",)

#: The figures of a run kept per arm-seed.
FIGURES = ("top1", "top5", "mean_class_accuracy", "weight_sparsity", "edge_sparsity", "edge_sparsity_connections",
           "params_stored", "params_kept", "inference_parameters", "training_parameters")


# ---------------------------------------------------------------------------------------------------------
# running one job in this process
# ---------------------------------------------------------------------------------------------------------
def run_cli(argv: Sequence[str], log: Path) -> int:
    """``scripts/run.py ARGV`` in this process (one PID for the whole study: SIGSTOP/SIGCONT pause it), its
    output appended to ``log``; returns the exit status."""
    from pyg_sparse_stgcn.cli import main

    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log, "a", encoding="utf-8") as fh:
        fh.write(f"\n$ python scripts/run.py {' '.join(argv)}\n")
        fh.flush()
        os.dup2(fh.fileno(), 1)
        os.dup2(fh.fileno(), 2)
        try:
            main.main(args=list(argv), prog_name="scripts/run.py", standalone_mode=False)
            rc = 0
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else 1
        except Exception:  # a failed arm is logged; the study goes on with the next one
            traceback.print_exc()
            rc = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
    return rc


def _command(argv: Sequence[str]) -> str:
    """The ``scripts/run.py`` command line, with paths relative to the repository root."""
    line = " ".join(argv).replace(f"{REPO}/", "").replace(str(REPO.parent), "..")
    return f"python scripts/run.py {line}"


def _run_dir(out: Path) -> Path | None:
    dirs = sorted(p for p in out.iterdir() if p.is_dir()) if out.is_dir() else []
    return dirs[-1] if dirs else None


def execute_job(argv: list[str], out: Path) -> tuple[Path | None, float, int]:
    """Run (or continue) the job whose run directory lives under ``out``; returns the run directory, the
    wall-clock seconds of this invocation and the exit status."""
    out.mkdir(parents=True, exist_ok=True)
    log = out / "log.txt"
    run = _run_dir(out)
    start = time.perf_counter()
    if run is not None and not (run / "summary.json").exists():
        if (run / "config.toml").exists() and any((run / "checkpoints").glob("*.pt")):
            rc = run_cli(["--resume", str(run), "--no-progress"], log)
            return run, time.perf_counter() - start, rc
        shutil.rmtree(run)  # killed before its first checkpoint: start again
    if run is None or not (run / "summary.json").exists():
        rc = run_cli([*argv, "--out", str(out)], log)
        run = _run_dir(out)
    else:
        rc = 0
    return run, time.perf_counter() - start, rc


def _stage_seconds(run: Path, stages: Sequence[str]) -> float:
    """Training seconds of ``stages`` (the sum of their epochs' ``time_s`` in ``metrics.jsonl``)."""
    total = 0.0
    with open(run / "metrics.jsonl", encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            if rec.get("stage") in stages and "time_s" in rec and rec.get("split") != "test":
                total += float(rec["time_s"])
    return round(total, 1)


def _arm_figures(job: Job, arm: str, run: Path) -> dict[str, Any]:
    summary = json.loads((run / "summary.json").read_text())
    if job.name == "imp":  # every level and control has its own metrics file
        stage = job.stages[arm][0]
        level, _, branch = stage.partition("-")
        path = run / "lottery" / level / branch / "metrics.json" if branch else run / "lottery" / level / \
            "metrics.json"
        summary = json.loads(path.read_text())
    return {k: summary.get(k) for k in FIGURES if summary.get(k) is not None}


# ---------------------------------------------------------------------------------------------------------
# the dense model with the ensemble's budget
# ---------------------------------------------------------------------------------------------------------
def dense_params(ctx: Context, recipe: Recipe, width: int) -> int:
    """Kept parameters of the study's dense model at ``width`` (the sparsity report's count, as the runs
    report it)."""
    from pyg_sparse_stgcn.data import dataset_info
    from pyg_sparse_stgcn.engine.bundle import DataBundle
    from pyg_sparse_stgcn.engine.config import resolve_config
    from pyg_sparse_stgcn.engine.models import build_classifier
    from pyg_sparse_stgcn.sparsity.report import report

    cfg = resolve_config({"data.name": (ctx.dataset, "--data"), "run.mode": ("train", "--mode")},
                         [*COMMON_SETS, *recipe.sets(), f"model.base_channels={width}"])
    info = dataset_info(ctx.dataset)
    facts = DataBundle.facts(ctx.dataset, int(info.num_classes), str(info.layout), 3,
                             int(cfg.data.num_person or info.num_person))
    return int(report(build_classifier(cfg, facts)).parameters["effective"])


def budget_width(ctx: Context, recipe: Recipe, budget: int) -> int:
    """The even width (up to twice the study's) whose dense model's kept parameters are nearest ``budget``
    (the ensemble's experts each carry their own graph, norms and head, so the budget may exceed one dense
    model of the study's width)."""
    widths = range(4, 2 * recipe.width + 1, 2)
    return min(widths, key=lambda w: abs(dense_params(ctx, recipe, w) - budget))


# ---------------------------------------------------------------------------------------------------------
# the results file
# ---------------------------------------------------------------------------------------------------------
def _rel(path: Path) -> str:
    """``path`` relative to the repository when it lies inside it."""
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def results_path(dataset: str, tuning: bool = False) -> Path:
    return RESULTS_DIR / f"accuracy_{dataset}{'_tuning' if tuning else ''}.json"


def load_results(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def aggregate(runs: dict[str, dict[str, dict[str, Any]]], order: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``{arm: {top1: [per seed], mean_class_accuracy: [...], weight_sparsity, edge_sparsity, ...,
    seconds}}`` over the finished seeds of every arm."""
    arms: dict[str, dict[str, Any]] = {}
    for arm in order:
        seeds = sorted(runs.get(arm, {}), key=int)
        if not seeds:
            continue
        recs = [runs[arm][s] for s in seeds]
        a: dict[str, Any] = {"seeds": [int(s) for s in seeds], "top1": [r["top1"] for r in recs],
                             "mean_class_accuracy": [r["mean_class_accuracy"] for r in recs]}
        for k in ("weight_sparsity", "edge_sparsity", "edge_sparsity_connections", "params_kept", "params_stored",
                  "inference_parameters", "training_parameters", "width"):
            vals = [r[k] for r in recs if r.get(k) is not None]
            if vals:
                a[k] = vals[0] if all(v == vals[0] for v in vals) else sum(vals) / len(vals)
        a["seconds"] = round(sum(r["seconds"] for r in recs) / len(recs), 1)
        a["seconds_per_seed"] = [r["seconds"] for r in recs]
        a["command"] = recs[0]["command"]
        arms[arm] = a
    return arms


@contextlib.contextmanager
def _flock(path: Path, blocking: bool = True) -> Iterator[bool]:
    """Hold an exclusive ``flock`` on ``path`` (created); yields whether it was obtained (``blocking=False``
    yields :obj:`False` at once when another process holds it). The kernel drops it when the process dies."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def merge_runs(res: dict[str, Any], disk: dict[str, Any]) -> None:
    """Add to ``res["runs"]`` the arm-seeds of ``disk`` (the results file as another worker left it) that
    ``res`` lacks."""
    for arm, seeds in disk.get("runs", {}).items():
        for seed, rec in seeds.items():
            res["runs"].setdefault(arm, {}).setdefault(seed, rec)


def record_study(path: Path, res: dict[str, Any], seeds: Sequence[int], wall: float = 0.0) -> None:
    """Merge the results file's arm-seeds into ``res``, add ``wall`` seconds to its wall time and write it
    (atomically, under a lock shared by the workers of the study)."""
    with _flock(RUNS / f"{path.name}.lock"):  # beside the runs (git-ignored), not the results
        disk = load_results(path)
        merge_runs(res, disk)
        res["wall_time_s"] = round(disk.get("wall_time_s", res.get("wall_time_s", 0.0)) + wall, 1)
        _refresh(res, seeds)
        write_study(path, res)


def write_study(path: Path, res: dict[str, Any]) -> None:
    res["machine"] = machine_info()
    res["updated_utc"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    write_results(path, res)


def choose_recipe(dataset: str) -> tuple[Recipe, dict[str, Any]]:
    """The recipe with the best held-out top-1 in the tuning file (ties: fewer epochs, then narrower), and
    the selection record; the default recipe when there is no tuning file."""
    tuning = load_results(results_path(dataset, tuning=True))
    done = {name: rec for name, rec in tuning.get("candidates", {}).items() if rec.get("top1") is not None}
    if not done:
        e, w = TUNE_CANDIDATES[DEFAULT_CANDIDATE]
        return Recipe(DEFAULT_CANDIDATE, e, w), {"held_out": None, "note": "no held-out tuning ran; the shipped "
                                                                          "recipe's epochs and width"}
    name = max(done, key=lambda n: (done[n]["top1"], -done[n]["epochs"], -done[n]["width"]))
    sel = {"held_out": {"fraction": HOLDOUT, "seed": 0, "setting": f"data.holdout={HOLDOUT}"},
           "rule": "best held-out top-1 (ties: fewer epochs)", "chosen": name,
           "candidates": {n: {k: r[k] for k in ("epochs", "width", "top1", "mean_class_accuracy", "train_top1")
                              if k in r} for n, r in done.items()},
           "tuning_file": _rel(results_path(dataset, tuning=True))}
    return Recipe(name, done[name]["epochs"], done[name]["width"]), sel


def _final_train_top1(run: Path, stage: str) -> float | None:
    last = None
    with open(run / "metrics.jsonl", encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            if rec.get("stage") == stage and "train_top1" in rec:
                last = rec["train_top1"]
    return last


def _plan(selected: Sequence[Job], seeds: Sequence[int]) -> Iterator[tuple[Job, int]]:
    for job in selected:
        for seed in (seeds if job.multi_seed else seeds[:1]):
            yield job, seed


def _held_out(dataset: str, key: str, specs: dict[str, tuple[int, int, tuple[str, ...]]]) -> None:
    """Train every recipe of ``specs`` (name → epochs, width, extra settings; dense, seed 0) on the held-out
    split and record it under ``key`` of the tuning file."""
    from tqdm import tqdm

    path = results_path(dataset, tuning=True)
    res = load_results(path) or {"benchmark": f"accuracy study, {dataset}: dense recipe chosen on the held-out "
                                             f"part of the training split", "dataset": dataset,
                                 "held_out": {"fraction": HOLDOUT, "seed": 0}, "candidates": {}}
    res["command"] = command_line()
    res.setdefault(key, {})
    ctx = Context(dataset, DATASETS[dataset], res)
    for name in tqdm(specs, desc=f"{key} {dataset}", file=sys.stderr):
        if res[key].get(name, {}).get("top1") is not None:
            continue
        epochs, width, extra = specs[name]
        argv = _base("train", 0, Recipe(name, epochs, width), ctx, "--set", f"data.holdout={HOLDOUT}",
                     *(a for setting in extra for a in ("--set", setting)))
        out = RUNS / dataset / "tune" / name
        run, wall, rc = execute_job(argv, out)
        if rc != 0 or run is None or not (run / "summary.json").exists():
            print(f"{key} {name}: failed (exit {rc}); see {out / 'log.txt'}", file=sys.stderr)
            continue
        s = json.loads((run / "summary.json").read_text())
        res[key][name] = {"epochs": epochs, "width": width, "settings": list(extra), "top1": s["top1"],
                          "mean_class_accuracy": s["mean_class_accuracy"],
                          "train_top1": _final_train_top1(run, "train"),
                          "seconds": _stage_seconds(run, ("train",)), "command": _command(argv),
                          "run_dir": _rel(run)}
        write_study(path, res)
    write_study(path, res)


def tune(dataset: str) -> None:
    """Train every ``TUNE_CANDIDATES`` recipe (dense, seed 0) on the held-out split; write the tuning file."""
    _held_out(dataset, "candidates", {n: (e, w, ()) for n, (e, w) in TUNE_CANDIDATES.items()})


def check_limits(dataset: str) -> None:
    """Train the ``LIMIT_CHECKS`` recipes on the held-out split (``limit_checks`` of the tuning file)."""
    _held_out(dataset, "limit_checks", LIMIT_CHECKS)


def study(dataset: str, arms: Sequence[str] | None, seeds: Sequence[int]) -> None:
    """Run (or continue) the study of ``dataset``: every job of ``arms`` (default all) not yet recorded."""
    from tqdm import tqdm

    path = results_path(dataset)
    tuning = load_results(results_path(dataset, tuning=True)).get("candidates", {})
    if any(tuning.get(n, {}).get("top1") is None for n in TUNE_CANDIDATES):
        tune(dataset)  # the recipe is chosen on the held-out split first
    recipe, selection = choose_recipe(dataset)
    res = load_results(path)
    if res and res.get("recipe", {}).get("name") not in (None, recipe.name):
        raise SystemExit(f"{path} holds the study of recipe {res['recipe']} but the tuning file now selects "
                         f"{recipe}; move the old results away to start the new study")
    res.setdefault("runs", {})
    res.update({"benchmark": f"accuracy study, {dataset}: dense vs sparse weights and edges (joint stream)",
                "dataset": dataset, "width": recipe.width, "feats": "j", "graph": "random (learnable), "
                "gcn_adaptive=init, every arm", "recipe": {"name": recipe.name, "epochs": recipe.epochs,
                                                          "width": recipe.width,
                                                          "finetune_epochs": recipe.finetune_epochs,
                                                          "imp_fraction": IMP_FRACTION,
                                                          "imp_sparsity": IMP_SPARSITY,
                                                          "common_settings": list(COMMON_SETS)},
                "selection": selection, "command": command_line(), "seeds_multi": list(seeds)})
    res.setdefault("wall_time_s", 0.0)
    wanted = set(arms or ARMS)
    selected = [j for j in jobs() if wanted & set(j.arms) and j.runs_on(dataset)]
    ctx = Context(dataset, DATASETS[dataset], res)
    plan = [(j, s) for j, s in _plan(selected, seeds) if any(ctx.finished(a, s) is None for a in j.arms)]
    record_study(path, res, seeds)
    bar = tqdm(plan, desc=f"accuracy {dataset}", file=sys.stderr, unit="run")
    for job, seed in bar:
        bar.set_postfix_str(f"{job.name} seed {seed}")
        merge_runs(res, load_results(path))  # another worker may have finished it, or what it waits for
        if all(ctx.finished(a, seed) is not None for a in job.arms):
            continue
        argv = job.argv(recipe, seed, ctx)
        if isinstance(argv, str):
            print(f"\n{job.name} seed {seed}: skipped, {argv}", file=sys.stderr)
            continue
        out = RUNS / dataset / job.name / f"seed{seed}"
        with _flock(out.with_name(out.name + ".lock"), blocking=False) as mine:
            if not mine:
                print(f"\n{job.name} seed {seed}: skipped, another worker is training it", file=sys.stderr)
                continue
            run, wall, rc = execute_job(argv, out)
        if rc != 0 or run is None or not (run / "summary.json").exists():
            print(f"\n{job.name} seed {seed}: failed (exit {rc}); see {out / 'log.txt'}", file=sys.stderr)
            record_study(path, res, seeds, wall)
            continue
        cmd = _command(argv)
        for arm in job.arms:
            rec = _arm_figures(job, arm, run)
            rec.update(seconds=_stage_seconds(run, job.stages[arm]), command=cmd, run_dir=_rel(run),
                       finished_utc=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                       width=_width(run))
            res["runs"].setdefault(arm, {})[str(seed)] = rec
        record_study(path, res, seeds, wall)  # atomic: a finished arm-seed is never lost
        print(f"\n{job.name} seed {seed}: " + ", ".join(f"{a} top-1 {res['runs'][a][str(seed)]['top1']:.4f}"
                                                        for a in job.arms), file=sys.stderr)


def _width(run: Path) -> int | None:
    import tomllib

    cfg = tomllib.loads((run / "config.toml").read_text())
    return cfg.get("model", {}).get("base_channels")


def _refresh(res: dict[str, Any], seeds: Sequence[int]) -> None:
    res["arms"] = aggregate(res["runs"], [a for j in jobs() for a in j.arms])
    mine = [j for j in jobs() if j.runs_on(res.get("dataset", ""))]
    want = {j.name: (list(seeds) if j.multi_seed else list(seeds[:1])) for j in mine}
    res["seeds"] = {a: want[j.name] for j in mine for a in j.arms}
    res["pending"] = [f"{a} seed {s}" for j in mine for a in j.arms for s in want[j.name]
                      if str(s) not in res["runs"].get(a, {})]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, nargs="+", choices=sorted(DATASETS),
                        help="one study per dataset, run one after the other")
    parser.add_argument("--arms", nargs="+", metavar="ARM", help=f"arms to run (default all): {', '.join(ARMS)}")
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS),
                        help="seeds of the multi-seed arms (dense, generate-0.95); the others take the first")
    parser.add_argument("--tune", action="store_true", help="choose the recipe on the held-out split instead")
    parser.add_argument("--limits", action="store_true",
                        help=f"instead, measure what limits the dense baseline on the held-out split: "
                             f"{', '.join(LIMIT_CHECKS)}")
    args = parser.parse_args()
    for dataset in args.dataset:
        if not DATASETS[dataset].is_dir():
            raise SystemExit(f"--dataset {dataset}: {DATASETS[dataset]} does not exist (the study reads "
                             f"../shared/datasets)")
    bad = set(args.arms or ()) - set(ARMS)
    if bad:
        raise SystemExit(f"--arms: unknown arm(s) {', '.join(sorted(bad))}; valid: {', '.join(ARMS)}")
    if args.tune or args.limits:
        for dataset in args.dataset:
            (tune if args.tune else check_limits)(dataset)
        return
    wanted = list(args.arms or ARMS)
    for group in ([a for a in wanted if a not in DEFERRED], [a for a in wanted if a in DEFERRED]):
        for dataset in args.dataset:
            if group:
                study(dataset, group, args.seeds)


if __name__ == "__main__":
    main()
