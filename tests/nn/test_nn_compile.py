"""compile_model: torch.compile with the inductor options of the channels-last models."""
from __future__ import annotations

import torch

from pyg_sparse_stgcn.nn import STGCNPlusPlus, compile_model

SMALL = dict(base_channels=8, num_stages=2, inflate_stages=(2,), down_stages=(2,), backend="dense")


def test_compile_model_passes_its_inductor_options(monkeypatch):
    seen = []
    monkeypatch.setattr(torch, "compile", lambda model, **kw: seen.append(kw) or model)
    model = torch.nn.Linear(2, 2)
    assert compile_model(model) is model
    assert compile_model(model, options={"max_autotune": True}, fullgraph=True) is model
    compile_model(model, options={"layout_optimization": True})  # an explicit choice wins
    compile_model(model, mode="reduce-overhead")  # torch.compile takes mode or options, not both
    compile_model(model, backend="eager")
    assert seen == [{"options": {"layout_optimization": False}},
                    {"options": {"layout_optimization": False, "max_autotune": True}, "fullgraph": True},
                    {"options": {"layout_optimization": True}},
                    {"mode": "reduce-overhead"},
                    {"backend": "eager"}]


def test_compiled_stgcn_plus_plus_equals_eager():
    torch.manual_seed(0)
    model = STGCNPlusPlus(dict(layout="nturgb+d", mode="spatial"), **SMALL).eval()
    x = torch.randn(2, 2, 8, 25, 3)
    with torch.no_grad():
        torch.testing.assert_close(compile_model(model, fullgraph=True)(x), model(x), rtol=1e-4, atol=1e-5)
