"""SkeletonDataset: the real datasets in ../shared (counts equal SOURCES.md), the processed cache, bad files,
missing datasets."""
from __future__ import annotations

import collections
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyg_sparse_stgcn.data import (
    DATASETS,
    DatasetNotFoundError,
    SkeletonData,
    SkeletonDataset,
    build_dataset,
    build_pipeline,
    check_dataset,
    dataset_info,
)
from pyg_sparse_stgcn.data.io_safe import load_pickle
from pyg_sparse_stgcn.data.readers import (
    read_kinetics_json,
    read_msr_action3d,
    read_ntu_skeleton,
    read_nwucla_json,
)
from pyg_sparse_stgcn.data.readers.ntu import NTU60_MISSING_SKELETONS


def _counts(ds) -> list[int]:
    c = collections.Counter(ds.labels.tolist())
    return [c[k] for k in range(ds.num_classes)]


# --- the three complete datasets (SOURCES.md) -------------------------------------------------------------
def test_nwucla_counts(datasets_dir, tmp_path):
    root = datasets_dir / "nw-ucla"
    train = build_dataset("nw-ucla", root, "train", processed_dir=tmp_path / "tr", log=False)
    test = build_dataset("nw-ucla", root, "test", processed_dir=tmp_path / "te", log=False)
    assert (len(train), len(test), train.num_skipped, test.num_skipped) == (1020, 464, 0, 0)
    assert _counts(train) == [102, 102, 96, 124, 101, 102, 99, 99, 98, 97]
    assert _counts(test) == [48, 50, 45, 49, 47, 47, 43, 43, 47, 45]
    assert train.num_classes == 10 and train.layout == "nw-ucla" and train.pipeline_kind == "3d"
    # a sample survives the cache unchanged
    i = [train.get(k).frame_dir for k in range(len(train))].index("a01_s01_e00_v01")
    ref = read_nwucla_json(root / "all_sqe" / "a01_s01_e00_v01.json")
    got = train.sample(i)
    np.testing.assert_array_equal(got.keypoint, ref.keypoint)
    assert got.label == ref.label and got.total_frames == ref.total_frames
    # the one-frame sample is in the test split and goes through the pipeline
    names = [test.get(k).frame_dir for k in range(len(test))]
    one = test[names.index("a02_s09_e04_v03")]
    assert one.x.shape[1] == 1
    out = build_pipeline("3d", "j+b", 16, train=False, layout="nw-ucla", num_person=1)(one)
    assert out.x.shape == (1, 16, 20, 6) and torch.isfinite(out.x).all()


def test_msr_action3d_counts(datasets_dir, tmp_path):
    root = datasets_dir / "msr-action3d"
    train = build_dataset("msr-action3d", root, "train", processed_dir=tmp_path / "tr", log=False)
    val = build_dataset("msr-action3d", root, "val", processed_dir=tmp_path / "va", log=False)
    assert (len(train), len(val)) == (284, 273)
    assert _counts(train) == [15, 14, 15, 13, 15, 15, 14, 15, 15, 15, 15, 15, 12, 14, 9, 15, 15, 15, 15, 13]
    assert _counts(val) == [12, 12, 12, 12, 11, 11, 13, 15, 15, 15, 15, 15, 15, 15, 11, 15, 15, 15, 15, 14]
    every = build_dataset("msr-action3d", root, "train", processed_dir=tmp_path / "all", subset="all",
                          log=False)
    assert len(every) == 292
    k = [train.get(j).frame_dir for j in range(len(train))].index("a20_s01_e01")
    ref = read_msr_action3d(root / "real_world_coordinates" / "a20_s01_e01_skeleton3D.txt")
    np.testing.assert_array_equal(train.sample(k).keypoint, ref.keypoint)


def test_utkinect_counts(datasets_dir, tmp_path):
    root = datasets_dir / "utkinect-action3d"
    train = build_dataset("utkinect", root, "train", processed_dir=tmp_path / "tr", log=False)
    val = build_dataset("utkinect", root, "val", processed_dir=tmp_path / "va", log=False)
    assert (len(train), len(val), train.num_classes) == (100, 99, 10)
    assert _counts(train) == [10] * 10
    assert _counts(val) == [10, 10, 10, 10, 9, 10, 10, 10, 10, 10]


