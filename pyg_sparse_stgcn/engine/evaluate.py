"""Evaluation: multi-clip prediction with softmax averaging, metrics, saved per-sample scores and offline
J/B/JM/BM score fusion."""
from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .metrics import DEFAULT_FUSION, average_clips, classification_metrics, fuse_scores

__all__ = ["unpack_batch", "predict", "evaluate", "save_scores", "load_scores", "fuse_score_files"]


def unpack_batch(batch: Any, device: torch.device | str | None = None) -> tuple[Tensor, Tensor, list | None]:
    """``(x, y, ids)`` of a batch: an object with ``x``/``y`` (and optionally ``frame_dir``) attributes such
    as the library's loader batches, a ``dict``, or an ``(x, y)`` tuple."""
    ids = None
    if isinstance(batch, Mapping):
        x, y, ids = batch["x"], batch["y"], batch.get("frame_dir")
    elif hasattr(batch, "x") and hasattr(batch, "y"):
        x, y, ids = batch.x, batch.y, getattr(batch, "frame_dir", None)
    elif isinstance(batch, (tuple, list)) and len(batch) >= 2:
        x, y = batch[0], batch[1]
    else:
        raise ValueError(f"cannot read x and y from a batch of type {type(batch).__name__}; expected an "
                         f"object with .x/.y, a dict with 'x'/'y' or an (x, y) tuple")
    if device is not None:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
    if ids is not None and not isinstance(ids, (list, tuple)):
        ids = None
    return x, y.view(-1).long(), (list(ids) if ids is not None else None)


@torch.no_grad()
def predict(model: nn.Module, loader: Iterable, device: torch.device | str = "cpu", average: str = "prob",
            amp: bool = False, progress: bool = False) -> tuple[Tensor, Tensor, list[str]]:
    r"""Per-sample scores of ``model`` over ``loader``.

    Batches of shape :math:`(N, M, T, V, C)` give one clip per sample; :math:`(N, n_c, M, T, V, C)` gives
    :math:`n_c` clips whose logits (the classifier returns :math:`(N \cdot n_c, \text{classes})`) are averaged
    with :func:`~pyg_sparse_stgcn.engine.metrics.average_clips`.

    Args:
        model (torch.nn.Module): A classifier.
        loader (iterable): Test batches.
        device (str or torch.device, optional): Device. (default: ``'cpu'``)
        average (str, optional): ``'prob'`` (softmax then mean, PYSKL) or ``'score'``. (default: ``'prob'``)
        amp (bool, optional): Autocast on CUDA. (default: :obj:`False`)
        progress (bool, optional): Show a tqdm bar. (default: :obj:`False`)

    Returns:
        ``(scores, labels, ids)``: :math:`(N, \text{classes})` float32 scores (probabilities for ``'prob'``),
        :math:`(N,)` labels and sample ids (``frame_dir``; positions when the batches carry none).
    """
    from tqdm.auto import tqdm

    device = torch.device(device)
    was_training = model.training
    model.eval()
    scores: list[Tensor] = []
    labels: list[Tensor] = []
    ids: list[Any] = []
    n = 0
    try:
        for batch in tqdm(loader, desc="eval", leave=False, disable=not progress, dynamic_ncols=True):
            x, y, bid = unpack_batch(batch, device)
            nc = x.size(1) if x.dim() == 6 else 1
            with torch.autocast(device_type=device.type, dtype=torch.float16,
                                enabled=amp and device.type == "cuda"):
                out = model(x)
            if isinstance(out, (tuple, list)):
                out = out[0]
            if out.size(0) != y.numel() * nc:
                raise ValueError(f"model returned {out.size(0)} rows for {y.numel()} samples x {nc} clips")
            scores.append(average_clips(out.float(), nc, average).cpu())
            labels.append(y.cpu())
            ids.extend(bid if bid is not None else [str(n + i) for i in range(y.numel())])
            n += y.numel()
    finally:
        model.train(was_training)
    if not scores:
        raise ValueError("the evaluation loader yielded no batches (empty test split?)")
    return torch.cat(scores), torch.cat(labels), [str(i) for i in ids]


