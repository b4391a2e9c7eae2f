r"""What can be masked: the *targets* of the sparsity package.

A target is one named tensor of a model that a mask may zero element-wise (DESIGN §6):

* kind ``'weight'`` — the ``weight`` of every weight-bearing layer: any module that owns a parameter named
  ``weight`` with at least two dimensions. That covers :class:`~torch.nn.Linear`, every ``Conv*d``,
  :class:`~torch.nn.Bilinear`, PyG's own :class:`torch_geometric.nn.dense.Linear` (inside ``GCNConv`` and
  most PyG convs) and our layers alike; one-dimensional weights (normalisation layers, PReLU) are not
  targets, nor are biases or ``data_bn``.
* kind ``'edge'`` — the effective edge weights :math:`(K, E)` of every graph convolution that exposes the
  hook points of :class:`~pyg_sparse_stgcn.nn.STGCNConv`: ``edge_weight_base()``, ``enable_edge_gate()``
  and the boolean buffer ``edge_real``. The mask attaches to the layer's ``edge_gate`` buffer. Only the
  **real** entries count: an entry :math:`(k, v, w)` whose base weight can never be non-zero (a zero of
  :math:`A_k` under ``adaptive=None`` / ``'importance'``) is never ranked, thresholded, shuffled, scored or
  counted by any algorithm (:meth:`Target.real`).

What is left out is decided by one explicit argument, ``include_head`` (default :obj:`False`): the
classification head is left out — every module whose class name ends in ``Head`` (our
:class:`~pyg_sparse_stgcn.nn.GCNHead`) or whose path has a component ``head``, ``heads``, ``cls_head`` or
``fc_cls``; in a model with neither, the *last* weight-bearing layer in module order when it is a linear
layer outside every ST block (the classifier of a model composed by hand; a bare backbone has none).
A layer can also ask to stay dense: a module whose attribute ``sparsity_dense`` is true (AAGCN's attention
layers ``conv_ta``, ``conv_sa``, ``fc1c``, ``fc2c``, dense in the paper) is left out; set it to
:obj:`False` on a module to make it a target.
:func:`left_out` lists what was left out and why, and :func:`~.report.report` repeats it.
"""
from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

__all__ = ["KINDS", "Target", "targets", "left_out", "normalize_kinds", "is_edge_module", "is_weight_module"]

KINDS: tuple[str, ...] = ("weight", "edge")
_HEAD_NAMES = frozenset({"head", "heads", "cls_head", "fc_cls"})
EDGE_ATTR = "edge_gate"


def normalize_kinds(kinds: str | Iterable[str]) -> tuple[str, ...]:
    """Validate ``kinds`` (a kind or an iterable of kinds) and return them as a tuple in canonical order."""
    if isinstance(kinds, str):
        kinds = (kinds,)
    kinds = tuple(kinds)
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise ValueError(f"kinds must be a non-empty subset of {KINDS}, got {kinds!r}")
    return tuple(k for k in KINDS if k in kinds)


def is_edge_module(module: nn.Module) -> bool:
    """Whether ``module`` offers the edge-mask hook points (``edge_weight_base``, ``enable_edge_gate``,
    ``edge_real``)."""
    return callable(getattr(module, "edge_weight_base", None)) and callable(
        getattr(module, "enable_edge_gate", None)) and isinstance(getattr(module, "edge_real", None), Tensor)


def _own_weight(module: nn.Module) -> Tensor | None:
    """The module's own ``weight`` tensor (the stored original under a parametrization), or :obj:`None`."""
    if parametrize.is_parametrized(module, "weight"):
        return cast(Any, module).parametrizations["weight"].original
    return module._parameters.get("weight")


def is_weight_module(module: nn.Module) -> bool:
    """Whether ``module`` owns a parameter ``weight`` with at least two dimensions (a weight-bearing layer)."""
    w = _own_weight(module)
    return isinstance(w, Tensor) and not isinstance(w, nn.parameter.UninitializedParameter) and w.dim() >= 2


@dataclass(frozen=True, eq=False)
class Target:
    r"""One maskable tensor.

    Attributes:
        name (str): Qualified name ``"<module path>.<attr>"`` (unique in the model).
        module_name (str): Qualified name of the owning module.
        module (torch.nn.Module): The owning module.
        attr (str): ``"weight"`` or ``"edge_gate"``.
        kind (str): ``"weight"`` or ``"edge"``.
        block (str): Qualified name of the enclosing ST block (scope ``'block'``).
        is_residual (bool): Whether the tensor belongs to a block's residual branch (a path component
            ``residual``).
        shape (torch.Size): Shape of the tensor.
    """

    name: str
    module_name: str
    #: ``Any``: a weight-bearing layer or a duck-typed edge module (``edge_weight_base``, ``edge_real``, …)
    module: Any = field(repr=False)
    attr: str
    kind: str
    block: str
    is_residual: bool
    shape: torch.Size

    @property
    def numel(self) -> int:
        """Number of stored entries (real or not)."""
        n = 1
        for s in self.shape:
            n *= int(s)
        return n

    def real(self) -> Tensor | None:
        """Boolean ``(K, E)`` of the real entries of an edge target (the layer's ``edge_real``); :obj:`None`
        for weights, where every entry is real."""
        return self.module.edge_real if self.kind == "edge" else None

    @property
    def num_real(self) -> int:
        """Number of real entries: what sparsities count (every entry for weights)."""
        real = self.real()
        return self.numel if real is None else int(real.sum())

    def original(self) -> Tensor:
        """The stored (unmasked) tensor: the parametrization's ``original`` when a mask is attached."""
        if parametrize.is_parametrized(self.module, self.attr):
            return self.module.parametrizations[self.attr].original
        return getattr(self.module, self.attr)

    def magnitude(self) -> Tensor:
        r"""The unmasked value whose magnitude ranks entries: the weight, or ``edge_weight_base()`` (K, E)."""
        if self.kind == "edge":
            base = self.module.edge_weight_base()
            if parametrize.is_parametrized(self.module, self.attr):
                return base * self.original()
            gate = getattr(self.module, self.attr, None)
            return base if gate is None else base * gate
        return self.original()


