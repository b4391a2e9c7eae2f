"""``--mode predict`` (``pyg-sparse-stgcn predict CHECKPOINT INPUT...``): classify skeleton files, or a live
stream of frames, with a checkpoint's own pipeline (:mod:`pyg_sparse_stgcn.deploy`). Writes no run
directory."""
from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import RANK_CLI, Config, ConfigError
from ..session import Session
from ..trainer import resolve_device
from .base import Invocation, Mode, register_mode

__all__ = ["PredictMode", "PredictRequest", "load_predictor", "checkpoint_facts"]

#: Settings a run's checkpoint fixes; given on the command line they must agree with it (test-time choices
#: such as ``eval.num_clips`` may differ).
_TEST_TIME_KEYS = ("eval.num_clips", "eval.average_clips")


@dataclass
class PredictRequest:
    """What ``predict`` was asked besides the configuration.

    Attributes:
        inputs (tuple of str): Skeleton files (``-`` = stdin with ``stream``).
        stream (bool): Read one JSON frame per line and predict on a sliding window.
        json (bool): Machine-readable output.
        index (int, optional): Annotation index in a PYSKL pickle.
        frame_dir (str, optional): Annotation ``frame_dir`` in a PYSKL pickle.
        skip_bad (bool): Streams: count and skip malformed lines instead of stopping.
        top_k (int): Classes shown per prediction.
        runtime (str): ``torch``, ``sparse`` or ``onnx``.
        sparse_layout (str): ``--runtime sparse``: the export's layout (``auto`` = timed at start).
        window (int): Streams: frames per window (0 = the checkpoint's clip length).
        stride (int): Streams: frames between predictions (0 = a quarter of the window).
        write (callable): Where stream predictions go (one JSON line each).
    """

    inputs: tuple[str, ...] = ()
    stream: bool = False
    json: bool = False
    index: int | None = None
    frame_dir: str | None = None
    skip_bad: bool = False
    top_k: int = 5
    runtime: str = "torch"
    sparse_layout: str = "auto"
    window: int = 0
    stride: int = 0
    write: Callable[[str], None] = field(default=lambda s: print(s, flush=True), repr=False)


def checkpoint_facts(checkpoint: str | Path,
                     read: tuple[Path, dict[str, Any] | None] | None = None) -> dict[str, Any] | None:
    """The configuration and facts (``layout``, ``num_person``, ``num_classes``) of one of our checkpoints (a
    run directory, ``model.pt`` or a stage checkpoint), or :obj:`None` for any other file (PYSKL). ``read``:
    what :func:`~pyg_sparse_stgcn.engine.models.read_our_checkpoint` returned for it, if already read."""
    from ..config import tomllib
    from ..models import read_our_checkpoint

    p, state = read or read_our_checkpoint(checkpoint, "predict: checkpoint", "a PYSKL .pth or an .onnx file")
    if state is None:
        return None
    if "config" in state:
        config = state["config"]
    else:
        run_cfg = p.parent.parent / "config.toml"
        if not run_cfg.is_file():
            raise ValueError(f"predict: {p} is a stage checkpoint outside its run directory (no {run_cfg}), so "
                             f"its pipeline is unknown; pass the run directory or its checkpoints/model.pt")
        config = tomllib.loads(run_cfg.read_text())
    return {"config": config, "layout": state.get("layout"), "num_person": state.get("num_person"),
            "num_classes": state.get("num_classes"), "in_channels": state.get("in_channels")}


def _check_agrees(cfg: Config, saved: Mapping[str, Any], checkpoint: str) -> None:
    """Command-line settings of the pipeline/model must agree with what the checkpoint records."""
    for key in cfg.explicit(RANK_CLI):
        sec = key.split(".")[0]
        if sec not in ("data", "model", "eval") or key in _TEST_TIME_KEYS or key in ("data.root",):
            continue
        cur: Any = saved
        for part in key.split("."):
            cur = cur.get(part) if isinstance(cur, Mapping) else None
        if cur is not None and cur != cfg.get(key):
            raise ConfigError(f"{cfg.name(key)} {cfg.get(key)!r} conflicts with the checkpoint {checkpoint}, "
                              f"whose {key} is {cur!r} (predict runs the checkpoint's own pipeline; leave the "
                              "option out)")


