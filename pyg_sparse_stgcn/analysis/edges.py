r"""Which skeleton connections survive: one table over the *real* edge entries of a model, and summaries.

Every graph unit that exposes the edge hook of :class:`~pyg_sparse_stgcn.nn.STGCNConv` — ``edge_index``,
``edge_real``, ``edge_weight_base()``, ``enable_edge_gate()``, ``adjacency()`` and ``layout`` — is read through
that interface only (any backbone whose units offer it is analysed the same way). Only **real** entries
:math:`(k, v, w)` are rows: an entry whose base weight can never be non-zero (a zero of :math:`A_k` under
``adaptive=None`` / ``'importance'``) is never part of a target. A **connection** :math:`(v, w)` of a layer
survives when any subset keeps one of its real entries.

Summaries (:func:`summarize`) count, per layer and overall, for entries and for connections: the kept ones,
the bones (physical edges of the layout, either direction), self-loops, other links and long-range links
(hop distance :math:`\ge 2` on the skeleton), the left/right symmetry of what survives, the agreement
(Jaccard index) between subsets and between layers, and whether pruning rediscovers the skeleton (precision
and recall of bones among the kept connections against a random choice of the same size).
:func:`compare` does the same across the levels of a lottery run, the experts of an ensemble or several runs.
"""
from __future__ import annotations

import csv
import importlib
import io
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..atomic import atomic_write_json, atomic_write_text
from ..sparsity.masks import get_mask
from ..sparsity.report import report as sparsity_report
from ..sparsity.targets import targets

__all__ = ["LayerEdges", "SurvivalTable", "survival", "survival_levels", "summarize", "compare",
           "register_run_loader", "COLUMNS"]

#: Columns of the survival table (:meth:`SurvivalTable.rows`), in order.
COLUMNS = ("layer", "block", "subset", "source", "target", "source_name", "target_name", "weight", "base_weight",
           "kept", "score", "is_bone", "is_self_loop", "hop", "side")

#: ``loader(path) -> {label: model}``: how a run directory or checkpoint becomes models (set by the engine).
_RUN_LOADER: Callable[[Path], Mapping[str, nn.Module]] | None = None


def register_run_loader(loader: Callable[[Path], Mapping[str, nn.Module]]) -> None:
    """Set how :func:`survival` / :func:`survival_levels` open a path (a run directory or checkpoint).

    The run directory format belongs to the engine, which registers its loader when its ``analyze`` mode is
    imported; the analysis package itself never imports the engine. ``loader(path)`` returns ``{label: model}``
    in order: the run's final model first, then its lottery levels or ensemble experts when it has them.
    """
    global _RUN_LOADER
    _RUN_LOADER = loader


def _load(path: str | os.PathLike) -> dict[str, nn.Module]:
    if _RUN_LOADER is None:  # the engine registers its loader on import (a plug-in, not a static dependency)
        importlib.import_module("pyg_sparse_stgcn.engine.modes.analyze")
    assert _RUN_LOADER is not None
    return dict(_RUN_LOADER(Path(path)))


# ----------------------------------------------------------------------------------------------------------
# the skeleton: hops, sides, mirror joints
# ----------------------------------------------------------------------------------------------------------
def _hops(layout: Any, V: int) -> np.ndarray | None:
    """``(V, V)`` hop distances on the layout's bones (-1: unreachable); :obj:`None` without a layout."""
    if layout is None:
        return None
    adj: list[list[int]] = [[] for _ in range(V)]
    for i, j in layout.inward:
        adj[i].append(j)
        adj[j].append(i)
    out = np.full((V, V), -1, dtype=np.int64)
    for s in range(V):
        out[s, s] = 0
        frontier = [s]
        while frontier:
            nxt = []
            for u in frontier:
                for n in adj[u]:
                    if out[s, n] < 0:
                        out[s, n] = out[s, u] + 1
                        nxt.append(n)
            frontier = nxt
    return out


