"""``--mode analyze`` (or ``pyg-sparse-stgcn analyze RUN_DIR [RUN_DIR ...] [--compare]``): which skeleton
connections survive, written under ``RUN_DIR/analysis/`` by :mod:`pyg_sparse_stgcn.analysis`.

This module also registers the engine's loader of run directories and checkpoints with the analysis package
(:func:`pyg_sparse_stgcn.analysis.register_run_loader`), so ``analysis.survival("runs/<run>")`` works.
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import Config, ConfigError
from ..session import Session
from .base import Invocation, Mode, register_mode

__all__ = ["AnalyzeMode", "load_run_models"]


def _facts(state: Mapping[str, Any], where: Path) -> Any:
    """A data bundle without data: the facts a checkpoint of ours records (classes, layout, channels)."""
    from ..bundle import DataBundle

    missing = [k for k in ("num_classes", "layout", "in_channels", "num_person") if k not in state]
    if missing:
        raise ValueError(f"{where}: the checkpoint does not record {', '.join(missing)}; analyse the run "
                         f"directory (or its checkpoints/model.pt) instead")
    return DataBundle.facts("(analysis)", int(state["num_classes"]), str(state["layout"]),
                            int(state["in_channels"]), int(state["num_person"]))


def _pyskl_facts(cfg: Config) -> Any:
    from ...data import dataset_info
    from ..bundle import DataBundle

    info = dataset_info(cfg.data.name)
    layout = cfg.model.layout or info.layout
    if not layout or not info.num_classes:
        raise ValueError(f"--data {cfg.data.name} does not fix the layout and the number of classes; pass the "
                         f"--data the PYSKL checkpoint was trained on")
    return DataBundle.facts(cfg.data.name, int(info.num_classes), str(layout), 3,
                            int(cfg.data.num_person or info.num_person))


def _level_no(p: Path) -> int:
    m = re.match(r"level_(\d+)-final\.pt$", p.name)
    return int(m.group(1)) if m else -1


def load_run_models(path: str | Path, cfg: Config | None = None) -> dict[str, nn.Module]:
    """The models of a run directory or checkpoint, on the CPU in evaluation mode: ``{label: model}``, the
    final model first, then the levels of a lottery run (``level 0``, ``level 1``, ...). A checkpoint of ours
    is built from its own configuration; any other file is read as a PYSKL / mmaction2 checkpoint of the
    backbone ``cfg.model`` names, for the dataset ``cfg.data`` names.

    Raises:
        ValueError: naming the path and what is missing (no model in a run directory, a checkpoint of an
            unknown backbone).
    """
    from ...compat.pyskl import load_checkpoint_state
    from ..config import Config
    from ..models import load_model
    from ..trainer import CHECKPOINT_FORMAT

    p = Path(path)
    cpu = torch.device("cpu")
    if p.is_dir():
        if not (p / "config.toml").is_file():
            raise ValueError(f"{p}: not a run directory (no config.toml) and not a checkpoint file")
        ck = p / "checkpoints" / "model.pt"
        if not ck.is_file():
            raise ValueError(f"{p}: no model to analyse: checkpoints/model.pt is missing (an evaluate run saves "
                             f"none, an interrupted run has not written it yet); masks/ holds "
                             f"{len(list((p / 'masks').glob('*.pt')))} mask file(s), which need the model")
        state = torch.load(ck, map_location="cpu", weights_only=True)
        data = _facts(state, ck)
        model, _ = load_model(ck, Config(), data, cpu)
        out = {p.name: model.eval()}
        for lv in sorted(p.glob("checkpoints/level_*-final.pt"), key=_level_no):
            out[f"level {_level_no(lv)}"] = load_model(lv, Config(), data, cpu)[0].eval()
        return out
    if not p.is_file():
        raise ValueError(f"{p}: no such run directory or checkpoint file")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception:
        state = None
    if isinstance(state, dict) and state.get("format") == CHECKPOINT_FORMAT:
        if "layout" not in state:
            sib = p.parent / "model.pt"
            if not sib.is_file():
                raise ValueError(f"{p}: a stage checkpoint without its run's checkpoints/model.pt (which records "
                                 f"the classes, layout and channels); analyse the run directory instead")
            state = torch.load(sib, map_location="cpu", weights_only=True)
        return {p.name: load_model(p, Config(), _facts(state, p), cpu)[0].eval()}
    cfg = cfg or Config()
    try:
        load_checkpoint_state(str(p))
    except Exception as e:  # noqa: BLE001 - any unreadable file is reported the same way
        raise ValueError(f"{p}: neither a checkpoint of this library nor a readable PYSKL / mmaction2 checkpoint "
                         f"({type(e).__name__}: {e})") from None
    try:
        model, _ = load_model(p, cfg, _pyskl_facts(cfg), cpu)
    except (ValueError, KeyError, RuntimeError) as e:
        raise ValueError(f"{p}: not a checkpoint of a known backbone (--model {cfg.model.name}: PYSKL / mmaction2 "
                         f"ST-GCN or ST-GCN++): {e}") from None
    return {p.name: model.eval()}


def _register() -> None:
    from ... import analysis

    analysis.register_run_loader(load_run_models)


_register()


@register_mode
class AnalyzeMode(Mode):
    """Write the edge-survival analysis of a run (its final model, lottery levels, ensemble experts) or of a
    checkpoint under ``RUN_DIR/analysis/`` (tables, figures, ``index.html``) and print a short summary; with
    several run directories and ``--compare``, also compare the connections they keep (written under the first
    run's ``analysis/compare/``)."""

    name = "analyze"
    label = "analysis"
    checkpoint = "optional"  # --checkpoint PATH is the same as the positional RUN_DIR
    trains = False
    creates_run = False
    takes_run_dir = True
    reads = ("data.name", "data.num_person", "model")  # what a PYSKL checkpoint is read with

    @staticmethod
    def _paths(inv: Invocation) -> list[str]:
        paths = list(inv.targets or ([inv.target] if inv.target else []))
        for extra in (inv.checkpoint, inv.resume):
            if extra and extra not in paths:
                paths.append(extra)
        return paths

    def check(self, cfg: Config, inv: Invocation) -> None:
        # --mode analyze --resume RUN_DIR names the run to analyse (nothing is resumed)
        super().check(cfg, dataclasses.replace(inv, resume=None) if inv.resume and not inv.checkpoint else inv)
        paths = self._paths(inv)
        if not paths:
            raise ConfigError("--mode analyze needs a run directory: pyg-sparse-stgcn analyze runs/<run> "
                              "(or --checkpoint runs/<run>, or a checkpoint file)")
        if inv.compare and len(paths) < 2:
            raise ConfigError("--compare needs at least two run directories: pyg-sparse-stgcn analyze RUN_DIR "
                              "RUN_DIR --compare")

    def run(self, session: Session) -> dict[str, Any]:
        from ... import analysis

        paths = [Path(p) for p in self._paths(session.inv)]
        loaded = {p: load_run_models(p, session.cfg) for p in paths}  # every input read before anything is written
        results = [analysis.analyze_run(p, models=loaded[p]) for p in paths]
        out: dict[str, Any] = {"analyses": [{"source": str(p), "html": r["html"], "text": r["text"]}
                                            for p, r in zip(paths, results)]}
        if session.inv.compare or len(paths) > 1:
            labels = _labels(paths)
            tables = {lab: analysis.survival(next(iter(loaded[p].values())), lab) for lab, p in zip(labels, paths)}
            cmp = analysis.compare_runs(tables, analysis.default_out_dir(paths[0]) / "compare",
                                        title=" vs ".join(labels))
            out["compare"] = {"html": cmp["html"], "text": cmp["text"]}
        return out

    def format_summary(self, summary: Mapping[str, Any]) -> str:
        lines = []
        for a in summary.get("analyses", []):
            lines += [a["text"], f"report: {a['html']}"]
        c = summary.get("compare")
        if isinstance(c, Mapping):
            lines += [c["text"], f"comparison: {c['html']}"]
        return "\n".join(lines)


def _labels(paths: list[Path]) -> list[str]:
    names = [p.name for p in paths]
    return [n if names.count(n) == 1 else f"{n} ({i})" for i, n in enumerate(names)]