# --- native forms built from the real files in ../shared/realdata -----------------------------------------
def test_ntu_folder_of_skeleton_files(realdata, tmp_path):
    root = tmp_path / "ntu"
    (root / "nturgb+d_skeletons").mkdir(parents=True)
    for f in realdata.glob("*.skeleton"):
        shutil.copy(f, root / "nturgb+d_skeletons" / f.name)
    missing = sorted(n for n in NTU60_MISSING_SKELETONS if n[4:8] == "C001")[0]  # a camera-1 (xview val) name
    folder = root / "nturgb+d_skeletons"
    shutil.copy(realdata / "S001C001P001R001A011.skeleton", folder / f"{missing}.skeleton")
    (root / "nturgb+d_skeletons" / "S001C001P001R001A099.skeleton").write_text("garbage\r\n")  # NTU-120 only
    (root / "nturgb+d_skeletons" / "S001C001P001R002A011.skeleton").write_text("3\r\n1\r\n")  # truncated
    kw = {"log": False}
    xview_val = build_dataset("ntu60-xview", root, "val", processed_dir=tmp_path / "v", **kw)
    xview_train = build_dataset("ntu60-xview", root, "train", processed_dir=tmp_path / "t", **kw)
    assert sorted(xview_val.get(i).frame_dir for i in range(len(xview_val))) == \
        ["S001C001P001R001A011", "S003C001P015R001A034"]
    assert [xview_train.get(0).frame_dir] == ["S001C003P008R002A058"] and len(xview_train) == 1
    reasons = {s["id"]: s["reason"] for s in xview_val.skipped}
    assert "missing-skeleton list" in reasons[missing]
    assert "S001C001P001R002A011.skeleton" in reasons["S001C001P001R002A011"]
    assert "S001C001P001R001A099" not in reasons  # NTU-120 samples are not part of NTU-60 benchmarks
    on_disk = json.loads((tmp_path / "v" / "skipped.json").read_text())
    assert on_disk == xview_val.skipped and "skipped=2" in repr(xview_val)
    ref = read_ntu_skeleton(realdata / "S001C003P008R002A058.skeleton")
    got = xview_train.sample(0)
    np.testing.assert_array_equal(got.keypoint, ref.keypoint)
    assert got.label == 57 and xview_train.layout == "nturgb+d" and xview_train.num_classes == 60
    with pytest.raises(ValueError, match="no usable sample"):
        # all three real files are xsub train
        build_dataset("ntu60-xsub", root, "val", processed_dir=tmp_path / "xs", **kw)


def _kinetics_tree(realdata: Path, root: Path) -> None:
    for split in ("train", "val"):
        folder = root / f"kinetics_{split}"
        folder.mkdir(parents=True)
        labels = {}
        for f in sorted(realdata.glob("__*.json")):
            shutil.copy(f, folder / f.name)
            doc = json.loads(f.read_text())
            labels[f.stem] = {"has_skeleton": True, "label": doc["label"], "label_index": doc["label_index"]}
        labels["no_pose_video"] = {"has_skeleton": False, "label": "abseiling", "label_index": 0}
        labels["gone_video"] = {"has_skeleton": True, "label": "abseiling", "label_index": 0}
        (folder / "__broken.json").write_text('{"data": [{"frame_index": 1, "skeleton": [{"pose": [1, 2], '
                                              '"score": [0.5]}]}], "label_index": 3}')
        labels["__broken"] = {"has_skeleton": True, "label": "x", "label_index": 3}
        (root / f"kinetics_{split}_label.json").write_text(json.dumps(labels, indent=4))


def test_kinetics_json_layout_with_bad_entries(realdata, tmp_path):
    root = tmp_path / "kinetics"
    _kinetics_tree(realdata, root)
    ds = build_dataset("kinetics", root, "val", processed_dir=tmp_path / "p", log=False)
    assert len(ds) == 3 and ds.num_classes == 400 and ds.layout == "openpose"
    assert sorted(ds.labels.tolist()) == [0, 207, 335]
    reasons = {s["id"]: s["reason"] for s in ds.skipped}
    assert reasons["no_pose_video"] == "has_skeleton is false"
    assert "missing" in reasons["gone_video"]
    assert "__broken.json" in reasons["__broken"] and "data[0].skeleton[0].pose" in reasons["__broken"]
    k = [ds.get(i).frame_dir for i in range(3)].index("__vzEs2wzdQ")
    ref = read_kinetics_json(realdata / "__vzEs2wzdQ.json")
    got = ds.sample(k)
    np.testing.assert_array_equal(got.keypoint, ref.keypoint)
    np.testing.assert_array_equal(got.keypoint_score, ref.keypoint_score)
    assert ds.pipeline_kind == "2d-normalized"
    out = build_pipeline(ds.pipeline_kind, "j", 50, layout=ds.layout)(ds[k])
    assert isinstance(out, SkeletonData) and out.x.shape == (2, 50, 18, 3)


