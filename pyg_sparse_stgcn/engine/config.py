"""Run configuration: defaults, TOML files, ``--set key=value`` overrides, validation and a TOML writer.

A configuration is a nested ``dict`` of sections (``run``, ``data``, ``model``, ``train``, ``eval``,
``sparsity``, ``generator``, ``ensemble``, ``lottery``, ``prune``, ``dense``). Precedence, lowest first:
:data:`DEFAULTS` < the ``--config`` TOML file < explicit CLI options < ``--set`` overrides. The resolved
configuration is written to the run directory's ``config.toml`` and read back with :mod:`tomllib` on
``--resume``.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

__all__ = ["DEFAULTS", "FREE_TABLES", "MODES", "MODELS", "FEATS", "load_toml", "merge", "parse_set",
           "apply_sets", "get_key", "set_key", "to_toml", "validate_config", "ConfigError"]

MODES = ("train", "prune", "lottery", "generate", "ensemble", "evaluate", "analyze")
MODELS = ("stgcn", "stgcn++")
FEATS = ("j", "b", "jm", "bm")
LR_SCHEDULES = ("cosine", "cosine_epoch", "constant")
AVERAGE_CLIPS = ("prob", "score")
SCOPES = ("global", "layer", "block")
DEVICES_HELP = "auto, cpu, cuda or cuda:N"


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the key (or CLI option) and the valid values."""


#: Every key a configuration may hold, with its default. Tables listed in :data:`FREE_TABLES` accept any key.
DEFAULTS: dict[str, dict[str, Any]] = {
    "run": {
        "mode": "train",            # train | prune | lottery | generate | ensemble | evaluate | analyze
        "seed": 0,
        "out": "runs",              # parent of the run directories
        "device": "auto",           # auto | cpu | cuda | cuda:N
        "deterministic": False,     # torch.use_deterministic_algorithms
        "threads": 0,               # torch.set_num_threads; 0 = PyTorch's default
    },
    "data": {
        "name": "demo",
        "root": "",                 # "" = the dataset's default root (data/<name>)
        "feats": "j",               # j | b | jm | bm
        "clip_len": 0,              # frames per clip; 0 = the dataset's recommendation
        "num_person": 0,            # persons M per sample; 0 = the dataset's recommendation
        "augment": False,           # random rotation/scaling in training (build_pipeline(augment=True))
        "batch_size": 16,           # global batch (split across DDP processes)
        "test_batch_size": 0,       # 0 = batch_size
        "num_workers": 0,
        "train_split": "",          # "" = the dataset's default
        "test_split": "",
        "kwargs": {},               # extra keyword arguments of the dataset class
    },
    "model": {
        "name": "stgcn",            # stgcn | stgcn++
        "graph_mode": "",           # "" = the model's default partition (PYSKL: spatial)
        "layout": "",               # "" = the dataset's layout
        "base_channels": 64,
        "num_stages": 10,
        "backend": "auto",          # auto | dense | sparse | scatter
        "dropout": 0.0,             # head dropout
        "backbone": {},             # extra STGCN keyword arguments (gcn_adaptive, inflate_stages, ...)
    },
    "train": {
        "epochs": 80,
        "lr": 0.1,
        "momentum": 0.9,
        "nesterov": True,
        "weight_decay": 5e-4,
        "lr_schedule": "cosine",    # cosine (per iteration) | cosine_epoch | constant
        "warmup_epochs": 0.0,       # linear LR warm-up, in (fractional) epochs
        "min_lr": 0.0,
        "grad_clip": 0.0,           # max L2 norm; 0 = off
        "amp": True,                # autocast + GradScaler, only used on CUDA
        "compile": False,           # torch.compile the model
        "sync_bn": False,           # synchronise BatchNorm statistics across DDP processes
        "eval_every": 1,            # validate every N epochs (the last epoch is always evaluated)
        "max_epochs_this_run": 0,   # stop (resumably) after this many epochs of this invocation; 0 = no limit
        "progress": True,           # tqdm bars
    },
    "eval": {
        "num_clips": 1,             # test-time clips (PYSKL tests with 10)
        "average_clips": "prob",    # prob (softmax, then mean) | score
        "fusion_coefficients": [2.0, 2.0, 1.0, 1.0],  # J:B:JM:BM for --fuse
    },
    "sparsity": {
        "sparsity": 0.95,           # fraction of weights that are zero
        "edge_sparsity": 0.0,       # fraction of graph edges that are zero
        "scope": "global",          # global | layer | block
    },
    "generator": {                  # the paper's sparse generator (method.md §3), epochs scaled by fractions
        "epochs": 0,                # 0 = train.epochs
        "clip_len": 0,              # frames per clip in this mode; 0 = data.clip_len (paper: 60)
        "warm_up": 0.6,             # dense warm-up, fraction of the epochs (paper: 60 of 100)
        "ramp": 0.0,                # linear sparsity ramp after the warm-up, fraction of epochs; 0 = jump
        "use_abs": False,           # threshold |S| instead of signed scores
        "penalty": "",              # "" | gl | gsgl: warm-up penalty (with gradients)
        "penalty_lambda": "gradual",  # "gradual" or a number
        "residual_tau_zero": False,  # the paper code's residual tau=0 quirk
        "two_phase": 0.0,           # fraction of epochs after which only scores train; 0 = joint (paper)
        "lr_schedule": "cosine_epoch",  # the paper's sparse configs anneal per epoch
        "graph_mode": "random",     # the paper's learnable random adjacency
        "gcn_adaptive": "init",
    },
    "ensemble": {
        "epochs": 0,                # 0 = train.epochs
        "clip_len": 0,              # frames per clip in this mode; 0 = data.clip_len (paper: 100)
        "sparsities": [0.6, 0.8, 0.95, 0.99],
        "warm_up": 0.8,             # paper: 80 of 100 epochs
        "penalty": "gsgl",          # paper: GSGL, lambda gradual (generator.penalty_lambda)
        "grad_clip": 45.0,
        "lr_schedule": "cosine_epoch",
        "graph_mode": "random",
        "gcn_adaptive": "init",
    },
    "lottery": {
        "levels": 3,                # pruning levels after the dense level 0
        "fraction": 0.2,            # of the remaining weights per level
        "edge_fraction": 0.0,       # of the remaining edges per level (UGS: 0.05)
        "rewind_step": 0,           # iterations; 0 = rewind to initialisation
        "random_reinit": False,
        "random_prune": False,
    },
    "prune": {
        "finetune_epochs": 0,       # 0 = train.epochs
        "lr": 0.0,                  # 0 = train.lr
    },
    "dense": {
        "baseline": True,           # run a dense baseline for generate/ensemble/lottery/prune
        "epochs": 0,                # 0 = the epochs of the mode's sparse stage
    },
}

