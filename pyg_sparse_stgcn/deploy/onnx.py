r"""ONNX export of folded dense and pruned models through a dense aggregation path (no scatter ops), and an
onnxruntime session with the interface of a torch model.

PyG-style graph layers export badly to ONNX: their message passing becomes ``ScatterElements`` /
``ScatterND`` (pyg #8415, #7890, #6000; pytorch #65138). :func:`export_onnx` first folds the masks
(:func:`~pyg_sparse_stgcn.sparsity.export.fold`), then replaces every
:class:`~pyg_sparse_stgcn.nn.STGCNConv` by :class:`DenseGraphConv`, which holds the layer's effective
adjacency as one constant :math:`(V \times VK)` (or :math:`(VK \times V)`) operator and aggregates with a
single ``MatMul``; pruned edge entries are zeros of that constant. Every other graph unit (AAGCN's
:class:`~pyg_sparse_stgcn.nn.conv.AAGCNConv`, CTR-GCN's :class:`~pyg_sparse_stgcn.nn.conv.CTRGCNConv`,
DG-STGCN's :class:`~pyg_sparse_stgcn.nn.conv.DGGCNConv`: any
:class:`~pyg_sparse_stgcn.nn.conv.skeleton_mp.SkeletonMessagePassing`) is frozen the same way
(:meth:`~pyg_sparse_stgcn.nn.conv.skeleton_mp.SkeletonMessagePassing.freeze_dense_`): its static adjacency
and its connection mask become constants, the static aggregation one ``MatMul``, and the data-dependent
terms (attention, refined and dynamic graphs) stay the dense per-sample products they are, multiplied by
the constant connection mask, so a pruned connection carries no message in ONNX either. Everything else
(``Linear``, temporal ``Conv2d``, batch norms, pooling, the head) exports as plain ONNX operators.
"""
from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from ..nn.conv.skeleton_mp import SkeletonMessagePassing
    from ..nn.conv.stgcn_conv import STGCNConv

__all__ = ["export_onnx", "DenseGraphConv", "dense_graph_unit", "OnnxModel", "onnx_ready", "check_onnx_exportable",
           "ONNX_METADATA_KEY"]

#: The ``metadata_props`` key under which :func:`export_onnx` stores its ``metadata`` (JSON).
ONNX_METADATA_KEY = "pyg_sparse_stgcn"

# module classes (by qualified module prefix) that export as they are
_OK_PREFIXES = ("torch.nn.modules", "pyg_sparse_stgcn.nn", "pyg_sparse_stgcn.sparsity.ensemble",
                "pyg_sparse_stgcn.deploy")


class DenseGraphConv(nn.Module):
    r"""The inference form of a folded :class:`~pyg_sparse_stgcn.nn.STGCNConv`: the same linear map, batch
    norm, residual and activation, with the aggregation over joints as one constant dense operator
    (``MatMul`` in ONNX, no gather or scatter).

    For ``conv_pos='pre'`` the operator is :math:`(V, V K)` with entry ``[w, v K + k] = A[k, v, w]``
    applied to the ``Linear`` output viewed as :math:`(\ldots, V K, C)`; for ``'post'`` it is
    :math:`(V K, V)` with ``[w K + k, v] = A[k, v, w]`` applied to the input before the ``Linear``.

    Args:
        conv (STGCNConv): A folded layer (its ``adjacency()`` holds the effective, masked edge weights).

    Shapes:
        - **input:** :math:`(*, V, C_{in})`
        - **output:** :math:`(*, V, C_{out})`
    """

    operator: Tensor  # buffer

    def __init__(self, conv: STGCNConv) -> None:
        super().__init__()
        A = conv.dense_operator()[0].float()  # (K, V, V): [k, v, w] for v -> w
        K, V, _ = A.shape
        self.pre = conv.conv_pos == "pre"
        self.num_nodes, self.num_subsets = int(V), int(K)
        op = A.permute(2, 1, 0).reshape(V, V * K) if self.pre else A.permute(2, 0, 1).reshape(V * K, V)
        self.register_buffer("operator", op.contiguous())
        self.conv, self.bn, self.act, self.down = conv.conv, conv.bn, conv.act, conv.down
        self.with_res = bool(conv.with_res)

    def _aggregate(self, h: Tensor) -> Tensor:
        V, K = self.num_nodes, self.num_subsets
        lead = h.shape[:-2]
        C = h.size(-1) // K if self.pre else h.size(-1)
        h3 = h.reshape(-1, self.operator.size(1), C)
        out = torch.matmul(self.operator, h3)
        return out.reshape(*lead, V, C if self.pre else C * K)

    def forward(self, x: Tensor, edge_index: Any = None, edge_weight: Any = None) -> Tensor:
        """``x`` :math:`(*, V, C_{in})`; the layer's own (folded) graph only: an explicit graph is refused."""
        if edge_index is not None or edge_weight is not None:
            raise ValueError("DenseGraphConv: runs the layer's own folded graph; an explicit edge_index / "
                             "edge_weight is not supported")
        res = None
        if self.with_res:
            res = x if self.down is None else self.down(x)
        out = self._aggregate(self.conv(x)) if self.pre else self.conv(self._aggregate(x))
        out = self.bn(out)
        if res is not None:
            out = out + res
        return self.act(out)

    def extra_repr(self) -> str:
        return f"num_nodes={self.num_nodes}, num_subsets={self.num_subsets}, pre={self.pre}"