def test_kinetics_pyskl_k400_form_with_kpfile(realdata, tmp_path):
    """The real K400 index (sample.pkl) with a kpfile of generated keypoints, one per person box."""
    doc = load_pickle(realdata / "sample.pkl")
    anns = doc["annotations"][:4]
    rng = np.random.default_rng(0)
    kpfile = {}
    for a in anns:
        a["raw_file"] = "kp.pkl"
        kpfile[a["frame_dir"]] = {"keypoint": rng.uniform(0, 300, size=(len(a["frame_inds"]), 17, 3))
                                  .astype(np.float16)}
    kpfile.pop(anns[3]["frame_dir"])  # one annotation whose kpfile entry is missing
    root = tmp_path / "k400"
    root.mkdir()
    (root / "kp.pkl").write_bytes(pickle.dumps(kpfile, protocol=4))
    ids = [a["frame_dir"] for a in anns]
    (root / "k400_hrnet.pkl").write_bytes(pickle.dumps({"split": {"train": ids, "val": []},
                                                         "annotations": anns}, protocol=4))
    ds = build_dataset("kinetics", root, "train", processed_dir=tmp_path / "p", log=False)
    assert len(ds) == 3 and ds.layout == "coco" and ds.pipeline_kind == "2d" and ds.num_classes == 400
    assert ds.skipped[0]["id"] == ids[3] and "no entry" in ds.skipped[0]["reason"]
    for i in range(3):
        got = ds.sample(i)
        a = anns[i]
        assert got.label == a["label"] and got.total_frames == a["total_frames"]
        # the best num_person_out=2 boxes of every frame are placed
        per_frame = np.bincount(a["frame_inds"].astype(np.int64))
        assert int((got.keypoint_score.sum(-1) > 0).sum()) == int(np.minimum(per_frame, 2).sum())
    out = build_pipeline(ds.pipeline_kind, "j", 48, layout=ds.layout)(ds[0])
    assert out.x.shape == (2, 48, 17, 3)


def test_pyskl_pickle_wrapped_real_annotation(realdata, tmp_path):
    ann = load_pickle(realdata / "example_UCF101_skeleton.pkl")
    bad = {"frame_dir": "broken", "label": 1, "total_frames": 3, "keypoint": "not an array"}
    doc = {"split": {"train": [ann["frame_dir"], "broken"], "val": []}, "annotations": [ann, bad]}
    path = tmp_path / "ucf.pkl"
    path.write_bytes(pickle.dumps(doc, protocol=4))
    ds = build_dataset("pyskl", tmp_path, "train", processed_dir=tmp_path / "p", log=False)
    assert len(ds) == 1 and ds.layout == "coco" and ds.pipeline_kind == "2d" and ds.num_classes == 1
    got = ds.sample(0)
    np.testing.assert_array_equal(got.keypoint, ann["keypoint"].astype(np.float32))
    np.testing.assert_array_equal(got.keypoint_score, ann["keypoint_score"].astype(np.float32))
    assert got.img_shape == (256, 340)
    assert ds.skipped[0]["id"] == "broken" and "keypoint" in ds.skipped[0]["reason"]
    with pytest.raises(ValueError, match="unknown split"):
        build_dataset("pyskl", tmp_path, "xsub_val", processed_dir=tmp_path / "q", log=False)


def test_pyskl_index_only_k400_file_is_rejected_with_reasons(realdata, tmp_path):
    shutil.copy(realdata / "sample.pkl", tmp_path / "sample.pkl")
    with pytest.raises(ValueError, match="no usable sample.*index-only"):
        build_dataset("pyskl", tmp_path, "train", processed_dir=tmp_path / "p", log=False)


