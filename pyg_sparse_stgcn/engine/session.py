"""Running a mode: the :class:`Session` a mode works with (configuration, run directory, data, device, the
training stages) and :func:`execute`, which sets up processes, data and the run directory, runs the mode and
writes ``config.toml`` first and ``summary.json`` last.

Every summary holds ``mode``, ``data``, ``model``, ``feats``, ``seed``, ``run_dir``, ``top1``, ``top5``,
``mean_class_accuracy`` (fractions), ``weight_sparsity``, ``edge_sparsity`` (entries),
``edge_sparsity_connections`` (skeleton connections), ``params_stored``, ``params_kept`` and, where a dense
baseline ran, the same figures under ``dense``.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..malloc import keep_freed_memory
from . import distributed as D
from .bundle import DataBundle, build_data
from .config import Config, ConfigError
from .evaluate import save_scores
from .modes.base import Invocation, Mode, get_mode
from .rundir import RunDir, json_safe
from .trainer import CHECKPOINT_FORMAT, EpochBudget, Trainer, TrainingInterrupted, resolve_device, seed_everything

__all__ = ["Session", "Outcome", "execute", "describe", "eval_ready", "METRIC_KEYS"]

#: The accuracy figures of a test result.
METRIC_KEYS = ("top1", "top5", "mean_class_accuracy")


def describe(model: nn.Module, test: Mapping[str, Any] | None) -> dict[str, Any]:
    """Accuracy and sparsity figures of a trained model: ``top1``, ``top5``, ``mean_class_accuracy``,
    ``weight_sparsity``, ``edge_sparsity`` (edge entries), ``edge_sparsity_connections`` (skeleton
    connections; :obj:`None` when the report has no connection view), ``params_stored``, ``params_kept``; for
    an ensemble also ``inference_parameters`` (fused head only) and ``training_parameters``, and its accounting
    under ``ensemble``."""
    from ..sparsity.report import report

    own = getattr(model, "sparsity_report", None)
    rep = own() if callable(own) else report(model)
    p = rep.parameters
    out: dict[str, Any] = {k: (None if test is None else test.get(k)) for k in METRIC_KEYS}
    conn = getattr(rep, "connections", None)
    out.update(weight_sparsity=rep.kinds.get("weight", {}).get("sparsity", 0.0),
               edge_sparsity=rep.kinds.get("edge", {}).get("sparsity", 0.0),
               edge_sparsity_connections=conn.get("sparsity") if isinstance(conn, Mapping) else None,
               params_stored=int(p["stored"]), params_kept=int(p["effective"]))
    if rep.extra:
        for k in ("inference_parameters", "training_parameters"):
            v = rep.extra.get(k)
            out[k] = None if v is None else int(v)
        out["ensemble"] = json_safe(rep.extra)
    return out


def eval_ready(model: nn.Module) -> nn.Module:
    """Put a model in eval mode and refresh learned-mask thresholds (so reports read the test masks)."""
    model.eval()
    for m in model.modules():
        fn = getattr(m, "update_thresholds", None)
        if callable(fn):
            fn()
    return model


def _metrics_only(test: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return None if test is None else {k: test.get(k) for k in METRIC_KEYS}


class Session:
    """One invocation of a mode: configuration, run directory, data, device, the epoch budget and the
    command line's :class:`~pyg_sparse_stgcn.engine.modes.Invocation`.

    Args:
        cfg (Config): Resolved configuration.
        run (RunDir, optional): The run directory (:obj:`None` for modes that create none).
        data (DataBundle, optional): The dataset (:obj:`None` for modes that read none).
        device (torch.device, optional): Device.
        inv (Invocation, optional): ``--checkpoint``, ``--fuse``, the positional run directory.
        progress (bool, optional): tqdm bars. (default: :obj:`True`)
    """

    def __init__(self, cfg: Config, run: RunDir | None, data: DataBundle | None, device: torch.device | None,
                 inv: Invocation | None = None, progress: bool = True) -> None:
        self.cfg, self.run, self._device = cfg, run, device
        self._data = data
        self.inv = inv or Invocation()
        self.budget = EpochBudget(cfg.train.max_epochs_this_run)
        self.progress = progress and cfg.train.progress
        self.tests: dict[str, Mapping[str, Any]] = {}

    @property
    def data(self) -> DataBundle:
        if self._data is None:
            raise RuntimeError("this mode opened no dataset")
        return self._data

    @property
    def rundir(self) -> RunDir:
        if self.run is None:
            raise RuntimeError("this mode has no run directory")
        return self.run

    # ---- training stages --------------------------------------------------------------------------------
    def epochs(self, section: str | None = None) -> int:
        """Epochs of a mode's section (``generator.epochs`` …), ``train.epochs`` when 0 or no section."""
        e = getattr(getattr(self.cfg, section), "epochs", 0) if section else 0
        return int(e or self.cfg.train.epochs)

    def trainer(self, name: str, model: nn.Module, *, epochs: int | None = None, **over: Any) -> Trainer:
        """A :class:`~pyg_sparse_stgcn.engine.trainer.Trainer` for stage ``name`` from ``[train]`` and
        ``[data]`` (``over`` overrides any keyword)."""
        t, d = self.cfg.train, self.cfg.data
        kw: dict[str, Any] = dict(
            epochs=epochs or t.epochs, batch_size=d.batch_size, lr=t.lr, momentum=t.momentum, nesterov=t.nesterov,
            weight_decay=t.weight_decay, lr_schedule=t.lr_schedule, warmup_epochs=t.warmup_epochs,
            min_lr=t.min_lr, grad_clip=t.grad_clip, amp=t.amp, precision=t.precision, compile=t.compile,
            sync_bn=t.sync_bn, num_workers=d.num_workers, test_batch_size=d.test_batch_size or None,
            seed=self.cfg.run.seed, eval_every=t.eval_every, average_clips=self.cfg.eval.average_clips)
        kw.update(over)
        if self.data.train is None:
            raise RuntimeError("this mode opened no training split")
        if self.data.test is None:
            raise RuntimeError("this mode opened no test split")
        return Trainer(model, self.data.train, val_data=self.data.val, test_data=self.data.test,
                       collate_fn=self.data.collate_fn, device=self.device, run_dir=self.run, stage=name,
                       budget=self.budget, progress=self.progress, **kw)

    @property
    def device(self) -> torch.device:
        """The session's device (modes that compute need one; ``analyze`` runs without)."""
        if self._device is None:
            raise ValueError("this mode was started without a device")
        return self._device

    def fit(self, name: str, model: nn.Module, **kw: Any) -> dict[str, Any]:
        """Train ``model`` as stage ``name`` (resuming where a previous invocation stopped), evaluate it on
        the test split, save its scores, masks and a record in ``metrics.jsonl``; returns :func:`describe`
        (with the test accuracy on every DDP process)."""
        res = self.trainer(name, model, **kw).fit(resume=True)
        return self.finish(name, model, self._shared(res["test"]))

    def evaluate(self, model: nn.Module) -> Mapping[str, Any] | None:
        """Evaluate ``model`` on the test split (multi-clip); rank 0 gets the full result (scores), every other
        DDP process the metrics."""
        from torch.utils.data import DataLoader

        from .evaluate import evaluate as _evaluate

        test = None
        if D.is_main():
            d = self.cfg.data
            if self.data.test is None:
                raise RuntimeError("this mode opened no test split")
            loader = DataLoader(self.data.test, batch_size=d.test_batch_size or d.batch_size, shuffle=False,
                                collate_fn=self.data.collate_fn, num_workers=d.num_workers)
            test = _evaluate(model.to(self.device), loader, self.device, self.cfg.eval.average_clips,
                             self.cfg.train.amp and self.device.type == "cuda", progress=self.progress)
        return self._shared(test)

    @staticmethod
    def _shared(test: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
        """Rank 0's test result; the other DDP processes receive its metrics (the same figures as an
        all-reduce over a sharded evaluation)."""
        if not D.is_distributed():
            return test
        shared = D.broadcast_object(_metrics_only(test) if D.is_main() else None)
        return test if D.is_main() else shared

    def finish(self, name: str, model: nn.Module, test: Mapping[str, Any] | None) -> dict[str, Any]:
        """Record the test result of stage ``name``: scores, masks, a ``metrics.jsonl`` record."""
        from ..sparsity.masks import mask_state_dict

        eval_ready(model)
        out = describe(model, test)
        if D.is_main() and self.run is not None:
            if test is not None and "scores" in test:
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
        save_scores(self.rundir.scores / file, test["scores"], test["labels"], test["ids"],
                    meta={"stage": name, "confusion_matrix": test["confusion_matrix"],
                          "num_clips": self.cfg.eval.num_clips})

    def export(self, model: nn.Module, kind: str, name: str, summary: Mapping[str, Any]) -> Path:
        """Write ``checkpoints/model.pt`` (weights, masks, scores, configuration and kind: everything
        ``--mode evaluate --checkpoint`` needs), ``scores/test.pt`` (the per-sample test scores that
        ``--fuse`` reads) and ``sparsity_report.json`` for the run's final model ``name``."""
        run = self.rundir
        path = run.checkpoints / "model.pt"
        if D.is_main():
            if name in self.tests:
                self._save_scores(name, "test.pt")
            run.save("checkpoints/model.pt", {
                "format": CHECKPOINT_FORMAT, "kind": kind, "stage": name, "config": json_safe(self.cfg.to_dict()),
                "num_classes": self.data.num_classes, "layout": self.data.layout,
                "in_channels": self.data.in_channels, "num_person": self.data.num_person,
                "model": model.state_dict(), "summary": json_safe(dict(summary))})
            self.write_report(model)
        D.barrier()
        return path

    def write_report(self, model: nn.Module) -> None:
        """``sparsity_report.json`` of ``model`` (its own ``sparsity_report()`` when it has one)."""
        from ..sparsity.report import report

        own = getattr(model, "sparsity_report", None)
        self.rundir.write_json("sparsity_report.json", (own() if callable(own) else report(model)).to_dict())

    def dense_baseline(self, section: str, graph_mode: str | None = None, adaptive: str | None = None,
                       ) -> dict[str, Any] | None:
        """Train the dense baseline (stage ``dense``; same architecture and, unless ``dense.epochs`` is set,
        the same epochs as the sparse stage of ``section``), or :obj:`None` with ``dense.baseline = false``."""
        from .models import build_classifier

        if not self.cfg.dense.baseline:
            return None
        model = build_classifier(self.cfg, self.data, graph_mode, adaptive)
        return self.fit("dense", model, epochs=self.cfg.dense.epochs or self.epochs(section))


@dataclass
class Outcome:
    """What :func:`execute` returns.

    Attributes:
        summary (dict, optional): The summary (:obj:`None` on other DDP processes than rank 0 and when the
            run was stopped).
        run_dir (Path, optional): The run directory.
        interrupted (str, optional): Why the run stopped early (``train.max_epochs_this_run``); it resumes
            with ``--resume run_dir``.
        main (bool): Whether this process prints (rank 0).
    """

    summary: dict[str, Any] | None
    run_dir: Path | None = None
    interrupted: str | None = None
    main: bool = True


def execute(cfg: Config, inv: Invocation | None = None, mode: Mode | None = None) -> Outcome:
    """Run ``cfg.run.mode``: join the DDP process group (under ``torchrun``), open the dataset (rank 0 first),
    create (or, with ``inv.resume``, reopen) the run directory, write ``config.toml``, run the mode and write
    ``summary.json``. Call :meth:`Mode.check` first (the CLI does).

    Raises:
        ConfigError: for bad input found before any work (a missing dataset, an unavailable device, a run
            directory that is not one); nothing has been written then.
    """
    inv = inv or Invocation()
    mode = mode or get_mode(cfg.run.mode)
    if cfg.run.threads > 0:
        torch.set_num_threads(cfg.run.threads)
    if cfg.run.keep_freed_memory:
        keep_freed_memory()  # False (nothing changed) where the C library is not glibc
    if not mode.creates_run:
        try:
            return Outcome(json_safe(mode.run(Session(cfg, None, None, None, inv, cfg.train.progress))))
        except (ValueError, FileNotFoundError) as e:
            raise ConfigError(str(e)) from e
    device_name = cfg.run.device
    if device_name == "auto":
        device_name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device_name = D.init_distributed(device_name)
        device = resolve_device(device_name)
    except (ValueError, RuntimeError) as e:
        D.cleanup_distributed()
        raise ConfigError(str(e)) from e
    cfg.run.device = device_name
    try:
        return _execute(cfg, inv, mode, device)
    finally:
        D.cleanup_distributed()


def _execute(cfg: Config, inv: Invocation, mode: Mode, device: torch.device) -> Outcome:
    if D.is_distributed() and not D.is_main():
        D.barrier()  # rank 0 generates / processes the dataset cache first
    data = None
    try:
        if mode.needs_data(inv):
            clip = getattr(cfg, mode.clip_section).clip_len if mode.clip_section else 0
            data = build_data(cfg, train=mode.trains, log=cfg.train.progress, clip_len=clip)
    except (ValueError, FileNotFoundError) as e:  # DatasetNotFoundError lists the expected files
        raise ConfigError(str(e)) from e
    finally:
        if D.is_distributed() and D.is_main():
            D.barrier()
    try:
        run = _open_run(cfg, inv, mode)
    except ValueError as e:
        raise ConfigError(str(e)) from e
    if D.is_main() and not run.config_path.exists():
        run.write_text("config.toml", cfg.to_toml(header="Fully resolved configuration of this run "
                                                         "(pyg-sparse-stgcn); --resume reads it back."))
    if cfg.run.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    seed_everything(cfg.run.seed)
    s = Session(cfg, run, data, device, inv, cfg.train.progress)
    try:
        out = mode.run(s)
    except TrainingInterrupted as e:
        return Outcome(None, run.path, str(e), D.is_main())
    summary = {"mode": mode.name, "data": cfg.data.name, "model": cfg.model.name, "feats": cfg.data.feats,
               "seed": cfg.run.seed, "run_dir": str(run.path), **out}
    if D.is_main():
        run.write_json("summary.json", summary)
    return Outcome(json_safe(summary) if D.is_main() else None, run.path, None, D.is_main())


def _open_run(cfg: Config, inv: Invocation, mode: Mode) -> RunDir:
    if inv.resume:
        return RunDir.open(inv.resume)
    run = RunDir.create(cfg.run.out, cfg.data.name, mode.name) if D.is_main() else None
    if D.is_distributed():
        return RunDir(D.broadcast_object(str(run.path) if run is not None else None))
    assert run is not None
    return run
