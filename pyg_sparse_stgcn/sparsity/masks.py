r"""One mask mechanism for weights and edges.

Every target (:mod:`.targets`) is masked by the same :mod:`torch.nn.utils.parametrize` parametrization,
:class:`Mask`, registered on ``(linear_or_conv, "weight")`` or on ``(graph_conv, "edge_gate")``. It holds

* ``mask`` — a boolean buffer of the target's shape (the fixed mask, all ``True`` when attached), and
* optionally ``score`` — a real-valued parameter of the same shape with a ``threshold`` buffer. The mask is
  then :math:`M = \mathbb{1}[S > \tau]` (or :math:`S \ge \tau` in the paper-compatible rule; :math:`|S|`
  optionally), combined with the fixed mask, and the gradient passes through unchanged (identity
  straight-through estimator):

.. math::
    \tilde W = W \odot M, \qquad
    \frac{\partial L}{\partial S} = \frac{\partial L}{\partial \tilde W} \odot W, \qquad
    \frac{\partial L}{\partial W} = \frac{\partial L}{\partial \tilde W} \odot M.

For edges, :math:`W` is the ``edge_gate`` buffer of ones that multiplies the base edge weights
:math:`A_\text{base}` (K, E), so
:math:`\partial L / \partial S = \partial L / \partial \tilde A \odot A_\text{base}`.

Masks are ordinary module state: they survive ``state_dict`` round trips (also with
``torch.load(..., weights_only=True)``), :func:`copy.deepcopy`, ``.to(device)``, DDP and
:func:`torch.compile`.
A fresh model does not have the parametrizations yet; load a masked state dict into it with
:func:`load_masked_state_dict`, or call :func:`attach_masks` (with the same ``scores``) first.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, cast

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from .targets import EDGE_ATTR, KINDS, Target, normalize_kinds, targets

__all__ = [
    "Mask", "attach_masks", "get_mask", "masked_targets", "effective_mask", "set_mask", "mask_state_dict",
    "load_mask_state_dict", "load_masked_state_dict", "remove_masks", "init_scores_", "SCORE_INITS",
]

#: Score initialisations (see :func:`init_scores_`).
SCORE_INITS = ("kaiming_uniform", "magnitude")


class _MaskSTE(torch.autograd.Function):
    r"""``x * m`` with the identity straight-through estimator for the score: the mask :math:`m` is a
    step function of :math:`s` whose gradient is taken as 1, so :math:`\partial L/\partial s =
    \partial L/\partial \tilde x \odot x` and :math:`\partial L/\partial x = \partial L/\partial \tilde x
    \odot m`."""

    @staticmethod
    def forward(ctx, x: Tensor, s: Tensor, m: Tensor) -> Tensor:
        ctx.save_for_backward(x, m)
        ctx.s_dtype = s.dtype
        return x * m

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, m = ctx.saved_tensors
        grad_x = grad * m if ctx.needs_input_grad[0] else None
        grad_s = (grad * x).to(ctx.s_dtype) if ctx.needs_input_grad[1] else None
        return grad_x, grad_s, None


class Mask(nn.Module):
    r"""Parametrization multiplying a tensor by a boolean mask, optionally learned through scores.

    Args:
        shape (torch.Size): Shape of the masked tensor.
        scores (bool, optional): Add a real-valued ``score`` parameter and a ``threshold`` buffer.
            (default: :obj:`False`)
        device (torch.device, optional): Device of the new tensors. (default: :obj:`None`)
        dtype (torch.dtype, optional): Dtype of the score. (default: :obj:`torch.float32`)

    Attributes:
        abs_scores (bool): Threshold :math:`|S|` instead of the signed score.
        inclusive (bool): Keep :math:`S \ge \tau` (paper rule) instead of :math:`S > \tau`.

    Shapes:
        - **input:** the original tensor, of shape ``shape``
        - **output:** same shape, masked entries exactly zero
    """

    mask: Tensor
    score: nn.Parameter | None
    threshold: Tensor

    def __init__(self, shape: torch.Size | tuple[int, ...], scores: bool = False,
                 device: torch.device | None = None, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.register_buffer("mask", torch.ones(shape, dtype=torch.bool, device=device))
        #: bumped whenever the fixed mask is replaced (see :meth:`version`)
        self.generation = 0
        self.abs_scores = False
        self.inclusive = False
        if scores:
            self.score = nn.Parameter(torch.zeros(shape, dtype=dtype, device=device))
            self.register_buffer("threshold", torch.full((), -math.inf, dtype=dtype, device=device))
        else:
            self.register_parameter("score", None)
            self.register_buffer("threshold", None)

    @property
    def has_score(self) -> bool:
        """Whether the mask is learned through a score."""
        return self.score is not None

    def add_score(self, dtype: torch.dtype = torch.float32) -> None:
        """Add a zero-initialised ``score`` parameter and a ``threshold`` buffer (no-op if present)."""
        if self.score is None:
            dev = self.mask.device
            self.score = nn.Parameter(torch.zeros(self.mask.shape, device=dev, dtype=dtype))
            self.register_buffer("threshold", torch.full((), -math.inf, device=dev, dtype=dtype))

    def version(self) -> tuple:
        """A host-side key that changes whenever :meth:`current` may change; reading it never synchronises.

        The fixed mask changes through :func:`set_mask` and ``load_state_dict``, which bump
        :attr:`generation` (DDP's in-place buffer broadcasts do not, so they do not invalidate what layers
        cache from the mask); a score or threshold changes with every optimiser step or new threshold, read
        from the tensors' version counters.
        """
        key: tuple = (self.generation, self.mask.data_ptr())
        if self.score is not None:
            key += (self.score.data_ptr(), self.score._version, self.threshold.data_ptr(), self.threshold._version,
                    self.abs_scores, self.inclusive)
        return key

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self.generation += 1

    def _ranked(self) -> Tensor:
        score = self.score
        if score is None:
            raise ValueError("this Mask has no score (attach_masks(..., scores=True) adds one)")
        return score.abs() if self.abs_scores else score

    def current(self) -> Tensor:
        """The boolean mask in effect now (fixed mask, and score above threshold when scored)."""
        if self.score is None:
            return self.mask
        return self._keep(self._ranked().detach())

    def _keep(self, s: Tensor) -> Tensor:
        """The fixed mask and the (detached) ranked scores ``s`` above the threshold."""
        keep = s >= self.threshold if self.inclusive else s > self.threshold
        return keep & self.mask

    def forward(self, x: Tensor) -> Tensor:
        if self.score is None:
            return x * self.mask.to(x.dtype)
        s = self._ranked()
        return _MaskSTE.apply(x, s, self._keep(s.detach()).to(x.dtype))

    def extra_repr(self) -> str:
        return f"shape={tuple(self.mask.shape)}, scores={self.has_score}"


def _own_class(module: nn.Module) -> None:
    """Give a parametrized module a private copy of its injected class.

    ``copy.deepcopy`` of a parametrized module shares the injected ``Parametrized<Name>`` class between the
    original and the copy; ``register_parametrization`` / ``remove_parametrizations`` then add or delete the
    class properties of *both*. A private class keeps the two independent.
    """
    if parametrize.is_parametrized(module):
        cls = module.__class__
        module.__class__ = type(cls.__name__, cls.__bases__, dict(cls.__dict__))


def _register(module: nn.Module, attr: str, mask: Mask) -> None:
    _own_class(module)
    parametrize.register_parametrization(module, attr, mask)


def _unregister(module: nn.Module, attr: str) -> None:
    _own_class(module)
    parametrize.remove_parametrizations(module, attr, leave_parametrized=False)


def get_mask(module: nn.Module, attr: str) -> Mask | None:
    """The :class:`Mask` attached to ``(module, attr)``, or :obj:`None`."""
    if not parametrize.is_parametrized(module, attr):
        return None
    for p in cast(Any, module).parametrizations[attr]:
        if isinstance(p, Mask):
            return p
    return None


def init_scores_(mask: Mask, target: Target, init: str = "kaiming_uniform", scale: float = 1.0,
                 generator: torch.Generator | None = None) -> None:
    r"""Initialise a score like the paper: ``kaiming_uniform_(mode='fan_in', nonlinearity='relu') × scale``.

    For a weight of shape ``(out, in, *k)`` the bound is :math:`\sqrt{6 / (in \cdot \prod k)}`; for edge
    scores (K, E) the fan-in is :math:`E`. ``init='magnitude'`` instead sets
    :math:`S = |value| + 10^{-3}\,\overline{|value|}\,u`, :math:`u \sim U(0, 1)`: the magnitude ranking with
    ties broken at random (a skeleton's normalised :math:`A` holds many equal values, and a threshold on
    tied scores would remove all of them at once).
    """
    if init not in SCORE_INITS:
        raise ValueError(f"score init must be one of {SCORE_INITS}, got {init!r}")
    score = mask.score
    if score is None:
        raise ValueError(f"target {target.name!r}: its Mask has no score to initialise")
    with torch.no_grad():
        if init == "magnitude":
            mag = target.magnitude().detach().abs()
            jitter = torch.rand(mag.shape, generator=generator, dtype=mag.dtype).to(mag.device)
            score.copy_((mag + 1e-3 * mag.mean() * jitter) * scale)
            return
        fan_in = 1
        for s in score.shape[1:]:
            fan_in *= int(s)
        bound = scale * math.sqrt(2.0) * math.sqrt(3.0 / max(fan_in, 1))
        score.uniform_(-bound, bound, generator=generator)


def attach_masks(model: nn.Module, kinds: str | Iterable[str] = KINDS, scores: bool = False,
                 score_init: str = "kaiming_uniform", include_head: bool = False,
                 exclude: tuple[str, ...] = ()) -> list[Target]:
    r"""Attach a :class:`Mask` to every target of ``model`` (idempotent).

    Edge targets first get their ``edge_gate`` buffer (``conv.enable_edge_gate()``). Existing masks are kept;
    with ``scores=True`` a missing score is added and initialised.

    Args:
        model (torch.nn.Module): The model, changed in place.
        kinds (str or tuple, optional): ``'weight'``, ``'edge'`` or both. (default: :obj:`('weight', 'edge')`)
        scores (bool, optional): Also attach learnable scores. (default: :obj:`False`)
        score_init (str, optional): ``'kaiming_uniform'`` or ``'magnitude'`` (see :func:`init_scores_`).
            (default: :obj:`'kaiming_uniform'`)
        include_head (bool, optional): Also mask classification heads. (default: :obj:`False`)
        exclude (tuple of str, optional): Module-name patterns to skip. (default: :obj:`()`)

    Returns:
        list[Target]: The masked targets.

    Raises:
        ValueError: If ``kinds`` is invalid or the model has no target of these kinds.
    """
    kinds = normalize_kinds(kinds)
    found = targets(model, kinds, include_head=include_head, exclude=exclude)
    if not found:
        raise ValueError(f"model {type(model).__name__} has no maskable targets of kinds {kinds} "
                         "(no Linear/Conv weights outside heads, no layer with "
                         "edge_weight_base/enable_edge_gate)")
    for t in found:
        if t.kind == "edge" and getattr(t.module, EDGE_ATTR, None) is None:
            t.module.enable_edge_gate()
        m = get_mask(t.module, t.attr)
        if m is None:
            orig = t.original()
            m = Mask(orig.shape, scores=False, device=orig.device)
            _register(t.module, t.attr, m)
        if scores and not m.has_score:
            orig = t.original()
            m.add_score(orig.dtype if orig.is_floating_point() else torch.float32)
            init_scores_(m, t, score_init)
    return found


def masked_targets(model: nn.Module, kinds: str | Iterable[str] = KINDS) -> list[tuple[Target, Mask]]:
    """Targets of ``model`` that carry a :class:`Mask`, with their mask (heads included when masked)."""
    out = []
    for t in targets(model, kinds, include_head=True):
        m = get_mask(t.module, t.attr)
        if m is not None:
            out.append((t, m))
    return out


def effective_mask(target: Target) -> Tensor:
    """The boolean mask in effect for ``target`` (all ``True`` when none is attached)."""
    m = get_mask(target.module, target.attr)
    if m is None:
        return torch.ones(target.shape, dtype=torch.bool, device=target.original().device)
    return m.current()


def set_mask(target: Target, mask: Tensor) -> None:
    """Replace the fixed mask of ``target`` (a mask must be attached) with the boolean ``mask``."""
    m = get_mask(target.module, target.attr)
    if m is None:
        raise ValueError(f"target {target.name!r} has no mask attached; call attach_masks first")
    if tuple(mask.shape) != tuple(m.mask.shape):
        raise ValueError(f"mask for {target.name!r} has shape {tuple(mask.shape)}, "
                         f"the target has shape {tuple(m.mask.shape)}")
    with torch.no_grad():
        m.mask.copy_(mask.to(torch.bool))
    m.generation += 1


def mask_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """``{target name: effective boolean mask (CPU)}`` for every masked target (what ``mask.pt`` stores).

    A weight's mask has the weight's shape; an edge mask is stored over the layer's **real** entries only,
    a flat ``(R,)`` vector in the row-major order of ``edge_real`` (entries that can never carry a weight
    are not part of a mask).
    """
    out = {}
    for t, m in masked_targets(model):
        cur = m.current().detach()
        real = t.real()
        out[t.name] = (cur if real is None else cur[real]).cpu().clone()
    return out


def _full_mask(target: Target, mask: Tensor) -> Tensor:
    """A stored mask as a mask of the target's full shape (an edge mask may be real-entries-only)."""
    real = target.real()
    if real is None or tuple(mask.shape) == tuple(target.shape):
        if tuple(mask.shape) != tuple(target.shape):
            raise ValueError(f"mask {target.name!r} has shape {tuple(mask.shape)} but the model's target has "
                             f"shape {tuple(target.shape)}")
        return mask.to(torch.bool)
    n_real = target.num_real
    if mask.dim() != 1 or mask.numel() != n_real:
        raise ValueError(f"edge mask {target.name!r} holds {mask.numel()} entries (shape {tuple(mask.shape)}) but "
                         f"the layer has {n_real} real entries (and {target.numel} candidate entries, shape "
                         f"{tuple(target.shape)}); the mask was saved from another graph or layout")
    full = torch.ones(target.shape, dtype=torch.bool, device=real.device)
    full[real] = mask.to(device=real.device, dtype=torch.bool)
    return full


