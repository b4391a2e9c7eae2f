"""The sparse generator: exact thresholds per scope, no host sync, schedule, penalty, compatibility flags."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from pyg_sparse_stgcn.nn import STGCN, GCNHead, SkeletonClassifier
from pyg_sparse_stgcn.sparsity import SparseGenerator, get_mask, report
from pyg_sparse_stgcn.sparsity.generator import percentile_threshold
from pyg_sparse_stgcn.sparsity.magnitude import num_to_remove


def tiny(num_stages: int = 4) -> SkeletonClassifier:
    bb = STGCN({"layout": "coco", "mode": "spatial"}, base_channels=8, num_stages=num_stages,
               inflate_stages=(3,), down_stages=(3,), backend="dense")
    return SkeletonClassifier(bb, GCNHead(5, bb.out_channels))


def x_in(n: int = 2) -> torch.Tensor:
    return torch.randn(n, 1, 16, 17, 3)


def real_of(t) -> torch.Tensor:
    """Real entries from the graph's own A (edges); every entry of a weight."""
    if t.kind == "weight":
        return torch.ones(t.shape, dtype=torch.bool)
    conv = t.module
    return conv._A_init.flatten(1)[:, conv.edge_index[0] * conv.num_nodes + conv.edge_index[1]] != 0


def kept_by_group(gen: SparseGenerator, key) -> dict:
    out: dict = {}
    for t, m in zip(gen._targets, gen._masks):
        k = key(t)
        tot, kept = out.get(k, (0, 0))
        real = real_of(t)
        out[k] = (tot + int(real.sum()), kept + int((m.current() & real).sum()))
    return out


@pytest.mark.parametrize("scope,key", [
    ("global", lambda t: t.kind),
    ("block", lambda t: (t.kind, t.block)),
    ("layer", lambda t: (t.kind, t.name)),
])
def test_exact_sparsity_per_scope(scope, key):
    gen = SparseGenerator(tiny(), 0.8, edge_sparsity=0.6, kinds=("weight", "edge"), scope=scope).eval()
    gen(x_in())
    groups = kept_by_group(gen, key)
    assert len(groups) == {"global": 2, "block": 8, "layer": 13}[scope]
    for k, (tot, kept) in groups.items():
        s = 0.8 if (k if isinstance(k, str) else k[0]) == "weight" else 0.6
        assert tot - kept == num_to_remove(s, tot), k
    # the kept entries are exactly the largest scores of each group
    for m in gen._masks:
        assert torch.equal(m.current(), m.score.detach() > m.threshold)


def test_threshold_is_kth_smallest_score():
    s = torch.randn(1000)
    for p in (0.0, 0.2, 0.95, 0.999):
        tau = percentile_threshold(s, p)
        assert int((s <= tau).sum()) == num_to_remove(p, 1000)
        tau_paper = percentile_threshold(s, p, "paper")
        k = 1 + round(p * 999)
        assert tau_paper == torch.sort(s).values[k - 1]
        assert int((s < tau_paper).sum()) == k - 1  # paper rule keeps S >= tau


def test_paper_rule_keeps_ties_and_counts():
    gen = SparseGenerator(tiny(3), 0.7, threshold_rule="paper").eval()
    gen(x_in())
    tot, kept = kept_by_group(gen, lambda t: t.kind)["weight"]
    assert tot - kept == round(0.7 * (tot - 1))


class _NoSync:
    """Make every host-synchronising tensor call raise (CPU stand-in for a CUDA sync detector)."""

    NAMES = ("item", "cpu", "tolist", "numpy", "__bool__", "__int__", "__float__", "__index__", "nonzero")

    def __enter__(self):
        self.saved = {n: getattr(torch.Tensor, n) for n in self.NAMES}

        def boom(name):
            def f(*a, **k):
                raise AssertionError(f"host sync: Tensor.{name} called")
            return f
        for n in self.NAMES:
            setattr(torch.Tensor, n, boom(n))
        return self

    def __exit__(self, *exc):
        for n, f in self.saved.items():
            setattr(torch.Tensor, n, f)


