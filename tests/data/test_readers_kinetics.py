"""Kinetics-skeleton JSON and label reader: real ST-GCN release files, feeder semantics, bad input."""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyg_sparse_stgcn.data import SkeletonFormatError
from pyg_sparse_stgcn.data.readers import read_kinetics_json, read_kinetics_labels

FILES = {"__vzEs2wzdQ": (164, 335, "strumming guitar", 5),
         "__u6odV5hrI": (299, 207, "parkour", 2),
         "__NrybzYzUg": (299, 0, "abseiling", 2)}


def _feeder_reference(path, num_person_in=5, num_person_out=2):
    """Plain-loop re-statement of the ST-GCN Kinetics feeder (frame_index made 0-based)."""
    with open(path) as f:
        video = json.load(f)
    T = max(fr["frame_index"] for fr in video["data"])
    data = np.zeros((3, T, 18, num_person_in), dtype=np.float64)
    for fr in video["data"]:
        t = fr["frame_index"] - 1
        for m, sk in enumerate(fr["skeleton"]):
            if m >= num_person_in:
                break
            pose, score = sk["pose"], sk["score"]
            for v in range(18):
                data[0, t, v, m] = pose[2 * v]
                data[1, t, v, m] = pose[2 * v + 1]
                data[2, t, v, m] = score[v]
    data[0:2] = data[0:2] - 0.5
    for c in (0, 1):
        data[c][data[2] == 0] = 0
    out = np.zeros((3, T, 18, num_person_out))
    for t in range(T):
        totals = [data[2, t, :, m].sum() for m in range(num_person_in)]
        ranked = sorted(range(num_person_in), key=lambda m: -totals[m])
        for k in range(num_person_out):
            out[:, t, :, k] = data[:, t, :, ranked[k]]
    return out  # (C, T, V, M)


@pytest.mark.parametrize("name", sorted(FILES))
def test_real_files_match_feeder(realdata, name):
    T, label, label_name, max_bodies = FILES[name]
    s = read_kinetics_json(realdata / f"{name}.json")
    assert s.keypoint.shape == (2, T, 18, 2) and s.keypoint.dtype == np.float32
    assert s.keypoint_score.shape == (2, T, 18)
    assert (s.label, s.meta["label_name"], s.meta["max_bodies"]) == (label, label_name, max_bodies)
    assert s.frame_dir == name and s.total_frames == T and s.layout == "openpose"
    ref = _feeder_reference(realdata / f"{name}.json")
    ours = np.concatenate([s.keypoint, s.keypoint_score[..., None]], -1).transpose(3, 1, 2, 0)
    np.testing.assert_allclose(ours, ref, atol=1e-6)


def test_empty_frames_and_ranking(realdata):
    s = read_kinetics_json(realdata / "__NrybzYzUg.json")
    empty = (s.keypoint_score.sum(axis=(0, 2)) == 0).sum()
    assert empty == 234  # FORMATS.md: 234 of 299 frames have no skeleton
    # person 0 outranks person 1 in every frame; zero score means zero coordinates
    tot = s.keypoint_score.sum(axis=2)
    assert (tot[0] >= tot[1]).all()
    assert (s.keypoint[s.keypoint_score == 0] == 0).all()


def test_num_person_in_limits_bodies(realdata):
    f = realdata / "__vzEs2wzdQ.json"
    one = read_kinetics_json(f, num_person_in=1, num_person_out=3)
    assert one.keypoint.shape[0] == 3 and (one.keypoint_score[1:] == 0).all()
    np.testing.assert_allclose(
        np.concatenate([one.keypoint, one.keypoint_score[..., None]], -1).transpose(3, 1, 2, 0),
        _padded_reference(f), atol=1e-6)


def _padded_reference(f):
    ref = _feeder_reference(f, 1, 1)  # one person read, two empty persons appended
    return np.concatenate([ref, np.zeros(ref.shape[:3] + (2,))], axis=3)


@settings(max_examples=30, deadline=None)
@given(bodies=st.lists(st.integers(0, 7), min_size=1, max_size=12), n_in=st.integers(1, 6),
       n_out=st.integers(1, 4), seed=st.integers(0, 2**31 - 1))
