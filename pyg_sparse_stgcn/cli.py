"""Command line: ``python scripts/run.py --data demo --mode generate`` or ``pyg-sparse-stgcn ...``.

See ``docs/cli.md`` for every mode, an example command and what it writes.
"""
from __future__ import annotations

import copy
import os
import sys
from pathlib import Path
from typing import Any

import click

from .engine.config import (
    DEFAULTS,
    FEATS,
    MODELS,
    MODES,
    ConfigError,
    apply_sets,
    load_toml,
    merge,
    parse_set,
    validate_config,
)

__all__ = ["main", "resolve_config", "CONFIG_DIR", "dataset_names"]

#: Directory of the shipped recipes (``configs/<data>.toml`` is the default ``--config`` of ``--data``).
CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"

#: CLI option → configuration key.
OPTION_KEYS = {
    "data": "data.name", "root": "data.root", "mode": "run.mode", "model": "model.name",
    "feats": "data.feats",
    "sparsity": "sparsity.sparsity", "edge_sparsity": "sparsity.edge_sparsity", "epochs": "train.epochs",
    "batch_size": "data.batch_size", "lr": "train.lr", "device": "run.device",
    "num_workers": "data.num_workers", "out": "run.out", "seed": "run.seed",
}
OPTION_NAMES = {k: "--" + k.replace("_", "-") for k in OPTION_KEYS}
#: Options a resumed run may change (they do not change the result).
RESUME_FREE = ("device", "num_workers")
SPARSE_MODES = ("prune", "lottery", "generate", "ensemble")


def dataset_names() -> tuple[str, ...]:
    """The names ``--data`` accepts (the data package's registry)."""
    from .data.datasets import available_datasets

    return tuple(available_datasets())


def _fail(msg: str) -> None:
    raise click.UsageError(msg)


def _set_key(cfg: dict, key: str, value: Any) -> None:
    sec, k = key.split(".")
    cfg[sec][k] = value


def _get(cfg: dict, key: str) -> Any:
    sec, k = key.split(".")
    return cfg[sec][k]


def resolve_config(opts: dict[str, Any], sets: tuple[str, ...], config_file: str | None,
                   resume: str | None) -> tuple[dict, dict[str, str]]:
    """The configuration of a run: :data:`~pyg_sparse_stgcn.engine.config.DEFAULTS` < the ``--config`` file
    (default ``configs/<data>.toml``) < explicit options < ``--set``; with ``--resume`` the run's own
    ``config.toml`` (explicit options may only repeat its values, except ``--device``/``--num-workers``).

    Returns:
        ``(cfg, option_names)``: the validated configuration and, for error messages, the option that set each
        key.
    """
    given = {k: v for k, v in opts.items() if v is not None}
    names = {OPTION_KEYS[k]: OPTION_NAMES[k] for k in given}
    if resume:
        from .engine.rundir import RunDir

        run = RunDir.open(resume)
        cfg = merge(DEFAULTS, load_toml(run.config_path), f"--resume {run.path}/config.toml")
        for k, v in given.items():
            if k in RESUME_FREE:
                _set_key(cfg, OPTION_KEYS[k], v)
            elif _get(cfg, OPTION_KEYS[k]) != v:
                _fail(f"{OPTION_NAMES[k]} {v!r} conflicts with --resume: the run was started with "
                      f"{OPTION_KEYS[k]} = {_get(cfg, OPTION_KEYS[k])!r} (a resumed run keeps its "
                      f"config.toml; only {', '.join(OPTION_NAMES[o] for o in RESUME_FREE)} may change)")
        cfg["train"]["max_epochs_this_run"] = 0
        for item in sets:
            key, _ = parse_set(item)
            if key not in ("train.max_epochs_this_run", "train.progress", "data.num_workers", "run.device"):
                _fail(f"--set {key} conflicts with --resume (a resumed run keeps its config.toml; --set may "
                      f"only change train.max_epochs_this_run, train.progress, data.num_workers, run.device)")
        apply_sets(cfg, list(sets))
        return validate_config(cfg, names), names
    cfg = copy.deepcopy(DEFAULTS)
    data = given.get("data", DEFAULTS["data"]["name"])
    if config_file is None and (CONFIG_DIR / f"{data}.toml").is_file():
        config_file = str(CONFIG_DIR / f"{data}.toml")
    if config_file is not None:
        cfg = merge(cfg, load_toml(config_file), f"--config {config_file}")
    for k, v in given.items():
        _set_key(cfg, OPTION_KEYS[k], v)
    apply_sets(cfg, list(sets))
    for item in sets:
        names.setdefault(parse_set(item)[0], f"--set {parse_set(item)[0]}")
    return validate_config(cfg, names), names


