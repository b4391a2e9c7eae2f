r"""Streaming recognition from a live skeleton feed: a sliding window of frames and a prediction every
``stride`` frames, equal to the offline prediction on the same window.

The stream format (``predict --stream``) is one JSON array per line, one frame per line: the frame's persons
× joints × channels, ``[[[x, y, score], ...], ...]`` for 2-D layouts and ``[[[x, y, z], ...], ...]`` for
3-D ones. Persons are tracked by their index in the array (person ``i`` of every frame is one track); a
frame may list fewer persons (``[]`` for none), and a person or a joint may be ``null``: both are zero-filled,
as the readers zero-fill missing bodies and joints. Coordinates are those of the checkpoint's file format:
metres for 3-D layouts, pixels for PYSKL ``'2d'`` checkpoints (normalised by ``img_shape``), and for
``'2d-normalized'`` (Kinetics-skeleton) checkpoints ``x, y`` in ``[0, 1]`` of the frame, which — exactly as
:func:`~pyg_sparse_stgcn.data.readers.read_kinetics_json` does — are centred (``- 0.5``) and set to 0 where
the score is 0.
"""
from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..data.sample import SkeletonSample
from .predict import PipelineSpec, Predictor

__all__ = ["StreamingRecognizer", "StreamPrediction", "StreamFormatError", "StreamStats", "parse_frame",
           "run_stream", "frame_to_json"]


class StreamFormatError(ValueError):
    """A malformed stream line; the message names the line number and what is wrong.

    Attributes:
        line (int): 1-based line number.
        reason (str): What is wrong.
    """

    def __init__(self, line: int, reason: str) -> None:
        self.line, self.reason = line, reason
        super().__init__(f"line {line}: {reason}")


def parse_frame(text: str, line: int, num_joints: int, channels: int = 3,
                names: str = "x, y, score") -> np.ndarray:
    r"""Parse one stream line into a float32 :math:`(P, V, \text{channels})` array (``null`` persons and
    joints become zeros).

    Raises:
        StreamFormatError: Naming ``line`` and what is wrong (not JSON, not a list of persons, a person
            with the wrong number of joints, a joint with the wrong number of channels, a value that is not a
            finite number).
    """
    try:
        frame = json.loads(text)
    except ValueError as e:
        raise StreamFormatError(line, f"not valid JSON ({e})") from None
    if not isinstance(frame, list):
        raise StreamFormatError(line, f"expected a JSON array of persons (persons x {num_joints} joints x "
                                      f"[{names}]), got {type(frame).__name__}")
    out = np.zeros((len(frame), num_joints, channels), dtype=np.float64)
    for p, person in enumerate(frame):
        if person is None or person == []:
            continue
        if not isinstance(person, list) or len(person) != num_joints:
            n = len(person) if isinstance(person, list) else type(person).__name__
            raise StreamFormatError(line, f"person {p}: expected {num_joints} joints (the model's layout), got {n}")
        for v, joint in enumerate(person):
            if joint is None:
                continue
            if not isinstance(joint, list) or len(joint) != channels:
                n = len(joint) if isinstance(joint, list) else type(joint).__name__
                raise StreamFormatError(line, f"person {p}, joint {v}: expected {channels} values [{names}], got {n}")
            for c, val in enumerate(joint):
                if isinstance(val, bool) or not isinstance(val, (int, float)) or not math.isfinite(val):
                    raise StreamFormatError(line, f"person {p}, joint {v}, value {c}: expected a finite number, "
                                                  f"got {val!r}")
            out[p, v] = joint
    return out


def frame_to_json(frame: np.ndarray, digits: int | None = None) -> str:
    """One stream line from a :math:`(P, V, 3)` frame (the inverse of :func:`parse_frame`)."""
    arr = np.asarray(frame, dtype=np.float64)
    if digits is not None:
        arr = np.round(arr, digits)
    return json.dumps(arr.tolist(), separators=(",", ":"))


@dataclass
class StreamPrediction:
    """A prediction of the stream: ``frame`` (0-based index of the window's last frame), ``top``
    (``{"label", "prob", "index"}``), the window's first frame, and the latency in milliseconds."""

    frame: int
    top: list[dict[str, Any]]
    start: int
    latency_ms: float
    probs: np.ndarray = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        """``{"frame", "top": [{"label", "prob"}, ...], "latency_ms"}``."""
        return {"frame": self.frame, "top": [{"label": t["label"], "prob": round(t["prob"], 6)} for t in self.top],
                "latency_ms": round(self.latency_ms, 3)}


