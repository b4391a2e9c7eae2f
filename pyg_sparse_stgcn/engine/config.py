"""Typed run configuration: one dataclass per section, TOML in and out, dotted ``--set`` overrides.

A :class:`Config` holds one dataclass per section (``run``, ``data``, ``model``, ``train``, ``eval``,
``sparsity``, ``generator``, ``ensemble``, ``lottery``, ``prune``, ``dense``), every field with a default and a
help string (``field.metadata['help']``). Choice lists are imported from the one module that defines each of
them (graph modes, feature streams, aggregation backends, generator and pruning scopes, learning-rate
schedules, clip averaging, models, modes), so the configuration never restates them.

Layers, lowest precedence first: the defaults < the dataset's shipped recipe (package data,
:func:`load_recipe`) with, when ``--model`` names a backbone that has one, the model's recipe over it (the
paper's settings of that backbone), or else the ``--config`` file < explicit CLI options < ``--set`` overrides.
Every key a layer sets is checked against the fields (an unknown key is an error naming the nearest valid
keys); :meth:`Config.validate` checks types, ranges and choices in one place. The resolved configuration is
written to a run's ``config.toml`` (:meth:`Config.to_toml`) and read back on ``--resume``.

Fields whose default is :obj:`None` mean "the default of the component that reads it" (e.g. the
:class:`~pyg_sparse_stgcn.sparsity.generator.SparseGenerator` options): they are left out of ``config.toml``
and out of the constructor call, so that component's signature stays the one place those defaults live.

The plain-``dict`` helpers at the end (:data:`DEFAULTS`, :func:`merge`, :func:`apply_sets`,
:func:`validate_config`, :func:`to_toml`) are views of the same dataclasses.
"""
# no ``from __future__ import annotations``: the field annotations are evaluated (Literal choice lists)
import copy
import dataclasses
import difflib
import functools
import math
import tomllib
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, Union

from ..data.transforms import FEATS, STREAMS
from ..graph import GRAPH_MODES
from ..nn.conv.stgcn_conv import ADAPTIVE_MODES, BACKENDS
from ..sparsity.generator import EVAL_SPARSITIES, PENALTIES, THRESHOLD_RULES
from ..sparsity.generator import SCOPES as GENERATOR_SCOPES
from ..sparsity.magnitude import PRUNE_SCOPES
from ..sparsity.masks import SCORE_INITS
from .metrics import AVERAGE_CLIPS
from .models import MODEL_NAMES
from .trainer import LR_SCHEDULES, PRECISIONS, precision_problem

__all__ = ["Config", "Section", "ConfigError", "RunConfig", "DataConfig", "ModelConfig", "TrainConfig",
           "EvalConfig", "SparsityConfig", "GeneratorConfig", "EnsembleConfig", "LotteryConfig", "PruneConfig",
           "DenseConfig", "SECTIONS", "ALIASES", "load_toml", "load_recipe", "recipe_names", "recipe_text",
           "model_recipe_names", "parse_set", "tomllib", "DEFAULTS", "FREE_TABLES", "merge", "apply_sets",
           "validate_config", "to_toml", "RANK_DEFAULT", "RANK_FILE", "RANK_CLI", "RESUME_FREE", "resolve_config"]

#: Every scope value some algorithm accepts; each mode narrows it to its own (``Mode.scopes``).
ALL_SCOPES: tuple[str, ...] = tuple(dict.fromkeys(GENERATOR_SCOPES + PRUNE_SCOPES))

if TYPE_CHECKING:  # choice lists are runtime tuples; type checkers see plain strings
    GraphMode: TypeAlias = str
    Backend: TypeAlias = str
    ModelName: TypeAlias = str
    LRSchedule: TypeAlias = str
    Precision: TypeAlias = str
    AverageClips: TypeAlias = str
    Scope: TypeAlias = str
    Adaptive: TypeAlias = str
    ThresholdRule: TypeAlias = str
    EvalSparsity: TypeAlias = str
    ScoreInit: TypeAlias = str
else:
    ThresholdRule = Literal[tuple(THRESHOLD_RULES)]
    EvalSparsity = Literal[tuple(EVAL_SPARSITIES)]
    ScoreInit = Literal[tuple(SCORE_INITS)]
    Adaptive = Literal[("",) + tuple(a for a in ADAPTIVE_MODES if a)]
    GraphMode = Literal[("",) + tuple(GRAPH_MODES)]
    Backend = Literal[tuple(BACKENDS)]
    ModelName = Literal[tuple(MODEL_NAMES)]
    LRSchedule = Literal[tuple(LR_SCHEDULES)]
    Precision = Literal[tuple(PRECISIONS)]
    AverageClips = Literal[tuple(AVERAGE_CLIPS)]
    Scope = Literal[ALL_SCOPES]

#: Source ranks of a key's value: the library's defaults and shipped recipes, a ``--config`` file, the command
#: line (options and ``--set``). Modes use them to decide which of two related settings the user meant.
RANK_DEFAULT, RANK_FILE, RANK_CLI = 0, 1, 2

