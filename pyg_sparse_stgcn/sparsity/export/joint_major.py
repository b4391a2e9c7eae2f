r"""The joint-major sparse inference path for whole folded ST-GCN models (:class:`JointMajorSTGCN`): every
weight product, the aggregation over joints included, is one pass of the native sparse kernel
(:func:`~pyg_sparse_stgcn.sparsity.export.native.spmm_shifted`) over only the kept non-zeros."""
from __future__ import annotations

import math
from typing import Any, NamedTuple, cast

import torch
from torch import Tensor, nn

from ...nn import GCNHead
from . import native
from .channel_major import ChannelMajorSTGCN, ExportViews, _CMBlock, _CMProduct, kept_empty

__all__ = ["JointMajorSTGCN"]


class _SparseRows(nn.Module):
    """The non-zeros of one sparse operator by output row: buffers ``rowptr``, ``taps`` (the temporal tap, or
    the source joint of the graph operator), ``cols`` (input channel) and ``values``, plus the per-row
    ``bias``; ``source_rows``, the distinct input rows the non-zeros read (they size the kernel's column
    blocks: :func:`~.native.column_block`)."""

    rowptr: Tensor
    taps: Tensor
    cols: Tensor
    values: Tensor
    bias: Tensor

    def __init__(self, rowptr: Tensor, taps: Tensor, cols: Tensor, values: Tensor, bias: Tensor,
                 source_rows: int) -> None:
        super().__init__()
        for name, t in (("rowptr", rowptr), ("taps", taps), ("cols", cols), ("values", values),
                        ("bias", bias)):
            self.register_buffer(name, t.detach().contiguous())
        self.source_rows = source_rows

    @property
    def nnz(self) -> int:
        return int(self.values.numel())

    def offsets(self, key: str, build: Any) -> Tensor:
        """The source offsets for the current input geometry (cached per ``key``)."""
        cache = self.__dict__.setdefault("_offsets", {})
        stamp = (self.taps.data_ptr(), self.cols.data_ptr())
        hit = cache.get(key)
        if hit is None or hit[0] != stamp:
            hit = (stamp, build())
            cache[key] = hit
        return hit[1]


class _Arena:
    """The activation buffers of one joint-major model, shared by all of its operators.

    Blocks run one after another and at most four activations are alive at once (a block's input, the
    graph convolution's output, the residual branch and the block's output), so a few flat buffers, each
    grown to the largest activation it has held, replace one buffer per operator: the memory of a model
    stays that of a few activations whatever its depth, and the buffers are reused between calls (no page
    faults of fresh large allocations). :meth:`take` hands out a buffer that backs none of the tensors
    named as alive.
    """

    def __init__(self) -> None:
        self.slots: list[Tensor] = []

    def take(self, shape: tuple[int, ...], like: Tensor, alive: tuple[Tensor | None, ...]) -> Tensor:
        """An uninitialised ``like``-typed tensor of ``shape`` sharing memory with none of ``alive``."""
        n = math.prod(shape)
        busy = {t.untyped_storage().data_ptr() for t in alive if t is not None}
        for i, slot in enumerate(self.slots):
            if slot.data_ptr() in busy:
                continue
            if slot.numel() < n or slot.dtype != like.dtype or slot.device != like.device:
                self.slots[i] = slot = kept_empty((n,), like)
            return slot[:n].view(shape)
        self.slots.append(kept_empty((n,), like))
        return self.slots[-1].view(shape)

    def take_padded(self, shape: tuple[int, int, int, int], P: int, like: Tensor,
                    alive: tuple[Tensor | None, ...]) -> Tensor:
        """:meth:`take` for a joint-major activation :math:`(C, V, T + 2P, B)` whose :math:`P` padding
        frames on each side are zeroed (the model's input; an operator's kernel zeroes its output's padding
        as it writes the output)."""
        y = self.take(shape, like, alive)
        if P:
            y[:, :, :P].zero_()
            y[:, :, shape[2] - P:].zero_()
        return y

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.slots)

    def stamp(self) -> tuple[tuple[int, int], ...]:
        """Where the buffers are and how large (a recorded plan is valid while this stays the same)."""
        return tuple((t.data_ptr(), t.numel()) for t in self.slots)


