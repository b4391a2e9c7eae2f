"""fold and to_sparse_kernels on AAGCN, CTR-GCN and DG-STGCN: outputs equal the masked model, per-layer
aggregation choices on every graph unit, and per-layer fallbacks with a message naming the layer."""
from __future__ import annotations

import warnings

import pytest
import torch
from backbone_reference import live_classifier
from torch import nn
from torch.nn.utils import parametrize

from pyg_sparse_stgcn.nn.conv.skeleton_mp import SkeletonMessagePassing
from pyg_sparse_stgcn.sparsity import fold, prune, to_sparse_kernels
from pyg_sparse_stgcn.sparsity.export import CSRLinear

KINDS = ("aagcn", "ctrgcn", "dgstgcn")


def masked(kind: str, backend: str = "auto") -> nn.Module:
    """A pruned (weights 80 %, edges 50 %) tiny classifier whose dynamic terms matter."""
    m = live_classifier(kind, backend)
    prune(m, 0.8, edge_sparsity=0.5)
    return m.eval()


def x_in() -> torch.Tensor:
    return torch.randn(2, 2, 8, 25, 3)


@pytest.mark.parametrize("kind", KINDS)
def test_fold_equals_masked_model(kind):
    model = masked(kind)
    x = x_in()
    out = fold(model).eval()
    assert not any(parametrize.is_parametrized(m) for m in out.modules())
    with torch.no_grad():
        torch.testing.assert_close(out(x), model(x), atol=1e-5, rtol=0)
    for name, unit in out.named_modules():  # the folded gate still removes the pruned connections
        if isinstance(unit, SkeletonMessagePassing):
            mask = unit.connection_mask()
            assert mask is not None and bool((mask == 0).any()), name


@pytest.mark.parametrize("aggregation", ["auto", "dense", "sparse"])
@pytest.mark.parametrize("layout", ["auto", "channels_last"])
@pytest.mark.parametrize("kind", KINDS)
def test_to_sparse_kernels_equals_masked_model(kind, layout, aggregation):
    model = masked(kind)
    x = x_in()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        out = to_sparse_kernels(model, x, repeats=1, layout=layout, aggregation=aggregation)
    res = out.export_result
    assert res.layout == "channels_last"
    units = [n for n, m in out.named_modules() if isinstance(m, SkeletonMessagePassing)]
    assert [a.name for a in res.aggregations] == units  # every graph unit got its own decision
    for a in res.aggregations:
        assert a.choice in ("dense", "sparse")
        assert out.get_submodule(a.name).backend == a.choice
        if aggregation != "auto":
            assert a.choice == aggregation and a.forced
    with torch.no_grad():
        torch.testing.assert_close(out(x), model(x), atol=1e-5, rtol=0)
        x2 = torch.randn(3, 2, 8, 25, 3)
        torch.testing.assert_close(out(x2), model(x2), atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", KINDS)
def test_forced_csr_falls_back_per_layer_with_a_message(kind):
    model = masked(kind)
    x = x_in()
    with pytest.warns(UserWarning, match="to_sparse_kernels: fell back for some layers") if kind != "dgstgcn" \
            else warnings.catch_warnings():
        out = to_sparse_kernels(model, x, repeats=1, layout="auto", force=True, min_sparsity=0.0)
    res = out.export_result
    msgs = res.fallbacks()
    # the whole-model channel-major layout is ST-GCN only: recorded with its reason
    assert any(m.startswith("layout: channels_last instead of channel_major") and "STGCN" in m for m in msgs)
    swapped = {c.name for c in res.products if c.sparse}
    assert swapped and all(isinstance(out.get_submodule(n), CSRLinear) or
                           type(out.get_submodule(n)).__name__ == "CSRTemporalConv" for n in swapped)
    noted = [c for c in res.products if c.note]
    fused = {"aagcn": (".conv_d.", ".conv_a.", ".conv_b."), "ctrgcn": (".conv3", ".conv4"), "dgstgcn": ()}[kind]
    if fused:
        assert noted and all(any(f in c.name for f in fused) for c in noted)
        for c in noted:  # the message names the layer and why; the layer is still the dense original
            assert c.name in c.note and "kept dense" in c.note and not c.sparse
            assert isinstance(out.get_submodule(c.name), nn.Linear)
    else:  # DG-STGCN calls every maskable Linear as a module: nothing falls back per layer
        assert not noted
    # the multi-scale units called their branch projections one by one while the kernels were chosen (so
    # each could take a CSR kernel) and fuse the ones left dense again
    units = [m for m in out.modules() if hasattr(m, "fuse_branches")]
    assert all(u.fuse_branches for u in units) and (units or kind == "aagcn")
    with torch.no_grad():
        torch.testing.assert_close(out(x), model(x), atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", KINDS)
def test_channel_major_names_the_backbone(kind):
    with pytest.raises(ValueError, match=r"channel-major export needs an STGCN.*got (AAGCN|CTRGCN|DGSTGCN)"):
        to_sparse_kernels(masked(kind), x_in(), repeats=1, layout="channel_major")


@pytest.mark.parametrize("kind", KINDS)
def test_removed_edges_send_no_message_after_export(kind):
    """After export the pruned candidate edges are gone from every unit, and the static and dynamic terms
    of a removed connection stay zero."""
    model = masked(kind)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        out = to_sparse_kernels(model, x_in(), repeats=1, layout="channels_last", aggregation="sparse")
    assert out.export_result.edges_removed > 0
    for name, unit in out.named_modules():
        if isinstance(unit, SkeletonMessagePassing):
            mask = unit.connection_mask()
            assert mask is not None
            assert bool((unit.adjacency()[mask == 0] == 0).all()), name
