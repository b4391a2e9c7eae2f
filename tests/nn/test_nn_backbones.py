"""AAGCN, CTR-GCN, DG-STGCN: PYSKL-exact against independent channels-first references, every backend,
edge masks (static and dynamic parts), sparsity end to end, bad input."""
from __future__ import annotations

import copy

import backbone_reference as ref
import pytest
import torch
from backbone_reference import RANDOM, SPATIAL, TINY, build, randomise

from pyg_sparse_stgcn.nn import AAGCN, CTRGCN, DGSTGCN, GCNHead, SkeletonClassifier
from pyg_sparse_stgcn.nn.conv import AAGCNConv, CTRGCNConv, DGGCNConv


def strides(model) -> list[int]:
    return [b.stride for b in model.blocks]


KINDS = ("aagcn", "ctrgcn", "dgstgcn")


@pytest.mark.parametrize("kind", KINDS)
def test_float64_equals_reference_every_backend(kind):
    model = build(kind).double().eval()
    randomise(model)
    x = torch.randn(2, 2, 13, 25, 3, dtype=torch.float64)
    P = model.state_dict()
    want = ref.backbone(kind, P, x, strides(model))
    for backend in ("dense", "sparse", "scatter", "auto"):
        model.set_backend(backend)
        got = model(x)
        assert got.shape == want.shape == (2, 2, 16, 7, 25)
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6, msg=lambda m, b=backend: f"{b}: {m}")


@pytest.mark.parametrize("kind", KINDS)
def test_float32_logits_and_gradients_across_backends(kind):
    torch.manual_seed(0)
    model = SkeletonClassifier(build(kind), GCNHead(5, 16))
    randomise(model)
    model.train()
    x = torch.randn(2, 2, 12, 25, 3)
    outs, grads = [], []
    for backend in ("dense", "sparse", "scatter"):
        model.backbone.set_backend(backend)
        model.zero_grad()
        out = model(x)
        out.square().sum().backward()
        outs.append(out.detach())
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    for o, g in zip(outs[1:], grads[1:]):
        torch.testing.assert_close(o, outs[0], rtol=1e-4, atol=1e-4)
        assert g.keys() == grads[0].keys()
        for n in g:
            torch.testing.assert_close(g[n], grads[0][n], rtol=1e-3, atol=1e-4, msg=lambda m, n=n: f"{n}: {m}")


def test_pyskl_sizes_at_full_scale():
    # parameter counts and state-dict entries of backbones.md (NTU-25)
    assert sum(p.numel() for p in AAGCN(SPATIAL).parameters()) == 3_766_248
    assert len(AAGCN(SPATIAL).state_dict()) == 441
    assert sum(p.numel() for p in CTRGCN(SPATIAL).parameters()) == 1_431_252
    dg = DGSTGCN(dict(RANDOM, num_filter=8), gcn_ratio=0.125, gcn_ctr="T", gcn_ada="T")
    assert sum(p.numel() for p in dg.parameters()) == 1_685_752
    assert len(dg.state_dict()) == 830


def test_pyskl_initialisation():
    m = AAGCN(SPATIAL, **TINY)
    unit = m.gcn[0].gcn
    assert torch.all(unit.bn.weight == 1e-6) and torch.all(unit.alpha == 0)
    assert torch.all(unit.conv_ta.weight == 0) and torch.all(unit.fc2c.weight == 0)
    torch.testing.assert_close(unit.A, m.A)
    c = CTRGCN(SPATIAL, **TINY)
    assert torch.all(c.net[0].gcn1.bn.weight == 1e-6) and c.net[0].gcn1.convs[0].rel_channels == 8
    assert c.net[0].residual_mode == "none" and c.net[0].in_channels == 3
    d = build("dgstgcn")
    assert torch.all(d.gcn[1].gcn.alpha == 0) and torch.all(d.gcn[1].tcn.add_coeff == 0)
    assert d.gcn[1].tcn.add_coeff.numel() == 25
    # every block starts from the same graph
    torch.testing.assert_close(d.gcn[0].gcn.A, d.gcn[2].gcn.A)


