"""What each CLI mode does: build data and models from a resolved configuration, run the training stages
through :class:`~pyg_sparse_stgcn.engine.trainer.Trainer`, and write the run directory.

Every mode returns a summary dict (also written to ``summary.json``) with ``mode``, ``data``, ``top1``,
``top5``, ``mean_class_accuracy`` (fractions), ``weight_sparsity``, ``edge_sparsity``, ``params_stored``,
``params_kept`` and, where a dense baseline ran, the same figures under ``dense``.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from . import distributed as D
from .config import to_toml
from .evaluate import fuse_score_files, save_scores
from .rundir import RunDir, json_safe
from .trainer import CHECKPOINT_FORMAT, EpochBudget, Trainer, resolve_device, seed_everything

__all__ = ["DataBundle", "build_data", "build_backbone", "build_classifier", "build_generator",
           "build_ensemble", "Session", "run_mode", "MODE_FUNCTIONS", "describe", "load_model"]

EXPORT_KIND = ("classifier", "generator", "ensemble")


# --------------------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------------------
@dataclass
class DataBundle:
    """The splits and facts of a dataset that the modes need.

    Attributes:
        name (str): Dataset name (``--data``).
        train (Dataset): Training split (training pipeline).
        val (Dataset): Test split with one clip per sample (validation during training).
        test (Dataset): Test split with ``eval.num_clips`` clips per sample.
        num_classes (int): Number of classes.
        layout (str): Skeleton layout name.
        in_channels (int): Channels :math:`C` of a sample's ``x``.
        num_person (int): Persons :math:`M` of a sample's ``x``.
        collate_fn (callable): Batch collation of the library's loader.
    """

    name: str
    train: Dataset
    val: Dataset
    test: Dataset
    num_classes: int
    layout: str
    in_channels: int
    num_person: int
    collate_fn: Callable | None = None


def build_data(cfg: Mapping[str, Any], train: bool = True, log: bool = True) -> DataBundle:
    """Open the dataset named by ``cfg['data']`` with the standard pipeline of its kind
    (:func:`~pyg_sparse_stgcn.data.transforms.build_pipeline`).

    Raises:
        DatasetNotFoundError: (a :class:`ValueError`) when the files are missing, listing the files expected
            under the root and where the dataset comes from; raised before any processing or training.
    """
    from ..data import build_dataset, build_pipeline, collate_skeletons, dataset_info

    d = cfg["data"]
    info = dataset_info(d["name"])
    root = d["root"] or None
    opts = dict(d["kwargs"])
    mode_sec = {"generate": "generator", "ensemble": "ensemble"}.get(cfg["run"]["mode"])
    clip_len = (mode_sec and cfg[mode_sec]["clip_len"]) or d["clip_len"] or info.clip_len
    num_person = d["num_person"] or info.num_person
    train_split, test_split = d["train_split"] or "train", d["test_split"] or "val"
    val = build_dataset(d["name"], root, test_split, log=log, **opts)  # raises DatasetNotFoundError first
    layout = cfg["model"]["layout"] or val.layout  # e.g. kinetics: openpose (JSON) or coco (PYSKL pickle)
    kind = val.pipeline_kind
    common = dict(feats=d["feats"], clip_len=clip_len, num_person=num_person, layout=layout)
    val.transform = build_pipeline(kind, train=False, num_clips=1, **common)
    nc = cfg["eval"]["num_clips"]
    test = val if nc == 1 else build_dataset(
        d["name"], root, test_split, transform=build_pipeline(kind, train=False, num_clips=nc, **common),
        log=False, **opts)
    train_set = build_dataset(d["name"], root, train_split, log=log, transform=build_pipeline(
        kind, train=True, augment=d["augment"], **common), **opts) if train else None
    ref = train_set if train_set is not None else val
    if len(ref) == 0 or len(val) == 0:
        raise ValueError(f"--data {d['name']}: split {train_split if len(ref) == 0 else test_split!r} is "
                         f"empty under {root or info.default_root}")
    x = ref[0].x
    num_classes = info.num_classes or val.num_classes
    return DataBundle(d["name"], train_set, val, test, int(num_classes), str(layout), int(x.shape[-1]),
                      int(x.shape[-4]), collate_skeletons)


# --------------------------------------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------------------------------------
def _graph_mode(cfg: Mapping[str, Any], override: str | None) -> str:
    if override:
        return override
    if cfg["model"]["graph_mode"]:
        return cfg["model"]["graph_mode"]
    return "stgcn_spatial" if cfg["model"]["name"] == "stgcn" else "spatial"


def build_backbone(cfg: Mapping[str, Any], data: DataBundle, graph_mode: str | None = None,
                   gcn_adaptive: str | None = None) -> nn.Module:
    """The ST-GCN / ST-GCN++ backbone of ``cfg['model']`` for ``data`` (``graph_mode`` / ``gcn_adaptive``
    override the configuration, e.g. the paper's random learnable graph for the generator)."""
    from ..nn import STGCN, STGCNPlusPlus

    m = cfg["model"]
    cls = STGCN if m["name"] == "stgcn" else STGCNPlusPlus
    kwargs = dict(m["backbone"])
    if gcn_adaptive:
        kwargs["gcn_adaptive"] = gcn_adaptive
    for k in ("inflate_stages", "down_stages"):
        if k in kwargs:
            kwargs[k] = tuple(kwargs[k])
    graph_cfg = {"layout": data.layout, "mode": _graph_mode(cfg, graph_mode)}
    return cls(graph_cfg, in_channels=data.in_channels, base_channels=m["base_channels"],
               num_stages=m["num_stages"], num_person=data.num_person, backend=m["backend"], **kwargs)


def build_classifier(cfg: Mapping[str, Any], data: DataBundle, graph_mode: str | None = None,
                     gcn_adaptive: str | None = None) -> nn.Module:
    """:class:`~pyg_sparse_stgcn.nn.SkeletonClassifier` = backbone + :class:`~pyg_sparse_stgcn.nn.GCNHead`."""
    from ..nn import GCNHead, SkeletonClassifier

    backbone = build_backbone(cfg, data, graph_mode, gcn_adaptive)
    return SkeletonClassifier(backbone, GCNHead(data.num_classes, backbone.out_channels,
                                                dropout=cfg["model"]["dropout"]))


def _kinds(cfg: Mapping[str, Any]) -> tuple[str, ...]:
    return ("weight", "edge") if cfg["sparsity"]["edge_sparsity"] > 0 else ("weight",)


def _epochs(cfg: Mapping[str, Any], section: str) -> int:
    e = cfg[section].get("epochs", 0) if section in cfg else 0
    return int(e or cfg["train"]["epochs"])


def _generator_kwargs(cfg: Mapping[str, Any], section: str) -> dict[str, Any]:
    """:class:`~pyg_sparse_stgcn.sparsity.generator.SparseGenerator` arguments: ``warm_up`` and ``penalty``
    from ``[generator]`` or ``[ensemble]``, the rest from ``[generator]``; fractions become epochs."""
    g, sec = cfg["generator"], cfg[section]
    epochs = _epochs(cfg, section)
    two = g["two_phase"]
    return dict(kinds=_kinds(cfg), scope=cfg["sparsity"]["scope"],
                warm_up=int(round(sec["warm_up"] * epochs)), ramp_epochs=int(round(g["ramp"] * epochs)),
                abs_scores=g["use_abs"],
                penalty={"": None, "gl": "GL", "gsgl": "GSGL"}[sec["penalty"]],
                penalty_lambda=g["penalty_lambda"], residual_zero_threshold=g["residual_tau_zero"],
                scores_only_after=int(round(two * epochs)) if two > 0 else None)


def build_generator(cfg: Mapping[str, Any], data: DataBundle) -> nn.Module:
    """The paper's sparse generator (:class:`~pyg_sparse_stgcn.sparsity.generator.SparseGenerator`) around a
    classifier with the generator's graph (random learnable adjacency by default)."""
    from ..sparsity.generator import SparseGenerator

    g = cfg["generator"]
    model = build_classifier(cfg, data, g["graph_mode"] or None, g["gcn_adaptive"] or None)
    s = cfg["sparsity"]
    edge = s["edge_sparsity"] if s["edge_sparsity"] > 0 else None
    return SparseGenerator(model, s["sparsity"], edge_sparsity=edge,
                           **_generator_kwargs(cfg, "generator"))


def build_ensemble(cfg: Mapping[str, Any], data: DataBundle) -> nn.Module:
    """The multi-level sparsity ensemble
    (:class:`~pyg_sparse_stgcn.sparsity.ensemble.MultiSparsityEnsemble`)."""
    from ..sparsity.ensemble import MultiSparsityEnsemble

    e = cfg["ensemble"]
    kw = _generator_kwargs(cfg, "ensemble")
    if cfg["sparsity"]["edge_sparsity"] > 0:
        kw["edge_sparsity"] = cfg["sparsity"]["edge_sparsity"]

    def make() -> nn.Module:
        return build_backbone(cfg, data, e["graph_mode"] or None, e["gcn_adaptive"] or None)

    return MultiSparsityEnsemble(make, data.num_classes, sparsities=tuple(e["sparsities"]),
                                 dropout=cfg["model"]["dropout"], **kw)


# --------------------------------------------------------------------------------------------------------
# summaries
# --------------------------------------------------------------------------------------------------------
def describe(model: nn.Module, test: Mapping[str, Any] | None) -> dict[str, Any]:
    """Accuracy and sparsity figures of a trained model: ``top1``, ``top5``, ``mean_class_accuracy``,
    ``weight_sparsity``, ``edge_sparsity``, ``params_stored``, ``params_kept``."""
    from ..sparsity.report import report

    rep = model.sparsity_report() if callable(getattr(model, "sparsity_report", None)) else report(model)
    p = rep.parameters
    out = {k: (None if test is None else test.get(k)) for k in ("top1", "top5", "mean_class_accuracy")}
    out.update(weight_sparsity=rep.kinds.get("weight", {}).get("sparsity", 0.0),
               edge_sparsity=rep.kinds.get("edge", {}).get("sparsity", 0.0),
               params_stored=int(p["stored"]), params_kept=int(p["effective"]))
    if rep.extra:
        out["ensemble"] = json_safe(rep.extra)
    return out


def _eval_ready(model: nn.Module) -> nn.Module:
    """Put a model in eval mode and refresh learned-mask thresholds (so reports read the test masks)."""
    model.eval()
    for m in model.modules():
        fn = getattr(m, "update_thresholds", None)
        if callable(fn):
            fn()
    return model


class Session:
    """One invocation of a mode: configuration, run directory, data, device and the epoch budget.

    Args:
        cfg (dict): Resolved configuration.
        run (RunDir): The run directory.
        data (DataBundle): The dataset.
        device (torch.device): Device.
        progress (bool, optional): tqdm bars. (default: :obj:`True`)
    """

    def __init__(self, cfg: dict, run: RunDir, data: DataBundle, device: torch.device,
                 progress: bool = True) -> None:
        self.cfg, self.run, self.data, self.device = cfg, run, data, device
        self.budget = EpochBudget(cfg["train"]["max_epochs_this_run"])
        self.progress = progress and cfg["train"]["progress"]
        self.tests: dict[str, Mapping[str, Any]] = {}

    def trainer(self, name: str, model: nn.Module, *, epochs: int | None = None, **over: Any) -> Trainer:
        t, d = self.cfg["train"], self.cfg["data"]
        kw = dict(epochs=epochs or t["epochs"], batch_size=d["batch_size"], lr=t["lr"],
                  momentum=t["momentum"],
                  nesterov=t["nesterov"], weight_decay=t["weight_decay"], lr_schedule=t["lr_schedule"],
                  warmup_epochs=t["warmup_epochs"], min_lr=t["min_lr"], grad_clip=t["grad_clip"],
                  amp=t["amp"], compile=t["compile"], sync_bn=t["sync_bn"], num_workers=d["num_workers"],
                  test_batch_size=d["test_batch_size"] or None, seed=self.cfg["run"]["seed"],
                  eval_every=t["eval_every"], average_clips=self.cfg["eval"]["average_clips"])
        kw.update(over)
        return Trainer(model, self.data.train, val_data=self.data.val, test_data=self.data.test,
                       collate_fn=self.data.collate_fn, device=self.device, run_dir=self.run, stage=name,
                       budget=self.budget, progress=self.progress, **kw)

    def fit(self, name: str, model: nn.Module, **kw: Any) -> dict[str, Any]:
        """Train ``model`` as stage ``name`` (resuming where a previous invocation stopped), evaluate it on
        the test split, save its scores, masks and a record in ``metrics.jsonl``; returns :func:`describe`."""
        res = self.trainer(name, model, **kw).fit(resume=True)
        return self.finish(name, model, res["test"])

    def finish(self, name: str, model: nn.Module, test: Mapping[str, Any] | None) -> dict[str, Any]:
        """Record the test result of stage ``name``."""
        from ..sparsity.masks import mask_state_dict

        _eval_ready(model)
        out = describe(model, test)
        if D.is_main():
            if test is not None:
                self.tests[name] = test
                self._save_scores(name, f"{name}.pt")
            masks = mask_state_dict(model)
            if masks:
                self.run.save(f"masks/{name}.pt", masks)
            self.run.log_metrics({"stage": name, "split": "test", **{k: v for k, v in out.items()
                                                                     if k != "ensemble"}})
        return out

    def _save_scores(self, name: str, file: str) -> None:
        test = self.tests[name]
        save_scores(self.run.scores / file, test["scores"], test["labels"], test["ids"],
                    meta={"stage": name, "confusion_matrix": test["confusion_matrix"],
                          "num_clips": self.cfg["eval"]["num_clips"]})

    def export(self, model: nn.Module, kind: str, name: str, summary: Mapping[str, Any]) -> Path:
        """Write ``checkpoints/model.pt`` (weights, masks, scores, configuration and kind: everything
        ``--mode evaluate --checkpoint`` needs), ``scores/test.pt`` (the per-sample test scores that
        ``--fuse`` reads) and ``sparsity_report.json`` for the run's final model ``name``."""
        from ..sparsity.report import report

        path = self.run.checkpoints / "model.pt"
        if D.is_main():
            if name in self.tests:
                self._save_scores(name, "test.pt")
            self.run.save("checkpoints/model.pt", {
                "format": CHECKPOINT_FORMAT, "kind": kind, "stage": name, "config": json_safe(self.cfg),
                "num_classes": self.data.num_classes, "layout": self.data.layout,
                "in_channels": self.data.in_channels, "num_person": self.data.num_person,
                "model": model.state_dict(), "summary": json_safe(dict(summary))})
            own = getattr(model, "sparsity_report", None)
            rep = own() if callable(own) else report(model)
            self.run.write_json("sparsity_report.json", rep.to_dict())
        D.barrier()
        return path


# --------------------------------------------------------------------------------------------------------
# modes
# --------------------------------------------------------------------------------------------------------
def _dense_baseline(s: Session, section: str, graph_mode: str | None = None, adaptive: str | None = None,
                    ) -> dict[str, Any] | None:
    """Train the dense baseline (same architecture and, unless ``dense.epochs`` is set, the same epochs as
    the sparse stage of ``section``)."""
    if not s.cfg["dense"]["baseline"]:
        return None
    model = build_classifier(s.cfg, s.data, graph_mode, adaptive)
    return s.fit("dense", model, epochs=s.cfg["dense"]["epochs"] or _epochs(s.cfg, section))


def mode_train(s: Session) -> dict[str, Any]:
    """Train a dense classifier (stage ``train``)."""
    model = build_classifier(s.cfg, s.data)
    out = s.fit("train", model)
    s.export(model, "classifier", "train", out)
    return out


def mode_generate(s: Session) -> dict[str, Any]:
    """Dense baseline (stage ``dense``), then the paper's sparse generator (stage ``generate``)."""
    g = s.cfg["generator"]
    dense = _dense_baseline(s, "generator", g["graph_mode"] or None, g["gcn_adaptive"] or None)
    gen = build_generator(s.cfg, s.data)
    out = s.fit("generate", gen, epochs=_epochs(s.cfg, "generator"), lr_schedule=g["lr_schedule"],
                find_unused_parameters=g["two_phase"] > 0)
    s.export(gen, "generator", "generate", out)
    return {**out, **({"dense": dense} if dense else {})}


def mode_ensemble(s: Session) -> dict[str, Any]:
    """Dense baseline (stage ``dense``), then the multi-level sparsity ensemble (stage ``ensemble``)."""
    e = s.cfg["ensemble"]
    dense = _dense_baseline(s, "ensemble", e["graph_mode"] or None, e["gcn_adaptive"] or None)
    ens = build_ensemble(s.cfg, s.data)
    out = s.fit("ensemble", ens, epochs=_epochs(s.cfg, "ensemble"), lr_schedule=e["lr_schedule"],
                grad_clip=e["grad_clip"])
    s.export(ens, "ensemble", "ensemble", out)
    return {**out, **({"dense": dense} if dense else {})}


def mode_prune(s: Session, checkpoint: str | None = None) -> dict[str, Any]:
    """One-shot magnitude pruning of ``checkpoint`` (or of a dense model trained first, stage ``dense``), then
    fine-tuning (stage ``finetune``)."""
    from ..sparsity.magnitude import prune

    p, sp = s.cfg["prune"], s.cfg["sparsity"]
    dense = None
    if checkpoint:
        model, _ = load_model(checkpoint, s.cfg, s.data, s.device)
        if callable(getattr(model, "score_parameters", None)) or hasattr(model, "experts"):
            raise ValueError("--checkpoint: prune needs a dense (or fixed-mask) classifier checkpoint, not a "
                             "generator or ensemble")
        dense = s.finish("dense", model, _evaluate_on(s, model))
    else:
        model = build_classifier(s.cfg, s.data)
        dense = s.fit("dense", model, epochs=s.cfg["dense"]["epochs"] or s.cfg["train"]["epochs"])
    prune(model, sp["sparsity"], scope="layer" if sp["scope"] == "layer" else "global", kinds=_kinds(s.cfg),
          edge_sparsity=sp["edge_sparsity"] if sp["edge_sparsity"] > 0 else None)
    before = describe(_eval_ready(model), _evaluate_on(s, model))
    over: dict[str, Any] = {"epochs": p["finetune_epochs"] or s.cfg["train"]["epochs"]}
    if p["lr"] > 0:
        over["lr"] = p["lr"]
    out = s.fit("finetune", model, **over)
    s.export(model, "classifier", "finetune", out)
    return {**out, "before_finetune": {k: before[k] for k in ("top1", "top5", "mean_class_accuracy")},
            "dense": dense}


def _lottery_levels(cfg: Mapping[str, Any]) -> int:
    lv = cfg["lottery"]["levels"]
    if lv > 0:
        return lv
    f, target = cfg["lottery"]["fraction"], cfg["sparsity"]["sparsity"]
    if target <= 0 or f <= 0:
        return 0
    return int(math.ceil(math.log(1 - target) / math.log(1 - f) - 1e-9))


def mode_lottery(s: Session) -> dict[str, Any]:
    """Iterative magnitude pruning with rewinding; one trainer stage ``level_<L>`` (and per control) per
    level, IMP's files under ``lottery/``."""
    from ..sparsity.lottery import IterativeMagnitudePruning

    lt = s.cfg["lottery"]
    model = build_classifier(s.cfg, s.data)
    results: dict[str, dict[str, Any]] = {}

    def train_fn(m: nn.Module, *, level: int, out_dir: Path, start_step: int,
                 on_step: Callable[[int], None]) -> dict[str, Any]:
        rel = out_dir.relative_to(s.run.path / "lottery")
        name = "-".join(rel.parts)
        out = s.fit(name, m, start_step=start_step, on_step=on_step)
        results[name] = out
        return {k: v for k, v in out.items() if k != "ensemble"}

    branches = tuple(b for b in ("random_reinit", "random_prune") if lt[b])
    imp = IterativeMagnitudePruning(model, train_fn, s.run.path / "lottery", _lottery_levels(s.cfg),
                                    fraction=lt["fraction"], edge_fraction=lt["edge_fraction"],
                                    kinds=_kinds(s.cfg) if lt["edge_fraction"] > 0 else ("weight",),
                                    scope="layer" if s.cfg["sparsity"]["scope"] == "layer" else "global",
                                    rewind_step=lt["rewind_step"], branches=branches,
                                    seed=s.cfg["run"]["seed"])
    levels = imp.run()
    last = f"level_{len(levels) - 1}"
    # the model ends as the last level trained it (also when every level was already done on resume)
    from ..sparsity.masks import load_mask_state_dict

    final_dir = imp.level_dir(len(levels) - 1)
    model.load_state_dict(torch.load(final_dir / "trained.pt", map_location=s.device, weights_only=True),
                          strict=False)
    load_mask_state_dict(model, torch.load(final_dir / "mask.pt", map_location="cpu", weights_only=True))
    final = results.get(last) or _summary_from_level(levels[-1])
    s.export(model, "classifier", last, final)
    dense = results.get("level_0") or _summary_from_level(levels[0])
    return {**final, "levels": json_safe(levels), "dense": dense}


def _summary_from_level(metrics: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("top1", "top5", "mean_class_accuracy", "weight_sparsity", "edge_sparsity", "params_stored",
            "params_kept")
    return {k: metrics.get(k) for k in keys}


def _evaluate_on(s: Session, model: nn.Module) -> dict[str, Any] | None:
    from .evaluate import evaluate as _evaluate

    if not D.is_main():
        return None
    from torch.utils.data import DataLoader

    bs = s.cfg["data"]["test_batch_size"] or s.cfg["data"]["batch_size"]
    loader = DataLoader(s.data.test, batch_size=bs, shuffle=False, collate_fn=s.data.collate_fn,
                        num_workers=s.cfg["data"]["num_workers"])
    return _evaluate(model.to(s.device), loader, s.device, s.cfg["eval"]["average_clips"],
                     s.cfg["train"]["amp"] and s.device.type == "cuda", progress=s.progress)


def _stage_kind(stage: str) -> str:
    if stage == "generate":
        return "generator"
    if stage == "ensemble":
        return "ensemble"
    return "classifier"


def load_model(checkpoint: str | Path, cfg: Mapping[str, Any], data: DataBundle,
               device: torch.device) -> tuple[nn.Module, dict[str, Any]]:
    """Load a model from ``checkpoint``: a run directory (its ``checkpoints/model.pt``), this library's
    ``model.pt`` or per-stage checkpoint, or a PYSKL / mmaction2 ST-GCN checkpoint (through
    :func:`pyg_sparse_stgcn.compat.pyskl.load_pyskl_stgcn`, using ``cfg['model']`` and ``data``).

    Returns:
        ``(model, info)`` where ``info`` holds ``source`` (``'ours'`` or ``'pyskl'``), ``kind`` and the
        checkpoint's configuration when it has one.
    """
    from ..sparsity.masks import load_masked_state_dict

    p = Path(checkpoint)
    if p.is_dir():
        p = p / "checkpoints" / "model.pt"
    if not p.is_file():
        raise ValueError(f"--checkpoint: {p} does not exist (pass a run directory, its checkpoints/model.pt, "
                         f"or a PYSKL .pth file)")
    state: Any = None
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception:  # not loadable as plain tensors: may be a PYSKL/mmcv checkpoint
        state = None
    if isinstance(state, dict) and state.get("format") == CHECKPOINT_FORMAT:
        if "kind" in state:
            saved_cfg, kind = state["config"], state["kind"]
        else:  # a per-stage trainer checkpoint: the configuration is the run directory's
            import tomllib

            run_cfg = p.parent.parent / "config.toml"
            if not run_cfg.is_file():
                raise ValueError(f"--checkpoint: {p} is a stage checkpoint outside its run directory (no "
                                 f"{run_cfg}); pass the run directory or its checkpoints/model.pt")
            saved_cfg = tomllib.loads(run_cfg.read_text())
            kind = _stage_kind(str(state.get("stage")))
        n = state.get("num_classes", data.num_classes)
        if n != data.num_classes:
            raise ValueError(f"--checkpoint: the model has {n} classes but --data {data.name} has "
                             f"{data.num_classes}")
        builder = {"classifier": build_classifier, "generator": build_generator, "ensemble": build_ensemble}
        if kind == "classifier":
            # the dense baseline of generate/ensemble has that mode's graph
            sec = {"generate": "generator", "ensemble": "ensemble"}.get(saved_cfg["run"]["mode"])
            gm = ad = None
            if str(state.get("stage")) == "dense" and sec is not None:
                gm, ad = saved_cfg[sec]["graph_mode"] or None, saved_cfg[sec]["gcn_adaptive"] or None
            model = build_classifier(saved_cfg, data, gm, ad)
            load_masked_state_dict(model, state["model"])
        else:
            model = builder[kind](saved_cfg, data)
            model.load_state_dict(state["model"])
        return model.to(device), {"source": "ours", "kind": kind, "config": saved_cfg}
    from ..compat.pyskl import load_pyskl_stgcn

    m = cfg["model"]
    kwargs = dict(m["backbone"])
    adaptive = kwargs.pop("gcn_adaptive", "init" if m["name"] == "stgcn++" else "importance")
    if m["name"] == "stgcn++":
        kwargs.setdefault("gcn_with_res", True)
        kwargs.setdefault("tcn_type", "mstcn")
    for k in ("inflate_stages", "down_stages"):
        if k in kwargs:
            kwargs[k] = tuple(kwargs[k])
    model = load_pyskl_stgcn(str(p), layout=data.layout, mode=_graph_mode(cfg, None), adaptive=adaptive,
                             num_classes=data.num_classes, backend=m["backend"], head_dropout=m["dropout"],
                             in_channels=data.in_channels, base_channels=m["base_channels"],
                             num_stages=m["num_stages"], num_person=data.num_person, **kwargs)
    return model.to(device), {"source": "pyskl", "kind": "classifier"}


def mode_evaluate(s: Session, checkpoint: str | None = None, fuse: Sequence[str] = ()) -> dict[str, Any]:
    """Evaluate ``checkpoint`` on the test split (see :func:`load_model`), or fuse the saved scores of the
    runs in ``fuse``."""
    if fuse:
        coeff = s.cfg["eval"]["fusion_coefficients"]
        res = fuse_score_files(list(fuse), coeff if len(coeff) == len(fuse) else None)
        if D.is_main():
            save_scores(s.run.scores / "test.pt", res["scores"], res["labels"], res["ids"],
                        meta={"fused": [str(f) for f in fuse], "streams": res["streams"]})
        return {k: res[k] for k in ("top1", "top5", "mean_class_accuracy", "num_samples", "streams")} | {
            "weight_sparsity": None, "edge_sparsity": None, "params_stored": None, "params_kept": None}
    from ..sparsity.report import report

    model, info = load_model(checkpoint, s.cfg, s.data, s.device)
    test = _evaluate_on(s, model)
    out = s.finish("test", model, test)
    if D.is_main():
        own = getattr(model, "sparsity_report", None)
        s.run.write_json("sparsity_report.json", (own() if callable(own) else report(model)).to_dict())
    return {**out, "checkpoint": str(checkpoint), "source": info["source"], "kind": info["kind"]}


def mode_analyze(s: Session | None, target: str) -> dict[str, Any]:
    """Hand over to the analysis package's report when it exists; otherwise report the sparsity of the run's
    final model."""
    run = RunDir.open(target)
    from .. import analysis

    analyze_run = getattr(analysis, "analyze_run", None)  # the analysis package's entry point, once it exists
    if callable(analyze_run):
        return dict(analyze_run(run.path))
    import json

    summ = run.path / "summary.json"
    rep = run.path / "sparsity_report.json"
    if not rep.is_file():
        raise ValueError(f"analyze: {run.path} has no sparsity_report.json (the run did not finish)")
    out = json.loads(summ.read_text()) if summ.is_file() else {}
    out["sparsity_report"] = json.loads(rep.read_text())
    return out


MODE_FUNCTIONS: dict[str, Callable[..., dict[str, Any]]] = {
    "train": mode_train, "prune": mode_prune, "lottery": mode_lottery, "generate": mode_generate,
    "ensemble": mode_ensemble, "evaluate": mode_evaluate, "analyze": mode_analyze}


def run_mode(cfg: dict, run: RunDir, data: DataBundle, *, checkpoint: str | None = None,
             fuse: Sequence[str] = (), progress: bool = True) -> dict[str, Any]:
    """Run ``cfg['run']['mode']`` in ``run``; writes ``config.toml`` first and ``summary.json`` last.

    Raises:
        TrainingInterrupted: when ``train.max_epochs_this_run`` stops the run (resumable).
    """
    mode = cfg["run"]["mode"]
    device = resolve_device(cfg["run"]["device"])
    if D.is_main() and not run.config_path.exists():
        run.write_text("config.toml", to_toml(cfg, header="Fully resolved configuration of this run "
                                                          "(pyg-sparse-stgcn)."))
    if cfg["run"]["deterministic"]:
        torch.use_deterministic_algorithms(True, warn_only=True)
    seed_everything(cfg["run"]["seed"])
    s = Session(cfg, run, data, device, progress)
    if mode == "prune":
        out = mode_prune(s, checkpoint)
    elif mode == "evaluate":
        out = mode_evaluate(s, checkpoint, fuse)
    else:
        out = MODE_FUNCTIONS[mode](s)
    summary = {"mode": mode, "data": cfg["data"]["name"], "model": cfg["model"]["name"],
               "feats": cfg["data"]["feats"], "run_dir": str(run.path), **out}
    if D.is_main():
        run.write_json("summary.json", summary)
    return json_safe(summary)