def load_mask_state_dict(model: nn.Module, masks: Mapping[str, Tensor], strict: bool = True) -> None:
    r"""Load ``{target name: boolean mask}`` (e.g. from :func:`mask_state_dict`) as the fixed masks.

    Masks are attached where missing (without scores). An edge mask may be given over the real entries
    (``(R,)``, what :func:`mask_state_dict` writes) or over every candidate entry (``(K, E)``, the format
    of files saved before real entries were introduced; its non-real entries are ignored).

    Args:
        model (torch.nn.Module): The model, changed in place.
        masks (Mapping[str, Tensor]): Masks by target name.
        strict (bool, optional): Require the names to match the model's targets exactly.
            (default: :obj:`True`)

    Raises:
        ValueError: On unknown or missing names, on a shape mismatch, or on an edge mask whose real-entry
            count differs from the layer's, naming the target and both counts.
    """
    by_name = {t.name: t for t in targets(model, KINDS, include_head=True)}
    unknown = sorted(set(masks) - set(by_name))
    if unknown:
        raise ValueError(f"masks name targets the model does not have: {unknown[:5]}"
                         f"{' …' if len(unknown) > 5 else ''}; model targets start with "
                         f"{sorted(by_name)[:5]}")
    full = {name: _full_mask(by_name[name], mask) for name, mask in masks.items()}
    if strict:
        masked = {t.name for t, _ in masked_targets(model)}
        missing = sorted(masked - set(masks))
        if missing:
            raise ValueError(f"masks lack entries for masked targets {missing[:5]} (strict=True)")
    for name, mask in full.items():
        t = by_name[name]
        if t.kind == "edge" and getattr(t.module, EDGE_ATTR, None) is None:
            t.module.enable_edge_gate()
        if get_mask(t.module, t.attr) is None:
            orig = t.original()
            _register(t.module, t.attr, Mask(orig.shape, device=orig.device))
        set_mask(t, mask.to(t.original().device))


