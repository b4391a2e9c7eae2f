"""``--mode analyze`` (or ``pyg-sparse-stgcn analyze RUN_DIR``): report on a finished run."""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..config import Config, ConfigError
from ..rundir import RunDir
from ..session import Session
from .base import Invocation, Mode, register_mode


@register_mode
class AnalyzeMode(Mode):
    """Hand the run directory to the analysis package's report (``pyg_sparse_stgcn.analysis.analyze_run``)
    when it provides one; otherwise report the run's sparsity and accuracy from its ``sparsity_report.json``
    and ``summary.json``. Writes nothing of its own."""

    name = "analyze"
    label = "analysis"
    checkpoint = "optional"  # --checkpoint RUN_DIR is the same as the positional RUN_DIR
    trains = False
    creates_run = False
    takes_run_dir = True
    reads = ()

    def check(self, cfg: Config, inv: Invocation) -> None:
        super().check(cfg, inv)
        if not (inv.target or inv.checkpoint):
            raise ConfigError("--mode analyze needs a run directory: pyg-sparse-stgcn analyze runs/<run> "
                              "(or --checkpoint runs/<run>)")

    def run(self, session: Session) -> dict[str, Any]:
        from ... import analysis

        target = session.inv.target or session.inv.checkpoint
        assert target is not None
        run = RunDir.open(target)
        analyze_run = getattr(analysis, "analyze_run", None)  # the analysis package's entry point, once it exists
        if callable(analyze_run):
            return dict(analyze_run(run.path))
        summ = run.path / "summary.json"
        rep = run.path / "sparsity_report.json"
        if not rep.is_file():
            raise ValueError(f"analyze: {run.path} has no sparsity_report.json (the run did not finish)")
        out = json.loads(summ.read_text()) if summ.is_file() else {}
        out["sparsity_report"] = json.loads(rep.read_text())
        return out

    def format_summary(self, summary: Mapping[str, Any]) -> str:
        lines = []
        rep = summary.get("sparsity_report")
        if isinstance(rep, Mapping):
            for kind, v in rep.get("kinds", {}).items():
                lines.append(f"{kind}: {v['kept']:,} of {v['total']:,} kept, sparsity {100 * v['sparsity']:.2f}%")
            conn = rep.get("connections")
            if isinstance(conn, Mapping) and conn.get("total"):
                lines.append(f"connections: {conn['kept']:,} of {conn['total']:,} kept, sparsity "
                             f"{100 * conn['sparsity']:.2f}%")
            p = rep.get("parameters", {})
            if p:
                lines.append(f"parameters: stored {p.get('stored', 0):,}, kept {p.get('effective', 0):,}")
        for k in ("top1", "top5", "mean_class_accuracy"):
            if summary.get(k) is not None:
                lines.append(f"{k}: {100 * summary[k]:.2f}%")
        skip = ("sparsity_report", "top1", "top5", "mean_class_accuracy")
        for k, v in summary.items():
            if k not in skip and isinstance(v, (str, int, float)):
                lines.append(f"{k}: {v}")
        return "\n".join(lines)
