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

__all__ = ["fold", "to_sparse_kernels", "CSRLinear", "CSRTemporalConv", "remove_pruned_edges"]


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
                      force: bool | None = None) -> nn.Module:
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

    Returns:
        torch.nn.Module: The folded model in eval mode, with ``sparse_kernel_choices`` (a list of dicts:
        ``name``, ``type``, ``shape``, ``sparsity``, ``dense_ms``, ``sparse_ms``, ``sparse``) and
        ``edges_removed``.
    """
    out = fold(model).eval()
    edges_removed = remove_pruned_edges(out)
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
    return out
