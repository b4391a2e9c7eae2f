"""Export: folding masks into plain models and CSR sparse kernels."""
from __future__ import annotations

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
    fold,
    mask_state_dict,
    prune,
    to_sparse_kernels,
)
from pyg_sparse_stgcn.sparsity.export import ChannelMajorSTGCN, CSRLinear, CSRTemporalConv, _CMProduct


def tiny(plus: bool = False) -> SkeletonClassifier:
    cls = STGCNPlusPlus if plus else STGCN
    bb = cls({"layout": "coco", "mode": "spatial"}, base_channels=8, num_stages=4, inflate_stages=(3,),
             down_stages=(3,), backend="dense")
    return SkeletonClassifier(bb, GCNHead(5, bb.out_channels))


def x_in() -> torch.Tensor:
    return torch.randn(2, 2, 16, 17, 3)


def assert_plain(model: nn.Module) -> None:
    assert not any(parametrize.is_parametrized(m) for m in model.modules())
    assert not any(isinstance(m, (Mask, SparseGenerator)) for m in model.modules())
    assert not any("score" in n for n, _ in model.named_parameters())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


@pytest.mark.parametrize("plus", [False, True])
def test_fold_plain_model_same_outputs(plus):
    model = tiny(plus)
    prune(model, 0.8, scope="layer", edge_sparsity=0.5)
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


@pytest.mark.parametrize("k,stride,dilation", [(9, 1, 1), (9, 2, 1), (3, 1, 3), (3, 2, 2), (1, 1, 1)])
def test_csr_temporal_conv_matches_conv2d(k, stride, dilation):
    torch.manual_seed(0)
    pad = (k + (k - 1) * (dilation - 1) - 1) // 2
    conv = nn.Conv2d(6, 5, (k, 1), stride=(stride, 1), padding=(pad, 0), dilation=(dilation, 1))
    with torch.no_grad():
        conv.weight.mul_((torch.rand_like(conv.weight) > 0.7).float())
    x = torch.randn(3, 6, 13, 4).transpose(2, 3).transpose(2, 3)  # non-contiguous view is accepted
    assert torch.allclose(CSRTemporalConv(conv)(x), conv(x), atol=1e-5)
    with pytest.raises(ValueError, match="kernel"):
        CSRTemporalConv(nn.Conv2d(3, 3, (3, 3)))


@pytest.mark.parametrize("stride", [1, 2])
def test_csr_linear_matches_linear(stride):
    torch.manual_seed(0)
    lin = StridedLinear(6, 4, stride=stride)
    with torch.no_grad():
        lin.weight.mul_((torch.rand_like(lin.weight) > 0.8).float())
    x = torch.randn(2, 7, 5, 6)
    assert torch.allclose(CSRLinear(lin)(x), lin(x), atol=1e-6)


@pytest.mark.parametrize("plus", [False, True])
def test_to_sparse_kernels_forced_equals_masked_model(plus):
    torch.manual_seed(0)
    model = tiny(plus)
    prune(model, 0.9, scope="layer", edge_sparsity=0.7)
    model.eval()
    x = x_in()
    y = model(x)
    masks = mask_state_dict(model)
    dropped = sum(int((~m).all(0).sum()) for k, m in masks.items() if k.endswith("edge_gate"))
    sk = to_sparse_kernels(model, x, force=True, layout="channels_last")
    assert_plain(sk)
    assert (sk(x) - y).abs().max() < 1e-5
    assert sk.edges_removed == dropped > 0
    convs = [m for m in sk.modules() if isinstance(m, STGCNConv)]
    assert sum(c.num_edges for c in convs) == sum(m.shape[1] for k, m in masks.items()
                                                  if k.endswith("edge_gate")) - dropped
    assert all(c["sparse"] for c in sk.sparse_kernel_choices)
    assert any(isinstance(m, CSRTemporalConv) for m in sk.modules())
    assert any(isinstance(m, CSRLinear) for m in sk.modules())
    assert not any(type(m) is nn.Conv2d for m in sk.backbone.modules())


def test_to_sparse_kernels_measured_and_thresholded():
    model = tiny()
    prune(model, 0.95, scope="layer", kinds="weight")
    model.eval()
    x = x_in()
    y = model(x)
    sk = to_sparse_kernels(model, x, repeats=2, layout="channels_last")
    assert (sk(x) - y).abs().max() < 1e-5
    for c in sk.sparse_kernel_choices:
        assert c["dense_ms"] > 0 and c["sparse_ms"] > 0
        assert c["sparse"] == (c["sparse_ms"] < c["dense_ms"])
    none = to_sparse_kernels(model, x, min_sparsity=0.99, layout="channels_last")
    assert not any(c["sparse"] or c["dense_ms"] is not None for c in none.sparse_kernel_choices)
    assert sk.edges_removed == 0