#: Old key names still read (configurations of earlier runs): old → new.
ALIASES = {"generator.use_abs": "generator.abs_scores",
           "generator.residual_tau_zero": "generator.residual_zero_threshold"}


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the key (or CLI option) and the valid values."""


# --------------------------------------------------------------------------------------------------------
# field declarations
# --------------------------------------------------------------------------------------------------------
def opt(default: Any, help: str, *, lo: float | None = None, gt: float | None = None,
        fraction: str | None = None, check: Callable[[Any], str | None] | None = None,
        choices: Callable[[], tuple[str, ...]] | None = None, arg: str | None = None) -> Any:
    """A configuration field.

    Args:
        default: The default (lists and dicts are copied per instance).
        help (str): What the field means (shown by ``--help-settings`` and the docs).
        lo (float, optional): Smallest valid value. gt: values must be greater than this.
        fraction (str, optional): ``'open'`` for :math:`[0, 1)`, ``'closed'`` for :math:`[0, 1]`.
        check (callable, optional): ``check(value) -> message or None`` for anything else.
        choices (callable, optional): Valid values known only at run time (registries).
        arg (str, optional): The keyword argument of the component this field feeds, when it differs from
            the field name (documentation and coverage tests).
    """
    meta = {"help": help, "lo": lo, "gt": gt, "fraction": fraction, "check": check, "choices": choices,
            "arg": arg}
    if isinstance(default, (list, dict)):
        return field(default_factory=functools.partial(copy.deepcopy, default), metadata=meta)
    return field(default=default, metadata=meta)


def _mode_names() -> tuple[str, ...]:
    from .modes import mode_names

    return mode_names()


def _dataset_names() -> tuple[str, ...]:
    from ..data import available_datasets

    return tuple(available_datasets())


def _check_device(v: str) -> str | None:
    if v in ("auto", "cpu", "cuda") or (v.startswith("cuda:") and v[5:].isdigit()):
        return None
    return f"invalid device {v!r}; valid: auto, cpu, cuda or cuda:N"


def _check_feats(v: str) -> str | None:
    if v in FEATS:
        return None
    return (f"invalid value {v!r}; valid choices: {', '.join(STREAMS)}, or several distinct ones joined by '+' "
            f"(e.g. {STREAMS[0]}+{STREAMS[1]}, concatenated along channels)")


def _check_sparsities(v: list) -> str | None:
    if not v:
        return "needs at least one sparsity level"
    for s in v:
        if not 0 <= s < 1:
            return f"{s!r} is not a fraction in [0, 1)"
    return None


def _check_models(v: list) -> str | None:
    for i, name in enumerate(v):
        if name not in MODEL_NAMES:
            return f"unknown backbone {name!r} (item {i + 1}); valid choices: {', '.join(MODEL_NAMES)}"
    return None


def _check_penalty_lambda(v: Any) -> str | None:
    if v == "gradual" or (isinstance(v, float) and v >= 0):
        return None
    return f"expected 'gradual' or a number >= 0, got {v!r}"


#: Penalty names as configs spell them ("" = none), from the generator's one list.
PENALTY_NAMES = {("" if p is None else p.lower()): p for p in PENALTIES}


def _check_penalty(v: str) -> str | None:
    return None if v.lower() in PENALTY_NAMES else \
        f"invalid value {v!r}; valid choices: {', '.join(repr(k) for k in PENALTY_NAMES)} ('' = none)"


class Section:
    """Base of the section dataclasses: field help and iteration."""

    @classmethod
    def field_help(cls) -> dict[str, str]:
        """``{field name: help string}``."""
        return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(cls)}  # type: ignore[arg-type]

    def items(self) -> Iterator[tuple[str, Any]]:
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            yield f.name, getattr(self, f.name)


# --------------------------------------------------------------------------------------------------------
# sections
# --------------------------------------------------------------------------------------------------------
@dataclass
class RunConfig(Section):
    """``[run]``: what runs, where, and how reproducibly."""

    mode: str = opt("train", "What to run (see docs/cli.md): the registered modes.", choices=_mode_names)
    seed: int = opt(0, "Random seed (data order, initialisation, augmentation).")
    out: str = opt("runs", "Parent directory of the run directories.")
    device: str = opt("auto", "auto (CUDA when available), cpu, cuda or cuda:N.", check=_check_device)
    deterministic: bool = opt(False, "torch.use_deterministic_algorithms(True, warn_only=True).")
    threads: int = opt(0, "torch.set_num_threads; 0 = PyTorch's default.", lo=0)
    keep_freed_memory: bool = opt(True, "Keep freed memory in the process (glibc's malloc: no mmap, no trimming; "
                                  "pyg_sparse_stgcn.malloc), so that steps do not page-fault their buffers in "
                                  "again; the resident size then stays at its peak.")


@dataclass
class DataConfig(Section):
    """``[data]``: the dataset, its pipeline and its loader."""

    name: str = opt("demo", "Dataset name (--data).", choices=_dataset_names)
    root: str = opt("", "Directory of the dataset's files; \"\" = the dataset's default root (data/<name>).")
    feats: str = opt("j", "Input stream: j, b, jm, bm, or several joined by '+' (e.g. j+b).", check=_check_feats)
    clip_len: int = opt(0, "Frames per clip; 0 = the dataset's recommendation.", lo=0)
    num_person: int = opt(0, "Persons M per sample; 0 = the dataset's recommendation.", lo=0)
    augment: bool = opt(False, "Random rotation/scaling in training (build_pipeline(augment=True)).")
    batch_size: int = opt(16, "Global batch (split across DDP processes).", lo=1)
    test_batch_size: int = opt(0, "Evaluation batch; 0 = batch_size.", lo=0)
    num_workers: int = opt(0, "DataLoader worker processes.", lo=0)
    train_split: str = opt("", "Training split; \"\" = train.")
    test_split: str = opt("", "Test split; \"\" = val.")
    holdout: float = opt(0.0, "Fraction of the training split held out (per class, seeded by holdout_seed) and "
                              "used as the test split instead of test_split: hyper-parameters are chosen on it, "
                              "never on the test split; 0 = off.", fraction="open")
    holdout_seed: int = opt(0, "Seed of the held-out selection (data.holdout); fixed across run seeds.", lo=0)
    kwargs: dict[str, Any] = opt({}, "Extra keyword arguments of the dataset (a free table).")


@dataclass
class ModelConfig(Section):
    """``[model]``: the backbone and its classifier head."""

    name: ModelName = opt("stgcn", "Backbone (--model).")
    graph_mode: GraphMode = opt("", "Graph partition; \"\" = the model's default (stgcn: stgcn_spatial, "
                                    "stgcn++: spatial).")
    layout: str = opt("", "Skeleton layout; \"\" = the dataset's.")
    num_filter: int = opt(0, "Subsets K of a 'random' graph; 0 = the model's default (PYSKL: 3, DG-STGCN: 8).",
                          lo=0)
    base_channels: int = opt(64, "Channels of the first stages.", lo=1)
    num_stages: int = opt(10, "Number of ST blocks.", lo=1)
    backend: Backend = opt("auto", "Aggregation backend of every STGCNConv.")
    dropout: float = opt(0.0, "Dropout before the classifier.", fraction="open")
    backbone: dict[str, Any] = opt({}, "Further STGCN keyword arguments (gcn_adaptive, tcn_type, "
                                       "inflate_stages, ...; a free table).")


@dataclass
class TrainConfig(Section):
    """``[train]``: the optimiser, the schedule and the training loop (PYSKL's recipe by default)."""

    epochs: int = opt(80, "Training epochs.", lo=1)
    lr: float = opt(0.1, "Peak learning rate.", gt=0)
    momentum: float = opt(0.9, "SGD momentum.", lo=0)
    nesterov: bool = opt(True, "Nesterov momentum.")
    weight_decay: float = opt(5e-4, "Weight decay on every parameter.", lo=0)
    lr_schedule: LRSchedule = opt("cosine", "cosine (per iteration), cosine_epoch or constant.")
    warmup_epochs: float = opt(0.0, "Linear LR warm-up, in (fractional) epochs.", lo=0)
    min_lr: float = opt(0.0, "Final learning rate of the cosine.", lo=0)
    grad_clip: float = opt(0.0, "Max global L2 gradient norm; 0 = off.", lo=0)
    amp: bool = opt(True, "Autocast + GradScaler (CUDA only).")
    precision: Precision = opt("fp32", "fp32, or bf16: bfloat16 autocast of the forward pass (CUDA, or a CPU "
                                       "reporting avx512_bf16 / amx_bf16); weights, BN statistics, loss and "
                                       "masks stay float32.", check=precision_problem)
    compile: bool = opt(False, "Train through torch.compile (nn.compile_model); on CPU it measured slower than eager.")
    sync_bn: bool = opt(False, "Synchronise BatchNorm statistics across DDP processes.")
    eval_every: int = opt(1, "Validate every N epochs (the last epoch always); 0 = only the last.", lo=0)
    max_epochs_this_run: int = opt(0, "Stop (resumably) after this many epochs of this invocation; 0 = no "
                                      "limit.", lo=0)
    progress: bool = opt(True, "tqdm progress bars.")


@dataclass
class EvalConfig(Section):
    """``[eval]``: test-time clips and stream fusion."""

    num_clips: int = opt(1, "Test-time clips per sample (PYSKL tests with 10).", lo=1)
    average_clips: AverageClips = opt("prob", "prob (softmax, then mean; PYSKL) or score (mean logits).")
    fusion_coefficients: list[float] = opt([2.0, 2.0, 1.0, 1.0], "Stream weights for --fuse (J:B:JM:BM "
                                                                 "2:2:1:1); equal weights when the count "
                                                                 "differs.")


@dataclass
class SparsityConfig(Section):
    """``[sparsity]``: targets shared by prune, lottery, generate and ensemble."""

    sparsity: float = opt(0.95, "Fraction of the maskable weights that are zero (--sparsity; prune, lottery, "
                                "generate).", fraction="open")
    edge_sparsity: float = opt(0.0, "Fraction of the graph's edge entries that are zero (--edge-sparsity; "
                                    "prune, generate, ensemble); 0 = edges stay dense.", fraction="open")
    scope: Scope = opt("global", "Where a threshold applies: global, block (per ST block) or layer. prune and "
                                 "lottery accept sparsity.magnitude.PRUNE_SCOPES, generate and ensemble "
                                 "sparsity.generator.SCOPES.", arg="scope")


@dataclass
class GeneratorConfig(Section):
    """``[generator]``: the paper's sparse generator (``SparseGenerator``). Epoch settings are fractions of
    the mode's epochs; options left unset (:obj:`None`) take ``SparseGenerator``'s default, or with
    ``paper = true`` the value of ``SparseGenerator.from_paper_code``."""

    epochs: int = opt(0, "Epochs of the generator (and its dense baseline); 0 = train.epochs.", lo=0)
    clip_len: int = opt(0, "Frames per clip in this mode; 0 = data.clip_len (paper: 60).", lo=0)
    lr_schedule: LRSchedule = opt("cosine_epoch", "The paper's sparse configs anneal per epoch.")
    graph_mode: GraphMode = opt("random", "Graph of this mode (paper: the learnable random adjacency); \"\" = "
                                          "model.graph_mode.")
    gcn_adaptive: Adaptive = opt("init", "gcn_adaptive of this mode's backbone; \"\" = model.backbone's.")
    paper: bool = opt(False, "Build SparseGenerator.from_paper_code(...): every compatibility flag of the "
                             "paper's released code (options set here still win).")
    warm_up: float = opt(0.6, "Dense warm-up, fraction of the epochs (paper: 60 of 100).", fraction="open",
                         arg="warm_up")
    ramp: float | None = opt(None, "Linear sparsity ramp after the warm-up, fraction of the epochs; unset/0 = "
                                   "jump to the target.", fraction="closed", arg="ramp_epochs")
    two_phase: float | None = opt(None, "From this fraction of the epochs on only the scores train; unset/0 = "
                                        "joint training for the whole run (paper).", fraction="closed",
                                  arg="scores_only_after")
    penalty: str | None = opt(None, "Warm-up penalty: gl, gsgl, or \"\" (none).", check=_check_penalty)
    penalty_lambda: float | str | None = opt(None, "Penalty weight: a number >= 0 or 'gradual' "
                                                   "(min(1, epoch / warm-up)).", check=_check_penalty_lambda)
    penalty_has_grad: bool | None = opt(None, "Let the penalty's gradient reach the weights (false: the "
                                              "paper code's constant penalty).")
    abs_scores: bool | None = opt(None, "Threshold |S| instead of signed scores.")
    threshold_rule: ThresholdRule | None = opt(None, "exact (removes exactly round(p n) entries) or paper (the paper "
                                           "code's percentile, keep S >= tau).")
    eval_sparsity: EvalSparsity | None = opt(None, "Sparsity used in eval mode: target (the paper) or current "
                                          "(the scheduled one).")
    residual_zero_threshold: bool | None = opt(None, "Paper-code quirk: block residual convs use tau = 0.")
    paper_ramp: bool | None = opt(None, "Paper-code ramp p = s e / (E/2) measured from epoch 0.")
    score_init: ScoreInit | None = opt(None, "Score initialisation: kaiming_uniform or magnitude.")
    reinit_weights: bool | None = opt(None, "Re-initialise the masked weights kaiming-uniform, zero biases "
                                            "(the paper's sparse convs).")
    include_head: bool | None = opt(None, "Also mask the classifier head's weights.")


@dataclass
class EnsembleConfig(Section):
    """``[ensemble]``: the multi-level sparsity ensemble. Every other generator option of its experts comes
    from ``[generator]``."""

    epochs: int = opt(0, "Epochs of the ensemble (and its dense baseline); 0 = train.epochs.", lo=0)
    clip_len: int = opt(0, "Frames per clip in this mode; 0 = data.clip_len (paper: 100).", lo=0)
    sparsities: list[float] = opt([0.6, 0.8, 0.95, 0.99], "One sparsity per expert.", check=_check_sparsities)
    models: list[str] = opt([], "One backbone (--model name) per expert, as many as sparsities (mixed lists "
                                "such as [stgcn, aagcn, ctrgcn, dgstgcn]); [] = model.name for every expert.",
                            check=_check_models)
    warm_up: float = opt(0.8, "Dense warm-up, fraction of the epochs (paper: 80 of 100).", fraction="open",
                         arg="warm_up")
    penalty: str = opt("gsgl", "Warm-up penalty: gl, gsgl or \"\" (none); paper: GSGL.", check=_check_penalty)
    grad_clip: float = opt(45.0, "Max global L2 gradient norm (paper: 45); 0 = off.", lo=0)
    lr_schedule: LRSchedule = opt("cosine_epoch", "The paper's sparse configs anneal per epoch.")
    graph_mode: GraphMode = opt("random", "Graph of this mode; \"\" = model.graph_mode.")
    num_filter: int = opt(0, "Subsets K of this mode's random graphs (the paper's Assemble: 3); 0 = "
                             "model.num_filter.", lo=0)
    gcn_adaptive: Adaptive = opt("init", "gcn_adaptive of this mode's backbones; \"\" = model.backbone's.")


@dataclass
class LotteryConfig(Section):
    """``[lottery]``: iterative magnitude pruning with rewinding (OpenLTH semantics)."""

    levels: int = opt(3, "Pruning levels after the dense level 0; 0 = as many as sparsity.sparsity needs (the "
                         "last level trimmed to reach it exactly). --sparsity on the command line derives the "
                         "levels too.", lo=0)
    fraction: float = opt(0.2, "Fraction of the remaining weights removed per level.", fraction="open")
    edge_fraction: float = opt(0.0, "Fraction of the remaining edge entries removed per level; > 0 prunes "
                                    "edges (UGS: 0.05).", fraction="open")
    rewind_step: int = opt(0, "Optimiser step later levels rewind to; 0 = the initialisation.", lo=0)
    random_reinit: bool = opt(False, "Control: same masks, fresh initialisation.")
    random_prune: bool = opt(False, "Control: masks shuffled per layer, rewound weights.")


@dataclass
class PruneConfig(Section):
    """``[prune]``: one-shot magnitude pruning and fine-tuning."""

    finetune_epochs: int = opt(0, "Fine-tuning epochs; 0 = train.epochs.", lo=0)
    lr: float = opt(0.0, "Fine-tuning learning rate; 0 = train.lr.", lo=0)


@dataclass
class DenseConfig(Section):
    """``[dense]``: the dense baseline of generate, ensemble and prune (without --checkpoint)."""

    baseline: bool = opt(True, "Train a dense baseline of the same architecture first (generate, ensemble).")
    epochs: int = opt(0, "Epochs of the dense baseline; 0 = those of the mode's sparse stage.", lo=0)


#: Section name → dataclass, in file order.
SECTIONS: dict[str, type[Section]] = {
    "run": RunConfig, "data": DataConfig, "model": ModelConfig, "train": TrainConfig, "eval": EvalConfig,
    "sparsity": SparsityConfig, "generator": GeneratorConfig, "ensemble": EnsembleConfig,
    "lottery": LotteryConfig, "prune": PruneConfig, "dense": DenseConfig,
}


# --------------------------------------------------------------------------------------------------------
# value checking
# --------------------------------------------------------------------------------------------------------
def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "none"
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(map(str, typing.get_args(tp)))
    if typing.get_origin(tp) is list:
        return "list"
    if typing.get_origin(tp) is dict:
        return "table"
    return getattr(tp, "__name__", str(tp))


def _coerce(tp: Any, v: Any) -> Any:
    """``v`` as type ``tp`` (an int for a float becomes a float); raises :class:`TypeError`/:class:`KeyError`
    (invalid choice) otherwise."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return v
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if v is None and type(None) in args:
            return None
        errors: list[Exception] = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(a, v)
            except (TypeError, KeyError) as e:
                errors.append(e)
        raise next((e for e in errors if isinstance(e, KeyError)), TypeError(
            " or ".join(_type_name(a) for a in args if a is not type(None))))
    if origin is Literal:
        if isinstance(v, str) and v in typing.get_args(tp):
            return v
        if not isinstance(v, str):
            raise TypeError("str")
        raise KeyError(typing.get_args(tp))
    if tp is bool:
        if isinstance(v, bool):
            return v
        raise TypeError("bool")
    if tp is int:
        if isinstance(v, int) and not isinstance(v, bool):
            return v
        raise TypeError("int")
    if tp is float:
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v)
        raise TypeError("float")
    if tp is str:
        if isinstance(v, str):
            return v
        raise TypeError("str")
    if origin is list:
        if not isinstance(v, (list, tuple)):
            raise TypeError("list")
        (arg,) = typing.get_args(tp) or (Any,)
        return [_coerce(arg, x) for x in v]
    if origin is dict:
        if not isinstance(v, Mapping):
            raise TypeError("table")
        return copy.deepcopy(dict(v))
    raise TypeError(_type_name(tp))


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


# --------------------------------------------------------------------------------------------------------
# the configuration
# --------------------------------------------------------------------------------------------------------
class Config:
    """The resolved configuration of a run: one attribute per section (``cfg.train.lr``).

    ``sources`` records, per dotted key that a layer set, ``(rank, label)``: the rank (:data:`RANK_DEFAULT`,
    :data:`RANK_FILE`, :data:`RANK_CLI`) and the option or file that set it (used in messages and by modes
    that reconcile two related settings).
    """

    run: RunConfig
    data: DataConfig
    model: ModelConfig
    train: TrainConfig
    eval: EvalConfig
    sparsity: SparsityConfig
    generator: GeneratorConfig
    ensemble: EnsembleConfig
    lottery: LotteryConfig
    prune: PruneConfig
    dense: DenseConfig

    def __init__(self) -> None:
        for name, cls in SECTIONS.items():
            setattr(self, name, cls())
        self.sources: dict[str, tuple[int, str]] = {}

    # ---- keys -------------------------------------------------------------------------------------------
    @staticmethod
    def keys() -> list[str]:
        """Every dotted key (``section.field``)."""
        return [f"{s}.{f.name}" for s, cls in SECTIONS.items() for f in dataclasses.fields(cls)]  # type: ignore

    @staticmethod
    def field_of(key: str) -> dataclasses.Field:
        """The dataclass field of ``section.field``."""
        sec, name = key.split(".", 1)
        return {f.name: f for f in dataclasses.fields(SECTIONS[sec])}[name]  # type: ignore[arg-type]

    @staticmethod
    def _free(key: str) -> bool:
        sec, _, name = key.partition(".")
        return sec in SECTIONS and typing.get_origin(_hints(SECTIONS[sec]).get(name)) is dict

    @classmethod
    def unknown_key(cls, key: str, source: str) -> ConfigError:
        """The error for an unknown ``key``: the valid keys of its table and the nearest keys overall."""
        parts = key.split(".")
        if parts[0] in SECTIONS:
            table, valid = f"[{parts[0]}]", [f.name for f in dataclasses.fields(SECTIONS[parts[0]])]  # type: ignore
        else:
            table, valid = "[top level]", list(SECTIONS)
        pool = cls.keys() if len(parts) > 1 else list(SECTIONS)
        near = difflib.get_close_matches(key, pool, n=3, cutoff=0.6)
        if not near and len(parts) > 1:  # a misspelt section: match the field name in every section
            near = difflib.get_close_matches(parts[-1], [k.split(".", 1)[1] for k in cls.keys()], n=3,
                                             cutoff=0.7)
            near = [k for k in cls.keys() if k.split(".", 1)[1] in near][:3]
        hint = f"; did you mean {' or '.join(near)}?" if near else ""
        return ConfigError(f"{source}: unknown key {key!r}; valid keys of {table}: {', '.join(valid)}{hint}")

    def resolve_key(self, key: str, source: str = "--set") -> str:
        """``key`` with aliases applied; raises :class:`ConfigError` (with suggestions) if it names no field
        or a whole section."""
        key = ALIASES.get(key, key)
        parts = key.split(".")
        if parts[0] not in SECTIONS:
            raise self.unknown_key(key, source)
        if len(parts) == 1:
            raise ConfigError(f"{source}: {key!r} is a table; set one of its keys: "
                              f"{', '.join(f.name for f in dataclasses.fields(SECTIONS[key]))}")  # type: ignore
        field_key = ".".join(parts[:2])
        if field_key not in self.keys():
            raise self.unknown_key(key, source)
        if len(parts) > 2 and not self._free(field_key):
            raise ConfigError(f"{source}: {field_key!r} is not a table; {key!r} does not exist")
        return key

    # ---- get / set --------------------------------------------------------------------------------------
    def get(self, key: str) -> Any:
        """The value of a dotted key (inside free tables too; :obj:`None` when absent there)."""
        parts = self.resolve_key(key, "key").split(".")
        cur: Any = getattr(getattr(self, parts[0]), parts[1])
        for p in parts[2:]:
            cur = cur.get(p) if isinstance(cur, Mapping) else None
        return cur

    def set(self, key: str, value: Any, source: str = "--set", rank: int = RANK_CLI) -> None:
        """Set a dotted key (checked against the fields; inside a free table any key). The value is checked
        by :meth:`validate`."""
        key = self.resolve_key(key, source)
        parts = key.split(".")
        sec = getattr(self, parts[0])
        if len(parts) == 2:
            setattr(sec, parts[1], copy.deepcopy(value))
        else:
            cur = getattr(sec, parts[1])
            if not isinstance(cur, dict):
                cur = {}
                setattr(sec, parts[1], cur)
            for p in parts[2:-1]:
                cur = cur.setdefault(p, {})
            cur[parts[-1]] = copy.deepcopy(value)
        self.sources[key] = (rank, source)

    def update(self, data: Mapping[str, Any], source: str, rank: int = RANK_FILE) -> "Config":
        """Apply a nested mapping (a TOML document): every key must name a field (free tables are replaced
        as a whole)."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"{source}: expected a table of sections, got {type(data).__name__}")
        for sec, body in data.items():
            if sec not in SECTIONS:
                raise self.unknown_key(str(sec), source)
            if not isinstance(body, Mapping):
                raise ConfigError(f"{source}: {sec} must be a table, got {body!r}")
            for name, value in body.items():
                label = source if rank != RANK_CLI else f"--set {sec}.{name}"
                self.set(f"{sec}.{name}", value, label, rank)
        return self

    def apply_sets(self, items: list[str] | tuple[str, ...]) -> "Config":
        """Apply ``--set key=value`` overrides in order."""
        for item in items:
            key, value = parse_set(item)
            self.set(key, value, f"--set {key}", RANK_CLI)
        return self

    # ---- sources ----------------------------------------------------------------------------------------
    def rank(self, key: str) -> int:
        """The rank of the layer that set ``key`` (:data:`RANK_DEFAULT` when none did)."""
        return self.sources.get(key, (RANK_DEFAULT, ""))[0]

    def name(self, key: str) -> str:
        """How messages name ``key``: the CLI option that set it, else the key itself."""
        rank, label = self.sources.get(key, (RANK_DEFAULT, ""))
        return label if rank == RANK_CLI and label else key

    def explicit(self, rank: int = RANK_CLI) -> list[str]:
        """The keys set at ``rank`` or above."""
        return [k for k, (r, _) in self.sources.items() if r >= rank]

    # ---- validation -------------------------------------------------------------------------------------
    def validate(self) -> "Config":
        """Check every value against its field (type, range, choices); ints given for floats become floats.

        Raises:
            ConfigError: naming the key (or the CLI option that set it) and the valid values.
        """
        for sec_name, cls in SECTIONS.items():
            sec = getattr(self, sec_name)
            hints = _hints(cls)
            for f in dataclasses.fields(cls):  # type: ignore[arg-type]
                key = f"{sec_name}.{f.name}"
                v = getattr(sec, f.name)
                try:
                    v = _coerce(hints[f.name], v)
                except KeyError as e:
                    raise ConfigError(f"{self.name(key)}: invalid value {v!r}; valid choices: "
                                      f"{', '.join(map(str, e.args[0]))}") from None
                except TypeError as e:
                    raise ConfigError(f"{self.name(key)}: expected {e.args[0]}, got {v!r}") from None
                setattr(sec, f.name, v)
                if v is None:
                    continue
                m = f.metadata
                msg = None
                if m.get("choices") is not None and v not in m["choices"]():
                    msg = f"invalid value {v!r}; valid choices: {', '.join(m['choices']())}"
                elif m.get("fraction") and isinstance(v, float):
                    closed = m["fraction"] == "closed"
                    if not (0 <= v and (v <= 1 if closed else v < 1)):
                        msg = (f"{v!r} is not a fraction in {'[0, 1]' if closed else '[0, 1)'} (sparsity is "
                               f"the fraction of entries that are zero)")
                elif isinstance(v, (int, float)) and not isinstance(v, bool):
                    if isinstance(v, float) and not math.isfinite(v):
                        msg = f"must be a finite number, got {v}"
                    elif m.get("lo") is not None and v < m["lo"]:
                        msg = f"must be >= {m['lo']}, got {v}"
                    elif m.get("gt") is not None and v <= m["gt"]:
                        msg = f"must be > {m['gt']}, got {v}"
                if msg is None and m.get("check") is not None:
                    msg = m["check"](v)
                if msg:
                    raise ConfigError(f"{self.name(key)}: {msg}")
        ens = self.ensemble
        if ens.models and len(ens.models) != len(ens.sparsities):
            raise ConfigError(f"{self.name('ensemble.models')}: names {len(ens.models)} backbone(s) but "
                              f"{self.name('ensemble.sparsities')} has {len(ens.sparsities)} level(s); give one "
                              f"backbone per level, or [] for model.name at every level")
        return self

    # ---- dict / TOML ------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Nested plain ``dict`` (fields set to :obj:`None` left out: TOML has no null)."""
        return {s: {k: copy.deepcopy(v) for k, v in getattr(self, s).items() if v is not None} for s in SECTIONS}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "config", rank: int = RANK_FILE) -> "Config":
        """A validated configuration from defaults updated with ``data``."""
        return cls().update(data, source, rank).validate()

    def to_toml(self, header: str = "", comments: bool = True) -> str:
        """The configuration as TOML; with ``comments`` each key carries its help string and unset keys are
        listed as comments (``tomllib`` reads it back to an equal configuration)."""
        lines = [f"# {h}" if h else "#" for h in header.splitlines()] if header else []
        for s, cls in SECTIONS.items():
            sec = getattr(self, s)
            lines += ["", f"[{s}]"]
            for f in dataclasses.fields(cls):  # type: ignore[arg-type]
                v = getattr(sec, f.name)
                help_ = f" # {f.metadata['help']}" if comments else ""
                if v is None:
                    if comments:
                        lines.append(f"# {f.name} = (unset: the component's default){help_}")
                    continue
                lines.append(f"{_toml_key(f.name)} = {_toml_value(v)}{help_}")
        return "\n".join(lines).lstrip("\n") + "\n"

    def copy(self) -> "Config":
        return copy.deepcopy(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Config) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"Config({self.to_dict()!r})"


