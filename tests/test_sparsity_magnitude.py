"""One-shot magnitude pruning and sparsity reports."""
from __future__ import annotations

import json
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from pyg_sparse_stgcn.nn import STGCN, GCNHead, SkeletonClassifier
from pyg_sparse_stgcn.sparsity import (
    attach_masks,
    effective_mask,
    mask_state_dict,
    prune,
    random_prune,
    report,
    targets,
)
from pyg_sparse_stgcn.sparsity.magnitude import num_to_remove


def tiny() -> SkeletonClassifier:
    bb = STGCN({"layout": "coco", "mode": "spatial"}, base_channels=8, num_stages=4, inflate_stages=(3,),
               down_stages=(3,), backend="dense")
    return SkeletonClassifier(bb, GCNHead(5, bb.out_channels))


def reference_global_masks(model, kind: str, rate: float) -> dict[str, torch.Tensor]:
    """Independent reference: sort all kept |values| of a kind with Python's stable sort."""
    ts = [t for t in targets(model, kind)]
    entries = []
    for ti, t in enumerate(ts):
        vals = t.magnitude().detach().abs().flatten().tolist()
        alive = effective_mask(t).flatten().tolist()
        entries += [(v, ti, j) for j, (v, a) in enumerate(zip(vals, alive)) if a]
    k = math.floor(rate * len(entries) + 0.5)
    drop = sorted(range(len(entries)), key=lambda i: entries[i][0])[:k]  # stable: ties by position
    out = {t.name: effective_mask(t).flatten().clone() for t in ts}
    for i in drop:
        _, ti, j = entries[i]
        out[ts[ti].name][j] = False
    return {t.name: out[t.name].view(t.shape) for t in ts}


@pytest.mark.parametrize("kinds", [("weight",), ("edge",), ("weight", "edge")])
def test_global_prune_matches_reference_and_exact_counts(kinds):
    model = tiny()
    attach_masks(model, kinds)
    refs = {}
    for kind in kinds:
        refs.update(reference_global_masks(model, kind, 0.7))
    rep = prune(model, 0.7, kinds=kinds)
    got = mask_state_dict(model)
    assert got.keys() == refs.keys()
    for name in refs:
        assert torch.equal(got[name], refs[name]), name
    for kind in kinds:
        tot = rep.kinds[kind]["total"]
        assert rep.kinds[kind]["kept"] == tot - num_to_remove(0.7, tot)


def test_layer_scope_exact_per_target_and_composition():
    model = tiny()
    prune(model, 0.5, scope="layer")
    prune(model, 0.5, scope="layer")  # removes half of what remains
    rep = report(model)
    for row in rep.targets:
        n = row["total"]
        k1 = n - num_to_remove(0.5, n)
        assert row["kept"] == k1 - num_to_remove(0.5, k1), row["name"]
    # pruned entries are the smallest kept magnitudes of each layer
    for t in targets(model):
        m = effective_mask(t)
        mag = t.magnitude().detach().abs()
        if m.any() and (~m).any():
            assert mag[~m].max() <= mag[m].min() + 1e-12


def test_ties_broken_deterministically_by_position():
    model = nn.Sequential(nn.Linear(4, 4, bias=False), nn.Linear(4, 2, bias=False))
    with torch.no_grad():
        model[0].weight.fill_(1.0)
        model[1].weight.fill_(1.0)
    prune(model, 0.25, kinds="weight")  # 24 entries, 6 removed: the first 6 positions in target order
    m0 = effective_mask(targets(model)[0]).flatten()
    assert m0[:6].sum() == 0 and m0[6:].all()
    assert effective_mask(targets(model)[1]).all()


def test_edges_pruned_by_base_weight_and_separate_rate():
    model = tiny()
    rep = prune(model, 0.3, edge_sparsity=0.8)
    assert abs(rep.kinds["weight"]["sparsity"] - 0.3) < 1e-3
    assert abs(rep.kinds["edge"]["sparsity"] - 0.8) < 1e-3
    conv = model.backbone.gcn[0].gcn
    m = effective_mask(targets(model, "edge")[0])
    base = conv.edge_weight_base().detach().abs()
    assert torch.equal(conv.edge_weight_effective() != 0, m & (base != 0))


def test_random_prune_same_counts_different_entries():
    a, b = tiny(), tiny()
    b.load_state_dict(a.state_dict())
    prune(a, 0.6, scope="layer")
    random_prune(b, 0.6, scope="layer", generator=torch.Generator().manual_seed(0))
    ra, rb = report(a), report(b)
    assert [r["kept"] for r in ra.targets] == [r["kept"] for r in rb.targets]
    assert any(not torch.equal(mask_state_dict(a)[k], mask_state_dict(b)[k]) for k in mask_state_dict(a))


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, float("nan"), "0.5", True])
def test_bad_sparsity(bad):
    with pytest.raises(ValueError, match="sparsity"):
        prune(tiny(), bad)


def test_bad_scope_kinds_and_empty_model():
    with pytest.raises(ValueError, match="scope"):
        prune(tiny(), 0.5, scope="block")
    with pytest.raises(ValueError, match="kinds"):
        prune(tiny(), 0.5, kinds=("edges",))
    with pytest.raises(ValueError, match="no maskable targets"):
        prune(nn.Sequential(nn.BatchNorm1d(3)), 0.5)
    with pytest.raises(ValueError, match="no maskable targets"):
        prune(nn.Sequential(nn.Linear(3, 3)), 0.5, kinds="edge")


def test_report_counts_json_and_table():
    model = tiny()
    prune(model, 0.9, kinds="weight")
    rep = report(model)
    d = json.loads(rep.to_json())
    assert d["kinds"]["edge"]["sparsity"] == 0.0
    assert d["overall"]["total"] == sum(r["total"] for r in d["targets"])
    p = d["parameters"]
    all_params = sum(q.numel() for q in model.parameters())
    assert p["stored"] == all_params and p["scores"] == 0
    assert p["maskable"] + p["unmasked"] == all_params
    assert p["effective"] == p["maskable_kept"] + p["unmasked"]
    assert p["maskable_kept"] == d["kinds"]["weight"]["kept"]
    text = str(rep)
    assert "backbone.gcn.0.tcn.conv.weight" in text and "[weight]" in text
    assert f"{100 * d['kinds']['weight']['sparsity']:.2f}%" in text
    # scores are counted among the stored parameters
    attach_masks(model, "weight", scores=True)
    p2 = report(model).parameters
    assert p2["scores"] == p["maskable"] and p2["stored"] == all_params + p["maskable"]


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31 - 1), st.floats(0.0, 0.99), st.floats(0.0, 0.99),
       st.sampled_from(["global", "layer"]))
def test_property_exact_counts_and_composition(seed, s1, s2, scope):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 7), nn.Conv2d(7, 3, (3, 1)))
    prune(model, s1, scope=scope)
    kept1 = [r["kept"] for r in report(model).targets]
    masks1 = mask_state_dict(model)
    prune(model, s2, scope=scope)
    rep = report(model)
    masks2 = mask_state_dict(model)
    for k in masks1:
        assert not (masks2[k] & ~masks1[k]).any()  # pruning only removes
    if scope == "layer":
        for k1, r in zip(kept1, rep.targets):
            assert r["kept"] == k1 - num_to_remove(s2, k1)
    else:
        n = sum(kept1)
        assert rep.overall["kept"] == n - num_to_remove(s2, n)
    # idempotent at zero
    prune(model, 0.0, scope=scope)
    assert mask_state_dict(model).keys() == masks2.keys()
    assert all(torch.equal(mask_state_dict(model)[k], masks2[k]) for k in masks2)
