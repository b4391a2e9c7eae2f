"""Small building blocks shared by the layers: channels-last batch norm and argument checks."""
from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .fused_norm import fused_batch_norm, fused_batch_norm_groups, on_channels

__all__ = ["BatchNormLast", "norm_act", "linear_norm_act", "joined", "batch_norm_groups", "make_norm", "make_down",
           "check_features", "check_choice", "check_positive_ints", "reset_module"]


class BatchNormLast(nn.BatchNorm1d):
    r"""Batch normalisation over the **last** dimension of a channels-last tensor.

    Statistics are taken over every leading position, exactly like :class:`torch.nn.BatchNorm2d` on the
    channels-first view :math:`(B, C, T, V)`; the parameter and buffer names (``weight``, ``bias``,
    ``running_mean``, ``running_var``, ``num_batches_tracked``) are those of ``BatchNorm2d``, so PYSKL
    checkpoints map one to one.

    A 4-D input :math:`(B, T, V, C)` runs as its channels-first view :math:`(B, C, T, V)` (a ``permute``, no
    copy), so PyTorch's 4-D kernels read it in the memory layout it has (channels-last, or channels-first
    when a unit produced it so); the gradient is given to the backward kernel in that same layout (the CPU
    kernel is several times slower on mixed layouts).

    A float32 or bfloat16 CPU input whose channels are contiguous runs the native fused kernel of
    :mod:`pyg_sparse_stgcn.nn.fused_norm` instead (the same values up to rounding; ``docs/nn.md`` has the
    measured speed); :meth:`forward_fused` adds a residual and a ReLU in the same pass.

    Shapes:
        - **input:** :math:`(*, C)`
        - **output:** :math:`(*, C)`
    """

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() not in (2, 3, 4):
            raise ValueError(f"BatchNormLast: expected a 2-D, 3-D or 4-D input, got {input.dim()}-D")

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        # exactly this class: a subclass (DDP's synchronised batch norm) reaches its own forward through super()
        if type(self) is BatchNormLast:
            return self._fused(x, None, False)
        return on_channels(x, super().forward)

    def forward_fused(self, x: Tensor | Sequence[Tensor], residual: Tensor | None = None,
                      relu: bool = False) -> Tensor:
        r""":math:`\mathrm{ReLU}(\mathrm{BN}(x) + r)` (``residual`` :math:`r` optional, the ReLU when ``relu``)
        in one native pass where it can run (see :class:`BatchNormLast`), else as separate operations. ``x`` may
        be given as the consecutive channel groups of the input (a sequence of :math:`(*, C_g)` tensors, no
        ``residual``): the kernel reads them where they are, instead of their concatenation."""
        if residual is not None or type(self) is not BatchNormLast:
            x = joined(x)
        if type(self) is BatchNormLast:
            return self._fused(x, residual, relu)
        y = self(x)
        if residual is not None:
            y = y + residual
        return F.relu(y) if relu else y

    def _fused(self, x: Tensor | Sequence[Tensor], residual: Tensor | None, relu: bool) -> Tensor:
        """``nn.BatchNorm1d.forward``'s bookkeeping (momentum, cumulative averaging, which statistics), then
        :func:`~pyg_sparse_stgcn.nn.fused_norm.fused_batch_norm` (``fused_batch_norm_groups`` for a sequence of
        channel groups)."""
        self._check_input_dim(x if isinstance(x, Tensor) else x[0])
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        batch_stats = self.training or (self.running_mean is None and self.running_var is None)
        keep = not self.training or self.track_running_stats
        mean, var = (self.running_mean, self.running_var) if keep else (None, None)
        if isinstance(x, Tensor):
            return fused_batch_norm(x, mean, var, self.weight, self.bias, batch_stats, factor, self.eps, residual,
                                    relu)
        return cast(Tensor, fused_batch_norm_groups(x, [t.size(-1) for t in x], mean, var, self.weight, self.bias,
                                                    batch_stats, factor, self.eps, relu))


