"""The typed configuration: one definition per choice list, help per field, TOML round trip, dotted keys with
suggestions, every SparseGenerator option settable, and the checks a mode makes before any work."""
from __future__ import annotations

import dataclasses
import inspect
import typing

import pytest
import torch
from click.testing import CliRunner
from tiny_config import TINY_DEMO, TINY_MODEL

from pyg_sparse_stgcn.cli import main
from pyg_sparse_stgcn.engine.bundle import DataBundle
from pyg_sparse_stgcn.engine.config import (
    RANK_CLI,
    RANK_FILE,
    SECTIONS,
    Config,
    ConfigError,
    resolve_config,
    tomllib,
)
from pyg_sparse_stgcn.engine.models import (
    build_ensemble,
    build_generator,
    generator_arg_keys,
    generator_kwargs,
    paper_code_kwargs,
)
from pyg_sparse_stgcn.engine.modes import Invocation, get_mode, mode_names

TOML_FLAGS = TINY_MODEL + """
[train]
epochs = 10

[sparsity]
sparsity = 0.7
scope = "layer"

[generator]
warm_up = 0.2
ramp = 0.3
two_phase = 0.9
penalty = "gsgl"
penalty_lambda = 0.5
penalty_has_grad = false
abs_scores = true
threshold_rule = "paper"
eval_sparsity = "current"
residual_zero_threshold = true
paper_ramp = true
score_init = "magnitude"
reinit_weights = true
include_head = true
"""

BUNDLE = DataBundle(name="demo", train=None, val=None, test=None, num_classes=3, layout="openpose",
                    in_channels=3, num_person=1)


def _cfg(text: str, *sets: str) -> Config:
    return Config().update(tomllib.loads(text), "test.toml", RANK_FILE).apply_sets(list(sets)).validate()


# ---- one definition of each choice list ----------------------------------------------------------------
def _choices(section: str, name: str) -> tuple:
    return typing.get_args(typing.get_type_hints(SECTIONS[section])[name])


def test_choice_lists_come_from_the_modules_that_define_them():
    from pyg_sparse_stgcn.engine.metrics import AVERAGE_CLIPS
    from pyg_sparse_stgcn.engine.models import MODEL_NAMES
    from pyg_sparse_stgcn.engine.trainer import LR_SCHEDULES
    from pyg_sparse_stgcn.graph import GRAPH_MODES
    from pyg_sparse_stgcn.nn.conv.stgcn_conv import BACKENDS
    from pyg_sparse_stgcn.sparsity.generator import SCOPES
    from pyg_sparse_stgcn.sparsity.magnitude import PRUNE_SCOPES

    assert _choices("model", "backend") == tuple(BACKENDS)
    assert _choices("model", "name") == MODEL_NAMES
    assert _choices("train", "lr_schedule") == tuple(LR_SCHEDULES)
    assert _choices("generator", "lr_schedule") == tuple(LR_SCHEDULES)
    assert _choices("eval", "average_clips") == tuple(AVERAGE_CLIPS)
    assert set(_choices("model", "graph_mode")) == {"", *GRAPH_MODES}
    assert set(_choices("sparsity", "scope")) == set(SCOPES) | set(PRUNE_SCOPES)
    assert get_mode("generate").scopes == SCOPES and get_mode("ensemble").scopes == SCOPES
    assert get_mode("prune").scopes == PRUNE_SCOPES and get_mode("lottery").scopes == PRUNE_SCOPES


def test_feature_streams_are_the_transforms_own():
    from pyg_sparse_stgcn.data.transforms import FEATS

    assert _cfg("[data]\nfeats = \"j+b\"").data.feats == "j+b"  # the transforms support it; the config did not
    for f in FEATS:
        _cfg(f"[data]\nfeats = \"{f}\"")
    with pytest.raises(ConfigError, match=r"data.feats: invalid value 'j\+j'; valid choices: j, b, jm, bm"):
        _cfg("[data]\nfeats = \"j+j\"")


def test_every_field_has_help_and_a_valid_default():
    for name, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            assert len(f.metadata.get("help", "")) > 10, f"{name}.{f.name} has no help string"
    Config().validate()
    assert Config.keys() == [f"{s}.{f.name}" for s, c in SECTIONS.items() for f in dataclasses.fields(c)]


