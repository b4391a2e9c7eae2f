r"""Offline prediction: a checkpoint's own pipeline (:class:`PipelineSpec`), skeleton files of any format the
readers take (:func:`read_input`) and a :class:`Predictor` that classifies them with a torch model, the
exported sparse kernels or an onnxruntime session.

The engine's ``predict`` mode and ``pyg-sparse-stgcn predict CHECKPOINT INPUT...`` build on these; this
module imports only from ``graph``, ``data``, ``nn`` and ``sparsity`` (never from the engine).
"""
from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..data.sample import SkeletonFormatError, SkeletonSample

__all__ = ["PipelineSpec", "Predictor", "Prediction", "read_input", "label_names", "RUNTIMES", "INPUT_FORMATS"]

#: Runtimes of :class:`Predictor` (``--runtime``).
RUNTIMES = ("torch", "sparse", "onnx")
#: File suffixes :func:`read_input` reads, with their formats.
INPUT_FORMATS = {".skeleton": "NTU RGB+D .skeleton", ".json": "Kinetics-skeleton JSON (or NW-UCLA all_sqe JSON)",
                 ".pkl": "PYSKL annotation pickle (--index / --frame-dir select one annotation)",
                 ".pickle": "PYSKL annotation pickle", ".npy": "(C, T, V, M) array"}


def label_names(dataset: str | None, num_classes: int | None) -> tuple[str, ...] | None:
    """The class names of ``dataset`` (its source's ``class_names``: a tuple, or one per variant) when there
    are ``num_classes`` of them, else :obj:`None` (predictions then name class indices)."""
    if not dataset:
        return None
    try:
        from ..data.datasets import get_source

        names = getattr(get_source(dataset), "class_names", None)
    except (ValueError, ImportError):
        return None
    if isinstance(names, Mapping):
        names = names.get(dataset)
    if not isinstance(names, (list, tuple)) or (num_classes is not None and len(names) != num_classes):
        return None
    return tuple(names)