# --- a dataset with a few bad files loads the rest and lists the bad ones ---------------------------------
def test_bad_files_are_skipped_and_listed(datasets_dir, tmp_path):
    src = sorted((datasets_dir / "nw-ucla" / "all_sqe").glob("a0[12]_s0[12]_*_v01.json"))
    assert len(src) >= 6
    root = tmp_path / "ucla"
    root.mkdir()
    for f in src:
        shutil.copy(f, root / f.name)
    text = src[0].read_text()
    (root / "a03_s05_e00_v01.json").write_text(text[: len(text) // 2])  # truncated
    doc = json.loads(src[1].read_text())
    doc["skeletons"][0] = doc["skeletons"][0][:19]  # wrong joint count
    (root / "a04_s05_e00_v01.json").write_text(json.dumps(doc))
    doc = json.loads(src[1].read_text())
    doc["skeletons"] = {"frames": 3}  # wrong JSON type
    (root / "a05_s05_e00_v01.json").write_text(json.dumps(doc))
    ds = build_dataset("nw-ucla", root, "train", processed_dir=tmp_path / "p", log=False)
    assert len(ds) == len(src) and ds.num_skipped == 3 and "skipped=3" in repr(ds)
    listed = json.loads((tmp_path / "p" / "skipped.json").read_text())
    by_id = {s["id"]: s for s in listed}
    assert set(by_id) == {"a03_s05_e00_v01", "a04_s05_e00_v01", "a05_s05_e00_v01"}
    assert "line" in by_id["a03_s05_e00_v01"]["reason"]
    assert "skeletons[0]" in by_id["a04_s05_e00_v01"]["reason"]
    assert "skeletons" in by_id["a05_s05_e00_v01"]["reason"]
    assert all(s["source"].endswith(".json") and "SkeletonFormatError" in s["reason"] for s in listed)


# --- cache behaviour --------------------------------------------------------------------------------------
def test_cache_written_once_atomically_and_rebuilt_on_change(datasets_dir, tmp_path):
    root = datasets_dir / "utkinect-action3d"
    p = tmp_path / "p"
    ds = build_dataset("utkinect", root, "val", processed_dir=p, log=False)
    files = sorted(x.name for x in p.iterdir())
    assert files == ["index.npz", "keypoint.npy", "meta.json", "skipped.json"]  # no temp files left behind
    stamp = (p / "keypoint.npy").stat().st_mtime_ns
    again = build_dataset("utkinect", root, "val", processed_dir=p, log=False)
    assert (p / "keypoint.npy").stat().st_mtime_ns == stamp and len(again) == len(ds)
    np.testing.assert_array_equal(np.load(p / "keypoint.npy", mmap_mode="r").shape[1:], (20, 3))
    modified = build_dataset("utkinect", root, "val", processed_dir=p, log=False,
                             label_file="actionLabel_modified.txt")
    assert (p / "keypoint.npy").stat().st_mtime_ns != stamp and len(modified) == 99
    build_dataset("utkinect", root, "val", processed_dir=p, log=False, force_reload=True)
    meta = json.loads((p / "meta.json").read_text())
    assert meta["num_samples"] == 99 and meta["config"]["split"] == "val"
    with np.load(p / "index.npz", allow_pickle=False) as z:  # no pickles anywhere in the cache
        assert set(z.files) >= {"offset", "num_person", "num_frames", "label", "frame_dir"}


def _write_pyskl(path: Path, anns: list[dict]) -> None:
    doc = {"split": {"train": [a["frame_dir"] for a in anns]}, "annotations": anns}
    path.write_bytes(pickle.dumps(doc, protocol=4))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_samples_survive_the_cache_unchanged(tmp_path_factory, data):
    tmp = tmp_path_factory.mktemp("prop")
    two_d = data.draw(st.booleans())
    V = 17 if two_d else 25
    n = data.draw(st.integers(1, 5))
    anns = []
    for i in range(n):
        M, T = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 12))
        seed = data.draw(st.integers(0, 2**31 - 1))
        rng = np.random.default_rng(seed)
        dtype = data.draw(st.sampled_from([np.float16, np.float32, np.float64]))
        ann = {"frame_dir": f"s{i}", "label": int(rng.integers(0, 5)), "total_frames": T,
               "keypoint": (rng.normal(size=(M, T, V, 2 if two_d else 3)) * 100).astype(dtype)}
        if two_d:
            ann["keypoint_score"] = rng.uniform(size=(M, T, V)).astype(dtype)
            ann["img_shape"] = (int(rng.integers(100, 1000)), int(rng.integers(100, 1000)))
        anns.append(ann)
    _write_pyskl(tmp / "a.pkl", anns)
    ds = SkeletonDataset(tmp, name="pyskl", split="train", processed_dir=tmp / "p", log=False)
    assert len(ds) == n
    for i, ann in enumerate(anns):
        got = ds.sample(i)
        assert got.frame_dir == ann["frame_dir"] and got.label == ann["label"]
        np.testing.assert_array_equal(got.keypoint, ann["keypoint"].astype(np.float32))
        assert got.keypoint.dtype == np.float32
        if two_d:
            np.testing.assert_array_equal(got.keypoint_score, ann["keypoint_score"].astype(np.float32))
            assert got.img_shape == ann["img_shape"]
        else:
            assert got.keypoint_score is None


