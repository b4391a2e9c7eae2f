"""NW-UCLA all_sqe JSON reader: real files, the complete dataset (class/split counts), bad input."""
from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from pyg_sparse_stgcn.data import SkeletonFormatError
from pyg_sparse_stgcn.data.readers import (
    NWUCLA_ACTION_TO_LABEL,
    nwucla_split,
    parse_nwucla_name,
    read_nwucla_index,
    read_nwucla_json,
)


def test_real_files(realdata):
    s = read_nwucla_json(realdata / "a01_s01_e00_v01.json")
    assert s.keypoint.shape == (1, 44, 20, 3) and s.label == 0 and s.layout == "nw-ucla"
    assert s.frame_dir == "a01_s01_e00_v01" and s.total_frames == 44
    assert (s.meta["action"], s.meta["subject"], s.meta["episode"], s.meta["view"]) == (1, 1, 0, 1)
    assert s.meta["split"] == "train"
    x, y, z = s.keypoint[0].reshape(-1, 3).T
    assert -0.92 < x.min() < -0.90 and 0.37 < x.max() < 0.39
    assert 1.98 < z.min() < 2.0 and 3.52 < z.max() < 3.54
    raw = json.loads((realdata / "a01_s01_e00_v01.json").read_text())["skeletons"]
    np.testing.assert_allclose(s.keypoint[0], np.array(raw), rtol=1e-6)
    one = read_nwucla_json(realdata / "a02_s09_e04_v02.json")
    assert one.keypoint.shape == (1, 1, 20, 3) and one.label == 1 and one.total_frames == 1


def test_val_label_pickle(realdata):
    idx = read_nwucla_index(realdata / "val_label.pkl")
    assert len(idx) == 464 and all(nwucla_split(d["file_name"]) == "val" for d in idx)
    assert idx[0].keys() == {"file_name", "length", "label"}


def test_complete_dataset_counts(datasets_dir):
    root = datasets_dir / "nw-ucla"
    files = sorted((root / "all_sqe").glob("*.json"))
    assert len(files) == 1484
    per_split = {"train": Counter(), "val": Counter()}
    lengths = {}
    for f in files:
        s = read_nwucla_json(f)
        per_split[s.meta["split"]][s.label + 1] += 1
        lengths[s.frame_dir] = (s.total_frames, s.label + 1)
        assert s.label == NWUCLA_ACTION_TO_LABEL[s.meta["action"]]
    train = [per_split["train"][k] for k in range(1, 11)]
    val = [per_split["val"][k] for k in range(1, 11)]
    assert train == [102, 102, 96, 124, 101, 102, 99, 99, 98, 97] and sum(train) == 1020
    assert val == [48, 50, 45, 49, 47, 47, 43, 43, 47, 45] and sum(val) == 464
    assert [a + b for a, b in zip(train, val)] == [150, 152, 141, 173, 148, 149, 142, 142, 145, 142]
    t = [v[0] for v in lengths.values()]
    assert min(t) == 1 and max(t) == 201 and np.median(t) == 31
    idx = read_nwucla_index(root / "val_label.pkl")
    assert {d["file_name"] for d in idx} == {k for k in lengths if k.endswith("_v03")}
    assert all(lengths[d["file_name"]] == (d["length"], d["label"]) for d in idx)


def test_bad_index(tmp_path):
    import pickle

    p = tmp_path / "val_label.pkl"
    p.write_bytes(pickle.dumps([{"file_name": "a01_s01_e00_v03", "length": "12", "label": 1}]))
    with pytest.raises(SkeletonFormatError, match=r"\(\[0\]\['length'\]\)"):
        read_nwucla_index(p)


def test_names():
    assert parse_nwucla_name("x/a12_s10_e04_v03.json").action == 12
    assert nwucla_split("a12_s10_e04_v03") == "val" and nwucla_split("a12_s10_e04_v02") == "train"
    with pytest.raises(ValueError, match="aAA_sSS_eEE_vVV"):
        parse_nwucla_name("S001C001P001R001A001")
