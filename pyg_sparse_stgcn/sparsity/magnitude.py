r"""One-shot pruning by magnitude (and its random control).

:func:`prune` removes the fraction ``sparsity`` of the entries that are still kept, ranked by
:math:`|\text{effective value}|` — the weight itself, or the base edge weight :math:`A_\text{base}[k, e]`
for edges — either over all targets of a kind at once (``scope='global'``) or per target (``'layer'``).
Weights and edges are always ranked separately (their scales differ), each with its own rate.

Only *real* entries are ranked and counted (for edges: entries whose base weight can be non-zero, see
:mod:`.targets`). Exactly :math:`\lfloor s \cdot n_\text{kept} + 1/2 \rfloor` real entries are removed per group;
ties are broken deterministically by the entry's relative position within its own target (so tied entries leave every
target in proportion), then by target order. Pruning composes: pruning a model at
0.5 twice leaves :math:`0.25` of the entries.
"""
from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor, nn

from .masks import attach_masks, effective_mask, set_mask
from .report import SparsityReport, report
from .targets import KINDS, Target, normalize_kinds

__all__ = ["prune", "random_prune", "prune_groups", "shuffle_masks", "check_sparsity", "check_scope",
           "num_to_remove", "PRUNE_SCOPES"]

#: Scopes of magnitude pruning and IMP: rank all targets of a kind together, per ST block, or per target.
PRUNE_SCOPES = ("global", "block", "layer")


def check_sparsity(value: float, name: str = "sparsity") -> float:
    """Validate a sparsity (fraction removed) in ``[0, 1)``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0.0 <= float(value) < 1.0) \
            or math.isnan(float(value)):
        raise ValueError(f"{name} must be a float in [0, 1) (the fraction of entries removed), got {value!r}")
    return float(value)


def check_scope(scope: str, valid: tuple[str, ...] = PRUNE_SCOPES) -> str:
    """Validate a scope name against ``valid``."""
    if scope not in valid:
        raise ValueError(f"scope must be one of {valid}, got {scope!r}")
    return scope


def num_to_remove(rate: float, n: int) -> int:
    r"""Entries to remove from ``n``: :math:`\lfloor \text{rate} \cdot n + 1/2 \rfloor` (round half up)."""
    return int(math.floor(rate * n + 0.5))


def _alive(t: Target) -> Tensor:
    """Boolean mask of the entries of ``t`` that are real and still kept."""
    alive = effective_mask(t)
    real = t.real()
    return alive if real is None else alive & real.to(alive.device)


def _prune_group(group: list[Target], rate: float, random: bool, generator: torch.Generator | None) -> None:
    """Remove ``round(rate * n)`` of the ``n`` real, kept entries of ``group`` (smallest magnitude, or random).

    Raises:
        ValueError: If that would remove every real entry of one edge target (a layer with no edge left).
    """
    if rate == 0.0 or not group:
        return
    alive = [_alive(t) for t in group]
    counts = [int(a.sum().item()) for a in alive]
    n = sum(counts)
    k = num_to_remove(rate, n)
    if k == 0:
        return
    if random:
        imp = torch.rand(n, generator=generator)
    else:
        imp = torch.cat([t.magnitude().detach().abs()[a].float().cpu() for t, a in zip(group, alive)])
    # ties (e.g. the identical A of every layer under adaptive=None) go by the relative position of the entry
    # within its own target, so tied entries are removed from all targets in proportion, then by target order
    rel = torch.cat([(torch.arange(c, dtype=torch.float64) + 0.5) / c for c in counts if c])
    order = torch.sort(rel, stable=True).indices
    drop = order[torch.sort(imp[order], stable=True).indices][:k]
    flags = torch.zeros(n, dtype=torch.bool)
    flags[drop] = True
    start = 0
    new_masks = []
    for t, c in zip(group, counts):
        sel = flags[start:start + c]
        start += c
        if t.kind == "edge" and c > 0 and bool(sel.all()):
            raise ValueError(f"pruning edges at rate {rate} would remove all {c} remaining real entries of "
                             f"{t.name!r} (the layer has {t.num_real} real entries); use a lower "
                             "edge_sparsity or scope='layer'")
        new_masks.append(sel)
    for t, a, sel in zip(group, alive, new_masks):
        if not bool(sel.any()):
            continue
        flat = effective_mask(t).flatten().cpu().clone()
        pos = a.flatten().cpu().nonzero().flatten()[sel]
        flat[pos] = False
        set_mask(t, flat.view(a.shape).to(a.device))


def _groups(found: list[Target], kind: str, scope: str) -> list[list[Target]]:
    """Targets of ``kind`` grouped by scope: all together, per ST block, or one per target."""
    out: dict[str, list[Target]] = {}
    for t in found:
        if t.kind == kind:
            out.setdefault({"global": "", "block": t.block, "layer": t.name}[scope], []).append(t)
    return list(out.values())


def prune_groups(found: list[Target], kinds: Iterable[str], scope: str, rate: dict[str, float],
                 random: bool = False, generator: torch.Generator | None = None) -> None:
    """Prune every scope group of each kind at that kind's ``rate`` (shared by :func:`prune` and IMP)."""
    check_scope(scope)
    for kind in kinds:
        for group in _groups(found, kind, scope):
            _prune_group(group, rate[kind], random, generator)