# --------------------------------------------------------------------------------------------------------
# files, recipes, --set
# --------------------------------------------------------------------------------------------------------
def load_toml(path: str | Path) -> dict:
    """Read a TOML file.

    Raises:
        ConfigError: if the file is missing or not valid TOML (the message names the file).
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"--config: file {p} does not exist")
    try:
        with open(p, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"--config: {p} is not valid TOML: {e}") from e


def _recipes() -> Any:
    return resources.files("pyg_sparse_stgcn") / "configs"


def _shipped() -> list[str]:
    return sorted(p.name[:-5] for p in _recipes().iterdir() if p.name.endswith(".toml"))


def recipe_names() -> list[str]:
    """The datasets with a shipped recipe (package data ``pyg_sparse_stgcn/configs/<dataset>.toml``)."""
    return [n for n in _shipped() if n not in MODEL_NAMES]


def model_recipe_names() -> list[str]:
    """The backbones with a shipped model recipe (``pyg_sparse_stgcn/configs/<model>.toml``): the paper's
    settings of that backbone, layered over the dataset's recipe when the model is chosen on the command line
    (:func:`resolve_config`)."""
    return [n for n in _shipped() if n in MODEL_NAMES]


def recipe_text(name: str) -> str | None:
    """The TOML text of the shipped recipe ``name`` (a dataset's or a model's), or :obj:`None` when there is
    none."""
    p = _recipes() / f"{name}.toml"
    return p.read_text(encoding="utf-8") if p.is_file() else None


def load_recipe(name: str) -> dict | None:
    """The shipped recipe ``name`` (a dataset's or a model's) as a dict (read with :mod:`importlib.resources`,
    so it works from an installed wheel), or :obj:`None`."""
    text = recipe_text(name)
    return None if text is None else tomllib.loads(text)


def _layer_recipe(cfg: Config, recipe: Mapping[str, Any], source: str) -> None:
    """Apply a model recipe over the dataset's: free tables (``model.backbone``, ``data.kwargs``) are merged
    key by key instead of replaced, so the dataset's sizing (e.g. ``inflate_stages``) survives."""

    def merged(old: Any, new: Any) -> Any:
        if isinstance(old, Mapping) and isinstance(new, Mapping):
            return {**old, **{k: merged(old.get(k), v) for k, v in new.items()}}
        return new

    out = {}
    for sec, body in recipe.items():
        if sec in SECTIONS and isinstance(body, Mapping):
            cur = getattr(cfg, sec)
            body = {k: merged(getattr(cur, k, None), v) for k, v in body.items()}
        out[sec] = body
    cfg.update(out, source, RANK_DEFAULT)