@dataclass
class PipelineSpec:
    r"""The facts that turn a skeleton file into a model input, as the checkpoint was trained and tested:
    the standard test pipeline of :func:`~pyg_sparse_stgcn.data.build_pipeline` with these arguments.

    Attributes:
        kind (str): ``'3d'``, ``'2d'`` (PYSKL pixels + score) or ``'2d-normalized'`` (Kinetics-skeleton JSON).
        layout (str): Skeleton layout of the model's graph.
        feats (str): Feature streams (``'j'``, ``'j+b'``, ...).
        clip_len (int): Frames per clip.
        num_clips (int): Test clips per sample (averaged).
        num_person (int): Persons :math:`M`.
        num_classes (int, optional): Classes.
        labels (tuple of str, optional): Class names (the dataset's label list).
        dataset (str, optional): The ``--data`` name the model was trained on.
        img_shape (tuple of int, optional): ``(h, w)`` for ``'2d'`` inputs without one.
        average_clips (str): ``'prob'`` (softmax, then mean) or ``'score'`` (mean logits).
        seed (int): Seed of the test sampling.
    """

    kind: str
    layout: str
    feats: str = "j"
    clip_len: int = 100
    num_clips: int = 1
    num_person: int = 2
    num_classes: int | None = None
    labels: tuple[str, ...] | None = None
    dataset: str | None = None
    img_shape: tuple[int, int] | None = None
    average_clips: str = "prob"
    seed: int = 255

    def __post_init__(self) -> None:
        from ..data.transforms import PIPELINE_KINDS, parse_feats
        from ..graph import get_layout

        if self.kind not in PIPELINE_KINDS:
            raise ValueError(f"PipelineSpec: kind must be one of {', '.join(PIPELINE_KINDS)}, got {self.kind!r}")
        self.layout = get_layout(self.layout).name
        parse_feats(self.feats)
        for name in ("clip_len", "num_clips", "num_person"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"PipelineSpec: {name} must be a positive int, got {v!r}")
        if self.average_clips not in ("prob", "score"):
            raise ValueError(f"PipelineSpec: average_clips must be 'prob' or 'score', got {self.average_clips!r}")
        if self.labels is not None:
            self.labels = tuple(self.labels)
        if self.img_shape is not None:
            self.img_shape = (int(self.img_shape[0]), int(self.img_shape[1]))

    # ---- derived facts ---------------------------------------------------------------------------------
    @property
    def dims(self) -> int:
        """2 for 2-D poses (channels ``x, y, score``), 3 for 3-D (``x, y, z``)."""
        return 3 if self.kind == "3d" else 2

    @property
    def num_joints(self) -> int:
        """Joints :math:`V` of :attr:`layout`."""
        from ..graph import get_layout

        return get_layout(self.layout).num_nodes

    @property
    def in_channels(self) -> int:
        """Channels :math:`C` of the model input (3 per stream)."""
        from ..data.transforms import parse_feats

        return 3 * len(parse_feats(self.feats))

    def label(self, index: int) -> str | int:
        """The name of class ``index`` (the index itself without a label list)."""
        return self.labels[index] if self.labels is not None and 0 <= index < len(self.labels) else int(index)

    def pipeline(self, num_clips: int | None = None) -> Any:
        """The test pipeline (:func:`~pyg_sparse_stgcn.data.build_pipeline`, ``train=False``)."""
        from ..data.transforms import build_pipeline

        return build_pipeline(self.kind, self.feats, self.clip_len, train=False,
                              num_clips=num_clips or self.num_clips, num_person=self.num_person,
                              layout=self.layout, img_shape=self.img_shape, seed=self.seed)

    # ---- (de)serialisation -----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (what :func:`~pyg_sparse_stgcn.deploy.export_onnx` stores in the ONNX file)."""
        d = asdict(self)
        d["labels"] = list(self.labels) if self.labels is not None else None
        d["img_shape"] = list(self.img_shape) if self.img_shape is not None else None
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PipelineSpec:
        """Inverse of :meth:`to_dict` (unknown keys are an error)."""
        import dataclasses

        known = {f.name for f in dataclasses.fields(cls)}
        bad = sorted(set(d) - known)
        if bad:
            raise ValueError(f"PipelineSpec: unknown key(s) {bad}; valid: {', '.join(sorted(known))}")
        return cls(**dict(d))

    @classmethod
    def from_config(cls, config: Mapping[str, Any], *, layout: str | None = None, num_person: int | None = None,
                    num_classes: int | None = None) -> PipelineSpec:
        """The spec of a run from its configuration (the ``config.toml`` / ``model.pt`` dict: ``data``,
        ``model``, ``eval`` and ``run`` sections) and the facts its ``model.pt`` records.

        The clip length is the mode's own (``generator.clip_len`` / ``ensemble.clip_len`` when set), else
        ``data.clip_len``, else the dataset's recommendation; the kind is the dataset's pipeline kind (for a
        2-D dataset whose layout differs from the recommended one, ``'2d'`` for ``coco`` — PYSKL pickles —
        else ``'2d-normalized'``).

        Raises:
            ValueError: When a fact is missing, naming it and how to pass it.
        """
        from ..data import dataset_info

        data, model = config.get("data", {}) or {}, config.get("model", {}) or {}
        ev, run = config.get("eval", {}) or {}, config.get("run", {}) or {}
        name = data.get("name")
        if not name:
            raise ValueError("the checkpoint's configuration names no dataset (data.name): pass --data NAME")
        info = dataset_info(name)
        lay = layout or model.get("layout") or info.layout
        if not lay:
            raise ValueError(f"the checkpoint's configuration gives no skeleton layout for --data {name}: pass "
                             "--set model.layout=NAME (e.g. coco, openpose, nturgb+d)")
        kind = info.pipeline_kind
        if info.dims == 2 and info.layout and lay != info.layout:
            kind = "2d" if lay == "coco" else "2d-normalized"
        section = {"generate": "generator", "ensemble": "ensemble"}.get(str(run.get("mode", "")))
        clip = int((config.get(section, {}) or {}).get("clip_len", 0) or 0) if section else 0
        clip = clip or int(data.get("clip_len", 0) or 0) or int(info.clip_len)
        n_cls = num_classes or info.num_classes
        return cls(kind=kind, layout=lay, feats=str(data.get("feats", "j")), clip_len=clip,
                   num_clips=int(ev.get("num_clips", 1) or 1),
                   num_person=int(num_person or data.get("num_person", 0) or info.num_person),
                   num_classes=n_cls, labels=label_names(name, n_cls), dataset=name,
                   average_clips=str(ev.get("average_clips", "prob")))


