"""STGCNConv: backends (values, gradients), masks hook, explicit graphs, PyG composition, compile."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch_geometric.typing as pyg_typing
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.nn.utils import parametrize
from torch_geometric.nn import GCNConv

from pyg_sparse_stgcn.graph import SkeletonGraph
from pyg_sparse_stgcn.nn import STGCNConv
from pyg_sparse_stgcn.nn.conv import auto_choices, clear_auto_cache

BACKENDS = ["dense", "sparse", "scatter"]
GRAPHS = {"nturgb+d": "spatial", "openpose": "stgcn_spatial", "coco": "random"}
SPARSE_FLAGS = [False] + ([True] if pyg_typing.WITH_TORCH_SPARSE else [])


def _reference(conv: STGCNConv, x: torch.Tensor, A_eff: torch.Tensor) -> torch.Tensor:
    """PYSKL's unit_gcn before the norm, channels-first einsum (independent of our backends)."""
    K = A_eff.shape[0]
    xc = x.permute(0, 3, 1, 2)
    W, b = conv.conv.weight, conv.conv.bias
    if conv.conv_pos == "pre":
        y = torch.einsum("nctv,oc->notv", xc, W) + b[None, :, None, None]
        y = y.view(x.shape[0], K, -1, x.shape[1], x.shape[2])
        z = torch.einsum("nkctv,kvw->nctw", y, A_eff)
    else:
        y = torch.einsum("nctv,kvw->nkctw", xc, A_eff).reshape(x.shape[0], -1, x.shape[1], x.shape[2])
        z = torch.einsum("nctv,oc->notv", y, W) + b[None, :, None, None]
    return z.permute(0, 2, 3, 1)


def _make(layout, adaptive, conv_pos, seed=0, with_res=False, cin=4, cout=6):
    torch.manual_seed(seed)
    graph = SkeletonGraph(layout, GRAPHS[layout], seed=seed)
    conv = STGCNConv(
        cin, cout, graph, adaptive=adaptive, conv_pos=conv_pos, with_res=with_res, backend="dense"
    )
    with torch.no_grad():  # move the adaptive parameters off their initial values
        if adaptive in ("importance", "offset"):
            conv.PA.copy_(torch.randn_like(conv.PA) * 0.3 + (1.0 if adaptive == "importance" else 0.0))
        if adaptive == "init":
            conv.A.add_(torch.randn_like(conv.A) * 0.05)
    return graph, conv


def _run(conv, x, R):
    conv.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_()
    out = conv(x)
    (out * R).sum().backward()
    grads = {n: p.grad.clone() for n, p in conv.named_parameters()}
    grads["x"] = x.grad.clone()
    return out.detach(), grads


def _assert_equal(a: dict, b: dict, tol: float):
    for key in a:
        scale = max(1.0, float(b[key].abs().max()))
        err = float((a[key] - b[key]).abs().max()) / scale
        assert err <= tol, f"{key}: relative error {err:.3g}"


@pytest.mark.parametrize("with_torch_sparse", SPARSE_FLAGS)
@pytest.mark.parametrize("layout", list(GRAPHS))
@pytest.mark.parametrize("conv_pos", ["pre", "post"])
@pytest.mark.parametrize("adaptive", [None, "importance", "offset", "init"])
def test_backends_equal_values_and_gradients(adaptive, conv_pos, layout, with_torch_sparse, monkeypatch):
    monkeypatch.setattr(pyg_typing, "WITH_TORCH_SPARSE", with_torch_sparse)
    graph, conv = _make(layout, adaptive, conv_pos, with_res=adaptive == "init")
    V = graph.num_nodes
    x = torch.randn(2, 3, V, 4)
    R = torch.randn(2, 3, V, 6)
    # float32: values to 1e-5 abs, gradients to 1e-4 of their scale (summation order differs per backend);
    # float64: both to 1e-9, which shows the backends compute the same function and gradient.
    for dtype, vtol, gtol in ((torch.float64, 1e-9, 1e-9), (torch.float32, 1e-5, 1e-4)):
        conv = conv.to(dtype)
        results = {}
        for backend in BACKENDS:
            conv.backend = backend
            results[backend] = _run(conv, x.to(dtype), R.to(dtype))
        ref_out, ref_grads = results["dense"]
        for backend in ("sparse", "scatter"):
            out, grads = results[backend]
            torch.testing.assert_close(out, ref_out, atol=vtol, rtol=0)
            _assert_equal(grads, ref_grads, tol=gtol)
    # and the dense backend against the einsum formulation (train-mode BN, ReLU, residual)
    A_eff = {
        None: conv.A,
        "init": conv.A,
        "importance": conv.A * getattr(conv, "PA", 1),
        "offset": conv.A + getattr(conv, "PA", 0),
    }[adaptive]
    z = conv.bn(_reference(conv, x, A_eff))
    if conv.with_res:
        z = z + conv.down(x)
    torch.testing.assert_close(ref_out, torch.relu(z).detach().to(ref_out.dtype), atol=1e-5, rtol=0)


