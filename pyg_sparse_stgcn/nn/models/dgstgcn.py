r"""DG-STGCN (PYSKL ``DGSTGCN``) on channels-last activations."""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from torch import Tensor, nn

from ...graph import SkeletonGraph
from ..block import ResidualBlock, make_residual
from ..conv.dggcn_conv import DGGCNConv
from ..temporal import DGMultiScaleTemporalConv, MultiScaleTemporalConv
from ._backbone import SkeletonBackbone, route

__all__ = ["DGSTGCN", "DGBlock"]

GCN_KEYS = ("ratio", "ctr", "ada", "subset_wise", "ada_act", "ctr_act", "norm", "act")
#: ``tcn_type`` → its ``tcn_*`` options: PYSKL's ``dgmstcn`` (the default), or PYSKL's plain ``mstcn`` (no global
#: joint), which the paper's sparse DG-STGCN and the Assemble's DG-GCN experts use
TCN_KEYS = {"dgmstcn": ("mid_channels", "num_joints", "dropout", "ms_cfg"),
            "mstcn": ("mid_channels", "dropout", "ms_cfg")}
_COMMON = ("act", "norm", "g1x1")


class DGBlock(ResidualBlock):
    r"""One DG-STGCN block (PYSKL ``DGBlock``):
    :math:`\mathbf{X}' = \mathrm{ReLU}(\mathrm{tcn}(\mathrm{gcn}(\mathbf{X})) + \mathrm{res}(\mathbf{X}))` with
    ``gcn`` a :class:`DGGCNConv` and ``tcn`` a :class:`DGMultiScaleTemporalConv` (``tcn_type='dgmstcn'``, the
    default) or a :class:`MultiScaleTemporalConv` (``tcn_type='mstcn'``, the paper's sparse DG-STGCN), neither with
    a final ReLU;
    :meth:`reset_parameters` keeps PyTorch's defaults everywhere (PYSKL has no initialiser for DG-STGCN).

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        graph (SkeletonGraph or Tensor): The graph or its adjacency.
        stride (int, optional): Temporal stride. (default: :obj:`1`)
        residual (bool, optional): Use a residual. (default: :obj:`True`)
        backend (str, optional): Backend of the :class:`DGGCNConv`. (default: :obj:`"auto"`)
        **kwargs: ``gcn_<name>`` (``ratio``, ``ctr``, ``ada``, ``subset_wise``, ``ada_act``, ``ctr_act``,
            ``norm``, ``act``), ``tcn_type`` (``'dgmstcn'`` or ``'mstcn'``) and ``tcn_<name>``
            (``mid_channels``, ``dropout``, ``ms_cfg``; ``num_joints`` for ``'dgmstcn'``);
            ``act`` / ``norm`` / ``g1x1`` are copied to both (PYSKL), which the TCN rejects.

    Shapes:
        - **input:** :math:`(B, T, V, C_{in})`
        - **output:** :math:`(B, \lceil T/s \rceil, V, C_{out})`
    """

    def __init__(self, in_channels: int, out_channels: int, graph: SkeletonGraph | Tensor | np.ndarray,
                 stride: int = 1, residual: bool = True, backend: str = "auto", **kwargs: Any) -> None:
        super().__init__(in_channels, out_channels, stride)
        kwargs = dict(kwargs)
        for key in _COMMON:
            if key in kwargs:
                value = kwargs.pop(key)
                kwargs["gcn_" + key] = kwargs["tcn_" + key] = value
        gcn_kw, tcn_kw = route(kwargs, "DGBlock", GCN_KEYS, TCN_KEYS)
        self.tcn_type = tcn_kw.pop("type", "dgmstcn")
        self.gcn: DGGCNConv = DGGCNConv(in_channels, out_channels, graph, backend=backend, **gcn_kw)
        tcn_cls = MultiScaleTemporalConv if self.tcn_type == "mstcn" else DGMultiScaleTemporalConv
        self.tcn: MultiScaleTemporalConv = tcn_cls(out_channels, out_channels, stride=stride, **tcn_kw)
        self.residual_mode, self.residual = make_residual(in_channels, out_channels, stride, residual)
        self.relu = nn.ReLU()


