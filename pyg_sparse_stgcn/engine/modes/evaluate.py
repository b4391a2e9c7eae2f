"""``--mode evaluate``: any checkpoint on the test split, or the fusion of saved stream scores."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import distributed as D
from ..config import Config, ConfigError
from ..evaluate import fuse_score_files, save_scores
from ..models import load_model
from ..session import METRIC_KEYS, Session
from .base import Invocation, Mode, register_mode


@register_mode
class EvaluateMode(Mode):
    """Evaluate ``--checkpoint`` (ours, any kind, or a PYSKL / mmaction2 ST-GCN) with ``eval.num_clips``
    clips, or fuse the saved test scores of the ``--fuse`` runs with ``eval.fusion_coefficients``."""

    name = "evaluate"
    label = "evaluated"
    checkpoint = "optional"
    trains = False
    accepts_fuse = True
    reads = ("run", "data", "model", "eval", "train.amp", "train.progress")

    def needs_data(self, inv: Invocation) -> bool:
        return not inv.fuse

    def check(self, cfg: Config, inv: Invocation) -> None:
        super().check(cfg, inv)
        if not (inv.checkpoint or inv.fuse):
            raise ConfigError("--mode evaluate needs --checkpoint (a run directory, its checkpoints/model.pt or a "
                              "PYSKL .pth) or --fuse RUN_DIR --fuse RUN_DIR ...")

    def run(self, session: Session) -> dict[str, Any]:
        s = session
        if s.inv.fuse:
            coeff = s.cfg.eval.fusion_coefficients
            res = fuse_score_files(list(s.inv.fuse), coeff if len(coeff) == len(s.inv.fuse) else None)
            if D.is_main():
                save_scores(s.rundir.scores / "test.pt", res["scores"], res["labels"], res["ids"],
                            meta={"fused": [str(f) for f in s.inv.fuse], "streams": res["streams"]})
            return {k: res[k] for k in (*METRIC_KEYS, "num_samples", "streams")} | {
                "weight_sparsity": None, "edge_sparsity": None, "edge_sparsity_connections": None,
                "params_stored": None, "params_kept": None}
        assert s.inv.checkpoint is not None
        model, info = load_model(s.inv.checkpoint, s.cfg, s.data, s.device)
        out = s.finish("test", model, s.evaluate(model))
        if D.is_main():
            s.write_report(model)
        return {**out, "checkpoint": str(s.inv.checkpoint), "source": info["source"], "kind": info["kind"]}

    def extra_lines(self, summary: Mapping[str, Any]) -> list[str]:
        from .base import _fmt

        return [f"  stream {st['path']} x{st['coefficient']:g}: top-1 {_fmt(st['top1'])}"
                for st in summary.get("streams", [])]
