r"""AAGCN's adaptive graph unit (PYSKL ``unit_aagcn``) with spatial, temporal and channel attention."""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import cast

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ...graph import SkeletonGraph
from .._utils import BatchNormLast, check_features, check_positive_ints, make_down, norm_act
from ._products import per_sample_subsets
from .skeleton_mp import SkeletonMessagePassing

__all__ = ["AAGCNConv"]


def _linears(modules: nn.ModuleList) -> Sequence[nn.Linear]:
    """A ``ModuleList`` of :class:`torch.nn.Linear` typed as such (no copy)."""
    return cast("Sequence[nn.Linear]", modules)


class AAGCNConv(SkeletonMessagePassing):
    r"""The adaptive graph convolution of 2s-AGCN / MS-AAGCN (Shi et al., CVPR 2019 / TIP 2020) in PYSKL's
    ``unit_aagcn`` form, on channels-last sequences :math:`(B, T, V, C)`.

    Per subset :math:`k`, with :math:`\theta_k, \phi_k` the :math:`1 \times 1` embeddings ``conv_a[k]`` /
    ``conv_b[k]`` (:math:`C_e = \lfloor C_{out} / \text{coff\_embedding} \rfloor` channels),

    .. math::
        \mathbf{C}_k[u, v] = \tanh\Big(\frac{1}{C_e T} \sum_{t, c} \theta_k(\mathbf{X})_{t,u,c}\,
        \phi_k(\mathbf{X})_{t,v,c}\Big), \qquad
        \hat{\mathbf{A}}_k = \mathbf{G}_k \odot (\mathbf{A}_k + \alpha\, \mathbf{C}_k),

    .. math::
        \mathbf{H} = \mathrm{ReLU}\Big(\mathrm{BN}\Big(\sum_k \mathbf{W}^{(d)}_k \big(\hat{\mathbf{A}}_k^{\top}
        \mathbf{X}\big)\Big) + \mathrm{down}(\mathbf{X})\Big)

    (joint :math:`u` sends to :math:`v` with weight :math:`\hat{A}_k[u, v]`; the aggregation is in the input
    space, then ``conv_d[k]``), followed by the spatial, temporal and channel attentions, each
    :math:`\mathbf{H} \leftarrow \mathbf{H} \odot (1 + \sigma(\cdot))` on the previous output.
    :math:`\mathbf{A}` is a learnable parameter (``adaptive=True``; a buffer otherwise, without
    :math:`\alpha`, ``conv_a``, ``conv_b``). :math:`\mathbf{G}_k` is the connection mask
    (:meth:`~SkeletonMessagePassing.connection_mask`): a connection removed by an edge mask carries neither
    its static weight nor its attention term. The static part :math:`\mathbf{G} \odot \mathbf{A}` is the
    layer's :math:`(K, E)` effective edge weights (:meth:`edge_weight_effective`, where edge masks attach).

    Backends: ``'dense'`` and ``'auto'`` run one exact per-sample dense product with
    :math:`\hat{\mathbf{A}}` (static and attention terms together; ``'auto'`` with ``adaptive=False`` times
    the static-only backends like :class:`STGCNConv`); ``'sparse'`` / ``'scatter'`` aggregate the static part
    through the shared message-passing operator and add the attention term densely.

    Args:
        in_channels (int): Input channels :math:`C_{in}`.
        out_channels (int): Output channels :math:`C_{out}`.
        graph (SkeletonGraph or Tensor): The graph or its adjacency :math:`(K, V, V)`.
        coff_embedding (int, optional): Embedding reduction. (default: :obj:`4`)
        adaptive (bool, optional): Learnable :math:`A` plus the attention graph. (default: :obj:`True`)
        attention (bool, optional): Spatial, temporal and channel attention. (default: :obj:`True`)
        backend (str, optional): ``'auto'``, ``'dense'``, ``'sparse'`` or ``'scatter'``.
            (default: :obj:`"auto"`)

    Shapes:
        - **input:** :math:`(B, T, V, C_{in})`
        - **output:** :math:`(B, T, V, C_{out})`
    """

    def __init__(self, in_channels: int, out_channels: int, graph: SkeletonGraph | Tensor | np.ndarray,
                 coff_embedding: int = 4, adaptive: bool = True, attention: bool = True,
                 backend: str = "auto") -> None:
        super().__init__(graph, "init" if adaptive else None, backend)
        check_positive_ints("AAGCNConv", ("in_channels", in_channels), ("out_channels", out_channels),
                            ("coff_embedding", coff_embedding))
        self.in_channels, self.out_channels = in_channels, out_channels
        self.inter_channels = out_channels // coff_embedding
        self.coff_embedding, self.use_adaptive, self.attention = coff_embedding, bool(adaptive), bool(attention)
        K, V = self.num_subsets, self.num_nodes
        self.conv_d = nn.ModuleList(nn.Linear(in_channels, out_channels) for _ in range(K))
        if adaptive:
            if self.inter_channels < 1:
                raise ValueError(f"AAGCNConv: out_channels={out_channels} // coff_embedding={coff_embedding} "
                                 "is 0")
            self.alpha = nn.Parameter(torch.zeros(1))
            self.conv_a = nn.ModuleList(nn.Linear(in_channels, self.inter_channels) for _ in range(K))
            self.conv_b = nn.ModuleList(nn.Linear(in_channels, self.inter_channels) for _ in range(K))
        if attention:
            ks = V if V % 2 else V - 1
            self.conv_ta = nn.Conv1d(out_channels, 1, 9, padding=4)
            self.conv_sa = nn.Conv1d(out_channels, 1, ks, padding=(ks - 1) // 2)
            self.fc1c = nn.Linear(out_channels, out_channels // 2)
            self.fc2c = nn.Linear(out_channels // 2, out_channels)
            # the paper keeps the attention layers dense (method.md §3.2): sparsity leaves them out by default
            for m in (self.conv_ta, self.conv_sa, self.fc1c, self.fc2c):
                m.sparsity_dense = True  # type: ignore[assignment]  # stub: Module.__setattr__ takes Tensor | Module only
        self.down = make_down(in_channels, out_channels)
        self.bn = BatchNormLast(out_channels)
        self.relu = nn.ReLU()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PYSKL's ``unit_aagcn.init_weights``: Kaiming-normal (fan-out) convs, ``conv_d`` with
        ``conv_branch_init``, BN :math:`\\gamma = 1` except ``bn`` (:math:`10^{-6}`), zero ``conv_ta`` /
        ``fc2c``, Xavier ``conv_sa``, Kaiming (fan-in) ``fc1c``; ``A`` back to the graph, :math:`\\alpha = 0`."""
        self.reset_graph_parameters()
        K = self.num_subsets
        convs = [*_linears(self.conv_d)]
        if self.use_adaptive:
            convs += [*_linears(self.conv_a), *_linears(self.conv_b)]
            nn.init.zeros_(self.alpha)
        if self.down is not None:
            convs.append(cast(nn.Linear, self.down[0]))
            cast(BatchNormLast, self.down[1]).reset_parameters()
        for m in convs:
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            nn.init.zeros_(m.bias)
        self.bn.reset_parameters()
        nn.init.constant_(self.bn.weight, 1e-6)
        for m in _linears(self.conv_d):
            nn.init.normal_(m.weight, 0, math.sqrt(2.0 / (self.out_channels * self.in_channels * K)))
        if self.attention:
            nn.init.zeros_(self.conv_ta.weight)
            nn.init.zeros_(cast(Tensor, self.conv_ta.bias))  # the attention convs are built with a bias
            nn.init.xavier_normal_(self.conv_sa.weight)
            nn.init.zeros_(cast(Tensor, self.conv_sa.bias))
            nn.init.kaiming_normal_(self.fc1c.weight)
            nn.init.zeros_(self.fc1c.bias)
            nn.init.zeros_(self.fc2c.weight)
            nn.init.zeros_(self.fc2c.bias)

    def attention_graph(self, x: Tensor) -> Tensor:
        r"""The data-dependent term :math:`\alpha \mathbf{C}_k` :math:`(B, K, V, V)` (before the connection
        mask) of ``x`` :math:`(B, T, V, C_{in})`."""
        K, Ce, T = self.num_subsets, self.inter_channels, x.size(1)
        conv_a, conv_b = _linears(self.conv_a), _linears(self.conv_b)
        wa = torch.cat([m.weight for m in conv_a])
        wb = torch.cat([m.weight for m in conv_b])
        ba = torch.cat([m.bias for m in conv_a])
        bb = torch.cat([m.bias for m in conv_b])
        a = F.linear(x, wa, ba).view(*x.shape[:3], K, Ce)
        b = F.linear(x, wb, bb).view(*x.shape[:3], K, Ce)
        # S[n, k, u, v] = sum_{t, c} a[n, t, u, k, c] b[n, t, v, k, c]
        a = a.permute(0, 3, 2, 1, 4).reshape(x.size(0), K, x.size(2), T * Ce)
        b = b.permute(0, 3, 1, 4, 2).reshape(x.size(0), K, T * Ce, x.size(2))
        return self.alpha * torch.tanh(torch.matmul(a, b) / (Ce * T))

    def forward(self, x: Tensor) -> Tensor:
        """Run the unit on ``x`` :math:`(B, T, V, C_{in})`."""
        check_features(x, self.in_channels, self.num_nodes, "AAGCNConv", min_dim=4)
        conv_d = _linears(self.conv_d)
        weight = torch.cat([m.weight for m in conv_d], dim=1)  # (C_out, K C_in), column k C_in + c
        bias = torch.stack([m.bias for m in conv_d]).sum(0)
        if not self.use_adaptive:
            agg = self._aggregate(x, None, self.edge_weight_effective(), pre=False)
        else:
            dyn = self.attention_graph(x)
            gate = self.connection_mask()
            if gate is not None:
                dyn = dyn * gate
            if self.backend in ("dense", "auto"):
                agg = per_sample_subsets(x, self.adjacency().unsqueeze(0) + dyn)
            else:
                agg = self._aggregate(x, None, self.edge_weight_effective(), pre=False) + \
                    per_sample_subsets(x, dyn)
        h = norm_act(self.bn, F.linear(agg, weight, bias), self.relu, x if self.down is None else self.down(x))
        if not self.attention:
            return h
        s = torch.sigmoid(self.conv_sa(h.mean(1).transpose(1, 2)))  # (B, 1, V)
        h = h * (1 + s.transpose(1, 2).unsqueeze(1))
        s = torch.sigmoid(self.conv_ta(h.mean(2).transpose(1, 2)))  # (B, 1, T)
        h = h * (1 + s.transpose(1, 2).unsqueeze(2))
        s = torch.sigmoid(self.fc2c(self.relu(self.fc1c(h.mean((1, 2))))))  # (B, C)
        return h * (1 + s[:, None, None, :])

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.in_channels}, {self.out_channels}, "
                f"num_nodes={self.num_nodes}, num_subsets={self.num_subsets}, adaptive={self.use_adaptive}, "
                f"attention={self.attention}, backend={self.backend!r})")