class StreamingRecognizer:
    r"""Sliding-window recognition on a live skeleton feed.

    Keeps the last ``window`` frames; every ``stride`` frames (once ``min_frames`` have arrived) the window
    becomes a :class:`~pyg_sparse_stgcn.data.SkeletonSample` :math:`(M, T_w, V, C)` — persons by index,
    missing persons and joints zero — and runs through the checkpoint's offline test pipeline and model
    (:class:`~pyg_sparse_stgcn.deploy.Predictor`), so a stream prediction equals the offline prediction on the
    same window.

    Args:
        model (Predictor or torch.nn.Module or OnnxModel): A :class:`Predictor`, or a model to wrap in one
            with ``spec`` and ``runtime``.
        window (int): Frames in the window.
        stride (int): Frames between predictions.
        spec (PipelineSpec, optional): The pipeline (required unless ``model`` is a :class:`Predictor`).
            (default: :obj:`None`)
        runtime (str, optional): Runtime of a wrapped model (``'torch'``, ``'sparse'``, ``'onnx'``).
            (default: :obj:`"torch"`)
        top_k (int, optional): Classes per prediction. (default: :obj:`5`)
        min_frames (int, optional): Frames before the first prediction; :obj:`None` = ``window``.
            (default: :obj:`None`)
        max_persons (int, optional): Person tracks kept (first by index); :obj:`None` = the spec's
            ``num_person``. (default: :obj:`None`)
    """

    def __init__(self, model: Any, window: int, stride: int, *, spec: PipelineSpec | None = None,
                 runtime: str = "torch", top_k: int = 5, min_frames: int | None = None,
                 max_persons: int | None = None) -> None:
        for name, v in (("window", window), ("stride", stride), ("top_k", top_k)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"StreamingRecognizer: {name} must be a positive int, got {v!r}")
        if isinstance(model, Predictor):
            self.predictor = model
        else:
            if spec is None:
                raise ValueError("StreamingRecognizer: pass spec= (the checkpoint's PipelineSpec) with a bare model")
            self.predictor = Predictor(model, spec, runtime)
        self.spec = self.predictor.spec
        self.window, self.stride, self.top_k = window, stride, top_k
        self.min_frames = window if min_frames is None else int(min_frames)
        if not 1 <= self.min_frames <= window:
            raise ValueError(f"StreamingRecognizer: min_frames must be in 1..window ({window}), got {min_frames}")
        self.max_persons = max_persons or self.spec.num_person
        self.num_joints = self.spec.num_joints
        self.channel_names = "x, y, score" if self.spec.dims == 2 else "x, y, z"
        # ring buffer of the window: frame i of the stream lives in slot i % window (no per-frame allocation)
        self._ring = np.zeros((self.max_persons, window, self.num_joints, 3), dtype=np.float32)
        self._scratch = np.zeros((self.max_persons, self.num_joints, 3), dtype=np.float64)
        self.frames_seen = 0

    def reset(self) -> None:
        """Forget the window (a new stream)."""
        self.frames_seen = 0

    def _convert(self, frame: Any, out: np.ndarray) -> None:
        """Write a parsed :math:`(P, V, 3)` frame, as the reader of the checkpoint's format would deliver it,
        into ``out`` :math:`(M, V, 3)` (exactly ``max_persons`` person slots; ``out`` is untouched when the
        frame is refused)."""
        V = self.num_joints
        arr = np.asarray(frame, dtype=np.float64)
        if arr.size == 0:
            arr = np.zeros((0, V, 3))
        if arr.ndim != 3 or arr.shape[1:] != (V, 3):
            raise ValueError(f"StreamingRecognizer: a frame must be (persons, {V}, 3) [{self.channel_names}], got "
                             f"shape {arr.shape}")
        f = self._scratch  # float64 like the readers, cast to float32 once on the way into the ring
        f.fill(0.0)
        n = min(len(arr), self.max_persons)
        f[:n] = arr[:n]
        if self.spec.kind == "2d-normalized":  # as read_kinetics_json: centre, zero the unscored joints
            f[:, :, :2] -= 0.5
            f[:, :, :2][f[:, :, 2] == 0] = 0.0
        out[...] = f

    def window_sample(self) -> SkeletonSample:
        r"""The current window as a :class:`~pyg_sparse_stgcn.data.SkeletonSample` :math:`(M, T_w, V, C)`."""
        if not self.frames_seen:
            raise ValueError("StreamingRecognizer: no frame yet")
        start = self.frames_seen - min(self.frames_seen, self.window)
        arr = self._ring[:, np.arange(start, self.frames_seen) % self.window]  # (M, T, V, 3), oldest first; a copy
        meta = {"source": "stream", "start": start}
        if self.spec.dims == 2:
            return SkeletonSample(np.ascontiguousarray(arr[..., :2]), None, f"stream@{start}", arr.shape[1],
                                  self.spec.layout, keypoint_score=np.ascontiguousarray(arr[..., 2]),
                                  img_shape=self.spec.img_shape, meta=meta)
        return SkeletonSample(arr, None, f"stream@{start}", arr.shape[1], self.spec.layout, meta=meta)

    def push(self, frame: Any) -> StreamPrediction | None:
        r"""Add one frame (:math:`(P, V, 3)` array-like; ``[]`` for no person) and return a prediction when
        one is due (every ``stride`` frames once ``min_frames`` have arrived), else :obj:`None`."""
        t0 = time.perf_counter()
        self._convert(frame, self._ring[:, self.frames_seen % self.window])
        self.frames_seen += 1
        n = self.frames_seen
        if n < self.min_frames or (n - self.min_frames) % self.stride:
            return None
        sample = self.window_sample()
        probs = self.predictor.probabilities(self.predictor.transform(sample))
        ms = 1e3 * (time.perf_counter() - t0)
        return StreamPrediction(n - 1, self.predictor.top(probs, self.top_k), int(sample.meta["start"]), ms, probs)

    def push_line(self, text: str, line: int) -> StreamPrediction | None:
        """Parse one stream line (:func:`parse_frame`) and :meth:`push` it.

        Raises:
            StreamFormatError: For a malformed line (nothing is pushed then).
        """
        return self.push(parse_frame(text, line, self.num_joints, 3, self.channel_names))

    def __repr__(self) -> str:
        return (f"StreamingRecognizer(window={self.window}, stride={self.stride}, runtime="
                f"{self.predictor.runtime!r}, layout={self.spec.layout!r})")


