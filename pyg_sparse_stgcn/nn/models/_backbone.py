r"""What the PYSKL backbones share: ``data_bn``, person folding, per-stage kwargs, stage layout, forward."""
from __future__ import annotations

import copy
import os
import pickle
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ...graph import SkeletonGraph
from .._utils import check_choice, check_positive_ints, reset_module
from ..block import check_keys, route
from ..conv.skeleton_mp import BACKENDS, SkeletonMessagePassing, _graph_to_A

__all__ = ["SkeletonBackbone", "build_graph", "check_keys", "route", "graph_tensor", "read_state_dict",
           "conform_weight", "match_state"]

_EPS = 1e-4
_GRAPH_KEYS = ("layout", "mode", "max_hop", "num_filter", "init_std", "init_off", "seed")
_WRAPPERS = ("state_dict", "model", "model_state_dict")


def read_state_dict(checkpoint: str | os.PathLike | Mapping[str, Any], who: str = "checkpoint") -> dict[str, Tensor]:
    """The flat ``{name: tensor}`` state dict of a checkpoint path or dict.

    Files are read with ``torch.load(..., weights_only=True)``. ``{'state_dict': ...}`` (mmcv / mmengine),
    ``{'model': ...}`` wrappers and a ``module.`` (DDP) prefix are removed. Errors start with ``who`` and name
    the file.
    """
    if isinstance(checkpoint, (str, os.PathLike)):
        path = Path(checkpoint)
        if not path.is_file():
            raise FileNotFoundError(f"{who}: checkpoint file not found: {path}")
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
            raise ValueError(f"{who}: {path} cannot be read with torch.load(weights_only=True) ({err}). Only "
                             "plain tensors and containers are accepted; re-save just the state dict with "
                             "torch.save(ckpt['state_dict'], ...) in a trusted environment.") from None
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"{who}: expected a checkpoint path or a state dict, got {type(checkpoint).__name__}")
    state: Mapping[str, Any] = checkpoint
    for _ in range(3):
        wrapped = [k for k in _WRAPPERS if k in state and isinstance(state[k], Mapping)]
        if not wrapped or any(isinstance(v, Tensor) for v in state.values()):
            break
        state = state[wrapped[0]]
    out = {}
    for key, value in state.items():
        if not isinstance(value, Tensor):
            raise ValueError(f"{who}: checkpoint entry {key!r} is a {type(value).__name__}, not a tensor; is "
                             "this a state dict of a PYSKL/mmaction2 model?")
        out[key[7:] if key.startswith("module.") else key] = value
    return out


def conform_weight(value: Tensor, target: Tensor) -> Tensor | None:
    r"""``value`` shaped like ``target``: itself, a PYSKL :math:`1 \times 1` conv weight ``(out, in, 1, 1)``
    viewed as our ``Linear`` weight ``(out, in)``, or :obj:`None` when the shapes do not match."""
    if value.shape == target.shape:
        return value
    if value.dim() == 4 and value.shape[2:] == (1, 1) and target.dim() == 2 and value.shape[:2] == target.shape:
        return value.reshape(target.shape)
    return None


def match_state(state: Mapping[str, Tensor], own: Mapping[str, Tensor],
                rename: Callable[[str], str | None] = lambda key: key) -> tuple[dict[str, Tensor], list[str], list[str],
                                                                               list[str]]:
    """Match a checkpoint's ``state`` to a model's ``own`` state dict, key by key (``rename`` maps a checkpoint
    key to the model's name, :obj:`None` for none).

    Returns ``(matched, missing, unexpected, mismatched)``: the tensors by model name, shaped by
    :func:`conform_weight`; the model names the checkpoint lacks (``edge_gate`` buffers, owned by sparsity
    masks, excepted); the checkpoint keys the model lacks; and one ``"key: checkpoint (..) vs model (..)"``
    line per shape mismatch.
    """
    matched: dict[str, Tensor] = {}
    unexpected, mismatched = [], []
    for key, value in state.items():
        new = rename(key)
        if new is None or new not in own:
            unexpected.append(key)
            continue
        fitted = conform_weight(value, own[new])
        if fitted is None:
            mismatched.append(f"{key}: checkpoint {tuple(value.shape)} vs model {tuple(own[new].shape)}")
        else:
            matched[new] = fitted
    missing = sorted(set(own) - set(matched) - {k for k in own if k.endswith("edge_gate")})
    return matched, missing, unexpected, mismatched


