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

    def refinement(self, xm: Tensor) -> Tensor:
        r""":math:`\mathrm{conv4}(\tanh(p_u - q_v))` :math:`(B, C_{out}, V, V)` from the temporal mean
        ``xm`` :math:`(B, V, C_{in})` of the input (``conv4``'s bias included)."""
        p, q = self.conv1(xm), self.conv2(xm)  # (B, V, R)
        rel = torch.tanh(p.unsqueeze(2) - q.unsqueeze(1))  # (B, U, V, R)
        return F.linear(rel, self.conv4.weight, self.conv4.bias).permute(0, 3, 1, 2)

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
        return self.alpha * torch.stack([c.refinement(xm) for c in self._subsets], 1)

    def forward(self, x: Tensor) -> Tensor:
        """Run the unit on ``x`` :math:`(B, T, V, C_{in})`."""
        check_features(x, self.in_channels, self.num_nodes, "CTRGCNConv", min_dim=4)
        K, C = self.num_subsets, self.out_channels
        w3 = torch.cat([c.conv3.weight for c in self._subsets])  # (K C_out, C_in), row k C_out + c
        b3 = torch.cat([cast(Tensor, c.conv3.bias) for c in self._subsets])  # conv3 is built with a bias
        x3 = F.linear(x, w3, b3)  # (B, T, V, K C_out)
        dyn = self.refined_graph(x)  # (B, K, C, U, V)
        gate = self.connection_mask()
        if gate is not None:
            dyn = dyn * gate.unsqueeze(1)
        B, T, V = x.shape[:3]
        xk = x3.view(B, T, V, K, C).permute(0, 3, 4, 1, 2)  # (B, K, C, T, U)
        if self.backend in ("dense", "auto"):
            M = dyn + self.adjacency().unsqueeze(1)  # (B, K, C, U, V)
            # one product over (k, c): sum over subsets of per-channel aggregations
            out = torch.matmul(xk, M.to(x.dtype)).sum(1).permute(0, 2, 3, 1)
        else:
            static = self._aggregate(x3, None, self.edge_weight_effective(), pre=True)  # (B, T, V, C)
            out = static + torch.matmul(xk, dyn.to(x.dtype)).sum(1).permute(0, 2, 3, 1)
        h = self.bn(out)
        return self.relu(h + (x if self.down is None else self.down(x)))

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.in_channels}, {self.out_channels}, "
                f"num_nodes={self.num_nodes}, num_subsets={self.num_subsets}, backend={self.backend!r})")