def _check_conflicts(mode: str, opts: dict[str, Any], checkpoint: str | None, resume: str | None,
                     fuse: tuple[str, ...], target: str | None) -> None:
    if checkpoint and resume:
        _fail("--checkpoint conflicts with --resume: --resume continues a run from its own checkpoints")
    if fuse and mode != "evaluate":
        _fail(f"--fuse only applies to --mode evaluate (got --mode {mode})")
    if fuse and checkpoint:
        _fail("--fuse conflicts with --checkpoint: fusion reads saved scores, it runs no model")
    if checkpoint and mode not in ("prune", "evaluate", "analyze"):
        _fail(f"--checkpoint applies to --mode prune, evaluate or analyze, not {mode} (use --resume RUN_DIR "
              f"to continue a run)")
    if mode not in SPARSE_MODES:
        for k in ("sparsity", "edge_sparsity"):
            if opts.get(k) is not None:
                _fail(f"{OPTION_NAMES[k]} applies to --mode {' | '.join(SPARSE_MODES)}, not {mode}")
    if mode == "ensemble" and opts.get("sparsity") is not None:
        _fail("--sparsity conflicts with --mode ensemble: the ensemble's levels are ensemble.sparsities "
              "(e.g. --set ensemble.sparsities=[0.6,0.8,0.95,0.99])")
    if mode == "evaluate" and not (checkpoint or fuse):
        _fail("--mode evaluate needs --checkpoint (a run directory, its checkpoints/model.pt or a PYSKL "
              ".pth) or --fuse RUN_DIR --fuse RUN_DIR ...")
    if mode == "analyze" and not (target or checkpoint):
        _fail("--mode analyze needs a run directory: pyg-sparse-stgcn analyze runs/<run> "
              "(or --checkpoint runs/<run>)")
    if resume and mode in ("evaluate", "analyze"):
        _fail(f"--resume conflicts with --mode {mode} (nothing to resume)")
    root = opts.get("root")
    if root is not None and not Path(root).is_dir() and opts.get("data") != "demo":
        _fail(f"--root: directory {root} does not exist (point --root at the dataset files)")


def _fmt(v: Any, pct: bool = True) -> str:
    if v is None:
        return "-"
    if pct:
        return f"{100 * v:.1f}%"
    return f"{v:,}"


