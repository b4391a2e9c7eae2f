"""Restricted unpickler, checked JSON and weights-only torch loading."""
from __future__ import annotations

import collections
import os
import pickle
import subprocess

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pyg_sparse_stgcn.data import SkeletonFormatError
from pyg_sparse_stgcn.data.io_safe import load_json, load_pickle, load_torch, loads_pickle


class _TouchFile:
    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


class _Popen:
    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (subprocess.Popen, (["touch", self.target],))


class _Eval:
    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (eval, (f"open({self.target!r}, 'w').close()",))


@pytest.mark.parametrize("payload, global_name", [(_TouchFile, "system"), (_Popen, "Popen"),
                                                  (_Eval, "eval")])
@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_malicious_pickle_runs_nothing(tmp_path, payload, global_name, protocol):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pkl"
    # hidden inside an otherwise valid annotation file
    evil.write_bytes(pickle.dumps({"split": {}, "annotations": [{"frame_dir": "x", "hook": payload(marker)}]},
                                  protocol=protocol))
    with pytest.raises(SkeletonFormatError) as e:
        load_pickle(evil)
    assert not marker.exists()
    msg = str(e.value)
    assert str(evil) in msg and "refusing to load global" in msg and global_name in msg


def test_malicious_class_instance(tmp_path):
    p = tmp_path / "obj.pkl"
    p.write_bytes(pickle.dumps(collections.Counter("ab")))  # an allowed-looking stdlib class is still refused
    with pytest.raises(SkeletonFormatError, match="collections.Counter"):
        load_pickle(p)


def test_real_pickles_load(realdata):
    idx = load_pickle(realdata / "sample.pkl")  # protocol 2, _codecs.encode for raw bytes
    assert set(idx) == {"split", "annotations"} and len(idx["annotations"]) == 100
    a = idx["annotations"][0]
    assert a["frame_inds"].dtype == np.int16 and a["box_score"].dtype == np.float16
    assert a["frame_inds"].min() >= 1 and set(a["valid"]) == {0.5, 0.6, 0.7, 0.8, 0.9}
    ucf = load_pickle(realdata / "example_UCF101_skeleton.pkl")  # protocol 3
    assert ucf["keypoint"].shape == (2, 163, 17, 2) and ucf["keypoint"].dtype == np.float16
    assert ucf["frame_dir"] == "v_ApplyEyeMakeup_g01_c01" and tuple(ucf["img_shape"]) == (256, 340)
    val = load_pickle(realdata / "val_label.pkl")  # protocol 4, no globals
    assert len(val) == 464 and val[0].keys() == {"file_name", "length", "label"}


def test_truncated_and_garbage(realdata, tmp_path):
    data = (realdata / "example_UCF101_skeleton.pkl").read_bytes()
    p = tmp_path / "cut.pkl"
    p.write_bytes(data[:1000])
    with pytest.raises(SkeletonFormatError, match=r"\(pickle stream\): not a readable pickle") as e:
        load_pickle(p)
    assert str(p) in str(e.value)
    with pytest.raises(SkeletonFormatError, match="not a readable pickle"):
        loads_pickle(b"this is not a pickle")
    with pytest.raises(FileNotFoundError):
        load_pickle(tmp_path / "absent.pkl")


def test_persistent_id_refused():
    import io

    class P(pickle.Pickler):
        def persistent_id(self, obj):
            return "ext" if obj == "x" else None

    buf = io.BytesIO()
    P(buf, protocol=2).dump(["x"])
    with pytest.raises(SkeletonFormatError, match="persistent"):
        loads_pickle(buf.getvalue())


@settings(max_examples=40, deadline=None)
@given(arr=hnp.arrays(st.sampled_from([np.float16, np.float32, np.float64, np.int16, np.int64, np.uint8,
                                       bool]), hnp.array_shapes(min_dims=0, max_dims=4, max_side=5)),
       protocol=st.integers(0, 5))
def test_numpy_roundtrip(arr, protocol):
    obj = {"a": arr, "meta": (1, 2.5, "s", None, True, [b"b"]), "n": np.float32(3.5)}
    out = loads_pickle(pickle.dumps(obj, protocol=protocol))
    np.testing.assert_array_equal(out["a"], arr)
    assert out["a"].dtype == arr.dtype and out["a"].shape == arr.shape
    assert out["meta"] == obj["meta"] and out["n"] == np.float32(3.5)


def test_load_json(tmp_path):
    p = tmp_path / "x.json"
    p.write_text('{"a": [1, 2,\n  3,, 4]}')
    with pytest.raises(SkeletonFormatError, match=r"\(line 2, column 5\): invalid JSON") as e:
        load_json(p)
    assert str(p) in str(e.value)
    p.write_bytes(b'{"a": "\xff"}')
    with pytest.raises(SkeletonFormatError, match="UTF-8"):
        load_json(p)


def test_load_torch_weights_only(tmp_path):
    good = tmp_path / "w.pt"
    torch.save({"w": torch.arange(3)}, good)
    assert torch.equal(load_torch(good)["w"], torch.arange(3))
    marker = tmp_path / "pwned"
    bad = tmp_path / "bad.pt"
    torch.save({"x": _TouchFile(marker)}, bad)
    with pytest.raises(pickle.UnpicklingError):
        load_torch(bad)
    assert not marker.exists()
