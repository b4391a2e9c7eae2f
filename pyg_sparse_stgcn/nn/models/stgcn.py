r"""ST-GCN and ST-GCN++ backbones (PYSKL ``STGCN``) on channels-last activations."""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, cast

from torch import nn

from ...graph import SkeletonGraph
from ..block import GCN_KEYS, TCN_KEYS, STGCNBlock, route
from ..conv.stgcn_conv import STGCNConv
from ._backbone import SkeletonBackbone, build_graph

__all__ = ["STGCN", "STGCNPlusPlus", "build_graph"]


class STGCN(SkeletonBackbone):
    r"""The ST-GCN backbone with every option of PYSKL's ``STGCN``, on channels-last activations.

    The input :math:`(N, M, T, V, C)` goes through ``data_bn`` (``'VC'``: ``BatchNorm1d(V C)`` shared by the
    persons; ``'MVC'``: ``BatchNorm1d(M V C)``; :obj:`None`: none), is viewed as :math:`(N M, T, V, C)` and
    runs through ``num_stages`` :class:`STGCNBlock` s (``gcn``). Stage :math:`i \ge 2` has stride 2 when
    :math:`i \in` ``down_stages`` and multiplies the channels by ``ch_ratio`` when :math:`i \in`
    ``inflate_stages``; when ``in_channels != base_channels`` the first block maps ``in_channels`` to
    ``base_channels`` without residual, otherwise there is no first block (PYSKL). With the defaults:
    10 blocks, channels 64/128/256, :math:`T' = \lceil\lceil T/2 \rceil / 2\rceil`.

    Args:
        graph_cfg (dict or SkeletonGraph): The graph: a :class:`SkeletonGraph` or PYSKL's ``graph_cfg`` dict
            (``layout``, ``mode``, ``max_hop``, ``num_filter``, ``init_std``, ``init_off``, ``seed``).
        in_channels (int, optional): Input channels :math:`C`. (default: :obj:`3`)
        base_channels (int, optional): Channels of the first stages. (default: :obj:`64`)
        data_bn_type (str, optional): ``'VC'``, ``'MVC'`` or :obj:`None`. (default: :obj:`"VC"`)
        ch_ratio (float, optional): Channel multiplier at an inflate stage. (default: :obj:`2`)
        num_person (int, optional): Persons :math:`M` (used by ``'MVC'``). (default: :obj:`2`)
        num_stages (int, optional): Number of stages. (default: :obj:`10`)
        inflate_stages (sequence of int, optional): Stages that inflate channels. (default: :obj:`(5, 8)`)
        down_stages (sequence of int, optional): Stages with temporal stride 2. (default: :obj:`(5, 8)`)
        pretrained (str, optional): A checkpoint loaded at the end of the constructor as PYSKL's
            ``init_weights`` does (``strict=False``; see :meth:`~SkeletonBackbone.load_pretrained`).
            (default: :obj:`None`)
        backend (str, optional): Aggregation backend of every :class:`STGCNConv`. (default: :obj:`"auto"`)
        **kwargs: ``gcn_*`` / ``tcn_*`` options of :class:`STGCNBlock` (e.g. ``gcn_adaptive='init'``,
            ``tcn_type='mstcn'``, ``tcn_dropout=0.5``). A tuple of length ``num_stages`` is split per stage;
            ``tcn_dropout`` is dropped from stage 1 (PYSKL).

    Shapes:
        - **input:** :math:`(N, M, T, V, C)`
        - **output:** :math:`(N, M, C', T', V)` (PYSKL's layout), :math:`C'` = :attr:`out_channels`
    """

    def __init__(self, graph_cfg: SkeletonGraph | Mapping, in_channels: int = 3, base_channels: int = 64,
                 data_bn_type: str | None = "VC", ch_ratio: float = 2, num_person: int = 2,
                 num_stages: int = 10,
                 inflate_stages: Sequence[int] = (5, 8), down_stages: Sequence[int] = (5, 8),
                 pretrained: str | os.PathLike | None = None, backend: str = "auto", **kwargs: Any) -> None:
        super().__init__()
        self._setup("STGCN", graph_cfg, in_channels, base_channels, data_bn_type, num_person, num_stages,
                    inflate_stages, down_stages, backend,
                    check_kwargs=lambda: route(kwargs, "STGCN", GCN_KEYS, TCN_KEYS),  # validates the names early
                    pretrained=pretrained)
        self.ch_ratio = ch_ratio
        self.kwargs = dict(kwargs)
        stage_kwargs = self._stage_kwargs(kwargs, num_stages, ("tcn_dropout",))
        blocks = [STGCNBlock(cin, cout, self.graph, stride, residual=i > 0, backend=backend, **stage_kwargs[i])
                  for i, cin, cout, stride in self._stage_plan(num_stages, ch_ratio, always_first=False,
                                                               who="STGCN")]
        self.num_stages = len(blocks)
        self.gcn = nn.ModuleList(blocks)
        self._load_pretrained()

    @property
    def _blocks(self) -> Sequence[STGCNBlock]:
        """``gcn`` typed as what it holds (one :class:`STGCNBlock` per stage)."""
        return cast("Sequence[STGCNBlock]", self.gcn)

    def convs(self) -> list[STGCNConv]:
        """The :class:`STGCNConv` of every block, in order."""
        return [block.gcn for block in self._blocks]


class STGCNPlusPlus(STGCN):
    r"""ST-GCN++ (PYSKL): :class:`STGCN` with ``gcn_adaptive='init'``, ``gcn_with_res=True`` and
    ``tcn_type='mstcn'`` by default (graph mode ``'spatial'`` in PYSKL's configs).

    Args:
        graph_cfg (dict or SkeletonGraph): As in :class:`STGCN`; a dict without ``mode`` gets ``'spatial'``.
        **kwargs: Every other :class:`STGCN` argument; explicit ``gcn_*``/``tcn_*`` values override the
            defaults.

    Shapes:
        - **input:** :math:`(N, M, T, V, C)`
        - **output:** :math:`(N, M, C', T', V)`
    """

    def __init__(self, graph_cfg: SkeletonGraph | Mapping, **kwargs: Any) -> None:
        if isinstance(graph_cfg, Mapping) and "mode" not in graph_cfg:
            graph_cfg = {**graph_cfg, "mode": "spatial"}
        kwargs.setdefault("gcn_adaptive", "init")
        kwargs.setdefault("gcn_with_res", True)
        kwargs.setdefault("tcn_type", "mstcn")
        super().__init__(graph_cfg, **kwargs)
