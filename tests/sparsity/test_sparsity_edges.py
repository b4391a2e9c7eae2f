"""Edge sparsity over *real* entries: targets, pruning, IMP, generator scores, reports, removed work, no syncs.

Every count here is recomputed in the test from the graph's own adjacency ``A`` and the layer's effective
adjacency, not read from the library's report.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from pyg_sparse_stgcn.graph import SkeletonGraph
from pyg_sparse_stgcn.nn import STGCN, GCNHead, SkeletonClassifier, STGCNConv
from pyg_sparse_stgcn.sparsity import (
    IterativeMagnitudePruning,
    SparseGenerator,
    attach_masks,
    load_mask_state_dict,
    mask_state_dict,
    prune,
    random_prune,
    report,
    set_mask,
    targets,
)

GRAPHS = [("spatial", 1), ("stgcn_spatial", 1), ("distance", 2)]


def model_for(mode: str, max_hop: int, adaptive, layout: str = "coco", backend: str = "dense") -> nn.Module:
    bb = STGCN({"layout": layout, "mode": mode, "max_hop": max_hop}, base_channels=8, num_stages=3,
               inflate_stages=(2,), down_stages=(2,), gcn_adaptive=adaptive, backend=backend)
    return SkeletonClassifier(bb, GCNHead(4, bb.out_channels))


def convs(model: nn.Module) -> list[STGCNConv]:
    return [m for m in model.modules() if isinstance(m, STGCNConv)]


def real_and_removed(conv: STGCNConv) -> tuple[int, int]:
    """(real entries, real entries whose effective weight is now zero), from the graph's A alone."""
    real = conv._A_init != 0
    with torch.no_grad():
        eff = conv.adjacency()
    return int(real.sum()), int((real & (eff == 0)).sum())


def totals(model: nn.Module) -> tuple[int, int]:
    pairs = [real_and_removed(c) for c in convs(model)]
    return sum(p[0] for p in pairs), sum(p[1] for p in pairs)


@pytest.mark.parametrize("mode,max_hop", GRAPHS)
@pytest.mark.parametrize("adaptive", [None, "importance"])
@pytest.mark.parametrize("s", [0.3, 0.5, 0.8])
def test_prune_removes_exactly_round_s_real_entries(mode, max_hop, adaptive, s):
    model = model_for(mode, max_hop, adaptive)
    real, removed = totals(model)
    assert removed == 0
    # a real fraction of the candidate entries is structurally zero: they must not be counted
    assert real < sum(c.edge_weight_base().numel() for c in convs(model))
    rep = prune(model, 0.0, kinds="edge", edge_sparsity=s)
    real, removed = totals(model)
    assert removed == math.floor(s * real + 0.5)
    assert rep.kinds["edge"]["total"] == real
    assert rep.kinds["edge"]["sparsity"] == pytest.approx(removed / real)


@pytest.mark.parametrize("adaptive", [None, "importance"])
def test_three_imp_levels_remove_48_8_percent_of_real_entries(tmp_path, adaptive):
    model = model_for("spatial", 1, adaptive)

    def train_fn(m, *, level, out_dir, start_step, on_step):
        with torch.no_grad():  # make the trained values differ per level so ranking is not trivial
            for c in convs(m):
                if adaptive == "importance":
                    c.PA.mul_(1.0 + 0.1 * torch.rand_like(c.PA))
        on_step(1)
        return {"top1": 0.0}

    IterativeMagnitudePruning(model, train_fn, tmp_path, levels=3, fraction=0.2, kinds="edge").run()
    real, removed = totals(model)
    expected = real
    for _ in range(3):  # each level removes round(0.2 * remaining) of each (global) pool
        expected -= math.floor(0.2 * expected + 0.5)
    assert removed == real - expected
    assert removed / real == pytest.approx(0.488, abs=0.01)


def test_imp_target_sparsity_trims_the_last_level(tmp_path):
    model = model_for("spatial", 1, "importance")

    def train_fn(m, *, level, out_dir, start_step, on_step):
        on_step(1)
        return {}

    imp = IterativeMagnitudePruning(model, train_fn, tmp_path, fraction=0.2, kinds="weight", target_sparsity=0.5)
    assert imp.levels == 4  # 1 - 0.8**3 = 0.488 < 0.5 <= 1 - 0.8**4
    imp.run()
    w = [t for t in targets(model, "weight")]
    total = sum(t.numel for t in w)
    kept = sum(int((t.module.weight != 0).sum()) for t in w)
    assert 1 - kept / total == pytest.approx(0.5, abs=2e-3)
    with pytest.raises(ValueError, match="levels=2 conflicts with target_sparsity=0.5"):
        IterativeMagnitudePruning(model_for("spatial", 1, None), train_fn, tmp_path / "b", levels=2,
                                  target_sparsity=0.5)


