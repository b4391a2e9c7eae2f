r"""Graph machinery shared by every skeleton graph convolution: :class:`SkeletonMessagePassing`.

One implementation of the adjacency :math:`A` (and the adaptive ``PA``), the candidate edges, the real
entries, the ``(K, E)`` effective-edge-weight hook where edge masks attach (``edge_gate``), the cached
aggregation operators and the ``dense`` / ``sparse`` / ``scatter`` / ``auto`` backends. :class:`STGCNConv`,
:class:`AAGCNConv`, :class:`CTRGCNConv` and :class:`DGGCNConv` derive from it, so a sparsity algorithm that
handles one of them handles them all (DESIGN: adjacency handling in shared utilities, not per-layer branches).
"""
from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch_geometric.typing as pyg_typing
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch_geometric.nn.conv import MessagePassing
from torch_geometric.typing import SparseTensor

from ...graph import SkeletonGraph
from ...timing import best_times

__all__ = ["SkeletonMessagePassing", "BACKENDS", "ADAPTIVE_MODES", "clear_auto_cache", "auto_choices"]

BACKENDS = ("auto", "dense", "sparse", "scatter")
ADAPTIVE_MODES = (None, "importance", "offset", "init")

# (device, shapes, density bucket, grad, torch-sparse flag) -> backend chosen by timing; see ``_auto_pick``.
_AUTO_CACHE: dict[tuple, str] = {}


def clear_auto_cache() -> None:
    """Forget every backend choice made by ``backend='auto'`` (they are re-timed on the next call)."""
    _AUTO_CACHE.clear()


def auto_choices() -> dict[tuple, str]:
    """A copy of the choices made so far by ``backend='auto'`` (keyed by device, shape, density, ...)."""
    return dict(_AUTO_CACHE)


def _with_torch_sparse() -> bool:
    # Read at call time so that tests (and users) can switch the torch-sparse path off by patching the flag.
    return bool(pyg_typing.WITH_TORCH_SPARSE)


def _graph_to_A(graph: Any) -> tuple[Tensor, bool]:
    """``(A, all_pairs)`` from a :class:`SkeletonGraph` or a ``(K, V, V)`` array."""
    if isinstance(graph, SkeletonGraph):
        return torch.as_tensor(np.asarray(graph.A), dtype=torch.float32).clone(), graph.dense_candidates
    if isinstance(graph, (np.ndarray, Tensor)):
        A = torch.as_tensor(graph, dtype=torch.float32).detach().clone()
        if A.dim() == 2:
            A = A.unsqueeze(0)
        if A.dim() != 3 or A.size(1) != A.size(2) or A.size(0) < 1:
            raise ValueError(f"graph: an adjacency array must have shape (K, V, V), got {tuple(A.shape)}")
        return A, False
    raise ValueError(f"graph must be a SkeletonGraph or a (K, V, V) adjacency array/tensor, got "
                     f"{type(graph).__name__} (build one with SkeletonGraph(layout, mode))")


def _candidates(A: Tensor, all_pairs: bool) -> Tensor:
    """``(2, E)`` candidate edges sorted by (target, source): A's support, or all ``V²`` pairs."""
    V = A.size(-1)
    support = torch.ones(V, V, dtype=torch.bool) if all_pairs else (A != 0).any(0)
    target, source = torch.nonzero(support.t(), as_tuple=True)
    return torch.stack([source, target]).long()


def _op_index(edge_index: Tensor, K: int, V: int, pre: bool) -> tuple[Tensor, Tensor, int, int]:
    r"""Rows/cols ``(K, E)`` of the stacked aggregation operator.

    ``pre``: :math:`(V, V K)`, column ``v K + k`` (the Linear output ``(.., V, K C)`` viewed as
    ``(.., V K, C)``);
    ``post``: :math:`(V K, V)`, row ``w K + k`` (the result viewed as ``(.., V, K C)`` is the input of the
    Linear over ``K C_in`` with PYSKL's channel order ``k C_in + c``).
    """
    src, dst = edge_index[0], edge_index[1]
    k = torch.arange(K, device=edge_index.device).unsqueeze(1)
    if pre:
        return dst.unsqueeze(0).expand(K, -1), src.unsqueeze(0) * K + k, V, V * K
    return dst.unsqueeze(0) * K + k, src.unsqueeze(0).expand(K, -1), V * K, V