@pytest.mark.parametrize("backend", ["sparse", "scatter", "auto"])
def test_export_with_other_aggregation_backends(backend):
    torch.manual_seed(0)
    bb = STGCN({"layout": "coco", "mode": "spatial"}, base_channels=8, num_stages=3, backend=backend)
    model = SkeletonClassifier(bb, GCNHead(5, bb.out_channels))
    prune(model, 0.9, scope="layer", edge_sparsity=0.8)
    model.eval()
    x = x_in()
    y = model(x)
    sk = to_sparse_kernels(model, x, force=True)
    assert sk.edges_removed > 0
    assert (sk(x) - y).abs().max() < 1e-5
    assert torch.allclose(fold(model)(x), y, atol=1e-6)


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


def cm_model(**kwargs) -> SkeletonClassifier:
    torch.manual_seed(0)
    kw = {"base_channels": 8, "num_stages": 4, "inflate_stages": (3,), "down_stages": (3,), "backend": "dense"}
    bb = STGCN({"layout": "coco", "mode": "spatial"}, **{**kw, **kwargs})
    return SkeletonClassifier(bb, GCNHead(5, bb.out_channels))


@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9, 0.99])
@pytest.mark.parametrize("force", [True, False])
@pytest.mark.parametrize("cfg", [
    {},  # pre, stride-2 block with residual conv, identity residuals
    {"gcn_conv_pos": "post", "gcn_with_res": True, "data_bn_type": "MVC"},  # GCN down path, per-person BN
    {"gcn_adaptive": "init", "tcn_kernel_size": 5, "tcn_dilation": 2, "data_bn_type": None},
    {"gcn_adaptive": "offset", "down_stages": (3, 4), "inflate_stages": (4,)},
])
def test_channel_major_equals_masked_model(sparsity, force, cfg):
    model = cm_model(**cfg)
    random_bn_stats(model)
    if sparsity:
        prune(model, sparsity, scope="layer", edge_sparsity=min(sparsity, 0.8))
    model.eval()
    x = x_in()
    with torch.no_grad():
        y = model(x)
        cm = to_sparse_kernels(model, x, force=force, layout="channel_major", min_sparsity=0.0)
        assert isinstance(cm, ChannelMajorSTGCN) and cm.layout == "channel_major"
        assert (cm(x) - y).abs().max() < 1e-5
        assert (cm(x) - y).abs().max() < 1e-5  # re-used workspaces give the same result
        assert all(c["sparse"] == bool(force) for c in cm.sparse_kernel_choices)
        assert len(cm.sparse_kernel_choices) == len(cm.products()) > 0
        # multi-clip input is folded like SkeletonClassifier does
        x6 = torch.randn(1, 2, 2, 16, 17, 3)
        assert (cm(x6) - model(x6)).abs().max() < 1e-5
    assert assert_plain(cm) is None
    assert any(p.stride == 2 for p in cm.products())


def test_channel_major_backbone_only_and_edge_removal():
    model = cm_model()
    random_bn_stats(model)
    prune(model, 0.9, scope="layer", edge_sparsity=0.9)
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


@pytest.mark.parametrize("k,stride,dilation", [(9, 1, 1), (9, 2, 1), (3, 1, 3), (5, 2, 2), (1, 2, 1), (4, 3, 1)])
@pytest.mark.parametrize("csr", [False, True])
def test_channel_major_product_matches_conv2d(k, stride, dilation, csr):
    torch.manual_seed(0)
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


def test_channel_major_rejects_mstcn_and_auto_falls_back():
    model = tiny(plus=True)
    prune(model, 0.9, scope="layer")
    model.eval()
    x = x_in()
    with pytest.raises(ValueError, match="mstcn"):
        to_sparse_kernels(model, x, force=True, layout="channel_major")
    sk = to_sparse_kernels(model, x, force=True)
    assert sk.layout == "channels_last" and "mstcn" in sk.layout_choice["channel_major_unsupported"]
    assert (sk(x) - model(x)).abs().max() < 1e-5
    with pytest.raises(ValueError, match="layout"):
        to_sparse_kernels(model, x, layout="nchw")
    with pytest.raises(ValueError, match="STGCN"):
        ChannelMajorSTGCN(nn.Linear(3, 3))


def test_auto_layout_decided_by_whole_model_time():
    model = cm_model()
    prune(model, 0.95, scope="layer")
    model.eval()
    x = x_in()
    sk = to_sparse_kernels(model, x, repeats=2)
    ch = sk.layout_choice
    assert ch["requested"] == "auto" and ch["dense_ms"] > 0 and ch["channel_major_ms"] > 0
    assert sk.layout == ("channel_major" if ch["channel_major_ms"] < ch["dense_ms"] else "channels_last")
    with torch.no_grad():
        assert (sk(x) - model(x)).abs().max() < 1e-5
