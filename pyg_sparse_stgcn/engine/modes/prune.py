"""``--mode prune``: one-shot magnitude pruning of a checkpoint (or of a dense model trained first), then
fine-tuning."""
from __future__ import annotations

from typing import Any

from ...sparsity.magnitude import PRUNE_SCOPES
from ..models import build_classifier, load_model
from ..session import METRIC_KEYS, Session, describe, eval_ready
from .base import COMMON_READS, Mode, register_mode


@register_mode
class PruneMode(Mode):
    """Magnitude pruning (``sparsity.magnitude.prune``, ``sparsity.scope``) of ``--checkpoint`` (stage ``dense``
    evaluates it) or of a dense model trained first (stage ``dense``), then fine-tuning (stage ``finetune``)
    for ``prune.finetune_epochs`` at ``prune.lr``."""

    name = "prune"
    label = "pruned + fine-tuned"
    checkpoint = "optional"
    reads = COMMON_READS + ("sparsity", "prune", "dense.epochs")
    scopes = PRUNE_SCOPES

    def run(self, session: Session) -> dict[str, Any]:
        from ...sparsity.magnitude import prune

        s, cfg = session, session.cfg
        sp = cfg.sparsity
        if s.inv.checkpoint:
            model, _ = load_model(s.inv.checkpoint, cfg, s.data, s.device)
            if callable(getattr(model, "score_parameters", None)) or hasattr(model, "experts"):
                raise ValueError("--checkpoint: prune needs a dense (or fixed-mask) classifier checkpoint, not a "
                                 "generator or ensemble")
            dense = s.finish("dense", model, s.evaluate(model))
        else:
            model = build_classifier(cfg, s.data)
            dense = s.fit("dense", model, epochs=cfg.dense.epochs or cfg.train.epochs)
        # --sparsity 0 with --edge-sparsity S prunes edges alone (no weight masks, nothing counted as pruned)
        kinds = tuple(k for k, rate in (("weight", sp.sparsity), ("edge", sp.edge_sparsity)) if rate > 0)
        prune(model, sp.sparsity, scope=sp.scope, kinds=kinds or ("weight",),
              edge_sparsity=sp.edge_sparsity if "edge" in kinds else None)
        before = describe(eval_ready(model), s.evaluate(model))
        over: dict[str, Any] = {"epochs": cfg.prune.finetune_epochs or cfg.train.epochs}
        if cfg.prune.lr > 0:
            over["lr"] = cfg.prune.lr
        out = s.fit("finetune", model, **over)
        s.export(model, "classifier", "finetune", out)
        return {**out, "before_finetune": {k: before[k] for k in METRIC_KEYS}, "dense": dense}

    def extra_lines(self, summary):
        from .base import _fmt

        b = summary.get("before_finetune")
        return [f"(after pruning, before fine-tuning: top-1 {_fmt(b.get('top1'))})"] if b else []
