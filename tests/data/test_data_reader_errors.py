"""Reader error messages on bad input built from text written here, so they run without ../shared.

Each reader gets a small valid file written by this module (checked to read), then mutated; every error must
name the file, the line / JSON path / pickle key and the field. These are the only bad-input cases of the
readers (``test_readers_*.py`` keep the facts of the real ``../shared`` files), so they run everywhere.
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from pyg_sparse_stgcn.data import SkeletonFormatError
from pyg_sparse_stgcn.data.io_safe import load_pickle
from pyg_sparse_stgcn.data.readers import (
    iter_pyskl_annotations,
    iter_pyskl_items,
    read_kinetics_json,
    read_msr_action3d,
    read_ntu_skeleton,
    read_nwucla_json,
    read_pyskl_annotations,
    read_skeleton_npy,
    read_utkinect,
    read_utkinect_labels,
)


def _raises(fn, *args, where: str, msg: str, path: Path | None = None, **kwargs) -> str:
    with pytest.raises(SkeletonFormatError) as e:
        fn(*args, **kwargs)
    text = str(e.value)
    if path is not None:
        assert str(path) in text, text
    assert f"({where})" in text, text
    assert msg in text, text
    return text


def _set(i: int, value: str):
    def fn(lines: list[str]) -> list[str]:
        lines[i] = value
        return lines
    return fn


# --- NTU .skeleton ----------------------------------------------------------------------------------------
NTU_BODY = "72057594037931648 0 1 1 1 1 0 0.01 -0.2 2"  # bodyID, clipped edges, hand states, lean, tracking
NTU_JOINT = "{x:.7f} {y:.7f} 3.1 251.3 213.1 974.1 546.2 -0.2 0.03 0.97 -0.07 2"  # 12 values


def _ntu_lines(T: int = 3) -> list[str]:
    """A valid NTU file of T frames, one body each: 1 + 28 T lines, and the final CRLF (an empty last item)."""
    lines = [str(T)]
    for t in range(T):
        lines += ["1", NTU_BODY, "25"] + [NTU_JOINT.format(x=0.01 * v, y=0.1 * t) for v in range(25)]
    return lines + [""]


def _ntu_file(tmp_path: Path, lines: list[str]) -> Path:
    p = tmp_path / "S001C001P001R001A011.skeleton"
    p.write_bytes("\r\n".join(lines).encode())
    return p


def test_ntu_text_is_valid(tmp_path):
    s = read_ntu_skeleton(_ntu_file(tmp_path, _ntu_lines()))
    assert s.keypoint.shape == (1, 3, 25, 3) and s.label == 10
    np.testing.assert_allclose(s.keypoint[0, 2, 4], [0.04, 0.2, 3.1], rtol=1e-6)


# lines (1-based): 1 frame count; frame t (0-based) starts at 2 + 28 t: body count, body line, joint count,
# then 25 joint lines (frame 0: lines 5-29, frame 1: 33-57, frame 2: 61-85)
@pytest.mark.parametrize("fn, where, msg", [
    (lambda ln: ln[:29], "line 30", "file ends early: expected the body count of frame 2"),
    (lambda ln: ln[:59], "line 60", "file ends early: expected the joint count"),
    (lambda ln: ln[:40], "line 41", "file ends early: expected 25 joint lines"),
    (_set(6, "0.1 0.2 0.x3 1 1 1 1 0 0 0 0 2"), "line 7", "'0.x3'"),
    (_set(7, "0.1 0.2 0.3 1 1 1 1 0 0 0 2"), "line 8", "12 values, got 11"),
    (lambda ln: _set(9, ln[9] + " 7")(_set(8, ln[8].rsplit(" ", 1)[0])(ln)), "line 9", "12 values, got 11"),
    (_set(3, "24"), "line 4", "joint count must be 25, got 24"),
    (_set(2, "72057594037931648 0 1 1 1 1 0 0.01"), "line 3", "10 values, got 8"),
    (_set(2, "7205759403793164x 0 1 1 1 1 0 0.01 -0.2 2"), "line 3", "is not an integer"),
    (_set(0, "3.5"), "line 1", "frame count"),
    (_set(0, "99999999"), "line 1", "exceeds the"),
    (_set(1, "-1"), "line 2", "must be >= 0"),
    (lambda ln: ln[:-1] + ["garbage", ""], "line 86", "after the last"),
])
def test_ntu_bad_input_names_file_and_line(tmp_path, fn, where, msg):
    p = _ntu_file(tmp_path, fn(_ntu_lines()))
    _raises(read_ntu_skeleton, p, where=where, msg=msg, path=p)


def test_ntu_no_body_and_binary(tmp_path):
    p = _ntu_file(tmp_path, ["2", "0", "0", ""])
    _raises(read_ntu_skeleton, p, where="line 1", msg="no frame holds a body", path=p)
    p.write_bytes(b"3\r\n\xff\xfe")
    _raises(read_ntu_skeleton, p, where="byte 3", msg="ASCII", path=p)


# --- Kinetics-skeleton JSON -------------------------------------------------------------------------------
def _kinetics_doc(T: int = 9) -> dict:
    rng = np.random.default_rng(0)
    data = []
    for t in range(T):
        bodies = [{"pose": [round(float(v), 3) for v in rng.uniform(0.1, 0.9, 36)],
                   "score": [round(float(v), 3) for v in rng.uniform(0.2, 1.0, 18)]} for _ in range(2)]
        data.append({"frame_index": t + 1, "skeleton": bodies})
    return {"data": data, "label": "abseiling", "label_index": 0}


def _write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_kinetics_text_is_valid(tmp_path):
    s = read_kinetics_json(_write(tmp_path, "v.json", json.dumps(_kinetics_doc())))
    assert s.keypoint.shape == (2, 9, 18, 2) and s.keypoint_score.shape == (2, 9, 18) and s.label == 0


@pytest.mark.parametrize("mutate, where", [
    (lambda d: d["data"][3]["skeleton"][0]["pose"].pop(), "data[3].skeleton[0].pose"),
    (lambda d: d["data"][2]["skeleton"][0]["score"].__setitem__(4, "x"), "data[2].skeleton[0].score[4]"),
    (lambda d: d["data"][5].__setitem__("frame_index", "7"), "data[5].frame_index"),
    (lambda d: d["data"][5].__setitem__("frame_index", 0), "data[5].frame_index"),
    (lambda d: d["data"][6].__setitem__("frame_index", 1), "data[6].frame_index"),
    (lambda d: d["data"][7].__setitem__("frame_index", 10**9), "data[7].frame_index"),
    (lambda d: d["data"][1].pop("skeleton"), "data[1].skeleton"),
    (lambda d: d["data"][0]["skeleton"][0].pop("score"), "data[0].skeleton[0].score"),
    (lambda d: d.__setitem__("data", {"0": 1}), "data"),
    (lambda d: d.__setitem__("label_index", "abseil"), "label_index"),
])
def test_kinetics_bad_json_names_path(tmp_path, mutate, where):
    doc = _kinetics_doc()
    mutate(doc)
    p = _write(tmp_path, "bad.json", json.dumps(doc))
    with pytest.raises(SkeletonFormatError) as e:
        read_kinetics_json(p)
    assert str(p) in str(e.value) and where in str(e.value)


def test_kinetics_truncated_and_garbled_json(tmp_path):
    text = json.dumps(_kinetics_doc())
    p = _write(tmp_path, "trunc.json", text[: len(text) // 2])
    with pytest.raises(SkeletonFormatError, match=r"line 1, column \d+") as e:
        read_kinetics_json(p)
    assert str(p) in str(e.value)
    first = str(_kinetics_doc()["data"][0]["skeleton"][0]["pose"][0])
    assert f'"pose": [{first}' in text
    p = _write(tmp_path, "garbled.json", text.replace(f'"pose": [{first}', f'"pose": [{first}x', 1))
    with pytest.raises(SkeletonFormatError, match="invalid JSON"):
        read_kinetics_json(p)


# --- NW-UCLA JSON -----------------------------------------------------------------------------------------
def _nwucla_doc(T: int = 8) -> dict:
    rng = np.random.default_rng(1)
    sk = [[[round(float(v), 6) for v in rng.normal(size=3)] for _ in range(20)] for _ in range(T)]
    return {"file_name": "a01_s01_e00_v01", "skeletons": sk, "label": 1}


def _nwucla_file(tmp_path: Path, doc: dict) -> Path:
    p = tmp_path / "a01_s01_e00_v01.json"
    p.write_text(json.dumps(doc))
    return p


def test_nwucla_text_is_valid(tmp_path):
    s = read_nwucla_json(_nwucla_file(tmp_path, _nwucla_doc()))
    assert s.keypoint.shape == (1, 8, 20, 3) and s.label == 0


@pytest.mark.parametrize("mutate, where, msg", [
    (lambda d: d["skeletons"][3].pop(), "skeletons[3]", "20 joints, got 19"),
    (lambda d: d["skeletons"][5][7].__setitem__(1, "0.3x"), "skeletons[5][7]", "3 numbers"),
    (lambda d: d["skeletons"][5][7].append(1.0), "skeletons[5][7]", "3 numbers"),
    (lambda d: d.__setitem__("label", 11), "label", "1..10"),
    (lambda d: d.__setitem__("label", 3), "label", "disagrees with action a01"),
    (lambda d: d.pop("skeletons"), "skeletons", "missing field"),
    (lambda d: d.__setitem__("skeletons", {"0": []}), "skeletons", "non-empty list"),
    (lambda d: d.__setitem__("file_name", 7), "file_name", "must be a string"),
])
def test_nwucla_bad_input(tmp_path, mutate, where, msg):
    doc = _nwucla_doc()
    mutate(doc)
    p = _nwucla_file(tmp_path, doc)
    _raises(read_nwucla_json, p, where=where, msg=msg, path=p)


def test_nwucla_truncated_json(tmp_path):
    p = tmp_path / "t.json"
    p.write_text(json.dumps(_nwucla_doc(), indent=1)[:900])
    with pytest.raises(SkeletonFormatError, match=r"line \d+, column \d+"):
        read_nwucla_json(p)


# --- MSR Action3D -----------------------------------------------------------------------------------------
def _msr_lines(T: int = 3) -> list[str]:
    """T frames of 20 joint lines ``x y z confidence``."""
    return [f"{0.1 * v:.6f} {0.01 * t:.6f} {2.5 + 0.001 * v:.6f} 1.0" for t in range(T) for v in range(20)]


def _msr_file(tmp_path: Path, lines: list[str]) -> Path:
    p = tmp_path / "a01_s01_e01_skeleton3D.txt"
    p.write_text("\n".join(lines) + "\n")
    return p


def test_msr_text_is_valid(tmp_path):
    s = read_msr_action3d(_msr_file(tmp_path, _msr_lines()))
    assert s.keypoint.shape == (1, 3, 20, 3) and s.label == 0


@pytest.mark.parametrize("fn, where, msg", [
    (lambda ln: ln[:-3], "line 57", "not a multiple of 20"),
    (_set(41, "0.1 0.2x 0.3 1.0"), "line 42", "'0.2x'"),
    (_set(42, "0.1 0.2 0.3"), "line 43", "4 values, got 3"),
    (lambda ln: _set(44, ln[44] + " 1.0")(_set(43, "0.1 0.2 0.3")(ln)), "line 44", "4 values, got 3"),
    (lambda ln: [], "line 1", "no frames"),
])
def test_msr_bad_input(tmp_path, fn, where, msg):
    p = _msr_file(tmp_path, fn(_msr_lines()))
    _raises(read_msr_action3d, p, where=where, msg=msg, path=p)


# --- UTKinect-Action3D ------------------------------------------------------------------------------------
UT_LABELS = """s01_e01
walk: 10 12
sitDown: 13 14
standUp: 15 16
pickUp: 17 18
carry: 19 20
throw: 21 22
push: 23 24
pull: 25 26
waveHands: 27 28
clapHands: 29 30
s01_e02
walk: 10 12
sitDown: 13 14
standUp: 15 16
pickUp: 17 18
carry: NaN NaN
throw: 21 22
push: 23 24
pull: 25 26
waveHands: 27 28
clapHands: 29 30
"""


def _ut_joint_lines() -> list[str]:
    """Frame ids 10..30 (id 11 twice), each followed by 60 numbers."""
    ids = [10, 11, 11] + list(range(12, 31))
    return [f"{fid}   " + "  ".join(f"{0.01 * (fid + k):.6f}" for k in range(60)) for fid in ids]


def _ut_files(tmp_path: Path, joint_lines: list[str], labels: str = UT_LABELS) -> tuple[Path, Path]:
    jp = tmp_path / "joints_s01_e01.txt"
    jp.write_text("\n".join(joint_lines) + "\n")
    lp = tmp_path / "actionLabel.txt"
    lp.write_text(labels)
    return jp, lp


def test_utkinect_text_is_valid(tmp_path):
    jp, lp = _ut_files(tmp_path, _ut_joint_lines())
    segs = read_utkinect(jp, lp)
    assert [s.frame_dir for s in segs][:2] == ["s01_e01_walk", "s01_e01_sitDown"] and len(segs) == 10
    assert segs[0].keypoint.shape == (1, 3, 20, 3)  # ids 10, 11, 12 (the repeated 11 kept once)
    assert "carry" not in read_utkinect_labels(lp)["s01_e02"] or read_utkinect_labels(lp)["s01_e02"]["carry"] is None


@pytest.mark.parametrize("fn, where, msg", [
    (lambda ln: ln[:5] + [" ".join(ln[5].split()[:-1])] + ln[6:], "line 6", "61 values, got 60"),
    (lambda ln: ln[:7] + [ln[7].replace(".", ",", 1)] + ln[8:], "line 8", "not a number"),
    (lambda ln: ln[:10] + [ln[3]] + ln[11:], "line 11", "must not decrease"),
    (lambda ln: ln[:2], "s01_e01 sitDown", "holds no frame"),
])
def test_utkinect_bad_joint_file(tmp_path, fn, where, msg):
    jp, lp = _ut_files(tmp_path, fn(_ut_joint_lines()))
    _raises(read_utkinect, jp, lp, where=where, msg=msg, path=jp)


@pytest.mark.parametrize("old, new, where, msg", [
    ("sitDown: 13 14", "sitdown: 13 14", "line 3", "expected action 'sitDown'"),
    ("sitDown: 13 14", "sitDown: 13", "line 3", "'start end'"),
    ("sitDown: 13 14", "sitDown: 14 13", "line 3", "start <= end"),
    ("sitDown: 13 14", "sitDown: 1x 14", "line 3", "frame ids or NaN"),
    ("s01_e02\n", "s01-e02\n", "line 12", "recording id"),
    ("clapHands: 29 30\ns01_e02", "s01_e02", "line 11", "lists 9 actions"),
])
def test_utkinect_bad_label_file(tmp_path, old, new, where, msg):
    assert old in UT_LABELS
    _, lp = _ut_files(tmp_path, _ut_joint_lines(), UT_LABELS.replace(old, new, 1))
    _raises(read_utkinect_labels, lp, where=where, msg=msg, path=lp)


def test_utkinect_recording_not_in_labels(tmp_path):
    jp, lp = _ut_files(tmp_path, _ut_joint_lines())
    table = read_utkinect_labels(lp)
    del table["s01_e01"]
    _raises(read_utkinect, jp, table, where="file name", msg="s01_e01 is not in the label file", path=jp)


# --- PYSKL pickles ----------------------------------------------------------------------------------------
def _annotation(frame_dir: str = "v_test_g01_c01", M: int = 2, T: int = 6) -> dict:
    rng = np.random.default_rng(2)
    return {"frame_dir": frame_dir, "label": 0, "img_shape": (256, 340), "original_shape": (256, 340),
            "total_frames": T, "keypoint": rng.uniform(0, 340, (M, T, 17, 2)).astype(np.float16),
            "keypoint_score": rng.uniform(0, 1, (M, T, 17)).astype(np.float16)}


def _dump(path: Path, obj) -> Path:
    path.write_bytes(pickle.dumps(obj, protocol=4))
    return path


def test_pyskl_annotation_is_valid(tmp_path):
    (s,) = read_pyskl_annotations(_dump(tmp_path / "one.pkl", _annotation()))
    assert s.keypoint.shape == (2, 6, 17, 2) and s.layout == "coco" and s.img_shape == (256, 340)


@pytest.mark.parametrize("mutate, where, msg", [
    (lambda a: a.pop("frame_dir"), "annotations[0]['frame_dir']", "missing key"),
    (lambda a: a.__setitem__("keypoint", a["keypoint"][0]), "annotations[0]['keypoint']", "4-D"),
    (lambda a: a.__setitem__("keypoint", a["keypoint"].tolist()), "annotations[0]['keypoint']", "list"),
    (lambda a: a.__setitem__("keypoint_score", a["keypoint_score"][:, :3]),
     "annotations[0]['keypoint_score']", "does not match"),
    (lambda a: a.pop("keypoint_score"), "annotations[0]['keypoint_score']", "without keypoint_score"),
    (lambda a: a.__setitem__("label", "zero"), "annotations[0]['label']", "int"),
    (lambda a: a.__setitem__("img_shape", 256), "annotations[0]['img_shape']", "(height, width)"),
    (lambda a: a.update(keypoint=a["keypoint"][:, :, :5], keypoint_score=a["keypoint_score"][:, :, :5]),
     "annotations[0]['keypoint']", "no built-in layout has 5 joints"),
    (lambda a: a.pop("keypoint"), "annotations[0]['keypoint']", "index-only"),
])
def test_pyskl_bad_annotation_keys(tmp_path, mutate, where, msg):
    ann = _annotation()
    mutate(ann)
    p = _dump(tmp_path / "bad.pkl", {"split": {"train": [ann.get("frame_dir", "x")]}, "annotations": [ann]})
    _raises(read_pyskl_annotations, p, where=where, msg=msg, path=p)


def test_pyskl_bad_root_and_split(tmp_path):
    ann = _annotation()
    p = _dump(tmp_path / "wrong.pkl", {"splits": {}, "annotation": [ann]})
    _raises(read_pyskl_annotations, p, where="pickle root", msg="found ['annotation', 'splits']", path=p)
    p = _dump(tmp_path / "wrong2.pkl", {"split": {"train": "abc"}, "annotations": [ann]})
    _raises(read_pyskl_annotations, p, where="key 'split'", msg="'split' must map", path=p)
    p = _dump(tmp_path / "wrong3.pkl", {"split": {}, "annotations": ann})
    _raises(read_pyskl_annotations, p, where="key 'annotations'", msg="must be a list", path=p)
    p = _dump(tmp_path / "ok.pkl", {"split": {"train": [ann["frame_dir"]], "val": []}, "annotations": [ann]})
    _raises(read_pyskl_annotations, p, split="test", where="key 'split'", msg="unknown split 'test'; valid: "
            "train, val", path=p)
    single = _dump(tmp_path / "single.pkl", ann)
    _raises(read_pyskl_annotations, single, split="train", where="key 'split'", msg="no 'split' dict")
    one = _dump(tmp_path / "one.pkl", dict(ann, keypoint=np.zeros(3)))
    _raises(read_pyskl_annotations, one, where="annotation['keypoint']", msg="4-D", path=one)


def test_pyskl_items_isolate_bad_annotations(tmp_path):
    ann = _annotation()
    bad = dict(ann, frame_dir="bad", keypoint=ann["keypoint"][0])
    p = _dump(tmp_path / "mixed.pkl", {"split": {"train": ["bad", ann["frame_dir"]]},
                                       "annotations": [bad, ann, "not a dict"]})
    items = list(iter_pyskl_items(p))
    assert [(it.frame_dir, it.where) for it in items] == [
        ("bad", "annotations[0]"), (ann["frame_dir"], "annotations[1]"), ("<annotations[2]>", "annotations[2]")]
    _raises(items[0].load, where="annotations[0]['keypoint']", msg="4-D", path=p)
    assert items[1].load().keypoint.shape == (2, 6, 17, 2)
    _raises(items[2].load, where="annotations[2]", msg="must be a dict", path=p)
    assert [it.frame_dir for it in iter_pyskl_items(p, split="train")] == ["bad", ann["frame_dir"]]
    with pytest.raises(SkeletonFormatError, match="annotations"):
        list(iter_pyskl_annotations(p))


def _k400(tmp_path: Path, n: int = 3) -> tuple[Path, list[dict], dict]:
    rng = np.random.default_rng(3)
    anns, kp = [], {}
    for i in range(n):
        inds = np.array([1, 1, 2, 4, 5], np.int64)
        anns.append({"frame_dir": f"k{i}", "label": i, "total_frames": 5, "img_shape": (240, 320),
                     "frame_inds": inds, "box_score": rng.uniform(0.5, 1, len(inds)).astype(np.float16),
                     "raw_file": "kpfiles/part_0.pkl"})
        kp[f"k{i}"] = {"keypoint": rng.uniform(0, 1, (len(inds), 17, 3)).astype(np.float16)}
    (tmp_path / "kpfiles").mkdir(exist_ok=True)
    _dump(tmp_path / "kpfiles" / "part_0.pkl", kp)
    p = _dump(tmp_path / "k400_hrnet.pkl", {"split": {"train": [a["frame_dir"] for a in anns]},
                                            "annotations": anns})
    return p, anns, kp


def test_pyskl_k400_kpfile_errors(tmp_path):
    p, anns, kp = _k400(tmp_path)
    assert [s.keypoint.shape for s in read_pyskl_annotations(p)] == [(2, 5, 17, 2)] * 3
    kp["k1"]["keypoint"] = kp["k1"]["keypoint"][:-1]
    _dump(tmp_path / "kpfiles" / "part_0.pkl", kp)
    _raises(read_pyskl_annotations, p, where="annotations[1]['frame_inds']", msg="kpfile holds 4 skeletons",
            path=p)
    del kp["k1"]
    kfile = _dump(tmp_path / "kpfiles" / "part_0.pkl", kp)
    _raises(read_pyskl_annotations, p, where="key 'k1'", msg="no entry for frame_dir 'k1'", path=kfile)
    kfile.unlink()
    text = _raises(read_pyskl_annotations, p, where="annotations[0]['raw_file']", msg="is missing", path=p)
    assert str(kfile) in text


def test_truncated_pickle(tmp_path):
    data = pickle.dumps({"split": {}, "annotations": [_annotation()]}, protocol=4)
    cut = tmp_path / "cut.pkl"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(SkeletonFormatError, match=r"\(pickle stream\): not a readable pickle") as e:
        load_pickle(cut)
    assert str(cut) in str(e.value)


# --- (C, T, V, M) .npy ------------------------------------------------------------------------------------
def _npy(tmp_path: Path) -> Path:
    arr = np.zeros((3, 30, 25, 2), np.float32)
    arr[:, :12, :, 0] = np.random.default_rng(4).normal(size=(3, 12, 25))
    p = tmp_path / "sample.npy"
    np.save(p, arr)
    return p


def test_npy_layout_mismatch_truncated_and_garbled(tmp_path):
    p = _npy(tmp_path)
    assert read_skeleton_npy(p).keypoint.shape == (1, 12, 25, 3)
    text = _raises(read_skeleton_npy, p, layout="openpose", where="shape[2]", msg="'openpose' has 18", path=p)
    assert "25 joints" in text, text
    data = p.read_bytes()
    cut = tmp_path / "cut.npy"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(SkeletonFormatError, match="not a readable") as e:
        read_skeleton_npy(cut)
    assert str(cut) in str(e.value)
    garbled = tmp_path / "garbled.npy"
    garbled.write_bytes(data[:8] + b"{'descr': zz" + data[20:])
    with pytest.raises(SkeletonFormatError, match="npy header"):
        read_skeleton_npy(garbled)