def joint_side(name: str) -> str:
    """``'left'``, ``'right'`` or ``'center'`` from a joint name (``left_*`` / ``*_left`` / ``l_*`` ...)."""
    n = name.lower()
    for side, keys in (("left", ("left", "l_")), ("right", ("right", "r_"))):
        if n.startswith(keys) or n.endswith("_" + side) or f"_{side}_" in n:
            return side
    return "center"


def _pair_side(a: str, b: str) -> str:
    s = {a, b} - {"center"}
    return "center" if not s else ("cross" if len(s) == 2 else s.pop())


def _mirror(names: tuple[str, ...]) -> list[int] | None:
    """Index of each joint's mirror (itself for centre joints); :obj:`None` when no name is lateral."""
    index = {n: i for i, n in enumerate(names)}
    out, lateral = [], False
    for i, n in enumerate(names):
        swapped = n.replace("left", "\0").replace("right", "left").replace("\0", "right")
        j = index.get(swapped, i)
        lateral |= j != i
        out.append(j)
    return out if lateral else None


# ----------------------------------------------------------------------------------------------------------
# one layer
# ----------------------------------------------------------------------------------------------------------
@dataclass
class LayerEdges:
    r"""The edge entries of one graph unit as dense :math:`(K, V, V)` arrays (``[k, v, w]``: ``v`` → ``w``).

    Attributes:
        name (str): Qualified module name.
        block (str): Enclosing ST block.
        layout (Layout, optional): The unit's skeleton layout (:obj:`None` for a bare adjacency array).
        real (numpy.ndarray): Boolean, the real entries.
        kept (numpy.ndarray): Boolean, the real entries kept (a subset of ``real``).
        weight (numpy.ndarray): Effective weight (base × gate × mask; 0 where removed or not real).
        base (numpy.ndarray): Unmasked weight (base × gate before the mask), the magnitude pruning ranks.
        score (numpy.ndarray, optional): The mask's score where the mask is learned (NaN off the candidates).
        masked (bool): Whether a mask (or a folded gate) decides what is kept; dense models have none.
    """

    name: str
    block: str
    layout: Any
    real: np.ndarray
    kept: np.ndarray
    weight: np.ndarray
    base: np.ndarray
    score: np.ndarray | None = None
    masked: bool = False
    _hop: np.ndarray | None = field(default=None, repr=False)

    @property
    def num_subsets(self) -> int:
        return int(self.real.shape[0])

    @property
    def num_nodes(self) -> int:
        return int(self.real.shape[-1])

    @property
    def joint_names(self) -> tuple[str, ...]:
        if self.layout is not None:
            return tuple(self.layout.joint_names)
        return tuple(f"joint_{i}" for i in range(self.num_nodes))

    @property
    def hops(self) -> np.ndarray | None:
        if self._hop is None:
            self._hop = _hops(self.layout, self.num_nodes)
        return self._hop

    def bone_matrix(self) -> np.ndarray | None:
        """``(V, V)`` boolean: physical bones, either direction (:obj:`None` without a layout)."""
        if self.layout is None:
            return None
        b = np.zeros((self.num_nodes,) * 2, dtype=bool)
        for i, j in self.layout.inward:
            b[i, j] = b[j, i] = True
        return b

    def connections(self) -> tuple[np.ndarray, np.ndarray]:
        """``(real, kept)`` boolean ``(V, V)`` connections: a connection is kept when any subset keeps it."""
        return np.asarray(self.real.any(0)), np.asarray(self.kept.any(0))

    def connection_weight(self) -> np.ndarray:
        """``(V, V)``: summed magnitude of the kept entries of each connection."""
        return np.abs(self.weight).sum(0)


