"""torch.compile of the dense path of AAGCN, CTR-GCN and DG-STGCN: ``fullgraph=True`` (any graph break is an
error) in eval and in training, with an edge gate on every graph unit and inside the sparse generator with
weight and edge masks; compiled outputs and gradients equal eager ones."""
from __future__ import annotations

import pytest
import torch
import torch._dynamo
from backbone_reference import RANDOM, SPATIAL, randomise

from pyg_sparse_stgcn.nn import AAGCN, CTRGCN, DGSTGCN, GCNHead, SkeletonClassifier
from pyg_sparse_stgcn.sparsity.generator import SparseGenerator

# two stages: the second inflates and strides, so the GCN's `down`, the residual conv and stride 2 are traced
SMALL = dict(base_channels=8, num_stages=2, inflate_stages=(2,), down_stages=(2,), backend="dense")
KINDS = ["aagcn", "ctrgcn", "dgstgcn"]


def _build(kind: str):
    if kind == "aagcn":
        return AAGCN(SPATIAL, **SMALL)
    if kind == "ctrgcn":
        return CTRGCN(SPATIAL, **SMALL)
    return DGSTGCN(RANDOM, gcn_ratio=0.125, gcn_ctr="T", gcn_ada="T", **SMALL)


def _units(model):
    return [b.gcn1 if hasattr(b, "gcn1") else b.gcn for b in model.blocks]


@pytest.mark.parametrize("kind", KINDS)
def test_dense_path_compiles_in_one_graph_and_equals_eager(kind):
    torch.manual_seed(0)
    model = _build(kind).double()
    randomise(model)
    g = torch.Generator().manual_seed(0)
    for unit in _units(model):  # half of every unit's edge entries removed
        gate = unit.enable_edge_gate()
        gate.copy_((torch.rand(gate.shape, generator=g) > 0.5).double())
    x = torch.randn(2, 2, 9, 25, 3, dtype=torch.float64)
    torch._dynamo.reset()
    compiled = torch.compile(model, backend="eager", fullgraph=True)  # dynamo only: a break raises
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), rtol=1e-12, atol=1e-12)
    model.train()
    grads = []
    for fn in (model, compiled):
        model.zero_grad()
        fn(x).square().sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0] and grads[0].keys() == grads[1].keys()
    for n in grads[0]:
        torch.testing.assert_close(grads[1][n], grads[0][n], rtol=1e-10, atol=1e-12, msg=n)


@pytest.mark.parametrize("kind", ["dgstgcn"])  # the paper's ensemble backbone; the wrapping is backbone-agnostic
def test_generator_with_weight_and_edge_masks_compiles_in_one_graph(kind):
    torch.manual_seed(0)
    model = SkeletonClassifier(_build(kind), GCNHead(4, 16))
    gen = SparseGenerator(model, 0.8, kinds=("weight", "edge"), edge_sparsity=0.5, scope="block")
    gen.set_epoch(1, 2)
    gen.train()
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(gen)(torch.randn(2, 2, 9, 25, 3))
    assert explanation.graph_break_count == 0, explanation.break_reasons