# --------------------------------------------------------------------------------------------------------
# reading inputs
# --------------------------------------------------------------------------------------------------------
def read_input(path: str | os.PathLike, spec: PipelineSpec, *, index: int | None = None,
               frame_dir: str | None = None) -> list[SkeletonSample]:
    r"""Read a skeleton file for a model of ``spec``, by suffix: NTU ``.skeleton``, Kinetics-skeleton (or
    NW-UCLA) ``.json``, a PYSKL pickle (``.pkl``; ``index`` / ``frame_dir`` pick one annotation, required
    when it holds several) or a :math:`(C, T, V, M)` ``.npy`` array (read with ``spec.layout``; for 2-D
    layouts its last channel is the score).

    Raises:
        ValueError: For an unknown suffix (listing the formats), a missing file, an annotation that is not
            in the pickle, or a file whose layout, joints or channels do not match the model (naming
            both); :class:`~pyg_sparse_stgcn.data.SkeletonFormatError` from the readers for a malformed file.
    """
    from ..data import readers

    p = Path(path)
    if not p.is_file():
        raise ValueError(f"input {p} does not exist")
    suffix = p.suffix.lower()
    if suffix not in INPUT_FORMATS:
        raise ValueError(f"input {p}: unknown format {suffix or '(no suffix)'!r}; predict reads "
                         + "; ".join(f"{k} ({v})" for k, v in INPUT_FORMATS.items()))
    if (index is not None or frame_dir is not None) and suffix not in (".pkl", ".pickle"):
        raise ValueError(f"input {p}: --index / --frame-dir select an annotation of a PYSKL pickle, not of a "
                         f"{INPUT_FORMATS[suffix]} file")
    if suffix == ".skeleton":
        samples = [readers.read_ntu_skeleton(p, max_bodies=spec.num_person)]
    elif suffix == ".json":
        samples = [_read_json(p, spec)]
    elif suffix == ".npy":
        samples = [readers.read_skeleton_npy(p, layout=spec.layout, score_channel=spec.dims == 2)]
    else:
        samples = _read_pickle(p, spec, index, frame_dir)
    for s in samples:
        check_sample(s, spec, str(p))
    return samples