@pytest.mark.parametrize("cls,kw", [(AAGCNConv, {}), (CTRGCNConv, {}), (DGGCNConv, {"ratio": 0.5})])
def test_edge_mask_removes_static_and_dynamic_message(cls, kw):
    """A connection removed by the edge gate carries no message at all, dynamic part included: the output at
    the target joint does not depend on the source joint through that connection."""
    torch.manual_seed(0)
    V = 25
    unit = cls(8, 8, torch.rand(2, V, V), backend="dense", **kw).double().eval()
    randomise(unit)
    gate = unit.enable_edge_gate()
    # cut every connection into target joint 3 except its self-loop, in every subset
    src, dst = unit.edge_index
    cut = (dst == 3) & (src != 3)
    gate[:, cut] = 0
    x = torch.randn(1, 4, V, 8, dtype=torch.float64)
    for backend in ("dense", "sparse", "scatter"):
        unit.backend = backend
        xx = x.clone().requires_grad_(True)
        y = unit(xx)
        (g,) = torch.autograd.grad(y[..., 3, :].sum(), xx)
        # joint 3 still sees the other joints through the inputs of the dynamic graph (temporal means), so
        # the check is on the aggregation operator itself
        M = _operator(unit, x)
        assert torch.all(M[..., :, 3][..., [u for u in range(V) if u != 3]] == 0), backend
        assert g.abs().sum() > 0


def _operator(unit, x):
    """The full per-sample operator (static + dynamic) times the connection mask, (..., U, V)."""
    with torch.no_grad():
        gate = unit.connection_mask()
        A = unit.adjacency()
        if isinstance(unit, AAGCNConv):
            return A + unit.attention_graph(x) * gate
        if isinstance(unit, CTRGCNConv):
            return A.unsqueeze(1) + unit.refined_graph(x) * gate.unsqueeze(1)
        return A.unsqueeze(1) + unit.dynamic_graph(x) * gate.unsqueeze(1)


@pytest.mark.parametrize("cls", [AAGCNConv, CTRGCNConv, DGGCNConv])
def test_edge_mask_output_equals_masked_reference(cls):
    """Masked output == the unit run with the dynamic graph multiplied by the mask (float64, every backend)."""
    torch.manual_seed(1)
    V = 25
    unit = cls(6, 8, torch.rand(3, V, V), backend="dense").double().eval()
    randomise(unit)
    gate = unit.enable_edge_gate()
    gate.copy_((torch.rand(gate.shape) > 0.5).double())
    x = torch.randn(2, 5, V, 6, dtype=torch.float64)
    outs = []
    for backend in ("dense", "sparse", "scatter", "auto"):
        unit.backend = backend
        outs.append(unit(x))
    for o in outs[1:]:
        torch.testing.assert_close(o, outs[0], rtol=1e-9, atol=1e-9)
    # the mask is part of the operator: masked connections are zero in static and dynamic terms
    M = _operator(unit, x)
    dense_gate = unit.connection_mask()
    if M.dim() == 5:  # per-channel operators (B, K, C, U, V)
        dense_gate = dense_gate.unsqueeze(1)
    assert torch.all(M[(dense_gate == 0).expand_as(M)] == 0)
    # gradients w.r.t. masked static entries are zero through the mask
    unit.backend = "dense"
    unit.zero_grad()
    unit(x).sum().backward()
    g = unit.A.grad.flatten(1)[:, unit._flat_index]
    assert torch.all(g[gate == 0] == 0)


