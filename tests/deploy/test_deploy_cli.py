"""``pyg-sparse-stgcn predict``: a tiny trained demo run on real and demo files, a PYSKL checkpoint, the
stream from a file, ONNX, and bad input; plus the worked example of docs/deploy.md."""
from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from tiny_config import TINY_DEMO, run_tiny, to_pyskl_state

from pyg_sparse_stgcn.cli import main

HAS_ORT = importlib.util.find_spec("onnx") is not None and importlib.util.find_spec("onnxruntime") is not None
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    d = tmp_path_factory.mktemp("deploy")
    (d / "tiny.toml").write_text(TINY_DEMO)
    return d, run_tiny(d, "--data", "demo", "--mode", "train", "--epochs", "1")[0]


def predict(*args: str):
    return CliRunner().invoke(main, ["predict", *args], catch_exceptions=False)


def test_predict_demo_and_real_files(run, realdata):
    d, rd = run
    vids = sorted((d / "demo" / "kinetics_val").glob("*.json"))[:2]
    res = predict(str(rd), *map(str, vids), "--top-k", "3")
    assert res.exit_code == 0, res.output
    assert len(re.findall(r"^  1\. synthetic: ", res.output, re.M)) == 2
    res = predict(str(rd / "checkpoints" / "model.pt"), str(realdata / "__u6odV5hrI.json"), "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    res = predict(str(rd), str(realdata / "__u6odV5hrI.json"), "--json", "--runtime", "sparse",
                  "--sparse-layout", "channel_major")
    assert res.exit_code == 0, res.output
    top = json.loads(res.output)["predictions"][0]["top"]
    assert [t["index"] for t in top] == [t["index"] for t in out["predictions"][0]["top"]]
    assert out["pipeline"]["layout"] == "openpose" and out["pipeline"]["clip_len"] == 16
    (p,) = out["predictions"]
    assert len(p["top"]) == 5 and p["top"][0]["label"].startswith("synthetic")
    assert 0 < sum(t["prob"] for t in p["top"]) <= 1 + 1e-6


def test_predict_bad_input_fails_before_work(run, realdata):
    _, rd = run
    res = predict(str(rd), str(realdata / "S001C001P001R001A011.skeleton"))
    assert res.exit_code == 2
    assert "layout 'nturgb+d' (25 joints) but the model expects layout 'openpose' (18 joints" in res.output
    res = predict(str(rd), str(realdata / "example_UCF101_skeleton.pkl"), "--index", "0")
    assert res.exit_code == 2 and "layout 'coco' (17 joints)" in res.output
    res = predict(str(rd))
    assert res.exit_code == 2 and "predict needs INPUT files" in res.output
    res = predict(str(rd), str(realdata / "__u6odV5hrI.json"), "--feats", "b")
    assert res.exit_code == 2 and "conflicts with the checkpoint" in res.output
    res = predict(str(rd), str(realdata / "__u6odV5hrI.json"), "--sparse-layout", "joint_major")
    assert res.exit_code == 2 and "--sparse-layout applies to --runtime sparse" in res.output
    res = CliRunner().invoke(main, ["--mode", "train", "--stream"])
    assert res.exit_code == 2 and "only apply to predict" in res.output


def test_pyskl_checkpoint_needs_data_then_predicts(run, realdata, tmp_path):
    _, rd = run
    pyskl = to_pyskl_state(torch.load(rd / "checkpoints" / "model.pt", weights_only=True)["model"])
    path = tmp_path / "stgcn_pyskl.pth"
    torch.save({"meta": {"epoch": 1}, "state_dict": pyskl}, path)
    f = str(realdata / "__u6odV5hrI.json")
    res = predict(str(path), f)
    assert res.exit_code == 2 and "carries no pipeline facts: pass --data NAME" in res.output
    args = ["--data", "demo", "--set", "data.clip_len=16", "--set", "model.base_channels=8", "--set",
            "model.num_stages=3", "--set", "model.backbone={inflate_stages=[3], down_stages=[3]}"]
    res = predict(str(path), f, "--json", *args)
    assert res.exit_code == 0, res.output
    ref = json.loads(predict(str(rd), f, "--json").output)["predictions"][0]["top"]
    got = json.loads(res.output)["predictions"][0]["top"]
    assert [t["index"] for t in got] == [t["index"] for t in ref]