class DGSTGCN(SkeletonBackbone):
    r"""The DG-STGCN backbone (Duan et al., 2022) with every option of PYSKL's ``DGSTGCN``: ``data_bn``
    (``'VC'`` default), :class:`DGBlock` s in ``gcn`` (stage 1 only when ``in_channels != base_channels``),
    channels :math:`\lfloor \text{base} \cdot \text{ch\_ratio}^j + 10^{-4} \rfloor`. No top-level ``A``.
    PYSKL's shipped graph is ``dict(layout='nturgb+d', mode='random', num_filter=8, init_off=.04,
    init_std=.02)`` with ``gcn_ratio=0.125, gcn_ctr='T', gcn_ada='T'``. ``tcn_type='mstcn'`` (not in PYSKL's dense
    ``DGSTGCN``, which always uses ``dgmstcn``; the paper code's name ``'mstcn_sparse'`` is accepted for it) swaps in
    PYSKL's plain ``mstcn``, as the paper's sparse DG-STGCN
    and the Assemble's DG-GCN experts do (``tcn_type='mstcn_sparse'`` there): same branch keys, no global
    joint, no ``add_coeff``.

    Args:
        graph_cfg (dict or SkeletonGraph): PYSKL's ``graph_cfg`` or a graph.
        in_channels (int, optional): Input channels. (default: :obj:`3`)
        base_channels (int, optional): Channels of the first stages. (default: :obj:`64`)
        ch_ratio (float, optional): Channel multiplier at an inflate stage. (default: :obj:`2`)
        num_stages (int, optional): Stages. (default: :obj:`10`)
        inflate_stages (sequence of int, optional): (default: :obj:`(5, 8)`)
        down_stages (sequence of int, optional): (default: :obj:`(5, 8)`)
        data_bn_type (str, optional): ``'VC'``, ``'MVC'`` or :obj:`None`. (default: :obj:`"VC"`)
        num_person (int, optional): Persons :math:`M`. (default: :obj:`2`)
        pretrained (str, optional): A checkpoint loaded at the end of the constructor as PYSKL's
            ``init_weights`` does (``strict=False``; see :meth:`~SkeletonBackbone.load_pretrained`).
            (default: :obj:`None`)
        backend (str, optional): Backend of every graph convolution. (default: :obj:`"auto"`)
        **kwargs: ``gcn_*`` / ``tcn_*`` (``tcn_type``, and ``act`` / ``norm`` / ``g1x1``) options of :class:`DGBlock`; a
            tuple of length ``num_stages`` is split per stage; stage 1 loses ``tcn_dropout``, ``g1x1``,
            ``gcn_g1x1``.

    Shapes:
        - **input:** :math:`(N, M, T, V, C)`
        - **output:** :math:`(N, M, C', T', V)`
    """

    def __init__(self, graph_cfg: SkeletonGraph | Mapping, in_channels: int = 3, base_channels: int = 64,
                 ch_ratio: float = 2, num_stages: int = 10, inflate_stages: Sequence[int] = (5, 8),
                 down_stages: Sequence[int] = (5, 8), data_bn_type: str | None = "VC", num_person: int = 2,
                 pretrained: str | os.PathLike | None = None, backend: str = "auto", **kwargs: Any) -> None:
        super().__init__()
        self._setup("DGSTGCN", graph_cfg, in_channels, base_channels, data_bn_type, num_person, num_stages,
                    inflate_stages, down_stages, backend, pretrained=pretrained)
        probe = {k: v for k, v in kwargs.items() if k not in _COMMON}
        route(probe, "DGSTGCN", GCN_KEYS, TCN_KEYS)
        self.ch_ratio = ch_ratio
        self.kwargs = dict(kwargs)
        stage_kw = self._stage_kwargs(kwargs, num_stages, ("tcn_dropout", "g1x1", "gcn_g1x1"))
        blocks = [DGBlock(cin, cout, self.graph, stride, residual=i > 0, backend=backend, **stage_kw[i])
                  for i, cin, cout, stride in self._stage_plan(num_stages, ch_ratio, always_first=False)]
        self.gcn = nn.ModuleList(blocks)
        self.num_stages = len(blocks)
        self._load_pretrained()
