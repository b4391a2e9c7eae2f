"""The synthetic demo dataset: format, determinism, variation, and how (in)separable it is."""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from pyg_sparse_stgcn.data import build_dataset
from pyg_sparse_stgcn.data.readers import read_kinetics_json, read_kinetics_labels
from pyg_sparse_stgcn.data.readers.demo import DEMO_CLASSES, demo_is_complete, generate_demo


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and "processed" not in p.parts}


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory) -> tuple[Path, float]:
    root = tmp_path_factory.mktemp("demo")
    t0 = time.perf_counter()
    generate_demo(root)
    return root, time.perf_counter() - t0


def test_default_size_generates_in_seconds_and_reuses_cache(demo_root):
    root, seconds = demo_root
    assert seconds < 30, f"generating the default demo took {seconds:.1f} s"
    assert len(list((root / "kinetics_train").glob("*.json"))) == 320
    assert len(list((root / "kinetics_val").glob("*.json"))) == 160
    assert demo_is_complete(root)
    stamp = (root / "kinetics_train_label.json").stat().st_mtime_ns
    generate_demo(root)  # same settings: nothing rewritten
    assert (root / "kinetics_train_label.json").stat().st_mtime_ns == stamp
    assert not demo_is_complete(root, seed=1)
    assert not any(p.name.startswith(".demo-tmp") for p in root.iterdir())


def test_deterministic_for_a_seed(tmp_path):
    kw = {"num_train": 16, "num_val": 8, "num_empty": 1}
    a, b, c = (generate_demo(tmp_path / n, seed=s, **kw) for n, s in (("a", 3), ("b", 3), ("c", 4)))
    da, db, dc = _digest(a), _digest(b), _digest(c)
    assert da == db
    assert da.keys() == dc.keys() and da != dc
    generate_demo(b, seed=3, overwrite=True, **kw)
    assert _digest(b) == da


def test_kinetics_format_and_synthetic_labels(demo_root):
    root, _ = demo_root
    assert "SYNTHETIC" in (root / "README.txt").read_text()
    labels = read_kinetics_labels(root / "kinetics_train_label.json")
    assert len(labels) == 318 and len(labels.skipped) == 2
    assert all(v == "has_skeleton is false" for v in labels.skipped.values())
    assert set(labels.class_names.values()) == set(DEMO_CLASSES)
    assert all(name.startswith("synthetic") for name in DEMO_CLASSES) and len(DEMO_CLASSES) >= 6
    doc = json.loads((root / "kinetics_train" / "synthetic_train_00010.json").read_text())
    assert set(doc) == {"data", "label", "label_index"} and doc["label"].startswith("synthetic")
    assert [f["frame_index"] for f in doc["data"]] == list(range(1, len(doc["data"]) + 1))
    poses = [b for f in doc["data"] for b in f["skeleton"]]
    assert poses and all(len(b["pose"]) == 36 and len(b["score"]) == 18 for b in poses)
    xy = np.array([b["pose"] for b in poses])
    assert 0.0 <= np.median(xy) <= 1.0 and np.abs(xy).max() < 1.5  # normalised by the frame size
    assert all(abs(v * 1000 - round(v * 1000)) < 1e-6 for v in poses[0]["pose"])  # 3 decimals
    sample = read_kinetics_json(root / "kinetics_train" / "synthetic_train_00010.json")
    assert sample.label == 10 % len(DEMO_CLASSES) and sample.layout == "openpose"


def test_variation_present(demo_root):
    root, _ = demo_root
    bodies, empty, frames, dropped, heights, periods = [], 0, 0, 0, [], []
    for p in sorted((root / "kinetics_train").glob("*.json"))[2:82]:
        doc = json.loads(p.read_text())
        frames += len(doc["data"])
        for f in doc["data"]:
            bodies.append(len(f["skeleton"]))
            empty += not f["skeleton"]
            for b in f["skeleton"]:
                dropped += sum(s == 0 for s in b["score"])
        main = [max(f["skeleton"], key=lambda b: sum(b["score"])) for f in doc["data"] if f["skeleton"]]
        # nose y and right-ankle y of the top-ranked person where both are detected
        ys = np.array([[b["pose"][1], b["pose"][21]] for b in main
                       if b["score"][0] > 0 and b["score"][10] > 0])
        if len(ys):
            heights.append(np.median(ys[:, 1] - ys[:, 0]))
        periods.append(len(doc["data"]))
    assert max(bodies) >= 3  # distractor persons
    assert 0.01 < empty / frames < 0.3  # empty frames
    assert dropped > 0  # missing joints
    assert np.std(heights) / np.mean(heights) > 0.1  # body size / camera distance varies
    assert len(set(periods)) > 5  # lengths vary


