r"""Iterative magnitude pruning with rewinding (lottery tickets), OpenLTH semantics.

Level 0 trains the dense model. Every later level removes the fraction ``fraction`` of the *remaining*
weight entries (``edge_fraction`` of the remaining edges) by global magnitude of the previous level's trained
values, rewinds every parameter and buffer (masks excepted) to the state at ``rewind_step`` (0 = the
initialisation), and retrains. After :math:`L` levels a kind keeps about :math:`(1 - f)^L` of its entries
(sparsity 0.2, 0.36, 0.488, … for :math:`f = 0.2`; exact counts round half up at every level).

This is *our* LTH protocol (the paper's repository has no IMP code; ``reference/method.md`` §2).

The training function
---------------------
IMP drives any training routine with this signature::

    def train_fn(model, *, level: int, out_dir: pathlib.Path, start_step: int,
                 on_step: Callable[[int], None]) -> dict:
        ...  # train ``model`` to completion (the masks are attached parametrizations)
        return {"top1": ...}  # JSON-serialisable metrics of the level

``on_step(step)`` must be called after every optimiser step with the number of steps done so far (1, 2, …);
IMP snapshots the rewind state when ``step == rewind_step`` during level 0. ``start_step`` is 0 at level 0
and ``rewind_step`` at later levels (for schedules that continue from the rewind point). The engine's
``Trainer`` takes both directly::

    def train_fn(model, *, level, out_dir, start_step, on_step):
        result = Trainer(model, train_data, epochs=E, batch_size=B, start_step=start_step,
                         on_step=on_step, run_dir=RunDir(out_dir)).fit()
        return {"loss": result["history"][-1]["loss"]}

Output layout (every file written atomically; a finished level is skipped on resume)::

    out_dir/imp.json                     configuration
    out_dir/rewind.pt                    state dict at ``rewind_step`` (loads with ``weights_only=True``)
    out_dir/level_<L>/mask.pt            {target name: bool mask} used for this level
    out_dir/level_<L>/sparsity_report.json
    out_dir/level_<L>/metrics.json       what ``train_fn`` returned (+ level, sparsities)
    out_dir/level_<L>/trained.pt         trained state dict (pruning input of level L + 1)
    out_dir/level_<L>/<branch>/…          controls: ``random_reinit``, ``random_prune`` (same files)
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..atomic import atomic_torch_save, atomic_write_json
from .magnitude import check_scope, check_sparsity, prune_groups, shuffle_masks
from .masks import _register, _unregister, attach_masks, load_mask_state_dict, mask_state_dict, masked_targets
from .report import report
from .targets import KINDS, normalize_kinds

__all__ = ["IterativeMagnitudePruning", "BRANCHES", "expected_sparsity", "levels_for", "level_fractions"]

BRANCHES = ("random_reinit", "random_prune")
TrainFn = Callable[..., dict]


def expected_sparsity(fraction: float, level: int) -> float:
    r"""Nominal sparsity after ``level`` levels: :math:`1 - (1 - f)^L`."""
    return 1.0 - (1.0 - fraction) ** level


def levels_for(target: float, fraction: float) -> int:
    r"""Fewest levels whose nominal sparsity :math:`1 - (1 - f)^L` reaches ``target``."""
    target, fraction = check_sparsity(target, "target_sparsity"), check_sparsity(fraction, "fraction")
    if target == 0.0:
        return 0
    if fraction == 0.0:
        raise ValueError(f"fraction=0 never reaches target_sparsity={target}")
    return max(1, math.ceil(math.log1p(-target) / math.log1p(-fraction) - 1e-9))


def level_fractions(fraction: float, levels: int, target: float | None = None) -> list[float]:
    r"""Per-level pruning fractions (of the *remaining* entries) for levels :math:`1..L`.

    Without ``target`` every level removes ``fraction``. With ``target`` the last level is trimmed so the
    nominal sparsity after it is exactly ``target``: :math:`f_L = 1 - (1 - s) / (1 - f)^{L-1}`.
    """
    out = [fraction] * levels
    if target is not None and levels > 0:
        before = 1.0 - (1.0 - fraction) ** (levels - 1)
        out[-1] = 1.0 - (1.0 - target) / (1.0 - before)
    return out


def _rank() -> int:
    dist = torch.distributed
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _barrier() -> None:
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def _save_json(path: Path, obj: Any) -> None:
    if _rank() == 0:
        atomic_write_json(path, obj)


def _save_pt(path: Path, obj: Any) -> None:
    if _rank() == 0:
        atomic_torch_save(obj, path)


def _load_pt(path: Path) -> Any:
    return torch.load(path, map_location="cpu", weights_only=True)


def _unmasked_state(model: nn.Module) -> dict[str, Tensor]:
    """State dict without the mask buffers (what rewinding restores)."""
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items() if not k.endswith(".0.mask")}


class IterativeMagnitudePruning:
    r"""Lottery-ticket search by iterative magnitude pruning with rewinding (OpenLTH semantics).

    Args:
        model (torch.nn.Module): The model at initialisation; masks (no scores) are attached in place.
        train_fn (callable): The training routine (signature in the module docstring).
        out_dir (str or pathlib.Path): Run directory.
        levels (int, optional): Pruning levels after the dense level 0 (levels ``0..levels`` are trained);
            :obj:`None` derives them from ``target_sparsity`` (:func:`levels_for`). (default: :obj:`None`)
        fraction (float, optional): Fraction of the remaining weight entries removed per level.
            (default: :obj:`0.2`)
        edge_fraction (float, optional): Fraction of the remaining real edge entries removed per level;
            defaults to ``fraction`` (UGS uses 0.05). (default: :obj:`None`)
        target_sparsity (float, optional): Weight sparsity the last level reaches exactly: its fraction is
            trimmed (:func:`level_fractions`). Conflicts with a ``levels`` that cannot reach it or
            overshoots it by a whole level. (default: :obj:`None`)
        edge_target_sparsity (float, optional): The same for edges (over the same levels).
            (default: :obj:`None`)
        kinds (str or tuple, optional): ``'weight'``, ``'edge'`` or both. (default: :obj:`('weight', 'edge')`)
        scope (str, optional): ``'global'`` (OpenLTH ``sparse_global``), ``'block'`` (per ST block) or
            ``'layer'``. (default: :obj:`'global'`)
        rewind_step (int, optional): Optimiser step whose state later levels restart from; 0 = the
            initialisation. (default: :obj:`0`)
        branches (sequence of str, optional): Controls trained at every level :math:`\ge 1` on the same
            masks: ``'random_reinit'`` (same mask, fresh initialisation, trained from ``rewind_step`` like
            OpenLTH's branch) and ``'random_prune'`` (each target's mask shuffled over its real entries, same
            per-layer counts, rewound weights). (default: :obj:`()`)

    Under :mod:`torch.distributed` every rank trains, and rank 0 alone writes the files (the training
    function should return metrics already reduced over the ranks, as the engine's evaluation does).
        seed (int, optional): Seed of the controls' randomness. (default: :obj:`0`)
        reinit_fn (callable, optional): ``reinit_fn(model, generator)`` re-initialises the parameters for
            ``random_reinit``; default: ``reset_parameters()`` of every submodule that has one (under a
            seeded RNG). (default: :obj:`None`)
    """

    def __init__(self, model: nn.Module, train_fn: TrainFn, out_dir: str | os.PathLike, levels: int | None = None,
                 fraction: float = 0.2, edge_fraction: float | None = None,
                 kinds: str | Iterable[str] = KINDS, scope: str = "global", rewind_step: int = 0,
                 branches: Sequence[str] = (), seed: int = 0,
                 reinit_fn: Callable[[nn.Module, int], None] | None = None,
                 target_sparsity: float | None = None, edge_target_sparsity: float | None = None) -> None:
        if not callable(train_fn):
            raise ValueError(f"train_fn must be callable, got {type(train_fn).__name__}")
        fraction = check_sparsity(fraction, "fraction")
        if target_sparsity is not None:
            target_sparsity = check_sparsity(target_sparsity, "target_sparsity")
            needed = levels_for(target_sparsity, fraction)
            if levels is None:
                levels = needed
            elif levels != needed:
                raise ValueError(f"levels={levels} conflicts with target_sparsity={target_sparsity}: with "
                                 f"fraction={fraction} it takes {needed} levels (the last one trimmed); "
                                 "give one of the two")
        if levels is None:
            raise ValueError("give levels or target_sparsity")
        if isinstance(levels, bool) or not isinstance(levels, int) or levels < 0:
            raise ValueError(f"levels must be a non-negative int, got {levels!r}")
        if not isinstance(rewind_step, int) or rewind_step < 0:
            raise ValueError(f"rewind_step must be a non-negative int, got {rewind_step!r}")
        bad = [b for b in branches if b not in BRANCHES]
        if bad:
            raise ValueError(f"branches must be a subset of {BRANCHES}, got {tuple(branches)!r}")
        self.model = model
        self.train_fn = train_fn
        self.out_dir = Path(out_dir)
        self.levels = levels
        self.fraction = {"weight": fraction}
        self.fraction["edge"] = self.fraction["weight"] if edge_fraction is None else check_sparsity(
            edge_fraction, "edge_fraction")
        self.target_sparsity = {"weight": target_sparsity, "edge": None}
        if edge_target_sparsity is not None:
            self.target_sparsity["edge"] = check_sparsity(edge_target_sparsity, "edge_target_sparsity")
        #: per kind, the fraction removed at levels 1..levels
        self.schedule = {k: level_fractions(self.fraction[k], levels, self.target_sparsity[k]) for k in KINDS}
        for kind, rates in self.schedule.items():
            if rates and not 0.0 <= rates[-1] < 1.0:
                raise ValueError(f"{kind} target sparsity {self.target_sparsity[kind]} is not reachable in "
                                 f"{levels} levels of fraction {self.fraction[kind]}")
        self.kinds = normalize_kinds(kinds)
        self.scope = check_scope(scope)
        self.rewind_step = rewind_step
        self.branches = tuple(branches)
        self.seed = seed
        self.reinit_fn = reinit_fn
        self.targets = attach_masks(model, self.kinds)

    # ------------------------------------------------------------------ helpers
    def level_dir(self, level: int, branch: str | None = None) -> Path:
        """Directory of ``level`` (and of a control ``branch``)."""
        d = self.out_dir / f"level_{level}"
        return d / branch if branch else d

    def config(self) -> dict[str, Any]:
        """The run configuration written to ``imp.json``."""
        return {"levels": self.levels, "fraction": self.fraction["weight"],
                "edge_fraction": self.fraction["edge"], "target_sparsity": self.target_sparsity["weight"],
                "edge_target_sparsity": self.target_sparsity["edge"],
                "kinds": list(self.kinds), "scope": self.scope, "rewind_step": self.rewind_step,
                "branches": list(self.branches), "seed": self.seed}

    def _done(self, d: Path) -> bool:
        return (d / "metrics.json").exists()

    def _prune_from(self, level: int, masks: dict[str, Tensor], trained: dict[str, Tensor]) -> dict[str, Tensor]:
        """Masks of ``level``: load the previous level's trained values and masks, prune each kind."""
        self.model.load_state_dict(trained, strict=False)
        load_mask_state_dict(self.model, masks)
        prune_groups(self.targets, self.kinds, self.scope, {k: self.schedule[k][level - 1] for k in KINDS})
        return mask_state_dict(self.model)

    def _rewind(self, rewind: dict[str, Tensor]) -> None:
        missing, unexpected = self.model.load_state_dict(rewind, strict=False)
        bad = [k for k in missing if not k.endswith(".0.mask")]
        if bad or unexpected:
            raise ValueError(f"rewind state does not match the model: missing {bad[:5]}, "
                             f"unexpected {list(unexpected)[:5]}")

    def _reinit(self, level: int) -> None:
        seed = self.seed * 1000 + level + 1
        if self.reinit_fn is not None:
            self.reinit_fn(self.model, seed)
            return
        # reset_parameters writes through ``module.weight``, which under a parametrization is a computed
        # tensor: take every mask off (the originals stay), reset, and put the same masks back.
        attached = masked_targets(self.model)
        for t, _ in attached:
            _unregister(t.module, t.attr)
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                for m in self.model.modules():
                    reset = getattr(m, "reset_parameters", None)
                    if m is not self.model and callable(reset):
                        reset()
        finally:
            for t, mask in attached:
                _register(t.module, t.attr, mask)

    def _train_level(self, d: Path, level: int, masks: dict[str, Tensor], start_step: int,
                     on_step: Callable[[int], None]) -> dict[str, Any]:
        load_mask_state_dict(self.model, masks)
        d.mkdir(parents=True, exist_ok=True)
        _save_pt(d / "mask.pt", masks)
        rep = report(self.model, self.kinds)
        _save_json(d / "sparsity_report.json", rep.to_dict())
        metrics = self.train_fn(self.model, level=level, out_dir=d, start_step=start_step, on_step=on_step)
        metrics = dict(metrics or {})
        metrics.update({"level": level, "sparsity": {k: v["sparsity"] for k, v in rep.kinds.items()},
                        "overall_sparsity": rep.overall["sparsity"]})
        _save_pt(d / "trained.pt", _unmasked_state(self.model))
        _save_json(d / "metrics.json", metrics)
        _barrier()  # every rank sees the level's files (and the rewind state) before going on
        return metrics

    # ------------------------------------------------------------------ run
    def run(self) -> list[dict[str, Any]]:
        """Train every level (skipping finished ones) and the control branches; returns the metrics."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        cfg_path = self.out_dir / "imp.json"
        if cfg_path.exists():
            old = json.loads(cfg_path.read_text())
            # ``levels`` may grow between runs (extend a finished run); everything else must match.
            # (keys added later, such as the target sparsities, read as None in older files)
            new = {k: v for k, v in self.config().items() if k != "levels"}
            if {k: old.get(k) for k in new} != new:
                raise ValueError(f"{cfg_path} holds another configuration {old}; use a new out_dir or the "
                                 f"same settings {self.config()} to resume")
        _save_json(cfg_path, self.config())
        _barrier()
        rewind_path = self.out_dir / "rewind.pt"
        results: list[dict[str, Any]] = []
        masks = mask_state_dict(self.model)
        masks = {k: torch.ones_like(v) for k, v in masks.items()}
        prev_trained: dict[str, Tensor] | None = None
        for level in range(self.levels + 1):
            d = self.level_dir(level)
            if level > 0:
                assert prev_trained is not None  # level L - 1 finished (trained or loaded) above
                masks = self._prune_from(level, masks, prev_trained)
            if self._done(d):
                saved = _load_pt(d / "mask.pt")
                if level > 0 and any(not torch.equal(saved[k], masks[k]) for k in masks):
                    raise ValueError(f"{d / 'mask.pt'} differs from the mask recomputed from level "
                                     f"{level - 1}; the run directory is inconsistent")
                results.append(json.loads((d / "metrics.json").read_text()))
                prev_trained = _load_pt(d / "trained.pt")
            else:
                if level == 0:
                    if self.rewind_step == 0:
                        _save_pt(rewind_path, _unmasked_state(self.model))
                    on_step = self._snapshotter(rewind_path)
                else:
                    self._rewind(_load_pt(rewind_path))
                    on_step = _noop
                results.append(self._train_level(d, level, masks, 0 if level == 0 else self.rewind_step,
                                                 on_step))
                if not rewind_path.exists():
                    raise ValueError(f"train_fn never called on_step({self.rewind_step}) at level 0, so no "
                                     "rewind state was saved; call on_step after every optimiser step")
                prev_trained = _unmasked_state(self.model)
            if level > 0:
                for branch in self.branches:
                    self._run_branch(level, branch, masks)
        return results

    def _snapshotter(self, rewind_path: Path) -> Callable[[int], None]:
        def on_step(step: int) -> None:
            if self.rewind_step > 0 and step == self.rewind_step:
                _save_pt(rewind_path, _unmasked_state(self.model))
        return on_step

    def _run_branch(self, level: int, branch: str, masks: dict[str, Tensor]) -> None:
        d = self.level_dir(level, branch)
        if self._done(d):
            return
        gen = torch.Generator().manual_seed(self.seed * 1000 + level)
        self._rewind(_load_pt(self.out_dir / "rewind.pt"))
        if branch == "random_reinit":
            self._reinit(level)
            branch_masks = masks
        else:
            branch_masks = shuffle_masks(masks, gen)
        # both controls train from the rewind step, like OpenLTH's branches
        self._train_level(d, level, branch_masks, self.rewind_step, _noop)


def _noop(step: int) -> None:
    return None