@pytest.mark.parametrize("kind", KINDS)
def test_targets_and_generator_end_to_end(kind):
    from pyg_sparse_stgcn import sparsity
    from pyg_sparse_stgcn.sparsity.generator import SparseGenerator

    torch.manual_seed(0)
    model = SkeletonClassifier(build(kind, backend="auto"), GCNHead(4, 16))
    edges = sparsity.targets(model, "edge")
    assert len(edges) == len(model.backbone.blocks)
    weights = sparsity.targets(model, "weight")
    assert not any("cls" in t.name or "head" in t.name for t in weights)
    gen = SparseGenerator(model, 0.8, kinds=("weight", "edge"), edge_sparsity=0.5, scope="block")
    gen.set_epoch(1, 2)
    x = torch.randn(2, 2, 12, 25, 3)
    y = torch.tensor([0, 1])
    gen.train()
    loss = torch.nn.functional.cross_entropy(gen(x), y)
    loss.backward()
    gen.eval()
    with torch.no_grad():
        out = gen(x)
    assert torch.isfinite(out).all()
    assert abs(gen.current_sparsity("weight") - 0.8) < 0.05


@pytest.mark.parametrize("kind", KINDS)
def test_state_dict_round_trip(kind):
    a, b = build(kind), build(kind)
    randomise(a, 3)
    b.load_state_dict(a.state_dict())
    a.eval(), b.eval()
    x = torch.randn(1, 2, 8, 25, 3)
    torch.testing.assert_close(a(x), b(x))


def test_per_stage_tuples_and_routing():
    m = AAGCN(SPATIAL, **TINY, gcn_attention=(True, False, True, True), tcn_type="mstcn")
    assert m.gcn[1].gcn.attention is False and m.gcn[0].gcn.attention is True
    assert type(m.gcn[1].tcn).__name__ == "MultiScaleTemporalConv"
    d = DGSTGCN(RANDOM, **TINY, gcn_ctr=None, gcn_ada="NA", tcn_dropout=0.5)
    assert d.gcn[0].tcn.drop.p == 0.0 and d.gcn[1].tcn.drop.p == 0.5


@pytest.mark.parametrize("kind,bad,name", [
    ("aagcn", {"gcn_ratio": 0.1}, "gcn_ option"), ("aagcn", {"foo": 1}, "foo"),
    ("ctrgcn", {"gcn_ratio": 0.1}, "gcn_ratio"), ("dgstgcn", {"tcn_act": "ReLU"}, "act"),
    ("dgstgcn", {"act": "ReLU"}, "act"), ("aagcn", {"tcn_type": "dgmstcn"}, "tcn_type"),
])
def test_bad_kwargs_name_argument_and_choices(kind, bad, name):
    with pytest.raises(ValueError, match=name):
        build(kind, **bad)


def test_dg_options_equal_per_channel_einsum():
    """ctr/ada None, 'NA' and subset_wise against a direct einsum of the documented equations."""
    torch.manual_seed(0)
    V = 25
    for opts in ({"ctr": None, "ada": None}, {"ctr": "NA", "ada": "T"}, {"ctr": None, "ada": "T"},
                 {"subset_wise": True, "ctr_act": "relu", "ada_act": "sigmoid"}):
        unit = DGGCNConv(6, 6, torch.rand(2, V, V), ratio=0.5, backend="dense", **opts).double().eval()
        randomise(unit)
        x = torch.randn(2, 5, V, 6, dtype=torch.float64)
        outs = {}
        for backend in ("dense", "sparse", "scatter"):
            unit.backend = backend
            outs[backend] = unit(x)
        torch.testing.assert_close(outs["sparse"], outs["dense"])
        torch.testing.assert_close(outs["scatter"], outs["dense"])
        # direct
        K, m = 2, 3
        P = unit.pre(x).view(2, 5, V, K, m)
        G = unit.A.view(1, 1, K, 1, V, V) if unit.dynamic_graph(x) is None else None
        if G is None:
            dyn = unit.dynamic_graph(x)
            G = dyn + unit.A.view(K, 1, V, V)
            if dyn.dim() == 5:
                G = G.unsqueeze(1)
        Y = torch.einsum("btukm,btkmuv->btvkm", P, G.expand(2, 5, K, m, V, V)).reshape(2, 5, V, K * m)
        want = unit.act(unit.bn(unit.post(Y)) + x)
        torch.testing.assert_close(outs["dense"], want)


