r"""Load PYSKL / mmaction2 ST-GCN and ST-GCN++ checkpoints into a ``SkeletonClassifier``.

PYSKL's ``RecognizerGCN`` stores ``backbone.*`` and ``cls_head.fc_cls.*``; mmaction2 1.x stores the same
backbone names and ``cls_head.fc.*``. Our modules mirror those names (``backbone.data_bn``,
``backbone.gcn[i].gcn/.tcn/.residual``, unit ``conv``/``bn``/``A``/``PA``/``down``, mstcn ``branches``/
``transform``), so the mapping is one to one; the only change is that :math:`1 \times 1` convolution weights
``(out, in, 1, 1)`` become ``Linear`` weights ``(out, in)``.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from torch import Tensor

from ..graph import SkeletonGraph
from ..nn import AAGCN, CTRGCN, DGSTGCN, STGCN, GCNHead, SkeletonClassifier
from ..nn.models._backbone import match_state, read_state_dict

__all__ = ["load_pyskl", "load_pyskl_stgcn", "load_checkpoint_state", "convert_pyskl_state_dict", "PYSKL_MODELS",
           "detect_backbone"]

def load_checkpoint_state(checkpoint: str | os.PathLike | Mapping[str, Any]) -> dict[str, Tensor]:
    """The flat ``{name: tensor}`` state dict of a checkpoint path or dict.

    Files are read with ``torch.load(..., weights_only=True)``. ``{'state_dict': ...}`` (mmcv / mmengine),
    ``{'model': ...}`` wrappers and a ``module.`` (DDP) prefix are removed (the reader the backbones'
    ``pretrained=`` also uses).
    """
    return read_state_dict(checkpoint)


def _rename(key: str) -> str | None:
    """Our name of a PYSKL / mmaction2 recognizer key (:obj:`None`: not a backbone or head key)."""
    if key.startswith("backbone."):
        return key
    for prefix in ("cls_head.fc_cls.", "cls_head.fc."):
        if key.startswith(prefix):
            return "head.fc_cls." + key[len(prefix):]
    return None


def convert_pyskl_state_dict(state: Mapping[str, Tensor], model: SkeletonClassifier) -> dict[str, Tensor]:
    """Rename PYSKL / mmaction2 keys to ours; :math:`1 \\times 1` conv weights become ``Linear`` weights.

    Raises :class:`ValueError` listing missing keys, unexpected keys and shape mismatches.
    """
    converted, missing, unexpected, mismatched = match_state(state, model.state_dict(), _rename)
    if unexpected or missing or mismatched:
        parts = []
        if missing:
            parts.append(f"missing keys ({len(missing)}): {missing}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {unexpected}")
        if mismatched:
            parts.append(f"shape mismatches ({len(mismatched)}): {mismatched}")
        raise ValueError("the checkpoint does not match the model built from the given arguments "
                         "(layout, mode, adaptive, backbone kwargs such as tcn_type / gcn_with_res / "
                         "base_channels):\n  " + "\n  ".join(parts))
    return converted


def _infer_backbone_kwargs(state: Mapping[str, Tensor], kwargs: dict[str, Any]) -> dict[str, Any]:
    keys = list(state)
    if "tcn_type" not in kwargs and any(".tcn.branches." in k for k in keys):
        kwargs["tcn_type"] = "mstcn"
    if "gcn_with_res" not in kwargs and any(".gcn.down." in k for k in keys):
        kwargs["gcn_with_res"] = True
    return kwargs


def load_pyskl_stgcn(checkpoint: str | os.PathLike | Mapping[str, Any], *, layout: str | Mapping,
                     mode: str, adaptive: str | None = "importance", num_classes: int, backend: str = "auto",
                     head_dropout: float = 0.0, **backbone_kwargs: Any) -> SkeletonClassifier:
    """:func:`load_pyskl` with ``model='stgcn'`` (ST-GCN and ST-GCN++ checkpoints; see there), where
    ``adaptive=None`` is a fixed graph (``gcn_adaptive=None``), not the model's default."""
    return _load_stgcn(_checked_state(checkpoint, "stgcn", num_classes), layout=layout, mode=mode,
                       adaptive=adaptive, num_classes=num_classes, backend=backend, head_dropout=head_dropout,
                       **backbone_kwargs)