def test_stream_from_file_with_bad_lines(run, tmp_path):
    _, rd = run
    person = [[0.5 + 0.01 * v, 0.4, 0.9] for v in range(18)]
    lines = [json.dumps([person])] * 20
    lines[5] = "[[0.1, 0.2"
    f = tmp_path / "s.jsonl"
    f.write_text("\n".join(lines) + "\n")
    res = predict(str(rd), str(f), "--stream", "--window", "8", "--stride", "4")
    assert res.exit_code == 2 and "line 6: not valid JSON" in res.output
    res = predict(str(rd), str(f), "--stream", "--window", "8", "--stride", "4", "--skip-bad", "--top-k", "2")
    assert res.exit_code == 0, res.output
    out = [json.loads(ln) for ln in res.output.splitlines() if ln.startswith("{")]
    assert [o["frame"] for o in out] == [7, 11, 15]  # 19 good frames: predictions every 4 from the 8th
    assert all(len(o["top"]) == 2 and set(o["top"][0]) == {"label", "prob"} for o in out)
    assert "1 malformed lines skipped (first: line 6:" in res.output


@pytest.mark.skipif(not HAS_ORT, reason="onnx / onnxruntime not installed (pip install .[deploy])")
def test_onnx_runtime_and_onnx_file(run, realdata, tmp_path):
    from pyg_sparse_stgcn.deploy import export_onnx
    from pyg_sparse_stgcn.engine.config import Config
    from pyg_sparse_stgcn.engine.modes.predict import load_predictor

    _, rd = run
    f = str(realdata / "__vzEs2wzdQ.json")
    ref = json.loads(predict(str(rd), f, "--json").output)["predictions"][0]["top"]
    got = json.loads(predict(str(rd), f, "--json", "--runtime", "onnx").output)["predictions"][0]["top"]
    assert [t["index"] for t in got] == [t["index"] for t in ref]
    pred = load_predictor(str(rd), Config())
    path = export_onnx(pred.model, tmp_path / "m.onnx", frames=pred.spec.clip_len, persons=pred.spec.num_person,
                       metadata={"pipeline": pred.spec.to_dict()})
    got = json.loads(predict(str(path), f, "--json").output)["predictions"][0]["top"]
    for a, b in zip(got, ref):
        assert a["index"] == b["index"] and abs(a["prob"] - b["prob"]) < 1e-4


def test_docs_worked_example(run, realdata):
    """The worked example of docs/deploy.md: predict, --json, and the stream, on the demo run."""
    text = (REPO / "docs" / "deploy.md").read_text()
    assert "pyg-sparse-stgcn predict" in text and "--stream" in text
    _, rd = run
    from pyg_sparse_stgcn.data.readers import read_kinetics_json
    from pyg_sparse_stgcn.deploy.streaming import frame_to_json

    s = read_kinetics_json(realdata / "__vzEs2wzdQ.json")
    import numpy as np

    kp = np.concatenate([np.where(s.keypoint_score[..., None] > 0, s.keypoint + 0.5, 0), s.keypoint_score[..., None]],
                        -1)
    lines = "\n".join(frame_to_json(kp[:, t], 3) for t in range(40))
    res = CliRunner().invoke(main, ["predict", str(rd), "--stream", "--stride", "8"], input=lines)
    assert res.exit_code == 0, res.output
    out = [json.loads(ln) for ln in res.output.splitlines() if ln.startswith("{")]
    assert [o["frame"] for o in out] == [15, 23, 31, 39]


def test_load_predictor_reads_the_checkpoint_once(run, monkeypatch):
    from pyg_sparse_stgcn.engine.config import Config
    from pyg_sparse_stgcn.engine.modes.predict import load_predictor

    _, rd = run
    reads = []
    real = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: reads.append(a[0]) or real(*a, **k))
    pred = load_predictor(str(rd), Config())
    assert [Path(p).name for p in reads] == ["model.pt"]  # facts and model from one read
    assert pred.spec.layout == "openpose"
