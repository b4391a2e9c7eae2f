r"""Figures of which connections survive (matplotlib, Agg; no display needed).

Every function builds a :class:`matplotlib.figure.Figure` directly (no ``pyplot`` state, so it is safe in
scripts, tests and threads), with labelled axes, joint names, a title naming the run, layer and sparsity, and
a colour bar where colour carries a value. :func:`to_png` renders a figure to PNG bytes and
:func:`save_figure` writes it atomically.

* :func:`skeleton_figure` — the layout's skeleton drawn from its 2-D template, surviving connections shaded
  by weight (bones solid, other links dashed, self-loops as joint discs), one panel per layer or per subset.
* :func:`heatmap_figure` — the adjacency of one layer, one panel per subset, joint names on both axes,
  removed real entries crossed out, entries that are not real left blank.
* :func:`survival_curves_figure` — the fraction of bones, self-loops, other links and long-range links kept
  against the sparsity of each level (lottery levels, ensemble experts, compared runs).
* :func:`sparsity_bars_figure` — per layer: weight, edge-entry and connection sparsity.
* :func:`rediscovery_figure` — precision and recall of bones among the kept connections per layer against
  what a random choice of the same size would give ("does pruning rediscover the skeleton?").
"""
from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.collections import LineCollection
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from ..atomic import atomic_write_bytes
from .edges import LayerEdges, SurvivalTable, summarize

__all__ = ["skeleton_figure", "heatmap_figure", "survival_curves_figure", "sparsity_bars_figure",
           "rediscovery_figure", "figures", "to_png", "save_figure"]

CMAP = "viridis"