def _layer(t: Any) -> LayerEdges:
    m = t.module
    src, dst = (x.detach().cpu().numpy() for x in m.edge_index)
    real_e = m.edge_real.detach().cpu().bool()
    K = int(real_e.size(0))
    V = int(m.adjacency().shape[-1])
    with torch.no_grad():
        base_e = t.magnitude().detach().float().cpu()
    mask = get_mask(m, "edge_gate")
    masked = mask is not None
    if mask is not None:
        cur = mask.current().detach().cpu().bool()
    else:
        gate = getattr(m, "edge_gate", None)
        masked = isinstance(gate, Tensor) and bool((gate == 0).any())
        cur = (gate.detach().cpu() != 0) if isinstance(gate, Tensor) else torch.ones_like(real_e)
    kept_e = cur & real_e
    flat = src * V + dst

    def scatter(values: Tensor, fill: float, dtype: Any) -> np.ndarray:
        out = np.full((K, V * V), fill, dtype=dtype)
        out[:, flat] = values.numpy()
        return out.reshape(K, V, V)

    real = scatter(real_e, False, bool)
    kept = scatter(kept_e, False, bool)
    base = scatter(base_e, 0.0, np.float64)
    weight = np.where(kept, base, 0.0)
    score = None
    if mask is not None and mask.score is not None:  # mask.has_score
        score = scatter(mask.score.detach().float().cpu(), math.nan, np.float64)
    return LayerEdges(t.module_name, t.block, getattr(m, "layout", None), real, kept, weight, base, score, masked)


# ----------------------------------------------------------------------------------------------------------
# the table
# ----------------------------------------------------------------------------------------------------------
@dataclass
class SurvivalTable:
    """The real edge entries of a model, per layer (:class:`LayerEdges`), with the weight sparsity per block.

    Attributes:
        layers (list[LayerEdges]): One per graph unit, in module order.
        label (str): What was analysed (a run, a level, an expert).
        weight_blocks (dict): ``{block: {"total", "kept", "sparsity"}}`` of the weight targets.
    """

    layers: list[LayerEdges]
    label: str = ""
    weight_blocks: dict[str, dict[str, Any]] = field(default_factory=dict)

    def rows(self) -> list[dict[str, Any]]:
        """One dict per real entry :math:`(layer, k, v, w)` with the keys of :data:`COLUMNS`."""
        out = []
        for L in self.layers:
            names, hops, bones = L.joint_names, L.hops, L.bone_matrix()
            sides = [joint_side(n) for n in names] if L.layout is not None else None
            for k, v, w in zip(*np.nonzero(L.real)):
                k, v, w = int(k), int(v), int(w)
                s = None if L.score is None else float(L.score[k, v, w])
                out.append({
                    "layer": L.name, "block": L.block, "subset": k, "source": v, "target": w,
                    "source_name": names[v], "target_name": names[w], "weight": float(L.weight[k, v, w]),
                    "base_weight": float(L.base[k, v, w]), "kept": bool(L.kept[k, v, w]), "score": s,
                    "is_bone": None if bones is None else bool(bones[v, w]), "is_self_loop": v == w,
                    "hop": None if hops is None or hops[v, w] < 0 else int(hops[v, w]),
                    "side": None if sides is None else _pair_side(sides[v], sides[w]),
                })
        return out

    def to_csv(self, path: str | os.PathLike | None = None) -> str:
        """The table as CSV text (empty cells for :obj:`None`); written atomically to ``path`` when given."""
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        for r in self.rows():
            writer.writerow({k: ("" if v is None else v) for k, v in r.items()})
        text = buf.getvalue()
        if path is not None:
            atomic_write_text(path, text)
        return text

    def to_json(self, path: str | os.PathLike) -> Path:
        """Write ``{"label", "columns", "rows"}`` as JSON atomically."""
        return atomic_write_json(path, {"label": self.label, "columns": list(COLUMNS), "rows": self.rows()},
                                 indent=None)

    def summary(self) -> dict[str, Any]:
        """:func:`summarize` of this table."""
        return summarize(self)

    def check_drawable(self, where: str = "") -> None:
        """Raise :class:`ValueError` when a layer has no layout or its layout no 2-D drawing template."""
        for L in self.layers:
            lay = L.layout
            xy = getattr(lay, "template_xy", None) if lay is not None else None
            if lay is None:
                raise ValueError(f"{where or self.label}: layer {L.name} was built from a bare adjacency array: "
                                 f"it has no skeleton layout, so no drawing template (template_xy) to draw on")
            if xy is None or np.asarray(xy).shape != (L.num_nodes, 2):
                raise ValueError(f"{where or self.label}: layout {getattr(lay, 'name', '?')!r} of layer {L.name} "
                                 f"has no drawing template (template_xy of shape ({L.num_nodes}, 2))")


