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


def real_of(t) -> torch.Tensor:
    """Real entries, from the graph's own A for edges (a zero of A can never carry a weight)."""
    if t.kind == "weight":
        return torch.ones(t.shape, dtype=torch.bool)
    conv = t.module
    return conv._A_init.flatten(1)[:, conv.edge_index[0] * conv.num_nodes + conv.edge_index[1]] != 0


def reference_global_masks(model, kind: str, rate: float) -> dict[str, torch.Tensor]:
    """Independent reference: Python's sort of the kept real |values| of a kind; ties by the relative position
    of the entry within its target, then target order."""
    ts = [t for t in targets(model, kind)]
    entries = []
    for ti, t in enumerate(ts):
        vals = t.magnitude().detach().abs().flatten().tolist()
        alive = (effective_mask(t) & real_of(t)).flatten().tolist()
        idx = [j for j, a in enumerate(alive) if a]
        entries += [(vals[j], (r + 0.5) / len(idx), ti, j) for r, j in enumerate(idx)]
    k = math.floor(rate * len(entries) + 0.5)
    drop = sorted(range(len(entries)), key=lambda i: entries[i][:3])[:k]
    out = {t.name: (effective_mask(t) & real_of(t)).flatten().clone() for t in ts}
    for i in drop:
        _, _, ti, j = entries[i]
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
    got = {t.name: effective_mask(t) & real_of(t) for t in targets(model, kinds)}
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
    # pruned entries are the smallest kept magnitudes of each layer (among its real entries)
    for t in targets(model):
        real = real_of(t)
        kept, gone = effective_mask(t) & real, ~effective_mask(t) & real
        mag = t.magnitude().detach().abs()
        if kept.any() and gone.any():
            assert mag[gone].max() <= mag[kept].min() + 1e-12


def test_ties_broken_deterministically_by_relative_position():
    model = nn.Sequential(nn.Linear(4, 4, bias=False), nn.Linear(4, 2, bias=False))
    with torch.no_grad():
        model[0].weight.fill_(1.0)
        model[1].weight.fill_(1.0)
    # 24 tied entries, 6 removed. Relative positions (j + 1/2)/n: first layer 1/32, 3/32, 5/32, 7/32, …;
    # second layer 1/16, 3/16, …  The six smallest: 1/32, 2/32, 3/32, 5/32, 6/32, 7/32 -> four + two.
    prune(model, 0.25, kinds="weight", include_head=True)
    m0 = effective_mask(targets(model, include_head=True)[0]).flatten()
    m1 = effective_mask(targets(model, include_head=True)[1]).flatten()
    assert m0[:4].sum() == 0 and m0[4:].all()
    assert m1[:2].sum() == 0 and m1[2:].all()


def test_edges_pruned_by_base_weight_and_separate_rate():
    model = tiny()
    rep = prune(model, 0.3, edge_sparsity=0.8)
    n_w = sum(t.numel for t in targets(model, "weight"))
    n_e = sum(int(real_of(t).sum()) for t in targets(model, "edge"))
    assert rep.kinds["weight"]["kept"] == n_w - num_to_remove(0.3, n_w)
    assert rep.kinds["edge"]["total"] == n_e and rep.kinds["edge"]["kept"] == n_e - num_to_remove(0.8, n_e)
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
        prune(tiny(), 0.5, scope="blocks")
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
