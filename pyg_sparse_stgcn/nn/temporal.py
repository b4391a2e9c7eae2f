r"""Temporal convolutions on channels-last skeleton sequences (PYSKL ``unit_tcn`` and ``mstcn``)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._utils import (
    BatchNormLast,
    batch_norm_groups,
    check_features,
    check_positive_ints,
    joined,
    make_norm,
    norm_act,
    reset_module,
)

__all__ = ["TemporalConv", "MultiScaleTemporalConv", "DGMultiScaleTemporalConv", "CTRMultiScaleTemporalConv",
           "StridedLinear", "TemporalMaxPool"]


def _check_positive(who: str, **values: int) -> None:
    check_positive_ints(who, *values.items())


class _StridedLinearFn(torch.autograd.Function):
    """``F.linear(x[:, ::s], weight, bias)`` that saves ``x`` itself for the backward pass, not the strided
    copy ``F.linear`` makes (``x`` is saved by the unit's other branches anyway, so the copy was extra
    memory). Under autocast the gradients are computed in the dtype of the output's gradient, as autograd
    does for the autocast-cast ``linear``."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor | None, stride: int) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.bias_dtype = stride, None if bias is None else bias.dtype
        return F.linear(x[:, ::stride], weight, bias)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None, None]:
        x, weight = ctx.saved_tensors
        s = ctx.stride
        g2 = grad.reshape(-1, grad.size(-1))
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = x.new_zeros(x.shape)
            gx[:, ::s] = grad @ weight.to(grad.dtype)
        if ctx.needs_input_grad[1]:
            gw = (g2.t() @ x[:, ::s].reshape(-1, x.size(-1)).to(grad.dtype)).to(weight.dtype)
        if ctx.needs_input_grad[2]:
            gb = g2.sum(0).to(ctx.bias_dtype)
        return gx, gw, gb, None


class StridedLinear(nn.Linear):
    r"""A :math:`1 \times 1` temporal convolution with stride: ``Linear`` over :math:`C` of every
    ``stride``-th frame (PYSKL's ``Conv2d(in, out, 1, stride=(s, 1))``;
    the weight is :math:`(C_{out}, C_{in})`).

    Shapes:
        - **input:** :math:`(B, T, V, C_{in})`
        - **output:** :math:`(B, \lceil T / s \rceil, V, C_{out})`
    """

    def __init__(self, in_features: int, out_features: int, stride: int = 1, bias: bool = True) -> None:
        super().__init__(in_features, out_features, bias=bias)
        _check_positive("StridedLinear", stride=stride)
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        if self.stride > 1 and torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad):
            return _StridedLinearFn.apply(x, self.weight, self.bias, self.stride)
        if self.stride > 1:
            x = x[:, :: self.stride]
        return super().forward(x)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", stride={self.stride}"


class TemporalMaxPool(nn.Module):
    r"""Max pooling over time, ``MaxPool2d((k, 1), stride=(s, 1), padding=(p, 0))`` on the channels-last view.

    Shapes:
        - **input:** :math:`(B, T, V, C)`
        - **output:** :math:`(B, T', V, C)`
    """

    def __init__(self, kernel_size: int = 3, stride: int = 1, padding: int = 1) -> None:
        super().__init__()
        _check_positive("TemporalMaxPool", kernel_size=kernel_size, stride=stride)
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding

    def forward(self, x: Tensor) -> Tensor:
        out = F.max_pool2d(x.permute(0, 3, 1, 2), (self.kernel_size, 1), (self.stride, 1), (self.padding, 0))
        return out.permute(0, 2, 3, 1)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


def _end(bn: nn.Module, drop: nn.Dropout, x: Tensor, residual: Tensor | None, act: nn.Module | None) -> Tensor:
    """``act(drop(bn(x)) + residual)`` (the unit's ending, then a block's): the batch norm, residual and ReLU in
    one pass unless a dropout is active between them."""
    if drop.p > 0 and drop.training:
        y = drop(bn(x))
        if residual is not None:
            y = y + residual
        return y if act is None else act(y)
    return norm_act(bn, x, act, residual)


