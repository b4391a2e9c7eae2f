"""Shipped recipes: every dataset recipe, alone and with each model recipe layered over it, resolves and
validates; each backbone's model recipe carries the paper's settings (reference/method.md §3.4, §4.1, §6) into
the model and the SparseGenerator / MultiSparsityEnsemble it builds; ``ensemble.models`` (mixed ensembles)
from the command line end to end, and its bad values rejected before any work."""
from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from click.testing import CliRunner
from tiny_config import TINY_DEMO

from pyg_sparse_stgcn.cli import main
from pyg_sparse_stgcn.engine.config import (
    ConfigError,
    load_recipe,
    model_recipe_names,
    parse_set,
    recipe_names,
    resolve_config,
)
from pyg_sparse_stgcn.engine.models import MODEL_NAMES, build_ensemble, build_generator
from pyg_sparse_stgcn.nn import AAGCN, CTRGCN, DGSTGCN

PAPER_MODELS = ("aagcn", "ctrgcn", "dgstgcn")
SMALL = ("nw-ucla", "msr-action3d", "utkinect", "demo")


def resolve(data: str, model: str | None = None, *sets: str, mode: str = "generate"):
    options = {"data.name": (data, "--data"), "run.mode": (mode, "--mode")}
    if model is not None:
        options["model.name"] = (model, "--model")
    return resolve_config(options, list(sets))


def bundle(layout: str = "nturgb+d", num_person: int = 2, num_classes: int = 5):
    return SimpleNamespace(layout=layout, in_channels=3, num_person=num_person, num_classes=num_classes)


def test_model_recipes_ship_for_each_paper_backbone_and_stay_out_of_the_dataset_list():
    assert set(model_recipe_names()) == set(PAPER_MODELS) | {"stgcn++"}  # stgcn++: its own graph only
    assert not set(recipe_names()) & set(MODEL_NAMES)
    for m in PAPER_MODELS:
        assert load_recipe(m)["model"]["name"] == m


@pytest.mark.parametrize("data", recipe_names())
def test_every_dataset_recipe_with_every_model_recipe_validates(data):
    base = resolve(data)
    assert base.data.name == data and base.model.name == "stgcn"
    for m in MODEL_NAMES:
        cfg = resolve(data, m)
        assert (cfg.data.name, cfg.model.name) == (data, m)
        # the dataset's data, optimiser and size survive the model recipe
        for key in ("data.clip_len", "data.batch_size", "train.epochs", "train.lr", "model.base_channels",
                    "model.num_stages", "generator.epochs", "generator.clip_len", "ensemble.clip_len"):
            assert cfg.get(key) == base.get(key), (data, m, key)
        for k, v in base.model.backbone.items():  # free table merged, not replaced
            assert cfg.model.backbone[k] == v
        if m in PAPER_MODELS:
            assert cfg.sparsity.scope == "block" and cfg.model.graph_mode == ""


def test_the_paper_settings_of_each_backbone():
    """method.md §3.4 / §6: AAGCN s 0.99 warm-up 0; CTR-GCN s 0.8 warm-up 0; DG-STGCN s 0.34, 60 of 100
    epochs dense, GSGL; all per ST block. The Assemble: 4 DG experts at 0.6/0.8/0.95/0.99, 80 warm-up, GSGL,
    clip 45, gcn_ratio 0.125, ctr/ada on, the paper's ms_cfg."""
    expect = {"aagcn": (0.99, 0.0, "", "random"), "ctrgcn": (0.8, 0.0, "", "spatial"),
              "dgstgcn": (0.34, 0.6, "gsgl", "random")}
    for m, (s, warm, penalty, graph) in expect.items():
        g = resolve("ntu60-xsub", m)
        assert (g.sparsity.sparsity, g.generator.warm_up, g.generator.penalty, g.generator.graph_mode,
                g.sparsity.scope, g.generator.epochs) == (s, warm, penalty, graph, "block", 100), m
    e = resolve("ntu60-xsub", "dgstgcn", mode="ensemble").ensemble
    assert (e.sparsities, e.warm_up, e.penalty, e.grad_clip, e.lr_schedule, e.epochs, e.models) == (
        [0.6, 0.8, 0.95, 0.99], 0.8, "gsgl", 45.0, "cosine_epoch", 100, [])
    bb = resolve("ntu60-xsub", "dgstgcn").model.backbone
    assert (bb["gcn_ratio"], bb["gcn_ctr"], bb["gcn_ada"]) == (0.125, "T", "T")
    assert bb["tcn_ms_cfg"] == [[3, 1], [3, 2], [3, 3], [3, 4], ["max", 3], "1x1"]


TINY_SETS = ("model.base_channels=8", "model.num_stages=2", "model.backend=dense")