def test_candidate_edges_per_adaptive_mode():
    g = SkeletonGraph("nturgb+d", "spatial")
    support = int((g.A != 0).any(0).sum())
    assert STGCNConv(3, 4, g, adaptive=None).num_edges == support
    assert STGCNConv(3, 4, g, adaptive="importance").num_edges == support
    assert STGCNConv(3, 4, g, adaptive="offset").num_edges == 25 * 25
    assert STGCNConv(3, 4, g, adaptive="init").num_edges == 25 * 25
    assert STGCNConv(3, 4, SkeletonGraph("coco", "random", seed=0), adaptive=None).num_edges == 17 * 17
    conv = STGCNConv(3, 4, g, adaptive="importance")
    torch.testing.assert_close(conv.edge_weight_base(), g.edge_weight)
    torch.testing.assert_close(conv.adjacency(), torch.as_tensor(g.A))


class _Mask(torch.nn.Module):
    def __init__(self, mask):
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, w):
        return w * self.mask


class _ScoreSTE(torch.nn.Module):
    """Binary mask from a real score with the identity straight-through estimator."""

    def __init__(self, shape, seed):
        super().__init__()
        self.score = torch.nn.Parameter(torch.randn(shape, generator=torch.Generator().manual_seed(seed)))

    def forward(self, w):
        hard = (self.score > 0).to(w.dtype)
        return w * (hard + self.score - self.score.detach())


@pytest.mark.parametrize("with_torch_sparse", SPARSE_FLAGS)
def test_edge_gate_masks_and_pruned_edges_leave_sparse_operator(with_torch_sparse, monkeypatch):
    monkeypatch.setattr(pyg_typing, "WITH_TORCH_SPARSE", with_torch_sparse)
    graph, conv = _make("nturgb+d", "importance", "pre", seed=1)
    gate = conv.enable_edge_gate()
    assert gate.shape == (3, conv.num_edges) and bool((gate == 1).all())
    assert conv.enable_edge_gate() is conv.edge_gate  # idempotent
    ste = _ScoreSTE(gate.shape, seed=2)
    parametrize.register_parametrization(conv, "edge_gate", ste)
    weight_mask = (
        torch.rand(conv.conv.weight.shape, generator=torch.Generator().manual_seed(3)) > 0.3
    ).float()
    parametrize.register_parametrization(conv.conv, "weight", _Mask(weight_mask))
    eff = conv.edge_weight_effective()
    kept = int((eff != 0).sum())
    assert 0 < kept < eff.numel()

    seen = []
    conv.register_message_and_aggregate_forward_pre_hook(lambda mod, inputs: seen.append(inputs[0]))
    x = torch.randn(2, 3, 25, 4)
    R = torch.randn(2, 3, 25, 6)
    results = {}
    for backend in BACKENDS:
        conv.backend = backend
        out, grads = _run(conv, x, R)
        results[backend] = (out, grads)
    adj = seen[0]
    nnz = adj.nnz() if hasattr(adj, "nnz") and not isinstance(adj, torch.Tensor) else adj._nnz()
    # a gate parametrization that does not expose its support (no ``current()``, unlike the sparsity Mask)
    # while its score trains: the operator spans every real entry, masked ones carrying zeros (no sync)
    assert nnz == conv.num_real_entries < eff.numel()
    for backend in ("sparse", "scatter"):
        torch.testing.assert_close(results[backend][0], results["dense"][0], atol=1e-5, rtol=0)
        _assert_equal(results[backend][1], results["dense"][1], tol=1e-4)
    # the straight-through score of a pruned edge still gets its gradient in every backend
    score_grad = results["sparse"][1]["parametrizations.edge_gate.0.score"]
    pruned = (ste.score <= 0) & (conv.edge_weight_base() != 0)
    assert bool((score_grad[pruned] != 0).any())
    # masked conv weights: forward uses W * mask
    assert torch.equal(conv.conv.weight, conv.conv.parametrizations.weight.original * weight_mask)