def _transform(t: nn.Sequential, x: Tensor | list[Tensor]) -> Tensor:
    """The multi-scale units' ``transform`` (``BN -> ReLU -> Linear``) of ``x`` or of the concatenation of the
    branch outputs ``x``, its BN and ReLU in one pass that reads the branch outputs where they are."""
    if len(t) != 3 or t._forward_hooks or t._forward_pre_hooks:
        return t(joined(x))
    return t[2](norm_act(t[0], x, t[1]))


class TemporalConv(nn.Module):
    r"""PYSKL's ``unit_tcn``: a :math:`(k \times 1)` temporal convolution, batch norm and dropout,

    .. math::
        \mathbf{X}'_{t} = \mathrm{Drop}\Big(\mathrm{BN}\Big(\mathbf{b} + \sum_{i=0}^{k-1}
        \mathbf{W}_i\, \mathbf{X}_{s t + d i - p}\Big)\Big), \qquad p = \frac{k + (k-1)(d-1) - 1}{2}

    on channels-last input. For :math:`k > 1` the weight is an ``nn.Conv2d`` (layout
    :math:`(C_{out}, C_{in}, k, 1)`, as in PYSKL) run on the ``channels_last`` view of :math:`(B, T, V, C)`;
    for :math:`k = 1` it is a :class:`StridedLinear` (weight :math:`(C_{out}, C_{in})`).

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        kernel_size (int, optional): Temporal kernel size :math:`k`. (default: :obj:`9`)
        stride (int, optional): Temporal stride :math:`s`. (default: :obj:`1`)
        dilation (int, optional): Temporal dilation :math:`d`. (default: :obj:`1`)
        norm (str, optional): ``'BN'`` or :obj:`None`. (default: :obj:`"BN"`)
        dropout (float, optional): Dropout probability after the norm. (default: :obj:`0.0`)

    Shapes:
        - **input:** :math:`(B, T, V, C_{in})`
        - **output:** :math:`(B, T', V, C_{out})` with
          :math:`T' = \lfloor (T + 2p - d(k-1) - 1) / s \rfloor + 1`
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 9, stride: int = 1,
                 dilation: int = 1, norm: str | None = "BN", dropout: float = 0.0) -> None:
        super().__init__()
        _check_positive("TemporalConv", in_channels=in_channels, out_channels=out_channels,
                        kernel_size=kernel_size, stride=stride, dilation=dilation)
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"TemporalConv: dropout must be in [0, 1), got {dropout!r}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.dilation = kernel_size, stride, dilation
        self.pad = (kernel_size + (kernel_size - 1) * (dilation - 1) - 1) // 2
        if kernel_size == 1:
            self.conv: StridedLinear | nn.Conv2d = StridedLinear(in_channels, out_channels, stride)
        else:
            self.conv = nn.Conv2d(in_channels, out_channels, (kernel_size, 1), padding=(self.pad, 0),
                                  stride=(stride, 1), dilation=(dilation, 1))
        self.bn = make_norm(norm, out_channels)
        self.drop = nn.Dropout(float(dropout))

    def reset_parameters(self) -> None:
        for m in (self.conv, self.bn):
            reset_module(m)

    def forward(self, x: Tensor, residual: Tensor | None = None, act: nn.Module | None = None) -> Tensor:
        """``x`` :math:`(B, T, V, C_{in})`; with ``residual`` / ``act``, ``act(unit(x) + residual)`` (a block's
        ending, fused with the batch norm where :func:`norm_act` can)."""
        check_features(x, self.in_channels, None, "TemporalConv", min_dim=4)
        if self.kernel_size == 1:
            x = self.conv(x)
        else:
            x = self.conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return _end(self.bn, self.drop, x, residual, act)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, dilation={self.dilation})")


_DEFAULT_MS_CFG = ((3, 1), (3, 2), (3, 3), (3, 4), ("max", 3), "1x1")


def _opens_with_projection(branch: nn.Module) -> bool:
    """Whether ``branch`` is a ``Sequential`` that starts ``Linear → BatchNormLast → ReLU``."""
    return (isinstance(branch, nn.Sequential) and len(branch) >= 3 and isinstance(branch[0], nn.Linear)
            and not isinstance(branch[0], StridedLinear) and isinstance(branch[1], BatchNormLast)
            and isinstance(branch[2], nn.ReLU))


def run_branches(branches: nn.ModuleList, x: Tensor, fuse: bool = True,
                 concat: bool = True) -> Tensor | list[Tensor]:
    r"""``torch.cat([branch(x) for branch in branches], dim=-1)`` with the ``Linear → BN → ReLU`` that opens
    the multi-scale branches run once for all of them: one GEMM with the stacked weights, one batch norm
    (:func:`batch_norm_groups`) and one ReLU, then each branch's rest on its channels. The values, gradients
    and running statistics are those of the separate branches, and the parameters stay the branches' own
    (PYSKL's names, masks and all), but :math:`x` is read once instead of once per branch, and its gradient
    is one GEMM instead of a sum of one per branch. The batch norm hands every branch its channels as a
    contiguous tensor (no copy before, or in the backward pass of, the branch's convolution). ``fuse=False``
    (a unit's ``fuse_branches``) calls every branch as a module, e.g. so that an export can give each
    projection its own kernel; a projection that is no longer a ``Linear`` (a CSR kernel) runs on its own either
    way. ``concat=False`` returns the branch outputs as a list instead of their concatenation (for a consumer
    that reads them where they are, :func:`norm_act` with a sequence).

    Shapes:
        - **input:** :math:`(B, T, V, C_{in})`
        - **output:** :math:`(B, T', V, \sum C_{branch})`, or the list of :math:`(B, T', V, C_{branch})`
    """
    flags = [_opens_with_projection(b) for b in branches]
    opened = [cast(nn.Sequential, b) for b, f in zip(branches, flags) if f]
    linears = [cast(nn.Linear, b[0]) for b in opened]
    if not fuse or len(opened) < 2 or len({lin.bias is None for lin in linears}) > 1:
        outs = [branch(x) for branch in branches]
        return torch.cat(outs, dim=-1) if concat else outs
    bias = None if linears[0].bias is None else torch.cat([lin.bias for lin in linears])
    h = F.linear(x, torch.cat([lin.weight for lin in linears]), bias)
    parts = iter(batch_norm_groups([cast(BatchNormLast, b[1]) for b in opened], h, relu=True, split=True))
    outs = []
    for branch, opens in zip(branches, flags):
        if opens:
            y = next(parts)
            for m in list(cast(nn.Sequential, branch))[3:]:
                y = m(y)
            outs.append(y)
        else:
            outs.append(branch(x))
    return torch.cat(outs, dim=-1) if concat else outs


class MultiScaleTemporalConv(nn.Module):
    r"""PYSKL's ``mstcn`` (ST-GCN++): parallel temporal branches, concatenated and fused,

    .. math::
        \mathbf{X}' = \mathrm{Drop}\big(\mathrm{BN}\big(\mathbf{W}_f\,
        \mathrm{ReLU}(\mathrm{BN}([\mathbf{B}_1(\mathbf{X}) \,\|\, \dots \,\|\,
        \mathbf{B}_n(\mathbf{X})]))\big)\big)

    where a branch ``(k, d)`` is ``Linear → BN → ReLU → TemporalConv(k, stride, d, norm=None)``,
    ``('max', k)`` is ``Linear → BN → ReLU → max-pool (k × 1)`` and ``'1x1'`` a strided ``Linear``.
    Branch 0 gets :math:`C_{out} - (n-1)\lfloor C_{out}/n \rfloor` channels, the others
    :math:`\lfloor C_{out}/n \rfloor` (or ``int(out_channels * mid_channels)`` each when ``mid_channels`` is a
    float). Module names follow PYSKL (``branches``, ``transform``, ``bn``).

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        mid_channels (float, optional): Branch width as a fraction of ``out_channels``. (default: :obj:`None`)
        dropout (float, optional): Dropout after the final norm. (default: :obj:`0.0`)
        ms_cfg (sequence, optional): Branches. (default: :obj:`((3, 1), (3, 2), (3, 3), (3, 4), ('max', 3),
            '1x1')`)
        stride (int, optional): Temporal stride. (default: :obj:`1`)

    Shapes:
        - **input:** :math:`(B, T, V, C_{in})`
        - **output:** :math:`(B, \lceil T/s \rceil, V, C_{out})`
    """

    def __init__(self, in_channels: int, out_channels: int, mid_channels: float | None = None,
                 dropout: float = 0.0, ms_cfg: Sequence = _DEFAULT_MS_CFG, stride: int = 1) -> None:
        super().__init__()
        _check_positive("MultiScaleTemporalConv", in_channels=in_channels, out_channels=out_channels,
                        stride=stride)
        ms_cfg = [tuple(c) if isinstance(c, list) else c for c in ms_cfg]
        num_branches = len(ms_cfg)
        if num_branches < 1:
            raise ValueError("MultiScaleTemporalConv: ms_cfg must hold at least one branch")
        if mid_channels is None:
            mid = out_channels // num_branches
            rem = out_channels - mid * (num_branches - 1)
        else:
            if not isinstance(mid_channels, float) or mid_channels <= 0:
                raise ValueError(f"MultiScaleTemporalConv: mid_channels must be a positive float, got "
                                 f"{mid_channels!r}")
            mid = rem = int(out_channels * mid_channels)
        if mid < 1:
            raise ValueError(f"MultiScaleTemporalConv: out_channels={out_channels} is too small for "
                             f"{num_branches} branches")
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.ms_cfg = tuple(ms_cfg)
        self.mid_channels, self.rem_mid_channels = mid, rem
        branches: list[nn.Module] = []
        for i, cfg in enumerate(ms_cfg):
            c = rem if i == 0 else mid
            if cfg == "1x1":
                branches.append(StridedLinear(in_channels, c, stride))
            elif isinstance(cfg, tuple) and len(cfg) == 2 and cfg[0] == "max":
                branches.append(nn.Sequential(nn.Linear(in_channels, c), BatchNormLast(c), nn.ReLU(),
                                              TemporalMaxPool(int(cfg[1]), stride, 1)))
            elif isinstance(cfg, tuple) and len(cfg) == 2 and all(isinstance(v, int) and v >= 1 for v in cfg):
                branches.append(nn.Sequential(nn.Linear(in_channels, c), BatchNormLast(c), nn.ReLU(),
                                              TemporalConv(c, c, cfg[0], stride, cfg[1], norm=None)))
            else:
                raise ValueError(f"MultiScaleTemporalConv: ms_cfg[{i}] = {cfg!r} is not '1x1', ('max', k) or "
                                 "(kernel_size, dilation)")
        self.branches = nn.ModuleList(branches)
        self.fuse_branches = True  # run_branches: one GEMM + BN + ReLU for the branches' opening projections
        tin = mid * (num_branches - 1) + rem
        self.transform = nn.Sequential(BatchNormLast(tin), nn.ReLU(), nn.Linear(tin, out_channels))
        self.bn = BatchNormLast(out_channels)
        self.drop = nn.Dropout(float(dropout))

    def reset_parameters(self) -> None:
        for m in self.modules():
            if m is not self:
                reset_module(m)

    def forward(self, x: Tensor, residual: Tensor | None = None, act: nn.Module | None = None) -> Tensor:
        """``x`` :math:`(B, T, V, C_{in})`; ``residual`` / ``act`` as in :meth:`TemporalConv.forward`."""
        check_features(x, self.in_channels, None, "MultiScaleTemporalConv", min_dim=4)
        outs = cast(list[Tensor], run_branches(self.branches, x, self.fuse_branches, concat=False))
        return _end(self.bn, self.drop, _transform(self.transform, outs), residual, act)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, ms_cfg={list(self.ms_cfg)}, "
                f"stride={self.stride})")


class DGMultiScaleTemporalConv(MultiScaleTemporalConv):
    r"""DG-STGCN's ``dgmstcn``: :class:`MultiScaleTemporalConv` run on the joints plus a virtual global joint
    (the mean over the joints), whose branch output is added back to every joint with learned coefficients
    :math:`\kappa` (``add_coeff``, zero-initialised, sized ``num_joints`` whatever :math:`V` is),

    .. math::
        \tilde{\mathbf{X}} = [\mathbf{X} \,\|\, \tfrac{1}{V}\textstyle\sum_v \mathbf{X}_v], \quad
        \mathbf{O} = [\mathbf{B}_1(\tilde{\mathbf{X}}) \,\|\, \dots], \quad
        \mathbf{F}_v = \mathbf{O}_v + \kappa_v \mathbf{O}_{V}, \quad
        \mathbf{X}' = \mathrm{Drop}(\mathrm{BN}(\mathbf{W}_f\,\mathrm{ReLU}(\mathrm{BN}(\mathbf{F})))).

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        mid_channels (float, optional): Branch width as a fraction of ``out_channels``. (default: :obj:`None`)
        num_joints (int, optional): Size of ``add_coeff`` (at least :math:`V`). (default: :obj:`25`)
        dropout (float, optional): Dropout after the final norm. (default: :obj:`0.0`)
        ms_cfg (sequence, optional): Branches, as in :class:`MultiScaleTemporalConv`.
        stride (int, optional): Temporal stride. (default: :obj:`1`)

    Shapes:
        - **input:** :math:`(B, T, V, C_{in})`
        - **output:** :math:`(B, \lceil T/s \rceil, V, C_{out})`
    """

    def __init__(self, in_channels: int, out_channels: int, mid_channels: float | None = None,
                 num_joints: int = 25, dropout: float = 0.0, ms_cfg: Sequence = _DEFAULT_MS_CFG,
                 stride: int = 1) -> None:
        super().__init__(in_channels, out_channels, mid_channels, dropout, ms_cfg, stride)
        _check_positive("DGMultiScaleTemporalConv", num_joints=num_joints)
        self.num_joints = num_joints
        self.add_coeff = nn.Parameter(torch.zeros(num_joints))

    def reset_parameters(self) -> None:
        super().reset_parameters()
        with torch.no_grad():
            self.add_coeff.zero_()

    def forward(self, x: Tensor, residual: Tensor | None = None, act: nn.Module | None = None) -> Tensor:
        check_features(x, self.in_channels, None, "DGMultiScaleTemporalConv", min_dim=4)
        V = x.size(-2)
        if V > self.num_joints:
            raise ValueError(f"DGMultiScaleTemporalConv: V={V} joints but num_joints={self.num_joints}")
        x = torch.cat([x, x.mean(-2, keepdim=True)], dim=-2)
        outs = cast(list[Tensor], run_branches(self.branches, x, self.fuse_branches, concat=False))
        coeff = self.add_coeff[:V]
        feats = [_AddGlobalJoint.apply(o, coeff) for o in outs]  # per branch: no concatenation
        return _end(self.bn, self.drop, _transform(self.transform, feats), residual, act)


class _AddGlobalJoint(torch.autograd.Function):
    r""":math:`\mathbf{F}_v = \mathbf{O}_v + \kappa_v \mathbf{O}_V` for ``o`` :math:`(*, V + 1, C)` (the virtual
    joint last), ``coeff`` :math:`(V,)`. Its gradient for ``o`` is written whole, :math:`[\mathbf{G} \,\|\,
    \sum_v \kappa_v \mathbf{G}_v]`, where autograd's slicing would fill a zero tensor and copy both parts in.
    The virtual joint is saved as a copy of its own (a view would keep all of ``o`` alive until the backward
    pass), and only when ``coeff`` needs a gradient."""

    @staticmethod
    def forward(ctx, o: Tensor, coeff: Tensor) -> Tensor:  # type: ignore[override]
        V = o.size(-2) - 1
        glob = o[..., V:, :]
        ctx.save_for_backward(glob.clone() if ctx.needs_input_grad[1] else None, coeff)
        return o[..., :V, :] + glob * coeff.view(V, 1).to(o.dtype)

    @staticmethod
    def backward(ctx, g: Tensor) -> tuple[Tensor, Tensor | None]:  # type: ignore[override]
        glob, coeff = ctx.saved_tensors
        V = coeff.numel()
        # sum_v kappa_v G_v and sum_{.., c} G_v O_V as batched products: no temporary the size of g
        grad_glob = torch.matmul(coeff.to(g.dtype), g).unsqueeze(-2)  # (.., 1, C)
        grad_o = torch.cat([g, grad_glob], dim=-2)
        grad_coeff = None if glob is None else \
            torch.matmul(g, glob.transpose(-1, -2)).reshape(-1, V).sum(0).to(coeff.dtype)
        return grad_o, grad_coeff


class CTRMultiScaleTemporalConv(nn.Module):
    r"""CTR-GCN's temporal unit (PYSKL ``MSTCN`` of ``msg3d_utils``): one branch per dilation
    (``Linear → BN → ReLU → TemporalConv(k, stride, d)`` with BN), a max branch (``Linear → BN → ReLU →
    max-pool 3 × 1 → BN``) and a strided :math:`1 \times 1` branch (``StridedLinear → BN``), concatenated,
    then ReLU and dropout (no fusion conv),

    .. math::
        \mathbf{X}' = \mathrm{Drop}\big(\mathrm{ReLU}([\mathbf{B}_1(\mathbf{X}) \,\|\, \dots \,\|\,
        \mathbf{B}_{n+2}(\mathbf{X})])\big).

    Every branch has :math:`\lfloor C_{out}/(n+2) \rfloor` channels, the **last** one the remainder.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        kernel_size (int or list, optional): Temporal kernel (one per dilation if a list). (default: :obj:`5`)
        stride (int, optional): Temporal stride. (default: :obj:`1`)
        dilations (sequence of int, optional): One branch per dilation. (default: :obj:`(1, 2)`)
        dropout (float, optional): Dropout after the ReLU. (default: :obj:`0.0`)

    Shapes:
        - **input:** :math:`(B, T, V, C_{in})`
        - **output:** :math:`(B, \lceil T/s \rceil, V, C_{out})`
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | Sequence[int] = 5,
                 stride: int = 1, dilations: Sequence[int] = (1, 2), dropout: float = 0.0) -> None:
        super().__init__()
        _check_positive("CTRMultiScaleTemporalConv", in_channels=in_channels, out_channels=out_channels,
                        stride=stride)
        dilations = list(dilations)
        kernels: list[int] = (list(kernel_size) if isinstance(kernel_size, (list, tuple))
                              else [cast(int, kernel_size)] * len(dilations))
        if len(kernels) != len(dilations):
            raise ValueError(f"CTRMultiScaleTemporalConv: kernel_size {kernel_size!r} and dilations "
                             f"{dilations!r} differ in length")
        nb = len(dilations) + 2
        mid = out_channels // nb
        rem = out_channels - mid * (nb - 1)
        if mid < 1:
            raise ValueError(f"CTRMultiScaleTemporalConv: out_channels={out_channels} is too small for {nb} "
                             "branches")
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.kernel_size, self.dilations = kernels, dilations
        branches: list[nn.Module] = [
            nn.Sequential(nn.Linear(in_channels, mid), BatchNormLast(mid), nn.ReLU(),
                          TemporalConv(mid, mid, k, stride, d)) for k, d in zip(kernels, dilations)]
        branches.append(nn.Sequential(nn.Linear(in_channels, mid), BatchNormLast(mid), nn.ReLU(),
                                      TemporalMaxPool(3, stride, 1), BatchNormLast(mid)))
        branches.append(nn.Sequential(StridedLinear(in_channels, rem, stride), BatchNormLast(rem)))
        self.branches = nn.ModuleList(branches)
        self.fuse_branches = True  # run_branches: one GEMM + BN + ReLU for the branches' opening projections
        self.relu = nn.ReLU()
        self.drop = nn.Dropout(float(dropout))

    def reset_parameters(self) -> None:
        """PYSKL's ``MSTCN.init_weights``: Kaiming-normal (fan-out) weights, zero biases, BN (1, 0)."""
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm1d):
                m.reset_parameters()

    def forward(self, x: Tensor) -> Tensor:
        check_features(x, self.in_channels, None, "CTRMultiScaleTemporalConv", min_dim=4)
        return self.drop(self.relu(cast(Tensor, run_branches(self.branches, x, self.fuse_branches))))

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"dilations={self.dilations}, stride={self.stride}")
