r"""Export masked models: fold the masks into plain tensors, or switch to sparse kernels.

* :func:`fold` — a plain copy of the model: every mask multiplied into its tensor (:math:`W \odot M`, and the
  edge gate becomes the 0/1 edge mask), no scores, no parametrizations, no generator wrappers. Outputs are
  those of the masked model in eval mode. Masks alone give no speed-up.
* :func:`to_sparse_kernels` — :func:`fold`, then pruned edges are removed from every graph convolution's
  candidate set, and each large enough :class:`~torch.nn.Linear` (1×1 conv) and temporal
  :class:`~torch.nn.Conv2d` with a kernel :math:`(k, 1)` whose weight is sparse enough is replaced by a CSR
  kernel (:class:`CSRLinear`, :class:`CSRTemporalConv`) **only where that was measured faster** on the
  current device with the layer's real input shape (from ``example_input``). The choices are kept in
  ``model.sparse_kernel_choices``. Inference only (no gradients through CSR weights).
"""
from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .generator import SparseGenerator
from .masks import remove_masks
from .targets import EDGE_ATTR, is_edge_module, targets

__all__ = ["fold", "to_sparse_kernels", "CSRLinear", "CSRTemporalConv", "ChannelMajorSTGCN", "remove_pruned_edges"]


def _to_csr(w: Tensor) -> Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Sparse CSR tensor support is in beta state"
        return w.detach().to_sparse_csr()


def _unwrap_generators(model: nn.Module) -> nn.Module:
    if isinstance(model, SparseGenerator):
        return _unwrap_generators(model.model)
    for name, child in list(model.named_children()):
        new = _unwrap_generators(child)
        if new is not child:
            setattr(model, name, new)
    return model


def fold(model: nn.Module) -> nn.Module:
    r"""A plain copy of ``model`` with every mask folded in (the input model is not changed).

    Generators first recompute their thresholds as in eval mode (the target sparsity), so a model folded
    during the dense warm-up is still folded at its target sparsity.

    Args:
        model (torch.nn.Module): A masked model, a :class:`~.generator.SparseGenerator` or a model containing
            generators (e.g. :class:`~.ensemble.MultiSparsityEnsemble`).

    Returns:
        torch.nn.Module: The plain model (generator wrappers replaced by the models they wrap).
    """
    m = copy.deepcopy(model)
    for g in [g for g in m.modules() if isinstance(g, SparseGenerator)]:
        was = g.training
        g.train(False)
        g.update_thresholds()
        g.train(was)
    remove_masks(m, fold=True)
    return _unwrap_generators(m)


def remove_pruned_edges(model: nn.Module) -> int:
    """Drop the candidate edges whose gate is zero in every subset from each graph conv (in place).

    Works on folded models whose graph convs keep ``edge_index``, ``_flat_index`` and a plain ``edge_gate``
    buffer (:class:`~pyg_sparse_stgcn.nn.STGCNConv`). Returns the number of edges removed.
    """
    removed = 0
    for m in model.modules():
        if not is_edge_module(m) or not isinstance(getattr(m, EDGE_ATTR, None), Tensor):
            continue
        if not all(isinstance(getattr(m, a, None), Tensor) for a in ("edge_index", "_flat_index")):
            continue
        gate = m.edge_gate
        keep = (gate != 0).any(0)
        if bool(keep.all()):
            continue
        removed += int((~keep).sum())
        m.edge_index = m.edge_index[:, keep]
        m._flat_index = m._flat_index[keep]
        m.edge_gate = gate[:, keep].contiguous()
    return removed


#: Columns per block of the sparse products: one block of every tap's input and of the output stays in the
#: CPU's L2 cache while all non-zeros are applied to it (measured on the 2-core AVX-512 development CPU:
#: a 95 %-sparse 256-channel temporal conv takes 12.8 ms blocked by 1024 vs 22 ms unblocked vs 31.6 ms dense).
CSR_COLUMN_BLOCK = 1024


def _csr_addmm_blocked(y: Tensor, weights: list[Tensor], inputs: list[Tensor],
                       block: int = CSR_COLUMN_BLOCK) -> None:
    r"""``y += Σ_j weights[j] @ inputs[j]`` with CSR ``weights`` (``(C_out, C_in)``) and dense ``inputs``
    (``(C_in, N)``), computed over column blocks of ``N`` (on CUDA in one product per weight)."""
    n = y.size(1)
    step = n if y.is_cuda else block
    for s0 in range(0, n, step):
        ys = y[:, s0: s0 + step]
        for w, x in zip(weights, inputs):
            ys.addmm_(w, x[:, s0: s0 + step])


