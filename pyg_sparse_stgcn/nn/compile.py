r""":func:`torch.compile` for the channels-last skeleton models: :func:`compile_model`."""
from __future__ import annotations

from typing import Any, cast

import torch
from torch import nn

__all__ = ["compile_model", "INDUCTOR_OPTIONS"]

#: The inductor options :func:`compile_model` adds: ``layout_optimization`` off. Inductor's layout pass picks a
#: memory format for every convolution of the graph and copies around it; these models' activations are
#: already channels-last :math:`(B, T, V, C)` and each convolution runs on their channels-last view.
INDUCTOR_OPTIONS: dict[str, Any] = {"layout_optimization": False}


def compile_model(model: nn.Module, **kwargs: Any) -> nn.Module:
    r"""``torch.compile(model, **kwargs)`` with :data:`INDUCTOR_OPTIONS` (under any ``options`` given) for
    the default inductor backend; another ``backend``, or a ``mode`` (which :func:`torch.compile` does not
    take together with ``options``), is passed through unchanged.

    With the defaults, inductor's layout pass made the compiled ST-GCN++ *slower* than eager on CPU; without
    it, inference ran ×1.25 faster than eager (NTU shape, 1 thread; ``benchmarks/results/models_compile.json``
    has the side-by-side numbers). Compiled CPU *training* stays slower than eager: use it on a GPU.

    Args:
        model (torch.nn.Module): The model (or any callable module) to compile.
        **kwargs (optional): :func:`torch.compile` arguments.

    Example:
        >>> from pyg_sparse_stgcn.nn import STGCN, compile_model
        >>> net = compile_model(STGCN(dict(layout="nturgb+d", mode="spatial")).eval())
    """
    if kwargs.get("backend", "inductor") == "inductor" and "mode" not in kwargs:
        kwargs["options"] = {**INDUCTOR_OPTIONS, **(kwargs.get("options") or {})}
    return cast(nn.Module, torch.compile(model, **kwargs))
