r""":func:`to_sparse_kernels`: an inference model whose pruned weights and edges are removed work, with every
kernel choice measured on the model's real input."""
from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Mapping
from typing import Any, cast

import torch
from torch import Tensor, nn

from ...nn.temporal import CTRMultiScaleTemporalConv, MultiScaleTemporalConv
from ...timing import best_times
from ..targets import targets
from . import native
from .channel_major import ChannelMajorSTGCN, _CMGraphConv, _CMProduct, release_workspaces
from .csr import CSRLinear, CSRTemporalConv, is_temporal_conv
from .fold import fold, remove_pruned_edges
from .joint_major import JointMajorSTGCN, _JMGraph
from .result import AGGREGATIONS, LAYOUTS, AggregationChoice, ExportResult, KernelChoice, LayoutChoice

__all__ = ["to_sparse_kernels"]


def _capture(model: nn.Module, modules: Mapping[str, nn.Module], example_input: Tensor,
             clone: bool = False) -> dict[str, tuple[tuple, dict]]:
    """The positional and keyword arguments each of ``modules`` receives when ``model`` runs on
    ``example_input`` (first call only)."""
    captured: dict[str, tuple[tuple, dict]] = {}

    def hook(name: str):
        def fn(mod: nn.Module, args: tuple, kwargs: dict) -> None:
            if name not in captured:
                args = tuple(a.clone() if clone and isinstance(a, Tensor) else a for a in args)
                captured[name] = (args, dict(kwargs))
        return fn

    handles = [m.register_forward_pre_hook(hook(n), with_kwargs=True) for n, m in modules.items()]
    try:
        model(example_input)
    finally:
        for h in handles:
            h.remove()
    return captured


def _time_two(a: Callable[[], Any], b: Callable[[], Any], device: torch.device,
              repeats: int) -> tuple[float, float]:
    """Best milliseconds of ``a`` and ``b`` over ``repeats`` alternating rounds (one warm-up call each)."""
    t = best_times({"a": a, "b": b}, device, rounds=repeats, warmup=1)
    return 1e3 * t["a"], 1e3 * t["b"]


def _time_aggregation(rec: AggregationChoice, select: Callable[[str], None], call: Callable[[], Any],
                      device: torch.device, repeats: int) -> None:
    """Time ``call`` after ``select('dense')`` and after ``select('sparse')``; record both and the faster."""
    def run(kind: str) -> None:
        select(kind)
        call()

    rec.dense_ms, rec.sparse_ms = _time_two(lambda: run("dense"), lambda: run("sparse"), device, repeats)
    rec.choice = "sparse" if rec.sparse_ms < rec.dense_ms else "dense"


def _choose_layer_aggregations(model: nn.Module, example_input: Tensor, repeats: int,
                               aggregation: str) -> list[AggregationChoice]:
    """Set ``backend`` of every graph convolution (any
    :class:`~pyg_sparse_stgcn.nn.conv.skeleton_mp.SkeletonMessagePassing`: ST-GCN, AAGCN, CTR-GCN and
    DG-STGCN units) of ``model`` to ``'dense'`` or ``'sparse'`` (forced, or the faster one on the layer's
    input from ``example_input``). Both backends of every unit are exact; for the units with a
    data-dependent adjacency ``'dense'`` is their fused per-sample product, ``'sparse'`` the static part
    through the sparse operator plus the dynamic term densely."""
    from ...nn.conv.skeleton_mp import SkeletonMessagePassing

    convs = {n: m for n, m in model.named_modules() if isinstance(m, SkeletonMessagePassing)}
    captured = _capture(model, convs, example_input) if aggregation == "auto" and convs else {}
    choices = []
    for name, conv in convs.items():
        entries = int((conv.edge_weight_effective() != 0).sum())
        rec = AggregationChoice(name, "channels_last", entries, conv.num_edges)
        if aggregation != "auto":
            rec.choice, rec.forced = aggregation, True
        elif name in captured:
            args, kwargs = captured[name]
            _time_aggregation(rec, functools.partial(setattr, conv, "backend"),
                              functools.partial(cast(nn.Module, conv), *args, **kwargs), example_input.device, repeats)
        conv.backend = rec.choice
        choices.append(rec)
    return choices