def _load_stgcn(state: Mapping[str, Tensor], *, layout: str | Mapping, mode: str, adaptive: str | None,
                num_classes: int, backend: str = "auto", head_dropout: float = 0.0,
                **backbone_kwargs: Any) -> SkeletonClassifier:
    r"""Build an ST-GCN / ST-GCN++ :class:`SkeletonClassifier` and load a PYSKL or mmaction2 checkpoint.

    In eval mode the model reproduces PYSKL's logits and ``model.backbone(x)`` its features
    :math:`(N, M, C', T', V)` (tested to :math:`10^{-5}` abs on CPU float32 with every backend).
    ``tcn_type='mstcn'`` and ``gcn_with_res=True`` are inferred from the checkpoint keys when not given
    (ST-GCN++ checkpoints: pass ``adaptive='init'`` and ``mode='spatial'``).

    Args:
        state (dict): The flat state dict (:func:`_checked_state`).
        layout (str or dict): Skeleton layout (``'nturgb+d'``, ``'coco'``, ``'openpose'``, ...).
        mode (str): Graph mode (``'stgcn_spatial'`` for ST-GCN, ``'spatial'`` for ST-GCN++).
        adaptive (str, optional): ``gcn_adaptive`` of the checkpoint's model. (default: :obj:`"importance"`)
        num_classes (int): Number of classes of the checkpoint's head.
        backend (str, optional): Aggregation backend of every :class:`STGCNConv`. (default: :obj:`"auto"`)
        head_dropout (float, optional): Dropout of the :class:`GCNHead`. (default: :obj:`0.0`)
        **backbone_kwargs: Further :class:`STGCN` arguments (``in_channels``, ``base_channels``,
            ``num_stages``, ``gcn_*``, ``tcn_*``, ...), as in the PYSKL config.

    Returns:
        SkeletonClassifier: the loaded model, in eval mode.
    """
    if "gcn_adaptive" in backbone_kwargs:
        raise ValueError("pass the adaptive mode as adaptive=..., not gcn_adaptive=...")
    kwargs = _infer_backbone_kwargs(state, dict(backbone_kwargs))
    graph = SkeletonGraph(layout, mode)
    backbone = STGCN(graph, backend=backend, gcn_adaptive=adaptive, **kwargs)
    head = GCNHead(num_classes, in_channels=backbone.out_channels, dropout=head_dropout)
    model = SkeletonClassifier(backbone, head)
    converted = convert_pyskl_state_dict(state, model)
    model.load_state_dict(converted, strict=True)
    for i, conv in enumerate(backbone.convs()):
        outside = conv.A.detach().clone()
        outside.flatten(1)[:, conv._flat_index] = 0
        if bool((outside != 0).any()):
            raise ValueError(f"backbone.gcn.{i}.gcn.A of the checkpoint has non-zero entries outside the "
                             f"edges of the {mode!r} graph on layout {graph.layout.name!r}; check layout= "
                             "and mode=")
    return model.eval()


#: ``model=`` names of :func:`load_pyskl`.
PYSKL_MODELS = ("stgcn", "stgcn++", "aagcn", "ctrgcn", "dgstgcn")
_FAMILY = {"stgcn": "stgcn", "stgcn++": "stgcn", "aagcn": "aagcn", "ctrgcn": "ctrgcn", "dgstgcn": "dgstgcn"}
_DEFAULT_MODE = {"stgcn": "stgcn_spatial", "stgcn++": "spatial", "aagcn": "spatial", "ctrgcn": "spatial",
                 "dgstgcn": "random"}
_CLASSES = {"aagcn": AAGCN, "ctrgcn": CTRGCN, "dgstgcn": DGSTGCN}
_SIGNATURES = (("ctrgcn", ".gcn1.convs."), ("aagcn", ".gcn.conv_d."), ("dgstgcn", ".gcn.pre.0."),
               ("stgcn", ".gcn.conv.weight"))


def detect_backbone(state: Mapping[str, Tensor]) -> str | None:
    """The backbone family of a PYSKL / mmaction2 state dict from its key names (``'stgcn'`` for ST-GCN and
    ST-GCN++, ``'aagcn'``, ``'ctrgcn'``, ``'dgstgcn'``), or :obj:`None` when no key says."""
    for family, marker in _SIGNATURES:
        if any(marker in k for k in state):
            return family
    return None


def _checked_state(checkpoint: str | os.PathLike | Mapping[str, Any], model: str,
                   num_classes: int) -> dict[str, Tensor]:
    """:func:`load_checkpoint_state`, checked against the backbone family of ``model`` and ``num_classes``."""
    state = load_checkpoint_state(checkpoint)
    found = detect_backbone(state)
    if found is not None and found != _FAMILY[model]:
        raise ValueError(f"model={model!r} but the checkpoint holds a {found!r} backbone; valid choices for "
                         f"model: {', '.join(m for m in PYSKL_MODELS if _FAMILY[m] == found)}")
    fc = state.get("cls_head.fc_cls.weight", state.get("cls_head.fc.weight"))
    if fc is not None and fc.size(0) != num_classes:
        raise ValueError(f"num_classes={num_classes} but the checkpoint's classifier has {fc.size(0)} "
                         "classes")
    return state


