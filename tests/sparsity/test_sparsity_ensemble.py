"""Multi-level sparsity ensemble: loss, fusion, test-time head, parameter accounting."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pyg_sparse_stgcn.nn import STGCN
from pyg_sparse_stgcn.sparsity import MultiSparsityEnsemble, report, targets
from pyg_sparse_stgcn.sparsity.magnitude import num_to_remove


def make_backbone() -> STGCN:
    return STGCN({"layout": "coco", "mode": "spatial"}, base_channels=8, num_stages=3, inflate_stages=(3,),
                 down_stages=(3,), backend="dense")


def x_in() -> torch.Tensor:
    return torch.randn(3, 2, 8, 17, 3)


def pool(f: torch.Tensor) -> torch.Tensor:
    return f.mean(dim=(3, 4)).mean(dim=1)


def test_training_loss_is_fused_plus_expert_ce():
    torch.manual_seed(0)
    ens = MultiSparsityEnsemble(make_backbone, 4).train()
    x, y = x_in(), torch.tensor([0, 3, 1])
    out = ens(x)
    fused, experts = out
    assert fused.shape == (3, 4) and len(experts) == 4
    feats = [e(x) for e in ens.experts]  # deterministic (dropout 0; BN in train mode on the same batch)
    manual_fused = ens.heads[0].fc_cls(pool(torch.stack(feats).mean(0)))
    manual_experts = [ens.heads[k + 1].fc_cls(pool(f)) for k, f in enumerate(feats)]
    assert torch.allclose(fused, manual_fused, atol=1e-5)
    for a, b in zip(experts, manual_experts):
        assert torch.allclose(a, b, atol=1e-5)
    loss = ens.compute_loss(out, y)
    manual = F.cross_entropy(manual_fused, y) + sum(F.cross_entropy(z, y) for z in manual_experts)
    assert torch.allclose(loss, manual, atol=1e-5)
    loss.backward()
    assert all(h.fc_cls.weight.grad is not None for h in ens.heads)


def test_eval_uses_fused_head_only_and_each_expert_its_sparsity():
    torch.manual_seed(0)
    ens = MultiSparsityEnsemble(make_backbone, 4, warm_up=5).eval()
    out = ens(x_in())
    assert isinstance(out, torch.Tensor) and out.shape == (3, 4)
    for e, s in zip(ens.experts, ens.sparsities):
        rep = report(e)
        tot = rep.kinds["weight"]["total"]
        assert rep.kinds["weight"]["kept"] == tot - num_to_remove(s, tot)  # eval: target sparsity
        assert e.warm_up == 5
    ids = [{id(p) for p in e.parameters()} for e in ens.experts]
    assert all(not (a & b) for i, a in enumerate(ids) for b in ids[i + 1:])  # nothing shared
    assert ens.compute_loss(out, torch.tensor([0, 1, 2])) > 0


def test_report_states_paper_66_percent_and_every_stored_parameter():
    ens = MultiSparsityEnsemble(make_backbone, 4).eval()
    ens(x_in())
    extra = ens.sparsity_report().extra
    one = sum(t.numel for t in targets(make_backbone(), "weight"))
    assert extra["maskable_one_dense_backbone"] == one
    assert extra["paper_kept_fraction"] == pytest.approx(0.66)
    assert extra["paper_params"] == pytest.approx(0.66 * one)
    assert extra["kept_maskable"] == sum(one - num_to_remove(s, one) for s in (0.6, 0.8, 0.95, 0.99))
    assert extra["stored_parameters"] == sum(p.numel() for p in ens.parameters())
    assert extra["stored_scores"] == 4 * one
    unmasked_one = sum(p.numel() for p in make_backbone().parameters()) - one
    fused_head = sum(p.numel() for p in ens.heads[0].parameters())
    assert extra["inference_parameters"] == extra["kept_maskable"] + 4 * unmasked_one + fused_head
    assert extra["one_dense_model_parameters"] == one + unmasked_one + fused_head


def test_alpha_fusion_and_penalty_and_epochs():
    torch.manual_seed(0)
    ens = MultiSparsityEnsemble(make_backbone, 4, sparsities=(0.5, 0.9), fusion="alpha", warm_up=2,
                                penalty="GSGL").train()
    with torch.no_grad():
        ens.alpha.copy_(torch.tensor([2.0, 0.0]))
    feats = [torch.randn(3, 2, 16, 4, 17), torch.randn(3, 2, 16, 4, 17)]
    assert torch.allclose(ens.fuse(feats), feats[0])
    ens.set_epoch(1, 10)
    assert all(e.epoch == 1 and e.total_epochs == 10 for e in ens.experts)
    pen = ens.extra_loss()
    assert torch.allclose(pen, sum(e.extra_loss() for e in ens.experts))
    ens.set_epoch(3, 10)
    assert ens.extra_loss() is None
    out = ens(x_in())
    ens.compute_loss(out, torch.tensor([0, 1, 2])).backward()
    assert ens.alpha.grad is not None


def test_bad_arguments():
    with pytest.raises(ValueError, match="sparsities"):
        MultiSparsityEnsemble(make_backbone, 4, sparsities=(0.5, 1.0))
    with pytest.raises(ValueError, match="sparsities"):
        MultiSparsityEnsemble(make_backbone, 4, sparsities=())
    with pytest.raises(ValueError, match="fusion"):
        MultiSparsityEnsemble(make_backbone, 4, fusion="max")
    with pytest.raises(ValueError, match="num_classes"):
        MultiSparsityEnsemble(make_backbone, 0)
    with pytest.raises(ValueError, match="feat_channels"):
        MultiSparsityEnsemble(lambda: torch.nn.Linear(3, 3), 4)


def test_mixed_backbone_ensemble_end_to_end():
    """One factory per expert (ST-GCN, AAGCN, CTR-GCN, DG-STGCN), own threshold and scope each."""
    import torch as _torch

    from pyg_sparse_stgcn.nn import AAGCN, CTRGCN, DGSTGCN, STGCN
    from pyg_sparse_stgcn.sparsity.ensemble import MultiSparsityEnsemble

    tiny = dict(base_channels=8, num_stages=3, inflate_stages=(3,), down_stages=(3,))
    sp = dict(layout="nturgb+d", mode="spatial")
    factories = [lambda: STGCN(sp, **tiny), lambda: AAGCN(sp, **tiny), lambda: CTRGCN(sp, **tiny),
                 lambda: DGSTGCN(dict(layout="nturgb+d", mode="random", num_filter=2), gcn_ratio=0.5, **tiny)]
    ens = MultiSparsityEnsemble(factories, 3, sparsities=(0.6, 0.8, 0.95, 0.99),
                                expert_kwargs=[{"scope": "global"}] + [{"scope": "block"}] * 3)
    assert [e.scope for e in ens.experts] == ["global", "block", "block", "block"]
    x = _torch.randn(2, 2, 8, 25, 3)
    ens.train()
    out = ens(x)
    ens.compute_loss(out, _torch.tensor([0, 2])).backward()
    ens.eval()
    assert ens(x).shape == (2, 3)
    extra = ens.sparsity_report().extra
    assert extra["experts"] == ["STGCN", "AAGCN", "CTRGCN", "DGSTGCN"]
    want = sum((1 - s) * n for s, n in zip((0.6, 0.8, 0.95, 0.99), extra["maskable_per_expert"]))
    assert abs(extra["paper_params"] - want) < 1e-6
    assert extra["inference_parameters"] < extra["training_parameters"]