def _component_in(name: str, names: frozenset[str]) -> bool:
    return any(part in names for part in name.split("."))


def _block_names(model: nn.Module) -> list[str]:
    """Qualified names of ST blocks: modules whose class name ends in ``Block``."""
    return [n for n, m in model.named_modules() if n and type(m).__name__.endswith("Block")]


def _block_of(name: str, blocks: Sequence[str], model: nn.Module) -> str:
    if not name:
        return name
    best = ""
    for b in blocks:
        if (name == b or name.startswith(b + ".")) and len(b) > len(best):
            best = b
    if best:
        return best
    # Fallback: the child of the outermost ModuleList/Sequential on the path (unless it is the layer itself).
    parts = name.split(".")
    mod = model
    for i, part in enumerate(parts):
        if isinstance(mod, (nn.ModuleList, nn.Sequential)) and i < len(parts) - 1:
            return ".".join(parts[: i + 1])
        mod = getattr(mod, part)
    return name


def _head_names(model: nn.Module) -> tuple[set[str], str]:
    """Names of the modules that form the classification head, and the rule that found them."""
    named = [(n, m) for n, m in model.named_modules() if n]
    heads = {n for n, m in named if type(m).__name__.endswith("Head") or _component_in(n, _HEAD_NAMES)}
    if heads:
        return heads, "classification head (a *Head module or a head/heads/cls_head/fc_cls path component)"
    blocks = _block_names(model)
    last = [(n, m) for n, m in named if is_weight_module(m)]
    if last:
        name, module = last[-1]
        outside = not any(name.startswith(b + ".") for b in blocks)
        if outside and (isinstance(module, nn.Linear) or type(module).__name__ == "Linear"):
            return {name}, ("classification head (the model's last weight-bearing layer, a Linear outside any "
                            "ST block, in a model without a *Head module)")
    return set(), ""


def _under(name: str, prefixes: set[str]) -> bool:
    return any(name == h or name.startswith(h + ".") for h in prefixes)


def _scan(model: nn.Module, kinds: tuple[str, ...], include_head: bool, exclude: Sequence[str]):
    blocks = _block_names(model)
    heads, head_reason = _head_names(model) if not include_head else (set(), "")
    for name, module in model.named_modules():
        candidates = []
        weight = _own_weight(module)
        if "weight" in kinds and weight is not None and is_weight_module(module):
            candidates.append(("weight", "weight", weight.shape))
        if "edge" in kinds and is_edge_module(module):
            candidates.append((EDGE_ATTR, "edge", module.edge_real.shape))
        if not candidates:
            continue
        reason = None
        pattern = next((pat for pat in exclude if fnmatch.fnmatchcase(name, pat)), None)
        if pattern is not None:
            reason = f"excluded by the pattern {pattern!r}"
        elif _under(name, heads):
            reason = head_reason + "; include_head=True masks it"
        elif getattr(module, "sparsity_dense", False):
            reason = ("kept dense by its layer (sparsity_dense=True, as the paper keeps attention layers dense); "
                      "set the module's sparsity_dense = False to mask it")
        is_res = _component_in(name, frozenset({"residual"}))
        for attr, kind, shape in candidates:
            t = Target(f"{name}.{attr}" if name else attr, name, module, attr, kind,
                       _block_of(name, blocks, model), is_res, shape)
            yield t, reason


def targets(model: nn.Module, kinds: str | Iterable[str] = KINDS, include_head: bool = False,
            exclude: Sequence[str] = ()) -> list[Target]:
    r"""List the maskable tensors of ``model`` in module order.

    Args:
        model (torch.nn.Module): Any model; wrappers such as :class:`~.generator.SparseGenerator` are
            searched through.
        kinds (str or tuple, optional): ``'weight'``, ``'edge'`` or both. (default: :obj:`('weight', 'edge')`)
        include_head (bool, optional): Also list the classification head's weights (see the module
            docstring for how the head is found). (default: :obj:`False`)
        exclude (sequence of str, optional): :func:`fnmatch` patterns of module names to skip.
            (default: :obj:`()`)

    Returns:
        list[Target]: Possibly empty; callers that need targets raise a :class:`ValueError` themselves.

    Example:
        >>> import torch
        >>> from torch_geometric.nn import GCNConv
        >>> model = torch.nn.ModuleDict({"gcn": GCNConv(3, 8), "fc": torch.nn.Linear(8, 2)})
        >>> [t.name for t in targets(model)]
        ['gcn.lin.weight']
    """
    kinds = normalize_kinds(kinds)
    return [t for t, reason in _scan(model, kinds, include_head, exclude) if reason is None]


def left_out(model: nn.Module, kinds: str | Iterable[str] = KINDS, include_head: bool = False,
             exclude: Sequence[str] = ()) -> list[dict[str, str]]:
    """What :func:`targets` leaves out with the same arguments: ``[{"name", "kind", "reason"}, …]``."""
    kinds = normalize_kinds(kinds)
    return [{"name": t.name, "kind": t.kind, "reason": reason}
            for t, reason in _scan(model, kinds, include_head, exclude) if reason is not None]