def test_random_videos_match_feeder(tmp_path_factory, bodies, n_in, n_out, seed):
    """Random body counts, scores with exact zeros and ties, skipped frames: reader == feeder loop."""
    rng = np.random.default_rng(seed)
    frames, idx = [], 0
    for nb in bodies:
        idx += int(rng.integers(1, 3))  # sometimes a frame index is skipped
        sk = []
        for _ in range(nb):
            score = np.round(rng.choice([0.0, 0.25, 0.5, 0.75], size=18), 3)
            pose = np.round(rng.uniform(0, 1.05, size=36), 3)
            sk.append({"pose": pose.tolist(), "score": score.tolist()})
        frames.append({"frame_index": idx, "skeleton": sk})
    p = tmp_path_factory.mktemp("kin") / "v.json"
    p.write_text(json.dumps({"data": frames, "label": "x", "label_index": 1}))
    s = read_kinetics_json(p, num_person_in=n_in, num_person_out=n_out)
    ours = np.concatenate([s.keypoint, s.keypoint_score[..., None]], -1).transpose(3, 1, 2, 0)
    ref = _feeder_reference(p, n_in, min(n_out, n_in))  # stable ranking, like ours
    ref = np.concatenate([ref, np.zeros(ref.shape[:3] + (n_out - ref.shape[3],))], axis=3)
    np.testing.assert_allclose(ours, ref, atol=1e-6)


def test_label_override(realdata):
    assert read_kinetics_json(realdata / "__u6odV5hrI.json", label=3).label == 3


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_kinetics_json(tmp_path / "nope.json")


# label file: same layout as kinetics_val_label.json (4-space indent, Python-2 ", " before each newline)
LABEL_ENTRIES = {
    "--07WQ2iBlw": {"has_skeleton": True, "label": "javelin throw", "label_index": 166},
    "__vzEs2wzdQ": {"has_skeleton": True, "label": "strumming guitar", "label_index": 335},
    "__u6odV5hrI": {"has_skeleton": False, "label": "parkour", "label_index": 207},
    "__NrybzYzUg": {"has_skeleton": True, "label": "abseiling", "label_index": 0},
}
LABEL_TEXT = json.dumps(LABEL_ENTRIES, indent=4, separators=(", ", ": "))
assert LABEL_TEXT.startswith('{\n    "--07WQ2iBlw": {\n        "has_skeleton": true, \n')



def test_labels(tmp_path):
    lab = read_kinetics_labels(_write(tmp_path, "kinetics_val_label.json", LABEL_TEXT))
    assert lab.labels == {"--07WQ2iBlw": 166, "__vzEs2wzdQ": 335, "__NrybzYzUg": 0}
    assert lab.skipped == {"__u6odV5hrI": "has_skeleton is false"}
    assert lab.class_names[207] == "parkour" and lab.num_classes == 336 and len(lab) == 3


def test_labels_agree_with_video_files(realdata, tmp_path):
    lab = read_kinetics_labels(_write(tmp_path, "l.json", LABEL_TEXT))
    for vid in ("__vzEs2wzdQ", "__NrybzYzUg"):
        assert read_kinetics_json(realdata / f"{vid}.json").label == lab.labels[vid]


@pytest.mark.parametrize("old, new, where", [
    ('"has_skeleton": false', '"has_skeleton": 0', "['__u6odV5hrI'].has_skeleton"),
    ('"label_index": 335', '"label_index": "335"', "['__vzEs2wzdQ'].label_index"),
    ('"label_index": 0\n', '"label_index": 166\n', "['__NrybzYzUg'].label"),
    ('"has_skeleton": true, \n        "label": "javelin', '"label": "javelin',
     "['--07WQ2iBlw'].has_skeleton"),
])
def test_bad_labels(tmp_path, old, new, where):
    assert old in LABEL_TEXT
    p = _write(tmp_path, "bad_label.json", LABEL_TEXT.replace(old, new))
    with pytest.raises(SkeletonFormatError) as e:
        read_kinetics_labels(p)
    assert str(p) in str(e.value) and where in str(e.value)