def to_png(fig: Figure, dpi: int = 110) -> bytes:
    """Render ``fig`` to PNG bytes with the Agg canvas."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = 110) -> Path:
    """Write ``fig`` as a PNG to ``path`` atomically."""
    return atomic_write_bytes(path, to_png(fig, dpi))


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _short(name: str) -> str:
    """A layer name short enough for a panel title (``model.backbone.gcn.3.gcn`` → ``gcn.3.gcn``)."""
    parts = name.split(".")
    for i, p in enumerate(parts):
        if p.isdigit():
            return ".".join(parts[max(i - 1, 0):]) or name
    return name or "(model)"


def _grid(n: int, ncols: int = 4) -> tuple[int, int]:
    c = min(n, ncols)
    return math.ceil(n / c), c


# ----------------------------------------------------------------------------------------------------------
# skeleton
# ----------------------------------------------------------------------------------------------------------
def _draw_skeleton(ax: Any, L: LayerEdges, W: np.ndarray, real: np.ndarray, norm: Normalize, names: bool,
                   title: str) -> None:
    xy = np.asarray(L.layout.template_xy, dtype=float)
    V = L.num_nodes
    bones = L.bone_matrix()
    if bones is None:
        raise ValueError(f"layer {L.name} has no skeleton layout to draw on")
    und_w = W + W.T
    und_real = real | real.T
    und_kept = (W != 0) | (W.T != 0)
    faint: list = []
    kept: dict[bool, tuple[list, list]] = {True: ([], []), False: ([], [])}
    for v in range(V):
        for w in range(v + 1, V):
            if not und_real[v, w]:
                continue
            if und_kept[v, w]:
                kept[bool(bones[v, w])][0].append([xy[v], xy[w]])
                kept[bool(bones[v, w])][1].append(und_w[v, w])
            else:
                faint.append([xy[v], xy[w]])
    if faint:
        ax.add_collection(LineCollection(faint, colors="0.8", linewidths=0.5, linestyles=(0, (1, 2)), zorder=1))
    cmap = ScalarMappable(norm=norm, cmap=CMAP)
    for is_bone, (segs, vals) in ((False, kept[False]), (True, kept[True])):  # links under bones
        if segs:
            vals_a = np.asarray(vals)
            scale = 3.0 if is_bone else 1.6
            ax.add_collection(LineCollection(segs, colors=cmap.to_rgba(vals_a), alpha=1.0 if is_bone else 0.7,
                                             linewidths=0.6 + scale * vals_a / (norm.vmax or 1.0),
                                             linestyles="solid" if is_bone else (0, (3, 2)),
                                             zorder=3 if is_bone else 2))
    diag = np.diag(W)
    loop_kept = np.diag(real) & (diag != 0)
    ax.scatter(xy[:, 0], xy[:, 1], s=10, c="0.6", zorder=3, linewidths=0)
    if loop_kept.any():
        ax.scatter(xy[loop_kept, 0], xy[loop_kept, 1], s=18 + 50 * diag[loop_kept] / (norm.vmax or 1.0),
                   c=cmap.to_rgba(diag[loop_kept]), edgecolors="k", linewidths=0.4, zorder=4)
    if names:
        for i, n in enumerate(L.joint_names):
            ax.annotate(n, xy[i], fontsize=4.5, xytext=(2, 2), textcoords="offset points", color="0.25", zorder=5)
    pad = 0.08 * max(np.ptp(xy[:, 0]), np.ptp(xy[:, 1]), 1e-6)
    ax.set_xlim(xy[:, 0].min() - pad, xy[:, 0].max() + 3 * pad)
    ax.set_ylim(xy[:, 1].min() - pad, xy[:, 1].max() + pad)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel("template x")
    ax.set_ylabel("template y")
    ax.set_title(title, fontsize=7.5)


def skeleton_figure(table: SurvivalTable, per: str = "layer", layer: int = 0, title: str | None = None,
                    joint_names: bool = True) -> Figure:
    r"""The skeleton with the surviving connections shaded by weight.

    Args:
        table (SurvivalTable): What to draw.
        per (str, optional): ``'layer'`` (one panel per layer, a connection's weight summed over subsets) or
            ``'subset'`` (one panel per subset of layer ``layer``). (default: :obj:`"layer"`)
        layer (int, optional): The layer of ``per='subset'``. (default: :obj:`0`)
        title (str, optional): Figure title (default: the table's label).
        joint_names (bool, optional): Name the joints in the first panel. (default: :obj:`True`)

    Raises:
        ValueError: when a layer has no layout or no drawing template (naming the layer).
    """
    if per not in ("layer", "subset"):
        raise ValueError(f"skeleton_figure: per must be 'layer' or 'subset', got {per!r}")
    table.check_drawable()
    if per == "layer":
        panels = []
        for L in table.layers:
            cr, ck = L.connections()
            panels.append((L, np.abs(L.weight).sum(0), np.asarray(L.real.any(0)),
                           f"{_short(L.name)}\n{int(ck.sum())}/{int(cr.sum())} connections kept "
                           f"({_pct(1 - ck.sum() / max(cr.sum(), 1))} sparse)"))
    else:
        L = table.layers[layer]
        panels = [(L, np.abs(L.weight[k]), L.real[k],
                   f"{_short(L.name)} subset {k}\n{int(L.kept[k].sum())}/{int(L.real[k].sum())} entries kept "
                   f"({_pct(1 - L.kept[k].sum() / max(L.real[k].sum(), 1))} sparse)") for k in range(L.num_subsets)]
    vmax = max([float((W + W.T).max()) for _, W, _, _ in panels] + [1e-12])
    norm = Normalize(0.0, vmax)
    rows, cols = _grid(len(panels))
    fig = Figure(figsize=(3.4 * cols + 1.2, 3.9 * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for i, (L, W, real, t) in enumerate(panels):
        _draw_skeleton(axes.flat[i], L, W, real, norm, joint_names and i == 0, t)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    what = "per layer" if per == "layer" else f"per subset of {_short(table.layers[layer].name)}"
    fig.suptitle(f"{title or table.label}: surviving connections {what}\n(bones solid, other links dashed, "
                 f"removed: dotted grey)", fontsize=9)
    fig.colorbar(ScalarMappable(norm=norm, cmap=CMAP), ax=list(axes.flat), shrink=0.8,
                 label="|effective weight| of kept entries\n(both directions, summed over subsets)")
    return fig


# ----------------------------------------------------------------------------------------------------------
# heatmap
# ----------------------------------------------------------------------------------------------------------
def heatmap_figure(table: SurvivalTable, layer: int = 0, title: str | None = None) -> Figure:
    """Adjacency heatmaps of one layer, one panel per subset: ``|weight|`` of kept entries, removed real
    entries crossed out, entries that are not real blank; joint names on both axes."""
    L = table.layers[layer]
    K, V = L.num_subsets, L.num_nodes
    names = L.joint_names
    vmax = max(float(np.abs(L.weight).max()), 1e-12)
    norm = Normalize(0.0, vmax)
    cols = min(K, 3)
    rows = math.ceil(K / cols)
    side = 2.2 + 0.16 * V
    fig = Figure(figsize=(side * cols + 1.0, side * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    fs = 6 if V <= 20 else 4.5
    import matplotlib

    cmap = matplotlib.colormaps[CMAP].with_extremes(bad="white")
    for k in range(K):
        ax = axes.flat[k]
        img = np.where(L.real[k], np.abs(L.weight[k]), np.nan)
        ax.imshow(img, cmap=cmap, norm=norm, interpolation="nearest")
        removed = L.real[k] & ~L.kept[k]
        if removed.any():
            vv, ww = np.nonzero(removed)
            ax.scatter(ww, vv, marker="x", s=8, c="red", linewidths=0.5)
        ax.set_xticks(range(V))
        ax.set_yticks(range(V))
        ax.set_xticklabels(names, rotation=90, fontsize=fs)
        ax.set_yticklabels(names, fontsize=fs)
        ax.set_xlabel("target joint w")
        if k % cols == 0:
            ax.set_ylabel("source joint v")
        n_real, n_kept = int(L.real[k].sum()), int(L.kept[k].sum())
        ax.set_title(f"subset {k}: {n_kept}/{n_real} kept ({_pct(1 - n_kept / max(n_real, 1))} sparse)",
                     fontsize=7)
    for ax in list(axes.flat)[K:]:
        ax.set_visible(False)
    fig.suptitle(f"{title or table.label}: adjacency of {L.name or '(model)'} (red x: removed, blank: not a "
                 f"real entry)", fontsize=9)
    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=list(axes.flat), shrink=0.8,
                 label="|effective weight| A[k, v, w]")
    return fig


# ----------------------------------------------------------------------------------------------------------
# curves and bars
# ----------------------------------------------------------------------------------------------------------
_CLASSES = (("bones", "bones", "o-"), ("self_loops", "self-loops", "s-"), ("links", "other links", "^-"),
            ("long_range", "long-range links (hop ≥ 2)", "v--"))


def survival_curves_figure(comparison: Mapping[str, Any], title: str = "") -> Figure:
    """Fraction of the connections of each class kept against the edge-entry sparsity of each level
    (``comparison`` from :func:`~.edges.compare`); the labels of the levels annotate the points."""
    levels = comparison["levels"]
    labels = list(levels)
    xs = np.array([100 * levels[lab]["entry_sparsity"] for lab in labels])
    order = np.argsort(xs, kind="stable")
    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    ax = fig.subplots()
    for key, name, style in _CLASSES:
        ys = [levels[lab]["kept_fraction"][key] for lab in labels]
        if any(y is None for y in ys):
            continue
        ax.plot(xs[order], 100 * np.asarray(ys, dtype=float)[order], style, label=name, ms=4)
    ax.plot(xs[order], 100 - np.array([100 * levels[lab]["connection_sparsity"] for lab in labels])[order], "k:",
            label="all connections", lw=1)
    for lab, x in zip(labels, xs):
        ax.annotate(lab, (x, 101), fontsize=6, rotation=45, ha="left", va="bottom")
    ax.set_xlabel("edge sparsity of the level (% of real entries removed)")
    ax.set_ylabel("connections kept (%)")
    ax.set_ylim(-3, 118)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    ax.set_title(f"{title}: which connections survive across levels", fontsize=9)
    return fig


def sparsity_bars_figure(table: SurvivalTable, summary: Mapping[str, Any] | None = None,
                         title: str | None = None) -> Figure:
    """Per-layer bars: weight sparsity (the layer's block), edge-entry sparsity, connection sparsity."""
    s = summary or summarize(table)
    layers = s["layers"]
    names = [_short(x["layer"]) for x in layers]
    series = [("weights (block)", [x["weight_sparsity"] for x in layers]),
              ("edge entries", [x["entries"]["sparsity"] for x in layers]),
              ("connections", [x["connections"]["sparsity"] for x in layers])]
    x = np.arange(len(layers))
    width = 0.27
    fig = Figure(figsize=(max(5.0, 0.7 * len(layers) + 2.5), 3.8), layout="constrained")
    ax = fig.subplots()
    for i, (name, vals) in enumerate(series):
        ax.bar(x + (i - 1) * width, [100 * (v or 0.0) for v in vals], width, label=name)
    ax.set_xticks(x)
    ax.set_xticklabels(names, rotation=45, ha="right", fontsize=7)
    ax.set_xlabel("layer")
    ax.set_ylabel("sparsity (% removed)")
    ax.set_ylim(0, 105)
    ax.legend(fontsize=7)
    o = s["overall"]
    ax.set_title(f"{title or table.label}: sparsity per layer (weights {_pct(o['weights']['sparsity'])}, edges "
                 f"{_pct(o['entries']['sparsity'])}, connections {_pct(o['connections']['sparsity'])})", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return fig


def rediscovery_figure(summary: Mapping[str, Any], title: str | None = None) -> Figure:
    """Per layer and overall: precision and recall of bones among the kept (non-self-loop) connections, next
    to their expectation for a random choice of the same number of connections."""
    rows = [(_short(x["layer"]), x["connections"]["rediscovery"]) for x in summary["layers"]]
    rows.append(("overall", summary["overall"]["connections"]["rediscovery"]))
    rows = [(n, r) for n, r in rows if r is not None]
    if not rows:
        raise ValueError(f"{summary.get('label', '')}: no layer has a skeleton layout; bones are unknown")
    x = np.arange(len(rows))
    fig = Figure(figsize=(max(5.5, 0.8 * len(rows) + 2.5), 3.8), layout="constrained")
    ax = fig.subplots()
    w = 0.2
    for i, (key, name, hatch) in enumerate((("precision", "precision", ""),
                                            ("expected_precision", "precision, random choice", "//"),
                                            ("recall", "recall", ""),
                                            ("expected_recall", "recall, random choice", "//"))):
        ax.bar(x + (i - 1.5) * w, [100 * (r[key] or 0.0) for _, r in rows], w, label=name, hatch=hatch,
               color=("C0" if "precision" in key else "C1"), alpha=1.0 if not hatch else 0.45)
    ax.set_xticks(x)
    ax.set_xticklabels([n for n, _ in rows], rotation=45, ha="right", fontsize=7)
    ax.set_xlabel("layer")
    ax.set_ylabel("precision / recall of bones (%)")
    ax.set_ylim(0, 125)
    ax.legend(fontsize=6, ncol=4, loc="upper center")
    o = rows[-1][1]
    lift = "n/a" if o["lift"] is None else f"{o['lift']:.2f}x"
    ax.set_title(f"{title or summary.get('label', '')}: does pruning rediscover the skeleton? (overall precision "
                 f"{_pct(o['precision'])} vs {_pct(o['expected_precision'])} at random, lift {lift})", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return fig


def figures(table: SurvivalTable, summary: Mapping[str, Any] | None = None, title: str | None = None,
            heatmaps: Sequence[int] | None = None) -> list[tuple[str, str, Figure]]:
    """The standard figures of one table: ``[(file stem, caption, figure), ...]``."""
    s = summary or summarize(table)
    t = title or table.label
    out = [("skeleton_layers", "Surviving connections per layer, shaded by weight.", skeleton_figure(table, title=t)),
           ("skeleton_subsets", "Surviving entries per subset of the first layer.",
            skeleton_figure(table, per="subset", title=t)),
           ("sparsity_bars", "Weight, edge-entry and connection sparsity per layer.",
            sparsity_bars_figure(table, s, t))]
    if s["overall"]["connections"]["rediscovery"] is not None:
        out.append(("rediscovery", "Precision and recall of bones among kept connections vs a random choice.",
                    rediscovery_figure(s, t)))
    for i in (range(len(table.layers)) if heatmaps is None else heatmaps):
        out.append((f"heatmap_layer{i}", f"Adjacency heatmap of {table.layers[i].name or '(model)'}.",
                    heatmap_figure(table, i, t)))
    return out
