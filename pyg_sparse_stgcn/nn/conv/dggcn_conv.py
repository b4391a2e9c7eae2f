r"""DG-STGCN's dynamic group graph convolution (PYSKL ``dggcn``)."""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from ...graph import SkeletonGraph
from .._utils import (
    BatchNormLast,
    check_choice,
    check_features,
    check_positive_ints,
    linear_norm_act,
    make_down,
    norm_act,
)
from .skeleton_mp import SkeletonMessagePassing

__all__ = ["DGGCNConv", "GRAPH_ACTIVATIONS"]

GRAPH_ACTIVATIONS = ("tanh", "relu", "sigmoid", "softmax")


def _graph_act(name: str, x: Tensor) -> Tensor:
    if name == "tanh":
        return torch.tanh(x)
    if name == "relu":
        return torch.relu(x)
    if name == "sigmoid":
        return torch.sigmoid(x)
    return torch.softmax(x, dim=-2)


class DGGCNConv(SkeletonMessagePassing):
    r"""The dynamic group graph convolution of DG-STGCN (Duan et al., 2022) in PYSKL's ``dggcn`` form, on
    channels-last sequences :math:`(B, T, V, C)`.

    ``pre`` (:math:`1 \times 1` + BN + ReLU) maps the input to :math:`K` groups of
    :math:`m = \lfloor \text{ratio} \cdot C_{out} \rfloor` channels (channel :math:`k m + i`). With
    :math:`\mathbf{Q}_{1,2} = \mathrm{conv}_{1,2}(\bar{\mathbf{X}})` on the temporal mean of the **input**,

    .. math::
        \hat{\mathbf{G}}_{k,i}[u, v] = \mathbf{G}_k[u, v]\Big(\mathbf{A}_k[u, v]
        + \alpha_0 \tanh(Q_{1,k,i,u} - Q_{2,k,i,v})
        + \beta_0\, \mathrm{softmax}_u\big(\textstyle\sum_i Q_{1,k,i,u} Q_{2,k,i,v}\big)\Big),

    .. math::
        \mathbf{H} = \mathrm{ReLU}\Big(\mathrm{BN}\big(\mathrm{post}(\mathbf{Y})\big) + \mathrm{down}(\mathbf{X})
        \Big), \qquad Y_{k,i,t,v} = \sum_u P_{k,i,t,u}\, \hat{\mathbf{G}}_{k,i}[u, v]

    (``ctr`` / ``ada`` = :obj:`None` drop a term, ``'NA'`` makes it per frame, ``subset_wise`` uses
    :math:`\alpha_k, \beta_k`, ``ctr_act`` / ``ada_act`` pick the activations; softmax is over the source
    :math:`u`). :math:`\mathbf{A}` (e.g. PYSKL's ``random`` graph, :math:`K = 8`) is a learnable parameter;
    its :math:`(K, E)` effective weights are where edge masks attach, and the connection mask
    :math:`\mathbf{G}_k` also multiplies the dynamic terms.

    Backends: ``'dense'`` / ``'auto'`` run one exact per-sample, per-channel dense product with
    :math:`\hat{\mathbf{G}}`; ``'sparse'`` / ``'scatter'`` aggregate the static part through the shared
    operator (every group against every subset, then the matching blocks: :math:`K` times the work) and add
    the dynamic terms densely.

    Args:
        in_channels (int): Input channels :math:`C_{in}`.
        out_channels (int): Output channels :math:`C_{out}`.
        graph (SkeletonGraph or Tensor): The graph or its adjacency :math:`(K, V, V)`.
        ratio (float, optional): Group width :math:`m / C_{out}` (:obj:`None`: :math:`1/K`).
            (default: :obj:`0.25`)
        ctr (str, optional): ``'T'``, ``'NA'`` or :obj:`None`. (default: :obj:`"T"`)
        ada (str, optional): ``'T'``, ``'NA'`` or :obj:`None`. (default: :obj:`"T"`)
        subset_wise (bool, optional): Per-subset gates :math:`\alpha_k, \beta_k`. (default: :obj:`False`)
        ada_act (str, optional): Activation of the ADA term. (default: :obj:`"softmax"`)
        ctr_act (str, optional): Activation of the CTR term. (default: :obj:`"tanh"`)
        norm (str, optional): ``'BN'``. (default: :obj:`"BN"`)
        act (str, optional): ``'ReLU'``. (default: :obj:`"ReLU"`)
        backend (str, optional): ``'auto'``, ``'dense'``, ``'sparse'`` or ``'scatter'``.
            (default: :obj:`"auto"`)

    Shapes:
        - **input:** :math:`(B, T, V, C_{in})`
        - **output:** :math:`(B, T, V, C_{out})`
    """

    def __init__(self, in_channels: int, out_channels: int, graph: SkeletonGraph | Tensor | np.ndarray,
                 ratio: float | None = 0.25, ctr: str | None = "T", ada: str | None = "T",
                 subset_wise: bool = False, ada_act: str = "softmax", ctr_act: str = "tanh",
                 norm: str = "BN", act: str = "ReLU", backend: str = "auto") -> None:
        super().__init__(graph, "init", backend)
        check_positive_ints("DGGCNConv", ("in_channels", in_channels), ("out_channels", out_channels))
        check_choice("ctr", ctr, ("T", "NA", None))
        check_choice("ada", ada, ("T", "NA", None))
        check_choice("ada_act", ada_act, GRAPH_ACTIVATIONS)
        check_choice("ctr_act", ctr_act, GRAPH_ACTIVATIONS)
        check_choice("norm", norm, ("BN",))
        check_choice("act", act, ("ReLU",))
        K = self.num_subsets
        if ratio is None:
            ratio = 1.0 / K
        mid = int(ratio * out_channels)
        if mid < 1:
            raise ValueError(f"DGGCNConv: ratio={ratio} gives {mid} channels per subset for "
                             f"out_channels={out_channels}")
        self.in_channels, self.out_channels, self.ratio, self.mid_channels = in_channels, out_channels, ratio, mid
        self.ctr, self.ada, self.subset_wise, self.ada_act, self.ctr_act = ctr, ada, subset_wise, ada_act, ctr_act
        self.alpha = nn.Parameter(torch.zeros(K))
        self.beta = nn.Parameter(torch.zeros(K))
        self.pre = nn.Sequential(nn.Linear(in_channels, mid * K), BatchNormLast(mid * K), nn.ReLU())
        self.post = nn.Linear(mid * K, out_channels)
        if ctr is not None or ada is not None:
            self.conv1 = nn.Linear(in_channels, mid * K)
            self.conv2 = nn.Linear(in_channels, mid * K)
        self.down = make_down(in_channels, out_channels)
        self.bn = BatchNormLast(out_channels)
        self.act = nn.ReLU()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch defaults everywhere (PYSKL has no initialiser for DG-STGCN); ``A`` back to the graph,
        :math:`\\alpha = \\beta = 0`."""
        self.reset_graph_parameters()
        with torch.no_grad():
            self.alpha.zero_()
            self.beta.zero_()
        for m in self.modules():
            if m is not self and isinstance(m, (nn.Linear, nn.BatchNorm1d)):
                m.reset_parameters()

    def dynamic_graph(self, x: Tensor) -> Tensor | None:
        r"""The data-dependent terms :math:`(B, K, m\text{ or }1, V, V)` (``(B, T, K, m, V, V)`` with
        ``'NA'``), before the connection mask; :obj:`None` without ``ctr`` / ``ada``."""
        if self.ctr is None and self.ada is None:
            return None
        K, m = self.num_subsets, self.mid_channels
        per_frame = "NA" in (self.ctr, self.ada)
        src = x if per_frame else x.mean(1)
        q1 = self.conv1(src).unflatten(-1, (K, m))  # (B, [T,] V, K, m)
        q2 = self.conv2(src).unflatten(-1, (K, m))
        # (B, [T,] K, m, V); non-negative dims: the ONNX exporter writes negative ones into Transpose's perm
        d = q1.dim()
        q1 = q1.movedim(d - 3, d - 1)
        q2 = q2.movedim(d - 3, d - 1)
        a = self.alpha if self.subset_wise else self.alpha[:1].expand(K)
        b = self.beta if self.subset_wise else self.beta[:1].expand(K)
        out: Tensor | None = None
        if self.ctr is not None:
            ctr = _graph_act(self.ctr_act, q1.unsqueeze(-1) - q2.unsqueeze(-2))  # (.., K, m, U, V)
            out = ctr * a.view(K, 1, 1, 1)
        if self.ada is not None:
            ada = _graph_act(self.ada_act, torch.matmul(q1.transpose(-1, -2), q2))  # (.., K, U, V)
            ada_term = (ada * b.view(K, 1, 1)).unsqueeze(-3)
            out = ada_term if out is None else out + ada_term
        return out

    def forward(self, x: Tensor) -> Tensor:
        """Run the unit on ``x`` :math:`(B, T, V, C_{in})`."""
        check_features(x, self.in_channels, self.num_nodes, "DGGCNConv", min_dim=4)
        B, T, V = x.shape[:3]
        K, m = self.num_subsets, self.mid_channels
        res = x if self.down is None else self.down(x)
        P = linear_norm_act(self.pre, x)  # (B, T, V, K m)
        dyn = self.dynamic_graph(x)
        gate = self.connection_mask()
        if dyn is not None and gate is not None:
            dyn = dyn * gate.unsqueeze(1)
        per_frame = dyn is not None and dyn.dim() == 6
        fused = self.backend in ("dense", "auto")
        G = dyn
        if fused:
            static = self.adjacency().unsqueeze(1)  # (K, 1, U, V)
            G = static if dyn is None else dyn + static
        Y = None
        if G is not None:
            if per_frame:  # (B, T, K, m, U, V)
                Pk = P.view(B, T, V, K, m).permute(0, 1, 3, 4, 2).unsqueeze(-2)  # (B, T, K, m, 1, U)
                Y = torch.matmul(Pk, G.to(x.dtype)).squeeze(-2).permute(0, 1, 4, 2, 3)
            else:
                Pk = P.view(B, T, V, K, m).permute(0, 3, 4, 1, 2)  # (B, K, m, T, U)
                Gm = G.expand(*G.shape[:-3], m, V, V) if G.size(-3) == 1 else G
                Y = torch.matmul(Pk, Gm.to(x.dtype)).permute(0, 3, 4, 1, 2)  # (B, T, V, K, m)
            Y = Y.reshape(B, T, V, K * m)
        if not fused:
            # every group against every subset, then group k against subset k
            S = self._aggregate(P, None, self.edge_weight_effective(), pre=False)  # (B, T, V, K K m)
            S = S.view(B, T, V, K, K, m).diagonal(dim1=3, dim2=4).movedim(-1, -2).reshape(B, T, V, K * m)
            Y = S if Y is None else Y + S
        return norm_act(self.bn, self.post(Y), self.act, res)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.in_channels}, {self.out_channels}, "
                f"num_nodes={self.num_nodes}, num_subsets={self.num_subsets}, ratio={self.ratio}, "
                f"ctr={self.ctr!r}, ada={self.ada!r}, backend={self.backend!r})")