@pytest.mark.parametrize("model,cls", [("aagcn", AAGCN), ("ctrgcn", CTRGCN), ("dgstgcn", DGSTGCN)])
def test_paper_recipe_builds_the_model_and_its_generator(model, cls):
    cfg = resolve("ntu60-xsub", model, *TINY_SETS)
    torch.manual_seed(0)
    gen = build_generator(cfg, bundle())
    assert isinstance(gen.model.backbone, cls)
    assert gen.sparsity["weight"] == cfg.sparsity.sparsity and gen.scope == "block"
    assert gen.warm_up == round(cfg.generator.warm_up * 100)  # generator.epochs = 100: 0 / 0 / 60
    assert gen.penalty == ("GSGL" if model == "dgstgcn" else None)
    unit = gen.model.backbone.blocks[0]
    unit = getattr(unit, "gcn1", None) or unit.gcn
    k = unit.A.shape[0]
    assert k == {"aagcn": 3, "ctrgcn": 3, "dgstgcn": 8}[model]  # random K = 3 / spatial / random K = 8
    if model == "dgstgcn":
        assert unit.ratio == 0.125 and gen.model.backbone.blocks[0].tcn.ms_cfg[4] == ("max", 3)
    gen.set_epoch(99, 100)  # past every warm-up: the target sparsity
    gen.train()
    out = gen(torch.randn(2, 2, 8, 25, 3))
    assert out.shape == (2, 5)
    assert gen.current_sparsity("weight") == pytest.approx(cfg.sparsity.sparsity, abs=0.02)


def test_assemble_recipe_builds_four_dg_experts():
    cfg = resolve("ntu60-xsub", "dgstgcn", *TINY_SETS, mode="ensemble")
    torch.manual_seed(0)
    ens = build_ensemble(cfg, bundle())
    assert [type(e.model).__name__ for e in ens.experts] == ["DGSTGCN"] * 4
    assert [e.sparsity["weight"] for e in ens.experts] == [0.6, 0.8, 0.95, 0.99]
    assert {(e.warm_up, e.penalty, e.scope) for e in ens.experts} == {(80, "GSGL", "block")}
    assert ens.sparsity_report().extra["paper_kept_fraction"] == pytest.approx(0.66)


@pytest.mark.parametrize("data", [d for d in SMALL if d != "msr-action3d"])  # msr shares nw-ucla's layout and size
def test_cpu_sized_variants_build_and_run(data):
    """The small datasets' CPU-sized recipes with each model recipe: the recipe's own size, its layout."""
    layout = {"nw-ucla": "nw-ucla", "utkinect": "nw-ucla", "demo": "openpose"}[data]
    for m in PAPER_MODELS:
        cfg = resolve(data, m)
        assert cfg.model.base_channels <= 32 and cfg.model.num_stages <= 6 and cfg.sparsity.scope == "block"
        torch.manual_seed(0)
        gen = build_generator(cfg, bundle(layout, num_person=cfg.data.num_person))
        gen.set_epoch(cfg.train.epochs - 1, cfg.train.epochs)
        gen.eval()
        with torch.no_grad():
            out = gen(torch.randn(1, cfg.data.num_person, 8, 20 if layout == "nw-ucla" else 18, 3))
        assert out.shape == (1, 5) and torch.isfinite(out).all(), (data, m)


def test_model_recipe_follows_set_model_name_and_not_a_config_file(tmp_path):
    assert resolve("demo", None, "model.name=ctrgcn").sparsity.sparsity == 0.8
    f = tmp_path / "own.toml"
    f.write_text('[data]\nname = "demo"\n')
    cfg = resolve_config({"model.name": ("aagcn", "--model")}, [], str(f))
    assert cfg.sparsity.sparsity == 0.95 and cfg.sparsity.scope == "global"  # the defaults: no recipe at all


def test_mixed_ensemble_dg_expert_is_the_papers_sparse_variant():
    """A DG-STGCN expert under another --model gets the paper's plain mstcn (as the Assemble's experts),
    the main backbone keeps its own settings."""
    cfg = resolve("ntu60-xsub", "stgcn", *TINY_SETS, "ensemble.models=[stgcn, dgstgcn]",
                  "ensemble.sparsities=[0.8, 0.95]", mode="ensemble")
    ens = build_ensemble(cfg, bundle())
    st, dg = (e.model for e in ens.experts)
    assert type(st).__name__ == "STGCN" and type(dg).__name__ == "DGSTGCN"
    assert {b.tcn_type for b in dg.gcn} == {"mstcn"} and not any("add_coeff" in k for k in dg.state_dict())


def test_ensemble_models_is_typed_and_checked():
    assert parse_set("ensemble.models=[dgstgcn, aagcn]") == ("ensemble.models", ["dgstgcn", "aagcn"])
    assert parse_set("ensemble.models=[stgcn++]")[1] == ["stgcn++"]
    cfg = resolve("demo", "dgstgcn", "ensemble.models=[stgcn, aagcn, ctrgcn, dgstgcn]", mode="ensemble")
    assert cfg.ensemble.models == ["stgcn", "aagcn", "ctrgcn", "dgstgcn"]
    with pytest.raises(ConfigError, match=r"--set ensemble.models: unknown backbone 'agcn' \(item 2\); valid "
                                          r"choices: stgcn, stgcn\+\+, aagcn, ctrgcn, dgstgcn"):
        resolve("demo", None, "ensemble.models=[stgcn, agcn]", mode="ensemble")
    with pytest.raises(ConfigError, match=r"--set ensemble.models: names 2 backbone\(s\) but "
                                          r"ensemble.sparsities has 4 level\(s\)"):
        resolve("demo", "dgstgcn", "ensemble.models=[stgcn, aagcn]", mode="ensemble")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    d = tmp_path_factory.mktemp("recipes-cli")
    (d / "tiny.toml").write_text(TINY_DEMO)
    return d


