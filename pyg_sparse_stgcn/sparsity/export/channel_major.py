r"""The channel-major inference path for whole folded ST-GCN models (:class:`ChannelMajorSTGCN`)."""
from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import Tensor, nn

from . import native
from .csr import CSR_COLUMN_BLOCK, csr_addmm_blocked, derived, is_temporal_conv, to_csr

if TYPE_CHECKING:
    from ...nn.block import STGCNBlock

__all__ = ["ChannelMajorSTGCN"]

#: With at most this many live source (target) joints, the sparse aggregation copies joint columns one by
#: one instead of transposing the whole activation (on the development CPU one strided column copy costs
#: about 1/8 of a transpose; gathering a subset of columns at once costs more than the whole transpose).
_FEW_JOINTS = 4


def _bn_affine(bn: nn.Module, channels: int, ref: Tensor) -> tuple[Tensor, Tensor]:
    """``(scale, shift)`` of an eval-mode batch norm (running statistics), or ``(1, 0)`` for ``Identity``."""
    if isinstance(bn, nn.Identity):
        return ref.new_ones(channels), ref.new_zeros(channels)
    if (not isinstance(bn, nn.modules.batchnorm._BatchNorm) or bn.running_mean is None
            or bn.running_var is None):
        raise ValueError(f"channel-major export: norm layers must be BatchNorm with running statistics or "
                         f"Identity, got {bn}")
    scale = torch.rsqrt(bn.running_var.detach() + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.detach()
    shift = -bn.running_mean.detach() * scale
    if bn.bias is not None:
        shift = shift + bn.bias.detach()
    return scale, shift


def kept_empty(shape: tuple[int, ...], like: Tensor) -> Tensor:
    """An uninitialised ``like``-typed tensor to keep between calls: never an inference tensor (one allocated
    under :func:`torch.inference_mode` could not be written by a later call outside it)."""
    with torch.inference_mode(False):
        return torch.empty(shape, dtype=like.dtype, device=like.device)


def _workspace(owner: nn.Module, key: str, shape: tuple[int, ...], like: Tensor) -> Tensor:
    """An uninitialised tensor kept on ``owner`` and reused while shape, dtype and device stay the same.

    Re-using the activations' memory avoids the page faults of fresh large allocations, which on CPU cost
    about ten times the writes themselves. Each buffer is dead before its owner writes it again (a block's
    output is consumed by the next block, the backbone output is copied), so this is safe for sequential
    inference; a module must not run concurrently in several threads.
    """
    cache = owner.__dict__.setdefault("_workspaces", {})
    buf = cache.get(key)
    if buf is None or buf.shape != shape or buf.dtype != like.dtype or buf.device != like.device:
        buf = kept_empty(shape, like)
        cache[key] = buf
    return buf


def release_workspaces(model: nn.Module) -> nn.Module:
    """Drop the buffers :func:`_workspace` keeps on every submodule of ``model`` (they are allocated again
    on the next call); returns ``model``."""
    for m in model.modules():
        m.__dict__.pop("_workspaces", None)
    return model


def _use_native(use_csr: bool, x: Tensor) -> bool:
    """Whether a sparse product on ``x`` runs the native kernel (float32 on CPU, kernel built)."""
    return use_csr and x.dtype == torch.float32 and x.device.type == "cpu" and native.available()


def _native_matmul(owner: nn.Module, key: str, matrix: Tensor, x: Tensor, y: Tensor) -> Tensor:
    """``y = matrix @ x`` through the native kernel (``matrix`` 2-D and dense; its non-zeros are derived
    once; ``x`` :math:`(C, n)` contiguous)."""
    rowptr, _, cols, vals = derived(owner, f"rows_{key}", (matrix,),
                                    lambda: native.sparse_rows(matrix.unsqueeze(0)))
    n = x.size(1)
    off = derived(owner, f"off_{key}_{n}", (cols,), lambda: native.int32_offsets(cols * n))
    zero = derived(owner, f"zero_{key}", (matrix,), lambda: matrix.new_zeros(matrix.size(0)))
    return native.spmm_shifted(y, x, rowptr, off, vals, zero)


class _WeightStats(nn.Module):
    """``sparsity`` and ``nnz`` of the buffer ``weight`` (shared by the channel-major products)."""

    weight: Tensor

    @property
    def sparsity(self) -> float:
        return float((self.weight == 0).float().mean()) if self.weight.numel() else 0.0

    @property
    def nnz(self) -> int:
        return int((self.weight != 0).sum())


class _CMProduct(_WeightStats):
    r"""``Y = Σ_j W_j X_j`` (+ per-row bias) on channel-major activations :math:`(C, T, B, V)`: a 1×1
    (``k = 1``) or temporal :math:`(k, 1)` convolution whose taps are column shifts of :math:`(C, T B V)`.

    The weights (BN already folded in) are the buffer ``weight`` :math:`(k, C_{out}, C_{in})`; ``use_csr``
    picks the kernel: CSR copies of the taps (derived from ``weight``) over :data:`CSR_COLUMN_BLOCK` column
    blocks, or dense products in one GEMM per tap.

    Args:
        name (str): Name of the source layer (for the export records).
        weight (torch.Tensor): :math:`(C_{out}, C_{in}, k)`.
        bias (torch.Tensor): :math:`(C_{out},)`.
        stride (int, optional): Temporal stride. (default: :obj:`1`)
        dilation (int, optional): Temporal dilation. (default: :obj:`1`)
        pad (int, optional): Zero frames on each side. (default: :obj:`0`)
    """

    weight: Tensor
    bias: Tensor

    def __init__(self, name: str, weight: Tensor, bias: Tensor, stride: int = 1, dilation: int = 1,
                 pad: int = 0) -> None:
        super().__init__()
        self.name = name
        self.out_channels, self.in_channels, self.k = weight.shape
        self.stride, self.dilation, self.pad = stride, dilation, pad
        self.register_buffer("weight", weight.detach().permute(2, 0, 1).contiguous())  # (k, C_out, C_in)
        self.register_buffer("bias", bias.detach().clone())
        self.use_csr = False

    @property
    def kind(self) -> str:
        return "channel_major_1x1" if self.k == 1 else "channel_major_temporal"

    def weights_csr(self) -> list[Tensor]:
        """CSR copies of the taps (rebuilt when ``weight`` changes)."""
        return derived(self, "csr", (self.weight,), lambda: [to_csr(w) for w in self.weight])

    def forward(self, x: Tensor, residual: Tensor | None = None, relu: bool = False) -> Tensor:
        """``x`` :math:`(C_{in}, T, B, V)`; ``residual`` (output-shaped) is added and ReLU applied block by
        block while the output block is in cache."""
        if _use_native(self.use_csr, x):
            return self._forward_native(x, residual, relu)
        C, T, B, V = x.shape
        bv = B * V
        t_out = (T + 2 * self.pad - self.dilation * (self.k - 1) - 1) // self.stride + 1
        n = t_out * bv
        y = _workspace(self, "out", (self.out_channels, n), x)  # (C_out, T' B V)
        weights = self.weights_csr() if self.use_csr else list(self.weight)
        step = CSR_COLUMN_BLOCK if self.use_csr and not x.is_cuda else n
        taps = []  # (weight, input (C_in, *), first and last output column, input column offset)
        # Input frame u = s t + d j - p of tap j lies in phase q = u mod s (frames q, q + s, ...; the input
        # itself when s = 1, else one copy per phase) at position t + off_j: a column shift of the phase,
        # valid for the output frames that read inside [0, T) (zero padding = skipped columns).
        phases = []
        for q in range(self.stride):
            if self.stride == 1:
                phases.append(x.reshape(C, T * bv))
            else:
                n_q = (T - q + self.stride - 1) // self.stride
                buf = _workspace(self, f"phase{q}", (C, n_q, B, V), x)
                phases.append(buf.copy_(x[:, q:: self.stride]).view(C, n_q * bv))
        for j in range(self.k):
            u0 = j * self.dilation - self.pad  # input frame of output frame 0
            q = u0 % self.stride
            off = (u0 - q) // self.stride
            n_q = phases[q].size(1) // bv
            lo, hi = max(0, -off), min(t_out, n_q - off)
            if hi > lo:
                taps.append((weights[j], phases[q], lo * bv, hi * bv, off * bv))
        bias = self.bias.view(-1, 1)
        res2 = None if residual is None else residual.reshape(self.out_channels, n)
        # block by block, so that the output block (bias, then every tap added) stays in cache
        for s0 in range(0, n, step):
            s1 = min(n, s0 + step)
            ys = y[:, s0:s1]
            ys.copy_(bias.expand(-1, s1 - s0))
            for w, src, lo, hi, off in taps:
                a, b = max(s0, lo), min(s1, hi)
                if b > a:
                    y[:, a:b].addmm_(w, src[:, a + off: b + off])
            if res2 is not None:
                ys.add_(res2[:, s0:s1])
            if relu:
                ys.relu_()
        return y.view(self.out_channels, t_out, B, V)

    def _forward_native(self, x: Tensor, residual: Tensor | None, relu: bool) -> Tensor:
        r"""The native kernel: the input zero-padded in time (and split into its ``stride`` phases), so that
        tap :math:`j` of input channel :math:`c` is one shifted row of one buffer and all :math:`k` taps are
        one sparse matrix applied in one pass (bias, residual and ReLU fused)."""
        C, T, B, V = x.shape
        bv, s, p = B * V, self.stride, self.pad
        t_out = (T + 2 * p - self.dilation * (self.k - 1) - 1) // s + 1
        n_q = -(-(T + 2 * p) // s)  # frames per phase
        src = x.contiguous()
        if p or s > 1:
            padded = _workspace(self, "padded", (C, n_q * s, B, V), x)
            padded[:, :p].zero_()
            padded[:, p + T:].zero_()
            padded[:, p: p + T].copy_(x)
            src = padded
            if s > 1:
                src = _workspace(self, "phases", (s, C, n_q, B, V), x)
                src.copy_(padded.view(C, n_q, s, B, V).permute(2, 0, 1, 3, 4))
        rowptr, taps, cols, vals = derived(self, "rows", (self.weight,), lambda: native.sparse_rows(self.weight))

        def offsets() -> Tensor:  # phase (j d) mod s, frame shift (j d) div s, row c of that phase
            shift = torch.arange(self.k, device=x.device) * self.dilation
            base = (shift % s) * (C * n_q * bv) + torch.div(shift, s, rounding_mode="floor") * bv
            return native.int32_offsets(base[taps] + cols * (n_q * bv))

        off = derived(self, f"off{C},{n_q},{bv}", (taps, cols), offsets)
        y = _workspace(self, "out", (self.out_channels, t_out * bv), x)
        res2 = None if residual is None else residual.reshape(self.out_channels, t_out * bv)
        native.spmm_shifted(y, src, rowptr, off, vals, self.bias, res2, relu)
        return y.view(self.out_channels, t_out, B, V)

    def extra_repr(self) -> str:
        return (f"{self.name}: {self.in_channels}, {self.out_channels}, k={self.k}, stride={self.stride}, "
                f"dilation={self.dilation}, sparsity={self.sparsity:.3f}, csr={self.use_csr}")


class _CMGraphConv(_WeightStats):
    r"""The 1×1 convolution and the aggregation over joints of one folded graph convolution, on channel-major
    activations :math:`(C_{in}, T, B, V)`:

    .. math::
        \mathbf{Y}_{:, t, b, w} = \sum_{(l, v, w)\,:\, \tilde{A}_{l, v, w} \neq 0} \tilde{A}_{l, v, w}\,
        \mathbf{W}_l\, \mathbf{X}_{:, t, b, v}

    over the live subsets :math:`l` (those with a non-zero entry). Buffers: ``weight``
    :math:`(L, C_{out}, C_{in})` (BN scale folded in), ``adjacency`` :math:`(L, V, V)` (``[l, v, w]``:
    ``v`` sends to ``w``) and ``entries`` :math:`(\text{nnz}, 3)`, the indices :math:`(l, v, w)` of its
    non-zeros (by target). ``aggregation`` picks the kernel:

    * ``'dense'``: one GEMM for the 1×1 convolution of every live subset, then one dense
      :math:`(C T B, V) \times (V, V)` product per live subset (aggregating first when :math:`C_{in} <
      C_{out}`, which is the same sum with fewer rows to aggregate);
    * ``'sparse'``: joint-major: the input joints that send anything are transposed to
      :math:`(V_s, C_{in} T B)`, every kept entry is one product
      :math:`\mathbf{Y}_w \mathrel{+}= \tilde{A}_{l, v, w} \mathbf{W}_l \mathbf{X}_v` of
      :math:`(C_{out}, C_{in}) \times (C_{in}, T B)`, and the targets are transposed back. Its work is
      proportional to the kept entries: a removed entry costs nothing.

    ``use_csr`` makes :math:`\mathbf{W}_l` CSR (copies derived from ``weight``) in both kernels.
    """

    kind = "channel_major_graph"
    weight: Tensor
    adjacency: Tensor
    entries: Tensor

    def __init__(self, name: str, weight: Tensor, adjacency: Tensor) -> None:
        super().__init__()
        self.name = name
        L, self.out_channels, self.in_channels = weight.shape
        self.num_nodes = int(adjacency.size(-1))
        self.k = 1
        self.register_buffer("weight", weight.detach().contiguous())
        self.register_buffer("adjacency", adjacency.detach().clone())
        nz = (adjacency != 0).nonzero()  # (nnz, 3): l, v, w
        order = torch.argsort(nz[:, 2] * (L * self.num_nodes) + nz[:, 0] * self.num_nodes + nz[:, 1])
        self.register_buffer("entries", nz[order].contiguous())
        self.aggregation = "dense"
        self.use_csr = False

    @property
    def num_subsets(self) -> int:
        """Live subsets :math:`L`."""
        return int(self.weight.size(0))

    @property
    def num_entries(self) -> int:
        """Non-zero entries of the aggregation operator."""
        return int(self.entries.size(0))

    @property
    def num_edges(self) -> int:
        """Distinct edges ``(v, w)`` with a non-zero entry."""
        return len({(v, w) for _, v, w in self._entry_list()})

    def _entry_list(self) -> list[tuple[int, int, int]]:
        return derived(self, "entries", (self.entries,),
                       lambda: [(int(l), int(v), int(w)) for l, v, w in self.entries.tolist()])

    def _plan(self) -> tuple[list[int], list[int], list[list[tuple[int, int, float]]]]:
        """``(sources, targets, incoming)``: live source and target joints, and per target its entries as
        ``(l, source slot, value)`` (python numbers, rebuilt when ``entries`` or ``adjacency`` change)."""
        def build() -> tuple[list[int], list[int], list[list[tuple[int, int, float]]]]:
            ents = self._entry_list()
            sources = sorted({v for _, v, _ in ents})
            targets = sorted({w for _, _, w in ents})
            slot = {v: i for i, v in enumerate(sources)}
            vals = self.adjacency[tuple(self.entries.t())].tolist() if ents else []
            incoming: list[list[tuple[int, int, float]]] = [[] for _ in targets]
            tslot = {w: i for i, w in enumerate(targets)}
            for (l, v, w), a in zip(ents, vals):
                incoming[tslot[w]].append((l, slot[v], float(a)))
            return sources, targets, incoming
        return derived(self, "plan", (self.entries, self.adjacency), build)

    def _matrix(self, aggregate_first: bool) -> Tensor:
        """The weight of the dense kernel: :math:`(L C_{out}, C_{in})` or :math:`(C_{out}, L C_{in})`."""
        L, C_out, C_in = self.weight.shape
        if not aggregate_first:
            w = self.weight.view(L * C_out, C_in)
            return derived(self, "csr_pre", (self.weight,), lambda: to_csr(w)) if self.use_csr else w
        return derived(self, f"post{self.use_csr}", (self.weight,),
                       lambda: (to_csr if self.use_csr else Tensor.contiguous)(
                           self.weight.permute(1, 0, 2).reshape(C_out, L * C_in)))

    def _subset_weights(self) -> list[Tensor]:
        return derived(self, "csr_l", (self.weight,), lambda: [to_csr(w) for w in self.weight]) \
            if self.use_csr else list(self.weight)

    def _mm(self, y: Tensor, w: Tensor, x: Tensor, aggregate_first: bool = False) -> None:
        """``y = w @ x`` (``w`` dense or CSR; CSR over cache-sized column blocks, or the native kernel)."""
        if _use_native(self.use_csr, x):
            L, C_out, C_in = self.weight.shape
            dense = derived(self, f"dense{aggregate_first}", (self.weight,), lambda: (
                self.weight.permute(1, 0, 2).reshape(C_out, L * C_in) if aggregate_first
                else self.weight.reshape(L * C_out, C_in)))
            _native_matmul(self, f"pre{aggregate_first}", dense, x, y)
        elif self.use_csr:
            y.zero_()
            csr_addmm_blocked(y, [w], [x])
        else:
            torch.mm(w, x, out=y)

    def forward(self, x: Tensor) -> Tensor:
        """``x`` :math:`(C_{in}, T, B, V)` → :math:`(C_{out}, T, B, V)` (a reused workspace)."""
        if self.aggregation == "sparse":
            return self.forward_sparse(x)
        return self.forward_dense(x)

    def forward_dense(self, x: Tensor) -> Tensor:
        """The dense kernel (see the class description)."""
        C, T, B, V = x.shape
        L, C_out = self.num_subsets, self.out_channels
        out = _workspace(self, "out", (C_out * T * B, V), x)
        if L == 0:
            return out.zero_().view(C_out, T, B, V)
        A = self.adjacency
        if C < C_out:  # aggregate the C_in input channels per subset, then one product over L C_in rows
            x2 = x.reshape(1, C * T * B, V).expand(L, -1, V)
            agg = torch.bmm(x2, A, out=_workspace(self, "agg", (L, C * T * B, V), x))
            y = out.view(C_out, T * B * V)
            self._mm(y, self._matrix(True), agg.view(L * C, T * B * V), aggregate_first=True)
            return out.view(C_out, T, B, V)
        h = _workspace(self, "h", (L * C_out, T, B, V), x)
        self._mm(h.view(L * C_out, T * B * V), self._matrix(False), x.reshape(C, T * B * V))
        return self.aggregate_dense(h)

    def aggregate_dense(self, h: Tensor) -> Tensor:
        r"""The dense aggregation alone: :math:`(L C_{out}, T, B, V)` (rows :math:`l C_{out} + c`, the 1×1
        convolution's output) → :math:`(C_{out}, T, B, V)`, one :math:`(C T B, V) \times (V, V)` product per
        live subset."""
        LC, T, B, V = h.shape
        L, C_out = self.num_subsets, self.out_channels
        out = _workspace(self, "out", (C_out * T * B, V), h)
        if L == 0:
            return out.zero_().view(C_out, T, B, V)
        hk, A = h.view(L, C_out * T * B, V), self.adjacency
        torch.mm(hk[0], A[0], out=out)
        for k in range(1, L):
            out.addmm_(hk[k], A[k])
        return out.view(C_out, T, B, V)

    def forward_sparse(self, x: Tensor) -> Tensor:
        """The sparse kernel (see the class description)."""
        C, T, B, V = x.shape
        C_out, n = self.out_channels, T * B
        sources, targets, incoming = self._plan()
        out = _workspace(self, "out", (C_out * n, V), x)
        if not targets:
            return out.zero_().view(C_out, T, B, V)
        x2 = x.reshape(C * n, V)
        few_sources = len(sources) <= _FEW_JOINTS
        if few_sources:  # joint-major copies of the few joints that send anything
            xj = _workspace(self, "xj", (len(sources), C * n), x)
            for i, v in enumerate(sources):
                xj[i].copy_(x2[:, v])
        else:  # one transpose of every joint (cheaper than gathering a subset of columns)
            xj = _workspace(self, "xj", (V, C * n), x).copy_(x2.t())
        few_targets = len(targets) <= _FEW_JOINTS
        yj = _workspace(self, "yj", (len(targets) if few_targets else V, C_out * n), x)
        weights = self._subset_weights()
        # dense weights: whole rows (measured: column blocks of 128-1024 were slower on the development CPU)
        step = CSR_COLUMN_BLOCK if self.use_csr and not x.is_cuda else n
        xs = [xj[j if few_sources else v].view(C, n) for j, v in enumerate(sources)]
        ys = [yj[i if few_targets else w].view(C_out, n) for i, w in enumerate(targets)]
        for s0 in range(0, n, step):
            s1 = min(n, s0 + step)
            for y, ins in zip(ys, incoming):
                yb = y[:, s0:s1]
                for e, (l, j, a) in enumerate(ins):
                    yb.addmm_(weights[l], xs[j][:, s0:s1], beta=0.0 if e == 0 else 1.0, alpha=a)
        if few_targets:
            out.zero_()
            for i, w in enumerate(targets):
                out[:, w].copy_(yj[i])
        else:
            for w in sorted(set(range(V)) - set(targets)):
                yj[w].zero_()
            out.copy_(yj.t())
        return out.view(C_out, T, B, V)

    def extra_repr(self) -> str:
        return (f"{self.name}: {self.in_channels}, {self.out_channels}, subsets={self.num_subsets}, "
                f"entries={self.num_entries}, aggregation={self.aggregation!r}, csr={self.use_csr}")


def _unit_tcn_product(name: str, tcn: nn.Module, ref: Tensor) -> _CMProduct:
    """A folded :class:`~pyg_sparse_stgcn.nn.TemporalConv` (conv + BN) as a :class:`_CMProduct`."""
    from ...nn.temporal import TemporalConv

    if not isinstance(tcn, TemporalConv):
        raise ValueError(f"channel-major export supports tcn_type='unit_tcn' (TemporalConv) only; {name} is "
                         f"{type(tcn).__name__} (e.g. 'mstcn' is unsupported): use layout='channels_last'")
    conv = tcn.conv
    if isinstance(conv, nn.Linear):
        w = conv.weight.detach().unsqueeze(-1)
        stride, dilation, pad = int(getattr(conv, "stride", 1)), 1, 0
    else:
        if not is_temporal_conv(conv):
            raise ValueError(f"channel-major export: {name}.conv must be a (k, 1) Conv2d, got {conv}")
        w = conv.weight.detach()[..., 0]
        # is_temporal_conv excludes string paddings ('same' / 'valid'): padding[0] is an int
        stride, dilation, pad = conv.stride[0], conv.dilation[0], int(conv.padding[0])
    bias = conv.bias.detach() if conv.bias is not None else w.new_zeros(w.size(0))
    scale, shift = _bn_affine(tcn.bn, w.size(0), w)
    return _CMProduct(name, w * scale.view(-1, 1, 1), bias * scale + shift, stride, dilation, pad)


class _CMBlock(nn.Module):
    r"""One folded :class:`~pyg_sparse_stgcn.nn.STGCNBlock` (``unit_gcn`` + ``unit_tcn``) on channel-major
    activations :math:`(C, T, B, V)`."""

    gcn_const: Tensor

    def __init__(self, name: str, block: nn.Module) -> None:
        super().__init__()
        from ...nn.conv.stgcn_conv import STGCNConv

        blk = cast("STGCNBlock", block)  # a block of an STGCN backbone; its units are checked below
        gcn = blk.gcn
        if not isinstance(gcn, STGCNConv):
            raise ValueError(f"channel-major export: {name}.gcn must be an STGCNConv, got {type(gcn).__name__}")
        if not isinstance(gcn.act, (nn.ReLU, nn.Identity)):
            raise ValueError(f"channel-major export: {name}.gcn.act must be ReLU or Identity, got {gcn.act}")
        K, V = gcn.num_subsets, gcn.num_nodes
        self.gcn_act = isinstance(gcn.act, nn.ReLU)
        C_in, C_out = gcn.in_channels, gcn.out_channels
        A = gcn.adjacency().detach()  # (K, V, V), [k, v, w]: v -> w
        live = [k for k in range(K) if bool((A[k] != 0).any())]
        W, conv_bias = gcn.conv.weight.detach(), gcn.conv.bias
        b = conv_bias.detach() if conv_bias is not None else W.new_zeros(W.size(0))
        scale, shift = _bn_affine(gcn.bn, C_out, W)
        if gcn.conv_pos == "pre":  # Linear(C_in, K C_out), rows k C_out + c
            Wk = W.view(K, C_out, C_in)
            # the bias goes through the aggregation: Σ_k b_k[c] Σ_v A_k[v, w]
            const = (b.view(K, C_out, 1) * A.sum(1).unsqueeze(1)).sum(0)
        else:  # Linear(K C_in, C_out), columns k C_in + c (PYSKL's channel order)
            Wk = W.view(C_out, K, C_in).permute(1, 0, 2)
            const = b.view(-1, 1).expand(C_out, V)
        self.gcn = _CMGraphConv(f"{name}.gcn", Wk[live] * scale.view(1, -1, 1), A[live])
        self.register_buffer("gcn_const", (scale.view(-1, 1) * const + shift.view(-1, 1)).contiguous())
        self.gcn_res = "none"
        self.gcn_down: _CMProduct | None = None
        if gcn.with_res:
            if gcn.down is None:
                self.gcn_res = "identity"
            else:
                lin, bn = gcn.down[0], gcn.down[1]
                if not isinstance(lin, nn.Linear):
                    raise ValueError(f"channel-major export: {name}.gcn.down.0 must be a Linear, got {lin}")
                ds, dsh = _bn_affine(bn, lin.out_features, lin.weight)
                lb = lin.bias.detach() if lin.bias is not None else lin.weight.new_zeros(lin.out_features)
                self.gcn_down = _CMProduct(f"{name}.gcn.down.0", (lin.weight.detach() * ds.view(-1, 1))
                                           .unsqueeze(-1), lb * ds + dsh)
                self.gcn_res = "conv"
        self.tcn = _unit_tcn_product(f"{name}.tcn", blk.tcn, W)
        self.res_mode = blk.residual_mode
        self.residual: _CMProduct | None = None
        if self.res_mode == "conv":
            if blk.residual is None:
                raise ValueError(f"channel-major export: {name}.residual_mode is 'conv' but {name}.residual "
                                 f"is None")
            self.residual = _unit_tcn_product(f"{name}.residual", blk.residual, W)

    def products(self) -> list[_CMProduct | _CMGraphConv]:
        return [m for m in (self.gcn, self.gcn_down, self.tcn, self.residual) if m is not None]

    def forward(self, x: Tensor) -> Tensor:
        C, T, B, V = x.shape
        C_out = self.gcn_const.size(0)
        g = self.gcn(x).view(C_out, T * B, V).add_(self.gcn_const.unsqueeze(1))
        if self.gcn_res == "identity":
            g = g.add_(x.view(C_out, T * B, V))
        elif self.gcn_res == "conv":
            if self.gcn_down is None:
                raise RuntimeError("_CMBlock: gcn_res is 'conv' but gcn_down is None")
            g = g.add_(self.gcn_down(x).view(C_out, T * B, V))
        if self.gcn_act:
            g = g.relu_()
        res: Tensor | None = None
        if self.res_mode == "identity":
            res = x
        elif self.res_mode == "conv":
            if self.residual is None:
                raise RuntimeError("_CMBlock: res_mode is 'conv' but residual is None")
            res = self.residual(x)
        return self.tcn(g.view(C_out, T, B, V), res, relu=True)


class ExportViews:
    """Read-only views of ``export_result`` (the attributes earlier versions set on the exported module)."""

    export_result: Any

    @property
    def edges_removed(self) -> int:
        return self.export_result.edges_removed if self.export_result is not None else 0

    @property
    def layout_choice(self) -> dict[str, Any]:
        return asdict(self.export_result.layout_choice) if self.export_result is not None else {}

    @property
    def sparse_kernel_choices(self) -> list[dict[str, Any]]:
        return self.export_result.sparse_kernel_choices if self.export_result is not None else []


class ChannelMajorSTGCN(ExportViews, nn.Module):
    r"""Inference ST-GCN (:class:`~pyg_sparse_stgcn.nn.STGCN`, optionally inside a
    :class:`~pyg_sparse_stgcn.nn.SkeletonClassifier`) that runs the whole folded backbone in channel-major
    layout :math:`(C, T, B, V)`, :math:`B = N M`: one transpose after ``data_bn``, one before the head.

    Every block computes, with the batch norms folded into the weights (running statistics),

    .. math::
        \mathbf{G} = \sigma\Big(\sum_{(k, v, w)} \tilde{A}_{k, v, w}\, \mathbf{W}_k \mathbf{X}_{v \to w}
        + \mathbf{c} + \mathrm{res}_{gcn}(\mathbf{X})\Big), \qquad
        \mathbf{Y} = \mathrm{ReLU}\Big(\mathbf{b} + \sum_{j=0}^{k-1} \mathbf{W}_j\,
        \mathbf{G}_{[s t + d j - p]} + \mathrm{res}(\mathbf{X})\Big)

    where every product with a weight is a matrix product over the contiguous :math:`(C, T B V)` view (the
    taps of the temporal convolution are column shifts of it, no copies at stride 1), CSR over cache-sized
    column blocks or dense, chosen per product (``use_csr`` of each entry of :meth:`products`), and the
    graph convolution aggregates over joints with one dense :math:`(V \times V)` product per live subset or
    sparsely, one product per kept entry (``aggregation`` of each entry of :meth:`graph_convs`).
    Subsets without a kept entry are dropped. Every tensor is a registered buffer, so ``.to()``,
    ``.double()``, ``state_dict`` and ``load_state_dict`` (into an export of the same structure) work.

    :func:`~pyg_sparse_stgcn.sparsity.export.to_sparse_kernels` builds it and sets ``export_result``
    (:class:`~pyg_sparse_stgcn.sparsity.export.ExportResult`); ``layout``, ``layout_choice``,
    ``edges_removed`` and ``sparse_kernel_choices`` read from it.

    Args:
        model (torch.nn.Module): A **folded** (plain) ``SkeletonClassifier`` with an ``STGCN`` backbone, or an
            ``STGCN``; its blocks must use ``unit_gcn`` and ``unit_tcn``.

    Shapes:
        - **input:** :math:`(N, M, T, V, C)`
        - **output:** that of ``model`` (logits, or backbone features :math:`(N, M, C', T', V)`)
    """

    head: nn.Module | None
    bn_scale: Tensor | None
    bn_shift: Tensor | None

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        from ...nn import STGCN, SkeletonClassifier

        backbone, self.head = model, None
        prefix = ""
        if isinstance(model, SkeletonClassifier):
            backbone, self.head, prefix = model.backbone, model.head, "backbone."
        if not isinstance(backbone, STGCN):
            raise ValueError(f"channel-major export needs an STGCN or a SkeletonClassifier with an STGCN "
                             f"backbone, got {type(backbone).__name__}")
        self.num_nodes, self.in_channels = backbone.num_nodes, backbone.in_channels
        self.num_person, self.data_bn_type = backbone.num_person, backbone.data_bn_type
        ref = next(backbone.parameters())
        if self.data_bn_type is None:
            self.register_buffer("bn_scale", None)
            self.register_buffer("bn_shift", None)
        else:
            data_bn = backbone.data_bn
            if not isinstance(data_bn, nn.modules.batchnorm._BatchNorm):
                raise ValueError(f"channel-major export: data_bn must be a BatchNorm with running statistics "
                                 f"(data_bn_type={self.data_bn_type!r}), got {data_bn}")
            scale, shift = _bn_affine(data_bn, data_bn.num_features, ref)
            self.register_buffer("bn_scale", scale)
            self.register_buffer("bn_shift", shift)
        self.blocks = nn.ModuleList(_CMBlock(f"{prefix}gcn.{i}", b) for i, b in enumerate(backbone.gcn))
        self.out_channels = backbone.out_channels
        self.export_result: Any = None

    def _blocks(self) -> list[_CMBlock]:
        return [cast(_CMBlock, b) for b in self.blocks]  # nn.ModuleList is untyped; __init__ fills it

    def products(self) -> list[_CMProduct | _CMGraphConv]:
        """Every weight product (graph convolution, ``down``, temporal conv, residual conv), in order."""
        return [p for b in self._blocks() for p in b.products()]

    def graph_convs(self) -> list[_CMGraphConv]:
        """The graph convolution (1×1 conv + aggregation) of every block, in order."""
        return [b.gcn for b in self._blocks()]

    @property
    def layout(self) -> str:
        return "channel_major"

    def normalize_input(self, x: Tensor) -> Tensor:
        """``data_bn`` (folded) applied to :math:`(N, M, T, V, C)`."""
        M, V, C = x.size(1), x.size(3), x.size(4)
        if self.data_bn_type is not None:
            scale, shift = self.bn_scale, self.bn_shift
            if scale is None or shift is None:
                raise RuntimeError(f"ChannelMajorSTGCN: data_bn_type={self.data_bn_type!r} but the bn_scale / "
                                   f"bn_shift buffers are None")
            if self.data_bn_type == "VC":
                x = x * scale.view(V, C) + shift.view(V, C)
            elif self.data_bn_type == "MVC":
                if M != self.num_person:
                    raise ValueError(f"ChannelMajorSTGCN: data_bn_type='MVC' needs M=num_person="
                                     f"{self.num_person} persons, got M={M}")
                x = x * scale.view(M, 1, V, C) + shift.view(M, 1, V, C)
        return x

    def features(self, x: Tensor) -> Tensor:
        """Backbone features :math:`(N, M, C', T', V)` of :math:`(N, M, T, V, C)`."""
        if x.dim() != 5 or x.size(3) != self.num_nodes or x.size(4) != self.in_channels:
            raise ValueError(f"ChannelMajorSTGCN: x must be (N, M, T, V={self.num_nodes}, "
                             f"C={self.in_channels}), got shape {tuple(x.shape)}")
        N, M, T, V, C = x.shape
        x = self.normalize_input(x)
        h = x.permute(4, 2, 0, 1, 3).reshape(C, T, N * M, V).contiguous()  # (C, T, B, V)
        for block in self.blocks:
            h = block(h)
        C2, T2 = h.shape[:2]
        # a copy even where the permutation is a no-op (N = M = 1): the workspaces are reused by the next call
        return h.view(C2, T2, N, M, V).permute(2, 3, 0, 1, 4).clone(memory_format=torch.contiguous_format)

    def forward(self, x: Tensor) -> Tensor:
        if self.head is not None and x.dim() == 6:
            x = x.reshape(x.size(0) * x.size(1), *x.shape[2:])
        f = self.features(x)
        return f if self.head is None else self.head(f)