def norm_act(norm: nn.Module, x: Tensor | Sequence[Tensor], act: nn.Module | None = None,
             residual: Tensor | None = None) -> Tensor:
    r"""``act(norm(x) + residual)`` (``act`` and ``residual`` optional): one native pass
    (:meth:`BatchNormLast.forward_fused`) when ``norm`` is a :class:`BatchNormLast` and ``act`` a
    :class:`torch.nn.ReLU` or absent, neither with hooks; the modules one after the other otherwise. ``x`` may
    be a sequence of tensors: the consecutive channel groups of the input, read where they are by the native
    pass (concatenated first otherwise)."""
    if type(act) is nn.Identity and not _hooked(act):
        act = None
    relu = type(act) is nn.ReLU
    if isinstance(norm, BatchNormLast) and (act is None or relu) and not _hooked(norm) and not _hooked(act):
        return norm.forward_fused(x, residual, relu)
    y = norm(joined(x))
    if residual is not None:
        y = y + residual
    return y if act is None else act(y)


def joined(x: Tensor | Sequence[Tensor]) -> Tensor:
    """``x``, or the concatenation over the last dimension of the channel groups ``x``."""
    return x if isinstance(x, Tensor) else torch.cat(list(x), -1)


def linear_norm_act(seq: nn.Sequential, x: Tensor) -> Tensor:
    """``seq(x)`` for a ``Sequential(Linear, BatchNormLast, ReLU)`` (a unit's ``1 x 1 + BN + ReLU``; the
    ``Linear`` may carry a weight mask), its batch norm and ReLU as one :func:`norm_act` pass (which itself falls
    back where they have hooks or are subclasses); any other ``seq``, or one with hooks, is called as it is."""
    if (len(seq) == 3 and isinstance(seq[0], nn.Linear) and isinstance(seq[1], BatchNormLast)
            and isinstance(seq[2], nn.ReLU) and not _hooked(seq)):
        return norm_act(seq[1], seq[0](x), seq[2])
    return seq(x)


def _hooked(m: nn.Module | None) -> bool:
    """Whether calling ``m`` would run hooks (its own or global ones) that a fused path would skip."""
    if m is None:
        return False
    g = nn.modules.module
    return bool(m._forward_hooks or m._forward_pre_hooks or g._global_forward_hooks
                or g._global_forward_pre_hooks)


def batch_norm_groups(norms: Sequence[BatchNormLast], x: Tensor, relu: bool = False,
                      split: bool = False) -> Tensor | list[Tensor]:
    r"""``cat([norms[i](x_i)])`` over the consecutive channel groups :math:`x_i` of ``x`` (``norms[i]``'s
    ``num_features`` each), as **one** batch norm over all the channels: the same outputs, gradients and
    running-statistics updates as the separate calls (every channel is normalised on its own), a single pass
    over ``x`` instead of one per group. Norms that differ in ``eps``, ``momentum``, ``affine``,
    ``track_running_stats`` or mode, a ``momentum`` of :obj:`None` (cumulative averaging), or subclasses of
    :class:`BatchNormLast` (e.g. DDP's synchronised batch norm, whose forward is its own) run separately.
    ``relu=True`` applies a ReLU to the result, in place on the batch norm's fresh output where it can.
    ``split=True`` returns the groups' outputs as separate tensors (:math:`(*, C_i)`, each contiguous where the
    native kernel runs: it writes them so, and takes their gradients so, with no copies), e.g. for layers that
    want their input contiguous.

    Shapes:
        - **input:** :math:`(*, \sum_i C_i)`
        - **output:** :math:`(*, \sum_i C_i)`, or the groups :math:`(*, C_i)` when ``split``
    """
    sizes = [n.num_features for n in norms]
    if x.size(-1) != sum(sizes):
        raise ValueError(f"batch_norm_groups: x has {x.size(-1)} channels, the norms {sum(sizes)}")
    n0 = norms[0]
    key = (n0.eps, n0.momentum, n0.affine, n0.track_running_stats, n0.training)
    if n0.momentum is None or any(type(n) is not BatchNormLast or  # a subclass (e.g. synchronised) runs its own
                                  (n.eps, n.momentum, n.affine, n.track_running_stats, n.training) != key
                                  for n in norms):
        outs = [n(part) for n, part in zip(norms, x.split(sizes, -1))]
        if split:
            return [F.relu(o) for o in outs] if relu else outs
        out = torch.cat(outs, -1)
        return out.relu_() if relu else out
    tracked = n0.track_running_stats and n0.running_mean is not None
    update = n0.training and tracked
    mean = torch.cat([n.running_mean for n in norms]) if tracked else None  # type: ignore[misc]
    var = torch.cat([n.running_var for n in norms]) if tracked else None  # type: ignore[misc]
    weight = torch.cat([n.weight for n in norms]) if n0.affine else None
    bias = torch.cat([n.bias for n in norms]) if n0.affine else None
    y = fused_batch_norm_groups(x, sizes, mean, var, weight, bias, n0.training or not tracked,
                                float(n0.momentum), n0.eps, relu=relu, split=split)  # type: ignore[arg-type]
    if update:
        with torch.no_grad():
            for n, m, v in zip(norms, mean.split(sizes), var.split(sizes)):  # type: ignore[union-attr]
                n.running_mean.copy_(m)  # type: ignore[union-attr]
                n.running_var.copy_(v)  # type: ignore[union-attr]
                n.num_batches_tracked.add_(1)  # type: ignore[union-attr,operator]
    return y


