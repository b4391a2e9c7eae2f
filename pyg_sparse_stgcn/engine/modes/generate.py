"""``--mode generate``: the paper's sparse generator, after a dense baseline."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from ...sparsity.generator import SCOPES
from ..bundle import DataBundle
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
        return dense_then_sparse(session, "generator", "generate", build_generator,
                                 find_unused_parameters=bool(session.cfg.generator.two_phase))


def dense_then_sparse(session: Session, section: str, stage: str,
                      build: Callable[[Config, DataBundle], nn.Module], **fit_kw: Any) -> dict[str, Any]:
    """The dense baseline with the graph of ``[section]`` (``generator`` or ``ensemble``), then the sparse model
    ``build`` makes trained as stage ``stage`` with that section's epochs and schedule (``fit_kw`` on top), and
    exported as the run's final model; its summary, with the baseline's under ``dense`` when there is one."""
    c = getattr(session.cfg, section)
    dense = session.dense_baseline(section, c.graph_mode or None, c.gcn_adaptive or None)
    model = build(session.cfg, session.data)
    out = session.fit(stage, model, epochs=session.epochs(section), lr_schedule=c.lr_schedule, **fit_kw)
    session.export(model, section, stage, out)
    return {**out, **({"dense": dense} if dense else {})}