def _fit_eval(train_x, train_y, val_x, val_y) -> float:
    """Multinomial logistic regression (standardised inputs, small L2), full-batch L-BFGS."""
    mu, sd = train_x.mean(0), train_x.std(0) + 1e-6
    a = torch.tensor((train_x - mu) / sd, dtype=torch.float32)
    b = torch.tensor((val_x - mu) / sd, dtype=torch.float32)
    y = torch.tensor(train_y)
    torch.manual_seed(0)
    lin = torch.nn.Linear(a.shape[1], len(DEMO_CLASSES))
    opt = torch.optim.LBFGS(lin.parameters(), max_iter=300)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(lin(a), y) + 1e-3 * lin.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return float((lin(b).argmax(1).numpy() == val_y).mean())


def _mean_pose(ds, masked: bool) -> np.ndarray:
    out = []
    for i in range(len(ds)):
        s = ds.sample(i)
        kp, sc = s.keypoint[0], s.keypoint_score[0]  # the top-ranked person
        if masked:  # average over the frames where each joint was detected, plus the mean scores
            w = (sc > 0)[..., None]
            out.append(np.concatenate([((kp * w).sum(0) / np.maximum(w.sum(0), 1)).ravel(), sc.mean(0)]))
        else:
            out.append(kp.mean(0).ravel())
    return np.stack(out)


def _pair_dynamics(ds) -> np.ndarray:
    """Correlations over time between limb coordinates relative to the neck (left/right wrists, right
    elbow/wrist, left/right ankles and knees, nose/right hip)."""
    out = []
    for i in range(len(ds)):
        s = ds.sample(i)
        kp, ok = s.keypoint[0], s.keypoint_score[0] > 0
        row = []
        for a, b, c in ((4, 7, 1), (3, 4, 1), (10, 13, 1), (9, 12, 1), (0, 8, 0)):
            v = ok[:, a] & ok[:, b] & ok[:, 1]
            u, w = kp[v, a, c] - kp[v, 1, c], kp[v, b, c] - kp[v, 1, c]
            u, w = u - u.mean() if v.sum() else u, w - w.mean() if v.sum() else w
            den = np.sqrt((u * u).sum() * (w * w).sum())
            row.append(float((u * w).sum() / den) if v.sum() > 3 and den > 0 else 0.0)
        out.append(row)
    return np.asarray(out)


def test_linear_probe_on_time_averaged_pose_stays_below_80_percent(demo_root, tmp_path):
    root, _ = demo_root
    train = build_dataset("demo", root, "train", processed_dir=tmp_path / "tr", log=False)
    val = build_dataset("demo", root, "val", processed_dir=tmp_path / "va", log=False)
    assert len(train) == 318 and len(val) == 158 and train.num_skipped == 2
    assert "SYNTHETIC" in repr(train)
    for masked in (False, True):
        acc = _fit_eval(_mean_pose(train, masked), train.labels, _mean_pose(val, masked), val.labels)
        assert acc < 0.80, f"time-averaged pose is too informative (masked={masked}): {acc:.3f}"
    # the classes are separable from the joints' joint dynamics: the same linear model with five
    # limb-correlation features on top of the mean pose is far better
    acc = _fit_eval(np.concatenate([_mean_pose(train, True), _pair_dynamics(train)], 1), train.labels,
                    np.concatenate([_mean_pose(val, True), _pair_dynamics(val)], 1), val.labels)
    assert acc > 0.9, acc


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_train"):
        generate_demo("/nonexistent/never", num_train=3)
    with pytest.raises(ValueError, match="num_empty"):
        generate_demo("/nonexistent/never", num_empty=500)
    with pytest.raises(ValueError, match="min_frames"):
        generate_demo("/nonexistent/never", min_frames=40, max_frames=30)
