"""Deployment: offline prediction with a checkpoint's pipeline, streaming equal to offline on real files
(../shared/realdata), malformed stream lines, and ONNX export checked with onnxruntime."""
from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch

from pyg_sparse_stgcn.data.readers import read_kinetics_json, read_ntu_skeleton
from pyg_sparse_stgcn.data.sample import SkeletonSample
from pyg_sparse_stgcn.deploy import (
    PipelineSpec,
    Predictor,
    StreamFormatError,
    StreamingRecognizer,
    read_input,
    run_stream,
)
from pyg_sparse_stgcn.deploy.streaming import frame_to_json
from pyg_sparse_stgcn.nn import STGCN, GCNHead, SkeletonClassifier, STGCNPlusPlus

HAS_ORT = importlib.util.find_spec("onnx") is not None and importlib.util.find_spec("onnxruntime") is not None
needs_ort = pytest.mark.skipif(not HAS_ORT, reason="onnx / onnxruntime not installed (pip install .[deploy])")


def tiny(layout: str, classes: int = 5, cls=STGCN, in_channels: int = 3) -> torch.nn.Module:
    torch.manual_seed(0)
    bb = cls({"layout": layout, "mode": "spatial"}, in_channels=in_channels, base_channels=8, num_stages=3,
             inflate_stages=(3,), down_stages=(3,), backend="dense")
    m = SkeletonClassifier(bb, GCNHead(classes, bb.out_channels)).eval()
    with torch.no_grad():  # non-trivial BN statistics so that outputs differ per input
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.1, 0.1)
                mod.running_var.uniform_(0.5, 1.5)
    return m


def stream_lines(sample: SkeletonSample, kind: str) -> list[str]:
    """The frames of a reader's sample as stream lines (2d-normalized: back to [0, 1] frame coordinates)."""
    kp = sample.keypoint.astype(np.float64)
    if sample.keypoint_score is not None:
        sc = sample.keypoint_score.astype(np.float64)
        xy = np.where(sc[..., None] > 0, kp + 0.5, 0.0) if kind == "2d-normalized" else kp
        kp = np.concatenate([xy, sc[..., None]], -1)
    return [frame_to_json(kp[:, t]) for t in range(kp.shape[1])]


def window(sample: SkeletonSample, a: int, b: int) -> SkeletonSample:
    sc = None if sample.keypoint_score is None else sample.keypoint_score[:, a:b]
    return SkeletonSample(sample.keypoint[:, a:b], None, "w", b - a, sample.layout, keypoint_score=sc,
                          img_shape=sample.img_shape)


@pytest.mark.parametrize("name,kind,layout", [("S001C003P008R002A058.skeleton", "3d", "nturgb+d"),
                                              ("__vzEs2wzdQ.json", "2d-normalized", "openpose")])
def test_stream_equals_offline_on_the_same_windows(realdata, name, kind, layout):
    spec = PipelineSpec(kind, layout, feats="j+b" if kind == "3d" else "j", clip_len=12, num_person=2,
                        num_classes=5)
    model = tiny(layout, in_channels=spec.in_channels)
    pred = Predictor(model, spec)
    path = realdata / name
    sample = read_ntu_skeleton(path) if kind == "3d" else read_kinetics_json(path)
    sample = window(sample, 0, 60)
    rec = StreamingRecognizer(pred, window=20, stride=7)
    out: list[str] = []
    stats = run_stream(rec, stream_lines(sample, kind), out.append)
    assert stats.frames == 60 and stats.predictions == len(out) == 1 + (60 - 20) // 7
    for line in out:
        got = json.loads(line)
        assert set(got) == {"frame", "top", "latency_ms"} and got["latency_ms"] >= 0
        i = got["frame"]
        ref = pred.predict(window(sample, i + 1 - 20, i + 1), top_k=5)
        assert [t["label"] for t in got["top"]] == [t["label"] for t in ref.top]
        np.testing.assert_allclose([t["prob"] for t in got["top"]], [t["prob"] for t in ref.top], atol=2e-6)


def test_stream_zero_fills_missing_persons_and_joints():
    spec = PipelineSpec("3d", "nturgb+d", clip_len=8, num_person=2, num_classes=5)
    rec = StreamingRecognizer(tiny("nturgb+d"), 4, 2, spec=spec)
    person = [[0.1 * v, 0.2, 3.0] for v in range(25)]
    person[3] = None
    for frame in ([person], [], [None, person], [person, person, person]):
        rec.push_line(json.dumps(frame), 1)
    kp = rec.window_sample().keypoint
    assert kp.shape == (2, 4, 25, 3)
    assert not kp[1, 0].any() and not kp[:, 1].any() and not kp[0, 2].any()
    assert not kp[0, 0, 3].any() and kp[0, 0, 4, 0] == pytest.approx(0.4)


@pytest.mark.parametrize("line,match", [
    ("[[1, 2", r"line 3: not valid JSON"),
    ('{"a": 1}', r"line 3: expected a JSON array of persons"),
    ("[[[0, 0, 0]]]", r"line 3: person 0: expected 25 joints .* got 1"),
    (json.dumps([[[0, 0]] * 25]), r"line 3: person 0, joint 0: expected 3 values \[x, y, z\], got 2"),
    (json.dumps([[[0, 0, "a"]] * 25]), r"line 3: person 0, joint 0, value 2: expected a finite number"),
])
def test_malformed_stream_lines_name_line_and_problem(line, match):
    spec = PipelineSpec("3d", "nturgb+d", clip_len=8, num_person=1, num_classes=5)
    good = json.dumps([[[0.1, 0.2, 3.0]] * 25])
    rec = StreamingRecognizer(tiny("nturgb+d"), 2, 1, spec=spec)
    with pytest.raises(StreamFormatError, match=match):
        run_stream(rec, [good, "", line, good], lambda s: None)
    rec.reset()
    out: list[str] = []
    stats = run_stream(rec, [good, "", line, good, good], out.append, skip_bad=True)
    assert stats.skipped == 1 and stats.frames == 3 and stats.predictions == len(out) == 2
    assert stats.errors[0].startswith("line 3:")