def _cli(env: Path, out: Path, *args: str):
    return CliRunner().invoke(main, ["--config", str(env / "tiny.toml"), "--data", "demo", "--root",
                                     str(env / "demo"), "--out", str(out), "--mode", "ensemble", *args])


def test_mixed_ensemble_from_the_command_line_end_to_end(env):
    res = _cli(env, env / "runs", "--set", "ensemble.models=[dgstgcn, aagcn]", "--set", "dense.baseline=false",
               "--set", "train.epochs=1")
    assert res.exit_code == 0, res.output
    d = Path([ln for ln in res.output.splitlines() if ln.startswith("run directory: ")][-1].split(": ", 1)[1])
    s = json.loads((d / "summary.json").read_text())
    assert s["ensemble"]["experts"] == ["DGSTGCN", "AAGCN"]
    assert s["ensemble"]["sparsities"] == [0.5, 0.9]
    assert 'models = ["dgstgcn", "aagcn"]' in (d / "config.toml").read_text()  # --resume rebuilds the same


@pytest.mark.parametrize("value,match", [
    ("[dgstgcn, agcn]", r"ensemble.models: unknown backbone 'agcn' \(item 2\); valid choices: stgcn, stgcn\+\+, "
                        r"aagcn, ctrgcn, dgstgcn"),
    ("[dgstgcn, aagcn, ctrgcn]", r"names 3 backbone\(s\) but ensemble.sparsities has 2 level\(s\)"),
])
def test_bad_ensemble_models_fail_before_any_work(env, tmp_path, value, match):
    res = _cli(env, tmp_path / "runs", "--set", f"ensemble.models={value}")
    assert res.exit_code == 2, res.output
    assert re.search(match, res.output), res.output
    assert not (tmp_path / "runs").exists()


def test_mixed_ensemble_experts_share_the_sizing_of_model_backbone():
    from pyg_sparse_stgcn.engine.bundle import DataBundle
    from pyg_sparse_stgcn.engine.config import resolve_config
    from pyg_sparse_stgcn.engine.models import build_ensemble

    sets = ("model.base_channels=8", "model.num_stages=3", "model.backbone.inflate_stages=[2]",
            "model.backbone.down_stages=[2]", "ensemble.models=[stgcn, aagcn]", "ensemble.sparsities=[0.5, 0.9]")
    cfg = resolve_config({"data.name": ("demo", "--data"), "run.mode": ("ensemble", "--mode")}, sets, None, None)
    data = DataBundle.facts("demo", 4, "openpose", 3, 2)
    ens = build_ensemble(cfg, data)
    widths = {int(e.model.out_channels) for e in ens.experts}
    assert widths == {16}


def test_stgcnpp_on_an_ntu_recipe_gets_its_own_spatial_graph():
    from pyg_sparse_stgcn.engine.config import resolve_config

    cfg = resolve_config({"data.name": ("ntu60-xsub", "--data"), "model.name": ("stgcn++", "--model")}, (), None,
                         None)
    assert cfg.model.graph_mode == ""  # "" = the model's default graph, 'spatial'
    plain = resolve_config({"data.name": ("ntu60-xsub", "--data")}, (), None, None)
    assert plain.model.graph_mode == "stgcn_spatial"


def test_assemble_recipe_builds_random_graphs_with_three_filters():
    from pyg_sparse_stgcn.engine.bundle import DataBundle
    from pyg_sparse_stgcn.engine.config import resolve_config
    from pyg_sparse_stgcn.engine.models import build_backbone, build_ensemble
    from pyg_sparse_stgcn.nn.conv.skeleton_mp import SkeletonMessagePassing

    opts = {"data.name": ("demo", "--data"), "model.name": ("dgstgcn", "--model"), "run.mode": ("ensemble", "--mode")}
    cfg = resolve_config(opts, ("model.base_channels=8", "model.num_stages=2"), None, None)
    data = DataBundle.facts("demo", 4, "openpose", 3, 2)
    ens = build_ensemble(cfg, data)
    ks = {m.num_subsets for m in ens.modules() if isinstance(m, SkeletonMessagePassing)}
    assert ks == {3}  # AssemSTGCN_sparse.py's K = 3
    single = build_backbone(cfg, data, "random")
    assert {m.num_subsets for m in single.modules() if isinstance(m, SkeletonMessagePassing)} == {8}
