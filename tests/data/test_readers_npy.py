"""(C, T, V, M) .npy reader: real PaddleVideo arrays, trimming, bad input, a round-trip property."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyg_sparse_stgcn.data import SkeletonFormatError
from pyg_sparse_stgcn.data.readers import read_skeleton_npy


def test_ntu_example(realdata):
    path = realdata / "example_NTU-RGB-D_sketeton.npy"
    raw = np.load(path)
    assert raw.shape == (3, 300, 25, 2)
    s = read_skeleton_npy(path)
    assert s.keypoint.shape == (1, 72, 25, 3) and s.total_frames == 72  # frames 0-71 real, body 2 empty
    np.testing.assert_array_equal(s.keypoint[0], raw[:, :72, :, 0].transpose(1, 2, 0))
    assert s.meta["padded_frames"] == 300 and s.layout == "nturgb+d" and s.label is None
    assert s.frame_dir == "example_NTU-RGB-D_sketeton"
    assert read_skeleton_npy(path, drop_empty_persons=False).keypoint.shape == (2, 72, 25, 3)


def test_fsd10_example(realdata):
    path = realdata / "example_skeleton.npy"
    raw = np.load(path)
    assert raw.dtype == np.float64 and raw.shape == (3, 2500, 25, 1)
    s = read_skeleton_npy(path, layout="openpose-body25", score_channel=True, label=3)
    assert s.keypoint.shape == (1, 117, 25, 2) and s.keypoint.dtype == np.float32
    assert s.keypoint_score.shape == (1, 117, 25) and s.label == 3
    np.testing.assert_allclose(s.keypoint_score[0], raw[2, :117, :, 0], rtol=1e-6)
    assert (s.keypoint[0, 0, 0] == 0).all()  # the nose is missing in frame 0
    assert 0 <= s.keypoint_score.min() and s.keypoint_score.max() < 1


def test_refuses_object_arrays_and_bad_shapes(tmp_path):
    obj = tmp_path / "obj.npy"
    np.save(obj, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(SkeletonFormatError, match="not a readable"):
        read_skeleton_npy(obj)
    three = tmp_path / "three.npy"
    np.save(three, np.ones((3, 10, 25)))
    with pytest.raises(SkeletonFormatError, match=r"\(shape\).*\(C, T, V, M\)"):
        read_skeleton_npy(three)
    zeros = tmp_path / "zeros.npy"
    np.save(zeros, np.zeros((3, 10, 25, 2)))
    with pytest.raises(SkeletonFormatError, match="all zeros"):
        read_skeleton_npy(zeros)
    one = tmp_path / "one.npy"
    np.save(one, np.ones((1, 4, 25, 1)))
    with pytest.raises(SkeletonFormatError, match="score_channel"):
        read_skeleton_npy(one, layout="openpose-body25", score_channel=True)


@settings(max_examples=30, deadline=None)
@given(T=st.integers(1, 12), pad=st.integers(0, 10), M=st.integers(1, 3), inner_zero=st.booleans(),
       seed=st.integers(0, 2**31 - 1))
def test_trailing_zero_frames_roundtrip(tmp_path_factory, T, pad, M, inner_zero, seed):
    rng = np.random.default_rng(seed)
    kp = rng.normal(size=(M, T, 25, 3)).astype(np.float32)
    if inner_zero and T > 2:
        kp[:, T // 2] = 0  # a zero frame inside the sequence is kept
    arr = np.concatenate([kp, np.zeros((M, pad, 25, 3), np.float32)], axis=1).transpose(3, 1, 2, 0)
    p = tmp_path_factory.mktemp("npy") / "x.npy"
    np.save(p, arr)
    s = read_skeleton_npy(p, drop_empty_persons=False)
    assert s.keypoint.shape == (M, T, 25, 3) and s.meta["padded_frames"] == T + pad
    np.testing.assert_array_equal(s.keypoint, kp)