def test_random_reinit_trains_from_the_rewind_step(tmp_path):
    model = model_for("spatial", 1, None)
    starts: dict[str, list[int]] = {}

    def train_fn(m, *, level, out_dir, start_step, on_step):
        for step in range(1, 4):
            on_step(step)
        starts.setdefault(out_dir.name, []).append(start_step)
        return {}

    IterativeMagnitudePruning(model, train_fn, tmp_path, levels=1, rewind_step=2,
                              branches=("random_reinit", "random_prune")).run()
    assert starts["level_1"] == [2]
    assert starts["random_reinit"] == [2] and starts["random_prune"] == [2]


def test_random_prune_and_shuffle_never_touch_non_real_entries():
    model = model_for("spatial", 1, None)
    random_prune(model, 0.0, kinds="edge", edge_sparsity=0.5, generator=torch.Generator().manual_seed(1))
    for conv in convs(model):  # random_prune's default scope is per layer
        real, removed = real_and_removed(conv)
        assert removed == math.floor(0.5 * real + 0.5)
    masks = mask_state_dict(model)
    for t in targets(model, "edge"):
        assert masks[t.name].shape == (int(t.module.edge_real.sum()),)


@pytest.mark.parametrize("backend", ["dense", "sparse", "scatter"])
def test_every_real_edge_score_gets_a_gradient(backend):
    model = model_for("spatial", 1, "importance", backend=backend)
    gen = SparseGenerator(model, 0.5, kinds="edge")
    gen.train()
    out = gen(torch.randn(2, 1, 12, 17, 3))
    out.square().sum().backward()
    for t, m in zip(gen._targets, gen._masks):
        real = t.module.edge_real
        assert bool((m.score.grad[real] != 0).all()), t.name
        assert bool((m.score.grad[~real] == 0).all())


def test_generator_edge_threshold_counts_real_entries_only():
    model = model_for("spatial", 1, None)
    gen = SparseGenerator(model, 0.3, kinds="edge", score_init="magnitude")
    gen.eval()
    gen(torch.randn(1, 1, 8, 17, 3))
    real, removed = totals(model)
    # exactly the target over real entries: neither the dead slots nor the many equal values of A tie at tau
    assert removed == math.floor(0.3 * real + 0.5)
    assert report(gen).kinds["edge"]["sparsity"] == pytest.approx(removed / real)


def test_edge_sparsity_that_empties_a_layer_is_an_error():
    A = torch.zeros(1, 4, 4)
    A[0, 0, 1] = A[0, 1, 2] = A[0, 2, 3] = 1.0
    conv = STGCNConv(2, 2, A, adaptive=None)
    with pytest.raises(ValueError, match=r"all 3 remaining real entries of '0.edge_gate'.*3 real entries"):
        prune(nn.Sequential(conv), 0.0, kinds="edge", edge_sparsity=0.9, scope="layer")


def test_mask_files_old_full_shape_load_and_wrong_counts_fail():
    model = model_for("spatial", 1, None)
    prune(model, 0.0, kinds="edge", edge_sparsity=0.5)
    saved = mask_state_dict(model)
    edge_name = next(t.name for t in targets(model, "edge"))
    conv = next(t.module for t in targets(model, "edge"))
    full = torch.ones_like(conv.edge_real)  # the pre-real-entries (K, E) format
    full[conv.edge_real] = saved[edge_name]
    fresh = model_for("spatial", 1, None)
    attach_masks(fresh, "edge")
    load_mask_state_dict(fresh, {**saved, edge_name: full})
    assert totals(fresh) == totals(model)
    bad = {**saved, edge_name: saved[edge_name][:-2]}
    n = int(conv.edge_real.sum())
    with pytest.raises(ValueError, match=rf"{edge_name}.*holds {n - 2} entries.*has {n} real entries"):
        load_mask_state_dict(fresh, bad)


