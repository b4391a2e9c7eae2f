r"""Sparsity reports: per target, per kind and whole model; parameter counts two ways.

"Sparsity" is always the fraction of entries that are masked (removed): :math:`1 - \text{kept}/\text{total}`.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from .masks import Mask, get_mask
from .targets import KINDS, normalize_kinds, targets

__all__ = ["SparsityReport", "report"]


def _sp(total: int, kept: int) -> float:
    return 0.0 if total == 0 else 1.0 - kept / total


@dataclass
class SparsityReport:
    r"""Result of :func:`report`; JSON-serialisable through :meth:`to_dict`, a table through ``str``.

    Attributes:
        targets (list[dict]): Per target: ``name``, ``kind``, ``shape``, ``block``, ``total``, ``kept``,
            ``sparsity``, ``scored`` (whether the mask is learned through a score).
        kinds (dict): Per kind: ``total``, ``kept``, ``sparsity``.
        overall (dict): All targets together: ``total``, ``kept``, ``sparsity``.
        parameters (dict): ``maskable`` (entries of weight targets), ``maskable_kept``, ``unmasked``
            (every other stored parameter except scores), ``scores`` (score entries),
            ``stored`` (every stored parameter, scores included), ``effective`` (``maskable_kept +
            unmasked``: what a folded sparse model needs).
        extra (dict): Free-form additions (e.g. the ensemble's accounting).
    """

    targets: list[dict[str, Any]]
    kinds: dict[str, dict[str, Any]]
    overall: dict[str, Any]
    parameters: dict[str, int]
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-serialisable dictionary."""
        return {"targets": self.targets, "kinds": self.kinds, "overall": self.overall,
                "parameters": self.parameters, **({"extra": self.extra} if self.extra else {})}

    def to_json(self, indent: int = 2) -> str:
        """JSON text of :meth:`to_dict`."""
        return json.dumps(self.to_dict(), indent=indent)

    def __str__(self) -> str:
        w = max([len(t["name"]) for t in self.targets] + [6])
        lines = [f"{'target':<{w}}  {'kind':<6} {'total':>10} {'kept':>10} {'sparsity':>8}"]
        for t in self.targets:
            lines.append(f"{t['name']:<{w}}  {t['kind']:<6} {t['total']:>10d} {t['kept']:>10d} "
                         f"{100 * t['sparsity']:>7.2f}%")
        lines.append("-" * len(lines[0]))
        for k, v in self.kinds.items():
            lines.append(f"{'[' + k + ']':<{w}}  {'':<6} {v['total']:>10d} {v['kept']:>10d} "
                         f"{100 * v['sparsity']:>7.2f}%")
        o = self.overall
        lines.append(f"{'[all targets]':<{w}}  {'':<6} {o['total']:>10d} {o['kept']:>10d} "
                     f"{100 * o['sparsity']:>7.2f}%")
        p = self.parameters
        lines.append(f"parameters: maskable {p['maskable']} (kept {p['maskable_kept']}), "
                     f"unmasked {p['unmasked']}, scores {p['scores']}, stored {p['stored']}, "
                     f"effective {p['effective']}")
        for k, v in self.extra.items():
            lines.append(f"{k}: {v}")
        return "\n".join(lines)


def report(model: nn.Module, kinds: str | Iterable[str] = KINDS,
           include_head: bool = False) -> SparsityReport:
    r"""Sparsity of every target of ``model`` (masked or not), per kind and overall, with parameter counts.

    Args:
        model (torch.nn.Module): Any model (masked targets are read through their current mask: the fixed
            mask and, with scores, the score threshold in effect).
        kinds (str or tuple, optional): Kinds to report. (default: :obj:`('weight', 'edge')`)
        include_head (bool, optional): Also report head weights as targets. (default: :obj:`False`)

    Returns:
        SparsityReport
    """
    kinds = normalize_kinds(kinds)
    rows: list[dict[str, Any]] = []
    per_kind = {k: [0, 0] for k in kinds}
    for t in targets(model, kinds, include_head=include_head):
        m = get_mask(t.module, t.attr)
        kept = t.numel if m is None else int(m.current().sum().item())
        rows.append({"name": t.name, "kind": t.kind, "shape": list(t.shape), "block": t.block,
                     "total": t.numel, "kept": kept, "sparsity": _sp(t.numel, kept),
                     "scored": bool(m is not None and m.has_score)})
        per_kind[t.kind][0] += t.numel
        per_kind[t.kind][1] += kept
    kinds_out = {k: {"total": a, "kept": b, "sparsity": _sp(a, b)} for k, (a, b) in per_kind.items()}
    tot = sum(v[0] for v in per_kind.values())
    kept = sum(v[1] for v in per_kind.values())

    # Parameter counts. Weight targets are parameters; score tensors are parameters of Mask modules.
    weight_rows = [r for r in rows if r["kind"] == "weight"]
    maskable_ids = set()
    for t in targets(model, "weight", include_head=include_head):
        maskable_ids.add(id(t.original()))
    scores = 0
    unmasked = 0
    score_ids = {id(m.score) for m in model.modules() if isinstance(m, Mask) and m.score is not None}
    for p in model.parameters():
        if id(p) in score_ids:
            scores += p.numel()
        elif id(p) not in maskable_ids:
            unmasked += p.numel()
    maskable = sum(r["total"] for r in weight_rows)
    maskable_kept = sum(r["kept"] for r in weight_rows)
    params = {"maskable": maskable, "maskable_kept": maskable_kept, "unmasked": unmasked, "scores": scores,
              "stored": maskable + unmasked + scores, "effective": maskable_kept + unmasked}
    return SparsityReport(rows, kinds_out, {"total": tot, "kept": kept, "sparsity": _sp(tot, kept)}, params)