def _choose_products(cm: ChannelMajorSTGCN, example_input: Tensor, min_sparsity: float, repeats: int,
                     force: bool | None) -> list[KernelChoice]:
    """Set ``use_csr`` of every product of ``cm`` (measured on the input it gets from ``example_input``)."""
    prods = cm.products()
    for p in prods:
        p.use_csr = False
    captured = _capture(cm, {p.name: p for p in prods}, example_input, clone=True)
    device = example_input.device
    choices = []
    for p in prods:
        rec = KernelChoice(p.name, p.kind, list(p.weight.shape), p.sparsity)
        x = captured.get(p.name, ((None,), {}))[0][0]
        if p.weight.numel() and rec.sparsity >= min_sparsity and x is not None and force is not False:
            if force:
                rec.sparse = True
            else:
                def run(csr: bool, p: _CMProduct | _CMGraphConv = p, x: Tensor = x) -> None:
                    p.use_csr = csr
                    p(x)

                rec.dense_ms, rec.sparse_ms = _time_two(lambda: run(False), lambda: run(True), device, repeats)
                rec.sparse = rec.sparse_ms < rec.dense_ms
        p.use_csr = rec.sparse
        choices.append(rec)
    return choices


def _choose_graph_aggregations(cm: ChannelMajorSTGCN, example_input: Tensor, repeats: int,
                               aggregation: str) -> list[AggregationChoice]:
    """Set ``aggregation`` of every graph convolution of ``cm`` (forced, or measured on its real input)."""
    gcs = cm.graph_convs()
    for g in gcs:
        g.aggregation = "dense"
    captured = (_capture(cm, {g.name: g for g in gcs}, example_input, clone=True)
                if aggregation == "auto" else {})
    choices = []
    for g in gcs:
        rec = AggregationChoice(g.name, "channel_major", g.num_entries, g.num_edges)
        if aggregation != "auto":
            rec.choice, rec.forced = aggregation, True
        elif g.num_entries and g.name in captured:
            _time_aggregation(rec, functools.partial(setattr, g, "aggregation"),
                              functools.partial(g, captured[g.name][0][0]), example_input.device, repeats)
        g.aggregation = rec.choice
        choices.append(rec)
    return choices


def _swap_csr_layers(out: nn.Module, example_input: Tensor, min_sparsity: float, repeats: int,
                     force: bool | None) -> list[KernelChoice]:
    """Replace each large enough ``Linear`` / temporal ``Conv2d`` of the channels-last model by its CSR
    kernel where forced or measured faster on its real input."""
    # multi-scale temporal units call their branch projections as modules while the kernels are chosen, so
    # that each can be captured, timed and swapped; the ones left dense are fused again afterwards
    fused_units = [u for u in out.modules()
                   if isinstance(u, (MultiScaleTemporalConv, CTRMultiScaleTemporalConv)) and u.fuse_branches]
    for unit in fused_units:
        unit.fuse_branches = False
    cand: dict[str, nn.Linear | nn.Conv2d] = {}
    for t in targets(out, "weight"):
        m = t.module
        if t.module_name and (isinstance(m, nn.Linear) or is_temporal_conv(m)):
            cand[t.module_name] = m
    captured = _capture(out, cand, example_input)
    device = example_input.device
    choices = []
    for name, m in cand.items():
        w = m.weight
        rec = KernelChoice(name, type(m).__name__, list(w.shape), float((w == 0).float().mean()))
        x = captured.get(name, ((None,), {}))[0][0]
        qualifies = rec.sparsity >= min_sparsity and force is not False
        if x is None and qualifies:
            # e.g. AAGCN's conv_d / conv_a / conv_b and CTR-GCN's conv3 / conv4: the unit concatenates their
            # weights into one fused product, so a CSR module in their place would never run
            owner = name.rpartition(".")[0] or "<root>"
            rec.note = (f"{name} ({type(m).__name__}) kept dense: it is never called as a module (its unit "
                        f"{owner!r} reads the weight inside a fused product), so a CSR kernel cannot "
                        f"replace it")
        if qualifies and x is not None:
            repl = CSRLinear(m) if isinstance(m, nn.Linear) else CSRTemporalConv(m)
            if force:
                rec.sparse = True
            else:
                rec.dense_ms, rec.sparse_ms = _time_two(functools.partial(m, x), functools.partial(repl, x),
                                                        device, repeats)
                rec.sparse = rec.sparse_ms < rec.dense_ms
            if rec.sparse:
                parent_name, _, child = name.rpartition(".")
                parent = out.get_submodule(parent_name) if parent_name else out
                setattr(parent, child, repl)
        choices.append(rec)
    for unit in fused_units:
        unit.fuse_branches = True
    return choices


def _joint_major_unsupported(example_input: Tensor, aggregation: str, layout: str) -> str | None:
    """Why the joint-major model is not a candidate for ``example_input`` (:obj:`None` if it is)."""
    if aggregation == "dense" and layout == "auto":
        return "aggregation='dense' was requested; the joint-major graph convolution aggregates sparsely"
    if example_input.dtype != torch.float32 or example_input.device.type != "cpu":
        return (f"its native kernel runs float32 on CPU; the example input is {example_input.dtype} on "
                f"{example_input.device}")
    if not native.available():
        return ("the native kernel is not available (no C compiler found, or PYG_SPARSE_STGCN_NATIVE=0; "
                "see pyg_sparse_stgcn.sparsity.export.native)")
    return None


