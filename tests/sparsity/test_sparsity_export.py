"""Export: folding masks into plain models, sparse kernels, and pruned edges as removed work."""
from __future__ import annotations

import json
import time

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from pyg_sparse_stgcn.nn import STGCN, GCNHead, SkeletonClassifier, STGCNConv, STGCNPlusPlus
from pyg_sparse_stgcn.nn.temporal import StridedLinear
from pyg_sparse_stgcn.sparsity import (
    Mask,
    MultiSparsityEnsemble,
    SparseGenerator,
    attach_masks,
    fold,
    load_mask_state_dict,
    mask_state_dict,
    prune,
    set_mask,
    to_sparse_kernels,
)
from pyg_sparse_stgcn.sparsity import export as export_pkg
from pyg_sparse_stgcn.sparsity.export import (
    ChannelMajorSTGCN,
    CSRLinear,
    CSRTemporalConv,
    ExportResult,
)
from pyg_sparse_stgcn.sparsity.export.channel_major import _CMGraphConv, _CMProduct
from pyg_sparse_stgcn.sparsity.export.result import AGGREGATIONS, LAYOUTS
from pyg_sparse_stgcn.timing import best_times, interleaved_times

COMBOS = [(layout, agg) for layout in ("channels_last", "channel_major") for agg in AGGREGATIONS]


def tiny(plus: bool = False, backend: str = "dense", **kwargs) -> SkeletonClassifier:
    cls = STGCNPlusPlus if plus else STGCN
    kw = {"base_channels": 8, "num_stages": 4, "inflate_stages": (3,), "down_stages": (3,), "backend": backend}
    bb = cls({"layout": "coco", "mode": "spatial"}, **{**kw, **kwargs})
    return SkeletonClassifier(bb, GCNHead(5, bb.out_channels))


def x_in() -> torch.Tensor:
    return torch.randn(2, 2, 16, 17, 3)