class CSRLinear(nn.Module):
    r"""Inference :class:`~torch.nn.Linear` (optionally strided over frames) with a CSR weight.

    Computes :math:`\mathbf{y}^\top = \mathbf{W}_\text{CSR}\, \mathbf{x}^\top + \mathbf{b}`.

    Args:
        linear (torch.nn.Linear): The dense layer (a ``StridedLinear``'s ``stride`` is kept).

    Shapes:
        - **input:** :math:`(*, C_{in})` (with a stride: :math:`(B, T, *, C_{in})`)
        - **output:** :math:`(*, C_{out})`
    """

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.stride = int(getattr(linear, "stride", 1))
        self.register_buffer("weight_csr", _to_csr(linear.weight))
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().clone())

    def forward(self, x: Tensor) -> Tensor:
        if self.stride > 1:
            x = x[:, :: self.stride]
        lead = x.shape[:-1]
        xt = x.reshape(-1, self.in_features).t().contiguous()  # (C_in, N)
        y = xt.new_zeros(self.out_features, xt.size(1))
        _csr_addmm_blocked(y, [self.weight_csr], [xt])
        y = y.t()
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*lead, self.out_features)

    def extra_repr(self) -> str:
        return (f"{self.in_features}, {self.out_features}, nnz={self.weight_csr.values().numel()}, "
                f"stride={self.stride}")


class CSRTemporalConv(nn.Module):
    r"""Inference replacement of a temporal :class:`~torch.nn.Conv2d` with kernel :math:`(k, 1)` (groups 1).

    The input is laid out time-major, :math:`(C_{in}, T + 2p, B, V)`, so that tap :math:`j` is a 2-D view
    :math:`(C_{in}, T' B V)` of it (a copy only when the stride exceeds 1), and the output accumulates
    :math:`\mathbf{Y} \mathrel{+}= \mathbf{W}_j^\text{CSR} \mathbf{X}_j` over the :math:`k` taps (column block by
    column block, :data:`CSR_COLUMN_BLOCK`, so the working set stays in cache), each tap's
    weight :math:`(C_{out}, C_{in})` stored in CSR. Same input/output convention as ``Conv2d``.

    Args:
        conv (torch.nn.Conv2d): The dense convolution.

    Shapes:
        - **input:** :math:`(B, C_{in}, T, V)`
        - **output:** :math:`(B, C_{out}, T', V)`
    """

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        if not _is_temporal_conv(conv):
            raise ValueError(f"CSRTemporalConv needs a Conv2d with kernel (k, 1), groups 1 and zero padding "
                             f"mode; got {conv}")
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        self.k, self.stride, self.dilation, self.pad = (conv.kernel_size[0], conv.stride[0], conv.dilation[0],
                                                        conv.padding[0])
        w = conv.weight.detach()[..., 0]  # (C_out, C_in, k)
        for j in range(self.k):
            self.register_buffer(f"weight_csr_{j}", _to_csr(w[:, :, j].contiguous()))
        self.register_buffer("bias", None if conv.bias is None else conv.bias.detach().clone())

    @property
    def nnz(self) -> int:
        """Stored non-zeros over all taps."""
        return sum(int(getattr(self, f"weight_csr_{j}").values().numel()) for j in range(self.k))

    def forward(self, x: Tensor) -> Tensor:
        B, C, T, V = x.shape
        xt = F.pad(x.permute(1, 2, 0, 3), (0, 0, 0, 0, self.pad, self.pad))  # (C, T + 2p, B, V)
        t_out = (T + 2 * self.pad - self.dilation * (self.k - 1) - 1) // self.stride + 1
        span = self.stride * (t_out - 1) + 1
        y = x.new_zeros(self.out_channels, t_out * B * V)
        taps = [xt[:, j * self.dilation: j * self.dilation + span: self.stride].reshape(C, t_out * B * V)
                for j in range(self.k)]
        _csr_addmm_blocked(y, [getattr(self, f"weight_csr_{j}") for j in range(self.k)], taps)
        y = y.view(self.out_channels, t_out, B, V).permute(2, 0, 1, 3)
        if self.bias is not None:
            y = y + self.bias.view(1, -1, 1, 1)
        return y

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, k={self.k}, stride={self.stride}, "
                f"dilation={self.dilation}, nnz={self.nnz}")