def _run(model: nn.Module, sparsity: float, scope: str, kinds, edge_sparsity: float | None,
         include_head: bool, random: bool, generator: torch.Generator | None) -> SparsityReport:
    kinds = normalize_kinds(kinds)
    rate = {"weight": check_sparsity(sparsity)}
    rate["edge"] = rate["weight"] if edge_sparsity is None else check_sparsity(edge_sparsity, "edge_sparsity")
    check_scope(scope)
    found = attach_masks(model, kinds, include_head=include_head)  # raises when there are no targets
    prune_groups(found, kinds, scope, rate, random, generator)
    return report(model, kinds, include_head=include_head)


def prune(model: nn.Module, sparsity: float, scope: str = "global", kinds: str | Iterable[str] = KINDS,
          edge_sparsity: float | None = None, include_head: bool = False) -> SparsityReport:
    r"""Prune ``model`` in place by magnitude, once.

    Attaches masks where missing, then removes the fraction ``sparsity`` of the kept weight entries and
    ``edge_sparsity`` of the kept edge entries with the smallest :math:`|\text{value}|`.

    Args:
        model (torch.nn.Module): The model, changed in place.
        sparsity (float): Fraction in ``[0, 1)`` of the remaining weight entries (and edges, unless
            ``edge_sparsity`` is given) to remove.
        scope (str, optional): ``'global'`` (rank all targets of a kind together), ``'block'`` (per ST
            block) or ``'layer'`` (each target separately). (default: :obj:`'global'`)
        kinds (str or tuple, optional): ``'weight'``, ``'edge'`` or both. (default: :obj:`('weight', 'edge')`)
        edge_sparsity (float, optional): Separate rate for edges. (default: :obj:`None`)
        include_head (bool, optional): Also prune head weights. (default: :obj:`False`)

    Returns:
        SparsityReport: The report after pruning.

    Raises:
        ValueError: On a sparsity outside ``[0, 1)``, an unknown scope or kind, or a model with no targets.
    """
    return _run(model, sparsity, scope, kinds, edge_sparsity, include_head, False, None)


def random_prune(model: nn.Module, sparsity: float, scope: str = "layer", kinds: str | Iterable[str] = KINDS,
                 edge_sparsity: float | None = None, include_head: bool = False,
                 generator: torch.Generator | None = None) -> SparsityReport:
    r"""Like :func:`prune` but removes uniformly random kept entries (a control); same counts per group.

    Args:
        generator (torch.Generator, optional): CPU random generator for reproducibility.
            (default: :obj:`None`)

    See :func:`prune` for the other arguments (here ``scope`` defaults to ``'layer'``).
    """
    return _run(model, sparsity, scope, kinds, edge_sparsity, include_head, True, generator)


def shuffle_masks(masks: dict[str, Tensor], generator: torch.Generator | None = None) -> dict[str, Tensor]:
    """Randomly permute every mask within its own tensor (same kept count per target; OpenLTH's control).

    Edge masks from :func:`~.masks.mask_state_dict` hold real entries only, so kept edges move only
    between real entries.
    """
    out = {}
    for name, m in masks.items():
        flat = m.flatten()
        out[name] = flat[torch.randperm(flat.numel(), generator=generator)].view(m.shape).clone()
    return out