def assert_plain(model: nn.Module) -> None:
    assert not any(parametrize.is_parametrized(m) for m in model.modules())
    assert not any(isinstance(m, (Mask, SparseGenerator)) for m in model.modules())
    assert not any("score" in n for n, _ in model.named_parameters())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def random_bn_stats(model: nn.Module) -> None:
    """Non-trivial running statistics and affine parameters, so that folding the norms is really tested."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.rand(m.num_features, generator=g) * 2 - 1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.rand(m.num_features, generator=g) - 0.5)


def random_edge_weights(model: nn.Module) -> None:
    """Distinct adaptive edge weights (PA), so that every real entry matters and has its own value."""
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, STGCNConv):
                # 'init' learns A itself (every pair is a real entry, most start at zero)
                p = m.A if m.adaptive == "init" else getattr(m, "PA", None)
                if p is not None:
                    p.add_(torch.rand(p.shape, generator=g) * 0.5 + 0.1)


def mask_real_edges(model: nn.Module, sparsity: float, seed: int = 0,
                    silence: dict[int, int] | None = None) -> dict[str, torch.Tensor]:
    """Mask exactly ``round(sparsity * n_real)`` of each layer's real entries (random, seeded); ``silence``
    maps a layer number to a joint whose every outgoing entry (self-link included) is masked too.
    Returns the kept-entry masks ``(K, E)`` by layer name."""
    g = torch.Generator().manual_seed(seed)
    kept = {}
    for i, t in enumerate(attach_masks(model, kinds="edge")):
        conv = t.module
        real = conv.edge_real.clone()
        idx = real.flatten().nonzero().flatten()
        drop = idx[torch.randperm(idx.numel(), generator=g)[: int(sparsity * idx.numel() + 0.5)]]
        keep = real.clone()
        keep.view(-1)[drop] = False
        if silence and i in silence:
            keep[:, conv.edge_index[0] == silence[i]] = False
        set_mask(t, keep)
        kept[t.module_name] = keep
    return kept


# --------------------------------------------------------------------------------------------------------
# fold
# --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("plus", [False, True])
def test_fold_plain_model_same_outputs(plus):
    model = tiny(plus)
    prune(model, 0.8, scope="layer", kinds="weight")
    mask_real_edges(model, 0.5)
    model.eval()
    x = x_in()
    y = model(x)
    f = fold(model)
    assert_plain(f)
    assert torch.allclose(f(x), y, atol=1e-6)
    assert torch.equal(model(x), y)  # the input model still works and is still masked
    assert parametrize.is_parametrized(model.backbone.gcn[0].gcn.conv)
    masks = mask_state_dict(model)
    w = f.backbone.gcn[1].tcn.conv.weight if not plus else f.backbone.gcn[1].gcn.conv.weight
    key = "backbone.gcn.1.tcn.conv.weight" if not plus else "backbone.gcn.1.gcn.conv.weight"
    assert (w[~masks[key]] == 0).all() and (w[masks[key]] != 0).all()


def test_fold_generator_uses_target_sparsity_even_in_warm_up():
    gen = SparseGenerator(tiny(), 0.9, scope="layer", kinds=("weight", "edge"), warm_up=10).train()
    gen.set_epoch(0, 20)
    x = x_in()
    gen(x)  # dense warm-up forward
    f = fold(gen)
    assert_plain(f)
    assert isinstance(f, SkeletonClassifier)
    gen.eval()
    f.eval()
    assert torch.allclose(f(x), gen(x), atol=1e-6)
    w = f.backbone.gcn[1].tcn.conv.weight
    assert abs(float((w == 0).float().mean()) - 0.9) < 0.01


def test_fold_ensemble():
    def mk():
        return STGCN({"layout": "coco", "mode": "spatial"}, base_channels=8, num_stages=3, backend="dense")
    ens = MultiSparsityEnsemble(mk, 3, sparsities=(0.5, 0.9)).eval()
    x = x_in()
    f = fold(ens)
    assert_plain(f)
    assert torch.allclose(f(x), ens(x), atol=1e-6)


def test_package_keeps_the_public_names():
    from pyg_sparse_stgcn import sparsity

    assert sparsity.fold is export_pkg.fold and sparsity.to_sparse_kernels is export_pkg.to_sparse_kernels
    for name in ("fold", "to_sparse_kernels", "CSRLinear", "CSRTemporalConv", "ChannelMajorSTGCN",
                 "ExportResult", "remove_pruned_edges"):
        assert name in export_pkg.__all__ and hasattr(export_pkg, name)


# --------------------------------------------------------------------------------------------------------
# kernels in isolation
# --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("k,stride,dilation", [(9, 1, 1), (9, 2, 1), (3, 1, 3), (3, 2, 2), (1, 1, 1)])
def test_csr_temporal_conv_matches_conv2d(k, stride, dilation):
    pad = (k + (k - 1) * (dilation - 1) - 1) // 2
    conv = nn.Conv2d(6, 5, (k, 1), stride=(stride, 1), padding=(pad, 0), dilation=(dilation, 1))
    with torch.no_grad():
        conv.weight.mul_((torch.rand_like(conv.weight) > 0.7).float())
    x = torch.randn(3, 6, 13, 4).transpose(2, 3).transpose(2, 3)  # non-contiguous view is accepted
    csr = CSRTemporalConv(conv)
    assert torch.allclose(csr(x), conv(x), atol=1e-5)
    assert csr.nnz == int((conv.weight != 0).sum())
    with pytest.raises(ValueError, match="kernel"):
        CSRTemporalConv(nn.Conv2d(3, 3, (3, 3)))


@pytest.mark.parametrize("stride", [1, 2])
def test_csr_linear_matches_linear(stride):
    lin = StridedLinear(6, 4, stride=stride)
    with torch.no_grad():
        lin.weight.mul_((torch.rand_like(lin.weight) > 0.8).float())
    x = torch.randn(2, 7, 5, 6)
    csr = CSRLinear(lin)
    assert torch.allclose(csr(x), lin(x), atol=1e-6)
    # the dense weight is the registered state; the CSR copy follows it
    with torch.no_grad():
        csr.weight.mul_(2)
    assert torch.allclose(csr(x) - csr.bias, 2 * (lin(x) - lin.bias), atol=1e-5)


@pytest.mark.parametrize("k,stride,dilation", [(9, 1, 1), (9, 2, 1), (3, 1, 3), (5, 2, 2), (1, 2, 1), (4, 3, 1)])
@pytest.mark.parametrize("csr", [False, True])
def test_channel_major_product_matches_conv2d(k, stride, dilation, csr):
    pad = (k + (k - 1) * (dilation - 1) - 1) // 2
    conv = nn.Conv2d(6, 5, (k, 1), stride=(stride, 1), padding=(pad, 0), dilation=(dilation, 1))
    with torch.no_grad():
        conv.weight.mul_((torch.rand_like(conv.weight) > 0.7).float())
    p = _CMProduct("p", conv.weight.detach()[..., 0], conv.bias.detach(), stride, dilation, pad)
    p.use_csr = csr
    x = torch.randn(3, 6, 13, 4)  # (B, C, T, V)
    ref = conv(x)  # (B, C_out, T', V)
    got = p(x.permute(1, 2, 0, 3).contiguous())  # (C_out, T', B, V)
    assert torch.allclose(got.permute(2, 0, 1, 3), ref, atol=1e-5)
    ref2 = F.conv2d(x, conv.weight, conv.bias, (stride, 1), (pad, 0), (dilation, 1))
    assert torch.allclose(ref2, ref)


@pytest.mark.parametrize("c_in,c_out", [(3, 8), (8, 8), (8, 4)])
@pytest.mark.parametrize("density", [1.0, 0.3, 0.04, 0.0])
@pytest.mark.parametrize("csr", [False, True])
def test_graph_conv_kernels_match_einsum(c_in, c_out, density, csr):
    L, V, T, B = 3, 6, 5, 2
    W = torch.randn(L, c_out, c_in) * (torch.rand(L, c_out, c_in) > 0.5)
    A = torch.randn(L, V, V) * (torch.rand(L, V, V) < density)
    g = _CMGraphConv("g", W, A)
    g.use_csr = csr
    x = torch.randn(c_in, T, B, V)
    ref = torch.einsum("lvw,loc,ctbv->otbw", A, W, x)
    assert g.num_entries == int((A != 0).sum())
    for kind in AGGREGATIONS:
        g.aggregation = kind
        assert torch.allclose(g(x), ref, atol=1e-5), kind


# --------------------------------------------------------------------------------------------------------
# exported model = masked model, in both layouts, with every kernel choice
# --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("w_sparsity,e_sparsity", [(0.0, 0.0), (0.5, 0.5), (0.9, 0.8), (0.99, 0.95)])
@pytest.mark.parametrize("layout,aggregation", COMBOS)
@pytest.mark.parametrize("cfg", [
    {},  # pre, stride-2 block with residual conv, identity residuals
    {"gcn_conv_pos": "post", "gcn_with_res": True, "data_bn_type": "MVC"},  # GCN down path, per-person BN
    {"gcn_adaptive": "init", "tcn_kernel_size": 5, "tcn_dilation": 2, "data_bn_type": None},
    {"gcn_adaptive": "offset", "down_stages": (3, 4), "inflate_stages": (4,)},
])
def test_export_equals_masked_model(w_sparsity, e_sparsity, layout, aggregation, cfg):
    model = tiny(**cfg)
    random_bn_stats(model)
    random_edge_weights(model)
    if w_sparsity:
        prune(model, w_sparsity, scope="layer", kinds="weight")
    kept = mask_real_edges(model, e_sparsity)
    model.eval()
    x = x_in()
    force = w_sparsity >= 0.5  # CSR wherever allowed; dense products are covered by the 0 % rows
    with torch.no_grad():
        y = model(x)
        sk = to_sparse_kernels(model, x, force=force, layout=layout, aggregation=aggregation, min_sparsity=0.0)
        assert_plain(sk)
        res = sk.export_result
        assert isinstance(res, ExportResult) and res.layout == layout
        assert all(a.choice == aggregation and a.forced for a in res.aggregations)
        assert (sk(x) - y).abs().max() < 1e-5
        assert (sk(x) - y).abs().max() < 1e-5  # re-used workspaces give the same result
        x6 = torch.randn(1, 2, 2, 16, 17, 3)  # multi-clip input is folded like SkeletonClassifier does
        assert (sk(x6) - model(x6)).abs().max() < 1e-5
    # pruned edges are gone: every remaining candidate edge has a kept entry, every kept entry remains
    n_edges = sum(int(k.any(0).sum()) for k in kept.values())
    n_candidates = sum(k.shape[1] for k in kept.values())
    assert res.edges_removed == n_candidates - n_edges
    assert sum(a.edges for a in res.aggregations) == n_edges
    assert sum(a.entries for a in res.aggregations) == sum(int(k.sum()) for k in kept.values())
    if e_sparsity >= 0.8:
        assert res.edges_removed > 0


@pytest.mark.parametrize("layout", LAYOUTS)
def test_forcing_each_choice_gives_equal_outputs(layout):
    model = tiny()
    random_bn_stats(model)
    random_edge_weights(model)
    prune(model, 0.9, scope="layer", kinds="weight")
    mask_real_edges(model, 0.8)
    model.eval()
    x = x_in()
    outs = []
    with torch.no_grad():
        for aggregation in AGGREGATIONS:
            for force in (True, False):
                sk = to_sparse_kernels(model, x, force=force, layout=layout, aggregation=aggregation)
                if layout == "joint_major":  # every operator sparse; the wrapped channel-major model as forced
                    cm = sk.channel_major
                    assert [g.aggregation for g in cm.graph_convs()] == [aggregation] * len(cm.blocks)
                    assert [p.use_csr for p in cm.products()] == [force] * len(cm.products())
                    assert all(c["sparse"] for c in sk.sparse_kernel_choices)
                    outs.append(sk(x))
                    outs.append(cm(x))
                    continue
                if layout == "channel_major":
                    assert [g.aggregation for g in sk.graph_convs()] == [aggregation] * len(sk.blocks)
                    assert [p.use_csr for p in sk.products()] == [force] * len(sk.products())
                else:
                    convs = [m for m in sk.modules() if isinstance(m, STGCNConv)]
                    assert [c.backend for c in convs] == [aggregation] * len(convs)
                    assert any(isinstance(m, CSRTemporalConv) for m in sk.modules()) == force
                    assert any(isinstance(m, CSRLinear) for m in sk.modules()) == force
                    assert any(type(m) is nn.Conv2d for m in sk.backbone.modules()) != force
                assert all(c["sparse"] == force for c in sk.sparse_kernel_choices)
                outs.append(sk(x))
        y = model(x)
    for o in outs:
        assert (o - y).abs().max() < 1e-5
        assert (o - outs[0]).abs().max() < 1e-5


# --------------------------------------------------------------------------------------------------------
# removed edges send no message
# --------------------------------------------------------------------------------------------------------

def _first_unit(sk: nn.Module, layout: str):
    """The first ST block of an export as ``f(x (B, T, V, C)) -> (B, T', V, C')``."""
    if layout == "channels_last":
        block = sk.backbone.gcn[0]
        return lambda x: block(x)
    block = sk.blocks[0]
    return lambda x: block(x.permute(3, 1, 0, 2).contiguous()).permute(2, 1, 3, 0).clone()


@pytest.mark.parametrize("layout,aggregation", COMBOS)
def test_removed_edges_send_no_message(layout, aggregation):
    joint = 5  # left shoulder (COCO): in the unpruned graph it sends to itself, its neighbours and more
    model = tiny()
    random_bn_stats(model)
    random_edge_weights(model)
    kept = mask_real_edges(model, 0.9, silence={0: joint})
    model.eval()
    first = next(iter(kept.values()))
    assert not first[:, model.backbone.gcn[0].gcn.edge_index[0] == joint].any()
    x = torch.randn(4, 16, 17, 3)
    bump = torch.zeros_like(x)
    bump[..., joint, :] = 10.0
    with torch.no_grad():
        sk = to_sparse_kernels(model, x_in(), layout=layout, aggregation=aggregation, force=False)
        unit = _first_unit(sk, layout)
        y, y2 = unit(x), unit(x + bump)
        others = [w for w in range(17) if w != joint]
        assert torch.equal(y[..., others, :], y2[..., others, :])
        # the control: in the unpruned model the same change reaches other joints
        dense = _first_unit(to_sparse_kernels(tiny(), x_in(), layout=layout, aggregation=aggregation), layout)
        d, d2 = dense(x), dense(x + bump)
        assert not torch.allclose(d[..., others, :], d2[..., others, :])
        if aggregation == "sparse":
            # no work at all is done on a removed entry: not even a multiplication by its zero weight
            nan = x.clone()
            nan[..., joint, :] = float("nan")
            y3 = unit(nan)
            assert torch.equal(y3[..., others, :], y[..., others, :])
            assert torch.isnan(dense(nan)[..., others, :]).any()


@pytest.mark.parametrize("e_sparsity", [0.0, 0.5, 0.95])
def test_aggregation_operator_holds_the_kept_real_entries(e_sparsity):
    model = tiny()
    random_edge_weights(model)
    kept = mask_real_edges(model, e_sparsity)
    model.eval()
    x = x_in()
    with torch.no_grad():
        cm = to_sparse_kernels(model, x, layout="channel_major", aggregation="sparse")
        cl = to_sparse_kernels(model, x, layout="channels_last", aggregation="sparse")
    convs = [m for m in cl.modules() if isinstance(m, STGCNConv)]
    for k, g, conv, name in zip(kept.values(), cm.graph_convs(), convs, kept):
        K = k.size(0)
        orig = model.get_submodule(name)
        # the (k, v, w) of every kept real entry, and those of the exported operators
        want = {(s, int(orig.edge_index[0, e]), int(orig.edge_index[1, e])) for s, e in k.nonzero().tolist()}
        live = [s for s in range(K) if k[s].any()]
        got_cm = {(live[s], v, w) for s, v, w in g.entries.tolist()}
        nz = conv.edge_weight_effective() != 0
        got_cl = {(s, int(conv.edge_index[0, e]), int(conv.edge_index[1, e])) for s, e in nz.nonzero().tolist()}
        assert got_cm == want and got_cl == want and g.num_entries == len(want)
        # removed edges left the layer's candidate set
        assert conv.num_edges == int(k.any(0).sum())


# --------------------------------------------------------------------------------------------------------
# decisions and their record
# --------------------------------------------------------------------------------------------------------

def test_export_result_records_valid_choices():
    model = tiny()
    prune(model, 0.95, scope="layer", kinds="weight")
    mask_real_edges(model, 0.8)
    model.eval()
    x = x_in()
    with torch.no_grad():
        sk = to_sparse_kernels(model, x, repeats=2, min_sparsity=0.9)
        res = sk.export_result
        assert (sk(x) - model(x)).abs().max() < 1e-5
    assert res.layout in LAYOUTS and res.layout_choice.requested == "auto"
    assert res.layout_choice.dense_ms > 0 and res.layout_choice.channel_major_ms > 0
    assert res.aggregations and res.products
    # `auto` picks the layout by measurement; joint-major fuses each graph conv into one sparse operator, so
    # its records are that operator (untimed), the other layouts time both kernels of every choice
    joint = res.layout == "joint_major"
    for a in res.aggregations:
        assert a.layout == res.layout and a.choice in AGGREGATIONS and not a.forced
        assert (a.dense_ms is None and a.sparse_ms is None and a.choice == "sparse") if joint else \
            (a.dense_ms > 0 and a.sparse_ms > 0)
    for p in res.products:
        timed = p.sparsity >= 0.9 and not joint
        assert (p.dense_ms is not None) == timed and (p.sparse_ms is not None) == timed
        assert p.sparse in (True, False) and (timed or joint or not p.sparse)
    # the decisions are in effect in the returned model
    if res.layout == "channel_major":
        assert [g.aggregation for g in sk.graph_convs()] == [a.choice for a in res.aggregations]
        assert [p.use_csr for p in sk.products()] == [p.sparse for p in res.products]
    elif joint:  # one record per block's graph conv, each one sparse operator of the joint-major model
        assert len(res.aggregations) == len(sk.channel_major.blocks)
        assert len(res.products) == len(list(sk.operators()))
    else:
        assert [c.backend for c in sk.modules() if isinstance(c, STGCNConv)] == \
            [a.choice for a in res.aggregations]
    # JSON, and the attributes of earlier versions
    assert json.loads(json.dumps(res.to_dict()))["layout"] == res.layout
    assert sk.layout == res.layout and sk.edges_removed == res.edges_removed > 0
    assert sk.sparse_kernel_choices == res.sparse_kernel_choices
    assert sk.layout_choice["requested"] == "auto"
    # below min_sparsity nothing is timed or replaced
    with torch.no_grad():
        none = to_sparse_kernels(model, x, min_sparsity=0.99, layout="channels_last", aggregation="dense")
    assert not any(c.sparse or c.dense_ms is not None for c in none.export_result.products)
    assert all(a.dense_ms is None for a in none.export_result.aggregations)


def test_channel_major_rejects_mstcn_and_auto_falls_back():
    model = tiny(plus=True)
    prune(model, 0.9, scope="layer", kinds="weight")
    model.eval()
    x = x_in()
    with pytest.raises(ValueError, match="mstcn"):
        to_sparse_kernels(model, x, force=True, layout="channel_major")
    sk = to_sparse_kernels(model, x, force=True)
    assert sk.layout == "channels_last" and "mstcn" in sk.export_result.layout_choice.channel_major_unsupported
    assert "mstcn" in sk.layout_choice["channel_major_unsupported"]
    assert (sk(x) - model(x)).abs().max() < 1e-5
    with pytest.raises(ValueError, match="layout"):
        to_sparse_kernels(model, x, layout="nchw")
    with pytest.raises(ValueError, match="aggregation"):
        to_sparse_kernels(model, x, aggregation="csr")
    with pytest.raises(ValueError, match="STGCN"):
        ChannelMajorSTGCN(nn.Linear(3, 3))


@pytest.mark.parametrize("backend", ["sparse", "scatter", "auto"])
def test_export_with_other_aggregation_backends(backend):
    bb = STGCN({"layout": "coco", "mode": "spatial"}, base_channels=8, num_stages=3, backend=backend)
    model = SkeletonClassifier(bb, GCNHead(5, bb.out_channels))
    prune(model, 0.9, scope="layer", kinds="weight")
    mask_real_edges(model, 0.8)
    model.eval()
    x = x_in()
    y = model(x)
    sk = to_sparse_kernels(model, x, force=True, repeats=1)
    assert sk.edges_removed > 0
    assert (sk(x) - y).abs().max() < 1e-5
    assert torch.allclose(fold(model)(x), y, atol=1e-6)


def test_channel_major_backbone_only():
    model = tiny()
    random_bn_stats(model)
    prune(model, 0.9, scope="layer", kinds="weight")
    mask_real_edges(model, 0.9)
    bb = model.backbone.eval()
    x = x_in()
    cm = to_sparse_kernels(bb, x, force=True, layout="channel_major")
    assert cm.edges_removed > 0
    with torch.no_grad():
        f = cm(x)
        assert f.shape == bb(x).shape == (2, 2, 16, 8, 17)
        assert (f - bb(x)).abs().max() < 1e-5
    with pytest.raises(ValueError, match="V=17"):
        cm(torch.randn(2, 2, 16, 25, 3))


# --------------------------------------------------------------------------------------------------------
# exported tensors are module state
# --------------------------------------------------------------------------------------------------------

def _masked_pair() -> tuple[nn.Module, nn.Module]:
    """Two masked models with the same architecture and masks but different weights."""
    a = tiny()
    random_bn_stats(a)
    random_edge_weights(a)
    prune(a, 0.9, scope="layer", kinds="weight")
    mask_real_edges(a, 0.8)
    torch.manual_seed(123)
    b = tiny()
    attach_masks(b)
    load_mask_state_dict(b, mask_state_dict(a))
    return a.eval(), b.eval()


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_exported_state_dict_round_trip(layout, aggregation):
    a, b = _masked_pair()
    x = x_in()
    with torch.no_grad():
        ea = to_sparse_kernels(a, x, force=True, layout=layout, aggregation=aggregation)
        eb = to_sparse_kernels(b, x, force=True, layout=layout, aggregation=aggregation)
        ya = ea(x)
        assert not torch.allclose(eb(x), ya, atol=1e-3)
        sd = ea.state_dict()
        assert sd and all(not v.is_sparse and v.layout == torch.strided for v in sd.values())
        eb.load_state_dict(sd)
        assert (eb(x) - ya).abs().max() < 1e-5
    if layout == "channel_major":
        # every tensor the export computes with is in the state dict: nothing is left in python lists
        n_state = sum(v.numel() for v in sd.values())
        n_module = sum(t.numel() for t in list(ea.parameters()) + list(ea.buffers()))
        assert n_state == n_module


@pytest.mark.parametrize("layout", LAYOUTS)
def test_exported_dtype_and_device_moves(layout):
    a, _ = _masked_pair()
    x = x_in()
    with torch.no_grad():
        e = to_sparse_kernels(a, x, force=True, layout=layout, aggregation="sparse")
        y = e(x)
        e.to("cpu")
        assert (e(x) - y).abs().max() == 0
        e.double()
        floats = [t for t in list(e.parameters()) + list(e.buffers()) if t.is_floating_point()]
        assert floats and all(t.dtype == torch.float64 for t in floats)
        y64 = e(x.double())
        assert y64.dtype == torch.float64 and (y64 - y.double()).abs().max() < 1e-5
        e.float()
        assert (e(x) - y).abs().max() < 1e-6


@pytest.mark.cuda
@pytest.mark.parametrize("layout", ["auto", "channels_last", "channel_major"])
@pytest.mark.parametrize("aggregation", ["auto", *AGGREGATIONS])
def test_export_on_cuda_equals_the_masked_model(layout, aggregation):
    """The export measured and run on the GPU (torch's CUDA sparse kernels; the joint-major kernel is CPU only
    and says so) gives the masked model's outputs and removes the pruned edges there too."""
    model = tiny()
    random_bn_stats(model)
    random_edge_weights(model)
    prune(model, 0.9, scope="layer", kinds="weight")
    kept = mask_real_edges(model, 0.8)
    model = model.eval().cuda()
    x = x_in().cuda()
    with torch.no_grad():
        y = model(x)
        sk = to_sparse_kernels(model, x, force=aggregation != "auto", layout=layout, aggregation=aggregation,
                               min_sparsity=0.0)
        assert_plain(sk)
        out = sk(x)
    assert out.is_cuda and (out - y).abs().max() < 1e-4
    res = sk.export_result
    assert res.layout in ("channels_last", "channel_major")
    if layout == "auto":
        assert res.layout_choice.joint_major_unsupported  # CPU only, or a dense aggregation was requested
    assert res.edges_removed == sum(k.shape[1] - int(k.any(0).sum()) for k in kept.values())


# --------------------------------------------------------------------------------------------------------
# the timer
# --------------------------------------------------------------------------------------------------------

def test_timer_alternates_and_returns_best():
    calls = []
    fns = {"a": lambda: calls.append("a"), "b": lambda: (calls.append("b"), time.sleep(0.002))}
    t = interleaved_times(fns, torch.device("cpu"), rounds=3, warmup=1)
    assert calls == ["a", "b"] + ["a", "b"] * 3
    assert set(t) == {"a", "b"} and all(len(v) == 3 for v in t.values())
    best = best_times(fns, "cpu", rounds=2)
    assert best["b"] >= 0.002 > best["a"] >= 0
    with pytest.raises(ValueError, match="rounds"):
        interleaved_times(fns, rounds=0)