def test_edge_gate_changes_output_like_removing_edges():
    graph, conv = _make("coco", None, "pre", seed=4)
    x = torch.randn(1, 2, 17, 4)
    conv.eval()
    gate = conv.enable_edge_gate()
    with torch.no_grad():
        gate[:, ::2] = 0
    keep = torch.ones(conv.num_edges, dtype=torch.bool)
    keep[::2] = False
    for backend in BACKENDS:
        conv.backend = backend
        gated = conv(x)
        explicit = conv(x, conv.edge_index[:, keep], conv.edge_weight_base()[:, keep])
        torch.testing.assert_close(gated, explicit, atol=1e-6, rtol=0)


def test_explicit_graph_inputs():
    graph, conv = _make("nturgb+d", "importance", "post", seed=5)
    conv.eval()
    x = torch.randn(2, 3, 25, 4)
    expected = conv(x)
    ei, w = conv.edge_index, conv.edge_weight_effective().detach()
    for backend in BACKENDS:
        conv.backend = backend
        torch.testing.assert_close(conv(x, ei, w), expected, atol=1e-5, rtol=0)
        # torch.sparse hybrid COO (V, V, K) of the transposed adjacency (row = target)
        adj_t = torch.sparse_coo_tensor(torch.stack([ei[1], ei[0]]), w.t(), (25, 25, 3))
        torch.testing.assert_close(conv(x, adj_t), expected, atol=1e-5, rtol=0)
        if pyg_typing.WITH_TORCH_SPARSE:
            from torch_sparse import SparseTensor

            st_adj = SparseTensor(row=ei[1], col=ei[0], value=w.t(), sparse_sizes=(25, 25))
            torch.testing.assert_close(conv(x, st_adj), expected, atol=1e-5, rtol=0)
    # (E,) weights are shared by all subsets; no weights means ones
    shared = conv(x, ei, torch.ones(ei.shape[1]))
    torch.testing.assert_close(shared, conv(x, ei))


def test_reset_parameters():
    graph, conv = _make("nturgb+d", "importance", "pre", seed=6, with_res=True)
    with torch.no_grad():
        for p in conv.parameters():
            p.fill_(3.0)
        conv.bn.running_mean.fill_(2.0)
    conv.reset_parameters()
    assert bool((conv.PA == 1).all())
    torch.testing.assert_close(conv.A, torch.as_tensor(graph.A))
    assert bool((conv.bn.weight == 1).all()) and bool((conv.bn.bias == 0).all())
    assert bool((conv.bn.running_mean == 0).all())
    bound = 1 / np.sqrt(4)
    assert float(conv.conv.weight.abs().max()) <= bound and float(conv.conv.weight.std()) > 0.05
    assert not bool((conv.down[0].weight == 3).any())
    _, conv2 = _make("nturgb+d", "offset", "pre")
    conv2.reset_parameters()
    assert float(conv2.PA.abs().max()) <= 1e-6
    _, conv3 = _make("nturgb+d", "init", "pre")
    conv3.reset_parameters()
    torch.testing.assert_close(conv3.A, torch.as_tensor(graph.A))