def _is_temporal_conv(m: nn.Module) -> bool:
    return (isinstance(m, nn.Conv2d) and m.kernel_size[1] == 1 and m.groups == 1 and m.padding_mode == "zeros"
            and m.stride[1] == 1 and m.padding[1] == 0 and not isinstance(m.padding, str))


def _time_pair(a: Callable[[], Any], b: Callable[[], Any], device: torch.device,
               repeats: int) -> tuple[float, float]:
    """Best-of-``repeats`` seconds of ``a`` and ``b``, alternating between them every round so that a changing
    machine load affects both alike (one warm-up call each)."""
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    best = [float("inf"), float("inf")]
    for fn in (a, b):
        fn()
    for _ in range(repeats):
        for i, fn in enumerate((a, b)):
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            best[i] = min(best[i], time.perf_counter() - t0)
    return best[0], best[1]


@torch.no_grad()
def to_sparse_kernels(model: nn.Module, example_input: Tensor, min_sparsity: float = 0.5, repeats: int = 5,
                      force: bool | None = None, layout: str = "auto") -> nn.Module:
    r"""An inference model with pruned edges removed and CSR kernels where they are measured faster.

    Args:
        model (torch.nn.Module): A masked model (or generator / ensemble); it is not changed.
        example_input (torch.Tensor): A representative input batch (same device as the model); every
            candidate layer is timed on the input it receives from this batch.
        min_sparsity (float, optional): Layers whose weight has fewer zeros than this fraction stay dense
            without timing. (default: :obj:`0.5`)
        repeats (int, optional): Timed rounds per layer, alternating dense and CSR; the best time of each
            decides. (default: :obj:`5`)
        force (bool, optional): :obj:`True` replaces every candidate above ``min_sparsity``, :obj:`False`
            none, :obj:`None` decides by measurement. (default: :obj:`None`)
        layout (str, optional): ``'channels_last'``: the folded model with layers swapped for CSR kernels
            in place; ``'channel_major'``: a :class:`ChannelMajorSTGCN` (the whole backbone in
            :math:`(C, T, B, V)`, CSR or dense chosen per product as above; a :class:`ValueError` names what
            it does not support, e.g. ``mstcn``); ``'auto'``: the channel-major model when the model is
            supported **and** it was measured faster than the folded dense model on ``example_input``,
            otherwise ``'channels_last'``. (default: :obj:`"auto"`)

    Returns:
        torch.nn.Module: An inference model in eval mode, with ``sparse_kernel_choices`` (a list of dicts:
        ``name``, ``type``, ``shape``, ``sparsity``, ``dense_ms``, ``sparse_ms``, ``sparse``),
        ``edges_removed``, ``layout`` (``'channels_last'`` or ``'channel_major'``) and ``layout_choice``
        (how the layout was decided; with ``'auto'`` the whole-model times ``dense_ms`` / ``channel_major_ms``).
    """
    if layout not in ("auto", "channel_major", "channels_last"):
        raise ValueError(f"to_sparse_kernels: unknown layout {layout!r}; valid values: 'auto', "
                         "'channel_major', 'channels_last'")
    out = fold(model).eval()
    edges_removed = remove_pruned_edges(out)
    layout_choice: dict[str, Any] = {"requested": layout}
    if layout != "channels_last":
        try:
            cm = ChannelMajorSTGCN(out).eval()
        except ValueError as err:
            if layout == "channel_major":
                raise
            cm, layout_choice["channel_major_unsupported"] = None, str(err)
        if cm is not None:
            cm.sparse_kernel_choices = _choose_products(cm, example_input, min_sparsity, repeats, force)
            cm.edges_removed, cm.layout = edges_removed, "channel_major"
            if layout == "channel_major":
                cm.layout_choice = layout_choice
                return cm
            td, tc = _time_pair(lambda: out(example_input), lambda: cm(example_input), example_input.device,
                                repeats)
            layout_choice.update(dense_ms=1e3 * td, channel_major_ms=1e3 * tc)
            if tc < td:
                cm.layout_choice = layout_choice
                return cm
    cand: dict[str, nn.Module] = {}
    for t in targets(out, "weight"):
        m = t.module
        if t.module_name and (isinstance(m, nn.Linear) or _is_temporal_conv(m)):
            cand[t.module_name] = m
    captured: dict[str, Tensor] = {}
    hooks = [m.register_forward_pre_hook(lambda mod, args, n=n: captured.setdefault(n, args[0]))
             for n, m in cand.items()]
    try:
        out(example_input)
    finally:
        for h in hooks:
            h.remove()
    device = example_input.device
    choices = []
    for name, m in cand.items():
        w = m.weight
        sparsity = float((w == 0).float().mean())
        rec = {"name": name, "type": type(m).__name__, "shape": list(w.shape), "sparsity": sparsity,
               "dense_ms": None, "sparse_ms": None, "sparse": False}
        x = captured.get(name)
        if sparsity >= min_sparsity and x is not None and force is not False:
            repl = CSRLinear(m) if isinstance(m, nn.Linear) else CSRTemporalConv(m)
            if force:
                rec["sparse"] = True
            else:
                td, ts = _time_pair(lambda m=m, x=x: m(x), lambda r=repl, x=x: r(x), device, repeats)
                rec["dense_ms"], rec["sparse_ms"] = 1e3 * td, 1e3 * ts
                rec["sparse"] = rec["sparse_ms"] < rec["dense_ms"]
            if rec["sparse"]:
                parent_name, _, child = name.rpartition(".")
                parent = out.get_submodule(parent_name) if parent_name else out
                setattr(parent, child, repl)
        choices.append(rec)
    out.sparse_kernel_choices = choices
    out.edges_removed = edges_removed
    out.layout, out.layout_choice = "channels_last", layout_choice
    return out