class _Plan(NamedTuple):
    """One input geometry's forward, recorded: the kernel calls in order (their pointers into the arena's
    buffers, the operators' non-zeros and cached offsets), the input buffer they read and the output buffer
    they leave. Every operator's kernel calls depend on the geometry alone, never on the input's values, so
    while the arena keeps its buffers (``stamp``) a forward is: zero the input's padding, copy the input in,
    replay the kernels, without the Python of every operator in between."""

    input: Tensor
    output: Tensor
    kernels: native.Recording
    stamp: tuple[tuple[int, int], ...]


def _tap_rows(p: _CMProduct) -> _SparseRows:
    rowptr, taps, cols, vals = native.sparse_rows(p.weight)
    # every tap of an input channel reads (a phase of) that channel's row
    phases = p.stride if p.k > 1 else 1
    return _SparseRows(rowptr, taps, cols, vals, p.bias, int(torch.unique(cols).numel()) * phases)


class _JMTemporal(nn.Module):
    r"""A temporal :math:`(k, 1)` (or 1×1) convolution on joint-major activations :math:`(C, V, T + 2P, B)`
    (:math:`P` zero frames on each side of every joint): tap :math:`j` of input channel :math:`c` is row
    :math:`c` shifted by :math:`j d - p` frames (with a stride :math:`s`, of one of the :math:`s` phases of
    the input), so all taps are one sparse matrix; bias, residual and ReLU are fused."""

    in_channels: int
    out_channels: int
    k: int
    rows: _SparseRows

    def __init__(self, p: _CMProduct) -> None:
        super().__init__()
        self.name, self.k, self.stride, self.dilation, self.pad = p.name, p.k, p.stride, p.dilation, p.pad
        self.in_channels, self.out_channels = p.in_channels, p.out_channels
        self.rows = _tap_rows(p)

    def out_frames(self, T: int) -> int:
        return (T + 2 * self.pad - self.dilation * (self.k - 1) - 1) // self.stride + 1

    def forward(self, x: Tensor, T: int, P: int, arena: _Arena, residual: Tensor | None = None,
                relu: bool = False, keep: tuple[Tensor | None, ...] = ()) -> Tensor:
        """The output :math:`(C_{out}, V, T' + 2P, B)` of ``x`` :math:`(C, V, T + 2P, B)`, in a buffer of
        ``arena`` that backs none of ``x``, ``residual`` and ``keep`` (tensors still needed later)."""
        C, V, Tp, B = x.shape
        s = self.stride
        t_out = self.out_frames(T)
        alive = (x, residual, *keep)
        n_q = -(-Tp // s)
        src = x  # stride 1, or no kept weight (nothing reads the input: no phases to split)
        if s > 1 and self.rows.nnz:  # the s phases (frames q, q + s, ...) of the padded input, each (C, V, n_q, B)
            src = arena.take((s, C, V, n_q, B), x, alive)
            native.split_phases(src.view(s, C * V, n_q, B), x.view(C * V, Tp, B))

        def offsets() -> Tensor:  # padded frame s t + j d - p + P = phase q, frame t + o
            u = torch.arange(self.k, device=x.device) * self.dilation - self.pad + P
            q, o = u % s, torch.div(u, s, rounding_mode="floor")
            base = q * (C * V * n_q * B) + o * B
            return native.int32_offsets(base[self.rows.taps] + self.rows.cols * (V * n_q * B))

        off = self.rows.offsets(f"{C},{V},{n_q},{B}", offsets)
        Tp_out = t_out + 2 * P
        y = arena.take((self.out_channels, V, Tp_out, B), x, (*alive, src))
        cols = slice(P * B, (P + t_out) * B)  # the interior frames of joint 0; groups step to the next joints
        ys = y.view(self.out_channels, V * Tp_out * B)[:, cols]
        res = None if residual is None else residual.view(self.out_channels, V * Tp_out * B)[:, cols]
        native.spmm_shifted(ys, src, self.rows.rowptr, off, self.rows.values, self.rows.bias, res, relu,
                            groups=V, group_stride_y=Tp_out * B, group_stride_x=n_q * B, pad=P * B,
                            block=native.column_block(self.rows.source_rows, 4 * src.numel()))
        return y


class _JMGraph(nn.Module):
    r"""The graph convolution (1×1 convolutions of the live subsets, aggregation over joints, BN, bias,
    residual, activation) as **one** sparse operator from rows :math:`(c_{in}, v)` to rows
    :math:`(c_{out}, w)` of the joint-major activation:

    .. math::
        \mathbf{Y}_{c_o, w} = \sigma\Big(\mathbf{c}_{c_o, w} + \sum_{l, v, c_i}
        \tilde{A}_{l, v, w}\, W_{l, c_o, c_i}\, \mathbf{X}_{c_i, v} + \mathrm{res}_{c_o, w}\Big),

    whose non-zeros are the products of kept weights and kept graph entries: a removed edge or weight
    costs nothing."""

    in_channels: int
    out_channels: int
    num_nodes: int
    rows: _SparseRows
    order: Tensor

    def __init__(self, block: _CMBlock) -> None:
        super().__init__()
        g = block.gcn
        L, C_out, C_in = g.weight.shape
        V = g.num_nodes
        self.name, self.in_channels, self.out_channels, self.num_nodes = g.name, C_in, C_out, V
        rows: list[Tensor] = [torch.zeros(0, dtype=torch.long, device=g.weight.device)]
        cols, vals = list(rows), [g.weight.new_zeros(0)]
        for l in range(L):
            o, c = g.weight[l].nonzero(as_tuple=True)
            v, w = g.adjacency[l].nonzero(as_tuple=True)
            wv, av = g.weight[l][o, c], g.adjacency[l][v, w]
            rows.append((o.view(-1, 1) * V + w.view(1, -1)).reshape(-1))
            cols.append((c.view(-1, 1) * V + v.view(1, -1)).reshape(-1))
            vals.append((wv.view(-1, 1) * av.view(1, -1)).reshape(-1))
        ref = g.weight
        # entries (c_out w, c_in v) that several subsets share are summed; sorted by row, then column
        key, inverse = torch.unique(torch.cat(rows) * (C_in * V) + torch.cat(cols), return_inverse=True)
        v = ref.new_zeros(key.numel()).index_add_(0, inverse, torch.cat(vals))
        keep = v != 0
        key, v = key[keep], v[keep]
        r, c = torch.div(key, C_in * V, rounding_mode="floor"), key % (C_in * V)
        rowptr = torch.zeros(C_out * V + 1, dtype=torch.long, device=ref.device)
        rowptr[1:] = torch.cumsum(torch.bincount(r, minlength=C_out * V), 0)
        # an input larger than L2 runs joint by joint: the rows (., w) read the input rows (., v) of the joints
        # v that send to w only, which stay in cache while all C_out of them are summed; the column blocks are
        # sized for those (a smaller input stays in L2 whatever the order, and runs in row order: sequential
        # indices and outputs)
        w_of = r % V
        per_joint = max((int(torch.unique(c[w_of == w]).numel()) for w in range(V)), default=0)
        self.rows = _SparseRows(rowptr, c % V, c // V, v, block.gcn_const.reshape(-1), per_joint)
        by_joint = torch.arange(C_out * V, device=rowptr.device).view(C_out, V).t().reshape(-1)
        self.register_buffer("order", native.row_order(rowptr, by_joint), persistent=False)
        self.act = block.gcn_act

    def forward(self, x: Tensor, T: int, P: int, arena: _Arena, residual: Tensor | None,
                keep: tuple[Tensor | None, ...] = ()) -> Tensor:
        """Like :meth:`_JMTemporal.forward` (same layout and buffers)."""
        C, V, Tp, B = x.shape
        off = self.rows.offsets(f"{Tp},{B}", lambda: native.int32_offsets(
            (self.rows.cols * V + self.rows.taps) * (Tp * B) + P * B))
        y = arena.take((self.out_channels, V, Tp, B), x, (x, residual, *keep))
        ys = y.view(self.out_channels * V, Tp * B)[:, P * B: (P + T) * B]
        res = None if residual is None else residual.view(self.out_channels * V, Tp * B)[:, P * B: (P + T) * B]
        native.spmm_shifted(ys, x, self.rows.rowptr, off, self.rows.values, self.rows.bias, res, self.act,
                            pad=P * B, block=native.column_block(self.rows.source_rows, 4 * x.numel()),
                            order=self.order if 4 * x.numel() > native.L2_BYTES else None)
        return y


class _JMBlock(nn.Module):
    def __init__(self, block: _CMBlock) -> None:
        super().__init__()
        self.gcn = _JMGraph(block)
        self.gcn_res = block.gcn_res
        self.gcn_down = None if block.gcn_down is None else _JMTemporal(block.gcn_down)
        self.tcn = _JMTemporal(block.tcn)
        self.res_mode = block.res_mode
        self.residual = None if block.residual is None else _JMTemporal(block.residual)

    def forward(self, x: Tensor, T: int, P: int, arena: _Arena) -> tuple[Tensor, int]:
        gres = x if self.gcn_res == "identity" else None
        if self.gcn_down is not None:
            gres = self.gcn_down(x, T, P, arena)
        g = self.gcn(x, T, P, arena, gres)
        res = x if self.res_mode == "identity" else None
        if self.residual is not None:
            res = self.residual(x, T, P, arena, keep=(g,))
        return self.tcn(g, T, P, arena, res, relu=True), self.tcn.out_frames(T)


class JointMajorSTGCN(ExportViews, nn.Module):
    r"""Inference ST-GCN whose every weight product is a pass of the native sparse kernel over the kept
    non-zeros only, on joint-major activations :math:`(C, V, T + 2P, B)`, :math:`B = N M`, with :math:`P`
    zero frames on both sides of every joint (the temporal padding, zeroed by the kernel that writes each
    activation).

    Built from a :class:`ChannelMajorSTGCN` (batch norms already folded). Per block:

    * the graph convolution is one sparse operator from rows :math:`(c_{in}, v)` to rows
      :math:`(c_{out}, w)` (kept weights times kept graph entries, summed over subsets), with its constant,
      residual and activation fused — no aggregation pass, and a removed edge costs nothing;
    * the temporal convolution is one sparse operator whose non-zeros are (tap, input channel) pairs, each
      a shifted row of the (phase of the) padded input — no unfolding, no padding copies — with its bias,
      the block's residual and the ReLU fused.

    All-zero rows and columns of a weight cost nothing. The native path runs float32 on CPU when the kernel
    is available (:func:`~pyg_sparse_stgcn.sparsity.export.native.available`); any other input (or after
    ``.double()`` / ``.to(device)``) runs the wrapped channel-major model (``channel_major``), which gives
    the same outputs. Activations live in a few buffers that all operators share and that are kept between
    calls (their size is that of a few activations of the largest batch seen, whatever the depth): one
    instance must not run in several threads at once. The kernel calls of an input geometry (batch,
    persons, frames, threads) are recorded by a call that finds the buffers large enough (the second call at a
    new largest geometry) and replayed from then on while the buffers stay where they are (:attr:`plans`),
    without the Python of every operator in between; with a
    :class:`~pyg_sparse_stgcn.nn.GCNHead`, :meth:`forward` pools straight from the last buffer instead of
    materialising the features. ``.to()`` / ``.float()`` and :meth:`load_state_dict` drop the plans.

    Args:
        model (ChannelMajorSTGCN): The channel-major export of the folded model.

    Shapes:
        - **input:** :math:`(N, M, T, V, C)`
        - **output:** that of ``model``
    """

    pad: int

    def __init__(self, model: ChannelMajorSTGCN) -> None:
        super().__init__()
        self.channel_major = model
        cm_blocks = [cast(_CMBlock, b) for b in model.blocks]
        self.blocks = nn.ModuleList(_JMBlock(b) for b in cm_blocks)
        self.pad = max((p.pad for b in cm_blocks for p in (b.tcn, b.residual, b.gcn_down) if p is not None),
                       default=0)
        self.export_result: Any = None
        self.__dict__["_arena"] = _Arena()
        self.__dict__["_plans"] = {}

    @property
    def arena(self) -> _Arena:
        """The activation buffers every operator shares (kept between calls; see :class:`_Arena`)."""
        return cast(_Arena, self.__dict__["_arena"])

    @property
    def plans(self) -> dict[tuple[int, ...], _Plan]:
        """The recorded kernel sequence per input geometry (see :class:`_Plan`)."""
        return cast("dict[tuple[int, ...], _Plan]", self.__dict__["_plans"])

    def __getstate__(self) -> dict[str, Any]:
        # copies and pickles start without the buffers and recorded kernel calls (raw pointers into this
        # instance's buffers, which cannot be pickled)
        state = dict(super().__getstate__())
        state["_arena"], state["_plans"] = _Arena(), {}
        return state

    def _apply(self, fn: Any, recurse: bool = True) -> JointMajorSTGCN:
        self.plans.clear()  # .to(), .float(), ... may replace the tensors a plan points into
        return cast(JointMajorSTGCN, super()._apply(fn, recurse))

    def load_state_dict(self, *args: Any, **kwargs: Any) -> Any:
        self.plans.clear()  # assign=True replaces the tensors a plan points into
        return super().load_state_dict(*args, **kwargs)

    def _blocks(self) -> list[_JMBlock]:
        return [cast(_JMBlock, b) for b in self.blocks]

    @property
    def layout(self) -> str:
        return "joint_major"

    @property
    def nnz(self) -> int:
        """Stored non-zeros of every sparse operator (the multiply-adds per output column)."""
        return sum(m.nnz for m in self.modules() if isinstance(m, _SparseRows))

    def operators(self) -> list[_JMGraph | _JMTemporal]:
        """Every sparse operator (graph convolution, ``down``, temporal conv, residual conv), in order."""
        return [m for b in self._blocks() for m in (b.gcn, b.gcn_down, b.tcn, b.residual) if m is not None]

    def runs_native(self, x: Tensor) -> bool:
        """Whether ``x`` runs the native path (float32 on CPU, float32 buffers, kernel available)."""
        ref = self._blocks()[0].tcn.rows.values if len(self.blocks) else x
        return (x.dtype == ref.dtype == torch.float32 and x.device.type == ref.device.type == "cpu"
                and native.available())

    def _check(self, x: Tensor) -> None:
        cm = self.channel_major
        if x.dim() != 5 or x.size(3) != cm.num_nodes or x.size(4) != cm.in_channels:
            raise ValueError(f"JointMajorSTGCN: x must be (N, M, T, V={cm.num_nodes}, C={cm.in_channels}), "
                             f"got shape {tuple(x.shape)}")

    def _run(self, x: Tensor) -> Tensor:
        """The last block's output :math:`(C', V, T', B)` (the interior frames of a shared buffer, which the
        next call overwrites) of a native input :math:`(N, M, T, V, C)`."""
        N, M, T, V, C = x.shape
        x = self.channel_major.normalize_input(x)
        P = self.pad
        arena = self.arena
        key = (N, M, T, torch.get_num_threads())
        plan = self.plans.get(key)
        if plan is not None and plan.stamp == arena.stamp():
            h_in, h = plan.input, plan.output
            h_in[:, :, :P].zero_()  # the input's padding, as take_padded leaves it (the buffer held others since)
            h_in[:, :, P + T:].zero_()
            h_in[:, :, P: P + T].copy_(x.permute(4, 3, 2, 0, 1).reshape(C, V, T, N * M))
            plan.kernels.replay()
        else:
            before = arena.stamp()
            h_in = h = arena.take_padded((C, V, T + 2 * P, N * M), P, x, (x,))
            h[:, :, P: P + T].copy_(x.permute(4, 3, 2, 0, 1).reshape(C, V, T, N * M))
            with native.record() as kernels:
                for block in self._blocks():
                    h, T = block(h, T, P, arena)
            if arena.stamp() == before:  # a plan of a call that grew the buffers would hold the old ones
                # plans of older buffers are invalid, and would keep those buffers alive
                stale = [k for k, p in self.plans.items() if p.stamp != before]
                for k in stale:
                    del self.plans[k]
                self.plans[key] = _Plan(h_in, h, kernels, before)
        return h[:, :, P: h.size(2) - P]

    def features(self, x: Tensor) -> Tensor:
        """Backbone features :math:`(N, M, C', T', V)` of :math:`(N, M, T, V, C)`."""
        self._check(x)
        if not self.runs_native(x):
            return self.channel_major.features(x)
        h = self._run(x)
        C2, V, T2, _ = h.shape
        # a copy: the shared buffers are overwritten by the next call
        return h.permute(3, 0, 2, 1).reshape(x.size(0), x.size(1), C2, T2, V).clone(
            memory_format=torch.contiguous_format)

    def forward(self, x: Tensor) -> Tensor:
        head = self.channel_major.head
        if head is not None and x.dim() == 6:
            x = x.reshape(x.size(0) * x.size(1), *x.shape[2:])
        if type(head) is GCNHead and x.dim() == 5 and self.runs_native(x):
            # the head's pooling over (T', V) and the persons, read from the joint-major buffer: the features
            # (N, M, C', T', V) are never materialised (at a batch of 64 their transposing copy alone costs
            # more than a tenth of the forward)
            self._check(x)
            h = self._run(x)
            C2, V, T2, _ = h.shape
            pooled = h.sum(dim=1).sum(dim=1).t().reshape(x.size(0), x.size(1), C2).mean(dim=1) / (V * T2)
            return head.fc_cls(head.dropout(pooled))
        f = self.features(x)
        return f if head is None else head(f)