def _torch_sparse_matmul(adj: Tensor, x: Tensor) -> Tensor:
    """``adj @ x`` for a 2-D ``torch.sparse`` matrix and a dense ``(n_cols, C)`` or ``(L, n_cols, C)``."""
    if x.device.type == "cpu" and (x.dtype in (torch.bfloat16, torch.float16) or torch.is_autocast_enabled("cpu")):
        # the CPU sparse products (MKL) take float32 / float64 only: the product runs in float32 with autocast
        # off (which would cast float32 operands down), the result in x's dtype
        with torch.autocast("cpu", enabled=False):
            return _torch_sparse_matmul(adj.to(torch.float32), x.float()).to(x.dtype)
    if x.dim() == 2:
        return torch.sparse.mm(adj, x)
    L, J, C = x.shape
    xt = x.transpose(0, 1).reshape(J, L * C)
    out = torch.sparse.mm(adj, xt)
    return out.view(adj.size(0), L, C).transpose(0, 1).contiguous()


class _Plan:
    """The aggregation operator's structure over the entries that carry messages, built once per support.

    ``rows``/``cols`` (``(nnz,)``, sorted row-major) index the stacked operator, ``gather`` picks each
    entry's value from the flat ``(K E)`` effective weights, ``order_t`` re-sorts the entries for the
    transposed operator (backward pass), and ``nnz``/``density`` are host numbers: reading them never
    synchronises a device.
    """

    __slots__ = ("rows", "cols", "gather", "order_t", "n_rows", "n_cols", "nnz", "density", "adj", "adj_t")

    def __init__(self, rows: Tensor, cols: Tensor, gather: Tensor, n_rows: int, n_cols: int) -> None:
        order = torch.argsort(rows * n_cols + cols)
        self.rows, self.cols, self.gather = rows[order], cols[order], gather[order]
        self.order_t = torch.argsort(self.cols * n_rows + self.rows)
        self.n_rows, self.n_cols = n_rows, n_cols
        self.nnz = int(self.rows.numel())
        self.density = self.nnz / float(n_rows * n_cols)
        self.adj = _structure(self.rows, self.cols, n_rows, n_cols)
        self.adj_t = _structure(self.cols[self.order_t], self.rows[self.order_t], n_cols, n_rows)


class _PlanCache(dict):
    """Cached operators by support key; copies and pickles start empty (operators are rebuilt on demand)."""

    def __deepcopy__(self, memo) -> _PlanCache:
        return _PlanCache()

    def __reduce__(self):
        return (_PlanCache, ())


def _structure(rows: Tensor, cols: Tensor, n_rows: int, n_cols: int):
    """The value-free structure of a row-sorted sparse matrix (``SparseTensor``, or CSR ``(crow, col)``)."""
    if _with_torch_sparse():
        adj = SparseTensor(row=rows, col=cols, sparse_sizes=(n_rows, n_cols), is_sorted=True, trust_data=True)
        adj.storage.rowptr()  # computed once here; copies made by set_value() share it
        return adj
    crow = torch.zeros(n_rows + 1, dtype=torch.long, device=rows.device)
    crow[1:] = torch.cumsum(torch.bincount(rows, minlength=n_rows), 0)
    return crow, cols, (n_rows, n_cols)


def _with_values(structure, values: Tensor):
    """A sparse matrix of ``structure`` holding ``values`` (in its row-major order); no host synchronisation."""
    if isinstance(structure, SparseTensor):
        return structure.set_value(values, layout="coo")
    crow, cols, size = structure
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Ss]parse.*")
        return torch.sparse_csr_tensor(crow, cols, values, size, check_invariants=False)


