"""Models from a configuration: the model registry (``--model``), classifiers, the sparse generator, the
ensemble, and loading any checkpoint the CLI accepts."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

from ..nn import AAGCN, CTRGCN, DGSTGCN, STGCN, STGCNPlusPlus

if TYPE_CHECKING:
    from .bundle import DataBundle
    from .config import Config

__all__ = ["ModelSpec", "MODELS", "MODEL_NAMES", "build_backbone", "build_classifier", "generator_kwargs",
           "generator_arg_keys", "paper_code_kwargs", "check_generator_options", "build_generator",
           "build_ensemble", "load_model", "checkpoint_kind"]


@dataclass(frozen=True)
class ModelSpec:
    """A backbone that ``--model`` names.

    Attributes:
        cls (type): The backbone class (keyword arguments of ``model.backbone`` go to it).
        graph_mode (str): The graph partition used when ``model.graph_mode`` is empty (PYSKL's practice:
            ``stgcn_spatial`` for ST-GCN, ``spatial`` for ST-GCN++).
        pyskl_adaptive (str): ``gcn_adaptive`` of PYSKL's / mmaction2's released checkpoints of this model
            (``''`` for the backbones without it).
        graph_kwargs (dict): Further ``graph_cfg`` entries of PYSKL's configs (DG-STGCN: ``num_filter=8``).
        defaults (dict): Backbone kwargs of PYSKL's configs, used unless ``model.backbone`` sets them.
        expert_defaults (dict): Over ``defaults``, for this backbone as an expert of a mixed ensemble whose
            ``--model`` is another backbone (its ``model.backbone`` settings are not this one's): the paper's
            sparse variant (DG-STGCN: the plain ``mstcn``, as the Assemble's DG experts).
    """

    cls: type[nn.Module]
    graph_mode: str
    pyskl_adaptive: str
    graph_kwargs: dict = field(default_factory=dict)
    defaults: dict = field(default_factory=dict)
    expert_defaults: dict = field(default_factory=dict)


#: ``--model`` name → backbone. The one list of model names.
MODELS: dict[str, ModelSpec] = {
    "stgcn": ModelSpec(STGCN, "stgcn_spatial", "importance"),
    "stgcn++": ModelSpec(STGCNPlusPlus, "spatial", "init"),
    "aagcn": ModelSpec(AAGCN, "spatial", ""),
    "ctrgcn": ModelSpec(CTRGCN, "spatial", ""),
    "dgstgcn": ModelSpec(DGSTGCN, "random", "", {"num_filter": 8, "init_off": 0.04, "init_std": 0.02},
                         {"gcn_ratio": 0.125, "gcn_ctr": "T", "gcn_ada": "T"}, {"tcn_type": "mstcn"}),
}
MODEL_NAMES: tuple[str, ...] = tuple(MODELS)


# --------------------------------------------------------------------------------------------------------
# classifiers
# --------------------------------------------------------------------------------------------------------
def _graph_mode(cfg: Config) -> str:
    return cfg.model.graph_mode or MODELS[cfg.model.name].graph_mode


def _backbone_kwargs(cfg: Config) -> dict[str, Any]:
    kwargs = dict(cfg.model.backbone)
    for k in ("inflate_stages", "down_stages"):
        if isinstance(kwargs.get(k), list):
            kwargs[k] = tuple(kwargs[k])
    return kwargs


#: ``model.backbone`` keys that size every backbone alike (PYSKL's common constructor arguments): they reach
#: every expert of a mixed ensemble, so the experts' features have the same width.
SIZING_KWARGS = ("ch_ratio", "inflate_stages", "down_stages")


def build_backbone(cfg: Config, data: DataBundle, graph_mode: str | None = None,
                   gcn_adaptive: str | None = None, name: str | None = None, num_filter: int = 0) -> nn.Module:
    """The backbone of ``cfg.model`` for ``data`` (``graph_mode`` / ``gcn_adaptive`` override the
    configuration, e.g. the paper's random learnable graph for the generator; ``name`` another ``--model``,
    e.g. one expert of a mixed ensemble). ``gcn_adaptive`` applies to ST-GCN / ST-GCN++ only."""
    m = cfg.model
    name = name or m.name
    if name not in MODELS:
        raise ValueError(f"model: unknown backbone {name!r}; valid choices: {', '.join(MODEL_NAMES)}")
    spec = MODELS[name]
    extra = _backbone_kwargs(cfg)
    defaults = spec.defaults
    if name != m.name:  # another backbone (an expert of a mixed ensemble): only the sizing every backbone takes
        extra = {k: v for k, v in extra.items() if k in SIZING_KWARGS}
        defaults = {**defaults, **spec.expert_defaults}
    kwargs = {**defaults, **extra}
    if gcn_adaptive and spec.pyskl_adaptive:
        kwargs["gcn_adaptive"] = gcn_adaptive
    mode = graph_mode or (cfg.model.graph_mode if name == m.name else "") or spec.graph_mode
    graph_cfg: dict[str, Any] = {"layout": data.layout, "mode": mode}
    if mode == "random":
        graph_cfg.update(spec.graph_kwargs)
        if num_filter or m.num_filter:
            graph_cfg["num_filter"] = num_filter or m.num_filter
    return spec.cls(graph_cfg, in_channels=data.in_channels, base_channels=m.base_channels,
                    num_stages=m.num_stages, num_person=data.num_person, backend=m.backend, **kwargs)


def build_classifier(cfg: Config, data: DataBundle, graph_mode: str | None = None,
                     gcn_adaptive: str | None = None) -> nn.Module:
    """:class:`~pyg_sparse_stgcn.nn.SkeletonClassifier` = backbone + :class:`~pyg_sparse_stgcn.nn.GCNHead`."""
    from ..nn import GCNHead, SkeletonClassifier

    backbone = build_backbone(cfg, data, graph_mode, gcn_adaptive)
    # every backbone of MODELS sets an int out_channels (nn.Module types attributes as Tensor | Module)
    feat_channels = cast(int, backbone.out_channels)
    return SkeletonClassifier(backbone, GCNHead(data.num_classes, feat_channels, dropout=cfg.model.dropout))


# --------------------------------------------------------------------------------------------------------
# the generator's options
# --------------------------------------------------------------------------------------------------------
def _penalty(value: str | None) -> str | None:
    return value.upper() if value else None


def generator_arg_keys() -> dict[str, str]:
    """``{SparseGenerator keyword: configuration key}`` — where each option of
    :class:`~pyg_sparse_stgcn.sparsity.generator.SparseGenerator` is set (``kinds`` follows from
    ``sparsity.edge_sparsity``)."""
    import dataclasses

    from .config import GeneratorConfig

    out = {"sparsity": "sparsity.sparsity", "edge_sparsity": "sparsity.edge_sparsity",
           "kinds": "sparsity.edge_sparsity", "scope": "sparsity.scope"}
    skip = {"epochs", "clip_len", "lr_schedule", "graph_mode", "gcn_adaptive", "paper"}  # read by the mode
    for f in dataclasses.fields(GeneratorConfig):
        if f.name not in skip:
            out[f.metadata.get("arg") or f.name] = f"generator.{f.name}"
    return out


def generator_kwargs(cfg: Config, section: str = "generator", epochs: int | None = None) -> dict[str, Any]:
    """Keyword arguments of every :class:`~pyg_sparse_stgcn.sparsity.generator.SparseGenerator` of the mode
    ``section`` (``'generator'`` or ``'ensemble'``; the ensemble's own ``warm_up`` and ``penalty`` win):
    fractions of the epochs become epochs; options left unset are not passed (the generator's default, or
    with ``generator.paper`` the paper code's)."""
    g, sec = cfg.generator, getattr(cfg, section)
    epochs = epochs or sec.epochs or cfg.train.epochs
    kw: dict[str, Any] = {
        "kinds": ("weight", "edge") if cfg.sparsity.edge_sparsity > 0 else ("weight",),
        "scope": cfg.sparsity.scope,
        "warm_up": int(round(sec.warm_up * epochs)),
    }
    if cfg.sparsity.edge_sparsity > 0:
        kw["edge_sparsity"] = cfg.sparsity.edge_sparsity
    if g.ramp is not None:
        kw["ramp_epochs"] = int(round(g.ramp * epochs))
    if g.two_phase:
        kw["scores_only_after"] = int(round(g.two_phase * epochs))
    penalty = sec.penalty if section == "ensemble" else g.penalty
    if penalty is not None:
        kw["penalty"] = _penalty(penalty)
    for name in ("penalty_lambda", "penalty_has_grad", "abs_scores", "threshold_rule", "eval_sparsity",
                 "residual_zero_threshold", "paper_ramp", "score_init", "reinit_weights", "include_head"):
        v = getattr(g, name)
        if v is not None:
            kw[name] = v
    return kw


def paper_code_kwargs() -> dict[str, Any]:
    """The options :meth:`SparseGenerator.from_paper_code` applies (``sparsity.generator.PAPER_CODE``, the one
    definition of the paper preset), for the ensemble's experts."""
    from ..sparsity.generator import PAPER_CODE

    return dict(PAPER_CODE)


def _generator_factory(cfg: Config, section: str = "generator") -> Callable[..., nn.Module]:
    """``SparseGenerator.from_paper_code`` for the generator with ``generator.paper``, else ``SparseGenerator``
    (the ensemble's experts take the paper preset as keyword arguments, :func:`_ensemble_kwargs`)."""
    from ..sparsity.generator import SparseGenerator

    return SparseGenerator.from_paper_code if section == "generator" and cfg.generator.paper else SparseGenerator


def _ensemble_kwargs(cfg: Config, epochs: int | None = None) -> dict[str, Any]:
    """:func:`generator_kwargs` of the ensemble's experts, over the paper preset with ``generator.paper``."""
    kw = generator_kwargs(cfg, "ensemble", epochs)
    return {**paper_code_kwargs(), **kw} if cfg.generator.paper else kw


def check_generator_options(cfg: Config, section: str = "generator") -> None:
    """Build the generator of ``section`` around a small stand-in model, so an invalid option fails before any
    work with ``SparseGenerator``'s own message, prefixed with the configuration key it came from."""
    import re

    from .config import ConfigError

    epochs = max(getattr(cfg, section).epochs or cfg.train.epochs, 1)
    kw = generator_kwargs(cfg, section, epochs) if section == "generator" else _ensemble_kwargs(cfg, epochs)
    kw.update(kinds=("weight",), scope="global")
    kw.pop("edge_sparsity", None)
    factory = _generator_factory(cfg, section)
    sparsities = [cfg.sparsity.sparsity] if section == "generator" else list(cfg.ensemble.sparsities)
    try:
        for s in sparsities:
            factory(nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2)), s, **kw)
    except (TypeError, ValueError) as e:
        msg = str(e)
        if "no maskable targets" in msg:  # the stand-in has none under some target rule: nothing checked
            return
        hits = []
        for arg, arg_key in generator_arg_keys().items():
            m = re.search(rf"\b({arg}|{arg.replace('_', ' ')})\b", msg)
            if m:
                hits.append((m.start(), arg_key))
        key = min(hits)[1] if hits else None
        if section == "ensemble" and key in ("generator.warm_up", "generator.penalty"):
            key = "ensemble." + key.split(".")[1]
        raise ConfigError(f"{cfg.name(key) if key else '[' + section + ']'}: {msg}") from None


def build_generator(cfg: Config, data: DataBundle) -> nn.Module:
    """The paper's sparse generator (:class:`~pyg_sparse_stgcn.sparsity.generator.SparseGenerator`, or
    ``from_paper_code`` with ``generator.paper``) around a classifier with the generator's graph."""
    g = cfg.generator
    model = build_classifier(cfg, data, g.graph_mode or None, g.gcn_adaptive or None)
    return _generator_factory(cfg)(model, cfg.sparsity.sparsity, **generator_kwargs(cfg, "generator"))


def build_ensemble(cfg: Config, data: DataBundle) -> nn.Module:
    """The multi-level sparsity ensemble
    (:class:`~pyg_sparse_stgcn.sparsity.ensemble.MultiSparsityEnsemble`); its experts take every option of
    ``[generator]`` (the paper preset included) except ``warm_up`` and ``penalty``, which ``[ensemble]`` sets."""
    from ..sparsity.ensemble import MultiSparsityEnsemble

    e = cfg.ensemble
    kw = _ensemble_kwargs(cfg)
    names = list(e.models or [cfg.model.name] * len(e.sparsities))
    if len(names) != len(e.sparsities):
        raise ValueError(f"ensemble.models names {len(names)} backbones but ensemble.sparsities has "
                         f"{len(e.sparsities)} levels")

    def factory(name: str) -> Callable[[], nn.Module]:
        return lambda: build_backbone(cfg, data, e.graph_mode or None, e.gcn_adaptive or None, name=name,
                                      num_filter=e.num_filter)

    return MultiSparsityEnsemble([factory(n) for n in names], data.num_classes, sparsities=tuple(e.sparsities),
                                 dropout=cfg.model.dropout, **kw)


# --------------------------------------------------------------------------------------------------------
# checkpoints
# --------------------------------------------------------------------------------------------------------
#: What ``checkpoints/model.pt`` holds, by kind: the builder of the model.
BUILDERS: dict[str, Callable[..., nn.Module]] = {"classifier": build_classifier, "generator": build_generator,
                                                 "ensemble": build_ensemble}


def checkpoint_kind(stage: str) -> str:
    """The kind of model a trainer stage of that name trains."""
    return {"generate": "generator", "ensemble": "ensemble"}.get(stage, "classifier")


def read_our_checkpoint(checkpoint: str | Path, who: str, others: str) -> tuple[Path, dict[str, Any] | None]:
    """The file of ``checkpoint`` (a run directory stands for its ``checkpoints/model.pt``) and its contents
    when it is one of ours (``format`` = the trainer's ``CHECKPOINT_FORMAT``), else :obj:`None` (e.g. a PYSKL /
    mmcv checkpoint, not loadable as plain tensors). A missing file raises :class:`ValueError` naming ``who``
    and the ``others`` files the caller accepts."""
    from .trainer import CHECKPOINT_FORMAT

    p = Path(checkpoint)
    if p.is_dir():
        p = p / "checkpoints" / "model.pt"
    if not p.is_file():
        raise ValueError(f"{who} {p} does not exist (pass a run directory, its checkpoints/model.pt, {others})")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception:  # not loadable as plain tensors: may be a PYSKL/mmcv checkpoint
        return p, None
    return p, state if isinstance(state, dict) and state.get("format") == CHECKPOINT_FORMAT else None


def load_model(checkpoint: str | Path, cfg: Config, data: DataBundle, device: torch.device,
               read: tuple[Path, dict[str, Any] | None] | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Load a model from ``checkpoint``: a run directory (its ``checkpoints/model.pt``), this library's
    ``model.pt`` or per-stage checkpoint, or a PYSKL / mmaction2 ST-GCN checkpoint (through
    :func:`pyg_sparse_stgcn.compat.pyskl.load_pyskl_stgcn`, using ``cfg.model`` and ``data``).

    ``read`` is what :func:`read_our_checkpoint` returned for ``checkpoint`` when the caller has read it
    already (the file is then not read again).

    Returns:
        ``(model, info)`` where ``info`` holds ``source`` (``'ours'`` or ``'pyskl'``), ``kind`` and the
        checkpoint's configuration when it has one.
    """
    from ..sparsity.masks import load_masked_state_dict
    from .config import RANK_DEFAULT, Config, EnsembleConfig, GeneratorConfig, tomllib

    p, state = read or read_our_checkpoint(checkpoint, "--checkpoint:", "or a PYSKL .pth file")
    if state is not None:
        if "kind" in state:
            saved, kind = state["config"], state["kind"]
        else:  # a per-stage trainer checkpoint: the configuration is the run directory's
            run_cfg = p.parent.parent / "config.toml"
            if not run_cfg.is_file():
                raise ValueError(f"--checkpoint: {p} is a stage checkpoint outside its run directory (no "
                                 f"{run_cfg}); pass the run directory or its checkpoints/model.pt")
            saved = tomllib.loads(run_cfg.read_text())
            kind = checkpoint_kind(str(state.get("stage")))
        saved_cfg = Config().update(saved, f"the configuration saved in {p}", RANK_DEFAULT).validate()
        n = state.get("num_classes", data.num_classes)
        if n != data.num_classes:
            raise ValueError(f"--checkpoint: the model has {n} classes but --data {data.name} has "
                             f"{data.num_classes}")
        if kind == "classifier":
            # the dense baseline of generate/ensemble has that mode's graph
            saved_mode = saved_cfg.run.mode
            sec: GeneratorConfig | EnsembleConfig | None = (
                saved_cfg.generator if saved_mode == "generate"
                else saved_cfg.ensemble if saved_mode == "ensemble" else None)
            gm = ad = None
            if str(state.get("stage")) == "dense" and sec is not None:
                gm, ad = sec.graph_mode or None, sec.gcn_adaptive or None
            model = build_classifier(saved_cfg, data, gm, ad)
            load_masked_state_dict(model, state["model"])
        else:
            model = BUILDERS[kind](saved_cfg, data)
            model.load_state_dict(state["model"])
        return model.to(device), {"source": "ours", "kind": kind, "config": saved_cfg.to_dict()}
    from ..compat.pyskl import load_pyskl, load_pyskl_stgcn

    m = cfg.model
    kwargs = _backbone_kwargs(cfg)
    spec = MODELS[m.name]
    if not spec.pyskl_adaptive:  # AAGCN, CTR-GCN, DG-STGCN
        graph_cfg = {"layout": data.layout, "mode": _graph_mode(cfg)}
        if graph_cfg["mode"] == "random":
            graph_cfg.update({k: v for k, v in spec.graph_kwargs.items() if k != "num_filter"})
        model = load_pyskl(str(p), m.name, graph_cfg=graph_cfg, num_classes=data.num_classes,
                           backend=m.backend, head_dropout=m.dropout, in_channels=data.in_channels,
                           base_channels=m.base_channels, num_stages=m.num_stages, num_person=data.num_person,
                           **{**spec.defaults, **kwargs})
        return model.to(device), {"source": "pyskl", "kind": "classifier"}
    adaptive = kwargs.pop("gcn_adaptive", spec.pyskl_adaptive)
    # ST-GCN++'s residual GCN and multi-scale TCN are inferred from the checkpoint's keys
    model = load_pyskl_stgcn(str(p), layout=data.layout, mode=_graph_mode(cfg), adaptive=adaptive,
                             num_classes=data.num_classes, backend=m.backend, head_dropout=m.dropout,
                             in_channels=data.in_channels, base_channels=m.base_channels,
                             num_stages=m.num_stages, num_person=data.num_person, **kwargs)
    return model.to(device), {"source": "pyskl", "kind": "classifier"}

