r"""Analysing pruned adjacency structures: which skeleton connections survive, and where.

* :mod:`.edges` — :func:`~.edges.survival` (one row per real edge entry of a model or run),
  :func:`~.edges.summarize` (per layer and overall, entries and connections) and :func:`~.edges.compare`
  (across lottery levels, ensemble experts or runs).
* :mod:`.plots` — skeleton drawings, adjacency heatmaps, survival curves, sparsity and rediscovery bars.
* :mod:`.html` — one self-contained HTML page.

:func:`analyze` writes all of it for one model (``survival.csv``/``.json``, ``summary.json``, ``figures/``,
``index.html``); :func:`analyze_run` does so for a run directory or checkpoint under ``RUN_DIR/analysis/``,
and :func:`compare_runs` for several runs. The analysis package reads models through the edge hook only and
never imports the engine: paths are opened by the loader the engine registers
(:func:`~.edges.register_run_loader`).
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from ..atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from .edges import SurvivalTable, _load, compare, register_run_loader, summarize, survival, survival_levels

__all__ = ["survival", "survival_levels", "summarize", "compare", "analyze", "analyze_run", "compare_runs",
           "default_out_dir", "summary_text", "register_run_loader", "SurvivalTable"]


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _kk(c: Mapping[str, Any] | None) -> str:
    return "n/a" if c is None else f"{c['kept']:,}/{c['total']:,}"


def summary_text(summary: Mapping[str, Any], comparison: Mapping[str, Any] | None = None) -> str:
    """A few lines for the terminal: edges and connections kept, per class, symmetry, rediscovery, levels."""
    o = summary["overall"]
    e, c = o["entries"], o["connections"]
    layers = summary["layers"]
    lines = [f"{summary['label']}: {len(layers)} graph layers, {layers[0]['joints'] if layers else 0} joints, "
             f"{layers[0]['subsets'] if layers else 0} subsets" + ("" if summary["masked"] else " (dense: no mask)"),
             f"edge entries {_kk(e)} kept ({_pct(e['sparsity'])} removed); connections {_kk(c)} kept "
             f"({_pct(c['sparsity'])} removed)",
             f"  connections kept: bones {_kk(c['bones'])}, self-loops {_kk(c['self_loops'])}, other links "
             f"{_kk(c['links'])}, long-range (hop >= 2) {_kk(c['long_range'])}"]
    if o["weights"]["total"]:
        lines.append(f"  weights {_kk(o['weights'])} kept ({_pct(o['weights']['sparsity'])} removed)")
    sym = c.get("symmetry")
    if sym:
        lines.append(f"  left/right symmetry: {sym['mirrored']}/{sym['lateral_kept']} kept lateral connections "
                     f"have their mirror kept ({_pct(sym['symmetry'])})")
    r = c.get("rediscovery")
    if r and not r["trivial"]:
        lift = "n/a" if r["lift"] is None else f"{r['lift']:.2f}x"
        pv = "n/a" if r["p_value"] is None else f"{r['p_value']:.3g}"
        lines.append(f"  rediscovers the skeleton? bones are {_pct(r['precision'])} of the kept connections vs "
                     f"{_pct(r['expected_precision'])} for a random choice (lift {lift}, p = {pv}); recall "
                     f"{_pct(r['recall'])} vs {_pct(r['expected_recall'])}")
    if summary.get("jaccard_adjacent_layers_mean") is not None:
        lines.append(f"  agreement of adjacent layers (Jaccard of kept connections): "
                     f"{summary['jaccard_adjacent_layers_mean']:.3f}")
    if comparison:
        for lab, lv in comparison["levels"].items():
            f = lv["kept_fraction"]
            lines.append(f"  {lab}: edges {_pct(lv['entry_sparsity'])} removed, connections kept: bones "
                         f"{_pct(f['bones'])}, links {_pct(f['links'])}, long-range {_pct(f['long_range'])}")
    return "\n".join(lines)


def _split_models(models: nn.Module | Mapping[str, nn.Module], title: str) -> tuple[nn.Module, dict[str, nn.Module]]:
    if isinstance(models, nn.Module):
        return models, {}
    items = list(models.items())
    if not items:
        raise ValueError(f"{title}: no model to analyse")
    return items[0][1], dict(items[1:])


def _level_rows(comparison: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for lab, lv in comparison["levels"].items():
        f = lv["kept_fraction"]
        r = lv["rediscovery"] or {}
        rows.append({"level": lab, "weight sparsity": lv["weight_sparsity"], "edge sparsity": lv["entry_sparsity"],
                     "connection sparsity": lv["connection_sparsity"], "bones kept": f["bones"],
                     "self-loops kept": f["self_loops"], "links kept": f["links"],
                     "long-range kept": f["long_range"], "bone precision": r.get("precision"),
                     "random precision": r.get("expected_precision")})
    return rows


def _layer_rows(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for s in summary["layers"]:
        e, c = s["entries"], s["connections"]
        sym, red = c["symmetry"], c["rediscovery"]
        rows.append({"layer": s["layer"], "weight sparsity": s["weight_sparsity"], "entries kept": _kk(e),
                     "edge sparsity": e["sparsity"], "connections kept": _kk(c),
                     "connection sparsity": c["sparsity"], "bones kept": _kk(c["bones"]),
                     "self-loops kept": _kk(c["self_loops"]), "links kept": _kk(c["links"]),
                     "long-range kept": _kk(c["long_range"]),
                     "symmetry": None if sym is None else sym["symmetry"],
                     "bone precision": None if red is None else red["precision"],
                     "random precision": None if red is None else red["expected_precision"]})
    return rows


def _jaccard_rows(names: Sequence[str], matrix: Sequence[Sequence[float | None]]) -> list[dict[str, Any]]:
    return [{"": a, **{b: matrix[i][j] for j, b in enumerate(names)}} for i, a in enumerate(names)]


def _levels_csv(comparison: Mapping[str, Any]) -> str:
    labels = comparison["labels"]
    head = ["layer", "source", "target", "source_name", "target_name", "is_bone", "hop"] + [f"kept@{x}" for x in labels]
    out = [",".join(head)]
    for r in comparison["connections"]:
        vals = [r["layer"], r["source"], r["target"], r["source_name"], r["target_name"], r["is_bone"], r["hop"]]
        vals += [int(r["kept"][x]) for x in labels]
        out.append(",".join("" if v is None else str(v) for v in vals))
    return "\n".join(out) + "\n"


def analyze(models: nn.Module | Mapping[str, nn.Module], out_dir: str | os.PathLike, title: str = "",
            info: Mapping[str, Any] | None = None, heatmaps: Sequence[int] | None = None) -> dict[str, Any]:
    r"""Analyse a model (and its levels) and write everything under ``out_dir``.

    Writes ``survival.csv`` and ``survival.json`` (the table of the main model), ``summary.json``,
    ``figures/*.png``, ``levels.csv`` (what survives at every level, when there are levels) and
    ``index.html`` (self-contained: every figure embedded). Everything is computed and rendered first and
    written afterwards, each file atomically, so bad input leaves nothing behind.

    Args:
        models (torch.nn.Module or dict): A model (an ensemble's experts become its levels), or
            ``{label: model}`` with the main model first and the levels after it (e.g. lottery levels).
        out_dir (str or Path): Where to write.
        title (str, optional): Name of what is analysed (the run). (default: :obj:`"model"`)
        info (dict, optional): Extra facts for the page and ``summary.json``.
        heatmaps (sequence of int, optional): Layers to draw heatmaps of (default: every layer).

    Returns:
        dict: ``analysis_dir``, ``html``, ``text`` (:func:`summary_text`), ``summary`` and, with levels,
        ``levels`` (the comparison's per-level figures).
    """
    from . import plots
    from .html import Section, render_page

    title = title or "model"
    main, level_models = _split_models(models, title)
    table = survival(main, title)
    levels = survival_levels(level_models) if level_models else survival_levels(main)
    table.check_drawable(title)
    for lab, t in levels.items():
        t.check_drawable(f"{title} / {lab}")
    summary = summarize(table)
    comparison = compare(levels) if len(levels) >= 2 else None
    figs = plots.figures(table, summary, title, heatmaps)
    if comparison:
        figs.append(("survival_curves", "Connections kept of each class across the levels.",
                     plots.survival_curves_figure(comparison, title)))
        last = list(levels)[-1]
        figs.append(("skeleton_last_level", f"Surviving connections per layer at {last}.",
                     plots.skeleton_figure(levels[last], title=f"{title} / {last}")))
    pngs = [(stem, cap, plots.to_png(fig)) for stem, cap, fig in figs]
    text = summary_text(summary, comparison)
    sections = [Section("Summary", text + ("\n" + "\n".join(f"{k}: {v}" for k, v in info.items()) if info else ""),
                        tables=[("per layer", _layer_rows(summary))])]
    names = [s["layer"] for s in summary["layers"]]
    sections.append(Section("Agreement between layers", tables=[
        ("Jaccard index of the kept connections of two layers", _jaccard_rows(names, summary["jaccard_layers"]))]
        + [(f"{s['layer']}: Jaccard index of the kept entries of two subsets",
            _jaccard_rows([str(k) for k in range(s["subsets"])], s["entries"]["jaccard_subsets"]))
           for s in summary["layers"]]))
    if comparison:
        sections.append(Section("Across levels", tables=[
            ("per level", _level_rows(comparison)),
            ("Jaccard index of the kept connections of two levels", _jaccard_rows(comparison["labels"],
                                                                                  comparison["jaccard"]))]))
    sections.append(Section("Figures", figures=[(cap, png) for _, cap, png in pngs]))
    links = [("survival.csv", "survival table (CSV)"), ("survival.json", "survival table (JSON)"),
             ("summary.json", "summary (JSON)")] + ([("levels.csv", "connections across levels (CSV)")]
                                                     if comparison else [])
    page = render_page(f"Edge survival: {title}", sections, links)
    csv_text = table.to_csv()

    out = Path(out_dir)
    result_summary = {"title": title, "info": dict(info or {}), "summary": summary,
                      "levels": None if comparison is None else {k: v for k, v in comparison.items()
                                                                 if k != "connections"}}
    atomic_write_text(out / "survival.csv", csv_text)
    table.to_json(out / "survival.json")
    atomic_write_json(out / "summary.json", result_summary)
    if comparison:
        atomic_write_text(out / "levels.csv", _levels_csv(comparison))
    for stem, _, png in pngs:
        atomic_write_bytes(out / "figures" / f"{stem}.png", png)
    atomic_write_text(out / "index.html", page)
    return {"analysis_dir": str(out), "html": str(out / "index.html"), "text": text, "summary": summary,
            "levels": None if comparison is None else comparison["levels"],
            "figures": [str(out / "figures" / f"{s}.png") for s, _, _ in pngs]}


def default_out_dir(path: str | os.PathLike) -> Path:
    """Where :func:`analyze_run` writes: ``RUN_DIR/analysis`` for a run directory or its
    ``checkpoints/*.pt``, ``<stem>-analysis`` beside any other checkpoint file."""
    p = Path(path)
    if p.is_dir():
        return p / "analysis"
    if p.parent.name == "checkpoints" and (p.parent.parent / "config.toml").is_file():
        return p.parent.parent / "analysis"
    return p.parent / f"{p.stem}-analysis"


def analyze_run(path: str | os.PathLike, out_dir: str | os.PathLike | None = None,
                models: Mapping[str, nn.Module] | None = None) -> dict[str, Any]:
    """:func:`analyze` of a run directory or checkpoint, written under :func:`default_out_dir`.

    Args:
        path (str or Path): A run directory (its final model, plus lottery levels / ensemble experts), one of
            its checkpoints, or a PYSKL checkpoint (dense: the learned ``A``/``PA`` magnitudes).
        out_dir (str or Path, optional): Where to write (default: :func:`default_out_dir`).
        models (dict, optional): Models already loaded from ``path`` (``{label: model}``); default: the
            registered loader opens ``path``.
    """
    p = Path(path)
    loaded = dict(models) if models is not None else _load(p)
    return analyze(loaded, out_dir or default_out_dir(p), title=p.name, info={"source": str(p)})


def compare_runs(tables: Mapping[str, SurvivalTable], out_dir: str | os.PathLike,
                 title: str = "comparison") -> dict[str, Any]:
    """Compare the connections kept by several runs (or any labelled tables) and write ``levels.csv``,
    ``summary.json``, ``figures/`` and ``index.html`` under ``out_dir``.

    Returns:
        dict: ``analysis_dir``, ``html``, ``text``, ``comparison`` (without the per-connection rows).
    """
    from . import plots
    from .html import Section, render_page

    comparison = compare(tables)
    for lab, t in tables.items():
        t.check_drawable(lab)
    figs = [("survival_curves", "Connections kept of each class, per run.",
             plots.survival_curves_figure(comparison, title))]
    for i, (lab, t) in enumerate(tables.items()):
        figs.append((f"skeleton_run{i}", f"Surviving connections per layer: {lab}.",
                     plots.skeleton_figure(t, title=lab)))
    pngs = [(stem, cap, plots.to_png(fig)) for stem, cap, fig in figs]
    labels = comparison["labels"]
    lines = [f"{title}: {len(labels)} runs"]
    for a in range(len(labels)):
        for b in range(a + 1, len(labels)):
            j = comparison["jaccard"][a][b]
            lines.append(f"  Jaccard of kept connections, {labels[a]} vs {labels[b]}: "
                         f"{'n/a' if j is None else f'{j:.3f}'}")
    for lab, lv in comparison["levels"].items():
        f = lv["kept_fraction"]
        lines.append(f"  {lab}: edges {_pct(lv['entry_sparsity'])} removed, connections "
                     f"{_pct(lv['connection_sparsity'])} removed; kept: bones {_pct(f['bones'])}, links "
                     f"{_pct(f['links'])}")
    text = "\n".join(lines)
    page = render_page(f"Edge survival compared: {title}", [
        Section("Summary", text, tables=[("per run", [{"run": r.pop("level"), **r} for r in _level_rows(comparison)]),
                                         ("Jaccard index of the kept connections of two runs",
                                          _jaccard_rows(labels, comparison["jaccard"]))]),
        Section("Figures", figures=[(cap, png) for _, cap, png in pngs])],
        [("levels.csv", "connections kept by each run (CSV)"), ("summary.json", "comparison (JSON)")])
    out = Path(out_dir)
    slim = {k: v for k, v in comparison.items() if k not in ("connections", "summaries")}
    atomic_write_text(out / "levels.csv", _levels_csv(comparison))
    atomic_write_json(out / "summary.json", slim)
    for stem, _, png in pngs:
        atomic_write_bytes(out / "figures" / f"{stem}.png", png)
    atomic_write_text(out / "index.html", page)
    return {"analysis_dir": str(out), "html": str(out / "index.html"), "text": text, "comparison": slim}
