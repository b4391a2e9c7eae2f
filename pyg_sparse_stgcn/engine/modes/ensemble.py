"""``--mode ensemble``: the multi-level sparsity ensemble, after a dense baseline."""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from ...sparsity.generator import SCOPES
from ..config import RANK_CLI, Config, ConfigError, EnsembleConfig, GeneratorConfig
from ..models import build_ensemble, check_generator_options
from ..session import Session
from .base import COMMON_READS, Invocation, Mode, _fmt, register_mode
from .generate import dense_then_sparse

#: The ``[generator]`` settings the ensemble's experts take (the rest ``[ensemble]`` sets itself).
GENERATOR_KEYS = tuple(f"generator.{f.name}" for f in dataclasses.fields(GeneratorConfig)
                       if f.name not in {g.name for g in dataclasses.fields(EnsembleConfig)})


@register_mode
class EnsembleMode(Mode):
    """Dense baseline (stage ``dense``), then
    :class:`~pyg_sparse_stgcn.sparsity.ensemble.MultiSparsityEnsemble` (stage ``ensemble``): one expert per
    ``ensemble.sparsities`` level, each a generator with the ``[generator]`` options."""

    name = "ensemble"
    label = "ensemble"
    dense_baseline = True
    reads = COMMON_READS + ("sparsity.edge_sparsity", "sparsity.scope", "ensemble", "dense") + GENERATOR_KEYS
    scopes = SCOPES
    clip_section = "ensemble"

    def check(self, cfg: Config, inv: Invocation) -> None:
        if cfg.rank("sparsity.sparsity") >= RANK_CLI:
            raise ConfigError(f"{cfg.name('sparsity.sparsity')} conflicts with --mode ensemble: the ensemble's "
                              f"levels are ensemble.sparsities (e.g. --set ensemble.sparsities=[0.6,0.8,0.95,0.99])")
        super().check(cfg, inv)

    def resolve(self, cfg: Config, inv: Invocation) -> None:
        check_generator_options(cfg, "ensemble")

    def run(self, session: Session) -> dict[str, Any]:
        return dense_then_sparse(session, "ensemble", "ensemble", build_ensemble,
                                 grad_clip=session.cfg.ensemble.grad_clip)

    def extra_lines(self, summary: Mapping[str, Any]) -> list[str]:
        inf, tr = summary.get("inference_parameters"), summary.get("training_parameters")
        if inf is None and tr is None:
            return []
        return [f"ensemble parameters: inference {_fmt(inf, False)} (kept weights, fused head only), training "
                f"{_fmt(tr, False)} "
                f"(every expert, scores and all heads)"]
