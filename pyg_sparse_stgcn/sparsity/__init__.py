r"""Sparsity for ST-GCNs: one mask mechanism for weights and edges, and the algorithms built on it.

* :func:`targets` / :func:`attach_masks` — what is maskable and the single :class:`Mask` parametrization
  (boolean mask, optional score with an identity straight-through estimator).
* :func:`report` — per target, per kind and whole-model sparsity (always the fraction *removed*) and
  parameter counts.
* :mod:`.magnitude` — one-shot magnitude pruning; :mod:`.lottery` — iterative magnitude pruning with
  rewinding (OpenLTH semantics); :mod:`.generator` — the paper's sparse ST-GCN generator;
  :mod:`.ensemble` — the multi-level sparsity ensemble; :mod:`.export` — folding and sparse kernels.
"""
from . import ensemble, export, generator, lottery, magnitude
from .ensemble import MultiSparsityEnsemble
from .export import fold, to_sparse_kernels
from .generator import SparseGenerator
from .lottery import IterativeMagnitudePruning
from .magnitude import prune, random_prune
from .masks import (
    Mask,
    attach_masks,
    effective_mask,
    get_mask,
    load_mask_state_dict,
    load_masked_state_dict,
    mask_state_dict,
    masked_targets,
    remove_masks,
    set_mask,
)
from .report import SparsityReport, report
from .targets import KINDS, Target, left_out, targets

__all__ = [
    "KINDS", "Target", "targets", "left_out", "Mask", "attach_masks", "get_mask", "masked_targets", "effective_mask",
    "set_mask", "mask_state_dict", "load_mask_state_dict", "load_masked_state_dict", "remove_masks",
    "SparsityReport", "report", "prune", "random_prune", "IterativeMagnitudePruning", "SparseGenerator",
    "MultiSparsityEnsemble", "fold", "to_sparse_kernels", "magnitude", "lottery", "generator", "ensemble",
    "export",
]