def test_config_toml_round_trip_with_help_comments():
    cfg = _cfg(TOML_FLAGS, "model.backbone.gcn_adaptive=init", "data.kwargs={num_train = 8}")
    text = cfg.to_toml(header="a\nheader")
    assert "# Peak learning rate." in text
    back = Config().update(tomllib.loads(text), "config.toml").validate()
    assert back == cfg and back.to_dict() == cfg.to_dict()
    assert back.generator.threshold_rule == "paper" and back.model.backbone["gcn_adaptive"] == "init"
    # unset options (the component's default) are comments, not values: TOML has no null
    assert Config().generator.threshold_rule is None
    assert "# threshold_rule = (unset" in Config().to_toml()


# ---- unknown keys ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("key,near", [
    ("train.lrr", "train.lr"), ("lotery.levels", "lottery.levels"), ("generator.warmup", "generator.warm_up"),
    ("trian.epochs", "train.epochs"), ("sparsity.edge_sparse", "sparsity.edge_sparsity"),
])
def test_unknown_key_names_the_nearest_valid_keys(key, near):
    with pytest.raises(ConfigError, match=rf"unknown key {key!r}.*did you mean .*{near}"):
        Config().apply_sets([f"{key}=1"])


def test_unknown_set_key_via_cli_suggests_and_writes_nothing(tmp_path):
    res = CliRunner().invoke(main, ["--data", "demo", "--set", "generator.thresold_rule=paper", "--out",
                                    str(tmp_path / "runs")])
    assert res.exit_code == 2
    assert "unknown key 'generator.thresold_rule'" in res.output and "generator.threshold_rule" in res.output
    assert not (tmp_path / "runs").exists()


def test_old_key_names_are_read_as_their_new_names():
    cfg = _cfg("[generator]\nuse_abs = true\nresidual_tau_zero = true")
    assert cfg.generator.abs_scores is True and cfg.generator.residual_zero_threshold is True