@pytest.mark.parametrize("scope", ["global", "block", "layer"])
def test_no_host_sync_in_training_step(scope):
    model = nn.Sequential(nn.Linear(6, 6), nn.ReLU(), nn.Conv1d(8, 4, 3), nn.Flatten(), nn.Linear(16, 3))
    gen = SparseGenerator(model, 0.9, scope=scope, penalty="GSGL", warm_up=2).train()
    gen.set_epoch(1, 4)
    opt = torch.optim.SGD(gen.parameters(), lr=0.1)
    x, y = torch.randn(4, 8, 6), torch.tensor([0, 1, 2, 0])
    for epoch in (1, 3):  # penalty active (warm-up) and sparse phase
        gen.set_epoch(epoch, 4)
        with _NoSync():
            out = gen(x)
            loss = nn.functional.cross_entropy(out, y)
            extra = gen.extra_loss()
            if extra is not None:
                loss = loss + extra
            opt.zero_grad()
            loss.backward()
            opt.step()
    with pytest.raises(AssertionError, match="host sync"), _NoSync():
        torch.ones(1).item()


def test_no_host_sync_thresholds_on_stgcn_and_cuda_detector():
    gen = SparseGenerator(tiny(), 0.9, kinds=("weight", "edge"), scope="block", penalty="GSGL").train()
    x = x_in()
    with _NoSync():
        gen.update_thresholds()
        (gen(x).square().sum() + gen.extra_loss()).backward()  # a whole STGCN step (dense backend)
    if torch.cuda.is_available():
        g = gen.cuda()
        torch.cuda.set_sync_debug_mode("error")
        try:
            g.update_thresholds()
        finally:
            torch.cuda.set_sync_debug_mode("default")


def test_schedule_warm_up_ramp_eval():
    gen = SparseGenerator(tiny(3), 0.8, warm_up=2, ramp_epochs=4)
    gen.train()
    seq = []
    for e in range(8):
        gen.set_epoch(e, 8)
        seq.append(gen.current_sparsity())
    assert all(math.isclose(a, b) for a, b in zip(seq, [0, 0, 0.2, 0.4, 0.6, 0.8, 0.8, 0.8]))
    gen.set_epoch(0, 8)
    gen(x_in())
    assert report(gen).kinds["weight"]["sparsity"] == 0.0  # dense warm-up
    gen.eval()
    gen(x_in())
    assert abs(report(gen).kinds["weight"]["sparsity"] - 0.8) < 1e-3  # eval uses the target
    gen.eval_sparsity = "current"
    gen(x_in())
    assert report(gen).kinds["weight"]["sparsity"] == 0.0
    paper = SparseGenerator(tiny(3), 0.6, warm_up=1, paper_ramp=True).train()
    vals = []
    for e in range(6):
        paper.set_epoch(e, 6)
        vals.append(paper.current_sparsity())
    assert vals[0] == 0.0 and math.isclose(vals[1], 0.6 / 3) and math.isclose(vals[2], 0.4)
    assert vals[3:] == [0.6, 0.6, 0.6]


def test_scores_get_identity_ste_gradient_even_when_masked():
    gen = SparseGenerator(tiny(3), 0.5, scope="layer").train()
    gen(x_in()).square().sum().backward()
    m = get_mask(gen.model.backbone.gcn[1].gcn.conv, "weight")
    masked = ~m.current()
    assert masked.any()
    assert (m.score.grad[masked] != 0).any()
    w = gen.model.backbone.gcn[1].gcn.conv.parametrizations.weight.original
    assert (w.grad[masked] == 0).all()