def build_graph(graph_cfg: SkeletonGraph | Mapping) -> SkeletonGraph:
    """A :class:`SkeletonGraph` from itself or a PYSKL-style ``graph_cfg`` dict (``layout``, ``mode``, …)."""
    if isinstance(graph_cfg, SkeletonGraph):
        return graph_cfg
    if not isinstance(graph_cfg, Mapping):
        raise ValueError(f"graph_cfg must be a SkeletonGraph or a dict like {{'layout': 'nturgb+d', 'mode': "
                         f"'spatial'}}, got {type(graph_cfg).__name__}")
    bad = sorted(set(graph_cfg) - set(_GRAPH_KEYS))
    if bad:
        raise ValueError(f"graph_cfg: unknown key(s) {bad}; valid keys: {', '.join(_GRAPH_KEYS)}")
    if "layout" not in graph_cfg:
        raise ValueError("graph_cfg: 'layout' is required (e.g. 'nturgb+d', 'openpose', 'coco')")
    return SkeletonGraph(**dict(graph_cfg))


def graph_tensor(graph: SkeletonGraph) -> Tensor:
    """The graph's adjacency :math:`(K, V, V)` as a float32 tensor (a copy)."""
    return _graph_to_A(graph)[0]


class SkeletonBackbone(nn.Module):
    r"""Base of :class:`STGCN`, :class:`AAGCN`, :class:`CTRGCN` and :class:`DGSTGCN`: input normalisation ``data_bn``
    (``'MVC'``: ``BatchNorm1d(M V C)``, ``'VC'``: ``BatchNorm1d(V C)`` shared by the persons, :obj:`None`), the
    fold :math:`(N, M, T, V, C) \to (N M, T, V, C)`, the blocks (a ``ModuleList``) and the output
    :math:`(N, M, C', T', V)`. Subclasses build the blocks with :meth:`_stage_plan`.
    """

    block_attr = "gcn"

    def _setup(self, name: str, graph_cfg: SkeletonGraph | Mapping, in_channels: int, base_channels: int,
               data_bn_type: str | None, num_person: int, num_stages: int, inflate_stages: Sequence[int],
               down_stages: Sequence[int], backend: str, check_kwargs: Callable[[], Any] | None = None,
               pretrained: str | os.PathLike | None = None) -> None:
        """Check the common arguments (then ``check_kwargs()``, before the graph is built; ``pretrained`` must
        name an existing file) and set ``graph``, the common attributes and ``data_bn``. Subclasses end their
        ``__init__`` with :meth:`_load_pretrained`."""
        check_choice("backend", backend, BACKENDS)
        if pretrained is not None:
            if not isinstance(pretrained, (str, os.PathLike)):
                raise ValueError(f"{name}: pretrained must be a checkpoint path or None, got "
                                 f"{type(pretrained).__name__}")
            if not Path(pretrained).is_file():
                raise FileNotFoundError(f"{name}: pretrained checkpoint file not found: {pretrained}")
        self.pretrained = pretrained
        check_choice("data_bn_type", data_bn_type, ("VC", "MVC", None))
        check_positive_ints(name, ("in_channels", in_channels), ("base_channels", base_channels),
                            ("num_person", num_person), ("num_stages", num_stages))
        if check_kwargs is not None:
            check_kwargs()
        self.graph = build_graph(graph_cfg)
        V = self.graph.num_nodes
        self.num_nodes, self.in_channels, self.base_channels = V, in_channels, base_channels
        self.num_person, self.data_bn_type, self.backend = num_person, data_bn_type, backend
        self.inflate_stages, self.down_stages = tuple(inflate_stages), tuple(down_stages)
        if data_bn_type == "MVC":
            self.data_bn: nn.Module = nn.BatchNorm1d(num_person * in_channels * V)
        elif data_bn_type == "VC":
            self.data_bn = nn.BatchNorm1d(in_channels * V)
        else:
            self.data_bn = nn.Identity()

    def _load_pretrained(self) -> None:
        """Load ``self.pretrained`` (if set) as PYSKL's ``init_weights`` does: ``strict=False``."""
        if self.pretrained is not None:
            self.load_pretrained(self.pretrained)

    def load_pretrained(self, checkpoint: str | os.PathLike | Mapping[str, Any]) -> list[str]:
        r"""Load a checkpoint into this backbone the way PYSKL's ``init_weights`` loads ``pretrained``
        (``load_checkpoint(self, pretrained, strict=False)``), read with ``torch.load(weights_only=True)``.

        The checkpoint is this backbone's own state dict (PYSKL's keys; :math:`1 \times 1` conv weights
        ``(out, in, 1, 1)`` are taken as ``Linear`` weights) or a recognizer's, whose ``backbone.`` entries are
        used and the rest (``cls_head.*``) ignored. Like PYSKL's ``strict=False``, keys the checkpoint lacks
        keep their initial values and keys the model lacks are skipped; both are listed in a
        :class:`UserWarning`. A checkpoint with no matching key at all, or with a matching key of another
        shape, raises a :class:`ValueError` (PYSKL would load nothing, or fail on the shape).

        Returns:
            list[str]: The names that were loaded.
        """
        who = f"{type(self).__name__}: pretrained={checkpoint!r}" if isinstance(checkpoint, (str, os.PathLike)) \
            else f"{type(self).__name__}: pretrained"
        state = read_state_dict(checkpoint, who)
        own = self.state_dict()
        if not set(state) & set(own) and any(k.startswith("backbone.") for k in state):
            state = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
        loaded, missing, unexpected, mismatched = match_state(state, own)
        if mismatched:
            raise ValueError(f"{who}: shape mismatches ({len(mismatched)}): {mismatched}; check the backbone's "
                             "arguments (base_channels, num_stages, graph_cfg, gcn_* / tcn_* options)")
        if not loaded:
            raise ValueError(f"{who}: no key of the checkpoint matches the {type(self).__name__} (first keys: "
                             f"{sorted(state)[:5]}); is it a checkpoint of another backbone?")
        if missing or unexpected:
            warnings.warn(f"{who}: loaded {len(loaded)} of {len(own)} entries (strict=False, as PYSKL); "
                          f"missing keys ({len(missing)}): {missing}; unexpected keys ({len(unexpected)}): "
                          f"{sorted(unexpected)}", UserWarning, stacklevel=2)
        self.load_state_dict(loaded, strict=False)
        return sorted(loaded)

    @staticmethod
    def _stage_kwargs(kwargs: dict[str, Any], num_stages: int, drop_first: Sequence[str]) -> list[dict]:
        """PYSKL: a tuple of length ``num_stages`` is split per stage; stage 1 loses ``drop_first``."""
        stage = [copy.deepcopy(kwargs) for _ in range(num_stages)]
        for key, value in kwargs.items():
            if isinstance(value, tuple) and len(value) == num_stages:
                for i in range(num_stages):
                    stage[i][key] = value[i]
        for key in drop_first:
            stage[0].pop(key, None)
        return stage

    def _stage_plan(self, num_stages: int, ch_ratio: float, always_first: bool,
                    who: str | None = None) -> list[tuple[int, int, int, int]]:
        """``(stage index 0-based, in, out, stride)`` of every block, PYSKL's layout; ``who`` names the
        class in the error (default: its type)."""
        plan = []
        if always_first or self.in_channels != self.base_channels:
            plan.append((0, self.in_channels, self.base_channels, 1))
        channels, inflate = self.base_channels, 0
        for i in range(2, num_stages + 1):
            stride = 1 + (i in self.down_stages)
            if i in self.inflate_stages:
                inflate += 1
            out = int(self.base_channels * ch_ratio ** inflate + _EPS)
            plan.append((i - 1, channels, out, stride))
            channels = out
        if not plan:
            raise ValueError(f"{who or type(self).__name__}: no blocks to build (num_stages=1 with in_channels == "
                             "base_channels)")
        self.out_channels = channels
        return plan

    @property
    def blocks(self) -> nn.ModuleList:
        return getattr(self, self.block_attr)

    def reset_parameters(self) -> None:
        reset_module(self.data_bn)
        for block in self.blocks:
            reset_module(block)

    def convs(self) -> list[SkeletonMessagePassing]:
        """The graph convolution of every block, in order."""
        return [m for m in self.modules() if isinstance(m, SkeletonMessagePassing)]

    def set_backend(self, backend: str) -> None:
        """Switch the aggregation backend of every graph convolution."""
        check_choice("backend", backend, BACKENDS)
        self.backend = backend
        for conv in self.convs():
            conv.backend = backend

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 5:
            raise ValueError(f"{type(self).__name__}: x must be (N, M, T, V, C), got shape {tuple(x.shape)}")
        N, M, T, V, C = x.shape
        if V != self.num_nodes or C != self.in_channels:
            raise ValueError(f"{type(self).__name__}: x has V={V}, C={C}; expected V={self.num_nodes} (graph "
                             f"layout {self.graph.layout.name!r}) and C=in_channels={self.in_channels}")
        if self.data_bn_type == "MVC":
            if M != self.num_person:
                raise ValueError(f"{type(self).__name__}: data_bn_type='MVC' needs M=num_person="
                                 f"{self.num_person} persons, got M={M}")
            x = x.permute(0, 2, 1, 3, 4).reshape(N * T, M * V * C)
            x = self.data_bn(x).view(N, T, M, V, C).permute(0, 2, 1, 3, 4)
        elif self.data_bn_type == "VC":
            x = self.data_bn(x.reshape(N * M * T, V * C))
        x = x.reshape(N * M, T, V, C)
        for block in self.blocks:
            x = block(x)
        _, T2, _, C2 = x.shape
        return x.view(N, M, T2, V, C2).permute(0, 1, 4, 2, 3).contiguous()

    def extra_repr(self) -> str:
        return (f"graph={self.graph!r}, in_channels={self.in_channels}, out_channels={self.out_channels}, "
                f"num_stages={len(self.blocks)}, backend={self.backend!r}")