def test_read_input_checks_layout_and_selects_pickle_annotations(realdata):
    ntu = PipelineSpec("3d", "nturgb+d", num_classes=5)
    with pytest.raises(ValueError, match=r"layout 'openpose' \(18 joints\) but the model expects layout "
                                         r"'nturgb\+d' \(25 joints"):
        read_input(realdata / "__NrybzYzUg.json", ntu)
    with pytest.raises(ValueError, match="unknown format '.txt'"):
        read_input(_touch(), ntu)
    s = read_input(realdata / "example_NTU-RGB-D_sketeton.npy", ntu)
    assert s[0].keypoint.shape == (1, 72, 25, 3)
    coco = PipelineSpec("2d", "coco", clip_len=16, num_classes=5)
    pkl = realdata / "example_UCF101_skeleton.pkl"
    (a,) = read_input(pkl, coco, index=0)
    (b,) = read_input(pkl, coco, frame_dir="v_ApplyEyeMakeup_g01_c01")
    assert a.frame_dir == b.frame_dir
    with pytest.raises(ValueError, match="--index 3 is out of range"):
        read_input(pkl, coco, index=3)
    with pytest.raises(ValueError, match="no annotation with frame_dir 'x'"):
        read_input(pkl, coco, frame_dir="x")
    p = Predictor(tiny("coco"), coco).predict(a, top_k=3)
    assert len(p.top) == 3 and abs(p.probs.sum() - 1) < 1e-5


def _touch():
    import tempfile
    from pathlib import Path

    p = Path(tempfile.mkdtemp()) / "frames.txt"
    p.write_text("x")
    return p


def test_multi_clip_averages_probabilities(realdata):
    spec = PipelineSpec("3d", "nturgb+d", clip_len=10, num_clips=3, num_classes=5)
    pred = Predictor(tiny("nturgb+d"), spec)
    s = read_ntu_skeleton(realdata / "S001C001P001R001A011.skeleton")
    x = pred.transform(s)
    assert x.shape == (3, 2, 10, 25, 3)
    ref = pred.model(x).softmax(-1).mean(0).detach().numpy()
    np.testing.assert_allclose(pred.predict(s).probs, ref, atol=1e-6)


@needs_ort
@pytest.mark.parametrize("cls", [STGCN, STGCNPlusPlus])
def test_onnx_export_of_pruned_models_equals_torch(tmp_path, cls):
    import onnx

    from pyg_sparse_stgcn.deploy import OnnxModel, export_onnx
    from pyg_sparse_stgcn.sparsity.magnitude import prune

    model = tiny("nturgb+d", cls=cls)
    prune(model, 0.9, edge_sparsity=0.5)
    path = export_onnx(model, tmp_path / "m.onnx", frames=16, persons=2, metadata={"k": 1})
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert not any("Scatter" in o for o in ops) and "MatMul" in ops
    ort = OnnxModel(path)
    assert ort.metadata == {"k": 1}
    x = torch.randn(3, 2, 16, 25, 3)  # dynamic batch
    with torch.no_grad():
        torch.testing.assert_close(ort(x), model(x), atol=1e-4, rtol=0)


@needs_ort
def test_onnx_export_names_an_unsupported_module(tmp_path):
    from pyg_sparse_stgcn.deploy import export_onnx
    from pyg_sparse_stgcn.sparsity.export import to_sparse_kernels

    model = tiny("nturgb+d")
    sparse = to_sparse_kernels(model, torch.randn(1, 2, 16, 25, 3), repeats=1, layout="channels_last",
                               aggregation="sparse", force=True, min_sparsity=0.0)
    with pytest.raises(ValueError, match=r"export_onnx: module '[\w.]+' \(CSR\w+ from pyg_sparse_stgcn"):
        export_onnx(sparse, tmp_path / "m.onnx", frames=16, persons=2)
    assert not (tmp_path / "m.onnx").exists()


@needs_ort
def test_predictor_runtimes_agree(realdata):
    spec = PipelineSpec("3d", "nturgb+d", clip_len=16, num_classes=5)
    model = tiny("nturgb+d")
    s = read_ntu_skeleton(realdata / "S003C001P015R001A034.skeleton")
    ref = Predictor(model, spec).predict(s).probs
    for rt in ("sparse", "onnx"):
        np.testing.assert_allclose(Predictor(model, spec, rt).predict(s).probs, ref, atol=1e-5)
    for layout in ("channels_last", "channel_major"):  # a named layout: exported as asked, nothing timed
        pred = Predictor(model, spec, "sparse", sparse_layout=layout)
        assert pred.model.export_result.layout == layout
        assert pred.model.export_result.layout_choice.dense_ms is None
        np.testing.assert_allclose(pred.predict(s).probs, ref, atol=1e-5)
    with pytest.raises(ValueError, match="sparse_layout must be one of auto, channels_last"):
        Predictor(model, spec, "sparse", sparse_layout="rows")
    with pytest.raises(ValueError, match="applies to runtime 'sparse'"):
        Predictor(model, spec, "torch", sparse_layout="joint_major")
