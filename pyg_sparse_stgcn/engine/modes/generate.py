"""``--mode generate``: the paper's sparse generator, after a dense baseline."""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from torch import nn

from ...sparsity.generator import SCOPES
from ..bundle import DataBundle
from ..config import Config
from ..models import build_generator, check_generator_options
from ..session import Session
from .base import COMMON_READS, Invocation, Mode, _fmt, register_mode

#: Where ``benchmarks/bench_demo.py --seeds N`` records the demo's dense and 95 %-sparse accuracy over seeds
#: (a checkout's file; an installed package has none and prints the seed only).
DEMO_RESULTS = Path(__file__).resolve().parents[3] / "benchmarks" / "results" / "demo.json"


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

    def extra_lines(self, summary: Mapping[str, Any]) -> list[str]:
        """The seed and, for the demo, the range measured over seeds (:func:`demo_expectation`)."""
        lines = [f"seed {summary['seed']}"] if "seed" in summary else []
        if summary.get("data") == "demo":
            lines += demo_expectation()
        return lines


def recipe_digest(name: str) -> str:
    """SHA-256 of the shipped recipe ``configs/<name>.toml`` (tells whether a recorded result used it)."""
    from ..config import recipe_text

    return hashlib.sha256((recipe_text(name) or "").encode()).hexdigest()


def demo_expectation(path: Path = DEMO_RESULTS) -> list[str]:
    """What ``make demo`` should print, from ``benchmarks/results/demo.json`` (mean ± std of the dense and
    95 %-sparse top-1 over the seeds ``bench_demo.py --seeds N`` ran), with a warning when the file was recorded
    with another ``configs/demo.toml``; nothing when the file is absent."""
    try:
        rec = json.loads(path.read_text())
        d, s, g = rec["dense_top1"], rec["sparse_top1"], rec["drop_points"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    seeds = ", ".join(str(x) for x in rec.get("seeds", []))
    lines = [f"expected (benchmarks/results/demo.json, seeds {seeds}, {rec.get('machine', {}).get('date_utc', '?')}"
             f"): dense {_fmt(d['mean'])} ± {100 * d['std']:.1f}, 95 %-sparse {_fmt(s['mean'])} ± "
             f"{100 * s['std']:.1f}, drop {g['mean']:.1f} ± {g['std']:.1f} points "
             f"(per seed: dense {', '.join(_fmt(v) for v in d['values'])}; sparse "
             f"{', '.join(_fmt(v) for v in s['values'])})"]
    if rec.get("recipe_sha256") != recipe_digest("demo"):
        lines.append("(recorded with another configs/demo.toml: rerun benchmarks/bench_demo.py --seeds 3)")
    return lines


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
