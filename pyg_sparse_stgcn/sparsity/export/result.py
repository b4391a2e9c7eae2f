r"""What :func:`~pyg_sparse_stgcn.sparsity.export.to_sparse_kernels` decided, and the timings behind it."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["KernelChoice", "AggregationChoice", "LayoutChoice", "ExportResult", "AGGREGATIONS", "LAYOUTS"]

#: The aggregation kernels an exported graph convolution can use.
AGGREGATIONS = ("dense", "sparse")
#: The layouts of an exported model.
LAYOUTS = ("channels_last", "channel_major", "joint_major")


@dataclass
class KernelChoice:
    r"""CSR or dense for one weight product (a layer of the channels-last model or a product of the
    channel-major model).

    Attributes:
        name (str): The module the weight comes from (e.g. ``"backbone.gcn.3.tcn"``).
        type (str): ``"Linear"``, ``"Conv2d"``, ``"channel_major_1x1"``, ``"channel_major_temporal"``,
            ``"channel_major_graph"`` (the 1×1 convolution of a graph convolution, channel-major),
            ``"joint_major_temporal"`` or ``"joint_major_graph"`` (a whole graph convolution: 1×1
            convolutions and aggregation as one sparse operator over (channel, joint) rows).
        shape (list[int]): The weight's shape (joint-major: the operator's rows and columns).
        sparsity (float): Fraction of zeros of the weight (joint-major: of the operator).
        dense_ms (float, optional): Best measured milliseconds with the dense kernel (:obj:`None`: not timed).
        sparse_ms (float, optional): Best measured milliseconds with the CSR kernel (:obj:`None`: not timed).
        sparse (bool): Whether the CSR kernel is used.
        note (str, optional): Why the layer fell back to the dense kernel although it qualified (e.g. its
            weight is read inside a unit's fused product), :obj:`None` otherwise.
    """

    name: str
    type: str
    shape: list[int]
    sparsity: float
    dense_ms: float | None = None
    sparse_ms: float | None = None
    sparse: bool = False
    note: str | None = None


@dataclass
class AggregationChoice:
    r"""The aggregation over joints of one graph convolution.

    Attributes:
        name (str): The graph convolution (``"backbone.gcn.0.gcn"``).
        layout (str): ``"channels_last"`` (the layer's own backend), ``"channel_major"`` or
            ``"joint_major"`` (always ``"sparse"``: the aggregation is part of the layer's sparse operator).
        entries (int): Non-zero entries :math:`(k, v, w)` of the aggregation operator: the real entries
            that survived the edge masks.
        edges (int): Candidate edges left after removing pruned edges.
        choice (str): ``"dense"`` or ``"sparse"`` (:data:`AGGREGATIONS`). Channels-last: the layer's
            ``backend``. Channel-major: ``"dense"`` is one :math:`(V \times V)` product per live subset
            after the 1×1 convolution, ``"sparse"`` works joint by joint on the kept entries only.
        dense_ms (float, optional): Best measured milliseconds with the dense aggregation.
        sparse_ms (float, optional): Best measured milliseconds with the sparse aggregation.
        forced (bool): Whether ``choice`` was forced (``aggregation='dense'|'sparse'``) rather than measured.
    """

    name: str
    layout: str
    entries: int
    edges: int
    choice: str = "dense"
    dense_ms: float | None = None
    sparse_ms: float | None = None
    forced: bool = False


@dataclass
class LayoutChoice:
    r"""How the layout was decided.

    Attributes:
        requested (str): The ``layout`` argument (``"auto"``, ``"channel_major"`` or ``"channels_last"``).
        dense_ms (float, optional): With ``"auto"``: best milliseconds of the folded channels-last model.
        channel_major_ms (float, optional): With ``"auto"``: best milliseconds of the channel-major model.
        joint_major_ms (float, optional): With ``"auto"``: best milliseconds of the joint-major model.
        channel_major_unsupported (str, optional): Why the channel-major model could not be built.
        joint_major_unsupported (str, optional): Why the joint-major model was not a candidate.
    """

    requested: str
    dense_ms: float | None = None
    channel_major_ms: float | None = None
    joint_major_ms: float | None = None
    channel_major_unsupported: str | None = None
    joint_major_unsupported: str | None = None


@dataclass
class ExportResult:
    r"""The decisions of :func:`~pyg_sparse_stgcn.sparsity.export.to_sparse_kernels`, kept on the exported
    model as ``model.export_result``.

    Attributes:
        layout (str): ``"channels_last"``, ``"channel_major"`` or ``"joint_major"`` (:data:`LAYOUTS`).
        layout_choice (LayoutChoice): How the layout was decided.
        products (list[KernelChoice]): CSR or dense, per weight product.
        aggregations (list[AggregationChoice]): Dense or sparse, per graph convolution.
        edges_removed (int): Candidate edges removed from the graph convolutions (no live entry left).
    """

    layout: str
    layout_choice: LayoutChoice
    products: list[KernelChoice] = field(default_factory=list)
    aggregations: list[AggregationChoice] = field(default_factory=list)
    edges_removed: int = 0

    def fallbacks(self) -> list[str]:
        """One message per fallback: the channel-major layout when it was requested through ``'auto'`` but
        is unsupported, and every layer kept on another kernel than the one it qualified for (which and
        why)."""
        out = []
        reason = self.layout_choice.channel_major_unsupported
        if reason and self.layout == "channels_last":
            out.append(f"layout: channels_last instead of channel_major ({reason})")
        reason = self.layout_choice.joint_major_unsupported
        if reason and self.layout != "joint_major":
            out.append(f"layout: {self.layout} instead of joint_major ({reason})")
        out += [c.note for c in self.products if c.note]
        return out

    @property
    def sparse_kernel_choices(self) -> list[dict[str, Any]]:
        """:attr:`products` as dicts (the format of the former ``model.sparse_kernel_choices``)."""
        return [asdict(c) for c in self.products]

    def to_dict(self) -> dict[str, Any]:
        """Everything as JSON-serialisable dicts and lists."""
        return asdict(self)
