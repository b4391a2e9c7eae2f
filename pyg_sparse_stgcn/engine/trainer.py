"""The training loop: SGD + cosine LR, AMP, ``torch.compile``, DDP, atomic checkpoints and exact resume."""
from __future__ import annotations

import contextlib
import math
import random
import time
import warnings
from collections.abc import Callable, Iterable, Sequence, Sized
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

from ..nn.compile import compile_model
from . import distributed as D
from .evaluate import evaluate, unpack_batch
from .rundir import RunDir, atomic_torch_save

__all__ = ["Trainer", "EpochBudget", "TrainingInterrupted", "seed_everything", "resolve_device",
           "get_rng_state", "set_rng_state", "call_set_epoch", "CHECKPOINT_FORMAT", "LR_SCHEDULES", "PRECISIONS",
           "cpu_bf16_flags", "autocast_dtype", "precision_problem"]

CHECKPOINT_FORMAT = "pyg-sparse-stgcn"
#: Learning-rate schedules of :class:`Trainer`: cosine per iteration, cosine per epoch, constant.
LR_SCHEDULES = ("cosine", "cosine_epoch", "constant")
#: Training precisions of :class:`Trainer`: float32, or bfloat16 autocast (fp32 weights, BN and loss).
PRECISIONS = ("fp32", "bf16")
#: CPU flags (``/proc/cpuinfo``) of native bfloat16 arithmetic: x86 AVX512-BF16 / AMX-BF16, Arm BF16.
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")


def cpu_bf16_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> tuple[str, ...]:
    """The native-bfloat16 flags (:data:`BF16_CPU_FLAGS`) this CPU reports; empty when none or unreadable."""
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ()
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            flags.update(value.split())
    return tuple(f for f in BF16_CPU_FLAGS if f in flags)


def precision_problem(precision: str, device: torch.device | None = None) -> str | None:
    """Why ``precision`` cannot train on ``device`` (:obj:`None`: the CPU, or CUDA when available), or
    :obj:`None` when it can."""
    if precision not in PRECISIONS:
        return f"train.precision must be one of {', '.join(PRECISIONS)}, got {precision!r}"
    if device is None:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if precision == "bf16" and device.type == "cpu" and not cpu_bf16_flags():
        return ("train.precision='bf16': this CPU reports none of the native bfloat16 flags "
                f"{', '.join(BF16_CPU_FLAGS)} in /proc/cpuinfo (PyTorch capability "
                f"{torch.backends.cpu.get_cpu_capability()}); emulated bfloat16 would be slower than float32, "
                "use train.precision='fp32'")
    return None


def autocast_dtype(precision: str, device: torch.device, amp: bool = True) -> torch.dtype | None:
    """The autocast dtype of a training step: ``bfloat16`` for ``precision='bf16'`` (on CPU only when the CPU
    has native bfloat16, :func:`cpu_bf16_flags`), ``float16`` for ``amp`` on CUDA with ``'fp32'``, else
    :obj:`None` (no autocast).

    Raises:
        ValueError: An unknown ``precision``, or ``'bf16'`` on a CPU without native bfloat16.
    """
    problem = precision_problem(precision, device)
    if problem is not None:
        raise ValueError(problem)
    if precision == "bf16":
        return torch.bfloat16
    return torch.float16 if amp and device.type == "cuda" else None


def _to_float32(out: Any) -> Any:
    """Floating-point tensors of a model output (a tensor or a tuple/list of them) as float32."""
    if isinstance(out, Tensor):
        return out.float() if out.is_floating_point() else out
    if isinstance(out, (tuple, list)):
        return type(out)(_to_float32(o) for o in out)
    return out


class TrainingInterrupted(RuntimeError):
    """Raised when :class:`EpochBudget` is spent; the last checkpoint is on disk and ``--resume``
    continues."""


class EpochBudget:
    """Stops an invocation after ``max_epochs`` trained epochs (0 = no limit), across all stages of a run.

    The checkpoint of the last epoch is written before :class:`TrainingInterrupted` is raised, so this is the
    clean equivalent of killing a run after an epoch."""

    def __init__(self, max_epochs: int = 0) -> None:
        self.max_epochs = int(max_epochs)
        self.used = 0

    def spend(self) -> None:
        self.used += 1

    @property
    def spent(self) -> bool:
        return self.max_epochs > 0 and self.used >= self.max_epochs


