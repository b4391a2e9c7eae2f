"""``--mode generate``: the paper's sparse generator, after a dense baseline."""
from __future__ import annotations

from typing import Any

from ...sparsity.generator import SCOPES
from ..config import Config
from ..models import build_generator, check_generator_options
from ..session import Session
from .base import COMMON_READS, Invocation, Mode, register_mode


@register_mode
class GenerateMode(Mode):
    """Dense baseline (stage ``dense``), then :class:`~pyg_sparse_stgcn.sparsity.generator.SparseGenerator`
    (stage ``generate``) with every option of ``[generator]``; writes ``masks/generate.pt``."""

    name = "generate"
    label = "sparse (generator)"
    dense_baseline = True
    reads = COMMON_READS + ("sparsity", "generator", "dense")
    scopes = SCOPES
    clip_section = "generator"

    def resolve(self, cfg: Config, inv: Invocation) -> None:
        check_generator_options(cfg, "generator")

    def run(self, session: Session) -> dict[str, Any]:
        g = session.cfg.generator
        dense = session.dense_baseline("generator", g.graph_mode or None, g.gcn_adaptive or None)
        gen = build_generator(session.cfg, session.data)
        out = session.fit("generate", gen, epochs=session.epochs("generator"), lr_schedule=g.lr_schedule,
                          find_unused_parameters=bool(g.two_phase))
        session.export(gen, "generator", "generate", out)
        return {**out, **({"dense": dense} if dense else {})}
