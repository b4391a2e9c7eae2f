"""Classification metrics (PYSKL / mmaction2 semantics): top-k accuracy, mean-class accuracy, confusion
matrix, multi-clip averaging and multi-stream score fusion. All accuracies are fractions in :math:`[0, 1]`."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["top_k_accuracy", "confusion_matrix", "mean_class_accuracy", "average_clips", "fuse_scores",
           "classification_metrics", "DEFAULT_FUSION", "AVERAGE_CLIPS"]

#: Modes of :func:`average_clips` (``'none'``: plain mean, for internal use).
AVERAGE_CLIPS = ("prob", "score")

#: PYSKL's four-stream weighting J:B:JM:BM = 2:2:1:1.
DEFAULT_FUSION: dict[str, float] = {"j": 2.0, "b": 2.0, "jm": 1.0, "bm": 1.0}


def _check(scores: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    scores, labels = torch.as_tensor(scores), torch.as_tensor(labels)
    if scores.dim() != 2:
        raise ValueError(f"scores must be (N, num_classes), got shape {tuple(scores.shape)}")
    if labels.dim() != 1 or labels.numel() != scores.size(0):
        raise ValueError(f"labels must be (N,) with N = {scores.size(0)}, got shape {tuple(labels.shape)}")
    labels = labels.long()
    if labels.numel() and (labels.min() < 0 or labels.max() >= scores.size(1)):
        raise ValueError(f"labels must lie in [0, {scores.size(1) - 1}], got range "
                         f"[{int(labels.min())}, {int(labels.max())}]")
    return scores, labels


def top_k_accuracy(scores: Tensor, labels: Tensor, k: int = 1) -> float:
    r"""Fraction of samples whose label is among the ``k`` highest scores.

    Args:
        scores (Tensor): :math:`(N, C)` scores (logits or probabilities).
        labels (Tensor): :math:`(N,)` class indices.
        k (int, optional): :math:`k`; clipped to :math:`C`. (default: :obj:`1`)
    """
    scores, labels = _check(scores, labels)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if labels.numel() == 0:
        return float("nan")
    k = min(k, scores.size(1))
    top = scores.topk(k, dim=1).indices
    return (top == labels[:, None]).any(dim=1).float().mean().item()


def confusion_matrix(pred: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    r"""Confusion matrix :math:`M_{ij}` = number of samples of true class :math:`i` predicted as :math:`j`.

    Args:
        pred (Tensor): :math:`(N,)` predicted classes.
        labels (Tensor): :math:`(N,)` true classes.
        num_classes (int): :math:`C`.

    Shapes:
        - **output:** :math:`(C, C)` int64.
    """
    pred, labels = torch.as_tensor(pred).long().flatten(), torch.as_tensor(labels).long().flatten()
    if pred.numel() != labels.numel():
        raise ValueError(f"pred and labels must have the same length, got {pred.numel()} and "
                         f"{labels.numel()}")
    idx = labels * num_classes + pred
    return torch.bincount(idx, minlength=num_classes * num_classes).view(num_classes, num_classes)


def mean_class_accuracy(scores: Tensor, labels: Tensor) -> float:
    r"""Mean over the classes present in ``labels`` of the per-class top-1 recall (mmaction2's
    ``mean_class_accuracy``: classes without test samples are left out)."""
    scores, labels = _check(scores, labels)
    cm = confusion_matrix(scores.argmax(1), labels, scores.size(1)).double()
    support = cm.sum(1)
    present = support > 0
    if not present.any():
        return float("nan")
    return (cm.diagonal()[present] / support[present]).mean().item()


def average_clips(scores: Tensor, num_clips: int, mode: str = "prob") -> Tensor:
    r"""Average per-clip scores :math:`(N \cdot n_c, C)` into per-sample scores :math:`(N, C)`.

    Args:
        scores (Tensor): Logits of consecutive clips of each sample, sample-major.
        num_clips (int): :math:`n_c`.
        mode (str, optional): ``'prob'`` (softmax, then mean: PYSKL's ``average_clips='prob'``), ``'score'``
            (mean of logits) or ``'none'`` (mean, no softmax). (default: ``'prob'``)
    """
    if mode not in (*AVERAGE_CLIPS, "none"):
        raise ValueError(f"average_clips mode must be one of {', '.join(map(repr, (*AVERAGE_CLIPS, 'none')))}, "
                         f"got {mode!r}")
    if num_clips < 1 or scores.size(0) % num_clips:
        raise ValueError(f"scores has {scores.size(0)} rows, not a multiple of num_clips={num_clips}")
    s = scores.view(-1, num_clips, scores.size(-1)).float()
    if mode == "prob":
        s = s.softmax(-1)
    return s.mean(1)


def fuse_scores(stream_scores: Sequence[Tensor], coefficients: Sequence[float] | None = None) -> Tensor:
    r"""Weighted sum :math:`\sum_i c_i S_i` of per-sample scores of several streams (J/B/JM/BM), as PYSKL's
    offline multi-stream fusion.

    Args:
        stream_scores (list of Tensor): One :math:`(N, C)` tensor per stream, rows aligned.
        coefficients (list of float, optional): One weight per stream; all ones when :obj:`None`.
            (default: :obj:`None`)
    """
    if len(stream_scores) == 0:
        raise ValueError("fuse_scores needs at least one stream")
    coefficients = [1.0] * len(stream_scores) if coefficients is None else list(coefficients)
    if len(coefficients) != len(stream_scores):
        raise ValueError(f"coefficients has {len(coefficients)} entries for {len(stream_scores)} streams")
    shape = stream_scores[0].shape
    out = torch.zeros(shape, dtype=torch.float64)
    for s, c in zip(stream_scores, coefficients):
        if s.shape != shape:
            raise ValueError(f"all streams must have the same score shape, got {tuple(shape)} and "
                             f"{tuple(s.shape)}")
        out += float(c) * s.double()
    return out.float()


def classification_metrics(scores: Tensor, labels: Tensor) -> dict:
    """``top1``, ``top5``, ``mean_class_accuracy`` (fractions), ``num_samples`` and the ``confusion_matrix``
    (list of lists) of per-sample ``scores`` :math:`(N, C)`."""
    scores, labels = _check(scores, labels)
    return {
        "top1": top_k_accuracy(scores, labels, 1),
        "top5": top_k_accuracy(scores, labels, 5),
        "mean_class_accuracy": mean_class_accuracy(scores, labels),
        "num_samples": int(labels.numel()),
        "confusion_matrix": confusion_matrix(scores.argmax(1), labels, scores.size(1)).tolist(),
    }