def load_predictor(checkpoint: str, cfg: Config, runtime: str = "torch",
                   before_model: Callable[[Any], None] | None = None, sparse_layout: str = "auto") -> Any:
    """A :class:`~pyg_sparse_stgcn.deploy.Predictor` for ``checkpoint``: one of our run directories /
    ``model.pt`` files (dense, masked, generator, ensemble: the pipeline from its own configuration), an
    ``.onnx`` file written by ``export_onnx`` with its pipeline in the metadata, or a PYSKL / mmaction2
    checkpoint (the pipeline from ``--data`` and the settings).

    ``before_model(spec)`` runs once the pipeline is known and before the model is loaded (``predict`` reads
    and checks its inputs there, so a file that does not fit fails before any work).

    Raises:
        ConfigError: When the facts needed to build the pipeline are missing (saying which and how to pass
            them) or a command-line setting contradicts the checkpoint.
    """
    from ...deploy import OnnxModel, PipelineSpec, Predictor
    from ..bundle import DataBundle
    from ..models import load_model, read_our_checkpoint

    explicit = set(cfg.explicit(RANK_CLI))
    over = {k: cfg.get(k) for k in _TEST_TIME_KEYS if k in explicit}
    if Path(checkpoint).suffix == ".onnx":
        if runtime not in ("onnx", "torch"):
            raise ConfigError(f"--runtime {runtime}: an .onnx checkpoint runs with --runtime onnx")
        onnx_model = OnnxModel(checkpoint, threads=cfg.run.threads)
        meta = onnx_model.metadata.get("pipeline")
        if meta:
            spec = PipelineSpec.from_dict(meta)
        elif "data.name" in explicit:
            spec = PipelineSpec.from_config(cfg.to_dict())
        else:
            raise ConfigError(f"{checkpoint} carries no pipeline metadata (it was not written by "
                              "pyg_sparse_stgcn.deploy.export_onnx with metadata): pass --data NAME and, where they "
                              "differ from the defaults, --feats, --set data.clip_len=N, --set data.num_person=M")
        _apply(spec, over)
        if before_model is not None:
            before_model(spec)
        return Predictor(onnx_model, spec, "onnx")
    read = read_our_checkpoint(checkpoint, "predict: checkpoint", "a PYSKL .pth or an .onnx file")
    facts = checkpoint_facts(checkpoint, read)  # the file is read once, for its facts and its model
    if facts is not None:
        _check_agrees(cfg, facts["config"], checkpoint)
        spec = PipelineSpec.from_config(facts["config"], layout=facts["layout"], num_person=facts["num_person"],
                                        num_classes=facts["num_classes"])
        saved = Config.from_dict(facts["config"], f"the configuration saved with {checkpoint}")
    else:
        if "data.name" not in explicit:
            raise ConfigError(f"{checkpoint} is not one of this library's checkpoints (a PYSKL / mmaction2 one?) and "
                              "carries no pipeline facts: pass --data NAME (layout, classes, pipeline kind, clip "
                              "length) and, where they differ, --model, --feats, --set data.clip_len=N, --set "
                              "model.layout=NAME")
        spec = PipelineSpec.from_config(cfg.to_dict())
        saved = cfg
        if spec.num_classes is None:
            raise ConfigError(f"--data {cfg.data.name} does not fix the number of classes: predict cannot build "
                              f"the head of {checkpoint}")
    _apply(spec, over)
    if before_model is not None:
        before_model(spec)
    # a model-only bundle, no splits (as analyze's): DataBundle types val/test as always present
    data = DataBundle.facts(spec.dataset or "", int(spec.num_classes or 0), spec.layout, spec.in_channels,
                            spec.num_person)
    device = resolve_device(cfg.run.device)
    try:
        model, _ = load_model(checkpoint, saved, data, device, read)
    except (ValueError, KeyError, RuntimeError) as e:
        raise ConfigError(f"predict: cannot load {checkpoint} as a {spec.layout} model with {spec.in_channels} "
                          f"input channels and {spec.num_classes} classes: {e}") from None
    return Predictor(model.eval(), spec, runtime, device, sparse_layout)


def _apply(spec: Any, over: Mapping[str, Any]) -> None:
    if "eval.num_clips" in over:
        spec.num_clips = int(over["eval.num_clips"])
    if "eval.average_clips" in over:
        spec.average_clips = str(over["eval.average_clips"])