# --- registry, missing datasets, bad arguments ------------------------------------------------------------
@pytest.mark.parametrize("name", [n for n in DATASETS if n != "demo"])
def test_missing_dataset_error_lists_expected_files_and_origin(name, tmp_path):
    empty = tmp_path / "nothing"
    empty.mkdir()
    with pytest.raises(DatasetNotFoundError) as err:
        check_dataset(name, empty)
    msg = str(err.value)
    assert isinstance(err.value, ValueError)
    assert str(empty) in msg and "Expected under root" in msg and "Where it comes from" in msg
    assert "http" in msg or "pyg_sparse_stgcn" in msg
    with pytest.raises(DatasetNotFoundError):
        build_dataset(name, empty, "train")  # before any work
    assert not (empty / "processed").exists()


def test_registry_facts_and_bad_arguments(tmp_path):
    info = dataset_info("ntu120-xset")
    assert (info.num_classes, info.layout, info.dims) == (120, "nturgb+d", 3)
    assert info.default_root == "data/ntu120-xset"
    names = ("ntu60-xsub", "kinetics", "finegym", "nw-ucla", "msr-action3d", "utkinect", "demo")
    assert {n: DATASETS[n].num_classes for n in names} == {
        "ntu60-xsub": 60, "kinetics": 400, "finegym": 99, "nw-ucla": 10, "msr-action3d": 20, "utkinect": 10,
        "demo": 8}
    assert json.loads(json.dumps(info.to_dict()))["default_root"] == "data/ntu120-xset"
    with pytest.raises(ValueError, match="unknown dataset 'ntu'.*ntu60-xsub"):
        dataset_info("ntu")
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        build_dataset("demo", tmp_path, "dev")
    with pytest.raises(ValueError, match="unknown option"):
        build_dataset("demo", tmp_path, "train", max_bodies=3)


# --- the one registry and the source classes' facts -------------------------------------------------------
FACTS = {  # name: (num_classes, layout, dims, pipeline_kind, clip_len, num_person), written down from the docs
    "ntu60-xsub": (60, "nturgb+d", 3, "3d", 100, 2), "ntu60-xview": (60, "nturgb+d", 3, "3d", 100, 2),
    "ntu120-xsub": (120, "nturgb+d", 3, "3d", 100, 2), "ntu120-xset": (120, "nturgb+d", 3, "3d", 100, 2),
    "kinetics": (400, "openpose", 2, "2d-normalized", 150, 2), "finegym": (99, "coco", 2, "2d", 100, 1),
    "nw-ucla": (10, "nw-ucla", 3, "3d", 52, 1), "msr-action3d": (20, "nw-ucla", 3, "3d", 52, 1),
    "utkinect": (10, "nw-ucla", 3, "3d", 32, 1), "pyskl": (None, None, 2, "2d", 100, 2),
    "demo": (8, "openpose", 2, "2d-normalized", 32, 2),
}


def test_one_registry_of_source_classes_with_their_facts():
    from pyg_sparse_stgcn.data import available_datasets
    from pyg_sparse_stgcn.data.datasets import SOURCES, DatasetSource, get_source

    assert available_datasets() == list(FACTS) == list(DATASETS) == SOURCES.names()
    for name, facts in FACTS.items():
        cls = get_source(name)
        assert issubclass(cls, DatasetSource) and name in cls.names
        info = cls.facts(name)
        assert info == DATASETS[name] == dataset_info(name)
        assert (info.num_classes, info.layout, info.dims, info.pipeline_kind, info.clip_len,
                info.num_person) == facts
        assert info.splits == ("train", "val") and info.expected and info.origin
    # one class per family: the four NTU benchmarks share theirs
    assert len({get_source(n) for n in FACTS}) == 8
    ntu = get_source("ntu60-xview")
    assert ntu.names == ("ntu60-xsub", "ntu60-xview", "ntu120-xsub", "ntu120-xset")
    assert ntu.benchmarks["ntu120-xset"].pickle == "ntu120_3danno.pkl" and "ntu60_3danno.pkl" in \
        dataset_info("ntu60-xsub").expected
    # behaviour that used to be keyed on names is a property of the class
    assert [n for n in FACTS if get_source(n).synthetic] == ["demo"]
    assert [n for n in FACTS if get_source(n).any_split] == ["pyskl"]
    assert get_source("pyskl").resolve_split("pyskl", "xsub_val") == "xsub_val"
    assert get_source("demo").resolve_split("demo", "test") == "val"