def _reference_train_step(kind, model, x, tcn=None, ms_cfg=ref.DEFAULT_MS):
    """Outputs and gradients (input and every parameter) of one training-mode step (batch statistics) of
    ``model`` and of the channels-first reference on the same weights, float64."""
    weight = torch.randn(model(x).shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    P = {k: v.detach().clone().requires_grad_(k in dict(model.named_parameters()))
         for k, v in model.state_dict().items()}
    xr = x.detach().clone().requires_grad_(True)
    ref.TRAIN_BN[0] = True
    try:
        want = ref.backbone(kind, P, xr, strides(model), tcn=tcn, ms_cfg=ms_cfg)
    finally:
        ref.TRAIN_BN[0] = False
    (want * weight).sum().backward()
    xo = x.detach().clone().requires_grad_(True)
    model.zero_grad(set_to_none=True)
    got = model(xo)
    (got * weight).sum().backward()
    grads = {n: (p.grad, P[n].grad) for n, p in model.named_parameters()}
    return (got, want), (xo.grad, xr.grad), grads


@pytest.mark.parametrize("kind,tcn", [("aagcn", None), ("ctrgcn", None), ("dgstgcn", None),
                                      ("dgstgcn", "mstcn")])
@pytest.mark.parametrize("backend", ["dense", "sparse"])
def test_float64_training_gradients_equal_reference(kind, tcn, backend):
    """Values and gradients of a training step (batch-statistics BN) equal the reference's."""
    torch.manual_seed(0)
    model = build(kind, backend=backend, **({"tcn_type": tcn} if tcn else {})).double().train()
    randomise(model)
    x = torch.randn(2, 2, 9, 25, 3, dtype=torch.float64)
    (got, want), (gx, gx_ref), grads = _reference_train_step(kind, model, x, tcn)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(gx, gx_ref, rtol=1e-6, atol=1e-6)
    for name, (g, g_ref) in grads.items():
        g = torch.zeros_like(g_ref) if g is None and g_ref is not None else g
        g_ref = torch.zeros_like(g) if g_ref is None and g is not None else g_ref
        if g is not None:
            torch.testing.assert_close(g, g_ref.view_as(g), rtol=1e-6, atol=1e-6, msg=lambda m, n=name: f"{n}: {m}")
    assert sum(g is not None for g, _ in grads.values()) > 0.9 * len(grads)


MS_CFG = [(3, 1), (5, 2), ("max", 3), "1x1"]


@pytest.mark.parametrize("ms_cfg", [None, MS_CFG])
def test_dgstgcn_mstcn_equals_reference_every_backend(ms_cfg):
    """tcn_type='mstcn' (the paper's sparse DG-STGCN): PYSKL's plain mstcn, no global joint, float64."""
    kw = {"tcn_type": "mstcn"} | ({"tcn_ms_cfg": ms_cfg} if ms_cfg else {})
    model = build("dgstgcn", **kw).double().eval()
    randomise(model)
    assert all(type(b.tcn).__name__ == "MultiScaleTemporalConv" and b.tcn_type == "mstcn" for b in model.gcn)
    assert not any("add_coeff" in k for k in model.state_dict())
    x = torch.randn(2, 2, 13, 25, 3, dtype=torch.float64)
    cfg = ms_cfg or ref.DEFAULT_MS
    want = ref.backbone("dgstgcn", model.state_dict(), x, strides(model), tcn="mstcn", ms_cfg=cfg)
    # not the dgmstcn reference: the global joint matters once add_coeff is non-zero
    coeff = {f"gcn.{i}.tcn.add_coeff": torch.ones(25, dtype=torch.float64) for i in range(len(model.gcn))}
    other = ref.backbone("dgstgcn", {**model.state_dict(), **coeff}, x, strides(model), ms_cfg=cfg)
    assert (other - want).abs().max() > 1e-3
    for backend in ("dense", "sparse", "scatter", "auto"):
        model.set_backend(backend)
        torch.testing.assert_close(model(x), want, rtol=1e-6, atol=1e-6, msg=lambda m, b=backend: f"{b}: {m}")


def test_dgstgcn_mstcn_sizes_and_routing():
    # method.md §3.2 / backbones.md §4.7: the sparse DG-STGCN (K = 8) has 10 x 25 add_coeff entries fewer
    dg = DGSTGCN(dict(RANDOM, num_filter=8), gcn_ratio=0.125, gcn_ctr="T", gcn_ada="T", tcn_type="mstcn")
    assert sum(p.numel() for p in dg.parameters()) == 1_685_752 - 250
    # the Assemble's expert (K = 3): 1,038,436 maskable + 40,076 other (method.md §4.3)
    ex = DGSTGCN(dict(RANDOM, num_filter=3), gcn_ratio=0.125, gcn_ctr="T", gcn_ada="T", tcn_type="mstcn")
    assert sum(p.numel() for p in ex.parameters()) == 1_038_436 + 40_076
    with pytest.raises(ValueError, match=r"tcn_type='mstcn'.*num_joints"):
        build("dgstgcn", tcn_type="mstcn", tcn_num_joints=25)
    with pytest.raises(ValueError, match=r"unknown tcn_type 'unit_tcn'.*'dgmstcn', 'mstcn'"):
        build("dgstgcn", tcn_type="unit_tcn")
    # the paper code's name for it
    alias = DGSTGCN(dict(RANDOM, num_filter=3), gcn_ratio=0.125, gcn_ctr="T", gcn_ada="T", tcn_type="mstcn_sparse")
    assert all(b.tcn_type == "mstcn" and type(b.tcn).__name__ == "MultiScaleTemporalConv" for b in alias.gcn)
    assert alias.state_dict().keys() == ex.state_dict().keys()


def test_pretrained_loads_a_saved_checkpoint(tmp_path):
    for kind in KINDS:
        src = build(kind)
        randomise(src, 4)
        path = tmp_path / f"{kind}.pth"
        torch.save({"state_dict": src.state_dict()}, path)
        got = build(kind, pretrained=str(path))
        assert got.pretrained == str(path)
        x = torch.randn(1, 2, 8, 25, 3)
        torch.testing.assert_close(got.eval()(x), src.eval()(x), rtol=0, atol=0)
    # a recognizer checkpoint with PYSKL's (out, in, 1, 1) convs: its backbone.* entries load, the head is ignored
    state = {"backbone." + k: (v[:, :, None, None] if v.dim() == 2 and k.endswith("conv3.weight") else v)
             for k, v in src.state_dict().items()}
    state["cls_head.fc_cls.weight"] = torch.zeros(3, 4)
    torch.save(state, tmp_path / "recognizer.pth")
    torch.testing.assert_close(build("dgstgcn", pretrained=tmp_path / "recognizer.pth").eval()(x), src(x))


def test_pretrained_stgcn_and_partial_checkpoint_warns(tmp_path):
    from pyg_sparse_stgcn.nn import STGCN, STGCNPlusPlus

    a = STGCNPlusPlus(SPATIAL, **TINY)
    randomise(a, 2)
    state = a.state_dict()
    torch.save(state, tmp_path / "full.pth")
    b = STGCNPlusPlus(SPATIAL, **TINY, pretrained=str(tmp_path / "full.pth"))
    x = torch.randn(1, 2, 8, 25, 3)
    torch.testing.assert_close(b.eval()(x), a.eval()(x))
    partial = {k: v for k, v in state.items() if not k.startswith("gcn.0.")}
    partial["gcn.9.tcn.weight"] = torch.zeros(1)
    torch.save(partial, tmp_path / "partial.pth")
    with pytest.warns(UserWarning, match=r"(?s)missing keys \(\d+\): \['gcn.0.*unexpected keys \(1\): \['gcn.9"):
        c = STGCNPlusPlus(SPATIAL, **TINY, pretrained=tmp_path / "partial.pth")
    torch.testing.assert_close(c.gcn[1].gcn.A, a.gcn[1].gcn.A)  # what matched is loaded (strict=False)
    with pytest.raises(ValueError, match="no key of the checkpoint matches the STGCN"):
        STGCN(SPATIAL, **TINY, pretrained=_save(tmp_path / "other.pth", {"foo.weight": torch.zeros(1)}))


def _save(path, state):
    torch.save(state, path)
    return path


def test_pretrained_bad_input(tmp_path):
    missing = tmp_path / "nope" / "j.pth"
    for kind in KINDS:
        with pytest.raises(FileNotFoundError, match=f"pretrained checkpoint file not found: {missing}"):
            build(kind, pretrained=str(missing))
    with pytest.raises(ValueError, match="pretrained must be a checkpoint path or None"):
        build("ctrgcn", pretrained=123)
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=f"pretrained=.*{bad.name}.*cannot be read with torch.load"):
        build("aagcn", pretrained=bad)
    src = build("aagcn")
    small = {k: v for k, v in src.state_dict().items()}
    small["gcn.1.gcn.conv_d.0.weight"] = torch.zeros(2, 2)
    with pytest.raises(ValueError, match=r"shape mismatches \(1\).*gcn.1.gcn.conv_d.0.weight"):
        build("aagcn", pretrained=_save(tmp_path / "small.pth", small))


