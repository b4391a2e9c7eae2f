"""UTKinect-Action3D reader: the complete dataset (199 segments, class and split counts), both label files,
bad input."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from pyg_sparse_stgcn.data.readers import (
    UTKINECT_CLASSES,
    read_utkinect,
    read_utkinect_labels,
    utkinect_split,
)


@pytest.fixture(scope="module")
def ut():
    from conftest import shared_path

    return shared_path("datasets", "utkinect-action3d", "joints")


def _all(ut, label_file):
    labels = read_utkinect_labels(ut / label_file)
    return [s for f in sorted(ut.glob("joints_s*_e*.txt")) for s in read_utkinect(f, labels)]


@pytest.mark.parametrize("label_file", ["actionLabel.txt", "actionLabel_modified.txt"])
def test_all_segments_and_counts(ut, label_file):
    samples = _all(ut, label_file)
    assert len(samples) == 199
    per_class = Counter(UTKINECT_CLASSES[s.label] for s in samples)
    assert per_class == {c: (19 if c == "carry" else 20) for c in UTKINECT_CLASSES}
    split = Counter(s.meta["split"] for s in samples)
    assert (split["train"], split["val"]) == (100, 99)
    assert "s10_e02_carry" not in {s.frame_dir for s in samples}
    t = [s.total_frames for s in samples]
    if label_file == "actionLabel.txt":
        assert min(t) == 5 and max(t) == 170 and np.median(t) == 28
    for s in samples:
        assert s.keypoint.shape == (1, s.total_frames, 20, 3) and s.layout == "nw-ucla"
        ids = s.meta["frame_ids"]
        assert (np.diff(ids) > 0).all() and ids[0] >= s.meta["start"] and ids[-1] <= s.meta["end"]


def test_labels_files_differ_in_seven_boundaries(ut):
    a = read_utkinect_labels(ut / "actionLabel.txt")
    b = read_utkinect_labels(ut / "actionLabel_modified.txt")
    diff = {(r, k) for r in a for k in a[r] if a[r][k] != b[r][k]}
    assert diff == {("s01_e02", "walk"), ("s03_e01", "push"), ("s07_e01", "pull"), ("s07_e02", "pull"),
                    ("s09_e01", "push"), ("s10_e01", "carry"), ("s10_e02", "pull")}
    assert a["s03_e01"]["push"] == (2556, 3622) and b["s03_e01"]["push"] == (3556, 3622)
    assert a["s10_e02"]["carry"] is None and len(a) == 20


def test_repeated_ids_keep_first_line_and_values(ut):
    f = ut / "joints_s01_e01.txt"
    rows = np.array([[float(x) for x in line.split()] for line in f.read_text().splitlines() if line.strip()])
    assert len(rows) == 560 and len(np.unique(rows[:, 0])) == 545
    (walk, *_) = read_utkinect(f, ut / "actionLabel.txt")
    assert walk.frame_dir == "s01_e01_walk" and walk.label == 0
    for k, fid in enumerate(walk.meta["frame_ids"][:30]):
        first = rows[np.flatnonzero(rows[:, 0] == fid)[0], 1:].reshape(20, 3)
        np.testing.assert_allclose(walk.keypoint[0, k], first, rtol=1e-6)


def test_split_names():
    assert utkinect_split("joints_s03_e02.txt") == "train" and utkinect_split("s10_e01_walk") == "val"
