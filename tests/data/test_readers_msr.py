"""MSR Action3D reader: the complete dataset (class/split counts of SOURCES.md), joint reordering, bad
input."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from pyg_sparse_stgcn.data import SkeletonFormatError
from pyg_sparse_stgcn.data.readers import (
    MSR_ACTION_SETS,
    MSR_EXCLUDED_SEQUENCES,
    MSR_TO_KINECT_V1,
    msr_action3d_split,
    parse_msr_name,
    read_msr_action3d,
    read_msr_file_list,
)
from pyg_sparse_stgcn.graph import get_layout


@pytest.fixture(scope="module")
def msr(request):
    from conftest import shared_path

    root = shared_path("datasets", "msr-action3d")
    files = sorted((root / "real_world_coordinates").glob("*_skeleton3D.txt"))
    used = read_msr_file_list(root / "real_world_coordinates" / "files_used_in_cvpr12_paper.txt")
    return root, {f.name[:11]: read_msr_action3d(f) for f in files}, used


def test_all_files_and_counts(msr):
    _, samples, used = msr
    assert len(samples) == 567
    per_action = Counter(s.meta["action"] for s in samples.values())
    assert [per_action[a] for a in range(1, 21)] == [27, 27, 27, 26, 26, 26, 28, 30, 30, 30, 30, 30, 30, 30,
                                                      20, 30, 30, 30, 30, 30]
    per_subject = Counter(s.meta["subject"] for s in samples.values())
    assert [per_subject[k] for k in range(1, 11)] == [60, 59, 56, 38, 57, 58, 59, 60, 60, 60]
    t = [s.total_frames for s in samples.values()]
    assert min(t) == 13 and max(t) == 936 and np.median(t) == 39
    assert len(used) == 557 and len(set(used)) == 557 and set(used) <= set(samples)
    assert set(samples) - set(used) == MSR_EXCLUDED_SEQUENCES
    for s in samples.values():
        assert s.keypoint.shape[1:] == (s.total_frames, 20, 3) and s.label == s.meta["action"] - 1
        assert s.layout == "nw-ucla" and s.meta["confidence"].shape == (1, s.total_frames, 20)


def test_cross_subject_split_counts(msr):
    _, samples, used = msr
    tr = Counter(samples[n].label + 1 for n in used if msr_action3d_split(n) == "train")
    te = Counter(samples[n].label + 1 for n in used if msr_action3d_split(n) == "val")
    assert sum(tr.values()) == 284 and sum(te.values()) == 273
    assert [tr[a] for a in range(1, 21)] == [15, 14, 15, 13, 15, 15, 14, 15, 15, 15, 15, 15, 12, 14, 9, 15,
                                             15, 15, 15, 13]
    assert [te[a] for a in range(1, 21)] == [12, 12, 12, 12, 11, 11, 13, 15, 15, 15, 15, 15, 15, 15, 11, 15,
                                             15, 15, 15, 14]
    all_tr = sum(msr_action3d_split(n) == "train" for n in samples)
    assert (all_tr, len(samples) - all_tr) == (292, 275)
    for name, (n_tr, n_te) in {"AS1": (114, 105), "AS2": (116, 112), "AS3": (111, 111)}.items():
        sub = [n for n in used if parse_msr_name(n).action in MSR_ACTION_SETS[name]]
        assert sum(msr_action3d_split(n) == "train" for n in sub) == n_tr
        assert sum(msr_action3d_split(n) == "val" for n in sub) == n_te


def test_zero_frames_tolerated(msr):
    _, samples, used = msr
    s = samples["a20_s02_e01"]
    zero = (s.keypoint[0] == 0).all(axis=(1, 2))
    assert s.total_frames == 56 and zero.sum() == 32
    with_zero = [n for n in used if (samples[n].keypoint[0] == 0).all(axis=(1, 2)).any()]
    assert len(with_zero) == 13 and {parse_msr_name(n).action for n in with_zero} == {13, 20}


def test_reorder_matches_body_model(msr):
    """The bones of the dataset's body_model.mat (MSR order) become exactly the nw-ucla layout's bones."""
    sio = pytest.importorskip("scipy.io")
    root, samples, _ = msr
    bones = sio.loadmat(root / "body_model.mat")["body_model"][0, 0]["bones"] - 1  # 0-based MSR indices
    inv = {msr_j: sdk_j for sdk_j, msr_j in enumerate(MSR_TO_KINECT_V1)}
    mapped = {frozenset((inv[int(a)], inv[int(b)])) for a, b in bones}
    assert mapped == {frozenset(e) for e in get_layout("nw-ucla").inward}
    assert sorted(MSR_TO_KINECT_V1) == list(range(20))
    # heights: head highest, feet lowest (y up), over all frames with a tracked skeleton
    kp = np.concatenate([s.keypoint[0] for s in samples.values()])
    kp = kp[(kp != 0).any(axis=(1, 2))]
    y = kp[..., 1].mean(0)
    assert y.argmax() == 3 and set(np.argsort(y)[:2]) == {15, 19}


def test_values_against_plain_parse(msr):
    root, samples, _ = msr
    f = root / "real_world_coordinates" / "a05_s03_e02_skeleton3D.txt"
    raw = np.array([[float(x) for x in line.split()] for line in f.read_text().splitlines()])
    raw = raw.reshape(-1, 20, 4)
    s = samples["a05_s03_e02"]
    np.testing.assert_allclose(s.keypoint[0, :, 3], raw[:, 19, :3], rtol=1e-6)  # head = MSR joint 20
    np.testing.assert_allclose(s.keypoint[0, :, 4], raw[:, 0, :3], rtol=1e-6)  # left shoulder = MSR joint 1
    np.testing.assert_allclose(s.meta["confidence"][0, :, 0], raw[:, 6, 3], rtol=1e-6)  # hip centre = 7


def test_file_list_errors(tmp_path):
    p = tmp_path / "list.txt"
    p.write_text("a01_s01_e01\nbogus\n")
    with pytest.raises(SkeletonFormatError, match=r"\(line 2\)"):
        read_msr_file_list(p)
    with pytest.raises(ValueError, match="aAA_sSS_eEE"):
        parse_msr_name("S001C001P001R001A001")