def _read_json(p: Path, spec: PipelineSpec) -> SkeletonSample:
    import json

    from ..data import readers

    try:
        head = json.loads(p.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise SkeletonFormatError(p, f"not valid JSON ({e})") from None
    if isinstance(head, dict) and "skeletons" in head:
        return readers.read_nwucla_json(p)
    layout = spec.layout if spec.dims == 2 else "openpose"
    return readers.read_kinetics_json(p, num_person_out=spec.num_person, layout=layout)


def _read_pickle(p: Path, spec: PipelineSpec, index: int | None, frame_dir: str | None) -> list[SkeletonSample]:
    from ..data import readers

    if index is not None and frame_dir is not None:
        raise ValueError("--index and --frame-dir both select an annotation: give one")
    samples = readers.read_pyskl_annotations(p, max_person=None)
    if frame_dir is not None:
        hit = [s for s in samples if s.frame_dir == frame_dir]
        if not hit:
            near = ", ".join(s.frame_dir for s in samples[:5])
            raise ValueError(f"input {p}: no annotation with frame_dir {frame_dir!r} (it holds {len(samples)}, "
                             f"e.g. {near})")
        return hit[:1]
    if index is not None:
        if not -len(samples) <= index < len(samples):
            raise ValueError(f"input {p}: --index {index} is out of range (the pickle holds {len(samples)} "
                             f"annotations: 0..{len(samples) - 1})")
        return [samples[index]]
    if len(samples) > 1:
        raise ValueError(f"input {p} holds {len(samples)} annotations: pick one with --index N (0.."
                         f"{len(samples) - 1}) or --frame-dir NAME (e.g. {samples[0].frame_dir!r})")
    return samples


def check_sample(sample: SkeletonSample, spec: PipelineSpec, source: str = "input") -> None:
    """Check that ``sample`` fits a model of ``spec``: the same joints :math:`V` (and layout) and 3 input
    channels per joint (``x, y, score`` or ``x, y, z``).

    Raises:
        ValueError: Naming the file's layout / shape and the model's.
    """
    lay, V = spec.layout, spec.num_joints  # spec.layout is the canonical name (PipelineSpec.__post_init__)
    kp = sample.keypoint
    c = kp.shape[-1] + (1 if sample.keypoint_score is not None else 0)
    if sample.layout != lay or kp.shape[2] != V:
        raise ValueError(f"{source}: the file has layout {sample.layout!r} ({kp.shape[2]} joints) but the "
                         f"model expects layout {lay!r} ({V} joints, {spec.kind} pipeline)")
    if c != 3:
        want = "x, y, score" if spec.dims == 2 else "x, y, z"
        raise ValueError(f"{source}: the file gives {c} channels per joint but the model expects 3 ({want}; "
                         f"layout {lay!r})")
    has_score = sample.keypoint_score is not None
    if spec.dims == 3 and has_score:
        raise ValueError(f"{source}: the file holds 2-D poses with scores (layout {sample.layout!r}) but the "
                         f"model expects 3-D joints (layout {lay!r})")


# --------------------------------------------------------------------------------------------------------
# predictions
# --------------------------------------------------------------------------------------------------------
@dataclass
class Prediction:
    """One prediction.

    Attributes:
        source (str): The file (or ``stream``).
        frame_dir (str): The sample id.
        top (list of dict): ``{"index", "label", "prob"}``, most probable first.
        probs (numpy.ndarray): Class probabilities.
        latency_ms (float): Pipeline + model time.
    """

    source: str
    frame_dir: str
    top: list[dict[str, Any]]
    probs: np.ndarray = field(repr=False)
    latency_ms: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``source``, ``frame_dir``, ``top``, ``latency_ms``)."""
        return {"source": self.source, "frame_dir": self.frame_dir, "top": self.top,
                "latency_ms": round(self.latency_ms, 3)}


class Predictor:
    r"""Classify skeleton samples with a model and the pipeline it was trained with.

    Args:
        model (torch.nn.Module or OnnxModel): Maps :math:`(N, M, T, V, C)` to logits :math:`(N, K)`
            (a classifier, masked model, generator, ensemble, exported sparse model or
            :class:`~pyg_sparse_stgcn.deploy.OnnxModel`).
        spec (PipelineSpec): The pipeline.
        runtime (str, optional): ``'torch'`` (the model as given), ``'sparse'`` (converted once with
            :func:`~pyg_sparse_stgcn.sparsity.export.to_sparse_kernels` on a zero window of the spec's
            shape) or ``'onnx'`` (an :class:`OnnxModel`, or a torch model exported to a temporary file with
            :func:`~pyg_sparse_stgcn.deploy.export_onnx`). (default: :obj:`"torch"`)
        device (str or torch.device, optional): Device of a torch model. (default: :obj:`"cpu"`)
        sparse_layout (str, optional): ``runtime='sparse'``: the export's ``layout``. ``'auto'`` times every
            layout the model supports on the zero window before the first prediction (seconds for a full
            ST-GCN); naming one (:data:`~pyg_sparse_stgcn.sparsity.export.LAYOUTS`) skips that.
            (default: :obj:`"auto"`)
    """

    def __init__(self, model: Any, spec: PipelineSpec, runtime: str = "torch",
                 device: str | torch.device = "cpu", sparse_layout: str = "auto") -> None:
        from ..sparsity.export import LAYOUTS

        if runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
        if sparse_layout not in ("auto", *LAYOUTS):
            raise ValueError(f"sparse_layout must be one of auto, {', '.join(LAYOUTS)}, got {sparse_layout!r}")
        if sparse_layout != "auto" and runtime != "sparse":
            raise ValueError(f"sparse_layout={sparse_layout!r} applies to runtime 'sparse', not {runtime!r}")
        self.spec, self.runtime = spec, runtime
        self.device = torch.device(device)
        self._tmp: Any = None
        from .onnx import OnnxModel

        if isinstance(model, OnnxModel):
            if runtime != "onnx":
                raise ValueError(f"an .onnx model runs with runtime 'onnx', not {runtime!r}")
        elif runtime == "sparse":
            from ..sparsity.export import to_sparse_kernels

            model = to_sparse_kernels(model.to(self.device).eval(), self.example_input(), layout=sparse_layout)
        elif runtime == "onnx":
            import tempfile

            from .onnx import export_onnx

            self._tmp = tempfile.TemporaryDirectory(prefix="pyg_sparse_stgcn_onnx_")
            path = export_onnx(model.cpu().eval(), Path(self._tmp.name) / "model.onnx", frames=spec.clip_len,
                               persons=spec.num_person, num_joints=spec.num_joints,
                               in_channels=spec.in_channels, metadata={"pipeline": spec.to_dict()})
            model = OnnxModel(path)
        if isinstance(model, nn.Module):
            model = model.to(self.device).eval()
        self.model = model
        self._pipes: dict[int, Any] = {}

    def example_input(self, batch: int = 1) -> Tensor:
        """A zero input :math:`(N, M, T, V, C)` of the spec's shape."""
        s = self.spec
        return torch.zeros(batch, s.num_person, s.clip_len, s.num_joints, s.in_channels, device=self.device)

    def transform(self, sample: SkeletonSample | Mapping[str, Any], num_clips: int | None = None) -> Tensor:
        r"""The model input of ``sample`` :math:`(\text{clips}, M, T, V, C)` (the spec's test pipeline)."""
        nc = num_clips or self.spec.num_clips
        pipe = self._pipes.get(nc)
        if pipe is None:
            pipe = self._pipes[nc] = self.spec.pipeline(nc)
        results = pipe(sample.to_dict() if isinstance(sample, SkeletonSample) else dict(sample))
        x = torch.from_numpy(np.ascontiguousarray(results["keypoint"], dtype=np.float32))
        return x.unsqueeze(0) if nc == 1 else x

    @torch.no_grad()
    def logits(self, x: Tensor) -> Tensor:
        """Logits :math:`(N, K)` of a batch :math:`(N, M, T, V, C)`."""
        if isinstance(self.model, nn.Module):
            x = x.to(self.device)
        out = self.model(x)
        if isinstance(out, (tuple, list)):
            out = out[0]
        return out.float().cpu()

    def probabilities(self, x: Tensor) -> np.ndarray:
        r"""Class probabilities of one sample's clips :math:`(\text{clips}, M, T, V, C)`, averaged over the
        clips as the spec says (``'prob'``: softmax, then mean; ``'score'``: mean logits, then softmax)."""
        z = self.logits(x)
        if self.spec.average_clips == "prob":
            p = z.softmax(-1).mean(0)
        else:
            p = z.mean(0).softmax(-1)
        return p.numpy()

    def top(self, probs: np.ndarray, k: int = 5) -> list[dict[str, Any]]:
        """The ``k`` most probable classes: ``{"index", "label", "prob"}``."""
        order = np.argsort(-probs, kind="stable")[: max(1, min(k, probs.size))]
        return [{"index": int(i), "label": self.spec.label(int(i)), "prob": float(probs[i])} for i in order]

    def predict(self, sample: SkeletonSample, top_k: int = 5, source: str = "") -> Prediction:
        """Classify one sample (the spec's pipeline, multi-clip averaging)."""
        t0 = time.perf_counter()
        probs = self.probabilities(self.transform(sample))
        ms = 1e3 * (time.perf_counter() - t0)
        return Prediction(source or str(sample.meta.get("source", "")), sample.frame_dir, self.top(probs, top_k),
                          probs, ms)

    def predict_file(self, path: str | os.PathLike, top_k: int = 5, *, index: int | None = None,
                     frame_dir: str | None = None) -> list[Prediction]:
        """:func:`read_input` then :meth:`predict` for each sample read."""
        return [self.predict(s, top_k, str(path)) for s in read_input(path, self.spec, index=index,
                                                                      frame_dir=frame_dir)]

    def __repr__(self) -> str:
        return f"Predictor(runtime={self.runtime!r}, spec={self.spec})"
