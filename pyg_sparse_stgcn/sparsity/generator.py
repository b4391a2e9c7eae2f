r"""The sparse ST-GCN generator (Xie et al., arXiv 2505.10679, §3 of ``reference/method.md``).

Written from the description of the method, not from its code. Every target gets a real-valued score
:math:`S` of its shape (kaiming-uniform, fan-in, ReLU gain, like the paper) and is multiplied by the mask

.. math::
    M = \mathbb{1}[S > \tau_g], \qquad \tilde W = W \odot M,

with an identity straight-through estimator (:math:`\partial L/\partial S = \partial L/\partial\tilde W
\odot W`). The threshold :math:`\tau_g` of each scope group :math:`g` (the whole backbone, one ST block or one
layer) is the :math:`k`-th smallest score of the group with :math:`k = \lfloor p\, n_g + 1/2 \rfloor`, so
exactly that many entries are removed; it is recomputed on the device at every forward pass (no
``.item()``, no host synchronisation). The sparsity :math:`p` follows the schedule: dense (:math:`p = 0`)
for ``warm_up`` epochs, then the target :math:`s` (optionally reached by a linear ramp). In evaluation mode
the target :math:`s` is used (as in the paper's test configuration). Weights and scores train jointly.

Edge scores — masks over each layer's effective edge weights :math:`(K, E)` — use the same mechanism with
their own sparsity. **This is an extension: the paper's code never masks the adjacency.**

Differences from the released code, each restorable by a flag (see ``docs/sparsity.md``):

* ``threshold_rule='paper'``: :math:`k = 1 + \mathrm{round}(p\,(n-1))` and keep :math:`S \ge \tau`.
* ``residual_zero_threshold=True``: block residual convs use :math:`\tau = 0` at every step (the paper
  code calls them without a threshold) while their scores still count in the pool.
* ``penalty_has_grad=False``: the GL/GSGL penalty is computed from detached tensors (a constant).
* ``paper_ramp=True``: the linear ramp :math:`p = s \cdot e / (E/2)` measured from epoch 0 (the code's
  ``sparse_decay=True``; every shipped config has ``sparse_decay=False``, so the preset leaves it off).
* ``reinit_weights=True``: masked weights re-initialised kaiming-uniform (ReLU gain), their biases zero.

:data:`PAPER_CODE` holds the flags of the paper's *shipped* configs and
:meth:`SparseGenerator.from_paper_code` applies them.

Edge scores rank, threshold and count only the layer's *real* entries (:meth:`~.targets.Target.real`);
the threshold of an edge group is the percentile over those entries alone.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any, cast

import torch
from torch import Tensor, nn

from .magnitude import check_sparsity, num_to_remove
from .masks import Mask, attach_masks, get_mask
from .targets import Target, normalize_kinds

__all__ = ["SparseGenerator", "SCOPES", "THRESHOLD_RULES", "EVAL_SPARSITIES", "PENALTIES", "PAPER_CODE",
           "percentile_threshold"]

#: Threshold scopes: one threshold per kind for the whole model, per ST block, or per target.
SCOPES = ("global", "block", "layer")
#: ``'exact'`` removes exactly ``round(p n)`` entries (keep ``S > tau``); ``'paper'`` is the code's percentile.
THRESHOLD_RULES = ("exact", "paper")
#: Sparsity in eval mode: the ``'target'`` s (the paper) or the ``'current'`` scheduled p.
EVAL_SPARSITIES = ("target", "current")
#: Warm-up penalties: none, one L2 norm of the weights about to be pruned, or one per ST block.
PENALTIES = (None, "GL", "GSGL")

#: The released code's behaviour as its shipped configs run it (``reference/method.md`` §3.3-3.8):
#: percentile rule with ``S >= tau``, residual convs at ``tau = 0``, a constant (gradient-free) penalty,
#: no ramp (``sparse_decay=False`` everywhere), masked weights re-initialised kaiming-uniform with zero biases.
PAPER_CODE: dict[str, Any] = {"threshold_rule": "paper", "residual_zero_threshold": True,
                                 "penalty_has_grad": False, "paper_ramp": False, "reinit_weights": True,
                                 "abs_scores": False, "score_init": "kaiming_uniform", "eval_sparsity": "target"}


def percentile_threshold(scores: Tensor, sparsity: float, rule: str = "exact") -> Tensor:
    r"""Threshold of a flat score tensor at ``sparsity`` (a 0-dim tensor on the scores' device; no sync).

    * ``rule='exact'``: the :math:`k`-th smallest value with :math:`k = \lfloor p n + 1/2 \rfloor`; keep
      :math:`S > \tau` removes exactly :math:`k` entries (without ties). :math:`k = 0` gives :math:`-\infty`.
    * ``rule='paper'``: the paper's percentile, :math:`k = 1 + \mathrm{round}(p (n-1))`; keep
      :math:`S \ge \tau`.
    """
    n = scores.numel()
    if rule == "paper":
        return scores.kthvalue(1 + int(round(sparsity * (n - 1)))).values
    k = num_to_remove(sparsity, n)
    if k == 0:
        return torch.full((), -math.inf, dtype=scores.dtype, device=scores.device)
    return scores.kthvalue(k).values


class SparseGenerator(nn.Module):
    r"""Learn a sparse mask over a model's weights (and optionally edges) while training it.

    Wraps ``model``: ``forward`` recomputes every threshold, then calls ``model``. The trainer calls
    :meth:`set_epoch` at the start of each epoch and adds :meth:`extra_loss` (the warm-up penalty).

    Args:
        model (torch.nn.Module): The model to sparsify (e.g. a
            :class:`~pyg_sparse_stgcn.nn.SkeletonClassifier`); masks with scores are attached in place.
        sparsity (float): Target sparsity :math:`s \in [0, 1)` of the weights (fraction removed).
        edge_sparsity (float, optional): Target sparsity of the edges when ``'edge'`` is in ``kinds``;
            defaults to ``sparsity``. (default: :obj:`None`)
        kinds (str or tuple, optional): ``'weight'`` (the paper), ``'edge'`` (extension) or both. Thresholds
            never mix kinds. (default: :obj:`('weight',)`)
        scope (str, optional): ``'global'`` (one threshold per kind, the paper's ST-GCN), ``'block'`` (per ST
            block, the paper's AAGCN/CTR-GCN/DG-STGCN) or ``'layer'``. (default: :obj:`'global'`)
        warm_up (int, optional): Dense epochs before the mask is applied. (default: :obj:`0`)
        ramp_epochs (int, optional): After the warm-up, raise :math:`p` linearly to :math:`s` over this many
            epochs (0: jump). (default: :obj:`0`)
        abs_scores (bool, optional): Threshold :math:`|S|` (edge-popup) instead of signed scores.
            (default: :obj:`False`)
        threshold_rule (str, optional): ``'exact'`` or ``'paper'`` (see :func:`percentile_threshold`).
            (default: :obj:`'exact'`)
        eval_sparsity (str, optional): In eval mode use ``'target'`` :math:`s` (the paper) or the
            ``'current'`` scheduled :math:`p`. (default: :obj:`'target'`)
        penalty (str, optional): :obj:`None`, ``'GL'`` (one L2 norm of the weights about to be pruned) or
            ``'GSGL'`` (sum over ST blocks of those norms), active while ``epoch <= warm_up``.
            (default: :obj:`None`)
        penalty_lambda (float or str, optional): :math:`\lambda`, or ``'gradual'`` for
            :math:`\min(1, e / \text{warm\_up})`. (default: :obj:`'gradual'`)
        penalty_has_grad (bool, optional): Let the penalty's gradient reach the weights; :obj:`False`
            reproduces the paper code's constant penalty. (default: :obj:`True`)
        residual_zero_threshold (bool, optional): Paper-code quirk: block residual convs use :math:`\tau = 0`.
            (default: :obj:`False`)
        paper_ramp (bool, optional): Paper-code ramp :math:`p = s\,e/(E/2)` for :math:`e < E/2` (after the
            warm-up test). (default: :obj:`False`)
        scores_only_after (int, optional): From this epoch on only the scores train (every other parameter
            of ``model`` gets ``requires_grad=False``; under DDP use ``find_unused_parameters=True``).
            :obj:`None` trains jointly for the whole run, as the paper's configs do. (default: :obj:`None`)
        score_init (str, optional): ``'kaiming_uniform'`` or ``'magnitude'``.
            (default: :obj:`'kaiming_uniform'`)
        reinit_weights (bool, optional): Re-initialise the masked weights with kaiming-uniform (ReLU gain)
            and zero their biases, like the paper's sparse convs. (default: :obj:`False`)
        include_head (bool, optional): Also mask head weights. (default: :obj:`False`)
    """

    def __init__(self, model: nn.Module, sparsity: float, *, edge_sparsity: float | None = None,
                 kinds: str | Iterable[str] = ("weight",), scope: str = "global", warm_up: int = 0,
                 ramp_epochs: int = 0, abs_scores: bool = False, threshold_rule: str = "exact",
                 eval_sparsity: str = "target", penalty: str | None = None,
                 penalty_lambda: float | str = "gradual", penalty_has_grad: bool = True,
                 residual_zero_threshold: bool = False, paper_ramp: bool = False,
                 scores_only_after: int | None = None, score_init: str = "kaiming_uniform",
                 reinit_weights: bool = False, include_head: bool = False) -> None:
        super().__init__()
        self.kinds = normalize_kinds(kinds)
        self.sparsity = {"weight": check_sparsity(sparsity)}
        self.sparsity["edge"] = self.sparsity["weight"] if edge_sparsity is None else check_sparsity(
            edge_sparsity, "edge_sparsity")
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
        if threshold_rule not in THRESHOLD_RULES:
            raise ValueError(f"threshold_rule must be one of {THRESHOLD_RULES}, got {threshold_rule!r}")
        if eval_sparsity not in EVAL_SPARSITIES:
            raise ValueError(f"eval_sparsity must be one of {EVAL_SPARSITIES}, got {eval_sparsity!r}")
        if penalty not in PENALTIES:
            raise ValueError(f"penalty must be one of {PENALTIES}, got {penalty!r}")
        if not (penalty_lambda == "gradual" or (isinstance(penalty_lambda, (int, float))
                                                and not isinstance(penalty_lambda, bool))):
            raise ValueError(f"penalty_lambda must be a number or 'gradual', got {penalty_lambda!r}")
        for name, v in (("warm_up", warm_up), ("ramp_epochs", ramp_epochs)):
            if not isinstance(v, int) or v < 0:
                raise ValueError(f"{name} must be a non-negative int, got {v!r}")
        soa = scores_only_after
        if soa is not None and (not isinstance(soa, int) or soa < 0):
            raise ValueError(f"scores_only_after must be None or a non-negative int, got {soa!r}")
        self.model = model
        self.scope = scope
        self.warm_up = warm_up
        self.ramp_epochs = ramp_epochs
        self.threshold_rule = threshold_rule
        self.eval_sparsity = eval_sparsity
        self.penalty = penalty
        self.penalty_lambda = penalty_lambda
        self.penalty_has_grad = penalty_has_grad
        self.residual_zero_threshold = residual_zero_threshold
        self.paper_ramp = paper_ramp
        self.scores_only_after = scores_only_after
        self.epoch = 0
        self.total_epochs: int | None = None
        self._frozen: list[nn.Parameter] = []

        found = attach_masks(model, self.kinds, scores=True, score_init=score_init, include_head=include_head)
        self._targets: list[Target] = found
        self._masks: list[Mask] = [cast(Mask, get_mask(t.module, t.attr)) for t in found]  # attached above
        for t, m in zip(found, self._masks):
            m.abs_scores = abs_scores
            m.inclusive = threshold_rule == "paper" or (residual_zero_threshold and t.is_residual)
        if reinit_weights:
            self._reinit_weights()
        # Scope groups: thresholds never mix kinds.
        keys: dict[tuple[str, str], int] = {}
        self._group_of: list[int] = []
        for t in found:
            key = (t.kind, {"global": "", "block": t.block, "layer": t.name}[scope])
            self._group_of.append(keys.setdefault(key, len(keys)))
        self._group_kind = [k for (k, _), _ in sorted(keys.items(), key=lambda kv: kv[1])]
        self._group_members = [[i for i, g in enumerate(self._group_of) if g == gi]
                               for gi in range(len(self._group_kind))]
        self._group_numel = [sum(found[i].num_real for i in mem) for mem in self._group_members]
        # flat indices of the real entries of each edge target (a buffer: moves with .to(), no sync per step)
        for i, t in enumerate(found):
            real = t.real()
            if real is not None:
                self.register_buffer(f"_real_{i}", torch.nonzero(real.flatten()).flatten(), persistent=False)
        self._threshold_key: tuple | None = None

    @classmethod
    def from_paper_code(cls, model: nn.Module, sparsity: float, **overrides) -> SparseGenerator:
        """A generator that runs like the paper's shipped configs (:data:`PAPER_CODE`: paper percentile,
        ``S >= tau``, τ = 0 residuals, constant penalty, no ramp, weights re-initialised); ``overrides`` win
        (e.g. ``scope='block'`` for AAGCN/CTR-GCN/DG-STGCN, ``warm_up=60``, ``penalty='GSGL'``)."""
        kw = dict(PAPER_CODE)
        kw.update(overrides)
        return cls(model, sparsity, **kw)

    # ------------------------------------------------------------------ schedule
    def set_epoch(self, epoch: int, total_epochs: int | None = None) -> None:
        """Called by the trainer at the start of each (0-based) epoch."""
        self.epoch = int(epoch)
        self.total_epochs = None if total_epochs is None else int(total_epochs)
        if self.scores_only_after is None:
            return
        if self.epoch >= self.scores_only_after and not self._frozen:
            for p in self.weight_parameters():
                if p.requires_grad:
                    p.requires_grad_(False)
                    self._frozen.append(p)
        elif self.epoch < self.scores_only_after and self._frozen:
            for p in self._frozen:
                p.requires_grad_(True)
            self._frozen = []

    def current_sparsity(self, kind: str = "weight") -> float:
        """The sparsity :math:`p` in effect for ``kind`` at the current epoch and mode."""
        s = self.sparsity[kind]
        if not self.training and self.eval_sparsity == "target":
            return s
        e = self.epoch
        if e < self.warm_up:
            return 0.0
        if self.paper_ramp and self.total_epochs and e < self.total_epochs / 2:
            return s * e / (self.total_epochs / 2)
        if self.ramp_epochs > 0:
            return s * min(1.0, (e - self.warm_up + 1) / self.ramp_epochs)
        return s

    # ------------------------------------------------------------------ thresholds
    @staticmethod
    def _score(m: Mask) -> nn.Parameter:
        score = m.score
        assert score is not None, "every mask of a SparseGenerator has a score"
        return score

    def _real_scores(self, i: int) -> Tensor:
        s = self._masks[i]._ranked().detach().flatten()
        real = getattr(self, f"_real_{i}", None)
        return s if real is None else s.index_select(0, real)

    def _group_scores(self, gi: int) -> Tensor:
        return torch.cat([self._real_scores(i) for i in self._group_members[gi]])

    @torch.no_grad()
    def update_thresholds(self) -> None:
        """Recompute every group's threshold for the current sparsity, on the device (no host sync).

        Skipped when nothing it depends on changed since the last call (mode, scheduled sparsities and the
        scores' version counters), so evaluation does not rewrite thresholds, and masks (and the edge
        operators cached from them) stay valid.
        """
        ps = tuple(self.current_sparsity(k) for k in self._group_kind)
        key = (self.training, ps, tuple((s.data_ptr(), s._version, m.threshold.data_ptr())
                                        for s, m in ((self._score(m), m) for m in self._masks)))
        if key == self._threshold_key:
            return
        for gi, members in enumerate(self._group_members):
            p = ps[gi]
            if p == 0.0 and self.threshold_rule == "exact":
                tau = None
            else:
                tau = percentile_threshold(self._group_scores(gi), p, self.threshold_rule)
            for i in members:
                m = self._masks[i]
                if self.residual_zero_threshold and self._targets[i].is_residual:
                    m.threshold.fill_(0.0)
                elif tau is None:
                    m.threshold.fill_(-math.inf)
                else:
                    m.threshold.copy_(tau)
        # the writes above bumped the thresholds' versions, not the scores': the key stays valid
        self._threshold_key = key

    def thresholds(self) -> dict[str, Tensor]:
        """The threshold in effect per target name (0-dim tensors)."""
        return {t.name: m.threshold for t, m in zip(self._targets, self._masks)}

    def forward(self, *args, **kwargs):
        self.update_thresholds()
        return self.model(*args, **kwargs)

    # ------------------------------------------------------------------ penalty
    def penalty_weight(self) -> float:
        r""":math:`\lambda` at the current epoch (0 when the penalty is off or inactive)."""
        if self.penalty is None or self.epoch > self.warm_up:
            return 0.0
        if self.penalty_lambda == "gradual":
            return 1.0 if self.warm_up == 0 else min(1.0, self.epoch / self.warm_up)
        return float(self.penalty_lambda)

    def extra_loss(self) -> Tensor | None:
        r"""The GL/GSGL warm-up penalty :math:`\lambda \sum_g \lVert W_g \odot (1 - M_g^{(s)}) \rVert_2`.

        :math:`M^{(s)}` is the mask at the *target* sparsity under the generator's own scope (the entries
        about to be pruned), groups are ST blocks (``'GSGL'``) or everything (``'GL'``). Returns :obj:`None`
        when the penalty is off, inactive (``epoch > warm_up``) or :math:`\lambda = 0`, or in eval mode.
        """
        lam = self.penalty_weight()
        if lam == 0.0 or not self.training:
            return None
        with torch.no_grad():
            taus = [percentile_threshold(self._group_scores(gi), self.sparsity[self._group_kind[gi]],
                                         self.threshold_rule) for gi in range(len(self._group_members))]
        groups: dict[str, list[Tensor]] = {}
        for i, (t, m) in enumerate(zip(self._targets, self._masks)):
            s = m._ranked().detach()
            tau = taus[self._group_of[i]]
            keep = s >= tau if m.inclusive else s > tau
            value = t.magnitude()  # zero at the non-real edge entries, so they add nothing
            if not self.penalty_has_grad:
                value = value.detach()
            key = t.block if self.penalty == "GSGL" else ""
            groups.setdefault(key, []).append((value * (~keep).to(value.dtype)).flatten())
        return lam * sum(torch.linalg.vector_norm(torch.cat(v)) for v in groups.values())

    # ------------------------------------------------------------------ parameters
    def score_parameters(self) -> Iterator[nn.Parameter]:
        """The score tensors."""
        for m in self._masks:
            yield self._score(m)

    def weight_parameters(self) -> Iterator[nn.Parameter]:
        """Every parameter of the wrapped model except the scores."""
        ids = {id(m.score) for m in self._masks}
        for p in self.model.parameters():
            if id(p) not in ids:
                yield p

    def _reinit_weights(self) -> None:
        with torch.no_grad():
            for t in self._targets:
                if t.kind != "weight":
                    continue
                w = t.original()
                fan_in = 1
                for s in w.shape[1:]:
                    fan_in *= int(s)
                bound = math.sqrt(6.0 / max(fan_in, 1))
                w.uniform_(-bound, bound)
                bias = getattr(t.module, "bias", None)
                if isinstance(bias, Tensor):
                    bias.zero_()

    def extra_repr(self) -> str:
        return (f"sparsity={self.sparsity['weight']}, kinds={self.kinds}, scope={self.scope!r}, "
                f"warm_up={self.warm_up}, groups={len(self._group_members)}")