def check_onnx_exportable(model: nn.Module) -> None:
    """Check, before any work, that every module of ``model`` exports through :func:`export_onnx`.

    Raises:
        ValueError: Naming the first unsupported module (its path and class), e.g. the CSR layers or the
            channel-major model of :func:`~pyg_sparse_stgcn.sparsity.export.to_sparse_kernels`, which run
            only in torch.
    """
    from ..nn.conv.skeleton_mp import SkeletonMessagePassing

    skip: tuple[str, ...] = ()
    for name, m in model.named_modules():
        if skip and name.startswith(skip):
            continue
        if isinstance(m, SkeletonMessagePassing):
            # replaced whole (DenseGraphConv) or frozen whole (freeze_dense_): its PyG internals do not matter,
            # and its own sub-layers are checked by the trace itself
            skip += (name + ".",)
            continue
        if type(m).__module__.startswith("pyg_sparse_stgcn.nn.conv") and type(m).__name__.endswith("Conv"):
            raise ValueError(f"export_onnx: graph convolution {name!r} ({type(m).__name__}) has no dense ONNX "
                             f"form yet (supported: the SkeletonMessagePassing units of ST-GCN, ST-GCN++, "
                             f"AAGCN, CTR-GCN and DG-STGCN)")
        if name.split(".")[-1] in ("parametrizations", "original") or _is_mask_machinery(m):
            continue  # folded away
        mod = type(m).__module__
        if mod.startswith("pyg_sparse_stgcn.sparsity.export") or not mod.startswith(_OK_PREFIXES):
            where = name or "<root>"
            raise ValueError(
                f"export_onnx: module {where!r} ({type(m).__name__} from {mod}) is not supported; export the "
                f"folded torch model (a dense, masked, generator or ensemble model, before to_sparse_kernels) — "
                f"supported are torch.nn layers and this library's nn / ensemble modules")


def _is_mask_machinery(m: nn.Module) -> bool:
    mod = type(m).__module__
    return mod.startswith(("torch.nn.utils.parametrize", "pyg_sparse_stgcn.sparsity.masks",
                           "pyg_sparse_stgcn.sparsity.generator"))


def onnx_ready(model: nn.Module) -> nn.Module:
    r"""A copy of ``model`` ready for ONNX export: masks folded
    (:func:`~pyg_sparse_stgcn.sparsity.export.fold`), every :class:`~pyg_sparse_stgcn.nn.STGCNConv`
    replaced by a :class:`DenseGraphConv`, every other graph unit frozen into its dense inference form
    (:func:`dense_graph_unit`), eval mode. Outputs equal the model's in eval mode.

    Raises:
        ValueError: For a module that cannot be exported (see :func:`check_onnx_exportable`).
    """
    from ..nn.conv.skeleton_mp import SkeletonMessagePassing
    from ..sparsity.export import fold

    check_onnx_exportable(model)
    out = fold(model) if _has_masks(model) else copy.deepcopy(model)
    out.eval()
    for m in list(out.modules()):
        for cname, child in list(m.named_children()):
            if isinstance(child, SkeletonMessagePassing):
                setattr(m, cname, dense_graph_unit(child))
    for name, m in out.named_modules():
        if type(m).__name__ == "STGCNConv":  # pragma: no cover - replaced above
            raise ValueError(f"export_onnx: graph convolution {name!r} was not replaced")
    return out.eval()