# ---- every SparseGenerator option has a setting and reaches the instance ---------------------------------
def test_every_sparse_generator_option_has_a_setting():
    from pyg_sparse_stgcn.sparsity.generator import SparseGenerator

    params = [n for n, p in inspect.signature(SparseGenerator.__init__).parameters.items()
              if n not in ("self", "model") and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    keys = generator_arg_keys()
    missing = [p for p in params if p not in keys]
    assert not missing, f"SparseGenerator options without a configuration field: {missing}"
    for p in params:
        Config.field_of(keys[p])  # a real field


def test_generator_flags_from_toml_reach_the_generator():
    gen = build_generator(_cfg(TOML_FLAGS), BUNDLE)
    assert gen.sparsity["weight"] == 0.7 and gen.scope == "layer"
    assert (gen.warm_up, gen.ramp_epochs, gen.scores_only_after) == (2, 3, 9)
    assert gen.penalty == "GSGL" and gen.penalty_lambda == 0.5 and gen.penalty_has_grad is False
    assert gen.threshold_rule == "paper" and gen.eval_sparsity == "current"
    assert gen.residual_zero_threshold is True and gen.paper_ramp is True
    assert all(m.abs_scores for m in gen._masks)
    assert any(t.name.startswith("head") for t in gen._targets)  # include_head


def test_score_init_and_reinit_weights_reach_the_generator():
    base = TOML_FLAGS.split("[generator]")[0]
    gen = build_generator(_cfg(base + "[generator]\nscore_init = \"magnitude\"\n"), BUNDLE)
    t, m = next((t, m) for t, m in zip(gen._targets, gen._masks) if t.kind == "weight")
    mag = t.original().detach().abs()
    torch.testing.assert_close(m.score, mag, atol=2e-3 * float(mag.mean()), rtol=0)  # |W| (+ a tie-breaking jitter)
    weights = []
    for reinit in ("false", "true"):
        torch.manual_seed(0)
        gen = build_generator(_cfg(base + f"[generator]\nscore_init = \"magnitude\"\nreinit_weights = {reinit}\n"),
                              BUNDLE)
        weights.append(next(t for t in gen._targets if t.kind == "weight").original().detach().clone())
    assert not torch.equal(weights[0], weights[1])


def test_unset_generator_options_keep_the_generators_defaults():
    from pyg_sparse_stgcn.sparsity.generator import SparseGenerator

    kw = generator_kwargs(Config())
    defaults = {n: p.default for n, p in inspect.signature(SparseGenerator.__init__).parameters.items()}
    assert "threshold_rule" not in kw and "penalty_has_grad" not in kw and "score_init" not in kw
    gen = build_generator(_cfg(TOML_FLAGS.split("[generator]")[0]), BUNDLE)
    assert gen.threshold_rule == defaults["threshold_rule"] and gen.penalty_has_grad == defaults["penalty_has_grad"]


def test_paper_preset_builds_from_paper_code_and_explicit_settings_win():
    base = TOML_FLAGS.split("[generator]")[0]
    preset = paper_code_kwargs()
    assert preset.get("threshold_rule") == "paper"
    gen = build_generator(_cfg(base + "[generator]\npaper = true\n"), BUNDLE)
    for k, v in preset.items():
        if hasattr(gen, k):
            assert getattr(gen, k) == v, k
    gen = build_generator(_cfg(base + "[generator]\npaper = true\nthreshold_rule = \"exact\"\n"), BUNDLE)
    assert gen.threshold_rule == "exact" and gen.residual_zero_threshold == preset["residual_zero_threshold"]


def test_ensemble_experts_take_the_generator_options():
    cfg = _cfg(TOML_FLAGS.replace("include_head = true\n", ""), "ensemble.sparsities=[0.5, 0.9]",
               "ensemble.warm_up=0.4", "ensemble.penalty=gl")
    ens = build_ensemble(cfg, BUNDLE)
    for e, s in zip(ens.experts, (0.5, 0.9)):
        assert e.sparsity["weight"] == s and e.threshold_rule == "paper" and e.eval_sparsity == "current"
        assert e.warm_up == 4 and e.penalty == "GL" and e.penalty_has_grad is False


# ---- checks before any work --------------------------------------------------------------------------------
def _check(mode: str, *sets: str, options: dict | None = None, text: str = TINY_DEMO) -> Config:
    cfg = Config().update(tomllib.loads(text), "--config tiny.toml", RANK_FILE)
    for k, v in (options or {}).items():
        cfg.set(k, v[0], v[1], RANK_CLI)
    cfg.set("run.mode", mode, "--mode", RANK_CLI)
    cfg.apply_sets(list(sets)).validate()
    get_mode(mode).check(cfg, Invocation())
    return cfg


def test_invalid_generator_option_fails_before_work_naming_the_key():
    with pytest.raises(ConfigError,
                       match=r"--set generator.threshold_rule: invalid value .nope.; valid choices: exact, paper"):
        _check("generate", "generator.threshold_rule=nope")
    with pytest.raises(ConfigError, match=r"--set generator.eval_sparsity"):
        _check("ensemble", "generator.eval_sparsity=sometimes")


@pytest.mark.parametrize("mode", ["prune", "lottery", "generate", "ensemble"])
def test_every_scope_is_honoured_or_rejected_with_the_valid_choices(mode):
    from pyg_sparse_stgcn.engine.config import ALL_SCOPES

    for scope in ALL_SCOPES:
        if scope in get_mode(mode).scopes:
            assert _check(mode, f"sparsity.scope={scope}").sparsity.scope == scope
        else:
            with pytest.raises(ConfigError, match=rf"does not support scope '{scope}'; valid choices: "):
                _check(mode, f"sparsity.scope={scope}")
    with pytest.raises(ConfigError, match="valid choices: "):
        _check(mode, "sparsity.scope=everywhere")


@pytest.mark.parametrize("mode,args,match", [
    ("train", ["generator.warm_up=0.5"], r"--set generator.warm_up applies to --mode generate, not train"),
    ("ensemble", ["generator.warm_up=0.5"], r"--set generator.warm_up applies to --mode generate, not ensemble"),
    ("generate", ["lottery.levels=2"], r"--set lottery.levels applies to --mode lottery, not generate"),
    ("lottery", ["dense.baseline=false"], r"--set dense.baseline applies to --mode generate \| ensemble"),
    ("evaluate", ["train.epochs=3"], r"--set train.epochs applies to --mode train \| prune"),
])
def test_a_setting_the_mode_does_not_read_is_an_error(mode, args, match):
    with pytest.raises(ConfigError, match=match):
        _check(mode, *args)


def test_edge_sparsity_with_lottery_points_to_edge_fraction():
    with pytest.raises(ConfigError, match=r"--edge-sparsity applies to .*not lottery: .*lottery.edge_fraction"):
        _check("lottery", options={"sparsity.edge_sparsity": (0.5, "--edge-sparsity")})


def test_lottery_levels_and_sparsity_precedence():
    # --sparsity on the command line over the file's lottery.levels: the levels are derived from it
    cfg = _check("lottery", options={"sparsity.sparsity": (0.3, "--sparsity")})
    assert cfg.lottery.levels == 0 and cfg.sparsity.sparsity == 0.3
    # both on the command line and consistent (0.3 at 0.2 per level takes 2 levels)
    cfg = _check("lottery", "lottery.levels=2", options={"sparsity.sparsity": (0.3, "--sparsity")})
    assert cfg.lottery.levels == 0
    # both on the command line and inconsistent: an error naming both
    with pytest.raises(ConfigError, match=r"--sparsity 0.9 conflicts with --set lottery.levels=3: .* takes 11 levels"):
        _check("lottery", "lottery.levels=3", options={"sparsity.sparsity": (0.9, "--sparsity")})
    # both in the same --config file and inconsistent
    with pytest.raises(ConfigError, match=r"sparsity.sparsity = 0.9 \(--config tiny.toml\) conflicts with "
                                          r"lottery.levels = 1 \(--config tiny.toml\)"):
        _check("lottery", text=TINY_DEMO + "\n[sparsity]\nsparsity = 0.9\n")
    # the library's defaults / recipes: the levels stand (the recipe's sparsity is the generator's)
    cfg = _check("lottery")
    assert cfg.lottery.levels == 1


def test_resolve_config_layers_and_resume_rules(tmp_path):
    (tmp_path / "c.toml").write_text(TINY_DEMO)
    cfg = resolve_config({"train.lr": (0.3, "--lr")}, ["train.epochs=5"], str(tmp_path / "c.toml"))
    assert (cfg.train.lr, cfg.train.epochs, cfg.model.base_channels) == (0.3, 5, 8)
    assert cfg.name("train.lr") == "--lr" and cfg.rank("model.base_channels") == RANK_FILE
    demo = resolve_config({"data.name": ("demo", "--data")})  # the shipped recipe
    assert demo.model.base_channels == 16 and demo.rank("model.base_channels") == 0


def test_show_config_prints_the_resolved_settings(tmp_path):
    res = CliRunner().invoke(main, ["--data", "demo", "--mode", "generate", "--set", "generator.paper=true",
                                    "--show-config", "--out", str(tmp_path / "runs")])
    assert res.exit_code == 0, res.output
    cfg = tomllib.loads(res.output)
    assert cfg["generator"]["paper"] is True and cfg["model"]["base_channels"] == 16
    assert not (tmp_path / "runs").exists()


def test_modes_come_from_the_registry():
    from pyg_sparse_stgcn.engine.modes import MODES, Mode

    assert mode_names() == tuple(MODES) == ("train", "prune", "lottery", "generate", "ensemble", "evaluate",
                                            "analyze", "predict")
    choice = next(p for p in main.params if p.name == "mode").type
    assert tuple(choice.choices) == mode_names()
    assert all(isinstance(get_mode(n), Mode) for n in mode_names())
    assert not get_mode("analyze").creates_run and get_mode("analyze").takes_run_dir


def test_backbone_keys_are_checked_against_the_model_class():
    with pytest.raises(ConfigError, match=r"STGCN has no argument 'inflate_stage'.*did you mean inflate_stages"):
        _check("train", "model.backbone.inflate_stage=[3]")
    with pytest.raises(ConfigError, match=r"base_channels is set by model.base_channels"):
        _check("train", "model.backbone.base_channels=4")
    assert _check("train", "model.backbone.gcn_adaptive=init", "model.backbone.tcn_dropout=0.1").model.backbone[
        "tcn_dropout"] == 0.1


def test_invocation_conflicts_are_checked_once_when_it_is_made():
    with pytest.raises(ConfigError, match="--checkpoint conflicts with --resume"):
        Invocation(checkpoint="a", resume="b")
    with pytest.raises(ConfigError, match="--fuse conflicts with --checkpoint"):
        Invocation(checkpoint="a", fuse=("x", "y"))
