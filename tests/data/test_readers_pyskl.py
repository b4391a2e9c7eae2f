"""PYSKL annotation pickles: the real UCF101 annotation, {split, annotations} wrappers, 3-D NTU annotations
built from the real .skeleton files, the K400 index-only file and its kpfile form, bad keys."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

from pyg_sparse_stgcn.data import SkeletonFormatError
from pyg_sparse_stgcn.data.io_safe import load_pickle
from pyg_sparse_stgcn.data.readers import (
    iter_pyskl_annotations,
    pyskl_splits,
    read_ntu_skeleton,
    read_pyskl_annotations,
)


def _dump(path, obj, protocol=4):
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    return path


def test_ucf101_annotation(realdata):
    path = realdata / "example_UCF101_skeleton.pkl"
    (s,) = read_pyskl_annotations(path)
    raw = load_pickle(path)
    assert s.keypoint.shape == (2, 163, 17, 2) and s.keypoint.dtype == np.float32
    assert s.keypoint_score.shape == (2, 163, 17) and s.keypoint_score.dtype == np.float32
    np.testing.assert_array_equal(s.keypoint, raw["keypoint"].astype(np.float32))
    np.testing.assert_array_equal(s.keypoint_score, raw["keypoint_score"].astype(np.float32))
    assert (s.frame_dir, s.label, s.total_frames, s.img_shape, s.layout) == (
        "v_ApplyEyeMakeup_g01_c01", 0, 163, (256, 340), "coco")
    assert tuple(s.meta["original_shape"]) == (256, 340)
    assert s.keypoint[0, :, :, 0].max() == 352.25 and s.keypoint[0, :, :, 1].max() == 336.5  # outside image
    assert ((s.keypoint_score[1] > 0).any(axis=1)).sum() == 14


def test_split_wrapper(realdata, tmp_path):
    ann = load_pickle(realdata / "example_UCF101_skeleton.pkl")
    other = dict(ann, frame_dir="other", label=5)
    p = _dump(tmp_path / "ucf.pkl", {"split": {"train": ["other"], "val": [ann["frame_dir"]]},
                                     "annotations": [ann, other]}, protocol=2)
    assert pyskl_splits(p) == {"train": ["other"], "val": [ann["frame_dir"]]}
    assert [s.label for s in read_pyskl_annotations(p)] == [0, 5]
    assert [s.frame_dir for s in read_pyskl_annotations(p, split="train")] == ["other"]
    assert [s.label for s in iter_pyskl_annotations(p, split="val")] == [0]
    with pytest.raises(SkeletonFormatError, match=r"unknown split 'test'; valid: train, val") as e:
        read_pyskl_annotations(p, split="test")
    assert str(p) in str(e.value)
    single = _dump(tmp_path / "single.pkl", ann)
    with pytest.raises(SkeletonFormatError, match="no 'split' dict"):
        read_pyskl_annotations(single, split="train")


def test_ntu_3d_annotations_roundtrip(realdata, tmp_path):
    """The PYSKL ntu60_3danno form built from the real .skeleton files, float32 and float16."""
    samples = [read_ntu_skeleton(f) for f in sorted(realdata.glob("*.skeleton"))]
    for dtype in (np.float32, np.float16):
        anns = [{"frame_dir": s.frame_dir, "label": s.label, "total_frames": s.total_frames,
                 "keypoint": s.keypoint.astype(dtype)} for s in samples]
        split = {"xsub_train": [s.frame_dir for s in samples if s.meta["performer"] in (1, 8)],
                 "xsub_val": [s.frame_dir for s in samples if s.meta["performer"] == 15]}
        p = _dump(tmp_path / "ntu60_3danno.pkl", {"split": split, "annotations": anns})
        got = read_pyskl_annotations(p, split="xsub_train")
        assert [g.frame_dir for g in got] == split["xsub_train"]
        for g in read_pyskl_annotations(p):
            ref = next(s for s in samples if s.frame_dir == g.frame_dir)
            assert g.layout == "nturgb+d" and g.keypoint_score is None and g.label == ref.label
            np.testing.assert_array_equal(g.keypoint, ref.keypoint.astype(dtype).astype(np.float32))


def test_index_only_file_rejected(realdata):
    path = realdata / "sample.pkl"
    with pytest.raises(SkeletonFormatError) as e:
        read_pyskl_annotations(path)
    msg = str(e.value)
    assert str(path) in msg and "(annotations[0]['keypoint'])" in msg and "index-only" in msg
    assert "'jf7RDuUTrsQ'" in msg
    assert len(pyskl_splits(path)["train"]) == 100


def _k400_with_kpfiles(realdata, tmp_path, n=4, seed=0):
    idx = load_pickle(realdata / "sample.pkl")
    rng = np.random.default_rng(seed)
    anns, kp = [], {}
    for a in idx["annotations"][:n]:
        N = len(a["frame_inds"])
        kp[a["frame_dir"]] = {"keypoint": rng.uniform(0, 1, (N, 17, 3)).astype(np.float16)}
        anns.append(dict(a, raw_file="kpfiles/part_0.pkl"))
    (tmp_path / "kpfiles").mkdir(exist_ok=True)
    _dump(tmp_path / "kpfiles" / "part_0.pkl", kp)
    p = _dump(tmp_path / "k400_hrnet.pkl", {"split": {"train": [a["frame_dir"] for a in anns]},
                                            "annotations": anns})
    return p, anns, kp


def _decompress_reference(ann, skel, box_thr=None):
    """Plain-loop placement: per frame, skeletons sorted by summed score (descending, stable)."""
    per_frame = {}
    for j, (t, sk) in enumerate(zip(ann["frame_inds"].tolist(), skel.astype(np.float32))):
        if box_thr is not None and float(ann["box_score"][j]) < box_thr:
            continue
        per_frame.setdefault(t - 1, []).append(sk)
    M = max(len(v) for v in per_frame.values())
    kp = np.zeros((M, ann["total_frames"], 17, 2), np.float32)
    sc = np.zeros((M, ann["total_frames"], 17), np.float32)
    for t, sks in per_frame.items():
        sks = sorted(sks, key=lambda s: -s[:, 2].sum())
        for m, sk in enumerate(sks):
            kp[m, t], sc[m, t] = sk[:, :2], sk[:, 2]
    return kp, sc


@pytest.mark.parametrize("box_thr", [None, 0.8])
def test_k400_kpfile_form(realdata, tmp_path, box_thr):
    p, anns, kp = _k400_with_kpfiles(realdata, tmp_path)
    got = read_pyskl_annotations(p, box_thr=box_thr)
    assert len(got) == len(anns)
    for s, a in zip(got, anns):
        ref_kp, ref_sc = _decompress_reference(a, kp[a["frame_dir"]]["keypoint"], box_thr)
        assert s.keypoint.shape == ref_kp.shape and s.total_frames == a["total_frames"]
        np.testing.assert_array_equal(s.keypoint, ref_kp)
        np.testing.assert_array_equal(s.keypoint_score, ref_sc)
        assert s.label == a["label"] and s.img_shape == tuple(a["img_shape"]) and s.layout == "coco"
        assert s.meta["raw_file"].endswith("part_0.pkl")
    capped = read_pyskl_annotations(p, max_person=1)
    assert all(s.keypoint.shape[0] == 1 for s in capped)


def test_k400_kpfile_root(realdata, tmp_path):
    """A missing kpfile is an error (test_data_reader_errors.py); with kpfile_root, resolved against it."""
    p, _, _ = _k400_with_kpfiles(realdata, tmp_path)
    (tmp_path / "kpfiles" / "part_0.pkl").unlink()
    other = tmp_path / "elsewhere"
    other.mkdir()
    p2, _, _ = _k400_with_kpfiles(realdata, other)
    assert len(read_pyskl_annotations(p, kpfile_root=other)) == 4  # resolved against kpfile_root


def test_malicious_annotation_file(tmp_path):
    import os

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    p = _dump(tmp_path / "evil.pkl", {"split": {}, "annotations": [{"frame_dir": "a", "keypoint": Evil()}]})
    with pytest.raises(SkeletonFormatError, match="refusing to load global"):
        read_pyskl_annotations(p)
    assert not (tmp_path / "pwned").exists()