def _weight_blocks(model: nn.Module) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for row in sparsity_report(model, kinds="weight").targets:
        b = out.setdefault(row["block"], {"total": 0, "kept": 0})
        b["total"] += row["total"]
        b["kept"] += row["kept"]
    return {k: _c(b["total"], b["kept"]) for k, b in out.items()}


def _table(model: nn.Module, label: str) -> SurvivalTable:
    for module in model.modules():  # scored masks: bring thresholds up to date, as the sparsity report does
        update = getattr(module, "update_thresholds", None)
        if callable(update):
            update()
    units = [t for t in targets(model, "edge", include_head=True)
             if callable(getattr(t.module, "adjacency", None)) and isinstance(getattr(t.module, "edge_index", None),
                                                                              Tensor)]
    if not units:
        raise ValueError(f"{label or type(model).__name__}: the model has no graph unit with the edge hook "
                         f"(edge_index, edge_real, edge_weight_base(), enable_edge_gate(), adjacency()); nothing "
                         f"to analyse")
    return SurvivalTable([_layer(t) for t in units], label, _weight_blocks(model))


def survival(model_or_run_dir: nn.Module | str | os.PathLike, label: str = "") -> SurvivalTable:
    r"""The survival table of a model's real edge entries.

    Args:
        model_or_run_dir (torch.nn.Module or str): A model (any module whose graph units expose the edge hook;
            masked, folded or dense), or a run directory / checkpoint (its final model, opened through the
            engine's loader; see :func:`register_run_loader`).
        label (str, optional): Name of what is analysed (default: the path, or ``"model"``).

    Returns:
        SurvivalTable: :meth:`~SurvivalTable.rows` has one row per real entry (``layer``, ``subset``, source
        and target joint with names, effective ``weight``, ``kept``, ``score``, ``is_bone``, ``hop``,
        ``side``); save it with :meth:`~SurvivalTable.to_csv` / :meth:`~SurvivalTable.to_json`.

    Example:
        >>> from pyg_sparse_stgcn.graph import SkeletonGraph
        >>> from pyg_sparse_stgcn.nn import STGCNConv
        >>> conv = STGCNConv(3, 8, SkeletonGraph("coco", "spatial"), adaptive=None)
        >>> len(survival(conv).rows()) == conv.num_real_entries
        True
    """
    if isinstance(model_or_run_dir, nn.Module):
        return _table(model_or_run_dir, label or "model")
    models = _load(model_or_run_dir)
    first = next(iter(models))
    return _table(models[first], label or str(model_or_run_dir))


def _split(model: nn.Module) -> dict[str, nn.Module] | None:
    experts = getattr(model, "experts", None)
    if not isinstance(experts, nn.ModuleList):
        return None
    sp = list(getattr(model, "sparsities", []) or [])
    out = {}
    for i, e in enumerate(experts):
        name = f"expert {i} ({100 * sp[i]:g}%)" if i < len(sp) else f"expert {i}"
        out[name] = getattr(e, "model", e)
    return out