def reset_module(m: nn.Module) -> None:
    """Call ``m.reset_parameters()`` when ``m`` has one (``nn.Identity``, ``nn.ReLU``, ... have none)."""
    reset = getattr(m, "reset_parameters", None)
    if callable(reset):
        reset()


def make_norm(norm: str | None, channels: int) -> nn.Module:
    """``'BN'`` → :class:`BatchNormLast`, :obj:`None` → :class:`torch.nn.Identity`."""
    if norm is None:
        return nn.Identity()
    if norm == "BN":
        return BatchNormLast(channels)
    raise ValueError(f"norm must be 'BN' or None, got {norm!r}")


def make_down(in_channels: int, out_channels: int, norm: str | None = "BN") -> nn.Sequential | None:
    """PYSKL's unit residual ``down``: ``Linear`` + :func:`make_norm` when the channel counts differ, else
    :obj:`None` (the identity)."""
    if in_channels == out_channels:
        return None
    return nn.Sequential(nn.Linear(in_channels, out_channels), make_norm(norm, out_channels))


def check_positive_ints(who: str, *named: tuple[str, object]) -> None:
    r""":class:`ValueError` ``"{who}: {name} must be a positive int"`` for the first ``(name, value)`` that is
    not an ``int`` :math:`\ge 1` (a ``bool`` is not)."""
    for name, value in named:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{who}: {name} must be a positive int, got {value!r}")


def check_choice(name: str, value, choices) -> None:
    """Raise a :class:`ValueError` naming ``name`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; valid values: {', '.join(repr(c) for c in choices)}")


def check_features(x: Tensor, channels: int, num_nodes: int | None, who: str, min_dim: int = 3) -> None:
    """Check a channels-last activation ``(..., V, C)``; :class:`ValueError` names ``who`` and the shape."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{who}: x must be a tensor, got {type(x).__name__}")
    if x.dim() < min_dim:
        raise ValueError(f"{who}: x must have at least {min_dim} dims (B, T, V, C), got shape "
                         f"{tuple(x.shape)}")
    if x.size(-1) != channels:
        raise ValueError(f"{who}: x has {x.size(-1)} channels in its last dim, expected "
                         f"in_channels={channels} "
                         f"(activations are channels-last (B, T, V, C)); got shape {tuple(x.shape)}")
    if num_nodes is not None and x.size(-2) != num_nodes:
        raise ValueError(f"{who}: x has V={x.size(-2)} joints in dim -2, but the graph has {num_nodes} "
                         "nodes; "
                         f"got shape {tuple(x.shape)}")