def _print_summary(summary: dict[str, Any]) -> None:
    rows = []
    if isinstance(summary.get("dense"), dict):
        rows.append(("dense baseline", summary["dense"]))
    label = {"generate": "sparse (generator)", "ensemble": "ensemble", "lottery": "lottery ticket",
             "prune": "pruned + fine-tuned", "train": "trained", "evaluate": "evaluated"}.get(summary["mode"],
                                                                                           summary["mode"])
    rows.append((label, summary))
    head = (f"{'':<20} {'top-1':>7} {'top-5':>7} {'mean-cls':>8} {'w-sparse':>9} {'e-sparse':>9} "
            f"{'params stored':>14} {'params kept':>12}")
    click.echo(f"\n{summary['data']} / {summary['mode']} / {summary.get('model', '')}")
    click.echo(head)
    for name, r in rows:
        click.echo(f"{name:<20} {_fmt(r.get('top1')):>7} {_fmt(r.get('top5')):>7} "
                   f"{_fmt(r.get('mean_class_accuracy')):>8} {_fmt(r.get('weight_sparsity')):>9} "
                   f"{_fmt(r.get('edge_sparsity')):>9} {_fmt(r.get('params_stored'), False):>14} "
                   f"{_fmt(r.get('params_kept'), False):>12}")
    if "before_finetune" in summary:
        click.echo(f"(after pruning, before fine-tuning: top-1 {_fmt(summary['before_finetune']['top1'])})")
    for lv in summary.get("levels", []):
        sp = lv.get("sparsity", {})
        click.echo(f"  level {lv.get('level')}: weights {_fmt(sp.get('weight'))} sparse, edges "
                   f"{_fmt(sp.get('edge'))} sparse, top-1 {_fmt(lv.get('top1'))}")
    if "streams" in summary:
        for st in summary["streams"]:
            click.echo(f"  stream {st['path']} x{st['coefficient']:g}: top-1 {_fmt(st['top1'])}")
    click.echo(f"run directory: {summary['run_dir']}")


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.argument("positional", nargs=-1, metavar="[MODE] [RUN_DIR]")
@click.option("--data", help="Dataset name (see docs/cli.md), e.g. demo, ntu60-xsub, kinetics.")
@click.option("--root", help="Directory with the dataset's files (default data/<name>).")
@click.option("--mode", type=click.Choice(MODES), help="What to run (default train).")
@click.option("--model", type=click.Choice(MODELS), help="Backbone (default stgcn).")
@click.option("--feats", type=click.Choice(FEATS),
              help="Input stream: joint, bone, joint motion, bone motion.")
@click.option("--sparsity", type=float, help="Fraction of weights that are zero (prune/lottery/generate).")
@click.option("--edge-sparsity", type=float, help="Fraction of graph edges that are zero.")
@click.option("--epochs", type=int, help="Training epochs.")
@click.option("--batch-size", type=int, help="Global batch size.")
@click.option("--lr", type=float, help="Peak learning rate (SGD, cosine).")
@click.option("--device", help="auto, cpu, cuda or cuda:N.")
@click.option("--num-workers", type=int, help="DataLoader worker processes.")
@click.option("--config", "config_file",
              help="TOML file with the run's settings (default configs/<data>.toml).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override one setting, e.g. train.lr=0.05.")
@click.option("--out", help="Parent directory of run directories (default runs).")
@click.option("--resume", metavar="RUN_DIR", help="Continue an interrupted run.")
@click.option("--checkpoint",
              help="Model to prune/evaluate: a run directory, model.pt, or a PYSKL checkpoint.")
@click.option("--seed", type=int, help="Random seed.")
@click.option("--fuse", multiple=True, metavar="RUN_DIR",
              help="evaluate: fuse saved scores of several streams.")