#: Tables whose keys are free-form (passed as keyword arguments to a constructor).
FREE_TABLES = {("data", "kwargs"), ("model", "backbone")}


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


def _check_keys(cfg: Mapping, ref: Mapping, where: tuple[str, ...], source: str) -> None:
    for k, v in cfg.items():
        path = (*where, k)
        if where in FREE_TABLES:
            continue
        if k not in ref:
            raise ConfigError(f"{source}: unknown key {'.'.join(path)!r}; valid keys of "
                              f"[{'.'.join(where) or 'top level'}]: {', '.join(sorted(ref))}")
        if isinstance(ref[k], dict):
            if not isinstance(v, Mapping):
                raise ConfigError(f"{source}: {'.'.join(path)} must be a table, got {v!r}")
            _check_keys(v, ref[k], path, source)


def merge(base: Mapping, override: Mapping, source: str = "config") -> dict:
    """Deep-merge ``override`` into a copy of ``base``; every key of ``override`` must exist in
    :data:`DEFAULTS` (except inside :data:`FREE_TABLES`)."""
    _check_keys(override, DEFAULTS, (), source)
    out = copy.deepcopy(dict(base))

    def rec(dst: dict, src: Mapping, where: tuple[str, ...]) -> None:
        for k, v in src.items():
            if isinstance(v, Mapping) and (*where, k) not in FREE_TABLES and isinstance(dst.get(k), dict):
                rec(dst[k], v, (*where, k))
            else:
                dst[k] = copy.deepcopy(v)

    rec(out, override, ())
    return out