@pytest.mark.parametrize("adaptive", [None, "importance", "init"])
def test_state_dict_round_trip(adaptive):
    graph, conv = _make("openpose", adaptive, "pre", seed=7, with_res=True)
    conv.enable_edge_gate()
    with torch.no_grad():
        conv.edge_gate[0, :5] = 0
    x = torch.randn(2, 3, 18, 4)
    conv.train()
    conv(x)  # update running stats
    conv.eval()
    sd = conv.state_dict()
    expected_keys = {
        "A",
        "conv.weight",
        "conv.bias",
        "bn.weight",
        "bn.bias",
        "bn.running_mean",
        "bn.running_var",
        "bn.num_batches_tracked",
        "down.0.weight",
        "down.0.bias",
        "down.1.weight",
        "down.1.bias",
        "down.1.running_mean",
        "down.1.running_var",
        "down.1.num_batches_tracked",
        "edge_gate",
    }
    if adaptive == "importance":
        expected_keys.add("PA")
    assert set(sd) == expected_keys
    fresh = STGCNConv(4, 6, graph, adaptive=adaptive, with_res=True, backend="sparse").eval()
    fresh.load_state_dict(sd)  # the gate is registered on load
    torch.testing.assert_close(fresh(x), conv(x), atol=1e-6, rtol=0)
    clone = copy.deepcopy(conv)
    torch.testing.assert_close(clone(x), conv(x))


class _UserModel(torch.nn.Module):
    """A user's PyG model: our layer, then a stock GCNConv on the same (B, T, V, C) tensor."""

    def __init__(self, graph):
        super().__init__()
        self.st = STGCNConv(3, 8, graph, backend="dense")
        self.gcn = GCNConv(8, 5)
        self.register_buffer("edge_index", graph.layout_edge_index)

    def forward(self, x):
        return self.gcn(self.st(x), self.edge_index)


def test_compose_with_stock_pyg_conv():
    graph = SkeletonGraph("coco", "spatial")
    bones = torch.tensor(graph.layout.neighbor, dtype=torch.long).t()
    graph.layout_edge_index = bones
    model = _UserModel(graph)
    x = torch.randn(2, 4, 17, 3, requires_grad=True)
    out = model(x)
    assert out.shape == (2, 4, 17, 5)
    out.sum().backward()
    assert model.st.conv.weight.grad is not None and model.gcn.lin.weight.grad is not None
    # GCNConv on a (B, T, V, C) tensor equals GCNConv on each frame separately
    h = model.st(x).detach()
    frame = model.gcn(h[1, 2], bones)
    torch.testing.assert_close(model.gcn(h, bones)[1, 2], frame, atol=1e-6, rtol=0)


def test_dense_backend_compiles_without_graph_breaks():
    import torch._dynamo

    graph, conv = _make("nturgb+d", "importance", "pre", seed=8)
    conv.enable_edge_gate()
    parametrize.register_parametrization(
        conv, "edge_gate", _Mask((torch.rand(3, conv.num_edges) > 0.5).float())
    )
    conv.eval()
    x = torch.randn(2, 3, 25, 4)
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(conv)(x)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    conv.backend = "auto"  # auto uses the dense path inside torch.compile
    compiled = torch.compile(conv)
    torch.testing.assert_close(compiled(x), conv(x), atol=1e-5, rtol=0)


def test_auto_backend_times_once_and_caches():
    clear_auto_cache()
    graph, conv = _make("nturgb+d", "importance", "pre", seed=9)
    conv.backend = "auto"
    x = torch.randn(2, 3, 25, 4)
    out = conv(x)
    choices = auto_choices()
    assert len(choices) == 1 and set(choices.values()) <= {"dense", "sparse"}
    conv(x)
    assert len(auto_choices()) == 1  # same key: no new timing
    with torch.no_grad():
        conv(x)
    assert len(auto_choices()) == 2  # inference is timed separately
    conv.backend = "dense"
    torch.testing.assert_close(out, conv(x), atol=1e-5, rtol=0)


