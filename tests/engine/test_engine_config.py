"""Config: TOML writer round trip, --set parsing, validation messages, run-dir atomic writes."""
from __future__ import annotations

import copy
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyg_sparse_stgcn.engine.config import (
    DEFAULTS,
    ConfigError,
    apply_sets,
    merge,
    parse_set,
    to_toml,
    tomllib,
    validate_config,
)
from pyg_sparse_stgcn.engine.rundir import RunDir, atomic_write_text

scalars = st.one_of(st.booleans(), st.integers(-2**40, 2**40), st.text(max_size=12),
                    st.floats(allow_nan=False, allow_infinity=True, width=64))
keys = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=0x2FF), min_size=1, max_size=8)
values = st.one_of(scalars, st.lists(st.integers(-5, 5), max_size=4),
                   st.lists(st.text(max_size=4), max_size=3))


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(keys, st.one_of(values, st.dictionaries(keys, st.one_of(
    values, st.dictionaries(keys, values, max_size=3)), max_size=4)), max_size=5))
def test_toml_writer_roundtrip(d):
    assert tomllib.loads(to_toml(d)) == d


def test_defaults_roundtrip_and_validate():
    cfg = validate_config(copy.deepcopy(DEFAULTS))
    assert tomllib.loads(to_toml(cfg, header="resolved\nconfig")) == cfg


def test_parse_set_types():
    assert parse_set("train.lr=0.05") == ("train.lr", 0.05)
    assert parse_set("train.epochs=3") == ("train.epochs", 3)
    assert parse_set("train.amp=false") == ("train.amp", False)
    assert parse_set("data.name=ntu60-xsub") == ("data.name", "ntu60-xsub")
    assert parse_set("ensemble.sparsities=[0.5, 0.9]") == ("ensemble.sparsities", [0.5, 0.9])
    assert parse_set('model.backbone={gcn_adaptive = "init"}') == ("model.backbone", {"gcn_adaptive": "init"})
    with pytest.raises(ConfigError, match="key=value"):
        parse_set("train.lr")


def test_unknown_keys_name_the_valid_ones():
    cfg = copy.deepcopy(DEFAULTS)
    with pytest.raises(ConfigError, match=r"unknown key 'train.lrr'.*lr_schedule"):
        apply_sets(cfg, ["train.lrr=1"])
    with pytest.raises(ConfigError, match=r"unknown key 'trian'"):
        merge(DEFAULTS, {"trian": {"lr": 1}}, "--config x.toml")
    apply_sets(cfg, ["model.backbone.gcn_adaptive=init", "train.epochs=2"])  # free table accepts any key
    assert cfg["model"]["backbone"] == {"gcn_adaptive": "init"} and cfg["train"]["epochs"] == 2


@pytest.mark.parametrize("key,value,match", [
    ("sparsity.sparsity", 1.5, r"--sparsity: 1.5 is not a fraction in \[0, 1\)"),
    ("model.name", "resnet", "valid choices: stgcn, stgcn\\+\\+"),
    ("data.feats", "x", "valid choices: j, b, jm, bm"),
    ("train.epochs", 0, "must be >= 1"),
    ("train.lr", "fast", "expected float"),
    ("run.device", "tpu", "valid: auto, cpu, cuda or cuda:N"),
    ("ensemble.sparsities", [0.5, 1.0], "ensemble.sparsities"),
])
def test_validation_messages(key, value, match):
    cfg = copy.deepcopy(DEFAULTS)
    sec, k = key.split(".")
    cfg[sec][k] = value
    with pytest.raises(ConfigError, match=match):
        validate_config(cfg, {"sparsity.sparsity": "--sparsity"})


def test_int_for_float_is_coerced():
    cfg = copy.deepcopy(DEFAULTS)
    cfg["train"]["lr"] = 1
    assert validate_config(cfg)["train"]["lr"] == 1.0 and isinstance(cfg["train"]["lr"], float)


def test_rundir_layout_and_atomic_writes(tmp_path):
    run = RunDir.create(tmp_path, "demo", "train", now=0)
    run2 = RunDir.create(tmp_path, "demo", "train", now=0)
    assert run.path.name.startswith("demo-train-") and run2.path.name == run.path.name + "-2"
    assert all((run.path / d).is_dir() for d in ("checkpoints", "masks", "scores"))
    run.log_metrics({"epoch": 1, "x": float("nan")})
    run.log_metrics({"epoch": 2})
    assert run.read_metrics() == [{"epoch": 1, "x": None}, {"epoch": 2}]
    run.truncate_metrics(lambda r: r["epoch"] < 2)
    assert run.read_metrics() == [{"epoch": 1, "x": None}]
    atomic_write_text(run.path / "a.txt", "hello")
    assert (run.path / "a.txt").read_text() == "hello"
    assert not [f for f in os.listdir(run.path) if f.endswith(".tmp")]
    with pytest.raises(ValueError, match="not a run directory"):
        RunDir.open(tmp_path)


def test_every_shipped_config_validates():
    from pyg_sparse_stgcn.engine.config import recipe_names, recipe_text

    names = set(recipe_names())  # package data (importlib.resources), not a directory beside the package
    assert {"demo", "ntu60-xsub", "ntu60-xview", "ntu120-xsub", "ntu120-xset", "kinetics", "finegym",
            "nw-ucla", "msr-action3d", "utkinect"} <= names
    from pyg_sparse_stgcn.data import available_datasets

    for name in names:
        cfg = validate_config(merge(DEFAULTS, tomllib.loads(recipe_text(name)), name))
        assert cfg["data"]["name"] == name and cfg["data"]["name"] in available_datasets()
    ntu = validate_config(merge(DEFAULTS, tomllib.loads(recipe_text("ntu60-xsub"))))
    # PYSKL recipe and the paper's sparse settings (reference/method.md §6)
    t, d = ntu["train"], ntu["data"]
    assert (t["lr"], t["epochs"], d["batch_size"], ntu["eval"]["num_clips"]) == (0.1, 80, 128, 10)
    assert (ntu["generator"]["warm_up"], ntu["generator"]["clip_len"], ntu["ensemble"]["warm_up"],
            ntu["ensemble"]["grad_clip"]) == (0.6, 60, 0.8, 45.0)