def survival_levels(models: nn.Module | Mapping[str, nn.Module] | str | os.PathLike) -> dict[str, SurvivalTable]:
    """One :class:`SurvivalTable` per level: the experts of an ensemble (a model with an ``experts`` list),
    the given ``{label: model}``, or what a run directory holds besides its final model (lottery levels,
    ensemble experts). Empty when there is only one model."""
    if isinstance(models, nn.Module):
        parts = _split(models)
        return {} if parts is None else {k: _table(m, k) for k, m in parts.items()}
    if not isinstance(models, Mapping):
        loaded = _load(models)
        first = next(iter(loaded))
        rest = {k: m for k, m in loaded.items() if k != first}
        return survival_levels(rest) if rest else survival_levels(loaded[first])
    return {k: _table(m, k) for k, m in models.items()}


# ----------------------------------------------------------------------------------------------------------
# summaries
# ----------------------------------------------------------------------------------------------------------
def _c(total: int, kept: int) -> dict[str, Any]:
    return {"total": int(total), "kept": int(kept), "sparsity": 0.0 if not total else 1.0 - kept / total}


def jaccard(a: np.ndarray, b: np.ndarray) -> float | None:
    """Jaccard index of two boolean arrays (:obj:`None` when both are empty)."""
    union = int((a | b).sum())
    return None if union == 0 else int((a & b).sum()) / union


def _hypergeom_sf(N: int, K: int, n: int, x: int) -> float:
    """P(X >= x) for X ~ Hypergeometric(population N, K successes, n draws)."""
    if n == 0 or x <= 0:
        return 1.0
    den = math.comb(N, n)
    return float(sum(math.comb(K, i) * math.comb(N - K, n - i) for i in range(x, min(K, n) + 1)) / den)


def rediscovery(real: np.ndarray, kept: np.ndarray, bones: np.ndarray | None) -> dict[str, Any] | None:
    r"""Does pruning rediscover the skeleton? Over the real non-self-loop connections :math:`R` with bones
    :math:`B \subseteq R` and kept :math:`S`: precision :math:`|S\cap B|/|S|`, recall :math:`|S\cap B|/|B|`,
    their expectation for a uniformly random :math:`S` of the same size (:math:`|B|/|R|`, :math:`|S|/|R|`),
    the lift (precision over its expectation) and the hypergeometric p-value of finding at least that many
    bones by chance. :obj:`None` without a layout."""
    if bones is None:
        return None
    off = ~np.eye(real.shape[-1], dtype=bool)
    R, S = real & off, kept & real & off
    B = bones & R
    return _rediscovery_stats(int(R.sum()), int(B.sum()), int(S.sum()), int((S & B).sum()))


def _rediscovery_stats(nR: int, nB: int, nS: int, hit: int) -> dict[str, Any]:
    """The :func:`rediscovery` figures from its counts (one layer's, or pooled over layers)."""
    p = hit / nS if nS else None
    ep = nB / nR if nR else None
    return {"candidates": nR, "bones": nB, "kept": nS, "bones_kept": hit, "precision": p,
            "recall": hit / nB if nB else None, "expected_precision": ep, "expected_recall": nS / nR if nR else None,
            "lift": p / ep if p is not None and ep else None, "p_value": _hypergeom_sf(nR, nB, nS, hit) if nR else None,
            "trivial": nR == nB}


def _symmetry(pairs: set[tuple], real: set[tuple], mirror: Callable[[tuple], tuple]) -> dict[str, Any] | None:
    """Among kept lateral connections whose mirror is real, the fraction whose mirror is kept too."""
    lateral = [p for p in pairs if mirror(p) != p and mirror(p) in real]
    if not lateral:
        return None
    both = sum(1 for p in lateral if mirror(p) in pairs)
    return {"lateral_kept": len(lateral), "mirrored": both, "symmetry": both / len(lateral)}


