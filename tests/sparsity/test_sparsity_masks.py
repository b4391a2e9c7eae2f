"""The one mask mechanism: targets, masked forward, STE, serialisation, deepcopy, devices, DDP, compile."""
from __future__ import annotations

import copy
import io
import socket

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils import parametrize

from pyg_sparse_stgcn.nn import STGCN, GCNHead, SkeletonClassifier, STGCNConv
from pyg_sparse_stgcn.sparsity import (
    Mask,
    attach_masks,
    get_mask,
    load_mask_state_dict,
    load_masked_state_dict,
    mask_state_dict,
    masked_targets,
    remove_masks,
    report,
    set_mask,
    targets,
)


def tiny(num_stages: int = 4, **kw) -> SkeletonClassifier:
    bb = STGCN({"layout": "coco", "mode": "spatial"}, base_channels=8, num_stages=num_stages,
               inflate_stages=(3,), down_stages=(3,), backend="dense", **kw)
    return SkeletonClassifier(bb, GCNHead(5, bb.out_channels))


def x_in(n: int = 2) -> torch.Tensor:
    return torch.randn(n, 1, 16, 17, 3)


def random_masks(model: nn.Module, p: float = 0.5, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    for t, _ in masked_targets(model):
        set_mask(t, torch.rand(t.shape, generator=g) > p)


def test_targets_lists_every_conv_weight_and_edge_tensor_but_no_head():
    model = tiny()
    ts = targets(model)
    names = [t.name for t in ts]
    assert "head.fc_cls.weight" not in names
    assert "backbone.gcn.2.residual.conv.weight" in names
    exp_weights = [f"{n}.weight" for n, m in model.backbone.named_modules()
                   if isinstance(m, (nn.Linear, nn.Conv2d))]
    assert sorted(t.name[len("backbone."):] for t in ts if t.kind == "weight") == sorted(exp_weights)
    edges = [t for t in ts if t.kind == "edge"]
    assert len(edges) == 4 and all(isinstance(t.module, STGCNConv) for t in edges)
    assert all(t.shape == t.module.edge_weight_base().shape for t in edges)
    assert {t.block for t in ts} == {f"backbone.gcn.{i}" for i in range(4)}
    assert [t.is_residual for t in ts].count(True) == 1
    assert len(targets(model, "edge")) == 4 and len(targets(model, ("weight",))) == len(ts) - 4
    assert "head.fc_cls.weight" in [t.name for t in targets(model, include_head=True)]
    assert not any(t.name.startswith("backbone.gcn.0") for t in targets(model, exclude=["backbone.gcn.0*"]))


@pytest.mark.parametrize("kinds", ["weight", "edge", ("weight", "edge")])
def test_bad_input_raises_value_error(kinds):
    with pytest.raises(ValueError, match="kinds"):
        targets(tiny(), kinds=("weights",))
    with pytest.raises(ValueError, match="no maskable targets"):
        attach_masks(nn.Sequential(nn.ReLU()), kinds)
    model = tiny()
    attach_masks(model, kinds)
    t = masked_targets(model)[0][0]
    with pytest.raises(ValueError, match=t.name.replace(".", r"\.")):
        set_mask(t, torch.ones(3, 3, dtype=torch.bool))


def test_attach_is_identity_until_masked_and_idempotent():
    model = tiny().eval()
    x = x_in()
    y0 = model(x)
    found = attach_masks(model)
    assert torch.allclose(model(x), y0, atol=1e-6)
    attach_masks(model)
    for t in found:
        assert len(t.module.parametrizations[t.attr]) == 1


def test_masked_forward_equals_manual_w_times_m_and_a_times_m():
    """Reference: an unmasked copy whose weights/edge gates are multiplied by the masks by hand."""
    model = tiny().eval()
    ref = copy.deepcopy(model)
    attach_masks(model)
    random_masks(model, 0.6, seed=3)
    masks = mask_state_dict(model)
    with torch.no_grad():
        for name, module in ref.named_modules():
            if isinstance(module, STGCNConv):  # edge masks are saved over the real entries only
                module.enable_edge_gate()
                module.edge_gate[module.edge_real] *= masks[f"{name}.edge_gate"].float()
            elif isinstance(module, (nn.Linear, nn.Conv2d)) and f"{name}.weight" in masks:
                module.weight.mul_(masks[f"{name}.weight"].float())
    x = x_in()
    assert torch.allclose(model(x), ref(x), atol=1e-6)
    # and the effective adjacency is A_base * M exactly
    conv = model.backbone.gcn[1].gcn
    m = torch.ones_like(conv.edge_real)
    m[conv.edge_real] = masks["backbone.gcn.1.gcn.edge_gate"]
    assert torch.equal(conv.edge_weight_effective(), conv.edge_weight_base() * m.float())


def test_ste_gradients_follow_method_formulas():
    """dL/dS = dL/dW~ * W and dL/dW = dL/dW~ * M (method.md §3.1); edges: dL/dS = dL/dA~ * A_base."""
    torch.manual_seed(1)
    model = tiny(3).train()
    attach_masks(model, scores=True)
    for _, m in masked_targets(model):
        m.threshold.fill_(0.0)  # keep S > 0
    x = x_in()
    conv = model.backbone.gcn[1].gcn
    eff_fn, store = conv.edge_weight_effective, {}

    def spy():
        w = eff_fn()
        w.retain_grad()
        store["A~"] = w
        return w

    conv.edge_weight_effective = spy
    cache = {}
    with parametrize.cached():
        for t, _ in masked_targets(model):
            v = getattr(t.module, t.attr)
            v.retain_grad()
            cache[t.name] = v
        model(x).square().sum().backward()
    for t, m in masked_targets(model):
        g_tilde = cache[t.name].grad
        orig = t.original()
        keep = (m.score.detach() > 0).float()
        assert torch.allclose(m.score.grad, g_tilde * orig.detach(), atol=1e-6), t.name
        if orig.requires_grad:
            assert torch.allclose(orig.grad, g_tilde * keep, atol=1e-6), t.name
    m = get_mask(conv, "edge_gate")
    expected = store["A~"].grad * conv.edge_weight_base().detach()
    assert expected.abs().sum() > 0
    assert torch.allclose(m.score.grad, expected, atol=1e-6)


def test_state_dict_roundtrip_weights_only_into_fresh_model():
    model = tiny().eval()
    attach_masks(model, scores=False)
    random_masks(model, 0.7)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    sd = torch.load(buf, weights_only=True)
    fresh = tiny().eval()
    load_masked_state_dict(fresh, sd)
    x = x_in()
    assert torch.equal(fresh(x), model(x))
    assert {k: v for k, v in mask_state_dict(fresh).items()}.keys() == mask_state_dict(model).keys()
    # attach first, then plain load_state_dict works too
    fresh2 = tiny().eval()
    attach_masks(fresh2)
    fresh2.load_state_dict(sd)
    assert torch.equal(fresh2(x), model(x))


def test_scored_state_dict_roundtrip_and_shape_mismatch():
    model = tiny().eval()
    attach_masks(model, scores=True)
    sd = model.state_dict()
    assert any(k.endswith(".0.score") for k in sd)
    fresh = tiny().eval()
    load_masked_state_dict(fresh, sd)
    assert all(m.has_score for _, m in masked_targets(fresh))
    other = SkeletonClassifier(
        STGCN({"layout": "coco", "mode": "spatial"}, base_channels=4, num_stages=4, inflate_stages=(3,),
              down_stages=(3,), backend="dense"), GCNHead(5, 8))
    with pytest.raises(ValueError, match="shape"):
        load_masked_state_dict(other, sd)
    with pytest.raises(ValueError, match="shape"):
        load_mask_state_dict(other, mask_state_dict(model))
    with pytest.raises(ValueError, match="does not have"):
        load_mask_state_dict(tiny(), {"backbone.nope.weight": torch.ones(2, dtype=torch.bool)})


def test_deepcopy_is_independent_and_remove_on_copy_keeps_original():
    model = tiny().eval()
    attach_masks(model)
    random_masks(model, 0.5)
    x = x_in()
    y = model(x)
    c = copy.deepcopy(model)
    assert torch.equal(c(x), y)
    remove_masks(c, fold=True)  # must not strip the properties of the original's (shared) class
    assert not any(parametrize.is_parametrized(m) for m in c.modules())
    assert torch.allclose(c(x), y, atol=1e-6)
    assert torch.equal(model(x), y)
    d = copy.deepcopy(model)
    set_mask(targets(d)[0], torch.zeros(targets(d)[0].shape, dtype=torch.bool))
    assert torch.equal(model(x), y)


def test_to_dtype_and_device_moves_masks():
    model = tiny().eval()
    attach_masks(model, scores=True)
    model = model.to(torch.float64).to("cpu")
    for _, m in masked_targets(model):
        assert m.mask.dtype == torch.bool and m.score.dtype == torch.float64
    assert model(x_in().double()).dtype == torch.float64


@pytest.mark.cuda
def test_to_cuda():
    model = tiny().eval()
    attach_masks(model, scores=True)
    model = model.cuda()
    assert all(m.mask.is_cuda and m.score.is_cuda for _, m in masked_targets(model))
    model(x_in().cuda())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_one_process_gloo_matches_plain_model(monkeypatch):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    model = tiny(3).train()
    attach_masks(model, scores=True)
    ref = copy.deepcopy(model)
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(_free_port()))
    dist.init_process_group("gloo", rank=0, world_size=1)
    try:
        ddp = DDP(model)
        x = x_in()
        ddp(x).sum().backward()
        ref(x).sum().backward()
        for (n, p), (_, q) in zip(model.named_parameters(), ref.named_parameters()):
            assert (p.grad is None) == (q.grad is None), n
            if p.grad is not None:
                assert torch.allclose(p.grad, q.grad, atol=1e-5), n
    finally:
        dist.destroy_process_group()