@settings(max_examples=15, deadline=None)
@given(
    V=st.integers(2, 7),
    K=st.integers(1, 3),
    density=st.floats(0.1, 1.0),
    conv_pos=st.sampled_from(["pre", "post"]),
    seed=st.integers(0, 10_000),
)
def test_backends_agree_on_random_graphs(V, K, density, conv_pos, seed):
    gen = torch.Generator().manual_seed(seed)
    A = torch.randn(K, V, V, generator=gen) * (torch.rand(K, V, V, generator=gen) < density)
    conv = STGCNConv(3, 2, A, adaptive="importance", conv_pos=conv_pos)
    x = torch.randn(2, 3, V, 3, generator=gen)
    R = torch.randn(2, 3, V, 2, generator=gen)
    outs = {}
    for backend in BACKENDS:
        conv.backend = backend
        outs[backend] = _run(conv, x, R)
    for backend in ("sparse", "scatter"):
        torch.testing.assert_close(outs[backend][0], outs["dense"][0], atol=1e-5, rtol=0)
        _assert_equal(outs[backend][1], outs["dense"][1], tol=1e-4)


@pytest.mark.cuda
@pytest.mark.parametrize("backend", ["dense", "sparse", "scatter", "auto"])
def test_cuda_matches_cpu(backend):
    graph, conv = _make("nturgb+d", "importance", "pre", seed=10)
    x = torch.randn(2, 3, 25, 4)
    R = torch.randn(2, 3, 25, 6)
    cpu_out, cpu_grads = _run(conv, x, R)
    conv = conv.cuda()
    conv.backend = backend
    out, grads = _run(conv, x.cuda(), R.cuda())
    torch.testing.assert_close(out.cpu(), cpu_out, atol=1e-4, rtol=1e-4)
    _assert_equal({k: v.cpu() for k, v in grads.items()}, cpu_grads, tol=1e-4)