def _joint_major_records(jm: JointMajorSTGCN, forced: bool) -> tuple[list[KernelChoice], list[AggregationChoice]]:
    """One record per sparse operator and per graph convolution of ``jm``."""
    products = []
    for op in jm.operators():
        graph = isinstance(op, _JMGraph)
        rep_out, rep_in = (op.num_nodes, op.num_nodes) if isinstance(op, _JMGraph) else (1, op.k)
        rows, cols = op.out_channels * rep_out, op.in_channels * rep_in
        products.append(KernelChoice(op.name, "joint_major_graph" if graph else "joint_major_temporal",
                                     [rows, cols], 1.0 - op.rows.nnz / max(1, rows * cols), sparse=True))
    aggs = []
    for blk in jm.channel_major.blocks:
        g = cast(_CMGraphConv, blk.gcn)
        aggs.append(AggregationChoice(g.name, "joint_major", g.num_entries, g.num_edges, "sparse",
                                      forced=forced))
    return products, aggs


def _finish(model: nn.Module, result: ExportResult) -> nn.Module:
    cast(Any, model).export_result = result  # a plain attribute on whatever module was exported
    notes = [c.note for c in result.products if c.note]  # per layer (the layout's reason is recorded only)
    if notes:
        warnings.warn("to_sparse_kernels: fell back for some layers (see export_result.fallbacks()):\n  "
                      + "\n  ".join(notes), UserWarning, stacklevel=3)
    if not isinstance(model, (ChannelMajorSTGCN, JointMajorSTGCN)):
        # the attributes earlier versions set on the exported model, as copies of ``export_result`` (a
        # ChannelMajorSTGCN reads them from it through properties)
        legacy = {"sparse_kernel_choices": result.sparse_kernel_choices, "edges_removed": result.edges_removed,
                  "layout": result.layout, "layout_choice": result.to_dict()["layout_choice"]}
        for name, value in legacy.items():
            if name not in model.__dict__ and hasattr(model, name):
                continue  # a property or attribute of the model itself: leave it alone
            setattr(model, name, value)
    return model.eval()