def _layer_summary(L: LayerEdges) -> dict[str, Any]:
    V = L.num_nodes
    eye = np.eye(V, dtype=bool)
    bones = L.bone_matrix()
    hops = L.hops
    classes: dict[str, np.ndarray | None] = {
        "bones": bones, "self_loops": eye,
        "links": None if bones is None else ~bones & ~eye,
        "long_range": None if hops is None else hops >= 2,
    }
    ent: dict[str, Any] = _c(L.real.sum(), L.kept.sum())
    creal, ckept = L.connections()
    con: dict[str, Any] = _c(creal.sum(), ckept.sum())
    for name, sel in classes.items():
        ent[name] = None if sel is None else _c((L.real & sel).sum(), (L.kept & sel).sum())
        con[name] = None if sel is None else _c((creal & sel).sum(), (ckept & sel).sum())
    ent["subsets"] = [_c(L.real[k].sum(), L.kept[k].sum()) for k in range(L.num_subsets)]
    ent["jaccard_subsets"] = [[jaccard(L.kept[a], L.kept[b]) for b in range(L.num_subsets)]
                              for a in range(L.num_subsets)]
    mirror = _mirror(L.joint_names) if L.layout is not None else None
    if mirror is not None:
        kept_pairs = {(int(v), int(w)) for v, w in zip(*np.nonzero(ckept & ~eye))}
        real_pairs = {(int(v), int(w)) for v, w in zip(*np.nonzero(creal & ~eye))}
        con["symmetry"] = _symmetry(kept_pairs, real_pairs, lambda p: (mirror[p[0]], mirror[p[1]]))
    else:
        con["symmetry"] = None
    con["rediscovery"] = rediscovery(creal, ckept, bones)
    return {"layer": L.name, "block": L.block, "subsets": L.num_subsets, "joints": V, "masked": L.masked,
            "weight_sparsity": None, "entries": ent, "connections": con}


def _sum(parts: list[dict | None]) -> dict[str, Any] | None:
    present = [p for p in parts if p is not None]
    if len(present) < len(parts) or not parts:
        return None
    return _c(sum(p["total"] for p in present), sum(p["kept"] for p in present))


def summarize(table: SurvivalTable) -> dict[str, Any]:
    """Per-layer and overall counts for entries and connections (see the module docstring).

    Returns:
        dict: ``label``, ``layers`` (per layer: ``entries`` and ``connections``, each with ``total``, ``kept``,
        ``sparsity`` and per class ``bones``, ``self_loops``, ``links``, ``long_range``; entries add
        ``subsets`` and ``jaccard_subsets``; connections add ``symmetry`` and ``rediscovery``), ``overall``
        (the same summed over layers, with ``symmetry`` and ``rediscovery`` pooled over the layers'
        connections) and ``jaccard_layers`` (kept connections of every pair of layers).
    """
    layers = [_layer_summary(L) for L in table.layers]
    for s in layers:
        wb = table.weight_blocks.get(s["block"])
        s["weight_sparsity"] = None if wb is None else wb["sparsity"]
    overall: dict[str, Any] = {}
    for kind in ("entries", "connections"):
        o: dict[str, Any] = _c(sum(s[kind]["total"] for s in layers), sum(s[kind]["kept"] for s in layers))
        for name in ("bones", "self_loops", "links", "long_range"):
            o[name] = _sum([s[kind][name] for s in layers])
        overall[kind] = o
    # pooled symmetry and rediscovery
    sym = [s["connections"]["symmetry"] for s in layers]
    if sym and all(x is not None for x in sym):
        lat = sum(x["lateral_kept"] for x in sym)
        mir = sum(x["mirrored"] for x in sym)
        overall["connections"]["symmetry"] = {"lateral_kept": lat, "mirrored": mir,
                                              "symmetry": mir / lat if lat else None}
    else:
        overall["connections"]["symmetry"] = None
    red = [s["connections"]["rediscovery"] for s in layers]
    if red and all(r is not None for r in red):
        overall["connections"]["rediscovery"] = _rediscovery_stats(
            *(sum(r[k] for r in red) for k in ("candidates", "bones", "kept", "bones_kept")))
    else:
        overall["connections"]["rediscovery"] = None
    kept = [L.connections()[1] for L in table.layers]
    jl = [[jaccard(a, b) if a.shape == b.shape else None for b in kept] for a in kept]
    adjacent = [j for j in (jl[i][i + 1] for i in range(len(kept) - 1)) if j is not None]
    wtot = sum(b["total"] for b in table.weight_blocks.values())
    wkept = sum(b["kept"] for b in table.weight_blocks.values())
    overall["weights"] = _c(wtot, wkept)
    return {"label": table.label, "layers": layers, "overall": overall, "jaccard_layers": jl,
            "jaccard_adjacent_layers_mean": sum(adjacent) / len(adjacent) if adjacent else None,
            "masked": any(L.masked for L in table.layers)}