def test_report_counts_connections_and_bones_like_a_hand_count():
    model = model_for("spatial", 1, None)
    prune(model, 0.0, kinds="edge", edge_sparsity=0.6, scope="layer")
    rep = report(model, "edge")
    graph = SkeletonGraph("coco", "spatial")
    bones = {tuple(sorted(p)) for p in graph.layout.inward}
    tot = {"all": [0, 0], "bones": [0, 0], "self_loops": [0, 0], "links": [0, 0]}
    for conv, row in zip(convs(model), rep.targets):
        with torch.no_grad():
            eff = conv.adjacency()
        real = (conv._A_init != 0).any(0)
        kept = (eff != 0).any(0)
        layer = {"all": [0, 0], "bones": [0, 0], "self_loops": [0, 0], "links": [0, 0]}
        for v, w in zip(*np.nonzero(real.numpy())):
            cls = "self_loops" if v == w else "bones" if tuple(sorted((int(v), int(w)))) in bones else "links"
            for key in ("all", cls):
                layer[key][0] += 1
                layer[key][1] += int(kept[v, w])
        c = row["connections"]
        assert (c["total"], c["kept"]) == tuple(layer["all"])
        for cls in ("bones", "self_loops", "links"):
            assert (c[cls]["total"], c[cls]["kept"]) == tuple(layer[cls])
            tot[cls][0] += layer[cls][0]
            tot[cls][1] += layer[cls][1]
        tot["all"][0] += layer["all"][0]
        tot["all"][1] += layer["all"][1]
        for k, sub in enumerate(row["subsets"]):
            assert sub["total"] == int((conv._A_init[k] != 0).sum())
            assert sub["kept"] == int((eff[k] != 0).sum())
    assert rep.connections["total"] == tot["all"][0]
    assert rep.edge_sparsity_connections == pytest.approx(1 - tot["all"][1] / tot["all"][0])
    assert rep.connections["bones"]["total"] == tot["bones"][0] == 3 * 2 * len(bones)  # 3 layers, both directions
    assert rep.connections["bones"]["kept"] == tot["bones"][1]
    assert "connections" in str(rep)


def test_report_is_exact_after_a_training_forward():
    model = model_for("spatial", 1, None)
    gen = SparseGenerator(model, 0.5, warm_up=1)
    gen.set_epoch(0)
    gen.train()
    gen(torch.randn(1, 1, 8, 17, 3))  # warm-up: the training thresholds keep everything
    assert report(gen).kinds["weight"]["sparsity"] == pytest.approx(0.0)
    gen.eval()  # no forward in eval mode: the report must still use the eval (target) sparsity
    assert report(gen).kinds["weight"]["sparsity"] == pytest.approx(0.5, abs=1e-3)


@pytest.mark.parametrize("pre", ["pre", "post"])
def test_scatter_sends_no_message_along_a_removed_edge(pre):
    graph = SkeletonGraph("coco", "spatial")
    conv = STGCNConv(3, 4, graph, adaptive="importance", conv_pos=pre, backend="scatter")
    ref = STGCNConv(3, 4, graph, adaptive="importance", conv_pos=pre, backend="dense")
    ref.load_state_dict(conv.state_dict())
    seq, seq_ref = nn.Sequential(conv), nn.Sequential(ref)
    prune(seq, 0.0, kinds="edge", edge_sparsity=0.7)
    load_mask_state_dict(seq_ref, mask_state_dict(seq))
    sizes = []
    conv.register_message_forward_hook(lambda m, inp, out: sizes.append(out.size(-2)))
    x = torch.randn(2, 5, 17, 3)
    torch.testing.assert_close(conv(x), ref(x), atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        kept_entries = int((conv.adjacency() != 0).sum())
    assert sizes == [kept_entries]
    assert kept_entries == conv.num_live_entries()


@pytest.mark.parametrize("backend", ["sparse", "scatter"])
def test_changing_a_mask_invalidates_the_cached_operator(backend):
    graph = SkeletonGraph("coco", "spatial")
    conv = STGCNConv(3, 4, graph, adaptive=None, backend=backend)
    ref = STGCNConv(3, 4, graph, adaptive=None, backend="dense")
    ref.load_state_dict(conv.state_dict())
    seq, seq_ref = nn.Sequential(conv), nn.Sequential(ref)
    x = torch.randn(2, 5, 17, 3)
    for s in (0.3, 0.6):
        prune(seq, 0.0, kinds="edge", edge_sparsity=s)
        load_mask_state_dict(seq_ref, mask_state_dict(seq), strict=False)
        torch.testing.assert_close(conv(x), ref(x), atol=1e-5, rtol=1e-5)
    t = targets(seq, "edge")[0]
    set_mask(t, torch.ones(t.shape, dtype=torch.bool))
    set_mask(targets(seq_ref, "edge")[0], torch.ones(t.shape, dtype=torch.bool))
    torch.testing.assert_close(conv(x), ref(x), atol=1e-5, rtol=1e-5)


class _SyncRecorder(TorchDispatchMode):
    """Records the ops that force a device→host synchronisation on CUDA."""

    SYNC_OPS = {"aten.nonzero.default", "aten.item.default", "aten._local_scalar_dense.default",
                "aten.masked_select.default", "aten.nonzero_static.default"}

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func)
        if name in self.SYNC_OPS:
            self.seen.append(name)
        elif name.startswith("aten.index") and any(
                isinstance(i, torch.Tensor) and i.dtype == torch.bool
                for a in args if isinstance(a, (list, tuple)) for i in a):
            self.seen.append(name + "[bool]")
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("backend", ["auto", "dense", "sparse", "scatter"])
@pytest.mark.parametrize("scores", [False, True])
def test_a_training_step_makes_no_host_synchronisation(backend, scores):
    model = model_for("spatial", 1, "importance", backend=backend)
    if scores:
        net: nn.Module = SparseGenerator(model, 0.5, kinds=("weight", "edge"), edge_sparsity=0.3)
    else:
        prune(model, 0.5, edge_sparsity=0.3)
        net = model
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.randn(2, 1, 12, 17, 3), torch.tensor([0, 1])

    def step():
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()

    step()  # the first step builds the operators (and times the auto backend)
    with _SyncRecorder() as rec:
        step()
        step()
    assert rec.seen == []


