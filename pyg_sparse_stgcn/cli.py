"""Command line: ``python scripts/run.py --data demo --mode generate`` or ``pyg-sparse-stgcn ...``.

``main`` parses the options, resolves the configuration (:func:`~pyg_sparse_stgcn.engine.config.resolve_config`),
lets the mode check them (:meth:`~pyg_sparse_stgcn.engine.modes.Mode.check`) and dispatches to
:func:`~pyg_sparse_stgcn.engine.session.execute`. See ``docs/cli.md`` for every mode, an example command and
what it writes.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from .deploy.predict import RUNTIMES
from .engine.config import Config, ConfigError, resolve_config
from .engine.models import MODEL_NAMES
from .engine.modes import Invocation, get_mode, mode_names
from .sparsity.export import LAYOUTS

__all__ = ["main", "OPTION_KEYS", "dataset_names"]

#: CLI option → configuration key (the option's value is a setting with precedence over the config file).
OPTION_KEYS = {
    "data": "data.name", "root": "data.root", "mode": "run.mode", "model": "model.name", "feats": "data.feats",
    "sparsity": "sparsity.sparsity", "edge_sparsity": "sparsity.edge_sparsity", "epochs": "train.epochs",
    "batch_size": "data.batch_size", "lr": "train.lr", "device": "run.device", "num_workers": "data.num_workers",
    "out": "run.out", "seed": "run.seed", "progress": "train.progress",
}


def dataset_names() -> tuple[str, ...]:
    """The names ``--data`` accepts (the data package's registry)."""
    from .data import available_datasets

    return tuple(available_datasets())


def _option_label(name: str, value: Any) -> str:
    if name == "progress":
        return "--progress" if value else "--no-progress"
    return "--" + name.replace("_", "-")


class _Feats(click.ParamType):
    """``--feats``: one stream or several joined by '+' (the choices of ``data.transforms.FEATS``)."""

    name = "STREAMS"

    def convert(self, value: Any, param: Any, ctx: Any) -> str:
        from .data.transforms import FEATS, STREAMS

        if value in FEATS:
            return value
        self.fail(f"{value!r} is not one of {', '.join(repr(s) for s in STREAMS)} or several of them joined by "
                  f"'+' (e.g. 'j+b')", param, ctx)


def _settings_help(ctx: click.Context, param: Any, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    click.echo(Config().to_toml(header="Every setting with its default and meaning (--config FILE, --set KEY=VALUE)."))
    ctx.exit()


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.argument("positional", nargs=-1, metavar="[MODE] [RUN_DIR]")
@click.option("--data", help="Dataset name (see docs/cli.md), e.g. demo, ntu60-xsub, kinetics.")
@click.option("--root", help="Directory with the dataset's files (default data/<name>).")
@click.option("--mode", type=click.Choice(mode_names()), help="What to run (default train).")
@click.option("--model", type=click.Choice(MODEL_NAMES), help="Backbone (default stgcn).")
@click.option("--feats", type=_Feats(),
              help="Input stream: j(oint), b(one), jm / bm (motion), or several joined by '+' (e.g. j+b).")
@click.option("--sparsity", type=float, help="Fraction of weights that are zero (prune/lottery/generate).")
@click.option("--edge-sparsity", type=float, help="Fraction of graph edge entries that are zero.")
@click.option("--epochs", type=int, help="Training epochs.")
@click.option("--batch-size", type=int, help="Global batch size.")
@click.option("--lr", type=float, help="Peak learning rate (SGD, cosine).")
@click.option("--device", help="auto, cpu, cuda or cuda:N.")
@click.option("--num-workers", type=int, help="DataLoader worker processes.")
@click.option("--config", "config_file",
              help="TOML file with the run's settings (default: the shipped recipe of --data).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override one setting, e.g. train.lr=0.05 (see --help-settings).")
@click.option("--out", help="Parent directory of run directories (default runs).")
@click.option("--resume", metavar="RUN_DIR", help="Continue an interrupted run.")
@click.option("--checkpoint",
              help="Model to prune/evaluate: a run directory, model.pt, or a PYSKL checkpoint.")
@click.option("--seed", type=int, help="Random seed.")
@click.option("--fuse", multiple=True, metavar="RUN_DIR",
              help="evaluate: fuse saved scores of several streams.")
@click.option("--progress/--no-progress", default=None, help="tqdm progress bars.")
@click.option("--compare", is_flag=True, default=None,
              help="analyze: compare the connections kept by several runs (analyze RUN_DIR RUN_DIR ... --compare).")
@click.option("--show-config", is_flag=True,
              help="Print the resolved settings (TOML, as config.toml would hold them) and exit.")
@click.option("--stream", is_flag=True, default=None,
              help="predict: read one JSON frame per line (INPUT file or '-' / none = stdin), one JSON line out "
                   "per prediction.")
@click.option("--json", "as_json", is_flag=True, default=None, help="predict: machine-readable JSON output.")
@click.option("--index", type=int, help="predict: annotation index in a PYSKL pickle INPUT.")
@click.option("--frame-dir", help="predict: annotation frame_dir in a PYSKL pickle INPUT.")
@click.option("--skip-bad", is_flag=True, default=None,
              help="predict --stream: count and skip malformed lines instead of stopping.")
@click.option("--top-k", type=int, help="predict: classes shown per prediction (default 5).")
@click.option("--runtime", type=click.Choice(RUNTIMES),
              help="predict: torch (default), sparse (exported sparse kernels) or onnx (onnxruntime).")
@click.option("--sparse-layout", type=click.Choice(("auto", *LAYOUTS)),
              help="predict --runtime sparse: the export's layout (default auto: every layout timed at start).")
@click.option("--window", type=int, help="predict --stream: frames per window (default: the clip length).")
@click.option("--stride", type=int, help="predict --stream: frames between predictions (default: window/4).")
@click.option("--help-settings", is_flag=True, expose_value=False, is_eager=True, callback=_settings_help,
              help="List every setting with its default and meaning, and exit.")
def main(positional: tuple[str, ...], config_file: str | None, sets: tuple[str, ...], resume: str | None,
         checkpoint: str | None, fuse: tuple[str, ...], show_config: bool, **opts: Any) -> None:
    """Train, sparsify, evaluate and analyse ST-GCN skeleton action recognisers.

    \b
      python scripts/run.py --data demo --mode generate      # dense vs 95 %-sparse on synthetic data
      pyg-sparse-stgcn --data ntu60-xsub --root data/nturgbd --mode train
      pyg-sparse-stgcn analyze runs/<run>
      pyg-sparse-stgcn predict runs/<run> S001C001P001R001A001.skeleton --top-k 3
    """
    from .engine.session import execute

    predict_opts = {k: opts.pop(k) for k in _PREDICT_OPTIONS}

    # ---- parse: positional [MODE] [RUN_DIR] -----------------------------------------------------------
    pos = list(positional)
    target = None
    if pos and pos[0] in mode_names():
        if opts.get("mode") not in (None, pos[0]):
            raise click.UsageError(f"positional mode {pos[0]!r} conflicts with --mode {opts['mode']}")
        opts["mode"] = pos.pop(0)
    request = None
    if opts.get("mode") == "predict":  # predict CHECKPOINT INPUT... (or --checkpoint CKPT INPUT...)
        if checkpoint is None and pos:
            checkpoint = pos.pop(0)
        request, pos = _predict_request(pos, predict_opts), []
    else:
        given = [_PREDICT_OPTIONS[k] for k, v in predict_opts.items() if v is not None]
        if given:
            raise click.UsageError(f"{', '.join(given)} only apply to predict (pyg-sparse-stgcn predict CHECKPOINT "
                                   f"INPUT...)")
    compare, more_runs = opts.pop("compare"), []
    if compare and opts.get("mode") != "analyze":
        raise click.UsageError("--compare only applies to analyze (pyg-sparse-stgcn analyze RUN_DIR RUN_DIR --compare)")
    if opts.get("mode") == "analyze" and resume:  # --mode analyze --resume RUN_DIR names the run (resumes nothing)
        pos, resume = [resume, *pos], None
    if opts.get("mode") == "analyze" and all(Path(p).exists() for p in pos):  # analyze RUN_DIR [RUN_DIR ...]
        pos, more_runs = pos[:1], pos[1:]
    if pos:
        if len(pos) > 1 or not Path(pos[0]).exists():
            raise click.UsageError(f"unexpected argument(s) {' '.join(pos)!r}: expected [MODE] [RUN_DIR] with MODE "
                                   f"one of {', '.join(mode_names())}")
        target = pos[0]
    if opts.get("data") is not None and opts["data"] not in dataset_names():
        raise click.UsageError(f"--data: unknown dataset {opts['data']!r}; valid choices: "
                               f"{', '.join(dataset_names())}")
    options = {OPTION_KEYS[k]: (v, _option_label(k, v)) for k, v in opts.items() if v is not None}

    # ---- resolve and check (nothing is written before this passes) -------------------------------------
    try:
        inv = Invocation(checkpoint=checkpoint, fuse=tuple(fuse), target=target, resume=resume,
                         targets=(target, *more_runs) if target else (), compare=bool(compare))
        cfg = resolve_config(options, sets, config_file, resume)
        mode = get_mode(cfg.run.mode)
        if request is not None:
            mode.configure(request)  # type: ignore[attr-defined]
        mode.check(cfg, inv)
    except ValueError as e:  # ConfigError, or --resume naming no run directory
        raise click.UsageError(str(e)) from None
    if show_config:
        click.echo(cfg.to_toml(header="Resolved configuration (pyg-sparse-stgcn --show-config)."), nl=False)
        return

    # ---- dispatch ----------------------------------------------------------------------------------------
    try:
        outcome = execute(cfg, inv, mode)
    except ConfigError as e:  # bad input found before any work: nothing written
        raise click.UsageError(str(e)) from None
    except ValueError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(1)
    if not outcome.main:
        return
    if outcome.interrupted:
        click.echo(f"{outcome.interrupted}. Continue with: python scripts/run.py --resume {outcome.run_dir}")
    elif outcome.summary is not None:
        text = mode.format_summary(outcome.summary)
        if text:  # predict --stream wrote its lines already
            click.echo(text)


#: predict's options (keyword of ``main``) → how messages name them.
_PREDICT_OPTIONS = {"stream": "--stream", "as_json": "--json", "index": "--index", "frame_dir": "--frame-dir",
                    "skip_bad": "--skip-bad", "top_k": "--top-k", "runtime": "--runtime",
                    "sparse_layout": "--sparse-layout", "window": "--window",
                    "stride": "--stride"}


def _predict_request(inputs: list[str], o: dict[str, Any]) -> Any:
    """The :class:`~pyg_sparse_stgcn.engine.modes.predict.PredictRequest` of ``predict``'s options."""
    from .engine.modes.predict import PredictRequest

    return PredictRequest(inputs=tuple(inputs), stream=bool(o["stream"]), json=bool(o["as_json"]),
                          index=o["index"], frame_dir=o["frame_dir"], skip_bad=bool(o["skip_bad"]),
                          top_k=5 if o["top_k"] is None else o["top_k"], runtime=o["runtime"] or "torch",
                          sparse_layout=o["sparse_layout"] or "auto",
                          window=o["window"] or 0, stride=o["stride"] or 0)


if __name__ == "__main__":  # pragma: no cover
    main(prog_name=os.path.basename(sys.argv[0]))
