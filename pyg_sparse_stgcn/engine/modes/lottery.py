"""``--mode lottery``: iterative magnitude pruning with rewinding (lottery tickets, OpenLTH semantics)."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...sparsity.magnitude import PRUNE_SCOPES
from .. import distributed as D
from ..config import RANK_FILE, Config, ConfigError
from ..models import build_classifier
from ..rundir import json_safe
from ..session import METRIC_KEYS, Session
from .base import COMMON_READS, Invocation, Mode, register_mode

#: The figures of a level copied into the summary when the level finished in an earlier invocation.
SUMMARY_KEYS = (*METRIC_KEYS, "weight_sparsity", "edge_sparsity", "edge_sparsity_connections", "params_stored",
                "params_kept")


def _setting(cfg: Config, key: str) -> str:
    """``--sparsity 0.9``, ``--set lottery.levels=3`` or ``lottery.levels = 3 (--config FILE)``."""
    label, value = cfg.sources.get(key, (0, ""))[1], cfg.get(key)
    name = cfg.name(key)
    if name != key:
        return f"{name}={value}" if name.startswith("--set ") else f"{name} {value}"
    return f"{key} = {value}" + (f" ({label})" if label else "")


@register_mode
class LotteryMode(Mode):
    """Level 0 trains the dense model; every level removes ``lottery.fraction`` of the remaining weights (and
    ``lottery.edge_fraction`` of the remaining edge entries) and retrains from the rewind point. The number of
    levels is ``lottery.levels``, or, when it is 0 or ``--sparsity`` overrides it, as many as the weight
    sparsity needs, the last level trimmed to reach it exactly."""

    name = "lottery"
    label = "lottery ticket"
    reads = COMMON_READS + ("sparsity.sparsity", "sparsity.scope", "lottery")
    scopes = PRUNE_SCOPES
    hints = {"sparsity.edge_sparsity": "IMP removes lottery.edge_fraction of the remaining edge entries per level "
                                       "(e.g. --set lottery.edge_fraction=0.05)"}

    def resolve(self, cfg: Config, inv: Invocation) -> None:
        """Decide between ``lottery.levels`` and ``sparsity.sparsity``: the one set by the higher-precedence
        source wins (the command line over a ``--config`` file over the defaults and shipped recipes); set at
        the same precedence, they must agree. The result: ``lottery.levels = 0`` (levels derived from the
        sparsity) or a fixed number of levels."""
        from ...sparsity.lottery import levels_for

        lt = cfg.lottery
        r_s, r_l = cfg.rank("sparsity.sparsity"), cfg.rank("lottery.levels")
        try:
            need = levels_for(cfg.sparsity.sparsity, lt.fraction)
        except ValueError as e:
            if lt.levels == 0 or r_s > r_l:
                raise ConfigError(f"{cfg.name('lottery.fraction')}: {e}") from None
            return
        if lt.levels == 0 or r_s < RANK_FILE or r_s < r_l:
            return
        if r_s == r_l and need != lt.levels:
            raise ConfigError(f"{_setting(cfg, 'sparsity.sparsity')} conflicts with "
                              f"{_setting(cfg, 'lottery.levels')}: at lottery.fraction {lt.fraction} the sparsity "
                              f"{cfg.sparsity.sparsity} takes {need} levels (the last one trimmed to reach it "
                              f"exactly); give only one of the two")
        lt.levels = 0
        cfg.sources["lottery.levels"] = (r_s, f"derived from {cfg.name('sparsity.sparsity')}")

    def run(self, session: Session) -> dict[str, Any]:
        from ...sparsity.lottery import BRANCHES, IterativeMagnitudePruning
        from ...sparsity.masks import load_mask_state_dict

        s, cfg = session, session.cfg
        lt = cfg.lottery
        model = build_classifier(cfg, s.data)
        root = s.rundir.path / "lottery"
        results: dict[str, dict[str, Any]] = {}

        def train_fn(m: nn.Module, *, level: int, out_dir: Path, start_step: int,
                     on_step: Callable[[int], None]) -> dict[str, Any]:
            name = "-".join(out_dir.relative_to(root).parts)
            out = s.fit(name, m, start_step=start_step, on_step=on_step)  # the test accuracy on every rank
            results[name] = out
            return {k: v for k, v in out.items() if k != "ensemble"}

        kinds = ("weight", "edge") if lt.edge_fraction > 0 else ("weight",)
        kw: dict[str, Any] = dict(fraction=lt.fraction, kinds=kinds, scope=cfg.sparsity.scope,
                                  rewind_step=lt.rewind_step, branches=tuple(b for b in BRANCHES if getattr(lt, b)),
                                  seed=cfg.run.seed)
        if lt.edge_fraction > 0:
            kw["edge_fraction"] = lt.edge_fraction
        if lt.levels == 0:
            kw["target_sparsity"] = cfg.sparsity.sparsity
        imp = IterativeMagnitudePruning(model, train_fn, root, lt.levels or None, **kw)
        levels = imp.run()
        D.barrier()  # rank 0 wrote the level files
        last = f"level_{len(levels) - 1}"
        # the model ends as the last level trained it (also when every level was already done on resume)
        final_dir = imp.level_dir(len(levels) - 1)
        model.load_state_dict(torch.load(final_dir / "trained.pt", map_location=s.device, weights_only=True),
                              strict=False)
        load_mask_state_dict(model, torch.load(final_dir / "mask.pt", map_location="cpu", weights_only=True))
        final = results.get(last) or _from_level(levels[-1])
        s.export(model, "classifier", last, final)
        dense = results.get("level_0") or _from_level(levels[0])
        return {**final, "levels": json_safe(levels), "dense": dense}

    def extra_lines(self, summary: Mapping[str, Any]) -> list[str]:
        from .base import _fmt

        out = []
        for lv in summary.get("levels", []):
            sp = lv.get("sparsity", {})
            out.append(f"  level {lv.get('level')}: weights {_fmt(sp.get('weight'))} sparse, edges "
                       f"{_fmt(sp.get('edge'))} sparse, top-1 {_fmt(lv.get('top1'))}")
        return out


def _from_level(metrics: Mapping[str, Any]) -> dict[str, Any]:
    return {k: metrics.get(k) for k in SUMMARY_KEYS}
