"""The edge-survival analysis on hand-built masked models: every count below was made by hand from the toy
skeleton's adjacency, which the test asserts first."""
from __future__ import annotations

import csv
import io
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from pyg_sparse_stgcn import analysis
from pyg_sparse_stgcn.analysis import plots
from pyg_sparse_stgcn.analysis.edges import compare, summarize, survival, survival_levels
from pyg_sparse_stgcn.graph import Layout, SkeletonGraph
from pyg_sparse_stgcn.nn import STGCNConv
from pyg_sparse_stgcn.sparsity.masks import attach_masks, set_mask
from pyg_sparse_stgcn.sparsity.targets import targets

# spine (centre) - left_arm - left_hand, spine - right_arm - right_hand
TOY = Layout.from_dict({"name": "toy5", "num_node": 5, "inward": [(1, 0), (2, 0), (3, 1), (4, 2)], "center": 0,
                        "joint_names": ["spine", "left_arm", "right_arm", "left_hand", "right_hand"],
                        "template_xy": [(0, 1), (0.5, 1), (-0.5, 1), (1, 0.5), (-1, 0.5)]})
# the real entries (k, v, w) of the 'spatial' partition of TOY: subset 0 = I, 1 and 2 = the two directions
REAL = {0: [(0, 0), (1, 1), (2, 2), (3, 3), (4, 4)], 1: [(0, 1), (0, 2), (1, 3), (2, 4)],
        2: [(1, 0), (2, 0), (3, 1), (4, 2)]}


def masked_conv(removed: list[tuple[int, int, int]], graph: str = "spatial", adaptive: str | None = None,
                keep_only: list[tuple[int, int, int]] | None = None) -> STGCNConv:
    """A conv over TOY with an edge mask removing ``removed`` (or keeping only ``keep_only``)."""
    g = SkeletonGraph(TOY, graph, seed=0) if graph == "random" else SkeletonGraph(TOY, graph)
    conv = STGCNConv(3, 4, g, adaptive=adaptive, backend="dense")
    attach_masks(nn.Sequential(conv), "edge")
    t = targets(nn.Sequential(conv), "edge")[0]
    src, dst = conv.edge_index
    K = conv.num_subsets
    keep = torch.zeros(K, conv.num_edges, dtype=torch.bool) if keep_only is not None else \
        torch.ones(K, conv.num_edges, dtype=torch.bool)
    for k, v, w in (keep_only if keep_only is not None else removed):
        e = int(((src == v) & (dst == w)).nonzero())
        keep[k, e] = keep_only is not None
    set_mask(t, keep)
    return conv


REMOVED = [(0, 3, 3), (0, 4, 4), (1, 0, 1), (1, 2, 4), (2, 4, 2)]


def test_toy_graph_is_what_the_counts_assume():
    A = SkeletonGraph(TOY, "spatial").A
    for k in range(3):
        assert sorted(map(tuple, np.argwhere(A[k] != 0).tolist())) == REAL[k]


def test_table_rows_match_the_hand_built_mask():
    conv = masked_conv(REMOVED)
    table = survival(conv, "toy")
    rows = table.rows()
    assert len(rows) == 13 == conv.num_real_entries  # only real entries are rows
    got = {(r["subset"], r["source"], r["target"]): r for r in rows}
    assert set(got) == {(k, v, w) for k, pairs in REAL.items() for v, w in pairs}
    A = SkeletonGraph(TOY, "spatial").A
    for key, r in got.items():
        assert r["kept"] == (key not in REMOVED)
        assert r["weight"] == pytest.approx(A[key] if r["kept"] else 0.0)
        assert r["base_weight"] == pytest.approx(A[key])
        assert r["score"] is None
    r = got[(2, 2, 0)]  # right_arm -> spine
    assert (r["source_name"], r["target_name"], r["is_bone"], r["hop"], r["side"]) == \
        ("right_arm", "spine", True, 1, "right")
    r = got[(0, 3, 3)]
    assert (r["is_self_loop"], r["is_bone"], r["hop"], r["side"], r["kept"]) == (True, False, 0, "left", False)
    # CSV and JSON hold the same rows
    lines = list(csv.DictReader(io.StringIO(table.to_csv())))
    assert len(lines) == 13 and lines[0].keys() == set(analysis.edges.COLUMNS)
    assert sum(ln["kept"] == "True" for ln in lines) == 8


