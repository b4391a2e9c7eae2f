r"""The ST-GCN spatial graph convolution (PYSKL ``unit_gcn``) as a PyG :class:`MessagePassing` layer."""
from __future__ import annotations

import numpy as np
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.typing import SparseTensor

from ...graph import SkeletonGraph
from .._utils import (
    _hooked,
    check_choice,
    check_features,
    check_positive_ints,
    make_down,
    make_norm,
    norm_act,
    reset_module,
)
from .skeleton_mp import ADAPTIVE_MODES, BACKENDS, SkeletonMessagePassing, auto_choices, clear_auto_cache

__all__ = ["STGCNConv", "BACKENDS", "ADAPTIVE_MODES", "CONV_POSITIONS", "clear_auto_cache", "auto_choices"]

CONV_POSITIONS = ("pre", "post")


class STGCNConv(SkeletonMessagePassing):
    r"""The spatial graph convolution of ST-GCN (Yan et al., AAAI 2018) in PYSKL's ``unit_gcn`` form, on
    channels-last skeleton sequences :math:`(B, T, V, C)` with the joints as PyG nodes (``node_dim=-2``).

    With :math:`K` adjacency subsets and effective edge weights :math:`\tilde{A}_k` (see below),

    .. math::
        \mathbf{X}' = \sigma\Big(\mathrm{BN}\Big(\sum_{k=1}^{K} \tilde{\mathbf{A}}_k^{\top}\,
        \mathbf{X} \mathbf{W}_k\Big) + \mathrm{res}(\mathbf{X})\Big),
        \qquad x'_w = \sum_k \sum_{v} \tilde{A}_{k,v,w}\, \mathbf{W}_k x_v

    per frame, i.e. joint :math:`v` sends to joint :math:`w` with weight :math:`\tilde{A}_{k,v,w}` (PYSKL's
    ``einsum('nkctv,kvw->nctw')``; ``edge_index[0]`` = source :math:`v`, ``edge_index[1]`` = target
    :math:`w`). ``conv_pos='pre'`` applies :math:`\mathbf{W}` (one ``Linear(C_in, K C_out)``) before the
    aggregation, ``'post'`` aggregates first and applies one ``Linear(K C_in, C_out)``. Both name PYSKL's
    parameters and function; ``'pre'`` is computed in the cheaper exact order (the input aggregated first
    where :math:`C_{in} < C_{out}`, the bias aggregated once per joint: :meth:`_pre_product`).

    The effective weights over the candidate edges, a :math:`(K, E)` tensor, come from one method,
    :meth:`edge_weight_effective`: the adaptive base :meth:`edge_weight_base` — :math:`A` (``adaptive=None``,
    a buffer), :math:`A \odot P` (``'importance'``, :math:`P` = ``PA`` initialised to ones), :math:`A + P`
    (``'offset'``, :math:`P \sim U(\pm 10^{-6})`) or a learnable :math:`A` (``'init'``) — times the optional
    buffer ``edge_gate`` (:meth:`enable_edge_gate`), which is where edge masks attach (``torch.nn.utils.
    parametrize`` on ``(conv, 'edge_gate')``, exactly as on ``(conv.conv, 'weight')``). Candidate edges are
    the support of :math:`A` for ``None``/``'importance'`` and all :math:`V^2` pairs for ``'offset'``,
    ``'init'`` and a ``random`` graph.

    Backends (equal to float precision, values and gradients):

    * ``'dense'``: one dense :math:`(V \times V K)` product for all subsets, frames and samples;
      :func:`torch.compile` traces it without graph breaks.
    * ``'sparse'``: :meth:`message_and_aggregate` over one stacked ``torch_sparse.SparseTensor``
      (a ``torch.sparse`` CSR matrix when torch-sparse is not installed). Entries whose effective weight is
      exactly zero are left out of the operator, so edge sparsity shrinks the work; the backward pass still
      returns the gradient of every candidate entry.
    * ``'scatter'``: PyG's :meth:`message` / :meth:`aggregate` (gather and scatter-add per edge); slow, kept
      for explainers and custom messages.
    * ``'auto'``: on the first call for a given (device, input shape, density of the non-zero weights,
      gradient or not, torch-sparse present) it times ``'dense'`` and ``'sparse'`` (forward, plus backward
      when gradients are needed) and uses the faster one from then on (:func:`auto_choices` lists the
      choices, :func:`clear_auto_cache` forgets them). Inside :func:`torch.compile` it uses ``'dense'``.

    Like any PyG conv, :meth:`forward` also accepts an explicit graph: ``edge_index`` ``(2, E)`` with
    ``edge_weight`` ``(K, E)`` or ``(E,)`` (shared by all subsets; default ones), or a transposed sparse
    adjacency (``torch_sparse.SparseTensor`` with values ``(nnz,)`` / ``(nnz, K)``, or a ``torch.sparse``
    tensor ``(V, V)`` / hybrid ``(V, V, K)``; row = target). Those weights are used as given: the adaptive
    parameters and ``edge_gate`` apply only to the layer's own graph.

    Args:
        in_channels (int): Input channels :math:`C_{in}`.
        out_channels (int): Output channels :math:`C_{out}`.
        graph (SkeletonGraph or Tensor): The skeleton graph, or its adjacency :math:`(K, V, V)`.
        adaptive (str, optional): ``None``, ``'importance'``, ``'offset'`` or ``'init'``.
            (default: :obj:`"importance"`)
        conv_pos (str, optional): ``'pre'`` or ``'post'``. (default: :obj:`"pre"`)
        with_res (bool, optional): Add a residual (``Linear`` + BN as ``down`` when the channel counts
            differ, identity otherwise) before the activation. (default: :obj:`False`)
        backend (str, optional): ``'auto'``, ``'dense'``, ``'sparse'`` or ``'scatter'``.
            (default: :obj:`"auto"`)
        norm (str, optional): ``'BN'`` or :obj:`None`. (default: :obj:`"BN"`)
        act (str, optional): ``'ReLU'`` or :obj:`None`. (default: :obj:`"ReLU"`)

    Shapes:
        - **input:** node features :math:`(*, V, C_{in})` (typically :math:`(B, T, V, C_{in})`), optional
          ``edge_index`` :math:`(2, E)` or sparse :math:`(V, V)`, optional ``edge_weight`` :math:`(K, E)`
        - **output:** node features :math:`(*, V, C_{out})`
    """

    def __init__(self, in_channels: int, out_channels: int, graph: SkeletonGraph | Tensor | np.ndarray,
                 adaptive: str | None = "importance", conv_pos: str = "pre", with_res: bool = False,
                 backend: str = "auto", norm: str | None = "BN", act: str | None = "ReLU") -> None:
        check_positive_ints("STGCNConv", ("in_channels", in_channels), ("out_channels", out_channels))
        check_choice("adaptive", adaptive, ADAPTIVE_MODES)
        check_choice("conv_pos", conv_pos, CONV_POSITIONS)
        check_choice("backend", backend, BACKENDS)
        check_choice("act", act, ("ReLU", None))
        super().__init__(graph, adaptive, backend)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.conv_pos = conv_pos
        self.with_res = with_res
        K = self.num_subsets

        if conv_pos == "pre":
            self.conv = nn.Linear(in_channels, out_channels * K)
        else:
            self.conv = nn.Linear(in_channels * K, out_channels)
        self.bn = make_norm(norm, out_channels)
        self.act = nn.ReLU() if act == "ReLU" else nn.Identity()
        self.down = make_down(in_channels, out_channels, norm) if with_res else None
        self.reset_parameters()

    # --- parameters ---
    def reset_parameters(self) -> None:
        """Re-initialise like PYSKL: default ``Linear`` init, BN to (1, 0), ``A``/``PA`` from the graph.

        ``edge_gate`` (owned by the sparsity masks) is left as it is.
        """
        super().reset_parameters()
        self.reset_graph_parameters()
        for module in (self.conv, self.bn, self.down):
            if module is not None:
                for m in module.modules():
                    reset_module(m)

    # --- forward ---
    def forward(self, x: Tensor, edge_index: Tensor | SparseTensor | None = None,
                edge_weight: Tensor | None = None) -> Tensor:
        """Run the unit on ``x`` :math:`(*, V, C_{in})` (see the class docstring for the optional graph)."""
        check_features(x, self.in_channels, self.num_nodes, "STGCNConv", min_dim=2)
        res: Tensor | None = None
        if self.with_res:
            res = x if self.down is None else self.down(x)
        ei: Tensor | None
        ei, weight = self._edges(edge_index, edge_weight)
        if edge_index is None:
            ei = None
        if self.conv_pos == "pre":
            out = self._pre_product(x, ei, weight)
        else:
            out = self.conv(self._aggregate(x, ei, weight, pre=False))
        return norm_act(self.bn, out, self.act, res)

    def _pre_product(self, x: Tensor, ei: Tensor | None, weight: Tensor) -> Tensor:
        r"""PYSKL's ``pre`` unit before its norm, :math:`\sum_k \mathbf{A}_k (\mathbf{X}\mathbf{W}_k^\top +
        \mathbf{b}_k)`, in the cheaper of two exact orders and with the bias aggregated once per joint:

        .. math::
            \sum_k \mathbf{A}_k \mathbf{X}\mathbf{W}_k^\top + \mathbf{c}
            = [\mathbf{A}_1\mathbf{X} \,\|\, \dots \,\|\, \mathbf{A}_K\mathbf{X}]
              [\mathbf{W}_1 \,\|\, \dots \,\|\, \mathbf{W}_K]^\top + \mathbf{c},
            \qquad \mathbf{c} = \sum_k \mathbf{A}_k \mathbf{1}\mathbf{b}_k^\top \in \mathbb{R}^{V \times C_{out}}.

        Where :math:`C_{in} < C_{out}` the graph aggregates the input first (the right-hand side: the
        aggregation and the activation kept for the backward pass are :math:`K C_{in}` wide instead of
        :math:`K C_{out}`, e.g. 9 instead of 192 channels in ST-GCN's first layer), otherwise the product
        comes first. The same function and gradients either way, and the same parameters (PYSKL's weight
        layout); the bias is never broadcast over every frame. Measured on the ST-GCN NTU training step
        (2 threads, one process per variant): the order 1.22 -> 1.13 s and 860 -> 772 MiB of peak memory, the
        bias 1.20 -> 1.16 s. A ``conv`` that is not a plain ``Linear`` (an exported kernel) or that has hooks
        is called as it is."""
        lin = self.conv
        if not isinstance(lin, nn.Linear) or _hooked(lin):
            return self._aggregate(lin(x), ei, weight, pre=True)
        if self.in_channels < self.out_channels:
            K, C_in, C_out = self.num_subsets, self.in_channels, self.out_channels
            w = lin.weight.view(K, C_out, C_in).transpose(0, 1).reshape(C_out, K * C_in)
            out = F.linear(self._aggregate(x, ei, weight, pre=False), w)
        else:
            out = self._aggregate(F.linear(x, lin.weight), ei, weight, pre=True)
        if lin.bias is None:
            return out
        # one frame of the bias through the same graph (the dense product: a (V, V K) operator on one frame)
        c = self._aggregate(lin.bias.expand(self.num_nodes, -1), ei, weight, pre=True, backend="dense")
        # not in place: out may be a view of the product, and autograd copies an updated view back in backward
        return out + c.to(out.dtype)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.in_channels}, {self.out_channels}, "
                f"num_nodes={self.num_nodes}, num_subsets={self.num_subsets}, adaptive={self.adaptive!r}, "
                f"conv_pos={self.conv_pos!r}, "
                f"with_res={self.with_res}, backend={self.backend!r})")