def load_pyskl(checkpoint: str | os.PathLike | Mapping[str, Any], model: str = "stgcn", *,
               layout: str | Mapping | None = None, mode: str | None = None, num_classes: int,
               graph_cfg: Mapping | None = None, backend: str = "auto", head_dropout: float = 0.0,
               adaptive: str | None = None, **backbone_kwargs: Any) -> SkeletonClassifier:
    r"""Build a :class:`SkeletonClassifier` for a PYSKL ``RecognizerGCN`` (or mmaction2 1.x) checkpoint and load it.

    ``backbone.*`` keys map one to one (:math:`1 \times 1` conv weights become ``Linear`` weights), the head
    is ``cls_head.fc_cls`` (PYSKL) or ``cls_head.fc`` (mmaction2). In eval mode the model reproduces PYSKL's
    logits and features (tested against channels-first references of PYSKL's equations, every backend).

    Args:
        checkpoint (str or dict): A ``.pth`` path (read with ``torch.load(weights_only=True)``) or a state dict.
        model (str, optional): ``'stgcn'``, ``'stgcn++'``, ``'aagcn'``, ``'ctrgcn'`` or ``'dgstgcn'``.
            (default: :obj:`"stgcn"`)
        layout (str, optional): Skeleton layout; or give PYSKL's ``graph_cfg`` instead.
        mode (str, optional): Graph mode (default per model: ``'stgcn_spatial'`` for ST-GCN, ``'random'`` for
            DG-STGCN, ``'spatial'`` otherwise).
        num_classes (int): Classes of the checkpoint's head.
        graph_cfg (dict, optional): PYSKL's ``dict(layout=..., mode=..., num_filter=..., init_std=...,
            init_off=...)`` in place of ``layout`` / ``mode``. A ``random`` graph's ``num_filter`` is read
            from the checkpoint when not given.
        backend (str, optional): Aggregation backend. (default: :obj:`"auto"`)
        head_dropout (float, optional): Dropout of the head. (default: :obj:`0.0`)
        adaptive (str, optional): ST-GCN only: ``gcn_adaptive`` (default ``'importance'`` for ``'stgcn'``,
            ``'init'`` for ``'stgcn++'``).
        **backbone_kwargs: The backbone's kwargs exactly as PYSKL's config spells them (``gcn_ratio``,
            ``gcn_ctr='T'``, ``tcn_ms_cfg=[...]``, ``base_channels``, ...). DG-STGCN: ``tcn_type='mstcn'``
            (the paper's sparse DG-STGCN / Assemble experts) is inferred from a checkpoint without
            ``tcn.add_coeff`` keys when not given. ``pretrained`` is accepted (PYSKL's kwarg) and loaded first,
            then replaced by ``checkpoint``.

    Raises:
        ValueError: Unknown ``model``, a checkpoint of another backbone, kwargs the backbone does not take,
            or a checkpoint that does not match (missing / unexpected keys and shape mismatches listed).
    """
    if model not in PYSKL_MODELS:
        raise ValueError(f"model: unknown backbone {model!r}; valid choices: {', '.join(PYSKL_MODELS)}")
    if graph_cfg is not None:
        if layout is not None or mode is not None:
            raise ValueError("graph_cfg: give either graph_cfg or layout/mode, not both")
        if not isinstance(graph_cfg, Mapping) or "layout" not in graph_cfg:
            raise ValueError("graph_cfg must be a dict with at least 'layout' (PYSKL's graph_cfg)")
        graph_cfg = dict(graph_cfg)
    elif layout is None:
        raise ValueError("layout: required (or pass PYSKL's graph_cfg=dict(layout=..., mode=...))")
    else:
        graph_cfg = {"layout": layout, "mode": mode or _DEFAULT_MODE[model]}
    graph_cfg.setdefault("mode", _DEFAULT_MODE[model])
    if adaptive is not None and _FAMILY[model] != "stgcn":
        raise ValueError(f"adaptive: only ST-GCN takes it, not model={model!r}")
    state = _checked_state(checkpoint, model, num_classes)
    if _FAMILY[model] == "stgcn":
        extra = {k: v for k, v in graph_cfg.items() if k not in ("layout", "mode")}
        if extra:
            raise ValueError(f"graph_cfg: ST-GCN checkpoints take only layout and mode, got {sorted(extra)}")
        return _load_stgcn(state, layout=graph_cfg["layout"], mode=graph_cfg["mode"],
                           adaptive=adaptive or ("init" if model == "stgcn++" else "importance"),
                           num_classes=num_classes, backend=backend, head_dropout=head_dropout,
                           **backbone_kwargs)
    if graph_cfg["mode"] == "random" and "num_filter" not in graph_cfg:
        A = next((v for k, v in state.items() if k.endswith("gcn.A") or k.endswith("gcn1.A")), None)
        if A is not None:
            graph_cfg["num_filter"] = int(A.size(0))
    if model == "dgstgcn" and "tcn_type" not in backbone_kwargs and any(".tcn.branches." in k for k in state) \
            and not any(k.endswith(".tcn.add_coeff") for k in state):
        backbone_kwargs["tcn_type"] = "mstcn"  # the paper's sparse DG-STGCN: PYSKL's mstcn, no global joint
    backbone = _CLASSES[model](graph_cfg, backend=backend, **backbone_kwargs)
    head = GCNHead(num_classes, in_channels=backbone.out_channels, dropout=head_dropout)
    net = SkeletonClassifier(backbone, head)
    net.load_state_dict(convert_pyskl_state_dict(state, net), strict=True)
    return net.eval()