def test_summary_counts_made_by_hand():
    s = summarize(survival(masked_conv(REMOVED)))
    (layer,) = s["layers"]
    e, c = layer["entries"], layer["connections"]
    assert (e["total"], e["kept"]) == (13, 8)
    assert [(x["total"], x["kept"]) for x in e["subsets"]] == [(5, 3), (4, 2), (4, 3)]
    assert (c["total"], c["kept"]) == (13, 8)  # each connection of 'spatial' lives in one subset
    assert (c["bones"]["total"], c["bones"]["kept"]) == (8, 5)
    assert (c["self_loops"]["total"], c["self_loops"]["kept"]) == (5, 3)
    assert (c["links"]["total"], c["long_range"]["total"]) == (0, 0)
    # kept lateral: (0,2) (1,3) (1,0) (2,0) (3,1); mirrored and kept: (1,0) <-> (2,0) only
    assert c["symmetry"] == {"lateral_kept": 5, "mirrored": 2, "symmetry": 0.4}
    assert e["jaccard_subsets"][0][0] == 1.0 and e["jaccard_subsets"][0][1] == 0.0  # subsets are disjoint
    red = c["rediscovery"]
    assert red["trivial"] and red["precision"] == 1.0 and red["recall"] == 5 / 8
    assert s["overall"]["entries"]["sparsity"] == pytest.approx(5 / 13)


def test_jaccard_between_layers_and_overall():
    model = nn.Sequential(masked_conv(REMOVED), masked_conv([(0, 3, 3)]))
    s = summarize(survival(model))
    assert [x["connections"]["kept"] for x in s["layers"]] == [8, 12]
    assert s["jaccard_layers"][0][1] == pytest.approx(8 / 12)  # layer 0's kept set lies inside layer 1's
    assert s["jaccard_adjacent_layers_mean"] == pytest.approx(8 / 12)
    o = s["overall"]
    assert (o["entries"]["total"], o["entries"]["kept"]) == (26, 20)
    assert (o["connections"]["bones"]["total"], o["connections"]["bones"]["kept"]) == (16, 13)


def test_random_graph_rediscovers_the_skeleton():
    bones = [(1, 0), (0, 1), (2, 0), (0, 2), (3, 1), (1, 3), (4, 2), (2, 4)]
    conv = masked_conv([], graph="random", adaptive="init", keep_only=[(0, v, w) for v, w in bones] + [(1, 0, 0)])
    s = summarize(survival(conv))
    c = s["layers"][0]["connections"]
    assert (c["total"], c["kept"]) == (25, 9)  # every pair is a real connection of a learnable random graph
    assert (c["links"]["total"], c["links"]["kept"]) == (12, 0)
    assert (c["long_range"]["total"], c["long_range"]["kept"]) == (12, 0)  # every non-bone pair of TOY is 2+ hops
    red = c["rediscovery"]
    assert not red["trivial"]
    assert (red["candidates"], red["bones"], red["kept"], red["bones_kept"]) == (20, 8, 8, 8)
    assert red["precision"] == 1.0 and red["recall"] == 1.0
    assert red["expected_precision"] == pytest.approx(0.4) and red["expected_recall"] == pytest.approx(0.4)
    assert red["lift"] == pytest.approx(2.5)
    assert red["p_value"] == pytest.approx(1 / math.comb(20, 8))
    assert c["symmetry"]["symmetry"] == 1.0


def test_dense_model_reports_learned_magnitudes_and_scores():
    conv = STGCNConv(3, 4, SkeletonGraph(TOY, "spatial"), adaptive="importance")
    with torch.no_grad():
        conv.PA.mul_(2.0)
    t = survival(conv)
    s = summarize(t)
    assert not s["masked"] and s["overall"]["entries"]["kept"] == 13
    A = SkeletonGraph(TOY, "spatial").A
    assert all(r["weight"] == pytest.approx(2 * A[r["subset"], r["source"], r["target"]]) for r in t.rows())
    attach_masks(nn.Sequential(conv), "edge", scores=True)
    assert all(r["score"] is not None for r in survival(conv).rows())


class ToyUnit(nn.Module):
    """Another backbone's graph unit: only the edge hook, no STGCNConv."""

    def __init__(self) -> None:
        super().__init__()
        self.layout = TOY
        self.register_buffer("edge_index", torch.tensor([[1, 0, 3], [0, 1, 1]]))
        self.register_buffer("edge_real", torch.ones(1, 3, dtype=torch.bool))
        self.w = nn.Parameter(torch.tensor([[0.5, 0.25, 1.0]]))

    def edge_weight_base(self) -> torch.Tensor:
        return self.w

    def enable_edge_gate(self) -> torch.Tensor:
        if not hasattr(self, "edge_gate"):
            self.register_buffer("edge_gate", torch.ones(1, 3))
        return self.edge_gate

    def adjacency(self) -> torch.Tensor:
        return torch.zeros(1, 5, 5).index_put((torch.zeros(3, dtype=torch.long), *self.edge_index), self.w[0])


def test_any_unit_with_the_edge_hook():
    unit = ToyUnit()
    unit.enable_edge_gate()
    unit.edge_gate[0, 2] = 0.0  # a folded gate removes (3, 1)
    s = summarize(survival(unit))
    c = s["layers"][0]["connections"]
    assert (c["total"], c["kept"], c["bones"]["kept"]) == (3, 2, 2)