def _parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        if text.startswith("[") and text.endswith("]") and "[" not in text[1:-1]:  # [a, b]: bare words
            return [_parse_value(t.strip()) for t in text[1:-1].split(",") if t.strip()]
        return text  # a bare string


def parse_set(item: str) -> tuple[str, Any]:
    """Parse one ``--set key=value`` (``value`` in TOML syntax; a bare word is a string)."""
    if "=" not in item:
        raise ConfigError(f"--set: expected key=value (e.g. train.lr=0.05), got {item!r}")
    key, text = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"--set: empty key in {item!r}")
    return key, _parse_value(text.strip())


#: Keys a resumed run may change (they do not change its result).
RESUME_FREE = ("run.device", "data.num_workers", "train.max_epochs_this_run", "train.progress")


def resolve_config(options: Mapping[str, tuple[Any, str]] | None = None, sets: list[str] | tuple[str, ...] = (),
                   config_file: str | None = None, resume: str | None = None) -> Config:
    """The configuration of a run, validated.

    Layers, lowest precedence first: the defaults, the dataset's shipped recipe (:func:`load_recipe`) and over
    it the model's shipped recipe when ``options`` or ``sets`` name a model that has one
    (:func:`model_recipe_names`: the paper's settings of that backbone) — both replaced by ``config_file`` when
    one is given —, then ``options`` and ``sets``. With ``resume`` the run's own
    ``config.toml`` instead, and only the keys of :data:`RESUME_FREE` may change (other options must repeat the
    run's values).

    Args:
        options (dict, optional): ``{dotted key: (value, option label)}`` of the explicit CLI options, e.g.
            ``{'sparsity.sparsity': (0.9, '--sparsity')}``.
        sets (sequence of str, optional): ``--set key=value`` items, in order.
        config_file (str, optional): ``--config`` TOML file.
        resume (str, optional): ``--resume`` run directory.

    Raises:
        ConfigError: for an unknown key (naming the nearest valid ones), an invalid value or a change on resume.
    """
    options = dict(options or {})
    cfg = Config()
    if resume:
        from .rundir import RunDir

        run = RunDir.open(resume)
        cfg.update(load_toml(run.config_path), f"--resume {run.path}/config.toml", RANK_DEFAULT)
        for key, (value, label) in options.items():
            if key not in RESUME_FREE and cfg.get(key) != value:
                raise ConfigError(f"{label} {value!r} conflicts with --resume: the run was started with {key} = "
                                  f"{cfg.get(key)!r} (a resumed run keeps its config.toml; only --device, "
                                  f"--num-workers, --progress may change)")
        cfg.train.max_epochs_this_run = 0
        for item in sets:
            key, _ = parse_set(item)
            if cfg.resolve_key(key) not in RESUME_FREE:
                raise ConfigError(f"--set {key} conflicts with --resume (a resumed run keeps its config.toml; --set "
                                  f"may only change {', '.join(RESUME_FREE)})")
        for key, (value, label) in options.items():
            if key in RESUME_FREE:
                cfg.set(key, value, label, RANK_CLI)
        return cfg.apply_sets(sets).validate()
    name = options.get("data.name", (cfg.data.name, ""))[0]
    model = options.get("model.name", (None, ""))[0]
    for item in sets:  # --set model.name=... chooses the model too (the last one wins, as when applied)
        key, value = parse_set(item)
        if ALIASES.get(key, key) == "model.name":
            model = value
    if config_file is not None:
        cfg.update(load_toml(config_file), f"--config {config_file}", RANK_FILE)
    else:
        recipe = load_recipe(name) if isinstance(name, str) else None
        if recipe is not None:
            cfg.update(recipe, f"recipe {name}.toml", RANK_DEFAULT)
        if isinstance(model, str) and model in model_recipe_names():
            _layer_recipe(cfg, load_recipe(model) or {}, f"recipe {model}.toml")
    for key, (value, label) in options.items():
        cfg.set(key, value, label, RANK_CLI)
    return cfg.apply_sets(sets).validate()


