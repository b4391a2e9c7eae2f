"""Temporal units, blocks, ST-GCN / ST-GCN++ backbones, head and classifier."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from pyg_sparse_stgcn.graph import SkeletonGraph
from pyg_sparse_stgcn.nn import (
    STGCN,
    GCNHead,
    MultiScaleTemporalConv,
    SkeletonClassifier,
    STGCNBlock,
    STGCNConv,
    STGCNPlusPlus,
    TemporalConv,
    _utils,
    temporal,
)
from pyg_sparse_stgcn.nn._utils import BatchNormLast, batch_norm_groups
from pyg_sparse_stgcn.nn.temporal import (
    CTRMultiScaleTemporalConv,
    DGMultiScaleTemporalConv,
    StridedLinear,
)

SMALL = dict(base_channels=8, num_stages=4, inflate_stages=(3,), down_stages=(3,))


@pytest.mark.parametrize("k,stride,dilation", [(9, 1, 1), (9, 2, 1), (3, 2, 3), (1, 2, 1), (5, 1, 2)])
def test_temporal_conv_matches_channels_first_conv2d(k, stride, dilation):
    tcn = TemporalConv(5, 7, kernel_size=k, stride=stride, dilation=dilation, norm=None)
    x = torch.randn(2, 11, 4, 5)
    w = tcn.conv.weight if k > 1 else tcn.conv.weight[:, :, None, None]
    pad = (k + (k - 1) * (dilation - 1) - 1) // 2
    ref = F.conv2d(
        x.permute(0, 3, 1, 2), w, tcn.conv.bias, stride=(stride, 1), padding=(pad, 0), dilation=(dilation, 1)
    )
    torch.testing.assert_close(tcn(x), ref.permute(0, 2, 3, 1), atol=1e-5, rtol=0)
    assert tcn(x).shape[1] == math.floor((11 + 2 * pad - dilation * (k - 1) - 1) / stride) + 1


@pytest.mark.parametrize("T", [10, 11])
def test_strided_linear_gradients_and_saved_memory(T):
    """Values and gradients equal a strided channels-first Conv2d (float64), also under bf16 autocast; the
    backward pass keeps the input itself, not a strided copy of it."""
    torch.manual_seed(0)
    lin = StridedLinear(5, 7, stride=2).double()
    x = torch.randn(3, T, 4, 5, dtype=torch.float64, requires_grad=True)
    g = torch.randn(3, (T + 1) // 2, 4, 7, dtype=torch.float64)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        y = lin(x)
    assert {t.untyped_storage().data_ptr() for t in saved} <= {x.untyped_storage().data_ptr(),
                                                              lin.weight.untyped_storage().data_ptr()}
    gx, gw, gb = torch.autograd.grad((y * g).sum(), (x, lin.weight, lin.bias))
    w, b = lin.weight.detach().clone().requires_grad_(), lin.bias.detach().clone().requires_grad_()
    x2 = x.detach().clone().requires_grad_()
    ref = F.conv2d(x2.permute(0, 3, 1, 2), w[:, :, None, None], b, stride=(2, 1)).permute(0, 2, 3, 1)
    rx, rw, rb = torch.autograd.grad((ref * g).sum(), (x2, w, b))
    for got, want in ((y, ref), (gx, rx), (gw, rw), (gb, rb)):
        torch.testing.assert_close(got, want, atol=1e-10, rtol=0)
    lin32, x32 = lin.float(), x.detach().float().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        yb = lin32(x32)
    assert yb.dtype == torch.bfloat16
    gxb, gwb = torch.autograd.grad((yb.float() * g.float()).sum(), (x32, lin32.weight))
    assert gxb.dtype == gwb.dtype == torch.float32
    torch.testing.assert_close(gwb, rw.float(), atol=0.1 * float(rw.abs().max()), rtol=0)
    torch.testing.assert_close(gxb, rx.float(), atol=0.05 * float(rx.abs().max()), rtol=0)


def test_temporal_conv_norm_and_dropout():
    tcn = TemporalConv(4, 4, kernel_size=3, dropout=0.5).train()
    out = tcn(torch.randn(8, 6, 3, 4))
    assert float((out == 0).float().mean()) > 0.3  # dropout active in training
    tcn.eval()
    torch.testing.assert_close(tcn(torch.ones(1, 6, 3, 4)), tcn(torch.ones(1, 6, 3, 4)))
    with pytest.raises(ValueError, match="dropout"):
        TemporalConv(4, 4, dropout=1.5)
    with pytest.raises(ValueError, match="kernel_size must be a positive int"):
        TemporalConv(4, 4, kernel_size=0)
    with pytest.raises(ValueError, match="norm must be 'BN' or None"):
        TemporalConv(4, 4, norm="LN")
    with pytest.raises(ValueError, match="at least 4 dims"):
        tcn(torch.randn(6, 3, 4))


@pytest.mark.parametrize("stride,T", [(1, 10), (2, 10), (2, 11)])
def test_multiscale_temporal_conv_shapes_and_branches(stride, T):
    ms = MultiScaleTemporalConv(12, 12, stride=stride)
    assert [ms.rem_mid_channels] + [ms.mid_channels] * 5 == [2, 2, 2, 2, 2, 2]
    out = ms(torch.randn(2, T, 5, 12))
    assert out.shape == (2, math.ceil(T / stride), 5, 12)
    ms2 = MultiScaleTemporalConv(8, 20, ms_cfg=[(3, 1), ("max", 3), "1x1"])
    assert ms2.rem_mid_channels == 8 and ms2.mid_channels == 6
    assert ms2(torch.randn(1, 7, 2, 8)).shape == (1, 7, 2, 20)
    with pytest.raises(ValueError, match=r"ms_cfg\[1\]"):
        MultiScaleTemporalConv(8, 8, ms_cfg=[(3, 1), ("avg", 3)])


class _KeepEven(torch.nn.Module):
    """A fixed weight mask (a parametrization, as the sparsity masks are)."""

    def forward(self, w):
        return w * (torch.arange(w.numel()).view_as(w) % 2 == 0)


def _separate_branches(branches, x, fuse=True, concat=True):
    outs = [b(x) for b in branches]
    return torch.cat(outs, dim=-1) if concat else outs


@pytest.mark.parametrize("unit", ["mstcn", "dgmstcn", "ctr"])
@pytest.mark.parametrize("stride", [1, 2])
def test_multiscale_branches_run_as_one_projection(unit, stride, monkeypatch):
    torch.manual_seed(0)
    if unit == "ctr":
        m = CTRMultiScaleTemporalConv(10, 16, kernel_size=3, stride=stride, dilations=(1, 2))
    elif unit == "dgmstcn":
        m = DGMultiScaleTemporalConv(10, 16, num_joints=5, stride=stride)
        torch.nn.init.normal_(m.add_coeff)
    else:
        m = MultiScaleTemporalConv(10, 16, stride=stride)
    m = m.double()
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, BatchNormLast):
                mod.weight.uniform_(0.5, 1.5), mod.bias.normal_(), mod.running_mean.normal_()
                mod.running_var.uniform_(0.5, 2.0)
    torch.nn.utils.parametrize.register_parametrization(m.branches[1][0], "weight", _KeepEven())
    ref = copy.deepcopy(m)

    calls = []
    def counting(norms, h, **kwargs):
        calls.append(len(norms))
        return batch_norm_groups(norms, h, **kwargs)
    monkeypatch.setattr(temporal, "batch_norm_groups", counting)

    def step(mod, x, fused):
        out = mod(x) if fused else _separate_forward(mod, x, monkeypatch)
        out.square().sum().backward()
        return out

    for _ in range(2):  # the second step sees the running statistics the first one updated
        x = torch.randn(3, 9, 5, 10, dtype=torch.float64)
        xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
        torch.testing.assert_close(step(m, xa, True), step(ref, xb, False), rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-9, atol=1e-9)
    n_opened = len(m.branches) - 1
    assert calls == [n_opened, n_opened]  # one batch norm for every opening projection, each step
    for (name, a), (_, b) in zip(m.named_parameters(), ref.named_parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-9, atol=1e-9, msg=name)
    for (name, a), (_, b) in zip(m.named_buffers(), ref.named_buffers()):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12, msg=name)
    m.eval(), ref.eval()
    x = torch.randn(2, 9, 5, 10, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(m(x), _separate_forward(ref, x, monkeypatch), rtol=1e-9, atol=1e-9)
    assert len(calls) == 3


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_dgmstcn_equals_its_formula_on_the_concatenation(dtype):
    """DG-STGCN's ``dgmstcn`` (branch outputs kept apart, the virtual joint added per branch) against PYSKL's
    formula written out on the concatenated branch outputs: values and every gradient, ``add_coeff``'s too. The
    formula runs in float64 (in float32 its gradients of the biases before a batch norm, truly zero, are rounding
    noise beyond the tolerance)."""
    torch.manual_seed(0)
    m = DGMultiScaleTemporalConv(10, 16, num_joints=6).to(dtype)
    torch.nn.init.normal_(m.add_coeff)
    ref = copy.deepcopy(m).double()
    x = torch.randn(3, 9, 5, 10, dtype=dtype)
    xa, xb = x.clone().requires_grad_(), x.double().requires_grad_()
    got = m(xa)
    V = x.size(-2)
    xr = torch.cat([xb, xb.mean(-2, keepdim=True)], -2)
    out = torch.cat([b(xr) for b in ref.branches], -1)
    feat = out[..., :V, :] + out[..., V:, :] * ref.add_coeff[:V].view(V, 1)
    want = ref.bn(ref.transform(feat))
    tol = dict(rtol=1e-9, atol=1e-9) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got.double(), want, **tol)
    g = torch.randn_like(got)
    got.backward(g)
    want.backward(g.double())
    torch.testing.assert_close(xa.grad.double(), xb.grad, **tol)
    # a parameter's gradient sums ~500 products of magnitude up to ~100: float32 rounding reaches 1e-5 there
    ptol = tol if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-4)
    for (name, a), (_, b) in zip(m.named_parameters(), ref.named_parameters()):
        torch.testing.assert_close(a.grad.double(), b.grad, **ptol, msg=name)
    assert m.add_coeff.grad[:V].abs().sum() > 0 and m.add_coeff.grad[V:].abs().sum() == 0


def _separate_forward(mod, x, monkeypatch):
    with monkeypatch.context() as mp:
        mp.setattr(temporal, "run_branches", _separate_branches)
        return mod(x)


def test_batch_norm_groups_matches_separate_norms():
    torch.manual_seed(0)
    norms = [BatchNormLast(c) for c in (3, 4, 2)]
    ref = copy.deepcopy(norms)
    x = torch.randn(2, 5, 3, 9)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    y = batch_norm_groups(norms, xa, relu=True)  # the ReLU in place on the norm's output: same values, gradients
    want = torch.cat([n(p) for n, p in zip(ref, xb.split([3, 4, 2], -1))], -1).relu()
    torch.testing.assert_close(y, want)
    g = torch.randn_like(y)
    torch.testing.assert_close(torch.autograd.grad(y, xa, g)[0], torch.autograd.grad(want, xb, g)[0])
    for a, b in zip(norms, ref):
        torch.testing.assert_close(a.running_mean, b.running_mean)
        torch.testing.assert_close(a.running_var, b.running_var)
        assert int(a.num_batches_tracked) == int(b.num_batches_tracked) == 1
    # norms that cannot share one call (different momentum, cumulative averaging) run separately, exactly
    norms[1].momentum, ref[1].momentum, norms[2].momentum, ref[2].momentum = 0.5, 0.5, None, None
    y = batch_norm_groups(norms, x)
    torch.testing.assert_close(y, torch.cat([n(p) for n, p in zip(ref, x.split([3, 4, 2], -1))], -1))
    for a, b in zip(norms, ref):
        torch.testing.assert_close(a.running_var, b.running_var)
    # a subclass keeps its own forward (DDP's synchronised batch norm is one): never folded into one call

    class Shifted(BatchNormLast):
        def forward(self, x):
            return super().forward(x) + 1.0

    plain = [BatchNormLast(3), Shifted(4)]
    y = batch_norm_groups(plain, x[..., :7])
    torch.testing.assert_close(y[..., 3:], BatchNormLast(4)(x[..., 3:7]) + 1.0)
    with pytest.raises(ValueError, match="x has 8 channels, the norms 9"):
        batch_norm_groups(norms, x[..., :8])
    assert "batch_norm_groups" in _utils.__all__


@pytest.mark.parametrize(
    "cin,cout,stride,residual,mode",
    [(4, 4, 1, True, "identity"), (4, 8, 1, True, "conv"), (4, 4, 2, True, "conv"), (4, 8, 1, False, "none")],
)
def test_block_residual_modes(cin, cout, stride, residual, mode):
    g = SkeletonGraph("coco", "spatial")
    block = STGCNBlock(cin, cout, g, stride=stride, residual=residual, backend="dense").eval()
    assert block.residual_mode == mode
    x = torch.randn(2, 8, 17, cin)
    out = block(x)
    assert out.shape == (2, 8 // stride, 17, cout)
    inner = block.tcn(block.gcn(x))
    res = {"identity": x, "none": 0, "conv": block.residual(x) if block.residual is not None else 0}[mode]
    torch.testing.assert_close(out, torch.relu(inner + res))


def test_block_kwarg_routing():
    g = SkeletonGraph("coco", "spatial")
    block = STGCNBlock(
        4,
        8,
        g,
        gcn_adaptive="offset",
        gcn_conv_pos="post",
        gcn_with_res=True,
        tcn_dropout=0.3,
        tcn_kernel_size=5,
    )
    assert block.gcn.adaptive == "offset" and block.gcn.conv_pos == "post" and block.gcn.with_res
    assert block.tcn.drop.p == 0.3 and block.tcn.kernel_size == 5
    block = STGCNBlock(4, 12, g, tcn_type="mstcn", tcn_ms_cfg=[(3, 1), "1x1"])
    assert isinstance(block.tcn, MultiScaleTemporalConv) and len(block.tcn.branches) == 2
    with pytest.raises(ValueError, match=r"unknown argument\(s\) \['dropout'\]"):
        STGCNBlock(4, 8, g, dropout=0.1)
    with pytest.raises(ValueError, match="unknown tcn_type 'tcn3'"):
        STGCNBlock(4, 8, g, tcn_type="tcn3")
    with pytest.raises(ValueError, match=r"unknown gcn_ option\(s\) \['dropout'\]"):
        STGCNBlock(4, 8, g, gcn_dropout=0.1)
    with pytest.raises(ValueError, match="ms_cfg"):
        STGCNBlock(4, 8, g, tcn_ms_cfg=[(3, 1)])  # ms_cfg is an mstcn option
    with pytest.raises(ValueError, match=r"x must be \(B, T, V, C\)"):
        block(torch.randn(8, 17, 4))


def test_stgcn_default_architecture():
    model = STGCN({"layout": "nturgb+d", "mode": "stgcn_spatial"}, backend="dense")
    chans = [(b.in_channels, b.out_channels, b.stride) for b in model.gcn]
    assert chans == [
        (3, 64, 1),
        (64, 64, 1),
        (64, 64, 1),
        (64, 64, 1),
        (64, 128, 2),
        (128, 128, 1),
        (128, 128, 1),
        (128, 256, 2),
        (256, 256, 1),
        (256, 256, 1),
    ]
    assert model.out_channels == 256 and model.num_stages == 10
    assert model.gcn[0].residual_mode == "none"
    assert all(conv.adaptive == "importance" and conv.backend == "dense" for conv in model.convs())
    out = model.eval()(torch.randn(2, 2, 13, 25, 3))
    assert out.shape == (2, 2, 256, 4, 25)  # ceil(ceil(13 / 2) / 2) = 4


def test_stgcn_options():
    g = SkeletonGraph("openpose", "stgcn_spatial")
    model = STGCN(
        g,
        in_channels=8,
        base_channels=8,
        num_stages=3,
        inflate_stages=(3,),
        down_stages=(2,),
        ch_ratio=1.5,
        tcn_dropout=0.5,
        gcn_adaptive=("importance", None, "offset"),
        backend="sparse",
    )
    assert len(model.gcn) == 2  # in_channels == base_channels: no first block (PYSKL)
    assert model.out_channels == 12 and [b.stride for b in model.gcn] == [2, 1]
    assert [c.adaptive for c in model.convs()] == [None, "offset"]  # per-stage tuple, stages 2 and 3
    assert all(b.tcn.drop.p == 0.5 for b in model.gcn)
    first = STGCN(
        g, base_channels=8, tcn_dropout=0.5, **{k: v for k, v in SMALL.items() if k != "base_channels"}
    )
    assert first.gcn[0].tcn.drop.p == 0.0 and first.gcn[1].tcn.drop.p == 0.5  # removed from stage 1
    model.set_backend("scatter")
    assert all(c.backend == "scatter" for c in model.convs())


@pytest.mark.parametrize("data_bn_type", ["VC", "MVC", None])
def test_data_bn_types(data_bn_type):
    model = STGCN({"layout": "coco", "mode": "spatial"}, data_bn_type=data_bn_type, **SMALL).train()
    x = torch.randn(3, 2, 6, 17, 3) * 5 + 2
    model(x)
    if data_bn_type is None:
        return
    # the running mean is the per-(m,)v,c mean over the other axes, in PYSKL's channel order
    if data_bn_type == "VC":
        expected = x.mean(dim=(0, 1, 2)).reshape(-1)  # index v * C + c
    else:
        expected = x.mean(dim=(0, 2)).reshape(-1)  # index m * V * C + v * C + c
    torch.testing.assert_close(model.data_bn.running_mean, 0.1 * expected, atol=1e-5, rtol=1e-5)


def test_stgcn_plus_plus_defaults():
    model = STGCNPlusPlus({"layout": "coco"}, **SMALL)
    assert model.graph.mode == "spatial"
    conv = model.convs()[1]
    assert conv.adaptive == "init" and conv.with_res and isinstance(model.gcn[1].tcn, MultiScaleTemporalConv)
    assert model(torch.randn(1, 2, 8, 17, 3)).shape == (1, 2, 16, 4, 17)
    full = STGCNPlusPlus({"layout": "nturgb+d"})
    n_params = sum(p.numel() for p in full.parameters())
    assert 1.3e6 < n_params < 1.45e6  # PYSKL reports 1.39M for ST-GCN++ (with a 60-class head)


def test_backbone_backends_agree_in_training():
    # float64: training-mode BN amplifies float32 summation-order noise (which changes with the thread count)
    model = STGCN({"layout": "coco", "mode": "stgcn_spatial"}, backend="dense", **SMALL).double().train()
    x = torch.randn(2, 2, 8, 17, 3, dtype=torch.float64)
    outs = {}
    for backend in ("dense", "sparse", "scatter"):
        model.set_backend(backend)
        model.zero_grad()
        out = model(x)
        out.square().mean().backward()
        outs[backend] = (
            out.detach(),
            model.gcn[2].gcn.PA.grad.clone(),
            model.gcn[0].gcn.conv.weight.grad.clone(),
        )
    for backend in ("sparse", "scatter"):
        for a, b in zip(outs[backend], outs["dense"]):
            torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-7)


def test_backbone_bad_input():
    model = STGCN({"layout": "coco", "mode": "spatial"}, data_bn_type="MVC", num_person=2, **SMALL)
    with pytest.raises(ValueError, match=r"\(N, M, T, V, C\)"):
        model(torch.randn(2, 8, 17, 3))
    with pytest.raises(ValueError, match="V=25.*expected V=17"):
        model(torch.randn(1, 2, 8, 25, 3))
    with pytest.raises(ValueError, match="C=2.*in_channels=3"):
        model(torch.randn(1, 2, 8, 17, 2))
    with pytest.raises(ValueError, match="M=num_person=2"):
        model(torch.randn(1, 1, 8, 17, 3))
    with pytest.raises(ValueError, match="unknown data_bn_type 'BN'"):
        STGCN({"layout": "coco"}, data_bn_type="BN")
    with pytest.raises(ValueError, match=r"graph_cfg: unknown key\(s\) \['modes'\]"):
        STGCN({"layout": "coco", "modes": "spatial"})
    with pytest.raises(ValueError, match="'layout' is required"):
        STGCN({"mode": "spatial"})
    with pytest.raises(ValueError, match="unknown backend"):
        STGCN({"layout": "coco"}, backend="gpu")
    with pytest.raises(ValueError, match=r"unknown argument\(s\) \['dropout'\]"):
        STGCN({"layout": "coco"}, dropout=0.5)


def test_head_and_classifier():
    head = GCNHead(4, in_channels=6, dropout=0.0)
    feat = torch.randn(3, 2, 6, 5, 7)
    ref = feat.mean(dim=(3, 4)).mean(1) @ head.fc_cls.weight.t() + head.fc_cls.bias
    torch.testing.assert_close(head(feat), ref)
    assert float(head.fc_cls.bias.abs().max()) == 0 and float(head.fc_cls.weight.std()) < 0.05
    with pytest.raises(ValueError, match="C=6"):
        head(torch.randn(3, 2, 5, 5, 7))
    with pytest.raises(ValueError, match="num_classes"):
        GCNHead(0)

    backbone = STGCN({"layout": "coco", "mode": "spatial"}, **SMALL)
    model = SkeletonClassifier(backbone, GCNHead(4, in_channels=backbone.out_channels)).eval()
    x = torch.randn(2, 3, 2, 8, 17, 3)  # (N, num_clips, M, T, V, C)
    per_clip = model(x)
    assert per_clip.shape == (6, 4)
    torch.testing.assert_close(per_clip[4], model(x[1, 1][None])[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(model.extract_feat(x[:, 0]), backbone(x[:, 0]))
    with pytest.raises(ValueError, match="num_clips"):
        model(torch.randn(8, 17, 3))


def test_models_state_dict_names_mirror_pyskl():
    model = SkeletonClassifier(STGCNPlusPlus({"layout": "coco"}, **SMALL), GCNHead(3, in_channels=16))
    keys = set(model.state_dict())
    for key in [
        "backbone.data_bn.weight",
        "backbone.gcn.0.gcn.A",
        "backbone.gcn.0.gcn.conv.weight",
        "backbone.gcn.0.gcn.down.0.weight",
        "backbone.gcn.2.gcn.down.1.running_var",
        "backbone.gcn.1.tcn.branches.0.3.conv.weight",
        "backbone.gcn.1.tcn.branches.5.weight",
        "backbone.gcn.1.tcn.transform.2.weight",
        "backbone.gcn.2.residual.conv.weight",
        "head.fc_cls.weight",
    ]:
        assert key in keys, key
    assert isinstance(model.backbone.gcn[0].gcn, STGCNConv)


def test_full_model_compiles_without_graph_breaks():
    import torch._dynamo

    backbone = STGCNPlusPlus({"layout": "coco"}, backend="dense", **SMALL)
    model = SkeletonClassifier(backbone, GCNHead(4, in_channels=16)).eval()
    x = torch.randn(2, 2, 8, 17, 3)
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(model)(x)
    assert explanation.graph_break_count == 0, explanation.break_reasons


def test_model_reset_parameters():
    model = STGCNPlusPlus({"layout": "coco"}, **SMALL)
    x = torch.randn(1, 2, 8, 17, 3)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(0.7)
    model.reset_parameters()
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert norms and all(bool((m.weight == 1).all()) and bool((m.bias == 0).all()) for m in norms)
    graph_A = torch.as_tensor(model.graph.A)
    assert all(torch.equal(conv.A.detach(), graph_A) for conv in model.convs())  # 'init': A back to the graph
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert all(not bool((m.weight == 0.7).any()) for m in linears)
    assert torch.isfinite(model(x)).all()


def test_dgmstcn_with_a_frozen_add_coeff():
    """``add_coeff`` without a gradient (frozen): the virtual joint is not saved for it, and the input's
    gradient is still the formula's."""
    torch.manual_seed(0)
    m = DGMultiScaleTemporalConv(10, 16, num_joints=6).double()
    torch.nn.init.normal_(m.add_coeff)
    m.add_coeff.requires_grad_(False)
    ref = copy.deepcopy(m)
    xa = torch.randn(3, 9, 5, 10, dtype=torch.float64, requires_grad=True)
    xb = xa.detach().clone().requires_grad_()
    got = m(xa)
    xr = torch.cat([xb, xb.mean(-2, keepdim=True)], -2)
    out = torch.cat([b(xr) for b in ref.branches], -1)
    want = ref.bn(ref.transform(out[..., :5, :] + out[..., 5:, :] * ref.add_coeff[:5].view(5, 1)))
    torch.testing.assert_close(got, want)
    g = torch.randn_like(got)
    got.backward(g)
    want.backward(g)
    torch.testing.assert_close(xa.grad, xb.grad)
    assert m.add_coeff.grad is None