def test_levels_of_an_ensemble_and_compare():
    class Expert(nn.Module):
        def __init__(self, model: nn.Module) -> None:
            super().__init__()
            self.model = model

    ens = nn.Module()
    ens.experts = nn.ModuleList([Expert(masked_conv([(0, 3, 3)])), Expert(masked_conv(REMOVED))])
    ens.sparsities = (0.5, 0.9)
    levels = survival_levels(ens)
    assert list(levels) == ["expert 0 (50%)", "expert 1 (90%)"]
    cmp = compare(levels)
    assert cmp["jaccard"][0][1] == pytest.approx(8 / 12)
    lv = cmp["levels"]["expert 1 (90%)"]
    assert lv["entry_sparsity"] == pytest.approx(5 / 13) and lv["kept_fraction"]["bones"] == pytest.approx(5 / 8)
    row = next(r for r in cmp["connections"] if (r["source"], r["target"]) == (3, 3))
    assert row["kept"] == {"expert 0 (50%)": False, "expert 1 (90%)": False}
    row = next(r for r in cmp["connections"] if (r["source"], r["target"]) == (4, 4))
    assert row["kept"] == {"expert 0 (50%)": True, "expert 1 (90%)": False}
    with pytest.raises(ValueError, match="same architecture"):
        compare({"a": survival(masked_conv([])), "b": survival(STGCNConv(3, 4, SkeletonGraph("coco", "spatial")))})


def _png_ok(png: bytes, min_w: int = 300, min_h: int = 200) -> None:
    img = Image.open(io.BytesIO(png))
    assert img.format == "PNG" and img.width >= min_w and img.height >= min_h, img.size
    assert img.width <= 4000 and img.height <= 4000
    assert len(img.convert("RGB").getcolors(1 << 20) or []) > 20  # not a blank canvas


def test_figures_are_written_and_sane(tmp_path):
    t = survival(nn.Sequential(masked_conv(REMOVED), masked_conv([(0, 3, 3)])), "toy")
    s = summarize(t)
    for fig in (plots.skeleton_figure(t), plots.skeleton_figure(t, per="subset"), plots.heatmap_figure(t, 1),
                plots.sparsity_bars_figure(t, s), plots.rediscovery_figure(s)):
        _png_ok(plots.to_png(fig))
    levels = {"a": t, "b": survival(nn.Sequential(masked_conv([]), masked_conv([])), "b")}
    _png_ok(plots.to_png(plots.survival_curves_figure(compare(levels), "toy")))
    path = plots.save_figure(plots.skeleton_figure(t), tmp_path / "f" / "skel.png")
    _png_ok(path.read_bytes())


def test_analyze_writes_everything(tmp_path):
    models = {"final": nn.Sequential(masked_conv(REMOVED), masked_conv([(0, 3, 3)])),
              "level 0": nn.Sequential(masked_conv([]), masked_conv([])),
              "level 1": nn.Sequential(masked_conv(REMOVED), masked_conv([(0, 3, 3)]))}
    out = analysis.analyze(models, tmp_path / "analysis", title="toy run", heatmaps=[0])
    d = tmp_path / "analysis"
    for f in ("survival.csv", "survival.json", "summary.json", "levels.csv", "index.html",
              "figures/skeleton_layers.png", "figures/heatmap_layer0.png", "figures/survival_curves.png"):
        assert (d / f).is_file(), f
    assert not list(d.rglob("*.tmp"))
    assert json.loads((d / "survival.json").read_text())["rows"][0]["layer"] == "0"
    summ = json.loads((d / "summary.json").read_text())
    assert summ["summary"]["overall"]["entries"]["kept"] == 20 and list(summ["levels"]["levels"]) == \
        ["level 0", "level 1"]
    html = (d / "index.html").read_text()
    assert html.count("<img") == len(out["figures"]) and "http" not in html.replace("http-equiv", "")
    assert "edge entries 20/26 kept" in out["text"]


def test_bad_input_leaves_nothing(tmp_path):
    bare = STGCNConv(3, 4, torch.tensor(SkeletonGraph(TOY, "spatial").A))  # a bare adjacency: no layout
    with pytest.raises(ValueError, match="bare adjacency array.*no skeleton layout"):
        analysis.analyze(bare, tmp_path / "a", title="bare")
    assert not (tmp_path / "a").exists()
    conv = masked_conv([])
    conv.layout = SimpleNamespace(name="nodraw", inward=TOY.inward, joint_names=TOY.joint_names, template_xy=None)
    with pytest.raises(ValueError, match="layout 'nodraw' of layer .* has no drawing template"):
        analysis.analyze(conv, tmp_path / "b", title="nodraw")
    assert not (tmp_path / "b").exists()
    with pytest.raises(ValueError, match="no graph unit with the edge hook"):
        survival(nn.Linear(2, 2))
