r"""Fold masks into plain tensors, and remove pruned edges from graph convolutions."""
from __future__ import annotations

import copy

from torch import nn

from ..generator import SparseGenerator
from ..masks import remove_masks

__all__ = ["fold", "remove_pruned_edges"]


def _unwrap_generators(model: nn.Module) -> nn.Module:
    if isinstance(model, SparseGenerator):
        return _unwrap_generators(model.model)
    for name, child in list(model.named_children()):
        new = _unwrap_generators(child)
        if new is not child:
            setattr(model, name, new)
    return model


def fold(model: nn.Module) -> nn.Module:
    r"""A plain copy of ``model`` with every mask folded in (the input model is not changed).

    Every masked tensor becomes :math:`W \odot M` (the edge gate becomes the 0/1 edge mask); scores,
    parametrizations and generator wrappers are gone. Generators first recompute their thresholds as in eval
    mode (the target sparsity), so a model folded during the dense warm-up is still folded at its target
    sparsity. In eval mode the outputs are those of the masked model. Masks alone give no speed-up.

    Args:
        model (torch.nn.Module): A masked model, a :class:`~pyg_sparse_stgcn.sparsity.SparseGenerator` or
            a model containing generators (e.g. :class:`~pyg_sparse_stgcn.sparsity.MultiSparsityEnsemble`).

    Returns:
        torch.nn.Module: The plain model (generator wrappers replaced by the models they wrap).
    """
    m = copy.deepcopy(model)
    for g in [g for g in m.modules() if isinstance(g, SparseGenerator)]:
        was = g.training
        g.train(False)
        g.update_thresholds()
        g.train(was)
    remove_masks(m, fold=True)
    return _unwrap_generators(m)


def remove_pruned_edges(model: nn.Module) -> int:
    r"""Drop, in place, every candidate edge that carries no live entry from each graph convolution.

    Calls ``prune_edges_()`` (:meth:`~pyg_sparse_stgcn.nn.STGCNConv.prune_edges_`) on every module that has
    it; the model must be folded (:func:`fold`): plain ``edge_gate`` buffers, no masks. Afterwards no backend
    of these layers sends a message along a removed edge.

    Args:
        model (torch.nn.Module): A folded model, changed in place.

    Returns:
        int: The number of candidate edges removed, over all layers.
    """
    removed = 0
    for m in model.modules():
        prune = getattr(m, "prune_edges_", None)  # duck-typed: any layer with the method
        if callable(prune):
            removed += int(prune())
    return removed
