r"""CTR-GCN's channel-wise topology refinement unit (PYSKL ``unit_ctrgcn`` with ``CTRGC``)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ...graph import SkeletonGraph
from .._utils import BatchNormLast, check_features, check_positive_ints, make_down
from .skeleton_mp import SkeletonMessagePassing

__all__ = ["CTRGC", "CTRGCNConv"]


class _ChannelsLastGrad(torch.autograd.Function):
    """Identity on a transposed view :math:`(B, C, L)` of channels-last memory; the gradient comes back in that
    same memory layout (one transposing copy, after autograd summed every use), so the layer below receives a
    channels-last gradient."""

    @staticmethod
    def forward(ctx, xt: Tensor) -> Tensor:  # type: ignore[override]
        return xt.view_as(xt)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        return grad.transpose(1, 2).contiguous().transpose(1, 2)


class CTRGC(nn.Module):
    r"""One subset of the channel-wise topology refinement (PYSKL ``CTRGC``): the :math:`1 \times 1`
    convolutions ``conv1``/``conv2`` (:math:`C_{in} \to R`, :math:`R = 8` if :math:`C_{in} \le 16` else
    :math:`\lfloor C_{in}/8 \rfloor`), ``conv3`` (:math:`C_{in} \to C_{out}`) and ``conv4``
    (:math:`R \to C_{out}`). Holds the weights; :class:`CTRGCNConv` runs them.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        rel_reduction (int, optional): Relation reduction. (default: :obj:`8`)
    """

    def __init__(self, in_channels: int, out_channels: int, rel_reduction: int = 8) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.rel_channels = 8 if in_channels <= 16 else in_channels // rel_reduction
        self.conv1 = nn.Linear(in_channels, self.rel_channels)
        self.conv2 = nn.Linear(in_channels, self.rel_channels)
        self.conv3 = nn.Linear(in_channels, out_channels)
        self.conv4 = nn.Linear(self.rel_channels, out_channels)

    def relation(self, xm: Tensor) -> Tensor:
        r""":math:`\tanh(p_u - q_v)` :math:`(B, R, U, V)` from the temporal mean ``xm`` :math:`(B, V, C_{in})`
        (``conv1`` / ``conv2`` with their biases)."""
        p, q = self.conv1(xm).transpose(1, 2), self.conv2(xm).transpose(1, 2)  # (B, R, V)
        return torch.tanh(p.unsqueeze(-1) - q.unsqueeze(-2))

    def refinement(self, xm: Tensor, scale: Tensor | None = None, base: Tensor | None = None) -> Tensor:
        r"""``base`` :math:`+\ \mathrm{scale} \cdot \mathrm{conv4}(\tanh(p_u - q_v))` :math:`(B, C_{out}, V, V)`
        from the temporal mean ``xm`` :math:`(B, V, C_{in})` (``conv4``'s bias included; ``scale`` a scalar
        tensor folded into ``conv4``'s weight, ``base`` a :math:`(V, V)` term added in the same product)."""
        rel = self.relation(xm)
        B, R, U, V = rel.shape
        weight, bias = self.conv4.weight, cast(Tensor, self.conv4.bias)
        if scale is not None:
            weight, bias = weight * scale, bias * scale
        add = bias.view(-1, 1) if base is None else bias.view(-1, 1) + base.reshape(1, U * V)
        # one batched GEMM writes the whole (C_out, U V) term, bias and base included
        out = torch.baddbmm(add.to(rel.dtype), weight.to(rel.dtype).expand(B, -1, -1), rel.reshape(B, R, U * V))
        return out.view(B, -1, U, V)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, rel_channels={self.rel_channels}"


class CTRGCNConv(SkeletonMessagePassing):
    r"""The channel-wise topology refinement graph convolution of CTR-GCN (Chen et al., ICCV 2021) in
    PYSKL's ``unit_ctrgcn`` form, on channels-last sequences :math:`(B, T, V, C)`.

    For each subset :math:`k` (``convs[k]``, a :class:`CTRGC`), with :math:`\bar{\mathbf{X}}` the temporal
    mean of the input,

    .. math::
        \mathbf{M}_k[c, u, v] = \mathbf{G}_k[u, v]\Big(\mathbf{A}_k[u, v] + \alpha \big(
        \mathbf{W}_4 \tanh(\mathbf{W}_1 \bar{x}_u - \mathbf{W}_2 \bar{x}_v) + \mathbf{b}_4\big)_c\Big),

    .. math::
        \mathbf{H} = \mathrm{ReLU}\Big(\mathrm{BN}\Big(\sum_k \sum_u \mathbf{M}_k[:, u, v] \odot
        \mathrm{conv3}_k(\mathbf{X})_u\Big) + \mathrm{down}(\mathbf{X})\Big)

    (the biases of ``conv1``/``conv2`` included, one :math:`\alpha` for all subsets; joint :math:`u` sends to
    :math:`v`). :math:`\mathbf{A}` is a learnable parameter; its :math:`(K, E)` effective weights
    :math:`\mathbf{G} \odot \mathbf{A}` (:meth:`edge_weight_effective`) are where edge masks attach, and the
    connection mask :math:`\mathbf{G}_k` also multiplies the refined (per-channel) term: a removed connection
    carries no message at all.

    Backends: ``'dense'`` / ``'auto'`` run one exact per-sample, per-channel dense product with
    :math:`\mathbf{M}_k` (static and refined terms together); ``'sparse'`` / ``'scatter'`` aggregate the
    static part through the shared operator and add the refined term densely.

    Args:
        in_channels (int): Input channels :math:`C_{in}`.
        out_channels (int): Output channels :math:`C_{out}`.
        graph (SkeletonGraph or Tensor): The graph or its adjacency :math:`(K, V, V)`.
        backend (str, optional): ``'auto'``, ``'dense'``, ``'sparse'`` or ``'scatter'``.
            (default: :obj:`"auto"`)

    Shapes:
        - **input:** :math:`(B, T, V, C_{in})`
        - **output:** :math:`(B, T, V, C_{out})`
    """

    def __init__(self, in_channels: int, out_channels: int, graph: SkeletonGraph | Tensor | np.ndarray,
                 backend: str = "auto") -> None:
        super().__init__(graph, "init", backend)
        check_positive_ints("CTRGCNConv", ("in_channels", in_channels), ("out_channels", out_channels))
        self.in_channels, self.out_channels = in_channels, out_channels
        self.alpha = nn.Parameter(torch.zeros(1))
        self.convs = nn.ModuleList(CTRGC(in_channels, out_channels) for _ in range(self.num_subsets))
        self.down = make_down(in_channels, out_channels)
        self.bn = BatchNormLast(out_channels)
        self.relu = nn.ReLU()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PYSKL's ``unit_ctrgcn.init_weights``: Kaiming-normal (fan-out) convs with zero biases, BN (1, 0),
        the unit's ``bn`` :math:`\\gamma = 10^{-6}`; ``A`` back to the graph, :math:`\\alpha = 0`."""
        self.reset_graph_parameters()
        with torch.no_grad():
            self.alpha.zero_()
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm1d):
                m.reset_parameters()
        nn.init.constant_(self.bn.weight, 1e-6)

    @property
    def _subsets(self) -> Sequence[CTRGC]:
        """``convs`` typed as what it holds (one :class:`CTRGC` per subset)."""
        return cast("Sequence[CTRGC]", self.convs)

    def refined_graph(self, x: Tensor) -> Tensor:
        r"""The data-dependent term :math:`\alpha(\mathbf{W}_4 \tanh(\cdot) + \mathbf{b}_4)`,
        :math:`(B, K, C_{out}, V, V)`, before the connection mask."""
        xm = x.mean(1)
        return torch.stack([c.refinement(xm, self.alpha) for c in self._subsets], 1)

    def forward(self, x: Tensor) -> Tensor:
        """Run the unit on ``x`` :math:`(B, T, V, C_{in})`."""
        check_features(x, self.in_channels, self.num_nodes, "CTRGCNConv", min_dim=4)
        B, T, V, C_in = x.shape
        C = self.out_channels
        dense = self.backend in ("dense", "auto")
        xm = x.mean(1)
        gate = self.connection_mask()
        static = self.adjacency()
        # (B, C_in, T V): a transposed view of the channels-last input, read as it is by the GEMMs below; its
        # gradient (summed over the subsets) is written back channels-last once
        xt = _ChannelsLastGrad.apply(x.reshape(B, T * V, C_in).transpose(1, 2))
        out: Tensor | None = None
        shift: Tensor | None = None
        for k, c in enumerate(self._subsets):
            # M_k = A_k + G_k * alpha (conv4 tanh(.) + b4), (B, C, U, V), channels-first like PYSKL's operator
            if gate is None:
                M = c.refinement(xm, self.alpha, static[k] if dense else None)
            else:
                M = c.refinement(xm, self.alpha) * gate[k]
                if dense:
                    M = M + static[k]
            M = M.to(x.dtype)
            # conv3_k without its bias, channels-first (B, C, T V): one GEMM on the transposed view; the bias
            # b3_k contributes b3_k[c] sum_u M_k[c, u, v] to every frame, added once below
            x3 = torch.bmm(c.conv3.weight.to(x.dtype).expand(B, -1, -1), xt).view(B * C, T, V)
            bias = cast(Tensor, c.conv3.bias).view(1, C, 1) * M.sum(2)  # (B, C, V)
            shift = bias if shift is None else shift + bias
            # per-sample, per-channel aggregation; the subsets accumulate in place
            M = M.view(B * C, V, V)
            # (in place: no autocast there, so the operands take the accumulator's dtype; no-ops in float32)
            out = torch.bmm(x3, M) if out is None else out.baddbmm_(x3.to(out.dtype), M.to(out.dtype))
        assert out is not None and shift is not None
        out = out.add_(shift.view(B * C, 1, V))
        h = out.view(B, C, T, V).permute(0, 2, 3, 1)  # channels-last view of the channels-first sum
        if not dense:
            w3 = torch.cat([c.conv3.weight for c in self._subsets])  # (K C_out, C_in), row k C_out + c
            b3 = torch.cat([cast(Tensor, c.conv3.bias) for c in self._subsets])
            h = self._aggregate(F.linear(x, w3, b3), None, self.edge_weight_effective(), pre=True) + h
        h = self.bn(h)
        # the channels-last operand first: the sum is written channels-last for the temporal unit
        return self.relu((x if self.down is None else self.down(x)) + h)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.in_channels}, {self.out_channels}, "
                f"num_nodes={self.num_nodes}, num_subsets={self.num_subsets}, backend={self.backend!r})")