@torch.no_grad()
def to_sparse_kernels(model: nn.Module, example_input: Tensor, min_sparsity: float = 0.5, repeats: int = 5,
                      force: bool | None = None, layout: str = "auto", aggregation: str = "auto") -> nn.Module:
    r"""An inference model in which pruned weights and pruned edges are removed work.

    :func:`~pyg_sparse_stgcn.sparsity.export.fold` first, then every candidate edge without a live entry
    is removed from its graph convolution (``STGCNConv.prune_edges_``), then one of three inference paths:

    * ``layout='channel_major'``: a :class:`ChannelMajorSTGCN` (the whole backbone in :math:`(C, T, B, V)`,
      batch norms folded). Each weight product is CSR or dense, and each graph convolution aggregates
      densely (one :math:`(V \times V)` product per live subset) or sparsely (one product per kept entry,
      so that a removed entry costs nothing): each decided by measurement on the input the product
      receives from ``example_input``. A :class:`ValueError` names what it does not support (e.g.
      ``mstcn``).
    * ``layout='channels_last'``: the folded model. Every graph convolution's ``backend`` becomes
      ``'dense'`` or ``'sparse'`` (the sparse operator holds the kept entries only), and each
      :class:`~torch.nn.Linear` / temporal :class:`~torch.nn.Conv2d` whose weight is at least
      ``min_sparsity`` zeros is replaced by :class:`CSRLinear` / :class:`CSRTemporalConv`, each where
      measured faster.
    * ``layout='joint_major'``: a :class:`JointMajorSTGCN` (ST-GCN only; float32 on CPU with the native
      kernel of :mod:`~pyg_sparse_stgcn.sparsity.export.native`): every graph convolution (1×1 convolutions
      and aggregation over joints) and every temporal convolution is **one** sparse operator over the kept
      non-zeros, applied by one pass of the native kernel with bias, residual and ReLU fused. It wraps the
      channel-major model above (kernels chosen as there), which it runs for other dtypes and devices.
    * ``layout='auto'``: the fastest of the candidates the model supports, measured on ``example_input``
      (whole model, alternating rounds): the channels-last model with its aggregation backends chosen, the
      channel-major model and the joint-major model (the reason a candidate was skipped is recorded in
      ``export_result.layout_choice``).

    In no layout does a removed edge send a message: it is absent from the layer's ``edge_index`` and from
    the sparse operators (the dense kernels multiply by its zero weight).

    AAGCN, CTR-GCN and DG-STGCN models take the channels-last path with the same per-layer decisions (the
    channel-major model is ST-GCN only: ``layout='auto'`` falls back with the reason recorded, and
    ``'channel_major'`` raises it). Where one layer cannot get the requested kernel it falls back alone —
    e.g. a ``Linear`` whose weight the unit reads inside its fused product (AAGCN's ``conv_d`` /
    ``conv_a`` / ``conv_b``, CTR-GCN's ``conv3`` / ``conv4``) stays dense — and a :class:`UserWarning`
    names every such layer and why (also in ``export_result.fallbacks()``).

    Args:
        model (torch.nn.Module): A masked model (or generator / ensemble); it is not changed.
        example_input (torch.Tensor): A representative input batch (same device as the model); every
            candidate kernel is timed on the input it receives from this batch.
        min_sparsity (float, optional): Weights with fewer zeros than this fraction stay dense without
            timing. (default: :obj:`0.5`)
        repeats (int, optional): Timed rounds per decision, alternating the candidates; the best time of
            each decides. (default: :obj:`5`)
        force (bool, optional): Weight products: :obj:`True` makes every candidate above ``min_sparsity``
            CSR, :obj:`False` none, :obj:`None` decides by measurement. (default: :obj:`None`)
        layout (str, optional): ``'auto'``, ``'joint_major'``, ``'channel_major'`` or ``'channels_last'``.
            (default: :obj:`"auto"`)
        aggregation (str, optional): Aggregation over joints: ``'dense'`` or ``'sparse'`` for every graph
            convolution, or ``'auto'`` to decide each by measurement. (default: :obj:`"auto"`)

    Returns:
        torch.nn.Module: An inference model in eval mode. Its ``export_result``
        (:class:`~pyg_sparse_stgcn.sparsity.export.ExportResult`) holds every decision with its timings.
        For compatibility, ``sparse_kernel_choices`` (:attr:`ExportResult.products` as dicts),
        ``edges_removed``, ``layout`` and ``layout_choice`` (a dict) read the same values.
    """
    if layout not in ("auto", *LAYOUTS):
        raise ValueError(f"to_sparse_kernels: unknown layout {layout!r}; valid values: 'auto', "
                         f"{', '.join(repr(v) for v in LAYOUTS)}")
    if aggregation not in ("auto", *AGGREGATIONS):
        raise ValueError(f"to_sparse_kernels: unknown aggregation {aggregation!r}; valid values: 'auto', "
                         "'dense', 'sparse'")
    out = fold(model).eval()
    result = ExportResult("channels_last", LayoutChoice(layout), edges_removed=remove_pruned_edges(out))
    layer_aggs: list[AggregationChoice] | None = None
    if layout != "channels_last":
        try:
            cm: ChannelMajorSTGCN | None = ChannelMajorSTGCN(out).eval()
        except ValueError as err:
            if layout == "channel_major":
                raise
            cm, result.layout_choice.channel_major_unsupported = None, str(err)
        if cm is not None:
            jm: JointMajorSTGCN | None = None
            if layout in ("auto", "joint_major"):
                reason = _joint_major_unsupported(example_input, aggregation, layout)
                if reason is not None and layout == "joint_major":
                    raise ValueError(f"to_sparse_kernels: layout='joint_major' is unavailable: {reason}")
                result.layout_choice.joint_major_unsupported = reason
                if reason is None:
                    jm = JointMajorSTGCN(cm).eval()
            # the channel-major kernels (also what a joint-major model runs for other dtypes and devices)
            products = _choose_products(cm, example_input, min_sparsity, repeats, force)
            aggs = _choose_graph_aggregations(cm, example_input, repeats, aggregation)
            take = layout
            if layout == "auto":
                layer_aggs = _choose_layer_aggregations(out, example_input, repeats, aggregation)
                fns = {"channels_last": lambda: out(example_input), "channel_major": lambda: cm(example_input)}
                if jm is not None:
                    fns["joint_major"] = lambda: cast(JointMajorSTGCN, jm)(example_input)
                t = best_times(fns, example_input.device, rounds=repeats, warmup=1)
                lc = result.layout_choice
                lc.dense_ms, lc.channel_major_ms = 1e3 * t["channels_last"], 1e3 * t["channel_major"]
                lc.joint_major_ms = 1e3 * t["joint_major"] if "joint_major" in t else None
                take = min(t, key=t.__getitem__)
            if take == "channel_major":
                result.layout, result.products, result.aggregations = "channel_major", products, aggs
                return _finish(cm, result)
            if take == "joint_major" and jm is not None:
                release_workspaces(cm)  # the wrapped model runs only for other dtypes and devices
                result.layout = "joint_major"
                result.products, result.aggregations = _joint_major_records(jm, aggregation != "auto")
                return _finish(jm, result)
    if layer_aggs is None:
        layer_aggs = _choose_layer_aggregations(out, example_input, repeats, aggregation)
    result.aggregations = layer_aggs
    result.products = _swap_csr_layers(out, example_input, min_sparsity, repeats, force)
    return _finish(out, result)
