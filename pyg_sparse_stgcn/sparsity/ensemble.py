r"""Multi-level sparsity ensemble ("Assemble", ``reference/method.md`` §4).

:math:`K` independent experts — each a complete backbone inside its own :class:`~.generator.SparseGenerator`
with its own sparsity :math:`s_k` and threshold — see the same input. Their features are fused by the mean
(optionally with learned per-expert scalars :math:`\alpha_k`, ones-initialised):

.. math::
    \bar{\mathbf{x}} = \frac{1}{K} \sum_k \alpha_k \mathbf{x}_k, \qquad
    z_0 = \mathrm{fc}_0(\mathrm{pool}(\bar{\mathbf{x}})), \qquad
    z_k = \mathrm{fc}_k(\mathrm{pool}(\mathbf{x}_k)).

Training uses :math:`K + 1` heads and :math:`L = \mathrm{CE}(z_0, y) + \sum_k \mathrm{CE}(z_k, y)`; at test
time only the fused head :math:`z_0` is computed. Nothing is shared between experts and their masks are not
nested.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..nn import GCNHead
from .generator import SparseGenerator
from .magnitude import check_sparsity
from .report import SparsityReport, report

__all__ = ["MultiSparsityEnsemble"]


class MultiSparsityEnsemble(nn.Module):
    r"""Independent sparse experts at several sparsity levels, fused at the feature level.

    Args:
        make_backbone (callable or sequence of callables): ``make_backbone() -> nn.Module`` builds one
            backbone mapping :math:`(N, M, T, V, C)` to features :math:`(N, M, C', T', V)` (e.g. a
            :class:`~pyg_sparse_stgcn.nn.STGCN`). Called once per expert, so every expert has its own
            initialisation (and random graph, if any). A sequence gives one factory per expert (mixed
            ensembles, e.g. ST-GCN, AAGCN, CTR-GCN and DG-STGCN experts); their features must have the same
            :math:`C'` and :math:`T'`.
        num_classes (int): Number of classes.
        sparsities (sequence of float, optional): One target sparsity per expert.
            (default: :obj:`(0.6, 0.8, 0.95, 0.99)`)
        feat_channels (int, optional): :math:`C'`; read from the backbone's ``out_channels`` when
            :obj:`None`. (default: :obj:`None`)
        fusion (str, optional): ``'mean'`` or ``'alpha'`` (learned per-expert scalars, then the mean).
            (default: :obj:`'mean'`)
        dropout (float, optional): Dropout before each linear head. (default: :obj:`0.0`)
        init_std (float, optional): Std of the heads' normal init (the heads are
            :class:`~pyg_sparse_stgcn.nn.GCNHead`: pool over :math:`(T, V)` and persons, dropout, linear).
            (default: :obj:`0.01`)
        expert_kwargs (sequence of dict, optional): Per-expert overrides of ``generator_kwargs`` (e.g.
            ``[{'scope': 'global'}, {'scope': 'block'}, ...]``). (default: :obj:`None`)
        **generator_kwargs: Passed to every :class:`~.generator.SparseGenerator` (e.g. ``warm_up=80``,
            ``scope='block'``, ``kinds``, ``penalty='GSGL'``).

    Forward returns, in training mode, a tuple ``(fused_logits, [expert_logits, …])`` (the trainer reads
    accuracy from the first element and passes the tuple to :meth:`compute_loss`), and in eval mode the fused
    logits :math:`(N, \text{classes})` only.
    """

    def __init__(self, make_backbone: Callable[[], nn.Module] | Sequence[Callable[[], nn.Module]],
                 num_classes: int, sparsities: Sequence[float] = (0.6, 0.8, 0.95, 0.99),
                 feat_channels: int | None = None, fusion: str = "mean", dropout: float = 0.0,
                 init_std: float = 0.01, expert_kwargs: Sequence[dict] | None = None,
                 **generator_kwargs: Any) -> None:
        super().__init__()
        factories = list(make_backbone) if isinstance(make_backbone, (list, tuple)) else None
        if factories is None and not callable(make_backbone):
            raise ValueError("make_backbone must be a callable returning a backbone module, or one per expert")
        if factories is not None and (len(factories) != len(tuple(sparsities))
                                      or not all(callable(f) for f in factories)):
            raise ValueError(f"make_backbone: {len(factories)} factories for {len(tuple(sparsities))} "
                             "sparsities; give one callable per expert")
        if expert_kwargs is not None and len(expert_kwargs) != len(tuple(sparsities)):
            raise ValueError("expert_kwargs: one dict per expert (as many as sparsities)")
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        sparsities = tuple(check_sparsity(s, "sparsities[i]") for s in sparsities)
        if not sparsities:
            raise ValueError("sparsities must name at least one expert")
        if fusion not in ("mean", "alpha"):
            raise ValueError(f"fusion must be 'mean' or 'alpha', got {fusion!r}")
        self.sparsities = sparsities
        self.fusion = fusion
        experts = []
        for i, s in enumerate(sparsities):
            backbone = (factories[i]() if factories is not None
                        else cast("Callable[[], nn.Module]", make_backbone)())  # checked callable above
            if not isinstance(backbone, nn.Module):
                raise ValueError(f"make_backbone returned {type(backbone).__name__}, not an nn.Module")
            kw = {**generator_kwargs, **(expert_kwargs[i] if expert_kwargs is not None else {})}
            experts.append(SparseGenerator(backbone, s, **kw))
        self.experts = nn.ModuleList(experts)
        if feat_channels is None:
            chans = {getattr(e.model, "out_channels", None) for e in experts}
            feat_channels = chans.pop() if len(chans) == 1 else None
            if not isinstance(feat_channels, int):
                raise ValueError("feat_channels is None and the backbones do not share one int attribute "
                                 "out_channels; pass feat_channels")
        self.feat_channels = feat_channels
        self.alpha = nn.Parameter(torch.ones(len(sparsities))) if fusion == "alpha" else None
        self.heads = nn.ModuleList(GCNHead(num_classes, feat_channels, dropout=dropout, init_std=init_std)
                                   for _ in range(len(sparsities) + 1))

    @property
    def _experts(self) -> Sequence[SparseGenerator]:
        """``experts`` typed as what it holds (one :class:`~.generator.SparseGenerator` per expert)."""
        return cast("Sequence[SparseGenerator]", self.experts)

    def set_epoch(self, epoch: int, total_epochs: int | None = None) -> None:
        """Forward the epoch to every expert's generator."""
        for e in self._experts:
            e.set_epoch(epoch, total_epochs)

    def forward_features(self, x: Tensor) -> list[Tensor]:
        """Every expert's features :math:`(N, M, C', T', V)`."""
        return [e(x) for e in self.experts]

    def fuse(self, feats: Sequence[Tensor]) -> Tensor:
        """Feature-level fusion (mean, or mean of :math:`\\alpha_k`-scaled features)."""
        stacked = torch.stack(list(feats))
        if self.alpha is not None:
            stacked = stacked * self.alpha.view(-1, *([1] * (stacked.dim() - 1)))
        return stacked.mean(0)

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, list[Tensor]]:
        feats = self.forward_features(x)
        fused = self.heads[0](self.fuse(feats))
        if not self.training:
            return fused
        return fused, [head(f) for head, f in zip(self.heads[1:], feats)]

    def compute_loss(self, output: Tensor | tuple[Tensor, list[Tensor]], target: Tensor) -> Tensor:
        r""":math:`\mathrm{CE}(z_0, y) + \sum_k \mathrm{CE}(z_k, y)` (just
        :math:`\mathrm{CE}(z_0, y)` for eval outputs)."""
        if isinstance(output, Tensor):
            return F.cross_entropy(output, target)
        fused, experts = output
        loss = F.cross_entropy(fused, target)
        for z in experts:
            loss = loss + F.cross_entropy(z, target)
        return loss

    def extra_loss(self) -> Tensor | None:
        """Sum of the experts' warm-up penalties (:obj:`None` when none is active)."""
        terms = [t for t in (e.extra_loss() for e in self._experts) if t is not None]
        if not terms:
            return None
        return torch.stack(terms).sum()

    def sparsity_report(self) -> SparsityReport:
        r"""Report over all experts plus the ensemble accounting in ``extra``.

        ``extra`` holds the paper's figure ``paper_kept_fraction`` :math:`= \sum_k (1 - s_k)` times the
        maskable weights of one dense backbone (``paper_params``), the kept maskable weights actually in the
        experts, and two parameter counts that must not be confused:

        * ``training_parameters`` — every parameter trained: all experts' weights (masked ones included),
          their scores, the :math:`K + 1` heads and :math:`\alpha`;
        * ``inference_parameters`` — what the folded ensemble runs at test: the kept maskable weights, every
          unmasked backbone parameter of every expert, the **fused head only** and :math:`\alpha`
          (``inference_vs_one_dense`` divides it by one dense backbone with one head).
        """
        rep = report(self)
        per_expert = [report(e).parameters for e in self.experts]
        maskable = [p["maskable"] for p in per_expert]
        one = maskable[0]
        stored = sum(p.numel() for p in self.parameters())
        head_params = sum(p.numel() for p in self.heads[0].parameters())
        all_heads = sum(p.numel() for p in self.heads.parameters())
        alpha = 0 if self.alpha is None else self.alpha.numel()
        kept_frac = sum(1.0 - s for s in self.sparsities)
        one_dense = per_expert[0]["maskable"] + per_expert[0]["unmasked"] + head_params
        inference = sum(p["maskable_kept"] + p["unmasked"] for p in per_expert) + head_params + alpha
        rep.extra = {
            "sparsities": list(self.sparsities),
            "maskable_one_dense_backbone": one,
            "paper_kept_fraction": kept_frac,
            "paper_params": sum((1.0 - s) * n for s, n in zip(self.sparsities, maskable)),
            "maskable_per_expert": maskable,
            "experts": [type(e.model).__name__ for e in self.experts],
            "kept_maskable": sum(p["maskable_kept"] for p in per_expert),
            "stored_parameters": stored,
            "training_parameters": stored,  # every stored parameter is trained
            "stored_scores": sum(p["scores"] for p in per_expert),
            "heads_parameters": all_heads,
            "inference_parameters": inference,
            "one_dense_model_parameters": one_dense,
            "inference_vs_one_dense": inference / one_dense,
        }
        return rep