@click.option("--progress/--no-progress", default=None, help="tqdm progress bars.")
def main(positional: tuple[str, ...], config_file: str | None, sets: tuple[str, ...], resume: str | None,
         checkpoint: str | None, fuse: tuple[str, ...], progress: bool | None, **opts: Any) -> None:
    """Train, sparsify, evaluate and analyse ST-GCN skeleton action recognisers.

    \b
      python scripts/run.py --data demo --mode generate      # dense vs 95 %-sparse on synthetic data
      pyg-sparse-stgcn --data ntu60-xsub --root data/nturgbd --mode train
      pyg-sparse-stgcn analyze runs/<run>
    """
    from .engine import distributed as D
    from .engine.modes import build_data, mode_analyze, run_mode
    from .engine.rundir import RunDir
    from .engine.trainer import TrainingInterrupted

    # ---- positional [MODE] [RUN_DIR] ------------------------------------------------------------------
    pos = list(positional)
    target = None
    if pos and pos[0] in MODES:
        if opts.get("mode") not in (None, pos[0]):
            _fail(f"positional mode {pos[0]!r} conflicts with --mode {opts['mode']}")
        opts["mode"] = pos.pop(0)
    if pos:
        if len(pos) > 1 or not Path(pos[0]).exists():
            _fail(f"unexpected argument(s) {' '.join(pos)!r}: expected [MODE] [RUN_DIR] with MODE one of "
                  f"{', '.join(MODES)}")
        target = pos[0]
    if checkpoint and resume:
        _fail("--checkpoint conflicts with --resume: --resume continues a run from its own checkpoints")
    if opts.get("data") is not None:
        names = dataset_names()
        if opts["data"] not in names:
            _fail(f"--data: unknown dataset {opts['data']!r}; valid choices: {', '.join(names)}")
    try:
        cfg, _ = resolve_config(opts, sets, config_file, resume)
    except ValueError as e:  # ConfigError, or --resume naming no run directory
        _fail(str(e))
    if progress is not None:
        cfg["train"]["progress"] = progress
    mode = cfg["run"]["mode"]
    _check_conflicts(mode, opts, checkpoint, resume, fuse, target)
    if cfg["run"]["threads"] > 0:
        import torch

        torch.set_num_threads(cfg["run"]["threads"])

    if mode == "analyze":
        try:
            out = mode_analyze(None, target or checkpoint)
        except ValueError as e:
            _fail(str(e))
        click.echo(_analysis_text(out))
        return

    device = cfg["run"]["device"]
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = D.init_distributed(device)
    cfg["run"]["device"] = device
    if D.is_distributed() and not D.is_main():
        D.barrier()  # rank 0 generates / processes the dataset cache first
    try:
        data = None if fuse else build_data(cfg, train=mode != "evaluate", log=cfg["train"]["progress"])
    except (ValueError, FileNotFoundError) as e:  # DatasetNotFoundError lists the expected files
        D.cleanup_distributed()
        _fail(str(e))
    if D.is_distributed() and D.is_main():
        D.barrier()
    if resume:
        run = RunDir.open(resume)
    else:
        run = None
        if D.is_main():
            run = RunDir.create(cfg["run"]["out"], cfg["data"]["name"], mode)
        if D.is_distributed():
            import torch.distributed as dist

            box = [str(run.path) if run is not None else None]
            dist.broadcast_object_list(box, src=0)
            run = RunDir(box[0])
    try:
        summary = run_mode(cfg, run, data, checkpoint=checkpoint, fuse=fuse,
                           progress=cfg["train"]["progress"])
    except TrainingInterrupted as e:
        if D.is_main():
            click.echo(f"{e}. Continue with: python scripts/run.py --resume {run.path}")
        D.cleanup_distributed()
        return
    except (ValueError, ConfigError) as e:
        D.cleanup_distributed()
        click.echo(f"error: {e}", err=True)
        sys.exit(1)
    if D.is_main():
        _print_summary(summary)
    D.cleanup_distributed()


def _analysis_text(out: dict[str, Any]) -> str:
    lines = []
    if "sparsity_report" in out:
        rep = out["sparsity_report"]
        for kind, v in rep.get("kinds", {}).items():
            lines.append(f"{kind}: {v['kept']:,} of {v['total']:,} kept, sparsity {100 * v['sparsity']:.2f}%")
        p = rep.get("parameters", {})
        if p:
            lines.append(f"parameters: stored {p.get('stored', 0):,}, kept {p.get('effective', 0):,}")
    for k in ("top1", "top5", "mean_class_accuracy"):
        if out.get(k) is not None:
            lines.append(f"{k}: {100 * out[k]:.2f}%")
    for k, v in out.items():
        skip = ("sparsity_report", "top1", "top5", "mean_class_accuracy")
        if k not in skip and isinstance(v, (str, int, float)):
            lines.append(f"{k}: {v}")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    main(prog_name=os.path.basename(sys.argv[0]))