def _kept_set(table: SurvivalTable) -> np.ndarray:
    return np.stack([L.connections()[1] for L in table.layers]) if table.layers else np.zeros((0, 0, 0), bool)


def compare(tables: Mapping[str, SurvivalTable]) -> dict[str, Any]:
    """Compare the connections kept by several tables (lottery levels, ensemble experts, runs).

    Layers are matched by position; tables must have the same number of layers and joints.

    Returns:
        dict: ``labels``; ``levels`` (per label: ``entry_sparsity``, ``connection_sparsity``, the fraction
        kept of bones, self-loops, links and long-range connections, and ``rediscovery``); ``jaccard`` (kept
        connections, label × label); ``connections`` (one row per real connection of any table: ``layer``,
        ``source``, ``target``, names, ``is_bone``, ``hop`` and ``kept`` per label; what survives at every
        level).

    Raises:
        ValueError: when the tables differ in layers or joints.
    """
    labels = list(tables)
    if not labels:
        raise ValueError("compare: nothing to compare")
    ref = tables[labels[0]]
    shape = [(L.num_nodes, L.num_subsets) for L in ref.layers]
    for lab in labels[1:]:
        other = [(L.num_nodes, L.num_subsets) for L in tables[lab].layers]
        if [s[0] for s in other] != [s[0] for s in shape]:
            raise ValueError(f"compare: {lab!r} has {len(other)} graph layers over {sorted({s[0] for s in other})} "
                             f"joints but {labels[0]!r} has {len(shape)} over {sorted({s[0] for s in shape})}; "
                             f"only models of the same architecture and skeleton can be compared")
    summaries = {lab: summarize(t) for lab, t in tables.items()}
    levels = {}
    for lab, s in summaries.items():
        o = s["overall"]
        frac = {name: (None if o["connections"][name] is None or not o["connections"][name]["total"]
                       else o["connections"][name]["kept"] / o["connections"][name]["total"])
                for name in ("bones", "self_loops", "links", "long_range")}
        levels[lab] = {"entry_sparsity": o["entries"]["sparsity"], "connection_sparsity": o["connections"]["sparsity"],
                       "weight_sparsity": o["weights"]["sparsity"] if o["weights"]["total"] else None,
                       "kept_fraction": frac, "rediscovery": o["connections"]["rediscovery"],
                       "symmetry": o["connections"]["symmetry"]}
    kept = {lab: _kept_set(t) for lab, t in tables.items()}
    jac = [[jaccard(kept[a], kept[b]) for b in labels] for a in labels]
    rows = []
    real_any = np.stack([L.connections()[0] for L in ref.layers])
    for lab in labels[1:]:
        real_any = real_any | np.stack([L.connections()[0] for L in tables[lab].layers])
    bones = [L.bone_matrix() for L in ref.layers]
    for li, v, w in zip(*np.nonzero(real_any)):
        L = ref.layers[li]
        hops = L.hops
        rows.append({"layer": L.name, "source": int(v), "target": int(w), "source_name": L.joint_names[v],
                     "target_name": L.joint_names[w],
                     "is_bone": None if bones[li] is None else bool(bones[li][v, w]),
                     "hop": None if hops is None or hops[v, w] < 0 else int(hops[v, w]),
                     "kept": {lab: bool(kept[lab][li, v, w]) for lab in labels}})
    return {"labels": labels, "levels": levels, "jaccard": jac, "connections": rows, "summaries": summaries}
