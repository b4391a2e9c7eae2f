r"""AAGCN (PYSKL ``AAGCN``) on channels-last activations."""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from torch import Tensor, nn

from ...graph import SkeletonGraph
from ..block import ResidualBlock, make_residual
from ..conv.aagcn_conv import AAGCNConv
from ..temporal import MultiScaleTemporalConv, TemporalConv
from ._backbone import SkeletonBackbone, graph_tensor, route

__all__ = ["AAGCN", "AAGCNBlock"]

GCN_KEYS = ("type", "coff_embedding", "adaptive", "attention")
TCN_KEYS = {"unit_tcn": ("dilation", "norm", "dropout"), "mstcn": ("mid_channels", "dropout", "ms_cfg")}


class AAGCNBlock(ResidualBlock):
    r"""One AAGCN block (PYSKL ``AAGCNBlock``):
    :math:`\mathbf{X}' = \mathrm{ReLU}(\mathrm{tcn}(\mathrm{gcn}(\mathbf{X})) + \mathrm{res}(\mathbf{X}))` with
    ``gcn`` an :class:`AAGCNConv`, ``tcn`` a 9 × 1 :class:`TemporalConv` (no ReLU) or
    :class:`MultiScaleTemporalConv` (``tcn_type='mstcn'``).

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        graph (SkeletonGraph or Tensor): The graph or its adjacency.
        stride (int, optional): Temporal stride. (default: :obj:`1`)
        residual (bool, optional): Use a residual. (default: :obj:`True`)
        backend (str, optional): Backend of the :class:`AAGCNConv`. (default: :obj:`"auto"`)
        **kwargs: ``gcn_coff_embedding``, ``gcn_adaptive``, ``gcn_attention``; ``tcn_type`` and
            ``tcn_dilation`` / ``tcn_norm`` / ``tcn_dropout`` (``unit_tcn``) or ``tcn_mid_channels`` /
            ``tcn_dropout`` / ``tcn_ms_cfg`` (``mstcn``).

    Shapes:
        - **input:** :math:`(B, T, V, C_{in})`
        - **output:** :math:`(B, \lceil T/s \rceil, V, C_{out})`
    """

    def __init__(self, in_channels: int, out_channels: int, graph: SkeletonGraph | Tensor | np.ndarray,
                 stride: int = 1, residual: bool = True, backend: str = "auto", **kwargs: Any) -> None:
        super().__init__(in_channels, out_channels, stride)
        gcn_kw, tcn_kw = route(kwargs, "AAGCNBlock", GCN_KEYS, TCN_KEYS)
        gcn_type = gcn_kw.pop("type", "unit_aagcn")
        if gcn_type != "unit_aagcn":
            raise ValueError(f"AAGCNBlock: gcn_type must be 'unit_aagcn', got {gcn_type!r}")
        self.tcn_type = tcn_kw.pop("type", "unit_tcn")
        self.gcn: AAGCNConv = AAGCNConv(in_channels, out_channels, graph, backend=backend, **gcn_kw)
        if self.tcn_type == "unit_tcn":
            self.tcn: TemporalConv | MultiScaleTemporalConv = TemporalConv(out_channels, out_channels, 9,
                                                                           stride=stride, **tcn_kw)
        else:
            self.tcn = MultiScaleTemporalConv(out_channels, out_channels, stride=stride, **tcn_kw)
        self.residual_mode, self.residual = make_residual(in_channels, out_channels, stride, residual)
        self.relu = nn.ReLU()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PYSKL's init: ``unit_tcn`` Kaiming-normal (fan-out), zero bias, BN (1, 0); ``mstcn`` and the
        residual keep PyTorch's defaults; the GCN unit as :meth:`AAGCNConv.reset_parameters`."""
        self.tcn.reset_parameters()
        if isinstance(self.tcn, TemporalConv):  # tcn_type == 'unit_tcn'
            nn.init.kaiming_normal_(self.tcn.conv.weight, mode="fan_out")
            if self.tcn.conv.bias is not None:
                nn.init.zeros_(self.tcn.conv.bias)
        self.gcn.reset_parameters()
        self._reset_residual()


class AAGCN(SkeletonBackbone):
    r"""The AAGCN backbone (Shi et al., TIP 2020) with every option of PYSKL's ``AAGCN``: ``data_bn``
    (``'MVC'`` default), :class:`AAGCNBlock` s in ``gcn`` (stage 1 only when ``in_channels !=
    base_channels``), channels doubled at ``inflate_stages``, stride 2 at ``down_stages``. The top-level
    buffer ``A`` (the graph, unused in forward) is kept for PYSKL checkpoints.

    Args:
        graph_cfg (dict or SkeletonGraph): PYSKL's ``graph_cfg`` (``layout``, ``mode``, ...) or a graph.
        in_channels (int, optional): Input channels. (default: :obj:`3`)
        base_channels (int, optional): Channels of the first stages. (default: :obj:`64`)
        data_bn_type (str, optional): ``'MVC'``, ``'VC'`` or :obj:`None`. (default: :obj:`"MVC"`)
        num_person (int, optional): Persons :math:`M`. (default: :obj:`2`)
        num_stages (int, optional): Stages. (default: :obj:`10`)
        inflate_stages (sequence of int, optional): (default: :obj:`(5, 8)`)
        down_stages (sequence of int, optional): (default: :obj:`(5, 8)`)
        pretrained (str, optional): A checkpoint loaded at the end of the constructor as PYSKL's
            ``init_weights`` does (``strict=False``; see :meth:`~SkeletonBackbone.load_pretrained`).
            (default: :obj:`None`)
        backend (str, optional): Backend of every graph convolution. (default: :obj:`"auto"`)
        **kwargs: ``gcn_*`` / ``tcn_*`` options of :class:`AAGCNBlock`; a tuple of length ``num_stages`` is
            split per stage, ``tcn_dropout`` is dropped from stage 1.

    Shapes:
        - **input:** :math:`(N, M, T, V, C)`
        - **output:** :math:`(N, M, C', T', V)`
    """

    def __init__(self, graph_cfg: SkeletonGraph | Mapping, in_channels: int = 3, base_channels: int = 64,
                 data_bn_type: str | None = "MVC", num_person: int = 2, num_stages: int = 10,
                 inflate_stages: Sequence[int] = (5, 8), down_stages: Sequence[int] = (5, 8),
                 pretrained: str | os.PathLike | None = None, backend: str = "auto", **kwargs: Any) -> None:
        super().__init__()
        self._setup("AAGCN", graph_cfg, in_channels, base_channels, data_bn_type, num_person, num_stages,
                    inflate_stages, down_stages, backend, pretrained=pretrained)
        route(kwargs, "AAGCN", GCN_KEYS, TCN_KEYS)
        self.kwargs = dict(kwargs)
        self.register_buffer("A", graph_tensor(self.graph))
        stage_kw = self._stage_kwargs(kwargs, num_stages, ("tcn_dropout",))
        blocks = [AAGCNBlock(cin, cout, self.graph, stride, residual=i > 0,
                             backend=backend, **stage_kw[i]) for i, cin, cout, stride in
                  self._stage_plan(num_stages, 2, always_first=False)]
        self.gcn = nn.ModuleList(blocks)
        self.num_stages = len(blocks)
        self._load_pretrained()