@torch.no_grad()
def _choose_products(cm: ChannelMajorSTGCN, example_input: Tensor, min_sparsity: float, repeats: int,
                     force: bool | None) -> list[dict[str, Any]]:
    """Set ``use_csr`` of every product of ``cm`` (measured on the input it gets from ``example_input``)."""
    prods = cm.products()
    for p in prods:
        p.use_csr = False
    captured: dict[str, Tensor] = {}
    hooks = [p.register_forward_pre_hook(lambda mod, args: captured.setdefault(mod.name, args[0].clone()))
             for p in prods]
    try:
        cm(example_input)
    finally:
        for h in hooks:
            h.remove()
    device = example_input.device
    choices = []
    for p in prods:
        sparsity = p.sparsity
        rec = {"name": p.name, "type": "channel_major_1x1" if p.k == 1 else "channel_major_temporal",
               "shape": [p.out_channels, p.in_channels, p.k], "sparsity": sparsity, "dense_ms": None,
               "sparse_ms": None, "sparse": False}
        x = captured.get(p.name)
        if sparsity >= min_sparsity and x is not None and force is not False:
            if force:
                rec["sparse"] = True
            else:
                def run(csr: bool, p: _CMProduct = p, x: Tensor = x) -> None:
                    p.use_csr = csr
                    p(x)
                td, ts = _time_pair(lambda: run(False), lambda: run(True), device, repeats)
                rec["dense_ms"], rec["sparse_ms"] = 1e3 * td, 1e3 * ts
                rec["sparse"] = ts < td
        p.use_csr = rec["sparse"]
        choices.append(rec)
    return choices


# --------------------------------------------------------------------------------------------------------
# Channel-major inference path for whole ST-GCN models
# --------------------------------------------------------------------------------------------------------