def test_bad_input():
    graph = SkeletonGraph("nturgb+d", "spatial")
    conv = STGCNConv(4, 6, graph)
    with pytest.raises(ValueError, match="at least 2 dims"):
        conv(torch.randn(4))
    with pytest.raises(ValueError, match="in_channels=4"):
        conv(torch.randn(2, 3, 25, 5))
    with pytest.raises(ValueError, match="V=17 joints.*25 nodes"):
        conv(torch.randn(2, 3, 17, 4))
    with pytest.raises(ValueError, match="unknown adaptive 'learned'"):
        STGCNConv(4, 6, graph, adaptive="learned")
    with pytest.raises(ValueError, match="unknown conv_pos"):
        STGCNConv(4, 6, graph, conv_pos="mid")
    with pytest.raises(ValueError, match="unknown backend 'cuda'.*'dense'"):
        STGCNConv(4, 6, graph, backend="cuda")
    with pytest.raises(ValueError, match="out_channels must be a positive int"):
        STGCNConv(4, 0, graph)
    with pytest.raises(ValueError, match=r"\(K, V, V\)"):
        STGCNConv(4, 6, torch.zeros(3, 4, 5))
    with pytest.raises(ValueError, match="SkeletonGraph"):
        STGCNConv(4, 6, "nturgb+d")
    x = torch.randn(1, 2, 25, 4)
    with pytest.raises(ValueError, match=r"\(2, E\) long"):
        conv(x, torch.zeros(3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"outside \[0, 24\]"):
        conv(x, torch.tensor([[0, 25], [1, 2]]))
    with pytest.raises(ValueError, match=r"edge_weight must have shape \(2,\) or \(3, 2\)"):
        conv(x, torch.tensor([[0, 1], [1, 2]]), torch.ones(2, 2))
    with pytest.raises(ValueError, match="without edge_index"):
        conv(x, None, torch.ones(3))


@pytest.mark.parametrize("with_torch_sparse", [True, False])
def test_autocast_bfloat16_all_backends(with_torch_sparse, monkeypatch):
    """Every backend under CPU bfloat16 autocast, with torch-sparse and without it (torch.sparse's CPU products
    take no bfloat16: that path multiplies in float32)."""
    import torch_geometric.typing as pyg_typing

    if not with_torch_sparse:
        monkeypatch.setattr(pyg_typing, "WITH_TORCH_SPARSE", False)
    graph, conv = _make("nturgb+d", "importance", "pre", seed=12)
    x = torch.randn(2, 3, 25, 4)
    ref = conv(x).detach()
    for backend in BACKENDS:
        conv.backend = backend
        conv.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = conv(x)
        out.float().sum().backward()
        assert conv.PA.grad is not None and conv.PA.grad.dtype == torch.float32
        torch.testing.assert_close(out.float(), ref, atol=0.1, rtol=0.05)


def test_dense_backend_casts_the_operator_once_under_autocast():
    """Under autocast the dense operator is cast before it is broadcast over the frames, not as the expanded
    view (one cast per frame)."""
    graph, conv = _make("nturgb+d", "importance", "pre", seed=12)
    conv.backend = "dense"
    B, T, V, K = 3, 7, 25, conv.A.size(0)
    x = torch.randn(B, T, V, 4, requires_grad=True)
    with torch.profiler.profile(record_shapes=True) as prof:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = conv(x)
        out.float().sum().backward()
    cast = [list(e.input_shapes[0]) for e in prof.events() if e.name == "aten::_to_copy" and e.input_shapes]
    assert [V, V * K] in cast  # the operator, once
    assert [B * T, V, V * K] not in cast and [B * T, V * K, V] not in cast, cast
    assert conv.PA.grad is not None and conv.PA.grad.abs().sum() > 0


@pytest.mark.parametrize("channels", [(4, 6), (6, 4), (5, 5)])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("adaptive", ["importance", "init"])
def test_pre_product_gradients_equal_the_einsum_reference(adaptive, backend, channels):
    """The ``pre`` product aggregates the narrower side first (the input where C_in < C_out) and the bias
    once per joint: values and the gradients of every parameter (the bias included) and of ``x`` equal
    PYSKL's formulation, with a masked (parametrized) weight, and with a hook on ``conv`` (which then runs
    as a module, product first)."""
    cin, cout = channels
    graph, conv = _make("nturgb+d", adaptive, "pre", seed=3, with_res=True, cin=cin, cout=cout)
    conv = conv.double()
    conv.backend = backend
    mask = (torch.rand_like(conv.conv.weight) > 0.3).double()
    parametrize.register_parametrization(conv.conv, "weight", _Scale(mask))
    V = graph.num_nodes
    x = torch.randn(2, 3, V, cin, dtype=torch.float64)
    R = torch.randn(2, 3, V, cout, dtype=torch.float64)
    out, grads = _run(conv, x, R)

    def reference() -> torch.Tensor:
        A_eff = conv.A * conv.PA if adaptive == "importance" else conv.A
        return torch.relu(conv.bn(_reference(conv, xr, A_eff)) + (xr if conv.down is None else conv.down(xr)))

    conv.zero_grad(set_to_none=True)
    xr = x.clone().requires_grad_()
    ref = reference()
    (ref * R).sum().backward()
    ref_grads = {n: p.grad.clone() for n, p in conv.named_parameters()}
    ref_grads["x"] = xr.grad.clone()
    torch.testing.assert_close(out, ref.detach(), atol=1e-12, rtol=0)
    assert grads.keys() == ref_grads.keys() and "conv.bias" in grads
    _assert_equal(grads, ref_grads, tol=1e-11)

    no_bias, zero_bias = copy.deepcopy(conv), copy.deepcopy(conv)
    no_bias.conv.bias = None  # a bias-free conv: the same order, nothing added
    with torch.no_grad():
        zero_bias.conv.bias.zero_()
    (out_nb, grads_nb), (out_zb, grads_zb) = _run(no_bias, x, R), _run(zero_bias, x, R)
    torch.testing.assert_close(out_nb, out_zb, atol=1e-12, rtol=0)
    _assert_equal(grads_nb, {k: v for k, v in grads_zb.items() if k != "conv.bias"}, tol=1e-12)

    calls = []
    conv.conv.register_forward_hook(lambda m, i, o: calls.append(o.shape))
    hooked, hooked_grads = _run(conv, x, R)
    assert calls == [(2, 3, V, 3 * cout)]
    torch.testing.assert_close(hooked, out, atol=1e-12, rtol=0)
    _assert_equal(hooked_grads, grads, tol=1e-11)


class _Scale(torch.nn.Module):
    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w * self.mask