def test_torch_compile_matches_eager():
    model = tiny(3).eval()
    attach_masks(model, scores=True)
    for _, m in masked_targets(model):
        m.threshold.fill_(0.0)
    compiled = torch.compile(model, backend="aot_eager")
    x = x_in()
    assert torch.allclose(compiled(x), model(x), atol=1e-5)


# ---------------------------------------------------------------- hypothesis: mask properties
def _small() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Conv1d(6, 3, 2))


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1), st.floats(0.0, 0.95), st.floats(0.0, 0.95))
def test_property_composition_and_idempotence(seed, p1, p2):
    g = torch.Generator().manual_seed(seed)
    model = _small()
    attach_masks(model)
    ts = targets(model)
    m1 = [torch.rand(t.shape, generator=g) > p1 for t in ts]
    m2 = [torch.rand(t.shape, generator=g) > p2 for t in ts]
    x = torch.randn(5, 4, 6, generator=g).transpose(1, 2)  # (5, 6, 4) -> Linear over 4, Conv1d over 6
    for t, a, b in zip(ts, m1, m2):
        set_mask(t, a)
        set_mask(t, get_mask(t.module, t.attr).mask & b)  # composition = AND
    y_comp = model(x)
    for t, a, b in zip(ts, m1, m2):
        set_mask(t, a & b)
    assert torch.equal(model(x), y_comp)
    # idempotence: applying the same mask again changes nothing, attach again changes nothing
    for t, a, b in zip(ts, m1, m2):
        set_mask(t, get_mask(t.module, t.attr).mask & (a & b))
    attach_masks(model)
    assert torch.equal(model(x), y_comp)
    # masked entries are exactly zero; kept entries equal the originals
    for t, a, b in zip(ts, m1, m2):
        v = getattr(t.module, t.attr)
        assert torch.equal(v[~(a & b)], torch.zeros_like(v[~(a & b)]))
        assert torch.equal(v[a & b], t.original()[a & b])
    rep = report(model)
    assert rep.overall["kept"] == sum(int((a & b).sum()) for a, b in zip(m1, m2))


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**31 - 1), st.floats(0.0, 0.99), st.booleans())
def test_property_serialisation_round_trip(seed, p, scores):
    torch.manual_seed(seed)
    model = _small()
    attach_masks(model, scores=scores)
    g = torch.Generator().manual_seed(seed)
    for t in targets(model):
        set_mask(t, torch.rand(t.shape, generator=g) > p)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    fresh = _small()
    load_masked_state_dict(fresh, torch.load(buf, weights_only=True))
    for (n, a), (_, b) in zip(model.state_dict().items(), fresh.state_dict().items()):
        assert torch.equal(a, b), n
    assert all(isinstance(m, Mask) for m in (get_mask(t.module, t.attr) for t in targets(fresh)))
    x = torch.randn(3, 6, 4, generator=g)
    assert torch.equal(model(x), fresh(x))