def dense_graph_unit(unit: SkeletonMessagePassing) -> nn.Module:
    r"""The dense inference form of one graph unit, for ONNX (no gather, scatter or sparse operator).

    A :class:`~pyg_sparse_stgcn.nn.STGCNConv` becomes a :class:`DenseGraphConv`; any other
    :class:`~pyg_sparse_stgcn.nn.conv.skeleton_mp.SkeletonMessagePassing` (AAGCN, CTR-GCN, DG-STGCN units)
    is frozen in place (:meth:`~pyg_sparse_stgcn.nn.conv.skeleton_mp.SkeletonMessagePassing.freeze_dense_`:
    its :meth:`~pyg_sparse_stgcn.nn.conv.skeleton_mp.SkeletonMessagePassing.dense_operator` — the static
    adjacency and the connection mask — held as constants) and set to its fused ``'dense'`` backend, in which
    the data-dependent terms are dense per-sample products multiplied by the constant connection mask.
    ``unit`` should be a folded copy (it is changed for the second kind).
    """
    from ..nn.conv.stgcn_conv import STGCNConv

    if isinstance(unit, STGCNConv):
        return DenseGraphConv(unit)
    unit.freeze_dense_()
    unit.backend = "dense"
    return unit


def _has_masks(model: nn.Module) -> bool:
    from torch.nn.utils import parametrize

    return any(parametrize.is_parametrized(m) for m in model.modules()) or any(
        type(m).__name__ == "SparseGenerator" for m in model.modules())


def export_onnx(model: nn.Module, path: str | os.PathLike, *, frames: int, persons: int,
                dynamic_batch: bool = True, num_joints: int | None = None, in_channels: int | None = None,
                metadata: Mapping[str, Any] | None = None, opset: int = 17, check: bool = True,
                atol: float = 1e-4) -> Path:
    r"""Export a folded dense or pruned model to ONNX through the dense aggregation path (no scatter ops).

    The graph has one input ``x`` of the torch model's own layout :math:`(N, M, T, V, C)` (``M = persons``,
    ``T = frames``; :math:`N` dynamic with ``dynamic_batch``) and one output ``logits``
    :math:`(N, \text{classes})`. The file is validated with :func:`onnx.checker.check_model` and, with
    ``check``, run once with onnxruntime (CPU) on a random input and compared with torch (``atol``).

    Args:
        model (torch.nn.Module): A classifier (dense, masked, :class:`SparseGenerator` or ensemble) of any
            backbone of this library; it is not changed.
        path (str or os.PathLike): The ``.onnx`` file to write.
        frames (int): Frames :math:`T` of one window / clip.
        persons (int): Persons :math:`M`.
        dynamic_batch (bool, optional): Dynamic batch dimension. (default: :obj:`True`)
        num_joints (int, optional): :math:`V`; read from the model's graph when :obj:`None`.
            (default: :obj:`None`)
        in_channels (int, optional): :math:`C`; read from the model when :obj:`None`. (default: :obj:`None`)
        metadata (Mapping, optional): JSON-serialisable facts stored in the file's ``metadata_props`` under
            :data:`ONNX_METADATA_KEY` (``predict`` stores the pipeline and label names there).
            (default: :obj:`None`)
        opset (int, optional): ONNX opset. (default: :obj:`17`)
        check (bool, optional): Compare onnxruntime with torch after writing. (default: :obj:`True`)
        atol (float, optional): Tolerance of that comparison. (default: :obj:`1e-4`)

    Returns:
        pathlib.Path: The written file.

    Raises:
        ImportError: When ``onnx`` (or ``onnxruntime`` with ``check``) is missing
            (``pip install pyg-sparse-stgcn[deploy]``).
        ValueError: For an unsupported module (named), a scatter operator left in the graph, or outputs that
            differ from torch by more than ``atol``.
    """
    onnx = _require("onnx")
    ready = onnx_ready(model)
    V = num_joints or _infer_joints(ready)
    C = in_channels or _infer_channels(ready)
    x = torch.randn(2 if dynamic_batch else 1, persons, frames, V, C)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        ref = ready(x)
    _torch_export(ready, x, path, dynamic_batch, opset)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    bad = sorted({n.op_type for n in proto.graph.node if "Scatter" in n.op_type})
    if bad:
        raise ValueError(f"export_onnx: the graph still holds scatter operators {bad}")
    if metadata is not None:
        del proto.metadata_props[:]
        entry = proto.metadata_props.add()
        entry.key, entry.value = ONNX_METADATA_KEY, json.dumps(dict(metadata))
        onnx.save(proto, str(path))
    if check:
        out = OnnxModel(path)(x)
        err = float((out - ref).abs().max())
        if err > atol:
            raise ValueError(f"export_onnx: onnxruntime differs from torch by {err:.3g} (> {atol})")
    return path