# --------------------------------------------------------------------------------------------------------
# TOML writer
# --------------------------------------------------------------------------------------------------------
def _toml_str(v: str) -> str:
    out = []
    for c in v:
        if c in '"\\':
            out.append("\\" + c)
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def _toml_key(k: str) -> str:
    if k and all(c.isascii() and (c.isalnum() or c in "_-") for c in k):
        return k
    return _toml_str(k)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        r = repr(v)
        return r if any(c in r for c in ".en") else r + ".0"
    if isinstance(v, str):
        return _toml_str(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{" + ", ".join(f"{_toml_key(str(k))} = {_toml_value(x)}" for k, x in v.items()) + "}"
    if v is None:
        raise ConfigError("TOML has no null value; use \"\" or leave the key out")
    if hasattr(v, "item"):
        return _toml_value(v.item())
    raise ConfigError(f"cannot write {type(v).__name__} value {v!r} to TOML")


def to_toml(cfg: Mapping | Config, header: str = "") -> str:
    """Serialise a :class:`Config` (with help comments) or a nested ``dict`` to TOML (tables, strings, numbers,
    booleans, lists, inline tables for empty or nested free tables). ``tomllib.loads(to_toml(d)) == d``."""
    if isinstance(cfg, Config):
        return cfg.to_toml(header)
    lines = [f"# {h}" if h else "#" for h in header.splitlines()] if header else []

    def table(d: Mapping, path: tuple[str, ...]) -> None:
        scalars = [(k, v) for k, v in d.items() if not (isinstance(v, Mapping) and v)]
        subs = [(k, v) for k, v in d.items() if isinstance(v, Mapping) and v]
        if path and (scalars or not subs):
            lines.append("")
            lines.append("[" + ".".join(_toml_key(p) for p in path) + "]")
        for k, v in scalars:
            lines.append(f"{_toml_key(str(k))} = {_toml_value(v)}")
        for k, v in subs:
            table(v, (*path, str(k)))

    table(cfg, ())
    return "\n".join(lines).lstrip("\n") + "\n"


# --------------------------------------------------------------------------------------------------------
# plain-dict views (the dataclasses above are the one definition)
# --------------------------------------------------------------------------------------------------------
#: The defaults as a nested ``dict`` (unset fields left out).
DEFAULTS: dict[str, dict[str, Any]] = Config().to_dict()

#: Tables whose keys are free-form (passed as keyword arguments to a constructor).
FREE_TABLES = {tuple(k.split(".")) for k in Config.keys() if Config._free(k)}


def merge(base: Mapping, override: Mapping, source: str = "config") -> dict:
    """``base`` updated with ``override`` (both nested dicts), every key checked against the fields."""
    cfg = Config().update(base, "defaults", RANK_DEFAULT)
    cfg.update(override, source, RANK_FILE)
    return cfg.to_dict()


def apply_sets(cfg: dict, items: list[str]) -> dict:
    """Apply ``--set`` overrides to a nested dict in place (keys checked against the fields)."""
    c = Config().update(cfg, "config", RANK_DEFAULT).apply_sets(items)
    cfg.clear()
    cfg.update(c.to_dict())
    return cfg


def validate_config(cfg: dict, options: Mapping[str, str] | None = None) -> dict:
    """Validate a nested dict in place (see :meth:`Config.validate`); ``options`` maps a dotted key to the CLI
    option that set it, for messages."""
    c = Config().update(cfg, "config", RANK_DEFAULT)
    for key, label in (options or {}).items():
        c.sources[key] = (RANK_CLI, label)
    c.validate()
    cfg.clear()
    cfg.update(c.to_dict())
    return cfg
