"""Class names carried by the dataset sources (``class_names``) and shown by ``predict``."""
import json

import pytest
import torch

from pyg_sparse_stgcn.data.datasets import get_source
from pyg_sparse_stgcn.data.readers import read_ntu_skeleton
from pyg_sparse_stgcn.deploy import PipelineSpec, Predictor
from pyg_sparse_stgcn.deploy.predict import label_names
from pyg_sparse_stgcn.nn import STGCN, GCNHead, SkeletonClassifier


@pytest.mark.parametrize("name,count", [("ntu60-xsub", 60), ("ntu60-xview", 60), ("ntu120-xsub", 120),
                                        ("ntu120-xset", 120), ("kinetics", 400), ("nw-ucla", 10),
                                        ("msr-action3d", 20), ("utkinect", 10)])
def test_sources_carry_their_class_names(name, count):
    names = label_names(name, count)
    assert names is not None and len(names) == count == len(set(names))
    assert all(isinstance(n, str) and n for n in names)
    assert label_names(name, count + 1) is None  # a checkpoint with another class count gets indices


def test_ntu_names_at_known_indices():
    names = label_names("ntu120-xsub", 120)
    assert names is not None
    # the dataset's own numbering: A<k> at index k - 1
    assert names[0] == "drink water" and names[10] == "reading" and names[33] == "rub two hands together"
    assert names[57] == "handshaking" and names[58] == "walking towards each other"
    assert names[59] == "walking apart from each other" and names[60] == "put on headphone"
    assert names[119] == "finger-guessing game (playing rock-paper-scissors)"
    assert label_names("ntu60-xsub", 60) == names[:60]
    assert label_names("finegym", 99) is None  # no verified list: indices


def test_kinetics_names_are_the_alphabetical_label_order():
    names = label_names("kinetics", 400)
    assert names is not None and list(names) == sorted(names)
    assert (names[0], names[166], names[207], names[335], names[399]) == (
        "abseiling", "javelin throw", "parkour", "strumming guitar", "zumba")
    assert get_source("kinetics").class_names is names or get_source("kinetics").class_names == names


def test_kinetics_names_match_the_release_files(realdata):
    files = sorted(realdata.glob("*.json"))
    found = 0
    for f in files:
        d = json.loads(f.read_text())
        if isinstance(d, dict) and "label_index" in d:
            assert label_names("kinetics", 400)[d["label_index"]] == d["label"]
            found += 1
    assert found >= 3


def test_predict_shows_ntu_names(realdata):
    spec = PipelineSpec.from_config({"data": {"name": "ntu60-xsub", "clip_len": 16}})
    assert spec.labels is not None and spec.labels[58] == "walking towards each other"
    torch.manual_seed(0)
    bb = STGCN({"layout": "nturgb+d", "mode": "spatial"}, base_channels=8, num_stages=2, backend="dense")
    model = SkeletonClassifier(bb, GCNHead(60, bb.out_channels)).eval()
    pred = Predictor(model, spec).predict(read_ntu_skeleton(realdata / "S001C003P008R002A058.skeleton"))
    assert all(t["label"] == spec.labels[t["index"]] for t in pred.top)
    assert all(isinstance(t["label"], str) for t in pred.top)
