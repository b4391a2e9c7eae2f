r"""ST-GCN and ST-GCN++ backbones (PYSKL ``STGCN``) on channels-last activations."""
from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any, cast

from torch import Tensor, nn

from ...graph import SkeletonGraph
from .._utils import check_choice, reset_module
from ..block import STGCNBlock, split_unit_kwargs
from ..conv.stgcn_conv import BACKENDS, STGCNConv

__all__ = ["STGCN", "STGCNPlusPlus", "build_graph"]

_EPS = 1e-4
_GRAPH_KEYS = ("layout", "mode", "max_hop", "num_filter", "init_std", "init_off", "seed")


def build_graph(graph_cfg: SkeletonGraph | Mapping) -> SkeletonGraph:
    """A :class:`SkeletonGraph` from itself or a PYSKL-style ``graph_cfg`` dict (``layout``, ``mode``, …)."""
    if isinstance(graph_cfg, SkeletonGraph):
        return graph_cfg
    if not isinstance(graph_cfg, Mapping):
        raise ValueError(f"graph_cfg must be a SkeletonGraph or a dict like {{'layout': 'nturgb+d', 'mode': "
                         f"'spatial'}}, got {type(graph_cfg).__name__}")
    bad = sorted(set(graph_cfg) - set(_GRAPH_KEYS))
    if bad:
        raise ValueError(f"graph_cfg: unknown key(s) {bad}; valid keys: {', '.join(_GRAPH_KEYS)}")
    if "layout" not in graph_cfg:
        raise ValueError("graph_cfg: 'layout' is required (e.g. 'nturgb+d', 'openpose', 'coco')")
    return SkeletonGraph(**dict(graph_cfg))


class STGCN(nn.Module):
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
                 backend: str = "auto", **kwargs: Any) -> None:
        super().__init__()
        check_choice("backend", backend, BACKENDS)
        check_choice("data_bn_type", data_bn_type, ("VC", "MVC", None))
        for name, value in (("in_channels", in_channels), ("base_channels", base_channels),
                            ("num_person", num_person), ("num_stages", num_stages)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"STGCN: {name} must be a positive int, got {value!r}")
        split_unit_kwargs(kwargs, who="STGCN")  # validates the names early
        self.graph = build_graph(graph_cfg)
        V = self.graph.num_nodes
        self.num_nodes = V
        self.in_channels = in_channels
        self.base_channels = base_channels
        self.ch_ratio = ch_ratio
        self.num_person = num_person
        self.data_bn_type = data_bn_type
        self.inflate_stages = tuple(inflate_stages)
        self.down_stages = tuple(down_stages)
        self.backend = backend
        self.kwargs = dict(kwargs)
        if data_bn_type == "MVC":
            self.data_bn: nn.Module = nn.BatchNorm1d(num_person * in_channels * V)
        elif data_bn_type == "VC":
            self.data_bn = nn.BatchNorm1d(in_channels * V)
        else:
            self.data_bn = nn.Identity()

        stage_kwargs = [copy.deepcopy(kwargs) for _ in range(num_stages)]
        for key, value in kwargs.items():
            if isinstance(value, tuple) and len(value) == num_stages:
                for i in range(num_stages):
                    stage_kwargs[i][key] = value[i]
        stage_kwargs[0].pop("tcn_dropout", None)

        blocks = []
        if in_channels != base_channels:
            blocks.append(STGCNBlock(in_channels, base_channels, self.graph, 1, residual=False,
                                     backend=backend, **stage_kwargs[0]))
        channels = base_channels
        inflate_times = 0
        for i in range(2, num_stages + 1):
            stride = 1 + (i in self.down_stages)
            if i in self.inflate_stages:
                inflate_times += 1
            out_channels = int(base_channels * ch_ratio ** inflate_times + _EPS)
            blocks.append(STGCNBlock(channels, out_channels, self.graph, stride, backend=backend,
                                     **stage_kwargs[i - 1]))
            channels = out_channels
        if not blocks:
            raise ValueError("STGCN: no blocks to build (num_stages=1 with in_channels == base_channels)")
        self.num_stages = len(blocks)
        self.gcn = nn.ModuleList(blocks)
        self.out_channels = channels

    def reset_parameters(self) -> None:
        reset_module(self.data_bn)
        for block in self._blocks:
            block.reset_parameters()

    @property
    def _blocks(self) -> Sequence[STGCNBlock]:
        """``gcn`` typed as what it holds (one :class:`STGCNBlock` per stage)."""
        return cast("Sequence[STGCNBlock]", self.gcn)

    def convs(self) -> list[STGCNConv]:
        """The :class:`STGCNConv` of every block, in order."""
        return [block.gcn for block in self._blocks]

    def set_backend(self, backend: str) -> None:
        """Switch the aggregation backend of every :class:`STGCNConv`."""
        check_choice("backend", backend, BACKENDS)
        self.backend = backend
        for conv in self.convs():
            conv.backend = backend

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 5:
            raise ValueError(f"{self.__class__.__name__}: x must be (N, M, T, V, C), got shape "
                             f"{tuple(x.shape)}")
        N, M, T, V, C = x.shape
        if V != self.num_nodes or C != self.in_channels:
            raise ValueError(f"{self.__class__.__name__}: x has V={V}, C={C}; expected V={self.num_nodes} "
                             f"(graph layout {self.graph.layout.name!r}) and "
                             f"C=in_channels={self.in_channels}")
        if self.data_bn_type == "MVC":
            if M != self.num_person:
                raise ValueError(f"{self.__class__.__name__}: data_bn_type='MVC' needs M=num_person="
                                 f"{self.num_person} persons, got M={M}")
            x = x.permute(0, 2, 1, 3, 4).reshape(N * T, M * V * C)
            x = self.data_bn(x).view(N, T, M, V, C).permute(0, 2, 1, 3, 4)
        elif self.data_bn_type == "VC":
            x = self.data_bn(x.reshape(N * M * T, V * C))
        x = x.reshape(N * M, T, V, C)
        for block in self.gcn:
            x = block(x)
        _, T2, _, C2 = x.shape
        return x.view(N, M, T2, V, C2).permute(0, 1, 4, 2, 3).contiguous()

    def extra_repr(self) -> str:
        return (f"graph={self.graph!r}, in_channels={self.in_channels}, out_channels={self.out_channels}, "
                f"num_stages={self.num_stages}, backend={self.backend!r}")


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