def _bn_affine(bn: nn.Module, channels: int, ref: Tensor) -> tuple[Tensor, Tensor]:
    """``(scale, shift)`` of an eval-mode batch norm (running statistics), or ``(1, 0)`` for ``Identity``."""
    if isinstance(bn, nn.Identity):
        return ref.new_ones(channels), ref.new_zeros(channels)
    if not isinstance(bn, nn.modules.batchnorm._BatchNorm) or bn.running_mean is None:
        raise ValueError(f"channel-major export: norm layers must be BatchNorm with running statistics or "
                         f"Identity, got {bn}")
    scale = torch.rsqrt(bn.running_var.detach() + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.detach()
    shift = -bn.running_mean.detach() * scale
    if bn.bias is not None:
        shift = shift + bn.bias.detach()
    return scale, shift


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
        buf = like.new_empty(shape)
        cache[key] = buf
    return buf


class _CMProduct(nn.Module):
    r"""``Y = Σ_j W_j X_j`` (+ per-row bias) on channel-major activations :math:`(C, T, B, V)`: a 1×1
    (``k = 1``) or temporal :math:`(k, 1)` convolution whose taps are column shifts of :math:`(C, T B V)`.

    The weights (BN already folded in) are kept dense and, when ``csr`` is set, as CSR; ``use_csr`` picks
    the kernel (CSR products over :data:`CSR_COLUMN_BLOCK` column blocks, dense products in one GEMM per tap).
    """

    def __init__(self, name: str, weight: Tensor, bias: Tensor, stride: int = 1, dilation: int = 1,
                 pad: int = 0) -> None:
        super().__init__()
        self.name = name
        self.out_channels, self.in_channels, self.k = weight.shape
        self.stride, self.dilation, self.pad = stride, dilation, pad
        self.register_buffer("weight", weight.detach().clone())  # (C_out, C_in, k)
        self.register_buffer("bias", bias.detach().clone())
        self.weights_dense = [weight[:, :, j].contiguous() for j in range(self.k)]
        self.weights_csr = [_to_csr(w) for w in self.weights_dense]
        self.use_csr = False

    @property
    def sparsity(self) -> float:
        return float((self.weight == 0).float().mean())

    @property
    def nnz(self) -> int:
        return sum(int(w.values().numel()) for w in self.weights_csr)

    def forward(self, x: Tensor, residual: Tensor | None = None, relu: bool = False) -> Tensor:
        """``x`` :math:`(C_{in}, T, B, V)`; ``residual`` (output-shaped) is added and ReLU applied block by
        block while the output block is in cache."""
        C, T, B, V = x.shape
        bv = B * V
        t_out = (T + 2 * self.pad - self.dilation * (self.k - 1) - 1) // self.stride + 1
        n = t_out * bv
        y = _workspace(self, "out", (self.out_channels, n), x)  # (C_out, T' B V)
        weights = self.weights_csr if self.use_csr else self.weights_dense
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

    def extra_repr(self) -> str:
        return (f"{self.name}: {self.in_channels}, {self.out_channels}, k={self.k}, stride={self.stride}, "
                f"dilation={self.dilation}, sparsity={self.sparsity:.3f}, csr={self.use_csr}")


def _unit_tcn_product(name: str, tcn: nn.Module, ref: Tensor) -> _CMProduct:
    """A folded :class:`~pyg_sparse_stgcn.nn.TemporalConv` (conv + BN) as a :class:`_CMProduct`."""
    from ..nn.temporal import TemporalConv

    if not isinstance(tcn, TemporalConv):
        raise ValueError(f"channel-major export supports tcn_type='unit_tcn' (TemporalConv) only; {name} is "
                         f"{type(tcn).__name__} (e.g. 'mstcn' is unsupported): use layout='channels_last'")
    conv = tcn.conv
    if isinstance(conv, nn.Linear):
        w = conv.weight.detach().unsqueeze(-1)
        stride, dilation, pad = int(getattr(conv, "stride", 1)), 1, 0
    else:
        if not _is_temporal_conv(conv):
            raise ValueError(f"channel-major export: {name}.conv must be a (k, 1) Conv2d, got {conv}")
        w = conv.weight.detach()[..., 0]
        stride, dilation, pad = conv.stride[0], conv.dilation[0], conv.padding[0]
    bias = conv.bias.detach() if conv.bias is not None else w.new_zeros(w.size(0))
    scale, shift = _bn_affine(tcn.bn, w.size(0), w)
    return _CMProduct(name, w * scale.view(-1, 1, 1), bias * scale + shift, stride, dilation, pad)


class _CMBlock(nn.Module):
    r"""One folded :class:`~pyg_sparse_stgcn.nn.STGCNBlock` (``unit_gcn`` + ``unit_tcn``) on channel-major
    activations :math:`(C, T, B, V)`."""

    def __init__(self, name: str, block: nn.Module) -> None:
        super().__init__()
        from ..nn.conv.stgcn_conv import STGCNConv

        gcn = block.gcn
        if not isinstance(gcn, STGCNConv):
            raise ValueError(f"channel-major export: {name}.gcn must be an STGCNConv, got {type(gcn).__name__}")
        if not isinstance(gcn.act, (nn.ReLU, nn.Identity)):
            raise ValueError(f"channel-major export: {name}.gcn.act must be ReLU or Identity, got {gcn.act}")
        K, V = gcn.num_subsets, gcn.num_nodes
        self.K, self.V, self.pre = K, V, gcn.conv_pos == "pre"
        self.gcn_act = isinstance(gcn.act, nn.ReLU)
        C_out = gcn.out_channels
        A = gcn.adjacency().detach()  # (K, V, V), [k, v, w]: v -> w
        self.register_buffer("A", A.clone())
        self.subsets = [k for k in range(K) if bool((A[k] != 0).any())]
        W, b = gcn.conv.weight.detach(), gcn.conv.bias
        b = b.detach() if b is not None else W.new_zeros(W.size(0))
        scale, shift = _bn_affine(gcn.bn, C_out, W)
        if self.pre:
            # rows k C_out + c; BN (after the aggregation, per channel c) scales every subset's rows
            s = scale.repeat(K)
            self.gcn_conv = _CMProduct(f"{name}.gcn.conv", (W * s.view(-1, 1)).unsqueeze(-1),
                                       W.new_zeros(W.size(0)), 1, 1, 0)
            # the bias goes through the aggregation: Σ_k b_k[c] Σ_v A_k[v, w]
            const = scale.view(-1, 1) * (b.view(K, C_out, 1) * A.sum(1).unsqueeze(1)).sum(0)
        else:
            self.gcn_conv = _CMProduct(f"{name}.gcn.conv", (W * scale.view(-1, 1)).unsqueeze(-1), b * scale,
                                       1, 1, 0)
            const = W.new_zeros(C_out, V)
        self.register_buffer("gcn_const", (const + shift.view(-1, 1)).contiguous())  # (C_out, V)
        self.gcn_res = "none"
        self.gcn_down: _CMProduct | None = None
        if gcn.with_res:
            if gcn.down is None:
                self.gcn_res = "identity"
            else:
                lin, bn = gcn.down[0], gcn.down[1]
                ds, dsh = _bn_affine(bn, lin.out_features, lin.weight)
                lb = lin.bias.detach() if lin.bias is not None else lin.weight.new_zeros(lin.out_features)
                self.gcn_down = _CMProduct(f"{name}.gcn.down.0", (lin.weight.detach() * ds.view(-1, 1))
                                           .unsqueeze(-1), lb * ds + dsh)
                self.gcn_res = "conv"
        self.tcn = _unit_tcn_product(f"{name}.tcn", block.tcn, W)
        self.res_mode = block.residual_mode
        self.residual = (_unit_tcn_product(f"{name}.residual", block.residual, W)
                         if self.res_mode == "conv" else None)

    def products(self) -> list[_CMProduct]:
        return [m for m in (self.gcn_conv, self.gcn_down, self.tcn, self.residual) if m is not None]

    def _aggregate(self, h: Tensor) -> Tensor:
        """``out[.., w] = Σ_k Σ_v A[k, v, w] h_k[.., v]`` with ``h`` viewed as ``(K, C T B, V)``."""
        hk = h.reshape(self.K, -1, self.V)
        if not self.subsets:
            return hk.new_zeros(hk.shape[1:])
        out = torch.mm(hk[self.subsets[0]], self.A[self.subsets[0]],
                       out=_workspace(self, "agg", tuple(hk.shape[1:]), h))
        for k in self.subsets[1:]:
            out.addmm_(hk[k], self.A[k])
        return out

    def forward(self, x: Tensor) -> Tensor:
        C, T, B, V = x.shape
        if self.pre:
            h = self.gcn_conv(x)  # (K C_out, T, B, V)
            g = self._aggregate(h)
        else:
            # every subset's aggregate, stacked in PYSKL's channel order k C_in + c
            x2 = x.view(1, -1, V).expand(self.K, -1, V)
            agg = torch.bmm(x2, self.A, out=_workspace(self, "agg", tuple(x2.shape), x))
            g = self.gcn_conv(agg.view(self.K * C, T, B, V))
        C_out = self.gcn_const.size(0)
        g = g.view(C_out, T * B, V).add_(self.gcn_const.unsqueeze(1))
        if self.gcn_res == "identity":
            g = g.add_(x.view(C_out, T * B, V))
        elif self.gcn_res == "conv":
            g = g.add_(self.gcn_down(x).view(C_out, T * B, V))
        if self.gcn_act:
            g = g.relu_()
        res = x if self.res_mode == "identity" else self.residual(x) if self.res_mode == "conv" else None
        return self.tcn(g.view(C_out, T, B, V), res, relu=True)


class ChannelMajorSTGCN(nn.Module):
    r"""Inference ST-GCN (:class:`~pyg_sparse_stgcn.nn.STGCN`, optionally inside a
    :class:`~pyg_sparse_stgcn.nn.SkeletonClassifier`) that runs the whole folded backbone in channel-major
    layout :math:`(C, T, B, V)`, :math:`B = N M`: one transpose after ``data_bn``, one before the head.

    Every block computes, with the batch norms folded into the weights (running statistics),

    .. math::
        \mathbf{G} = \sigma\Big(\sum_k (\mathbf{W}_k \mathbf{X}) \tilde{\mathbf{A}}_k + \mathbf{c}
        + \mathrm{res}_{gcn}(\mathbf{X})\Big), \qquad
        \mathbf{Y} = \mathrm{ReLU}\Big(\mathbf{b} + \sum_{j=0}^{k-1} \mathbf{W}_j\,
        \mathbf{G}_{[s t + d j - p]} + \mathrm{res}(\mathbf{X})\Big)

    where every product with a weight is a matrix product over the contiguous :math:`(C, T B V)` view (the
    taps of the temporal convolution are column shifts of it, no copies at stride 1) — CSR over cache-sized
    column blocks or dense, chosen per layer (``use_csr`` of each entry of :meth:`products`) — and the
    aggregation over joints is one dense :math:`(C T B, V) \times (V, V)` product per non-empty subset.

    Args:
        model (torch.nn.Module): A **folded** (plain) ``SkeletonClassifier`` with an ``STGCN`` backbone, or an
            ``STGCN``; its blocks must use ``unit_gcn`` and ``unit_tcn``.

    Shapes:
        - **input:** :math:`(N, M, T, V, C)`
        - **output:** that of ``model`` (logits, or backbone features :math:`(N, M, C', T', V)`)
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        from ..nn import STGCN, SkeletonClassifier

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
            scale, shift = _bn_affine(backbone.data_bn, backbone.data_bn.num_features, ref)
            self.register_buffer("bn_scale", scale)
            self.register_buffer("bn_shift", shift)
        self.blocks = nn.ModuleList(_CMBlock(f"{prefix}gcn.{i}", b) for i, b in enumerate(backbone.gcn))
        self.out_channels = backbone.out_channels

    def products(self) -> list[_CMProduct]:
        """Every weight product (GCN 1×1 conv, ``down``, temporal conv, residual conv), in order."""
        return [p for b in self.blocks for p in b.products()]

    def features(self, x: Tensor) -> Tensor:
        """Backbone features :math:`(N, M, C', T', V)` of :math:`(N, M, T, V, C)`."""
        if x.dim() != 5 or x.size(3) != self.num_nodes or x.size(4) != self.in_channels:
            raise ValueError(f"ChannelMajorSTGCN: x must be (N, M, T, V={self.num_nodes}, "
                             f"C={self.in_channels}), got shape {tuple(x.shape)}")
        N, M, T, V, C = x.shape
        if self.data_bn_type == "VC":
            x = x * self.bn_scale.view(V, C) + self.bn_shift.view(V, C)
        elif self.data_bn_type == "MVC":
            if M != self.num_person:
                raise ValueError(f"ChannelMajorSTGCN: data_bn_type='MVC' needs M=num_person={self.num_person} "
                                 f"persons, got M={M}")
            x = x * self.bn_scale.view(M, 1, V, C) + self.bn_shift.view(M, 1, V, C)
        h = x.permute(4, 2, 0, 1, 3).reshape(C, T, N * M, V).contiguous()  # (C, T, B, V)
        for block in self.blocks:
            h = block(h)
        C2, T2 = h.shape[:2]
        return h.view(C2, T2, N, M, V).permute(2, 3, 0, 1, 4).contiguous()

    def forward(self, x: Tensor) -> Tensor:
        if self.head is not None and x.dim() == 6:
            x = x.reshape(x.size(0) * x.size(1), *x.shape[2:])
        f = self.features(x)
        return f if self.head is None else self.head(f)