def evaluate(model: nn.Module, loader: Iterable, device: torch.device | str = "cpu", average: str = "prob",
             amp: bool = False, progress: bool = False) -> dict:
    """Top-1, top-5 and mean-class accuracy (fractions), confusion matrix, and the per-sample ``scores``,
    ``labels`` and ``ids`` of ``model`` over ``loader`` (see :func:`predict`)."""
    scores, labels, ids = predict(model, loader, device, average, amp, progress)
    out = classification_metrics(scores, labels)
    out.update(scores=scores, labels=labels, ids=ids)
    return out


def save_scores(path: str | os.PathLike, scores: Tensor, labels: Tensor, ids: Sequence[str],
                meta: Mapping[str, Any] | None = None) -> Path:
    """Save per-sample scores atomically as a ``torch.save`` dict that loads with ``weights_only=True``:
    ``scores`` (N, C), ``labels`` (N,), ``ids`` (list of str) and ``meta`` (plain values)."""
    from .rundir import atomic_torch_save, json_safe

    return atomic_torch_save({"scores": scores.detach().float().cpu(), "labels": labels.detach().long().cpu(),
                              "ids": [str(i) for i in ids], "meta": json_safe(dict(meta or {}))}, path)


def load_scores(path: str | os.PathLike) -> dict:
    """Load a file written by :func:`save_scores`, or the ``scores/test.pt`` of a run directory."""
    p = Path(path)
    if p.is_dir():
        p = p / "scores" / "test.pt"
    if not p.is_file():
        raise ValueError(f"--fuse: no score file at {p} (pass a run directory or its scores/test.pt)")
    d = torch.load(p, map_location="cpu", weights_only=True)
    if not isinstance(d, dict) or not {"scores", "labels", "ids"} <= set(d):
        raise ValueError(f"--fuse: {p} is not a score file (expected keys scores, labels, ids)")
    return d


def fuse_score_files(paths: Sequence[str | os.PathLike], coefficients: Sequence[float] | None = None) -> dict:
    """Fuse the saved scores of several streams (e.g. J, B, JM, BM runs) and compute the metrics.

    Samples are matched by id; every file must hold the same ids with the same labels. With no
    ``coefficients`` and 4 streams PYSKL's 2:2:1:1 is used, otherwise equal weights.

    Returns:
        dict: the metrics of :func:`~pyg_sparse_stgcn.engine.metrics.classification_metrics` of the fused
        scores, plus ``streams`` (per-file top-1) and the fused ``scores``, ``labels``, ``ids``.
    """
    if len(paths) < 2:
        raise ValueError(f"--fuse: needs at least two score files/run directories, got {len(paths)}")
    files = [load_scores(p) for p in paths]
    if coefficients is None:
        coefficients = list(DEFAULT_FUSION.values()) if len(files) == 4 else [1.0] * len(files)
    if len(coefficients) != len(files):
        raise ValueError(f"eval.fusion_coefficients: {len(coefficients)} coefficients for {len(files)} "
                         f"streams")
    ref = files[0]
    order = {i: k for k, i in enumerate(ref["ids"])}
    aligned = []
    for p, f in zip(paths, files):
        if set(f["ids"]) != set(order) or len(f["ids"]) != len(order):
            raise ValueError(f"--fuse: {p} holds different samples than {paths[0]}")
        idx = torch.tensor([order[i] for i in f["ids"]])
        s = torch.empty_like(f["scores"])
        s[idx] = f["scores"]
        lab = torch.empty_like(f["labels"])
        lab[idx] = f["labels"]
        if not torch.equal(lab, ref["labels"]):
            raise ValueError(f"--fuse: labels in {p} disagree with {paths[0]}")
        aligned.append(s)
    fused = fuse_scores(aligned, coefficients)
    out = classification_metrics(fused, ref["labels"])
    out["streams"] = [{"path": str(p), "coefficient": float(c),
                       "top1": classification_metrics(s, ref["labels"])["top1"]}
                      for p, c, s in zip(paths, coefficients, aligned)]
    out.update(scores=fused, labels=ref["labels"], ids=list(ref["ids"]))
    return out