def _torch_export(model: nn.Module, x: Tensor, path: Path, dynamic_batch: bool, opset: int) -> None:
    """The TorchScript-based exporter (fast, no extra dependency); where this torch no longer has it, the
    dynamo exporter (needs ``onnxscript``)."""
    import logging
    import warnings

    kw: dict[str, Any] = dict(input_names=["x"], output_names=["logits"], opset_version=opset)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        try:
            axes = {"x": {0: "batch"}, "logits": {0: "batch"}} if dynamic_batch else None
            torch.onnx.export(model, (x,), str(path), dynamo=False, dynamic_axes=axes, **kw)
            return
        except (TypeError, NotImplementedError, RuntimeError) as err:  # no TorchScript exporter in this torch
            first = err
        try:
            import onnxscript  # noqa: F401  (the dynamo exporter needs it)
        except ImportError:
            raise ImportError(f"export_onnx: the TorchScript exporter failed ({first}) and the dynamo exporter "
                              "needs onnxscript: pip install onnxscript") from None
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        dyn = {"x": {0: torch.export.Dim("batch", min=1, max=4096)}} if dynamic_batch else None
        torch.onnx.export(model, (x,), str(path), dynamo=True, dynamic_shapes=dyn, external_data=False,
                          verbose=False, **kw)


def _infer_joints(model: nn.Module) -> int:
    from ..nn.conv.skeleton_mp import SkeletonMessagePassing

    for m in model.modules():
        if isinstance(m, (DenseGraphConv, SkeletonMessagePassing)):
            return m.num_nodes
    raise ValueError("export_onnx: cannot tell the number of joints V (no graph convolution): pass num_joints")


def _infer_channels(model: nn.Module) -> int:
    V = _infer_joints(model)
    for m in model.modules():
        bn = getattr(m, "data_bn", None)
        if isinstance(bn, nn.BatchNorm1d):
            nf = bn.num_features
            if getattr(m, "data_bn_type", "VC") == "MVC":
                nf //= getattr(m, "num_person", 1)
            return nf // V
        if isinstance(m, DenseGraphConv):
            lin = m.conv
            return lin.in_features // (1 if m.pre else m.num_subsets)
        in_channels = getattr(m, "in_channels", None)
        if type(m).__name__.endswith("Conv") and isinstance(in_channels, int):  # a graph unit
            return in_channels
    raise ValueError("export_onnx: cannot tell the input channels C: pass in_channels")


def _require(name: str) -> Any:
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError:
        raise ImportError(f"{name} is not installed: pip install 'pyg-sparse-stgcn[deploy]' (onnx, onnxruntime, "
                          f"onnxscript)") from None


class OnnxModel:
    r"""An onnxruntime (CPU) session called like a torch model: ``model(x)`` takes a tensor
    :math:`(N, M, T, V, C)` and returns the logits as a tensor.

    Args:
        path (str or os.PathLike): The ``.onnx`` file.
        threads (int, optional): Intra-op threads; 0 = onnxruntime's default. (default: :obj:`0`)

    Attributes:
        metadata (dict): The facts stored by :func:`export_onnx` (``{}`` when none).
        input_shape (list): The input's shape (``'batch'`` or a name for dynamic dimensions).
    """

    def __init__(self, path: str | os.PathLike, threads: int = 0) -> None:
        ort = _require("onnxruntime")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
            opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self.path = Path(path)
        self.session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        inp = self.session.get_inputs()[0]
        self.input_name, self.input_shape = inp.name, list(inp.shape)
        meta = self.session.get_modelmeta().custom_metadata_map or {}
        self.metadata: dict[str, Any] = json.loads(meta[ONNX_METADATA_KEY]) if ONNX_METADATA_KEY in meta else {}

    def __call__(self, x: Tensor | np.ndarray) -> Tensor:
        arr = x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)
        out = self.session.run(None, {self.input_name: np.ascontiguousarray(arr, dtype=np.float32)})[0]
        return torch.from_numpy(out)

    def eval(self) -> OnnxModel:
        """No-op (a session is always in inference mode); for symmetry with torch models."""
        return self

    def __repr__(self) -> str:
        return f"OnnxModel({str(self.path)!r}, input={self.input_shape})"
