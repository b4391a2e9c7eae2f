"""The :class:`Mode` base, the registry of modes and the :class:`Invocation` (what the command line asked
besides the configuration).

A mode is a subclass of :class:`Mode` registered with :func:`register_mode`; its class attributes say what it
needs (data, a checkpoint, a run directory, which settings it reads, which scopes it accepts), and the CLI's
``--mode`` choices and conflict checks are derived from them. ``run(session)`` does the work and returns the
mode's part of ``summary.json``.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ..config import RANK_CLI, RANK_FILE, Config, ConfigError

if TYPE_CHECKING:
    from ..session import Session

__all__ = ["Mode", "Invocation", "register_mode", "get_mode", "mode_names", "MODES", "COMMON_READS"]

#: Mode name → class, in registration order.
MODES: dict[str, type[Mode]] = {}

#: The sections every training mode reads.
COMMON_READS: tuple[str, ...] = ("run", "data", "model", "train", "eval")


def register_mode(cls: type[Mode]) -> type[Mode]:
    """Class decorator: add a :class:`Mode` subclass to the registry under ``cls.name``."""
    if not getattr(cls, "name", ""):
        raise ValueError(f"{cls.__name__} has no name")
    if cls.name in MODES and MODES[cls.name] is not cls:
        raise ValueError(f"mode {cls.name!r} is registered twice ({MODES[cls.name].__name__}, {cls.__name__})")
    MODES[cls.name] = cls
    return cls


def mode_names() -> tuple[str, ...]:
    """The registered mode names (the ``--mode`` choices)."""
    from . import _load_all

    _load_all()
    return tuple(MODES)


def get_mode(name: str) -> Mode:
    """An instance of the mode ``name``.

    Raises:
        ConfigError: for an unknown name, listing the valid ones.
    """
    names = mode_names()
    if name not in MODES:
        raise ConfigError(f"--mode: unknown mode {name!r}; valid choices: {', '.join(names)}")
    return MODES[name]()


def _or(items: list[str], sep: str = ", ", last: str = " or ") -> str:
    return items[0] if len(items) == 1 else sep.join(items[:-1]) + last + items[-1]


@dataclass
class Invocation:
    """What the command line asked besides the configuration.

    Attributes:
        checkpoint (str, optional): ``--checkpoint``.
        fuse (tuple of str): ``--fuse`` run directories.
        target (str, optional): The positional ``RUN_DIR``.
        resume (str, optional): ``--resume`` run directory.
        targets (tuple of str): Every positional run directory (``analyze RUN_DIR RUN_DIR ...``).
        compare (bool): ``--compare`` (analyze: compare the runs).
    """

    checkpoint: str | None = None
    fuse: tuple[str, ...] = ()
    target: str | None = None
    resume: str | None = None
    targets: tuple[str, ...] = ()
    compare: bool = False

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """Conflicts that do not depend on the mode (checked once, when the invocation is made)."""
        if self.checkpoint and self.resume:
            raise ConfigError("--checkpoint conflicts with --resume: --resume continues a run from its own "
                              "checkpoints")
        if self.fuse and self.checkpoint:
            raise ConfigError("--fuse conflicts with --checkpoint: fusion reads saved scores, it runs no model")


class Mode(ABC):
    """One thing the CLI runs.

    Class attributes (read by the CLI and by :func:`~pyg_sparse_stgcn.engine.session.execute`):

    * ``name`` — the ``--mode`` value; ``label`` — its row in the summary table.
    * ``checkpoint`` — ``'no'``, ``'optional'`` or ``'required'``: whether ``--checkpoint`` applies.
    * ``trains`` — the mode trains (opens the training split, can be resumed).
    * ``creates_run`` — the mode writes a run directory (``analyze`` reads one instead).
    * ``takes_run_dir`` / ``accepts_fuse`` — the positional ``RUN_DIR`` / ``--fuse`` apply.
    * ``dense_baseline`` — a dense baseline of the same architecture is trained first (``dense.baseline``).
    * ``reads`` — the sections (``'train'``) and keys (``'sparsity.scope'``) the mode reads; setting any
      other on the command line is an error (a setting that nothing reads is not silently ignored).
    * ``scopes`` — the ``sparsity.scope`` values the mode's algorithm honours (:obj:`None`: not read).
    * ``clip_section`` — the section whose ``clip_len`` overrides ``data.clip_len`` in this mode.
    * ``hints`` — ``{key: text}`` appended to the message when ``key`` is set but not read.
    """

    name: ClassVar[str] = ""
    label: ClassVar[str] = ""
    checkpoint: ClassVar[str] = "no"
    trains: ClassVar[bool] = True
    creates_run: ClassVar[bool] = True
    takes_run_dir: ClassVar[bool] = False
    accepts_fuse: ClassVar[bool] = False
    dense_baseline: ClassVar[bool] = False
    reads: ClassVar[tuple[str, ...]] = COMMON_READS
    scopes: ClassVar[tuple[str, ...] | None] = None
    clip_section: ClassVar[str | None] = None
    hints: ClassVar[Mapping[str, str]] = {}

    # ---- what the mode needs --------------------------------------------------------------------------
    @classmethod
    def reads_key(cls, key: str) -> bool:
        """Whether the mode reads the dotted ``key`` (``run.mode`` is read by every mode)."""
        if key == "run.mode":
            return True
        parts = key.split(".")
        return any(r == parts[0] or r == ".".join(parts[:2]) for r in cls.reads)

    def needs_data(self, inv: Invocation) -> bool:
        """Whether this invocation opens the dataset."""
        return self.creates_run

    # ---- checks (before any work) ---------------------------------------------------------------------
    def check(self, cfg: Config, inv: Invocation) -> None:
        """Reject options that do not apply to this mode and settings it cannot honour, then
        :meth:`resolve` related settings. Called before any work.

        Raises:
            ConfigError: naming the option and the valid choices.
        """
        modes = [MODES[n] for n in mode_names()]
        if inv.checkpoint and self.checkpoint == "no":
            ok = [m.name for m in modes if m.checkpoint != "no"]
            raise ConfigError(f"--checkpoint applies to --mode {_or(ok)}, not {self.name} (use --resume RUN_DIR "
                              f"to continue a run)")
        if self.checkpoint == "required" and not inv.checkpoint:
            raise ConfigError(f"--mode {self.name} needs --checkpoint (a run directory, its checkpoints/model.pt "
                              f"or a PYSKL .pth)")
        if inv.fuse and not self.accepts_fuse:
            ok = [m.name for m in modes if m.accepts_fuse]
            raise ConfigError(f"--fuse only applies to --mode {_or(ok)} (got --mode {self.name})")
        if inv.target and not self.takes_run_dir:
            ok = [m.name for m in modes if m.takes_run_dir]
            raise ConfigError(f"the positional RUN_DIR {inv.target!r} applies to --mode {_or(ok)}, not "
                              f"{self.name}")
        if inv.resume and not self.trains:
            raise ConfigError(f"--resume conflicts with --mode {self.name} (nothing to resume)")
        for key in cfg.explicit(RANK_CLI):
            if not self.reads_key(key):
                ok = [m.name for m in modes if m.reads_key(key)]
                where = f"applies to --mode {' | '.join(ok)}, not {self.name}" if ok else \
                    f"is read by no mode (--mode {self.name} ignores it)"
                hint = self.hints.get(key, "")
                raise ConfigError(f"{cfg.name(key)} {where}{': ' + hint if hint else ''}")
        if self.reads_key("model.backbone"):
            _check_backbone_keys(cfg)
        if self.scopes is not None and cfg.sparsity.scope not in self.scopes:
            raise ConfigError(f"{cfg.name('sparsity.scope')}: --mode {self.name} does not support scope "
                              f"{cfg.sparsity.scope!r}; valid choices: {', '.join(self.scopes)}")
        if self.needs_data(inv):
            from ...data.datasets import get_source

            root = cfg.data.root
            if (root and cfg.rank("data.root") >= RANK_FILE and not Path(root).is_dir()
                    and not get_source(cfg.data.name).synthetic):
                raise ConfigError(f"--root: directory {root} does not exist (point --root at the dataset files)")
        self.resolve(cfg, inv)

    def resolve(self, cfg: Config, inv: Invocation) -> None:  # noqa: B027 (an optional hook; default: nothing)
        """Reconcile related settings of this mode in ``cfg`` (in place) and check what only the mode knows;
        the result is what ``config.toml`` records. Default: nothing."""

    # ---- work -----------------------------------------------------------------------------------------
    @abstractmethod
    def run(self, session: Session) -> dict[str, Any]:
        """Do the work; returns the mode's part of ``summary.json``."""

    # ---- output ---------------------------------------------------------------------------------------
    def format_summary(self, summary: Mapping[str, Any]) -> str:
        """The table printed at the end: dense baseline (if any) and this mode's model, accuracy, sparsity
        of weights and edges (entries and connections) and parameter counts."""
        rows = []
        if isinstance(summary.get("dense"), Mapping):
            rows.append(("dense baseline", summary["dense"]))
        rows.append((self.label or self.name, summary))
        head = (f"{'':<20} {'top-1':>7} {'top-5':>7} {'mean-cls':>8} {'w-sparse':>9} {'e-sparse':>9} "
                f"{'e-conn':>7} {'params stored':>14} {'params kept':>12}")
        lines = [f"\n{summary.get('data')} / {summary.get('mode')} / {summary.get('model', '')}", head]
        for name, r in rows:
            lines.append(f"{name:<20} {_fmt(r.get('top1')):>7} {_fmt(r.get('top5')):>7} "
                         f"{_fmt(r.get('mean_class_accuracy')):>8} {_fmt(r.get('weight_sparsity')):>9} "
                         f"{_fmt(r.get('edge_sparsity')):>9} {_fmt(r.get('edge_sparsity_connections')):>7} "
                         f"{_fmt(r.get('params_stored'), False):>14} {_fmt(r.get('params_kept'), False):>12}")
        lines += self.extra_lines(summary)
        lines.append(f"run directory: {summary.get('run_dir')}")
        return "\n".join(lines)

    def extra_lines(self, summary: Mapping[str, Any]) -> list[str]:
        """Mode-specific lines under the table."""
        return []

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def _check_backbone_keys(cfg: Config) -> None:
    """``model.backbone`` keys must be keyword arguments of the model class (or ``gcn_*`` / ``tcn_*`` unit
    options); the engine's own arguments are set through their ``[model]`` keys."""
    import difflib
    import inspect

    from ..models import MODELS

    cls = MODELS[cfg.model.name].cls
    own = {"in_channels": "the dataset", "base_channels": "model.base_channels", "num_stages": "model.num_stages",
           "num_person": "data.num_person", "backend": "model.backend", "graph_cfg": "model.graph_mode"}
    params = set()
    for c in cls.__mro__:
        init = c.__dict__.get("__init__")
        if init is not None:
            params |= {n for n, p in inspect.signature(init).parameters.items()
                       if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and n != "self"}
    for key in cfg.model.backbone:
        if key in own:
            raise ConfigError(f"{cfg.name('model.backbone.' + key)}: {key} is set by {own[key]}, not model.backbone")
        if key in params or key.startswith(("gcn_", "tcn_")):
            continue
        near = difflib.get_close_matches(key, sorted(params - set(own)), n=3, cutoff=0.6)
        raise ConfigError(f"{cfg.name('model.backbone.' + key)}: {cls.__name__} has no argument {key!r} "
                          f"(model.backbone takes its keyword arguments and gcn_* / tcn_* unit options)"
                          + (f"; did you mean {' or '.join(near)}?" if near else ""))


def _fmt(v: Any, pct: bool = True) -> str:
    if v is None:
        return "-"
    if pct:
        return f"{100 * v:.1f}%"
    return f"{v:,}"