def _parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
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


def get_key(cfg: Mapping, key: str, default: Any = None) -> Any:
    """``cfg['a']['b']`` for ``key='a.b'``."""
    cur: Any = cfg
    for part in key.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return default
        cur = cur[part]
    return cur


def set_key(cfg: dict, key: str, value: Any, source: str = "--set") -> None:
    """Set a dotted key, checking it exists in :data:`DEFAULTS` (or lies in a free table)."""
    parts = key.split(".")
    ref: Any = DEFAULTS
    free = False
    for i, part in enumerate(parts):
        where = tuple(parts[:i])
        if where in FREE_TABLES:
            free = True
            break
        if not isinstance(ref, Mapping) or part not in ref:
            valid = sorted(ref) if isinstance(ref, Mapping) else []
            table = ".".join(where) or "top level"
            raise ConfigError(f"{source}: unknown key {key!r}; valid keys of [{table}]: {', '.join(valid)}")
        ref = ref[part]
    if not free and isinstance(ref, dict) and tuple(parts) not in FREE_TABLES:
        raise ConfigError(f"{source}: {key!r} is a table; set one of its keys: {', '.join(sorted(ref))}")
    cur = cfg
    for part in parts[:-1]:
        cur = cur.setdefault(part, {})
    cur[parts[-1]] = value


def apply_sets(cfg: dict, items: list[str]) -> dict:
    """Apply ``--set`` overrides in order."""
    for item in items:
        k, v = parse_set(item)
        set_key(cfg, k, v)
    return cfg


def _type_ok(default: Any, value: Any) -> bool:
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, str):
        return isinstance(value, str)
    if isinstance(default, list):
        return isinstance(value, list)
    return True


def _choice(cfg: Mapping, key: str, choices: tuple, option: str | None = None) -> None:
    v = get_key(cfg, key)
    if v not in choices:
        name = option or key
        raise ConfigError(f"{name}: invalid value {v!r}; valid choices: {', '.join(map(str, choices))}")


def _fraction(cfg: Mapping, key: str, option: str | None = None, closed: bool = False) -> None:
    v = get_key(cfg, key)
    hi_ok = v <= 1 if closed else v < 1
    if not (isinstance(v, (int, float)) and 0 <= v and hi_ok):
        rng = "[0, 1]" if closed else "[0, 1)"
        raise ConfigError(f"{option or key}: {v!r} is not a fraction in {rng} (sparsity is the fraction of "
                          f"entries that are zero)")


