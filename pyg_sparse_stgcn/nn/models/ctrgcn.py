r"""CTR-GCN (PYSKL ``CTRGCN``) on channels-last activations."""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from torch import Tensor, nn

from ...graph import SkeletonGraph
from ..block import ResidualBlock, make_residual
from ..conv.ctrgcn_conv import CTRGCNConv
from ..temporal import CTRMultiScaleTemporalConv
from ._backbone import SkeletonBackbone, check_keys, graph_tensor

__all__ = ["CTRGCN", "CTRGCNBlock"]

BLOCK_KEYS = ("kernel_size", "dilations", "tcn_dropout")


class CTRGCNBlock(ResidualBlock):
    r"""One CTR-GCN block (PYSKL ``CTRGCNBlock``):
    :math:`\mathbf{X}' = \mathrm{ReLU}(\mathrm{tcn1}(\mathrm{gcn1}(\mathbf{X})) + \mathrm{res}(\mathbf{X}))`
    with ``gcn1`` a :class:`CTRGCNConv` and ``tcn1`` a :class:`CTRMultiScaleTemporalConv` (which ends in its
    own ReLU).

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        graph (SkeletonGraph or Tensor): The graph or its adjacency.
        stride (int, optional): Temporal stride. (default: :obj:`1`)
        residual (bool, optional): Use a residual. (default: :obj:`True`)
        kernel_size (int, optional): Temporal kernel of the TCN. (default: :obj:`5`)
        dilations (sequence of int, optional): TCN dilations. (default: :obj:`(1, 2)`)
        tcn_dropout (float, optional): Dropout at the end of the TCN. (default: :obj:`0.0`)
        backend (str, optional): Backend of the :class:`CTRGCNConv`. (default: :obj:`"auto"`)

    Shapes:
        - **input:** :math:`(B, T, V, C_{in})`
        - **output:** :math:`(B, \lceil T/s \rceil, V, C_{out})`
    """

    def __init__(self, in_channels: int, out_channels: int, graph: SkeletonGraph | Tensor | np.ndarray,
                 stride: int = 1, residual: bool = True, kernel_size: int = 5, dilations: Sequence[int] = (1, 2),
                 tcn_dropout: float = 0.0, backend: str = "auto") -> None:
        super().__init__(in_channels, out_channels, stride)
        self.gcn1 = CTRGCNConv(in_channels, out_channels, graph, backend=backend)
        self.tcn1 = CTRMultiScaleTemporalConv(out_channels, out_channels, kernel_size, stride, dilations,
                                              tcn_dropout)
        self.residual_mode, self.residual = make_residual(in_channels, out_channels, stride, residual)
        self.relu = nn.ReLU()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PYSKL's init: ``tcn1`` then ``gcn1``; the residual keeps PyTorch's defaults."""
        self.tcn1.reset_parameters()
        self.gcn1.reset_parameters()
        self._reset_residual()

    def forward(self, x: Tensor) -> Tensor:
        return self._tcn_residual(self.tcn1, self.gcn1(x), x)


class CTRGCN(SkeletonBackbone):
    r"""The CTR-GCN backbone (Chen et al., ICCV 2021) with every option of PYSKL's ``CTRGCN``: ``data_bn``
    always ``'MVC'``, stage 1 always built (``in_channels → base_channels``, no residual),
    :class:`CTRGCNBlock` s in ``net``; the top-level buffer ``A`` (unused) is kept for PYSKL checkpoints.

    Args:
        graph_cfg (dict or SkeletonGraph): PYSKL's ``graph_cfg`` or a graph.
        in_channels (int, optional): Input channels. (default: :obj:`3`)
        base_channels (int, optional): Channels of the first stages. (default: :obj:`64`)
        num_stages (int, optional): Stages. (default: :obj:`10`)
        inflate_stages (sequence of int, optional): (default: :obj:`(5, 8)`)
        down_stages (sequence of int, optional): (default: :obj:`(5, 8)`)
        pretrained (str, optional): A checkpoint loaded at the end of the constructor (``strict=False``, see
            :meth:`~SkeletonBackbone.load_pretrained`). PYSKL's ``CTRGCN`` accepts and silently ignores it;
            here it is loaded like the other backbones' ``pretrained``. (default: :obj:`None`)
        num_person (int, optional): Persons :math:`M`. (default: :obj:`2`)
        backend (str, optional): Backend of every graph convolution. (default: :obj:`"auto"`)
        **kwargs: ``kernel_size``, ``dilations``, ``tcn_dropout`` of every block (not split per stage;
            ``tcn_dropout`` is dropped from stage 1).

    Shapes:
        - **input:** :math:`(N, M, T, V, C)`
        - **output:** :math:`(N, M, C', T', V)`
    """

    block_attr = "net"

    def __init__(self, graph_cfg: SkeletonGraph | Mapping, in_channels: int = 3, base_channels: int = 64,
                 num_stages: int = 10, inflate_stages: Sequence[int] = (5, 8),
                 down_stages: Sequence[int] = (5, 8), pretrained: str | os.PathLike | None = None,
                 num_person: int = 2,
                 backend: str = "auto", **kwargs: Any) -> None:
        super().__init__()
        check_keys("CTRGCN", "argument(s)", kwargs, BLOCK_KEYS)
        self._setup("CTRGCN", graph_cfg, in_channels, base_channels, "MVC", num_person, num_stages,
                    inflate_stages, down_stages, backend, pretrained=pretrained)
        self.kwargs = dict(kwargs)
        self.register_buffer("A", graph_tensor(self.graph))
        first = {k: v for k, v in kwargs.items() if k != "tcn_dropout"}
        blocks = [CTRGCNBlock(cin, cout, self.graph, stride, residual=i > 0, backend=backend,
                              **(kwargs if i > 0 else first))
                  for i, cin, cout, stride in self._stage_plan(num_stages, 2, always_first=True)]
        self.net = nn.ModuleList(blocks)
        self.num_stages = len(blocks)
        self._load_pretrained()