def test_gsgl_penalty_has_gradients_and_matches_manual():
    gen = SparseGenerator(tiny(3), 0.7, warm_up=4, penalty="GSGL", penalty_lambda="gradual", scope="global")
    gen.train()
    gen.set_epoch(2, 10)
    assert gen.penalty_weight() == 0.5
    pen = gen.extra_loss()
    # manual: to-be-pruned = score <= global tau at s = 0.7; one L2 norm per block
    scores = torch.cat([m.score.detach().flatten() for m in gen._masks])
    tau = torch.kthvalue(scores, num_to_remove(0.7, scores.numel())).values
    per_block: dict = {}
    for t, m in zip(gen._targets, gen._masks):
        pruned = (m.score.detach() <= tau).float()
        per_block.setdefault(t.block, []).append((t.original().detach() * pruned).flatten())
    manual = 0.5 * sum(torch.linalg.vector_norm(torch.cat(v)) for v in per_block.values())
    assert torch.allclose(pen, manual, rtol=1e-5)
    pen.backward()
    for t, m in zip(gen._targets, gen._masks):
        g = t.original().grad
        pruned = m.score.detach() <= tau
        assert (g[~pruned] == 0).all() and (g[pruned] != 0).any(), t.name
    gen.set_epoch(5, 10)
    assert gen.extra_loss() is None  # after the warm-up
    gl = SparseGenerator(tiny(3), 0.7, warm_up=4, penalty="GL", penalty_lambda=0.3).train()
    assert gl.extra_loss() is not None


def test_compat_penalty_without_gradient_is_constant():
    gen = SparseGenerator(tiny(3), 0.7, warm_up=4, penalty="GSGL", penalty_has_grad=False).train()
    gen.set_epoch(1, 10)
    pen = gen.extra_loss()
    assert pen.item() > 0 and not pen.requires_grad


def test_residual_masked_like_everything_and_compat_quirk():
    gen = SparseGenerator(tiny(), 0.9).eval()
    gen(x_in())
    res = [(t, m) for t, m in zip(gen._targets, gen._masks) if t.is_residual]
    assert len(res) == 1
    tau = gen._masks[0].threshold
    assert torch.equal(res[0][1].threshold, tau)
    quirk = SparseGenerator(tiny(), 0.9, residual_zero_threshold=True).eval()
    quirk(x_in())
    for t, m in zip(quirk._targets, quirk._masks):
        if t.is_residual:
            assert m.threshold == 0.0 and torch.equal(m.current(), m.score.detach() >= 0)
        else:
            assert m.threshold > 0
    quirk.train()
    quirk.set_epoch(0, 10)
    quirk.warm_up = 5
    quirk(x_in())  # even during the dense warm-up the residual stays at tau = 0
    r = [m for t, m in zip(quirk._targets, quirk._masks) if t.is_residual][0]
    assert not r.current().all()


def test_abs_scores_and_two_phase():
    gen = SparseGenerator(tiny(3), 0.5, abs_scores=True).eval()
    gen(x_in())
    for m in gen._masks:
        assert torch.equal(m.current(), m.score.detach().abs() > m.threshold)
    two = SparseGenerator(tiny(3), 0.5, scores_only_after=2)
    two.set_epoch(2, 4)
    assert all(not p.requires_grad for p in two.weight_parameters())
    assert all(p.requires_grad for p in two.score_parameters())
    two.set_epoch(1, 4)
    assert all(p.requires_grad for p in two.weight_parameters())


def test_edge_scores_mask_edges_with_own_sparsity():
    gen = SparseGenerator(tiny(3), 0.5, edge_sparsity=0.9, kinds=("weight", "edge")).eval()
    gen(x_in())
    rep = report(gen)
    n_e = sum(int(real_of(t).sum()) for t in gen._targets if t.kind == "edge")
    assert rep.kinds["edge"]["total"] == n_e
    assert rep.kinds["edge"]["kept"] == n_e - num_to_remove(0.9, n_e)
    conv = gen.model.backbone.gcn[0].gcn
    m = get_mask(conv, "edge_gate").current()
    assert torch.equal(conv.edge_weight_effective() != 0, m & (conv.edge_weight_base() != 0))