@dataclass
class StreamStats:
    """What :func:`run_stream` did: ``lines`` read, ``frames`` pushed, ``predictions`` written, ``skipped``
    malformed lines (with ``--skip-bad``) and the first few ``errors``."""

    lines: int = 0
    frames: int = 0
    predictions: int = 0
    skipped: int = 0
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"lines": self.lines, "frames": self.frames, "predictions": self.predictions,
                "skipped": self.skipped, "errors": list(self.errors)}


def iter_lines(lines: Iterable[str]) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of the non-blank lines."""
    for i, text in enumerate(lines, 1):
        if text.strip():
            yield i, text


def run_stream(recognizer: StreamingRecognizer, lines: Iterable[str], write: Callable[[str], None], *,
               skip_bad: bool = False, max_errors_kept: int = 5) -> StreamStats:
    """Feed ``lines`` (one JSON frame each; blank lines are ignored) to ``recognizer`` and ``write`` one JSON
    line per prediction.

    Args:
        recognizer (StreamingRecognizer): The recognizer.
        lines (iterable of str): The stream (a file or ``sys.stdin``).
        write (callable): Called with each output line (no newline), e.g. ``print``.
        skip_bad (bool, optional): Count and skip malformed lines instead of stopping. (default: :obj:`False`)
        max_errors_kept (int, optional): Error messages kept in the stats. (default: :obj:`5`)

    Raises:
        StreamFormatError: At the first malformed line unless ``skip_bad``.
    """
    stats = StreamStats()
    for i, text in iter_lines(lines):
        stats.lines = i
        try:
            pred = recognizer.push_line(text, i)
        except StreamFormatError as e:
            if not skip_bad:
                raise
            stats.skipped += 1
            if len(stats.errors) < max_errors_kept:
                stats.errors.append(str(e))
            continue
        stats.frames += 1
        if pred is not None:
            stats.predictions += 1
            write(json.dumps(pred.to_dict()))
    return stats