def test_registry_get_of_unknown_name_lists_the_valid_ones():
    from pyg_sparse_stgcn.data.datasets import get_source, register_source

    with pytest.raises(ValueError, match="unknown dataset 'ntu'; valid: ntu60-xsub, ntu60-xview, .*, demo$"):
        get_source("ntu")
    with pytest.raises(KeyError):
        DATASETS["ntu"]
    with pytest.raises(ValueError, match="registered twice"):
        register_source(get_source("nw-ucla"))


def test_ntu_split_rule_is_the_readers_one():
    """The dataset uses readers.ntu_subset; ntu_split is that rule plus the missing-skeleton lists."""
    from pyg_sparse_stgcn.data.readers import NTU_BENCHMARKS, is_missing_skeleton, ntu_split, ntu_subset, parse_ntu_name

    rng = np.random.default_rng(0)
    names = [f"S{s:03d}C{c:03d}P{p:03d}R{r:03d}A{a:03d}" for s, c, p, r, a in
             zip(rng.integers(1, 33, 400), rng.integers(1, 4, 400), rng.integers(1, 107, 400),
                 rng.integers(1, 3, 400), rng.integers(1, 121, 400))] + sorted(NTU60_MISSING_SKELETONS)[:20]
    for bench in NTU_BENCHMARKS:
        release = bench.split("-")[0]
        for n in names:
            sub = ntu_subset(parse_ntu_name(n), bench)
            assert ntu_split(n, bench) == (None if is_missing_skeleton(n, release) else sub)


def test_demo_source_through_the_dataset(tmp_path):
    ds = build_dataset("demo", tmp_path, "val", log=False, num_train=8, num_val=10, num_empty=1)
    assert ds.synthetic and "SYNTHETIC" in repr(ds) and len(ds) == 9 and ds.num_skipped == 1
    meta = json.loads((tmp_path / "processed" / "demo-val" / "meta.json").read_text())
    assert meta["synthetic"] is True and meta["dataset"] == json.loads(json.dumps(dataset_info("demo").to_dict()))
    assert meta["config"] == ds.cache_config() and meta["config"]["options"] == {
        "num_train": 8, "num_val": 10, "num_empty": 1}
    assert sorted(p.name for p in (tmp_path / "processed" / "demo-val").iterdir()) == [
        "index.npz", "keypoint.npy", "keypoint_score.npy", "meta.json", "skipped.json"]
    assert ds.skipped == [{"id": "synthetic_val_00000", "source": str(tmp_path / "kinetics_val" /
                                                                      "synthetic_val_00000.json"),
                           "reason": "has_skeleton is false"}]


def test_pre_filter_pre_transform_and_pickle_free_cache(tmp_path):
    """pre_filter drops and lists samples; pre_transform runs once; PyG writes none of its pickles."""
    from pyg_sparse_stgcn.data import PreNormalize2D

    kw = {"log": False, "num_train": 8, "num_val": 8, "num_empty": 0}
    keep_even = _KeepEven()
    ds = build_dataset("demo", tmp_path, "train", pre_filter=keep_even, pre_transform=PreNormalize2D(),
                       processed_dir=tmp_path / "p", **kw)
    assert len(ds) == 4 and [s["reason"] for s in ds.skipped] == ["rejected by pre_filter"] * 4
    assert not list((tmp_path / "p").glob("*.pt"))
    assert ds[0].x.shape[-1] == 3 and "keypoint_score" not in ds[0]  # PreNormalize2D merged the score
    stamp = (tmp_path / "p" / "meta.json").stat().st_mtime_ns
    again = build_dataset("demo", tmp_path, "train", pre_filter=keep_even, pre_transform=PreNormalize2D(),
                          processed_dir=tmp_path / "p", **kw)
    assert (tmp_path / "p" / "meta.json").stat().st_mtime_ns == stamp and len(again) == 4
    plain = build_dataset("demo", tmp_path, "train", processed_dir=tmp_path / "p", **kw)  # config changed
    assert len(plain) == 8 and (tmp_path / "p" / "meta.json").stat().st_mtime_ns != stamp


class _KeepEven:
    def __call__(self, sample) -> bool:
        return int(sample.frame_dir.rsplit("_", 1)[1]) % 2 == 0

    def __repr__(self) -> str:
        return "KeepEven()"