def test_compile_fullgraph_training_step_matches_eager():
    import copy

    torch.manual_seed(0)
    a = SparseGenerator(tiny(3), 0.8, kinds=("weight", "edge"), scope="block").train()
    b = copy.deepcopy(a)
    cb = torch.compile(b, backend="aot_eager", fullgraph=True)  # no graph break anywhere in the step
    x = x_in()
    ya, yb = a(x), cb(x)
    # eager runs the native fused batch norm, the compiled graph ATen's: float32 sums in other orders
    torch.testing.assert_close(ya, yb, rtol=1e-4, atol=1e-5)
    ya.square().sum().backward()
    yb.square().sum().backward()
    for (n, p), q in zip(a.named_parameters(), b.parameters()):
        assert (p.grad is None) == (q.grad is None), n
        if p.grad is not None:
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-3, atol=1e-5, msg=lambda m, n=n: f"{n}: {m}")


def test_trainer_contract_set_epoch_is_found():
    from pyg_sparse_stgcn.engine.trainer import call_set_epoch

    gen = SparseGenerator(tiny(3), 0.5, warm_up=3)
    call_set_epoch([gen], 4, 10)
    assert gen.epoch == 4 and gen.total_epochs == 10


def test_bad_arguments():
    for kw, match in [({"scope": "net"}, "scope"), ({"threshold_rule": "x"}, "threshold_rule"),
                      ({"penalty": "L1"}, "penalty"), ({"warm_up": -1}, "warm_up"),
                      ({"kinds": "edges"}, "kinds"), ({"edge_sparsity": 1.0}, "edge_sparsity"),
                      ({"penalty_lambda": "fast"}, "penalty_lambda"),
                      ({"eval_sparsity": "s"}, "eval_sparsity")]:
        with pytest.raises(ValueError, match=match):
            SparseGenerator(tiny(3), 0.5, **kw)
    with pytest.raises(ValueError, match="sparsity"):
        SparseGenerator(tiny(3), 1.2)
    with pytest.raises(ValueError, match="no maskable targets"):
        SparseGenerator(nn.Sequential(nn.ReLU()), 0.5)


def test_generator_under_ddp_matches_plain(monkeypatch):
    import copy
    import socket

    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    gen = SparseGenerator(tiny(3), 0.8, kinds=("weight", "edge"), scope="block").train()
    ref = copy.deepcopy(gen)
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(port))
    dist.init_process_group("gloo", rank=0, world_size=1)
    try:
        ddp = DDP(gen)
        x = x_in()
        ddp(x).square().sum().backward()
        ref(x).square().sum().backward()
        for (n, p), (_, q) in zip(gen.named_parameters(), ref.named_parameters()):
            if p.grad is not None:
                assert torch.allclose(p.grad, q.grad, atol=1e-5), n
        assert report(gen).to_dict() == report(ref).to_dict()
    finally:
        dist.destroy_process_group()


def test_score_init_paper_reinit_and_from_paper_code():
    torch.manual_seed(0)
    gen = SparseGenerator.from_paper_code(tiny(3), 0.6)
    assert gen.threshold_rule == "paper" and gen.residual_zero_threshold and not gen.penalty_has_grad
    assert not gen.paper_ramp  # every shipped config has sparse_decay=False (method.md §3.4)
    for t, m in zip(gen._targets, gen._masks):
        fan_in = t.numel // t.shape[0]
        bound = math.sqrt(6.0 / fan_in)
        w = t.original().detach()
        assert w.abs().max() <= bound and w.abs().max() > 0.5 * bound, t.name  # kaiming-uniform, ReLU gain
        assert m.score.abs().max() <= bound and m.score.std() > 0.3 * bound / math.sqrt(3)
        assert (t.module.bias == 0).all()
        assert m.inclusive
    mag = SparseGenerator(tiny(3), 0.5, score_init="magnitude")
    for t, m in zip(mag._targets, mag._masks):
        v = t.magnitude().detach().abs()  # |value| plus a tie-breaking jitter below 1e-3 of the mean |value|
        assert bool(((m.score.detach() - v) >= 0).all()) and bool(((m.score.detach() - v) < 1e-3 * v.mean()).all())