def resolve_device(device: str = "auto") -> torch.device:
    """``'auto'`` → CUDA when available, else CPU; checks that a requested CUDA device exists."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device: {device!r} requested but CUDA is not available; valid: auto, cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"--device: {device!r} does not exist; {torch.cuda.device_count()} CUDA device(s)")
    return dev


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and PyTorch's (CPU and CUDA) global generators."""
    seed = int(seed) % (2**63)
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def _epoch_seed(seed: int, stage: str, epoch: int, rank: int) -> int:
    h = 0
    for ch in stage:
        h = (h * 131 + ord(ch)) % (2**31)
    return (int(seed) * 1_000_003 + h * 7919 + epoch * 1009 + rank * 17) % (2**31)


def get_rng_state() -> dict[str, Any]:
    """Python, NumPy, torch CPU and CUDA generator states, as tensors (load with ``weights_only=True``)."""
    py = random.getstate()
    npst: Any = np.random.get_state()
    return {
        "python": torch.tensor([py[0], *py[1]], dtype=torch.int64),
        "python_gauss": torch.tensor(float("nan") if py[2] is None else py[2], dtype=torch.float64),
        "numpy_keys": torch.from_numpy(npst[1].astype(np.int64)),
        "numpy_pos": torch.tensor([npst[2], npst[3]], dtype=torch.int64),
        "numpy_gauss": torch.tensor(npst[4], dtype=torch.float64),
        "torch": torch.get_rng_state(),
        "cuda": (torch.stack(torch.cuda.get_rng_state_all()) if torch.cuda.is_available()
                 else torch.zeros(0, dtype=torch.uint8)),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the states saved by :func:`get_rng_state`."""
    py = state["python"].tolist()
    g = float(state["python_gauss"])
    random.setstate((int(py[0]), tuple(int(v) for v in py[1:]), None if math.isnan(g) else g))
    pos, has_gauss = state["numpy_pos"].tolist()
    np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32), int(pos), int(has_gauss),
                         float(state["numpy_gauss"])))
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if (cuda is not None and cuda.numel() and torch.cuda.is_available()
            and len(cuda) == torch.cuda.device_count()):
        torch.cuda.set_rng_state_all(list(cuda))


def call_set_epoch(objects: Iterable[Any], epoch: int, total_epochs: int) -> None:
    """Call ``set_epoch(epoch, total_epochs)`` on every module of each object (a module) or on the object
    itself, once per object."""
    seen: set[int] = set()
    for obj in objects:
        items = obj.modules() if isinstance(obj, nn.Module) else [obj]
        for m in items:
            fn = getattr(m, "set_epoch", None)
            if callable(fn) and id(m) not in seen:
                seen.add(id(m))
                fn(epoch, total_epochs)


def _worker_init(worker_id: int) -> None:
    s = torch.initial_seed() % (2**32)
    np.random.seed(s)
    random.seed(s)


def _default_collate() -> Callable:
    from ..data.loader import collate_skeletons  # the library's batch type (x, y, .to(device))

    return collate_skeletons


class _CosineLambda:
    """LR factor: linear warm-up, then cosine (per iteration or per epoch) or constant."""

    def __init__(self, schedule: str, total: int, per_epoch: int, warmup: int, min_ratio: float) -> None:
        self.schedule, self.total, self.per_epoch = schedule, max(total, 1), max(per_epoch, 1)
        self.warmup, self.min_ratio = warmup, min_ratio

    def __call__(self, it: int) -> float:
        if self.warmup > 0 and it < self.warmup:
            return (it + 1) / self.warmup
        if self.schedule == "constant":
            return 1.0
        if self.schedule == "cosine_epoch":
            num = (it // self.per_epoch) * self.per_epoch
        else:
            num = it
        span = max(self.total - self.warmup, 1)
        progress = min(max(num - self.warmup, 0) / span, 1.0)
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class Trainer:
    r"""Train a classifier with PYSKL's recipe.

    SGD (momentum, Nesterov, weight decay on every parameter) with a cosine learning rate annealed per
    iteration (or per epoch) to ``min_lr``, an optional linear warm-up, gradient clipping, AMP on CUDA,
    bfloat16 autocast on CPUs with native bfloat16 (``precision='bf16'``), opt-in
    :func:`torch.compile`, and DDP when a ``torchrun`` process group exists (each process takes
    ``batch_size / world_size`` samples of the same global batch). At the start of every epoch
    ``set_epoch(epoch, epochs)`` is called on each module of the model (and on every callback) that defines
    it; the loss is ``model.compute_loss(output, y)`` when the model defines it, else cross entropy, plus
    ``extra_loss()`` of the model and callbacks when it returns a tensor. After every epoch the model
    (including masks and scores), optimiser, scheduler, AMP scaler, RNG states and epoch are saved
    atomically to ``checkpoints/<stage>-last.pt``; a run restarted with the same arguments continues from
    there and reaches the same final weights. The generators are re-seeded from ``(seed, stage, epoch,
    rank)`` at the start of each epoch, so the data order and augmentation of an epoch do not depend on what
    ran before it.

    Args:
        model (torch.nn.Module): The classifier; forward of :math:`(N, M, T, V, C)` gives logits.
        train_data (Dataset): Training samples.
        epochs (int): Number of epochs.
        batch_size (int): Global batch size (divisible by the number of DDP processes).
        val_data (Dataset, optional): Evaluated every ``eval_every`` epochs. (default: :obj:`None`)
        test_data (Dataset, optional): Evaluated once at the end (multi-clip batches are averaged with
            ``average_clips``); its scores are returned. (default: :obj:`None`)
        collate_fn (callable, optional): Batch collation; the library's loader collate when :obj:`None`.
        lr (float, optional): Peak learning rate. (default: :obj:`0.1`)
        momentum (float, optional): (default: :obj:`0.9`)
        nesterov (bool, optional): (default: :obj:`True`)
        weight_decay (float, optional): (default: :obj:`5e-4`)
        lr_schedule (str, optional): ``'cosine'`` (per iteration), ``'cosine_epoch'`` or ``'constant'``.
            (default: ``'cosine'``)
        warmup_epochs (float, optional): Linear LR warm-up length in epochs. (default: :obj:`0.0`)
        min_lr (float, optional): Final learning rate. (default: :obj:`0.0`)
        grad_clip (float, optional): Max global L2 gradient norm, 0 = off. (default: :obj:`0.0`)
        amp (bool, optional): float16 autocast + gradient scaling (only on CUDA, with ``precision='fp32'``).
            (default: :obj:`True`)
        precision (str, optional): ``'fp32'`` or ``'bf16'``: the forward pass and the loss's input under
            ``torch.autocast(dtype=torch.bfloat16)`` (GEMMs and convolutions in bfloat16 on CPUs with
            ``avx512_bf16`` / ``amx_bf16``, or on CUDA); the weights, the optimiser, the batch-norm
            parameters and running statistics, the loss and the masks stay float32. Evaluation runs in
            float32. A CPU without native bfloat16 raises a :class:`ValueError`. (default: ``'fp32'``)
        compile (bool, optional): Train through :func:`torch.compile` (:func:`~pyg_sparse_stgcn.nn.compile_model`).
            On CPU the compiled training step measured slower than eager; it is meant for GPUs.
            (default: :obj:`False`)
        sync_bn (bool, optional): Synchronise BatchNorm statistics across DDP processes.
            (default: :obj:`False`)
        num_workers (int, optional): DataLoader worker processes. (default: :obj:`0`)
        test_batch_size (int, optional): Evaluation batch size; ``batch_size`` when :obj:`None`.
        seed (int, optional): Seed. (default: :obj:`0`)
        device (str, optional): Device. (default: ``'cpu'``)
        eval_every (int, optional): Validate every N epochs; 0 = only after the last. (default: :obj:`1`)
        average_clips (str, optional): ``'prob'`` or ``'score'``. (default: ``'prob'``)
        parameters (iterable, optional): Parameters to optimise; all that require gradients when :obj:`None`.
        callbacks (sequence, optional): Further objects with ``set_epoch`` / ``extra_loss``. (default: ``()``)
        run_dir (RunDir, optional): Where checkpoints and ``metrics.jsonl`` go; nothing is written when
            :obj:`None`.
        stage (str, optional): Name of this training stage in file names and metric records. (default:
            ``'train'``)
        budget (EpochBudget, optional): Stop (resumably) after a number of epochs. (default: :obj:`None`)
        progress (bool, optional): tqdm bars for epochs and batches. (default: :obj:`True`)
        start_step (int, optional): Start the schedule at this optimiser step (the first ``start_step``
            iterations are skipped; lottery rewinding). (default: :obj:`0`)
        on_step (callable, optional): ``on_step(step)`` after every optimiser step with the number of steps
            done so far (1, 2, ...; counted from the start of the schedule). (default: :obj:`None`)
        find_unused_parameters (bool, optional): Passed to DDP; needed when parameters stop receiving
            gradients during training (the generator's scores-only phase). (default: :obj:`False`)
    """

    def __init__(self, model: nn.Module, train_data: Dataset, *, epochs: int, batch_size: int,
                 val_data: Dataset | None = None, test_data: Dataset | None = None,
                 collate_fn: Callable | None = None, lr: float = 0.1, momentum: float = 0.9,
                 nesterov: bool = True, weight_decay: float = 5e-4, lr_schedule: str = "cosine",
                 warmup_epochs: float = 0.0, min_lr: float = 0.0, grad_clip: float = 0.0, amp: bool = True,
                 precision: str = "fp32", compile: bool = False, sync_bn: bool = False, num_workers: int = 0,
                 test_batch_size: int | None = None, seed: int = 0, device: str | torch.device = "cpu",
                 eval_every: int = 1, average_clips: str = "prob", parameters: Iterable[Tensor] | None = None,
                 callbacks: Sequence[Any] = (), run_dir: RunDir | None = None, stage: str = "train",
                 budget: EpochBudget | None = None, progress: bool = True, start_step: int = 0,
                 on_step: Callable[[int], None] | None = None, find_unused_parameters: bool = False) -> None:
        if epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {epochs}")
        if lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {lr_schedule!r}")
        self.device = torch.device(device)
        self.precision = precision
        self.autocast_dtype = autocast_dtype(precision, self.device, amp)
        self.world, self.rank = D.world_size(), D.rank()
        if batch_size % self.world:
            raise ValueError(f"batch_size {batch_size} is not divisible by the {self.world} DDP processes")
        self.epochs, self.batch_size = int(epochs), int(batch_size)
        self.local_batch = self.batch_size // self.world
        self.test_batch_size = int(test_batch_size or batch_size)
        self.train_data, self.val_data, self.test_data = train_data, val_data, test_data
        if len(cast(Sized, train_data)) == 0:
            raise ValueError("the training split is empty")
        self.collate_fn = collate_fn if collate_fn is not None else _default_collate()
        self.num_workers, self.seed, self.stage = int(num_workers), int(seed), stage
        self.eval_every, self.average_clips, self.grad_clip = int(eval_every), average_clips, float(grad_clip)
        self.callbacks, self.run_dir, self.budget = list(callbacks), run_dir, budget
        self.progress = progress and self.rank == 0
        self.use_amp = self.autocast_dtype == torch.float16  # float16 autocast + GradScaler (CUDA)

        self.model = model.to(self.device)
        if sync_bn and self.world > 1:
            self.model = D.convert_sync_batchnorm(self.model, self.device)
        params = [p for p in (parameters if parameters is not None else self.model.parameters())
                  if p.requires_grad]
        self.optimizer = torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov and momentum > 0,
                                         weight_decay=weight_decay)
        self.iters_per_epoch = math.ceil(math.ceil(len(cast(Sized, train_data)) / self.world) / self.local_batch)
        total = self.epochs * self.iters_per_epoch
        warm = int(round(warmup_epochs * self.iters_per_epoch))
        self._lr_lambda = _CosineLambda(lr_schedule, total, self.iters_per_epoch, warm, min_lr / lr)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_lambda)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        if not 0 <= start_step < total:
            raise ValueError(f"start_step must be in [0, {total}), got {start_step}")
        self.start_step, self.on_step = int(start_step), on_step
        with warnings.catch_warnings():  # stepping the schedule before any optimiser step is intended here
            warnings.simplefilter("ignore", UserWarning)
            for _ in range(self.start_step):
                self.scheduler.step()

        self.net: Any = self.model
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DDP(self.model, device_ids=ids, find_unused_parameters=find_unused_parameters)
        if compile:
            self.net = compile_model(self.net)
        self.start_epoch = self.start_step // self.iters_per_epoch
        self.history: list[dict] = []

    # --- checkpoints ------------------------------------------------------------------------------
    @staticmethod
    def _path(path: Path | None) -> Path:
        if path is None:
            raise RuntimeError("no run directory: nothing is saved")
        return path

    @property
    def last_path(self) -> Path | None:
        return None if self.run_dir is None else self.run_dir.checkpoints / f"{self.stage}-last.pt"

    @property
    def final_path(self) -> Path | None:
        return None if self.run_dir is None else self.run_dir.checkpoints / f"{self.stage}-final.pt"

    def state_dict(self, epoch: int) -> dict[str, Any]:
        """Everything needed to continue after ``epoch`` completed epochs."""
        return {"format": CHECKPOINT_FORMAT, "stage": self.stage, "epoch": epoch,
                "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                "rng": get_rng_state(), "history": self.history}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        self.history = list(state.get("history", []))
        self.start_epoch = max(int(state["epoch"]), self.start_step // self.iters_per_epoch)

    def _save(self, path: Path, state: dict) -> None:
        if self.rank == 0:
            atomic_torch_save(state, path)
        D.barrier()

    # --- loop ----------------------------------------------------------------------------------------------
    def _loader(self, data: Dataset, batch_size: int, train: bool, epoch: int) -> DataLoader:
        g = torch.Generator().manual_seed(_epoch_seed(self.seed, self.stage, epoch, self.rank))
        sampler: DistributedSampler | None = None
        if train:
            sampler = DistributedSampler(data, num_replicas=self.world, rank=self.rank, shuffle=True,
                                         seed=self.seed, drop_last=False)
        if sampler is not None:
            sampler.set_epoch(epoch)
        return DataLoader(data, batch_size=batch_size, sampler=sampler, shuffle=False,
                          num_workers=self.num_workers, collate_fn=self.collate_fn, generator=g,
                          worker_init_fn=_worker_init if self.num_workers else None,
                          pin_memory=self.device.type == "cuda", drop_last=False)

    def _autocast(self) -> contextlib.AbstractContextManager:
        """``torch.autocast`` with :attr:`autocast_dtype`, or nothing (float32)."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

    def _loss(self, out: Any, y: Tensor) -> Tensor:
        fn = getattr(self.model, "compute_loss", None)
        loss = fn(out, y) if callable(fn) else F.cross_entropy(out, y)
        for obj in [self.model, *self.callbacks]:
            extra = getattr(obj, "extra_loss", None)
            if callable(extra):
                t = extra()
                if isinstance(t, Tensor):
                    loss = loss + t
        return loss

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """One epoch over the training split; returns the mean loss, top-1 on the training batches, last LR
        and time."""
        from tqdm.auto import tqdm

        seed_everything(_epoch_seed(self.seed, self.stage, epoch, self.rank))
        call_set_epoch([self.model, *self.callbacks], epoch, self.epochs)
        self.net.train()
        loader = self._loader(self.train_data, self.local_batch, True, epoch)
        tot_loss, tot_correct, tot_n, t0 = 0.0, 0, 0, time.time()
        bar = tqdm(loader, desc=f"{self.stage} {epoch + 1}/{self.epochs}", leave=False,
                   disable=not self.progress, dynamic_ncols=True)
        first = epoch == self.start_step // self.iters_per_epoch
        skip = self.start_step % self.iters_per_epoch if first else 0
        step = epoch * self.iters_per_epoch
        for i, batch in enumerate(bar):
            step += 1
            if i < skip:
                continue
            x, y, _ = unpack_batch(batch, self.device)
            with self._autocast():
                out = self.net(x)
            loss = self._loss(_to_float32(out), y)  # the loss in float32, outside autocast
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{self.stage}: loss became {loss.item()} at epoch {epoch + 1}; "
                                         f"lower --lr or set train.grad_clip")
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if self.grad_clip > 0:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            if self.on_step is not None:
                self.on_step(step)
            logits = out[0] if isinstance(out, (tuple, list)) else out
            tot_loss += loss.item() * y.numel()
            if isinstance(logits, Tensor) and logits.dim() == 2 and logits.size(0) == y.numel():
                tot_correct += int((logits.argmax(1) == y).sum())
            tot_n += y.numel()
            bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{self.optimizer.param_groups[0]['lr']:.4f}")
        return {"loss": tot_loss / max(tot_n, 1), "train_top1": tot_correct / max(tot_n, 1),
                "lr": self.optimizer.param_groups[0]["lr"], "time_s": time.time() - t0}

    def evaluate(self, data: Dataset, progress: bool = False) -> dict:
        """:func:`~pyg_sparse_stgcn.engine.evaluate.evaluate` of the (unwrapped) model over ``data``."""
        loader = DataLoader(data, batch_size=self.test_batch_size, shuffle=False,
                            num_workers=self.num_workers, collate_fn=self.collate_fn,
                            worker_init_fn=_worker_init if self.num_workers else None)
        return evaluate(self.model, loader, self.device, self.average_clips, self.use_amp,
                        progress and self.progress)

    def resume(self) -> bool:
        """Load ``checkpoints/<stage>-last.pt`` if it exists; returns whether it did."""
        p = self.last_path
        if p is None or not p.exists():
            return False
        state = torch.load(p, map_location=self.device, weights_only=True)
        if state.get("format") != CHECKPOINT_FORMAT or state.get("stage") != self.stage:
            raise ValueError(f"--resume: {p} is not a {self.stage!r} checkpoint of this library")
        self.load_state_dict(state)
        if self.run_dir is not None and self.rank == 0:
            done = self.start_epoch
            self.run_dir.truncate_metrics(lambda r: r.get("stage") != self.stage or r.get("epoch", 0) <= done)
        return True

    def fit(self, resume: bool = True) -> dict[str, Any]:
        """Train (continuing from ``<stage>-last.pt`` when ``resume`` and it exists), then evaluate on
        ``test_data``.

        Returns:
            dict: ``history`` (one record per epoch), ``test`` (metrics, scores, labels, ids; :obj:`None`
            without ``test_data``) and ``epochs``.

        Raises:
            TrainingInterrupted: when the :class:`EpochBudget` is spent before the last epoch.
        """
        from tqdm.auto import tqdm

        if resume:
            done = self.load_final()
            if done is not None:
                return done
            self.resume()
        bar = tqdm(range(self.start_epoch, self.epochs), desc=self.stage, initial=self.start_epoch,
                   total=self.epochs, disable=not self.progress, dynamic_ncols=True)
        for epoch in bar:
            if self.budget is not None and self.budget.spent:
                raise TrainingInterrupted(f"stopped before epoch {epoch + 1}/{self.epochs} of stage "
                                          f"{self.stage!r} (train.max_epochs_this_run)")
            rec: dict[str, Any] = {"stage": self.stage, "epoch": epoch + 1, **self.train_epoch(epoch)}
            last = epoch + 1 == self.epochs
            if self.val_data is not None and self.rank == 0 and (
                    last or (self.eval_every > 0 and (epoch + 1) % self.eval_every == 0)):
                ev = self.evaluate(self.val_data)
                rec.update(val_top1=ev["top1"], val_top5=ev["top5"],
                           val_mean_class_accuracy=ev["mean_class_accuracy"])
            D.barrier()
            self.history.append(rec)
            bar.set_postfix(loss=f"{rec['loss']:.3f}", **({"val": f"{rec['val_top1']:.3f}"}
                                                        if "val_top1" in rec else {}))
            if self.run_dir is not None:
                if self.rank == 0:
                    self.run_dir.log_metrics(rec)
                self._save(self._path(self.last_path), self.state_dict(epoch + 1))
            if self.budget is not None:
                self.budget.spend()
        test = None
        if self.test_data is not None and self.rank == 0:
            test = self.evaluate(self.test_data, progress=True)
        D.barrier()
        result = {"history": self.history, "test": test, "epochs": self.epochs}
        if self.run_dir is not None:
            self._save(self._path(self.final_path), {"format": CHECKPOINT_FORMAT, "stage": self.stage,
                                         "epoch": self.epochs, "model": self.model.state_dict(),
                                         "rng": get_rng_state(), "history": self.history, "test": test})
            last = self._path(self.last_path)
            if self.rank == 0 and last.exists():
                last.unlink()  # the final checkpoint supersedes it
        return result

    def load_final(self) -> dict[str, Any] | None:
        """If ``checkpoints/<stage>-final.pt`` exists (the stage finished in an earlier invocation), load its
        weights and RNG state and return its result (as :meth:`fit`); else :obj:`None`."""
        p = self.final_path
        if p is None or not p.exists():
            return None
        state = torch.load(p, map_location=self.device, weights_only=True)
        if state.get("format") != CHECKPOINT_FORMAT or state.get("stage") != self.stage:
            raise ValueError(f"--resume: {p} is not a final {self.stage!r} checkpoint of this library")
        self.model.load_state_dict(state["model"])
        set_rng_state(state["rng"])
        self.history = list(state["history"])
        self.start_epoch = self.epochs
        return {"history": self.history, "test": state["test"], "epochs": self.epochs}