@pytest.mark.parametrize("kind", KINDS)
def test_bf16_autocast_training_step_close_to_float32(kind):
    """``train.precision='bf16'`` runs the forward under CPU autocast: every unit must accept bfloat16
    activations next to float32 parameters (CTR-GCN's in-place subset accumulation once did not), and the
    result must stay close to float32 (bfloat16 keeps 8 bits of mantissa)."""
    torch.manual_seed(0)
    model = SkeletonClassifier(build(kind), GCNHead(5, 16))
    model.train()
    x = torch.randn(2, 2, 12, 25, 3)
    want = model(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = model(x)
    assert got.dtype == torch.bfloat16
    got.float().square().sum().backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())
    torch.testing.assert_close(got.float(), want.detach(), rtol=0.1, atol=0.1)


@pytest.mark.cuda
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("backend", ["dense", "sparse", "scatter"])
def test_cuda_training_step_matches_cpu(kind, backend):
    """Logits, parameter gradients and BN statistics of one training step on the GPU equal the CPU's (float32;
    TF32 off so that the GPU's products are float32 too), and the step runs under CUDA autocast in both
    half-precision types."""
    torch.manual_seed(0)
    cpu = SkeletonClassifier(build(kind, backend=backend), GCNHead(5, 16))
    randomise(cpu)
    gpu = copy.deepcopy(cpu).cuda()
    x = torch.randn(2, 2, 12, 25, 3)
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        outs = []
        for model, inp in ((cpu, x), (gpu, x.cuda())):
            model.train()
            out = model(inp)
            out.square().sum().backward()
            outs.append(out.detach().cpu())
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-4, atol=1e-4)
    want = dict(cpu.named_parameters())
    for n, p in gpu.named_parameters():
        if want[n].grad is None:
            assert p.grad is None, n
            continue
        torch.testing.assert_close(p.grad.cpu(), want[n].grad, rtol=1e-3, atol=1e-4, msg=lambda m, n=n: f"{n}: {m}")
    for (n, b), (_, a) in zip(gpu.named_buffers(), cpu.named_buffers()):
        if b.is_floating_point():
            torch.testing.assert_close(b.cpu(), a, rtol=1e-4, atol=1e-5, msg=lambda m, n=n: f"{n}: {m}")
    for dtype in (torch.float16, torch.bfloat16):
        gpu.zero_grad()
        with torch.autocast("cuda", dtype=dtype):
            out = gpu(x.cuda())
        assert out.dtype == dtype
        out.float().square().sum().backward()
        assert all(p.grad is None or torch.isfinite(p.grad).all() for p in gpu.parameters())
