r"""The ST-GCN block: graph convolution, temporal convolution and a residual (PYSKL ``STGCNBlock``)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from torch import Tensor, nn

from ..graph import SkeletonGraph
from ._utils import check_choice, reset_module
from .conv.skeleton_mp import SkeletonMessagePassing
from .conv.stgcn_conv import STGCNConv
from .temporal import DGMultiScaleTemporalConv, MultiScaleTemporalConv, TemporalConv

__all__ = ["STGCNBlock", "ResidualBlock", "make_residual", "route", "check_keys", "TCN_ALIASES"]

#: The ``gcn_*`` / ``tcn_*`` options of :class:`STGCNBlock` (``tcn_type`` → its options; the first is the default).
GCN_KEYS = ("type", "adaptive", "conv_pos", "with_res", "norm", "act")
TCN_KEYS = {"unit_tcn": ("kernel_size", "dilation", "norm", "dropout"),
            "mstcn": ("mid_channels", "dropout", "ms_cfg")}


def check_keys(who: str, what: str, given: Mapping[str, Any], valid: Sequence[str]) -> None:
    """:class:`ValueError` naming the unknown keys of ``given`` and the valid ones."""
    bad = sorted(set(given) - set(valid))
    if bad:
        raise ValueError(f"{who}: unknown {what} {bad}; valid: {', '.join(valid) if valid else 'none'}")


#: Other names of a ``tcn_type``: the paper code's ``'mstcn_sparse'`` is PYSKL's ``mstcn`` with masked convolutions,
#: which here is ``'mstcn'`` (masks are attached to any unit).
TCN_ALIASES = {"mstcn_sparse": "mstcn"}


def route(kwargs: dict[str, Any], who: str, gcn_keys: Sequence[str],
          tcn_keys: Mapping[str, Sequence[str]]) -> tuple[dict, dict]:
    """PYSKL's ``gcn_*`` / ``tcn_*`` routing with the valid names in every error (a ``tcn_type`` alias of
    :data:`TCN_ALIASES` comes back as its canonical name)."""
    gcn = {k[4:]: v for k, v in kwargs.items() if k.startswith("gcn_")}
    tcn = {k[4:]: v for k, v in kwargs.items() if k.startswith("tcn_")}
    alias = TCN_ALIASES.get(str(tcn.get("type")))
    if alias is not None and alias in tcn_keys:
        tcn["type"] = alias
    other = sorted(k for k in kwargs if not k.startswith(("gcn_", "tcn_")))
    tcn_all = sorted({k for keys in tcn_keys.values() for k in keys} | {"type"})
    if other:
        raise ValueError(f"{who}: unknown argument(s) {other}; unit options are gcn_<name> "
                         f"({', '.join(gcn_keys)}) or tcn_<name> ({', '.join(tcn_all)})")
    check_keys(who, "gcn_ option(s)", gcn, gcn_keys)
    tcn_type = tcn.get("type", next(iter(tcn_keys)))
    check_choice("tcn_type", tcn_type, tuple(tcn_keys))
    check_keys(who, f"tcn_ option(s) for tcn_type={tcn_type!r}", {k: v for k, v in tcn.items() if k != "type"},
               tcn_keys[tcn_type])
    return gcn, tcn


def make_residual(in_channels: int, out_channels: int, stride: int,
                  residual: bool) -> tuple[str, TemporalConv | None]:
    """PYSKL's block residual: none, identity, or ``unit_tcn(k=1, stride)`` (:math:`1 \\times 1` + BN)."""
    if not residual:
        return "none", None
    if in_channels == out_channels and stride == 1:
        return "identity", None
    return "conv", TemporalConv(in_channels, out_channels, kernel_size=1, stride=stride)


#: The temporal units' ``forward`` methods that end a block themselves (``residual``, ``act``); a subclass that
#: overrides ``forward`` is called the plain way.
_TAKE_RESIDUAL = (TemporalConv.forward, MultiScaleTemporalConv.forward, DGMultiScaleTemporalConv.forward)


