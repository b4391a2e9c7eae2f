"""ONNX export of AAGCN, CTR-GCN and DG-STGCN (dense, pruned, generator-trained): the dense aggregation path
with the static adjacency and the connection mask as constants, no scatter operator, onnx.checker, and
onnxruntime equal to torch at a dynamic batch."""
from __future__ import annotations

import importlib.util

import pytest
import torch
from backbone_reference import live_classifier
from torch import nn

from pyg_sparse_stgcn.nn.conv.skeleton_mp import SkeletonMessagePassing

HAS_ORT = importlib.util.find_spec("onnx") is not None and importlib.util.find_spec("onnxruntime") is not None
needs_ort = pytest.mark.skipif(not HAS_ORT, reason="onnx / onnxruntime not installed (pip install .[deploy])")

KINDS = ("aagcn", "ctrgcn", "dgstgcn")
SCATTER = ("ScatterND", "ScatterElements", "Scatter", "ScatterAdd", "IndexAdd")


def model_of(kind: str) -> nn.Module:
    return live_classifier(kind, backend="auto").eval()


def generator_trained(kind: str) -> nn.Module:
    from pyg_sparse_stgcn.sparsity.generator import SparseGenerator

    gen = SparseGenerator(model_of(kind), 0.8, kinds=("weight", "edge"), edge_sparsity=0.5, scope="block")
    gen.set_epoch(1, 2)
    opt = torch.optim.SGD([p for p in gen.parameters() if p.requires_grad], lr=0.05)
    gen.train()
    for _ in range(2):
        loss = nn.functional.cross_entropy(gen(torch.randn(2, 2, 8, 25, 3)), torch.tensor([0, 1]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return gen.eval()


def variant(kind: str, how: str) -> nn.Module:
    if how == "generator":
        return generator_trained(kind)
    m = model_of(kind)
    if how == "pruned":
        from pyg_sparse_stgcn.sparsity import prune

        prune(m, 0.8, edge_sparsity=0.5)
    return m


@needs_ort
@pytest.mark.parametrize("how", ["dense", "pruned", "generator"])
@pytest.mark.parametrize("kind", KINDS)
def test_onnx_export_equals_torch_without_scatter(tmp_path, kind, how):
    import onnx

    from pyg_sparse_stgcn.deploy import OnnxModel, export_onnx

    model = variant(kind, how)
    path = export_onnx(model, tmp_path / "m.onnx", frames=8, persons=2)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    ops = {n.op_type for n in proto.graph.node}
    assert not ops & set(SCATTER) and not any("Scatter" in o for o in ops), ops
    assert "MatMul" in ops
    ort = OnnxModel(path)
    assert ort.input_shape[0] == "batch" and ort.input_shape[1:] == [2, 8, 25, 3]
    x = torch.randn(3, 2, 8, 25, 3)  # a batch other than the traced one
    with torch.no_grad():
        ref = model(x)
    torch.testing.assert_close(ort(x), ref, atol=1e-4, rtol=0)


@pytest.mark.parametrize("kind", KINDS)
def test_frozen_units_hold_the_connection_mask_and_equal_the_model(kind):
    """The ONNX-ready copy keeps every pruned connection removed (static and dynamic terms) as constants,
    whatever the backend, and its outputs equal the masked model's."""
    from pyg_sparse_stgcn.deploy.onnx import onnx_ready
    from pyg_sparse_stgcn.sparsity import fold, prune

    model = model_of(kind)
    prune(model, 0.8, edge_sparsity=0.5)
    folded = fold(model)
    ready = onnx_ready(model)
    units = {n: m for n, m in ready.named_modules() if isinstance(m, SkeletonMessagePassing)}
    assert units and all(u.is_frozen and u.backend == "dense" for u in units.values())
    for name, unit in units.items():
        ref = folded.get_submodule(name)
        mask = unit.connection_mask()
        assert mask is not None and bool((mask == 0).any())
        torch.testing.assert_close(mask, ref.connection_mask())
        torch.testing.assert_close(unit.adjacency(), ref.adjacency())
        assert not any(k.startswith("_frozen") for k in unit.state_dict())  # state dict keys unchanged
    x = torch.randn(2, 2, 8, 25, 3)
    with torch.no_grad():
        want = model(x)
        torch.testing.assert_close(ready(x), want, atol=1e-5, rtol=0)
        for backend in ("sparse", "scatter"):  # frozen: every backend runs the same constant operator
            for unit in units.values():
                unit.backend = backend
            torch.testing.assert_close(ready(x), want, atol=1e-5, rtol=0)