def _dense_product(h3: Tensor, values: Tensor, rows: Tensor, cols: Tensor, n_rows: int, n_cols: int) -> Tensor:
    """``M @ h3`` for the dense ``(n_rows, n_cols)`` operator holding ``values`` at ``(rows, cols)``."""
    M = values.new_zeros(n_rows * n_cols).index_add(0, rows * n_cols + cols, values).view(n_rows, n_cols)
    dtype = h3.dtype
    if torch.is_autocast_enabled(h3.device.type) and dtype != torch.float64:
        # the dtype autocast runs bmm in, taken before broadcasting the operator: autocast would cast the
        # expanded view, one copy of the operator per frame
        dtype = torch.get_autocast_dtype(h3.device.type)
    if M.dtype != dtype:
        M = M.to(dtype)
    # One (n_rows x n_cols) matrix broadcast over every frame and sample: a batched GEMM on the channels-last
    # activations, no copies in float32 (torch.matmul would transpose both operands; CPU bfloat16 bmm
    # materialises the broadcast operator).
    return torch.bmm(M.expand(h3.size(0), n_rows, n_cols), h3)


class _SparseAggregate(torch.autograd.Function):
    """``out = M @ h`` with ``M`` holding only the plan's entries (``values``, gathered from the weights).

    The backward pass returns the gradient of the plan's entries; entries outside the plan are removed
    (masked or never real), so no gradient reaches them through this path by construction.
    """

    @staticmethod
    def forward(ctx, values: Tensor, h: Tensor, plan: _Plan, conv: SkeletonMessagePassing) -> Tensor:
        # under autocast the activations may be half precision while the edge weights stay float32
        v = values.to(h.dtype)
        out = conv.propagate(_with_values(plan.adj, v), x=h, edge_weight=None, size=(plan.n_cols, plan.n_rows))
        ctx.save_for_backward(h, v)
        ctx.plan, ctx.conv, ctx.values_dtype = plan, conv, values.dtype
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        h, v = ctx.saved_tensors
        plan = ctx.plan
        grad_out = grad_out.contiguous()
        grad_values = grad_h = None
        if ctx.needs_input_grad[1]:
            grad_h = ctx.conv.message_and_aggregate(_with_values(plan.adj_t, v[plan.order_t]), grad_out)
        if ctx.needs_input_grad[0]:
            # the dense gradient of the operator, sum_l g_l h_l^T (one batched GEMM), read at the plan's entries
            grad_values = torch.bmm(grad_out, h.transpose(1, 2)).sum(0)[plan.rows, plan.cols]
            grad_values = grad_values.to(ctx.values_dtype)
        return grad_values, grad_h, None, None


