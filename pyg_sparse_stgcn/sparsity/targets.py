r"""What can be masked: the *targets* of the sparsity package.

A target is one named tensor of a model that a mask may zero element-wise (DESIGN §6):

* kind ``'weight'`` — the ``weight`` of every :class:`~torch.nn.Linear` and :class:`~torch.nn.Conv1d` /
  :class:`~torch.nn.Conv2d` / :class:`~torch.nn.Conv3d` of the backbone (GCN 1×1 convs, temporal convs,
  residual and ``down`` convs). Biases, normalisation layers, ``data_bn`` and classification heads are not
  targets.
* kind ``'edge'`` — the effective edge weights :math:`(K, E)` of every graph convolution that exposes the
  hook points of :class:`~pyg_sparse_stgcn.nn.STGCNConv`: ``edge_weight_base()`` and ``enable_edge_gate()``.
  The mask attaches to the layer's ``edge_gate`` buffer, which multiplies the base edge weights.

Heads are recognised by name (a path component ``head``, ``heads``, ``cls_head`` or ``fc_cls``) or by a
class name ending in ``Head`` and are skipped unless ``include_head=True``.
"""
from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

__all__ = ["KINDS", "Target", "targets", "normalize_kinds", "is_edge_module"]

KINDS: tuple[str, ...] = ("weight", "edge")
_WEIGHT_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
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
    """Whether ``module`` offers the edge-mask hook points (``edge_weight_base`` and ``enable_edge_gate``)."""
    return callable(getattr(module, "edge_weight_base", None)) and callable(
        getattr(module, "enable_edge_gate", None))


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
    module: nn.Module = field(repr=False)
    attr: str
    kind: str
    block: str
    is_residual: bool
    shape: torch.Size

    @property
    def numel(self) -> int:
        """Number of entries."""
        n = 1
        for s in self.shape:
            n *= int(s)
        return n

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


def targets(model: nn.Module, kinds: str | Iterable[str] = KINDS, include_head: bool = False,
            exclude: Sequence[str] = ()) -> list[Target]:
    r"""List the maskable tensors of ``model`` in module order.

    Args:
        model (torch.nn.Module): Any model; wrappers such as :class:`~.generator.SparseGenerator` are
            searched through.
        kinds (str or tuple, optional): ``'weight'``, ``'edge'`` or both. (default: :obj:`('weight', 'edge')`)
        include_head (bool, optional): Also list the weights of classification heads.
            (default: :obj:`False`)
        exclude (sequence of str, optional): :func:`fnmatch` patterns of module names to skip.
            (default: :obj:`()`)

    Returns:
        list[Target]: Possibly empty; callers that need targets raise a :class:`ValueError` themselves.
    """
    kinds = normalize_kinds(kinds)
    blocks = _block_names(model)
    head_prefixes = [n for n, m in model.named_modules() if n and type(m).__name__.endswith("Head")]
    out: list[Target] = []
    for name, module in model.named_modules():
        if any(fnmatch.fnmatchcase(name, pat) for pat in exclude):
            continue
        if not include_head and (_component_in(name, _HEAD_NAMES)
                                 or any(name == h or name.startswith(h + ".") for h in head_prefixes)):
            continue
        is_res = _component_in(name, frozenset({"residual"}))
        if "weight" in kinds and isinstance(module, _WEIGHT_TYPES):
            w = module.parametrizations["weight"].original if parametrize.is_parametrized(module, "weight") \
                else module.weight
            out.append(Target(f"{name}.weight" if name else "weight", name, module, "weight", "weight",
                              _block_of(name, blocks, model), is_res, w.shape))
        if "edge" in kinds and is_edge_module(module):
            with torch.no_grad():
                shape = module.edge_weight_base().shape
            out.append(Target(f"{name}.{EDGE_ATTR}" if name else EDGE_ATTR, name, module, EDGE_ATTR, "edge",
                              _block_of(name, blocks, model), is_res, shape))
    return out