@register_mode
class PredictMode(Mode):
    """Classify skeleton files (or a stream of frames) with ``--checkpoint``'s own pipeline; prints the top-k
    classes and probabilities (``--json``: one JSON document; ``--stream``: one JSON line per prediction)."""

    name = "predict"
    label = "predicted"
    checkpoint = "required"
    trains = False
    creates_run = False
    reads = ("run", "data", "model", "eval")

    def __init__(self) -> None:
        self.request = PredictRequest()

    def configure(self, request: PredictRequest) -> PredictMode:
        """Set the inputs and output options (the CLI calls this before :meth:`check`)."""
        self.request = request
        return self

    def check(self, cfg: Config, inv: Invocation) -> None:
        from ...deploy import RUNTIMES

        super().check(cfg, inv)
        r = self.request
        if not r.inputs and not r.stream:
            raise ConfigError("predict needs INPUT files: pyg-sparse-stgcn predict CHECKPOINT INPUT... (or --stream "
                              "to read frames from stdin)")
        if r.runtime not in RUNTIMES:
            raise ConfigError(f"--runtime: unknown runtime {r.runtime!r}; valid choices: {', '.join(RUNTIMES)}")
        from ...sparsity.export import LAYOUTS

        if r.sparse_layout not in ("auto", *LAYOUTS):
            raise ConfigError(f"--sparse-layout: unknown layout {r.sparse_layout!r}; valid choices: auto, "
                              f"{', '.join(LAYOUTS)}")
        if r.sparse_layout != "auto" and r.runtime != "sparse":
            raise ConfigError(f"--sparse-layout applies to --runtime sparse (the runtime is {r.runtime})")
        if r.top_k < 1:
            raise ConfigError(f"--top-k must be >= 1, got {r.top_k}")
        if r.stream and (r.index is not None or r.frame_dir is not None):
            raise ConfigError("--index / --frame-dir select a PYSKL annotation; they do not apply to --stream")
        if r.skip_bad and not r.stream:
            raise ConfigError("--skip-bad applies to --stream (malformed stream lines)")
        if not r.stream and (r.window or r.stride):
            raise ConfigError("--window / --stride apply to --stream")
        if r.stream and len(r.inputs) > 1:
            raise ConfigError(f"--stream reads one stream (a file or '-' for stdin), got {len(r.inputs)} inputs")
        for f in r.inputs:
            if f != "-" and not Path(f).is_file():
                raise ConfigError(f"input {f} does not exist")
        assert inv.checkpoint is not None
        if not Path(inv.checkpoint).exists():
            raise ConfigError(f"checkpoint {inv.checkpoint} does not exist (a run directory, its "
                              "checkpoints/model.pt, a PYSKL .pth or an .onnx file)")

    def run(self, session: Session) -> dict[str, Any]:
        r = self.request
        assert session.inv.checkpoint is not None
        from ...deploy import read_input

        samples: list[tuple[str, Any]] = []

        def read_all(spec: Any) -> None:  # every input read and checked before the model is loaded
            for f in r.inputs if not r.stream else ():
                samples.extend((f, s) for s in read_input(f, spec, index=r.index, frame_dir=r.frame_dir))

        predictor = load_predictor(session.inv.checkpoint, session.cfg, r.runtime, read_all, r.sparse_layout)
        head = {"checkpoint": str(session.inv.checkpoint), "runtime": predictor.runtime,
                "pipeline": predictor.spec.to_dict() | {"labels": None}}
        if r.stream:
            return head | {"stream": self._stream(predictor)}
        preds = [predictor.predict(s, r.top_k, f).to_dict() for f, s in samples]
        return head | {"predictions": preds}

    def _stream(self, predictor: Any) -> dict[str, Any]:
        from ...deploy import StreamingRecognizer, run_stream

        r = self.request
        window = r.window or predictor.spec.clip_len
        stride = r.stride or max(1, window // 4)
        rec = StreamingRecognizer(predictor, window, stride, top_k=r.top_k)
        src = r.inputs[0] if r.inputs else "-"
        if src == "-":
            stats = run_stream(rec, sys.stdin, r.write, skip_bad=r.skip_bad)
        else:
            with open(src, encoding="utf-8") as fh:
                stats = run_stream(rec, fh, r.write, skip_bad=r.skip_bad)
        out = stats.to_dict() | {"window": window, "stride": stride}
        msg = (f"stream: {stats.lines} lines, {stats.frames} frames, {stats.predictions} predictions "
               f"(window {window}, stride {stride})")
        if stats.skipped:
            msg += f", {stats.skipped} malformed lines skipped (first: {stats.errors[0]})"
        print(msg, file=sys.stderr, flush=True)
        return out

    def format_summary(self, summary: Mapping[str, Any]) -> str:
        if "stream" in summary:
            return ""  # the predictions went out line by line; the counts went to stderr
        if self.request.json:
            return json.dumps(summary, indent=2)
        lines = []
        for p in summary.get("predictions", []):
            lines.append(f"{p['source']} [{p['frame_dir']}] ({p['latency_ms']:.1f} ms)")
            for i, t in enumerate(p["top"], 1):
                name = t["label"] if isinstance(t["label"], str) else f"class {t['label']}"
                lines.append(f"  {i}. {name:<40} {100 * t['prob']:6.2f}%  (index {t['index']})")
        return "\n".join(lines)