def validate_config(cfg: dict, options: Mapping[str, str] | None = None) -> dict:
    """Check types and values of a resolved configuration; ints given for float keys become floats.

    Args:
        cfg (dict): The configuration.
        options (dict, optional): Maps a dotted key to the CLI option that set it, so messages name the option
            the user typed. (default: :obj:`None`)

    Raises:
        ConfigError: naming the key/option and the valid values.
    """
    opt = dict(options or {})

    def name(key: str) -> str:
        return opt.get(key, key)

    def rec(c: dict, ref: Mapping, where: tuple[str, ...]) -> None:
        for k, d in ref.items():
            path = (*where, k)
            if path in FREE_TABLES:
                if not isinstance(c.get(k, {}), Mapping):
                    raise ConfigError(f"{'.'.join(path)} must be a table")
                continue
            if isinstance(d, dict):
                rec(c.setdefault(k, {}), d, path)
                continue
            v = c.get(k, d)
            if not _type_ok(d, v):
                raise ConfigError(f"{name('.'.join(path))}: expected {type(d).__name__}, got {v!r}")
            if isinstance(d, float) and isinstance(v, int):
                v = float(v)
            c[k] = v

    _check_keys(cfg, DEFAULTS, (), "config")
    rec(cfg, DEFAULTS, ())
    _choice(cfg, "run.mode", MODES, name("run.mode"))
    _choice(cfg, "model.name", MODELS, name("model.name"))
    _choice(cfg, "data.feats", FEATS, name("data.feats"))
    _choice(cfg, "train.lr_schedule", LR_SCHEDULES, name("train.lr_schedule"))
    _choice(cfg, "generator.lr_schedule", LR_SCHEDULES, name("generator.lr_schedule"))
    _choice(cfg, "ensemble.lr_schedule", LR_SCHEDULES, name("ensemble.lr_schedule"))
    _choice(cfg, "eval.average_clips", AVERAGE_CLIPS, name("eval.average_clips"))
    _choice(cfg, "sparsity.scope", SCOPES, name("sparsity.scope"))
    _choice(cfg, "generator.penalty", ("", "gl", "gsgl"), name("generator.penalty"))
    _choice(cfg, "ensemble.penalty", ("", "gl", "gsgl"), name("ensemble.penalty"))
    _fraction(cfg, "sparsity.sparsity", name("sparsity.sparsity"))
    _fraction(cfg, "sparsity.edge_sparsity", name("sparsity.edge_sparsity"))
    _fraction(cfg, "generator.warm_up", name("generator.warm_up"))
    _fraction(cfg, "generator.two_phase", name("generator.two_phase"))
    _fraction(cfg, "generator.ramp", name("generator.ramp"))
    _fraction(cfg, "ensemble.warm_up", name("ensemble.warm_up"))
    _fraction(cfg, "lottery.fraction", name("lottery.fraction"))
    _fraction(cfg, "lottery.edge_fraction", name("lottery.edge_fraction"))
    for s in cfg["ensemble"]["sparsities"]:
        if not isinstance(s, (int, float)) or not 0 <= s < 1:
            raise ConfigError(f"ensemble.sparsities: {s!r} is not a fraction in [0, 1)")
    if not cfg["ensemble"]["sparsities"]:
        raise ConfigError("ensemble.sparsities: needs at least one sparsity level")
    lam = cfg["generator"]["penalty_lambda"]
    if not (lam == "gradual" or (isinstance(lam, (int, float)) and not isinstance(lam, bool) and lam >= 0)):
        raise ConfigError(f"generator.penalty_lambda: expected 'gradual' or a number >= 0, got {lam!r}")
    positive = {"train.epochs": 1, "data.batch_size": 1, "data.clip_len": 0, "data.num_person": 0,
                "eval.num_clips": 1,
                "model.base_channels": 1, "model.num_stages": 1, "train.eval_every": 0, "data.num_workers": 0,
                "data.test_batch_size": 0, "train.max_epochs_this_run": 0, "lottery.levels": 0,
                "lottery.rewind_step": 0, "prune.finetune_epochs": 0, "dense.epochs": 0,
                "generator.epochs": 0, "ensemble.epochs": 0, "run.threads": 0,
                "generator.clip_len": 0, "ensemble.clip_len": 0}
    for key, lo in positive.items():
        v = get_key(cfg, key)
        if v < lo:
            raise ConfigError(f"{name(key)}: must be >= {lo}, got {v}")
    for key in ("train.lr", "train.weight_decay", "train.momentum", "train.warmup_epochs", "train.min_lr",
                "train.grad_clip", "prune.lr"):
        v = get_key(cfg, key)
        if not math.isfinite(v) or v < 0:
            raise ConfigError(f"{name(key)}: must be a finite number >= 0, got {v}")
    if cfg["train"]["lr"] <= 0:
        raise ConfigError(f"{name('train.lr')}: must be > 0, got {cfg['train']['lr']}")
    dev = cfg["run"]["device"]
    if not (dev in ("auto", "cpu", "cuda") or (dev.startswith("cuda:") and dev[5:].isdigit())):
        raise ConfigError(f"{name('run.device')}: invalid device {dev!r}; valid: {DEVICES_HELP}")
    return cfg


# --- TOML writer ----------------------------------------------------------------------------------
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


def to_toml(cfg: Mapping, header: str = "") -> str:
    """Serialise a nested ``dict`` to TOML (tables, strings, numbers, booleans, lists, inline tables for
    empty or nested free tables). ``tomllib.loads(to_toml(cfg)) == cfg`` for every configuration."""
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