def load_masked_state_dict(model: nn.Module, state_dict: Mapping[str, Tensor], strict: bool = True):
    r"""Load a state dict saved from a masked model into a model that may not have masks yet.

    Reads the parametrization keys (``<module>.parametrizations.<attr>.original`` / ``.0.mask`` /
    ``.0.score``), attaches a :class:`Mask` (with a score where the state dict has one) to each such target,
    then calls :meth:`~torch.nn.Module.load_state_dict`. The score rule (``abs_scores``, ``inclusive``) is
    configuration, not state: to continue training a generator, build a
    :class:`~.generator.SparseGenerator` with the same settings and load the state dict into it.

    Args:
        model (torch.nn.Module): A model of the same architecture, changed in place.
        state_dict (Mapping[str, Tensor]): E.g. ``torch.load(path, weights_only=True)``.
        strict (bool, optional): Passed to ``load_state_dict``. (default: :obj:`True`)

    Raises:
        ValueError: If a masked tensor in ``state_dict`` names no target of ``model`` or has another shape.
    """
    modules = dict(model.named_modules())
    marker = ".parametrizations."
    for key, value in state_dict.items():
        if marker not in key and not key.startswith("parametrizations."):
            continue
        if not key.endswith(".0.mask"):
            continue
        mod_name, rest = (key.split(marker, 1) if marker in key else ("", key[len("parametrizations."):]))
        attr = rest.split(".", 1)[0]
        module = modules.get(mod_name)
        if module is None:
            raise ValueError(f"state dict key {key!r}: the model has no module {mod_name!r}")
        if attr == EDGE_ATTR and getattr(module, EDGE_ATTR, None) is None:
            if not callable(getattr(module, "enable_edge_gate", None)):
                raise ValueError(f"state dict key {key!r}: module {mod_name!r} ({type(module).__name__}) "
                                 "has no edge gate")
            module.enable_edge_gate()
        if not hasattr(module, attr):
            raise ValueError(f"state dict key {key!r}: module {mod_name!r} has no tensor {attr!r}")
        m = get_mask(module, attr)
        current = module.parametrizations[attr].original if m is not None else getattr(module, attr)
        if tuple(current.shape) != tuple(value.shape):
            raise ValueError(f"state dict key {key!r} has shape {tuple(value.shape)} but "
                             f"{mod_name}.{attr} has shape {tuple(current.shape)}")
        if m is None:
            m = Mask(current.shape, device=current.device)
            _register(module, attr, m)
        score_key = key[: -len("mask")] + "score"
        if score_key in state_dict and not m.has_score:
            m.add_score(state_dict[score_key].dtype)
    return model.load_state_dict(state_dict, strict=strict)


def remove_masks(model: nn.Module, fold: bool = True) -> None:
    r"""Remove every :class:`Mask` parametrization from ``model`` in place.

    Args:
        model (torch.nn.Module): The model.
        fold (bool, optional): Keep the masked values (``W ⊙ M``, detached) as the plain tensors; otherwise
            restore the unmasked originals. (default: :obj:`True`)
    """
    for t, m in masked_targets(model):
        with torch.no_grad():
            value = t.original().detach() * m.current().to(t.original().dtype) if fold \
                else t.original().detach().clone()
        _unregister(t.module, t.attr)
        with torch.no_grad():
            getattr(t.module, t.attr).copy_(value)