class ResidualBlock(nn.Module):
    r"""What the ST-GCN-family blocks share:
    :math:`\mathbf{X}' = \mathrm{ReLU}(\mathrm{tcn}(\mathrm{gcn}(\mathbf{X})) + \mathrm{res}(\mathbf{X}))`,
    the residual of :func:`make_residual` (``residual_mode`` ``'none'`` / ``'identity'`` / ``'conv'``), the
    default init (``gcn``, ``tcn``, ``residual``) and the ``extra_repr``. Subclasses build ``gcn``, ``tcn``,
    ``residual`` / ``residual_mode`` and ``relu`` in their own registration order.
    """

    gcn: SkeletonMessagePassing
    tcn: nn.Module
    residual: TemporalConv | None
    residual_mode: str
    relu: nn.ReLU

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride

    def reset_parameters(self) -> None:
        self.gcn.reset_parameters()
        reset_module(self.tcn)
        self._reset_residual()

    def _reset_residual(self) -> None:
        if self.residual is not None:
            self.residual.reset_parameters()

    def _tcn_residual(self, tcn: nn.Module, h: Tensor, x: Tensor) -> Tensor:
        """``ReLU(tcn(h) + res(x))``; the temporal units that take ``residual`` / ``act`` end in it themselves
        (one pass with their batch norm)."""
        res = self.residual(x) if self.residual is not None else x if self.residual_mode == "identity" else None
        if type(tcn).forward in _TAKE_RESIDUAL and not (tcn._forward_hooks or tcn._forward_pre_hooks):
            return tcn(h, res, self.relu)
        out = tcn(h)
        return self.relu(out if res is None else out + res)

    def forward(self, x: Tensor) -> Tensor:
        return self._tcn_residual(self.tcn, self.gcn(x), x)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, stride={self.stride}, residual={self.residual_mode!r}"


class STGCNBlock(ResidualBlock):
    r"""One ST-GCN block (PYSKL ``STGCNBlock``):

    .. math::
        \mathbf{X}' = \mathrm{ReLU}\big(\mathrm{tcn}(\mathrm{gcn}(\mathbf{X})) + \mathrm{res}(\mathbf{X})\big)

    with ``gcn`` an :class:`STGCNConv`, ``tcn`` a :class:`TemporalConv` (kernel 9) or a
    :class:`MultiScaleTemporalConv` (``tcn_type='mstcn'``), and ``residual`` zero, the identity (same
    channels, stride 1) or a strided :math:`1 \times 1` :class:`TemporalConv`.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        graph (SkeletonGraph or Tensor): The skeleton graph or its adjacency :math:`(K, V, V)`.
        stride (int, optional): Temporal stride. (default: :obj:`1`)
        residual (bool, optional): Use a residual connection. (default: :obj:`True`)
        backend (str, optional): Aggregation backend of the :class:`STGCNConv`. (default: :obj:`"auto"`)
        **kwargs: ``gcn_<name>`` goes to :class:`STGCNConv` (``adaptive``, ``conv_pos``, ``with_res``,
            ``norm``, ``act``), ``tcn_<name>`` to the temporal unit (``tcn_type`` = ``'unit_tcn'`` or
            ``'mstcn'``,
            ``kernel_size``, ``dilation``, ``dropout``, ``norm``; ``mid_channels``, ``ms_cfg`` for mstcn).

    Shapes:
        - **input:** :math:`(B, T, V, C_{in})`
        - **output:** :math:`(B, \lceil T / s \rceil, V, C_{out})`
    """

    def __init__(self, in_channels: int, out_channels: int, graph: SkeletonGraph | Tensor | np.ndarray,
                 stride: int = 1, residual: bool = True, backend: str = "auto", **kwargs: Any) -> None:
        super().__init__(in_channels, out_channels, stride)
        gcn_kwargs, tcn_kwargs = route(kwargs, "STGCNBlock", GCN_KEYS, TCN_KEYS)
        gcn_type = gcn_kwargs.pop("type", "unit_gcn")
        if gcn_type != "unit_gcn":
            raise ValueError(f"STGCNBlock: gcn_type must be 'unit_gcn', got {gcn_type!r}")
        tcn_type = tcn_kwargs.pop("type", "unit_tcn")
        self.gcn: STGCNConv = STGCNConv(in_channels, out_channels, graph, backend=backend, **gcn_kwargs)
        if tcn_type == "unit_tcn":
            kernel_size = tcn_kwargs.pop("kernel_size", 9)
            self.tcn: TemporalConv | MultiScaleTemporalConv = TemporalConv(out_channels, out_channels, kernel_size,
                                                                           stride=stride, **tcn_kwargs)
        else:
            self.tcn = MultiScaleTemporalConv(out_channels, out_channels, stride=stride, **tcn_kwargs)
        self.relu = nn.ReLU()  # registered before the residual (the repr order of PYSKL's STGCNBlock)
        self.residual_mode, self.residual = make_residual(in_channels, out_channels, stride, residual)

    def forward(self, x: Tensor, edge_index: Tensor | None = None,
                edge_weight: Tensor | None = None) -> Tensor:
        """``x`` :math:`(B, T, V, C_{in})`; ``edge_index`` / ``edge_weight`` are passed to the GCN unit."""
        if x.dim() != 4:
            raise ValueError(f"STGCNBlock: x must be (B, T, V, C), got shape {tuple(x.shape)}")
        return self._tcn_residual(self.tcn, self.gcn(x, edge_index, edge_weight), x)

    def extra_repr(self) -> str:
        # the historical repr ends in a stray ')' (kept: the repr is part of the public surface)
        return super().extra_repr() + ")"