@pytest.mark.cuda
@pytest.mark.parametrize("backend", ["dense", "sparse", "scatter"])
def test_cuda_training_step_has_no_sync(backend):
    model = model_for("spatial", 1, "importance", backend=backend).cuda()
    prune(model, 0.5, edge_sparsity=0.3)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(2, 1, 12, 17, 3, device="cuda"), torch.tensor([0, 1], device="cuda")

    def step():
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    step()
    torch.cuda.set_sync_debug_mode("error")
    try:
        step()
    finally:
        torch.cuda.set_sync_debug_mode(0)


def test_user_composed_model_targets_pyg_layers_and_reports_the_left_out_head():
    from torch_geometric.nn import GCNConv

    from pyg_sparse_stgcn.nn import TemporalConv

    class MyModel(nn.Module):
        def __init__(self):
            super().__init__()
            graph = SkeletonGraph("coco", mode="spatial")
            self.register_buffer("edge_index", graph.edge_index)
            self.st = STGCNConv(3, 8, graph)
            self.tcn = TemporalConv(8, 8, kernel_size=3)
            self.gcn = GCNConv(8, 8)
            self.fc = nn.Linear(8, 3)

        def forward(self, x):
            x = self.tcn(self.st(x))
            x = self.gcn(x, self.edge_index).relu()
            return self.fc(x.mean(dim=(1, 2)))

    model = MyModel()
    names = [t.name for t in targets(model, "weight")]
    assert "gcn.lin.weight" in names and "st.conv.weight" in names and "tcn.conv.weight" in names
    assert "fc.weight" not in names
    rep = prune(model, 0.5)
    assert [d["name"] for d in rep.left_out] == ["fc.weight"]
    assert "last weight-bearing layer" in rep.left_out[0]["reason"]
    assert "left out: fc.weight" in str(rep)
    assert "fc.weight" in [t.name for t in targets(model, "weight", include_head=True)]
    model(torch.randn(2, 6, 17, 3))


def test_block_scope_prunes_each_block_exactly():
    model = model_for("spatial", 1, "importance")
    prune(model, 0.5, scope="block", edge_sparsity=0.4)
    per_block: dict[tuple[str, str], list[int]] = {}
    for t in targets(model):
        if t.kind == "weight":
            total, kept = t.numel, int((t.module.weight != 0).sum())
        else:
            total, removed = real_and_removed(t.module)
            kept = total - removed
        acc = per_block.setdefault((t.kind, t.block), [0, 0])
        acc[0] += total
        acc[1] += kept
    assert len(per_block) == 6
    for (kind, _), (total, kept) in per_block.items():
        s = 0.5 if kind == "weight" else 0.4
        assert total - kept == math.floor(s * total + 0.5)


def test_cached_operator_is_not_copied_and_copies_stay_correct():
    import copy

    model = model_for("spatial", 1, None, backend="sparse").eval()
    prune(model, 0.0, kinds="edge", edge_sparsity=0.5)
    x = torch.randn(1, 1, 8, 17, 3)
    out = model(x)
    twin = copy.deepcopy(model)
    assert all(len(c._plans) == 0 for c in convs(twin))
    torch.testing.assert_close(twin(x), out)
    prune(twin, 0.0, kinds="edge", edge_sparsity=0.5)  # the copy's masks change, the original's do not
    assert not torch.allclose(twin(x), out)
    torch.testing.assert_close(model(x), out)


def test_layers_marked_dense_are_left_out_and_listed():
    from pyg_sparse_stgcn.nn import AAGCN

    bb = AAGCN({"layout": "coco", "mode": "spatial"}, base_channels=8, num_stages=2, inflate_stages=(), down_stages=())
    names = [t.name for t in targets(bb, "weight")]
    assert not any(n.split(".")[-2] in ("conv_ta", "conv_sa", "fc1c", "fc2c") for n in names)
    assert any(".conv_d." in n or ".conv_a." in n for n in names)
    dense = [d for d in report(bb, "weight").left_out if "sparsity_dense" in d["reason"]]
    assert {d["name"].split(".")[-2] for d in dense} == {"conv_ta", "conv_sa", "fc1c", "fc2c"}
    first = next(m for m in bb.modules() if getattr(m, "sparsity_dense", False))
    first.sparsity_dense = False
    assert len(targets(bb, "weight")) == len(names) + 1