class SkeletonMessagePassing(MessagePassing):
    r"""Base class of the skeleton graph convolutions: a PyG :class:`MessagePassing` over the joints of
    channels-last sequences :math:`(*, V, C)` (``node_dim=-2``) that owns the static graph.

    It registers ``A`` :math:`(K, V, V)` (a buffer, or a parameter for ``adaptive='init'``), ``PA`` for
    ``'importance'`` (:math:`A \odot P`) and ``'offset'`` (:math:`A + P`), the candidate edges
    ``edge_index`` :math:`(2, E)` (source, target; the support of :math:`A`, or all :math:`V^2` pairs for
    ``'offset'``, ``'init'`` and a ``random`` graph), the real entries ``edge_real`` :math:`(K, E)`, and the
    optional ``edge_gate`` :math:`(K, E)` where the sparsity package attaches edge masks. It aggregates with
    :meth:`_aggregate` over the layer's own graph or an explicit one, with the cached operators and backends
    described in :class:`STGCNConv`. Subclasses create their own weights and call :meth:`_init_graph` in
    ``__init__``; :meth:`reset_graph_parameters` re-initialises ``A`` / ``PA``.

    Args:
        graph (SkeletonGraph or Tensor): The skeleton graph, or its adjacency :math:`(K, V, V)`.
        adaptive (str, optional): ``None``, ``'importance'``, ``'offset'`` or ``'init'``.
            (default: :obj:`None`)
        backend (str, optional): ``'auto'``, ``'dense'``, ``'sparse'`` or ``'scatter'``.
            (default: :obj:`"auto"`)
    """

    # parameters and buffers registered by _init_graph / enable_edge_gate (typed for the checker only)
    A: Tensor
    PA: Tensor
    _A_init: Tensor
    edge_index: Tensor
    _flat_index: Tensor
    edge_real: Tensor
    edge_gate: Tensor
    _frozen_adjacency: Tensor
    _frozen_mask: Tensor | None

    def __init__(self, graph: SkeletonGraph | Tensor | np.ndarray, adaptive: str | None = None,
                 backend: str = "auto") -> None:
        super().__init__(aggr="add", node_dim=-2)
        self._init_graph(graph, adaptive, backend)

    def _init_graph(self, graph: SkeletonGraph | Tensor | np.ndarray, adaptive: str | None,
                    backend: str) -> None:
        from .._utils import check_choice

        check_choice("adaptive", adaptive, ADAPTIVE_MODES)
        check_choice("backend", backend, BACKENDS)
        A, random_graph = _graph_to_A(graph)
        self.adaptive = adaptive
        self.backend = backend
        self.num_subsets = int(A.size(0))
        self.num_nodes = int(A.size(1))
        K = self.num_subsets
        if adaptive == "init":
            self.A = nn.Parameter(A.clone())
        else:
            self.register_buffer("A", A.clone())
        if adaptive in ("importance", "offset"):
            self.PA = nn.Parameter(torch.empty_like(A))
        self.register_buffer("_A_init", A.clone(), persistent=False)
        all_pairs = random_graph or adaptive in ("offset", "init")
        self._all_pairs = bool(all_pairs)
        edge_index = _candidates(A, all_pairs)
        self.register_buffer("edge_index", edge_index, persistent=False)
        self.register_buffer("_flat_index", edge_index[0] * self.num_nodes + edge_index[1], persistent=False)
        # Real entries (k, v, w): those whose base weight can ever be non-zero. With a fixed or importance-
        # scaled A (A * PA keeps A's zeros) that is A's own support per subset; otherwise every candidate.
        real = torch.ones(K, edge_index.size(1), dtype=torch.bool) if all_pairs \
            else (A.flatten(1)[:, edge_index[0] * self.num_nodes + edge_index[1]] != 0)
        self.register_buffer("edge_real", real, persistent=False)
        self.layout = graph.layout if isinstance(graph, SkeletonGraph) else None
        self._graph_version = 0
        self._edge_gate_enabled = False
        self._plans: dict[tuple, _Plan] = _PlanCache()
        self._frozen = False

    @torch.no_grad()
    def reset_graph_parameters(self) -> None:
        r"""``A`` back to the graph (``'init'``), ``PA`` to ones (``'importance'``) or :math:`U(\pm 10^{-6})`
        (``'offset'``); ``edge_gate`` (owned by the sparsity masks) is left as it is."""
        if self.adaptive == "init":
            self.A.copy_(self._A_init)
        if self.adaptive == "importance":
            self.PA.fill_(1.0)
        elif self.adaptive == "offset":
            nn.init.uniform_(self.PA, -1e-6, 1e-6)

    def connection_mask(self) -> Tensor | None:
        r"""Which connections :math:`(k, u, v)` may carry a message, as a dense :math:`(K, V, V)` factor:
        the edge gate (the mask, when one is attached) at the real candidate entries and :math:`0` elsewhere;
        :obj:`None` when every pair is a live candidate (no gate, nothing pruned).

        The units with a data-dependent adjacency (:class:`AAGCNConv`, :class:`CTRGCNConv`,
        :class:`DGGCNConv`) multiply their dynamic term by it, so that a removed connection carries no
        message at all, static or dynamic.
        """
        if self.is_frozen:
            return self._frozen_mask
        if not self._edge_gate_enabled and self._all_pairs and self._graph_version == 0:
            return None
        K, V = self.num_subsets, self.num_nodes
        live = self.edge_real.to(self.A.dtype)
        if self._edge_gate_enabled:
            live = live * self.edge_gate
        return live.new_zeros(K, V * V).index_copy(1, self._flat_index, live).view(K, V, V)

    @property
    def num_edges(self) -> int:
        """Number :math:`E` of candidate edges."""
        return int(self.edge_index.size(1))

    @property
    def num_real_entries(self) -> int:
        """Number of real entries :math:`(k, v, w)` (``edge_real.sum()``): what edge sparsity counts."""
        return int(self.edge_real.sum())

    @torch.no_grad()
    def prune_edges_(self) -> int:
        r"""Drop, in place, every candidate edge that carries no weight in any subset; returns how many.

        An entry is live when it is real (``edge_real``) and its ``edge_gate`` is non-zero. Candidate
        edges with no live entry leave ``edge_index``, ``edge_real`` and ``edge_gate``, so no backend sends a
        message along them. Meant for folded models (:func:`~pyg_sparse_stgcn.sparsity.export.fold`): the
        gate must be a plain buffer, not a masked parametrization.

        Raises:
            ValueError: If a mask is still attached to ``edge_gate``.
        """
        if parametrize.is_parametrized(self, "edge_gate"):
            raise ValueError(f"{type(self).__name__}.prune_edges_: a mask is attached to edge_gate; fold the model "
                             "first "
                             "(pyg_sparse_stgcn.sparsity.export.fold)")
        live = self.edge_real & (self.edge_gate != 0) if self._edge_gate_enabled else self.edge_real
        keep = live.any(0)
        removed = int((~keep).sum())
        if removed:
            self.edge_index = self.edge_index[:, keep].contiguous()
            self._flat_index = self._flat_index[keep].contiguous()
            self.edge_real = live[:, keep].contiguous()
            if self._edge_gate_enabled:
                self.edge_gate = self.edge_gate[:, keep].contiguous()
            self._graph_version += 1
        return removed

    def enable_edge_gate(self) -> Tensor:
        """Register the buffer ``edge_gate`` (ones, :math:`(K, E)`) that multiplies the effective weights.

        Masks attach to ``(conv, 'edge_gate')``. Calling it again is a no-op. Returns the gate.
        """
        if not self._edge_gate_enabled:
            self.register_buffer("edge_gate", torch.ones(self.num_subsets, self.num_edges,
                                                         device=self.A.device, dtype=self.A.dtype))
            self._edge_gate_enabled = True
        return self.edge_gate

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs) -> None:
        if prefix + "edge_gate" in state_dict and not self._edge_gate_enabled:
            self.enable_edge_gate()
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    @torch.no_grad()
    def dense_operator(self) -> tuple[Tensor, Tensor | None]:
        r"""The layer's own graph as dense constants: ``(adjacency, connection_mask)``.

        ``adjacency`` is :meth:`adjacency` :math:`(K, V, V)` (the effective, masked static weights) and
        ``connection_mask`` is :meth:`connection_mask` (:math:`(K, V, V)`, or :obj:`None` when nothing is
        pruned), both detached copies. Together they are everything a dense inference form needs: the
        static aggregation is a product with ``adjacency``, and a unit with a data-dependent adjacency
        multiplies its dynamic term by ``connection_mask`` (a removed connection carries no message).
        """
        mask = self.connection_mask()
        return self.adjacency().detach().clone(), None if mask is None else mask.detach().clone()

    @property
    def is_frozen(self) -> bool:
        """Whether :meth:`freeze_dense_` froze the graph (``adjacency`` / ``connection_mask`` are constants)."""
        return bool(self.__dict__.get("_frozen", False))

    def freeze_dense_(self) -> SkeletonMessagePassing:
        r"""Freeze, in place, the layer's own graph into the constants of :meth:`dense_operator` (an
        inference form, e.g. for ONNX export; returns the layer).

        Afterwards :meth:`adjacency` and :meth:`connection_mask` return those constants (non-persistent
        buffers ``_frozen_adjacency`` / ``_frozen_mask``: the state dict is unchanged) and the aggregation
        over the layer's own graph is one ``matmul`` with the stacked dense operator, whatever the backend:
        no gather, scatter or sparse operator is left, so the layer traces to plain ``MatMul`` s. Changes
        to ``A``, ``PA`` or the edge gate made later are not seen. Outputs are unchanged.
        """
        adjacency, mask = self.dense_operator()
        self.register_buffer("_frozen_adjacency", adjacency, persistent=False)
        self.register_buffer("_frozen_mask", mask, persistent=False)
        self._frozen = True
        return self

    def _frozen_aggregate(self, h: Tensor, pre: bool) -> Tensor:
        """:meth:`_aggregate` over the frozen graph: one dense ``matmul`` with the stacked operator."""
        K, V = self.num_subsets, self.num_nodes
        A = self._frozen_adjacency
        op = A.permute(2, 1, 0).reshape(V, V * K) if pre else A.permute(2, 0, 1).reshape(V * K, V)
        lead = h.shape[:-2]
        C = h.size(-1) // K if pre else h.size(-1)
        out = torch.matmul(op.to(h.dtype), h.reshape(-1, op.size(1), C))
        return out.reshape(*lead, V, C if pre else C * K)

    def edge_weight_base(self) -> Tensor:
        r"""The adaptive base weights :math:`(K, E)` over the candidate edges, without the gate.

        ``A`` (``None``, ``'init'``), ``A * PA`` (``'importance'``) or ``A + PA`` (``'offset'``), gathered at
        ``edge_index``: ``base[k, e] = Ã[k, edge_index[0, e], edge_index[1, e]]``.
        """
        idx = self._flat_index
        base = self.A.flatten(1)[:, idx]
        if self.adaptive == "importance":
            base = base * self.PA.flatten(1)[:, idx]
        elif self.adaptive == "offset":
            base = base + self.PA.flatten(1)[:, idx]
        return base

    def edge_weight_effective(self) -> Tensor:
        """The effective edge weights :math:`(K, E)`: :meth:`edge_weight_base` times ``edge_gate`` (if any).

        This is the one place the layer's edge weights are computed; every backend uses it.
        """
        weight = self.edge_weight_base()
        if self._edge_gate_enabled:
            weight = weight * self.edge_gate
        return weight

    def adjacency(self) -> Tensor:
        """The effective weights as a dense :math:`(K, V, V)` adjacency (``[k, v, w]``: ``v`` → ``w``)."""
        if self.is_frozen:
            return self._frozen_adjacency
        K, V = self.num_subsets, self.num_nodes
        w = self.edge_weight_effective()
        return w.new_zeros(K, V * V).index_add(1, self._flat_index, w).view(K, V, V)

    def _edges(self, edge_index, edge_weight) -> tuple[Tensor, Tensor]:
        K, V = self.num_subsets, self.num_nodes
        if edge_index is None:
            if edge_weight is not None:
                raise ValueError(f"{type(self).__name__}: edge_weight was given without edge_index")
            return self.edge_index, self.edge_weight_effective()
        if isinstance(edge_index, SparseTensor):
            if edge_weight is not None:
                raise ValueError(f"{type(self).__name__}: pass edge weights as the SparseTensor's values, not "
                                 "edge_weight")
            if tuple(edge_index.sparse_sizes()) != (V, V):
                raise ValueError(f"{type(self).__name__}: the sparse adjacency must be ({V}, {V}), got "
                                 f"{tuple(edge_index.sparse_sizes())}")
            row, col, value = edge_index.coo()
            ei = torch.stack([col, row])
            edge_weight = value.t() if value is not None and value.dim() == 2 else value
        elif isinstance(edge_index, Tensor) and edge_index.layout != torch.strided:
            if edge_weight is not None:
                raise ValueError(f"{type(self).__name__}: pass edge weights as the sparse tensor's values, not as "
                                 "edge_weight")
            coo = edge_index.to_sparse_coo().coalesce()
            if tuple(coo.shape[:2]) != (V, V) or coo.dim() > 3:
                raise ValueError(f"{type(self).__name__}: the sparse adjacency must be ({V}, {V}) or ({V}, {V}, {K}), "
                                 f"got {tuple(coo.shape)}")
            idx, value = coo.indices(), coo.values()
            ei = torch.stack([idx[1], idx[0]])
            edge_weight = value.t() if value.dim() == 2 else value
        elif isinstance(edge_index, Tensor):
            if edge_index.dim() != 2 or edge_index.size(0) != 2 or edge_index.dtype != torch.long:
                raise ValueError(f"{type(self).__name__}: edge_index must be a (2, E) long tensor, got shape "
                                 f"{tuple(edge_index.shape)} and dtype {edge_index.dtype}")
            if edge_index.numel() and (int(edge_index.min()) < 0 or int(edge_index.max()) >= V):
                raise ValueError(f"{type(self).__name__}: edge_index holds joints outside [0, {V - 1}]")
            ei = edge_index
        else:
            raise ValueError(f"{type(self).__name__}: edge_index must be a (2, E) tensor, a SparseTensor or a "
                             f"torch.sparse tensor, got {type(edge_index).__name__}")
        E = ei.size(1)
        if edge_weight is None:
            weight = torch.ones(K, E, device=ei.device, dtype=self.A.dtype)
        elif edge_weight.dim() == 1 and edge_weight.numel() == E:
            weight = edge_weight.unsqueeze(0).expand(K, E)
        elif edge_weight.dim() == 2 and tuple(edge_weight.shape) == (K, E):
            weight = edge_weight
        else:
            raise ValueError(f"{type(self).__name__}: edge_weight must have shape ({E},) or ({K}, {E}) (K subsets, "
                             f"E edges), got {tuple(edge_weight.shape)}")
        return ei, weight

    # --- aggregation ---
    def _live_entries(self, needs_grad: bool) -> tuple[tuple, Callable[[], Tensor] | None]:
        """``(key, live)`` for the layer's own graph: the entries that carry messages.

        ``live`` is :obj:`None` for "every real entry" (static), else a function returning the ``(K, E)``
        boolean support; ``key`` changes exactly when that support may change (tensor version counters,
        read on the host), so the support is recomputed only then and never inside a training step. While a
        scored mask trains (``needs_grad``) the mask changes every step: its plan spans every real entry,
        the masked ones carrying zeros, so that no step synchronises the device.
        """
        # the graph changes only through prune_edges_ (which bumps _graph_version); version counters of
        # buffers are not used for it, since DDP's buffer broadcasts bump them at every step
        base = (self._graph_version, self.edge_real.data_ptr())
        if parametrize.is_parametrized(self, "edge_gate"):
            masks = [p for p in self.parametrizations["edge_gate"] if callable(getattr(p, "current", None))]
            if not masks:
                return base, None
            mask = masks[0]
            if needs_grad and getattr(mask, "score", None) is not None and mask.score.requires_grad:
                return base, None
            return base + ("mask", mask.version()), mask.current
        if self._edge_gate_enabled:
            gate = self.edge_gate
            return base + ("gate", gate.data_ptr(), gate._version), lambda: gate != 0
        return base, None

    def _plan(self, pre: bool, device: torch.device, needs_grad: bool) -> _Plan:
        """The cached :class:`_Plan` of the layer's own graph for the current edge support."""
        key, live = self._live_entries(needs_grad)
        key = (pre, device.type, device.index, _with_torch_sparse()) + key
        plan = self._plans.get(key)
        if plan is None:
            with torch.no_grad():
                support = self.edge_real if live is None else self.edge_real & live().to(self.edge_real.device)
                flat = torch.nonzero(support.reshape(-1)).flatten().to(device)
            rows, cols, n_rows, n_cols = _op_index(self.edge_index.to(device), self.num_subsets, self.num_nodes,
                                                   pre)
            plan = _Plan(rows.reshape(-1)[flat], cols.reshape(-1)[flat], flat, n_rows, n_cols)
            for old in [k for k in self._plans if k[:4] == key[:4]]:  # one operator per device and layout
                del self._plans[old]
            self._plans[key] = plan
        return plan

    def _explicit_plan(self, edge_index: Tensor, pre: bool) -> _Plan:
        """Plan over every given entry of an explicit graph (weights used as given)."""
        rows, cols, n_rows, n_cols = _op_index(edge_index, self.num_subsets, self.num_nodes, pre)
        flat = torch.arange(rows.numel(), device=edge_index.device)
        return _Plan(rows.reshape(-1), cols.reshape(-1), flat, n_rows, n_cols)

    def num_live_entries(self) -> int:
        """Entries that carry messages in evaluation (real and kept by the edge mask); synchronises once."""
        return self._plan(True, self.edge_real.device, False).nnz

    def _aggregate(self, h: Tensor, edge_index: Tensor | None, weight: Tensor, pre: bool,
                   backend: str | None = None) -> Tensor:
        K, V = self.num_subsets, self.num_nodes
        lead = h.shape[:-2]
        C = h.size(-1) // K if pre else h.size(-1)
        backend = self.backend if backend is None else backend
        if edge_index is None and self.is_frozen:
            return self._frozen_aggregate(h, pre)
        if backend == "dense" or (backend == "auto" and torch.compiler.is_compiling()):
            # every candidate entry, masked ones as zeros: no operator cache, nothing that breaks a graph
            rows, cols, n_rows, n_cols = _op_index(self.edge_index if edge_index is None else edge_index, K, V,
                                                   pre)
            h3 = h.reshape(-1, n_cols, C)
            out = _dense_product(h3, weight.reshape(-1), rows.reshape(-1), cols.reshape(-1), n_rows, n_cols)
            return out.reshape(*lead, V, C if pre else C * K)
        needs_grad = torch.is_grad_enabled() and (h.requires_grad or weight.requires_grad)
        if edge_index is None:
            plan = self._plan(pre, h.device, needs_grad)
        else:
            plan = self._explicit_plan(edge_index, pre)
        h3 = h.reshape(-1, plan.n_cols, C)
        backend = self._resolve_backend(h3, weight, plan, needs_grad)
        out = self._run_backend(backend, h3, weight, plan)
        return out.reshape(*lead, V, C if pre else C * K)

    def _run_backend(self, backend: str, h3: Tensor, weight: Tensor, plan: _Plan) -> Tensor:
        values = weight.reshape(-1).index_select(0, plan.gather)
        if backend == "dense":
            return _dense_product(h3, values, plan.rows, plan.cols, plan.n_rows, plan.n_cols)
        if backend == "scatter":
            # one message per entry (k, v, w): source v (subset k's slice) in the operator's column space,
            # target in its row space; entries outside the plan send nothing
            entry_index = torch.stack([plan.cols, plan.rows])
            return self.propagate(entry_index, x=(h3, None), edge_weight=values, size=(plan.n_cols, plan.n_rows))
        return _SparseAggregate.apply(values, h3, plan, self)

    def _resolve_backend(self, h3: Tensor, weight: Tensor, plan: _Plan, needs_grad: bool) -> str:
        if self.backend != "auto":
            return self.backend
        if torch.compiler.is_compiling():
            return "dense"
        key = (h3.device.type, h3.device.index, tuple(h3.shape), plan.n_rows, plan.n_cols,
               round(plan.density * 20), needs_grad, _with_torch_sparse(), h3.dtype)
        choice = _AUTO_CACHE.get(key)
        if choice is None:
            choice = self._auto_pick(h3, weight, plan, needs_grad)
            _AUTO_CACHE[key] = choice
        return choice

    def _auto_pick(self, h3: Tensor, weight: Tensor, plan: _Plan, needs_grad: bool) -> str:
        """Time ``dense`` and ``sparse`` (:func:`~pyg_sparse_stgcn.timing.best_times`: one warm-up each, then
        3 rounds alternating between the two so that a changing load affects both alike); the faster wins."""
        h = h3.detach().requires_grad_(needs_grad)
        w = weight.detach().requires_grad_(needs_grad)
        grad = None
        if needs_grad:
            grad = torch.ones(h.size(0), plan.n_rows, h.size(-1), device=h.device, dtype=h.dtype)

        def run(backend: str) -> Callable[[], None]:
            def call() -> None:
                with torch.set_grad_enabled(needs_grad):
                    out = self._run_backend(backend, h, w, plan)
                    if grad is not None:
                        out.backward(grad)
                h.grad = w.grad = None
            return call

        best = best_times({b: run(b) for b in ("dense", "sparse")}, h.device, rounds=3, warmup=1)
        return min(best, key=best.__getitem__)

    # --- MessagePassing interface ---
    def message(self, x_j: Tensor, edge_weight: Tensor) -> Tensor:
        # one message per entry (k, v, w): x_j (*, nnz, C) is subset k's slice of source v; edge_weight (nnz,)
        return x_j * edge_weight.unsqueeze(-1).to(x_j.dtype)

    def message_and_aggregate(self, adj_t: SparseTensor | Tensor, x: Tensor) -> Tensor:
        """Sparse-dense product ``adj_t @ x`` over dim -2 (``torch_sparse`` or ``torch.sparse``)."""
        if isinstance(adj_t, SparseTensor):
            import torch_sparse

            return torch_sparse.matmul(adj_t, x, reduce="sum")
        return _torch_sparse_matmul(adj_t, x)

