r"""Sparsity reports: per target, per kind and whole model; parameter counts two ways.

"Sparsity" is always the fraction of entries that are masked (removed): :math:`1 - \text{kept}/\text{total}`,
counted over *real* entries (for edges: the entries :math:`(k, v, w)` whose base weight can be non-zero).

Edges are reported two ways: **entries** :math:`(k, v, w)` (per layer and per subset) and skeleton
**connections** :math:`(v, w)` — a connection of a layer survives when any subset keeps one of its real
entries — with the physical bones of the layout (either direction), the self-loops and the other links
counted apart.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .masks import Mask, get_mask
from .targets import KINDS, Target, left_out, normalize_kinds, targets

__all__ = ["SparsityReport", "report", "CONNECTION_CLASSES"]

#: How the connections ``(v, w)`` of a layer are classified.
CONNECTION_CLASSES = ("bones", "self_loops", "links")


def _sp(total: int, kept: int) -> float:
    return 0.0 if total == 0 else 1.0 - kept / total


def _counts(total: int, kept: int) -> dict[str, Any]:
    return {"total": total, "kept": kept, "sparsity": _sp(total, kept)}


def _edge_views(t: Target, current: torch.Tensor) -> tuple[int, list[dict], dict[str, Any]]:
    """``(kept real entries, per-subset counts, connection counts)`` of one edge target."""
    real = t.real()
    assert real is not None, "an edge target always has real entries"
    real = real.cpu()
    kept = current.cpu() & real
    subsets = [_counts(int(real[k].sum()), int(kept[k].sum())) for k in range(real.size(0))]
    conn_real, conn_kept = real.any(0), kept.any(0)
    conn: dict[str, Any] = _counts(int(conn_real.sum()), int(conn_kept.sum()))
    layout = getattr(t.module, "layout", None)
    src, dst = t.module.edge_index.cpu()
    self_loop = src == dst
    classes = {"self_loops": self_loop}
    if layout is not None:
        bone = torch.tensor([layout.is_bone(int(v), int(w)) for v, w in zip(src, dst)], dtype=torch.bool)
        classes = {"bones": bone, "self_loops": self_loop, "links": ~bone & ~self_loop}
    for name in CONNECTION_CLASSES:
        sel = classes.get(name)
        conn[name] = None if sel is None else _counts(int((conn_real & sel).sum()), int((conn_kept & sel).sum()))
    return int(kept.sum()), subsets, conn


def _add_counts(acc: dict[str, Any], part: dict[str, Any]) -> None:
    acc["total"] += part["total"]
    acc["kept"] += part["kept"]
    acc["sparsity"] = _sp(acc["total"], acc["kept"])


@dataclass
class SparsityReport:
    r"""Result of :func:`report`; JSON-serialisable through :meth:`to_dict`, a table through ``str``.

    Attributes:
        targets (list[dict]): Per target: ``name``, ``kind``, ``shape``, ``block``, ``total`` (real
            entries), ``kept``, ``sparsity``, ``scored`` (whether the mask is learned through a score); edge
            targets add ``candidates`` (stored entries, real or not), ``subsets`` (per subset ``total``,
            ``kept``, ``sparsity``) and ``connections`` (``total``, ``kept``, ``sparsity`` and the same for
            ``bones``, ``self_loops`` and ``links``; ``bones``/``links`` are :obj:`None` for a layer built
            from a bare adjacency array, which knows no layout).
        kinds (dict): Per kind: ``total``, ``kept``, ``sparsity`` (edges: over real entries).
        overall (dict): All targets together: ``total``, ``kept``, ``sparsity``.
        connections (dict): Edge connections summed over layers (``total``, ``kept``, ``sparsity``, and per
            class in :data:`CONNECTION_CLASSES`); empty when edges are not reported.
        left_out (list[dict]): Tensors that could be targets but were left out, with the reason
            (``name``, ``kind``, ``reason``).
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
    connections: dict[str, Any] = field(default_factory=dict)
    left_out: list[dict[str, str]] = field(default_factory=list)

    @property
    def edge_sparsity(self) -> float | None:
        """Fraction of the real edge entries removed (:obj:`None` without edge targets)."""
        e = self.kinds.get("edge")
        return None if not e or not e["total"] else e["sparsity"]

    @property
    def edge_sparsity_connections(self) -> float | None:
        """Fraction of the skeleton connections removed, summed over layers (:obj:`None` without edges)."""
        return self.connections.get("sparsity") if self.connections.get("total") else None

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-serialisable dictionary."""
        return {"targets": self.targets, "kinds": self.kinds, "overall": self.overall,
                "connections": self.connections, "parameters": self.parameters, "left_out": self.left_out,
                **({"extra": self.extra} if self.extra else {})}

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
        c = self.connections
        if c.get("total"):
            parts = [f"connections {c['kept']}/{c['total']} kept ({100 * c['sparsity']:.2f}% removed)"]
            for name in CONNECTION_CLASSES:
                if c.get(name):
                    parts.append(f"{name} {c[name]['kept']}/{c[name]['total']}")
            lines.append("edges: " + ", ".join(parts))
        p = self.parameters
        lines.append(f"parameters: maskable {p['maskable']} (kept {p['maskable_kept']}), "
                     f"unmasked {p['unmasked']}, scores {p['scores']}, stored {p['stored']}, "
                     f"effective {p['effective']}")
        for item in self.left_out:
            lines.append(f"left out: {item['name']} ({item['reason']})")
        for k, v in self.extra.items():
            lines.append(f"{k}: {v}")
        return "\n".join(lines)


def report(model: nn.Module, kinds: str | Iterable[str] = KINDS,
           include_head: bool = False) -> SparsityReport:
    r"""Sparsity of every target of ``model`` (masked or not), per kind and overall, with parameter counts.

    Scored masks are read with their thresholds brought up to date first (every
    :class:`~.generator.SparseGenerator` inside ``model`` recomputes them for its current mode and epoch),
    so the report is exact after any forward pass, in training or evaluation mode.

    Args:
        model (torch.nn.Module): Any model (masked targets are read through their current mask: the fixed
            mask and, with scores, the score threshold in effect).
        kinds (str or tuple, optional): Kinds to report. (default: :obj:`('weight', 'edge')`)
        include_head (bool, optional): Also report head weights as targets. (default: :obj:`False`)

    Returns:
        SparsityReport
    """
    kinds = normalize_kinds(kinds)
    for module in model.modules():
        update = getattr(module, "update_thresholds", None)
        if callable(update):
            update()
    rows: list[dict[str, Any]] = []
    per_kind = {k: [0, 0] for k in kinds}
    connections: dict[str, Any] = {}
    if "edge" in kinds:
        connections = {**_counts(0, 0), **{name: None for name in CONNECTION_CLASSES}}
    for t in targets(model, kinds, include_head=include_head):
        m = get_mask(t.module, t.attr)
        current = m.current() if m is not None else torch.ones(t.shape, dtype=torch.bool)
        row: dict[str, Any] = {"name": t.name, "kind": t.kind, "shape": list(t.shape), "block": t.block}
        total = t.num_real
        if t.kind == "edge":
            kept, subsets, conn = _edge_views(t, current)
            row.update(candidates=t.numel, subsets=subsets, connections=conn)
            _add_counts(connections, conn)
            for name in CONNECTION_CLASSES:
                if conn[name] is not None:
                    if connections[name] is None:
                        connections[name] = _counts(0, 0)
                    _add_counts(connections[name], conn[name])
        else:
            kept = int(current.sum().item())
        row.update(**_counts(total, kept), scored=bool(m is not None and m.has_score))
        rows.append(row)
        per_kind[t.kind][0] += total
        per_kind[t.kind][1] += kept
    kinds_out = {k: _counts(a, b) for k, (a, b) in per_kind.items()}
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
    return SparsityReport(rows, kinds_out, _counts(tot, kept), params,
                          connections=connections, left_out=left_out(model, kinds, include_head=include_head))
