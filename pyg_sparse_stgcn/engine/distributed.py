"""Distributed helpers: ``torchrun`` process-group set-up (gloo on CPU, NCCL on CUDA) and a BatchNorm that
synchronises its batch statistics across processes on any device (``torch.nn.SyncBatchNorm`` only runs on
GPUs)."""
from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

__all__ = ["init_distributed", "is_distributed", "rank", "world_size", "barrier", "is_main", "broadcast_object",
           "DistributedBatchNorm", "convert_sync_batchnorm", "cleanup_distributed"]


def is_distributed() -> bool:
    """Whether a default process group is initialised with more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """``obj`` of process ``src`` on every process (picklable objects; a no-op for a single process). Every
    process must call it."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def init_distributed(device: str) -> str:
    """Join the process group that ``torchrun`` describes in the environment (``WORLD_SIZE``, ``RANK``,
    ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``); a no-op for a single process.

    Args:
        device (str): ``cpu`` or ``cuda``/``cuda:N``; CUDA processes use ``cuda:LOCAL_RANK`` and NCCL, CPU
            processes gloo.

    Returns:
        str: the device this process uses.
    """
    ws = int(os.environ.get("WORLD_SIZE", "1"))
    if ws <= 1 or (dist.is_available() and dist.is_initialized()):
        return device
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this PyTorch build has no torch.distributed")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        torch.cuda.set_device(local_rank)
        device = f"cuda:{local_rank}"
        dist.init_process_group("nccl")
    else:
        dist.init_process_group("gloo")
    return device


def cleanup_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


class _AllReduceSum(torch.autograd.Function):
    """Sum over processes; the gradient is summed over processes too."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, group: Any) -> Tensor:
        ctx.group = group
        y = x.clone()
        dist.all_reduce(y, group=group)
        return y

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        g = grad.clone()
        dist.all_reduce(g, group=ctx.group)
        return g, None


class DistributedBatchNorm(nn.modules.batchnorm._BatchNorm):
    r"""BatchNorm whose training-time statistics are computed over the union of the batches of all
    processes (mean and biased variance from all-reduced :math:`\sum x`, :math:`\sum x^2` and counts, with
    gradients through the all-reduce), so DDP with :math:`P` processes of batch :math:`B/P` equals one process
    with batch :math:`B`. Works on any device and backend (``torch.nn.SyncBatchNorm`` needs GPUs and
    channels-first input).

    Used as a mixin by :func:`convert_sync_batchnorm`, which re-classes each BatchNorm module in place (e.g.
    the library's channels-last ``BatchNormLast`` keeps its reshaping ``forward`` and reaches this one through
    ``super()``). Evaluation and single-process training are exactly the parent BatchNorm.
    """

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and is_distributed()):
            return super().forward(x)
        self._check_input_dim(x)
        dims = [0] + list(range(2, x.dim()))
        n_local = x.numel() // x.size(1)
        xf = x.float()
        packed = torch.cat([xf.sum(dims), (xf * xf).sum(dims),
                            torch.full((1,), float(n_local), device=x.device)])
        packed = _AllReduceSum.apply(packed, _bn_group())
        c = x.size(1)
        n = packed[-1]
        mean = packed[:c] / n
        var = (packed[c:2 * c] / n - mean * mean).clamp_min(0)
        if self.track_running_stats and self.running_mean is not None:
            assert self.num_batches_tracked is not None and self.running_var is not None
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                mom = (1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum)
                unbiased = var.detach() * n / (n - 1).clamp_min(1)
                self.running_mean.mul_(1 - mom).add_(mom * mean.detach().to(self.running_mean.dtype))
                self.running_var.mul_(1 - mom).add_(mom * unbiased.to(self.running_var.dtype))
        shape = [1, c] + [1] * (x.dim() - 2)
        y = (xf - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


_SYNC_CLASSES: dict[type, type] = {}
_BN_GROUP: list[Any] = []


def _bn_group() -> Any:
    """A process group of its own for the BatchNorm all-reduces, so they never interleave with DDP's gradient
    buckets on the default group (gloo needs one order of collectives per group)."""
    if not _BN_GROUP:
        raise RuntimeError("convert_sync_batchnorm must run on every process before training")
    return _BN_GROUP[0]


def convert_sync_batchnorm(module: nn.Module, device: str | torch.device | None = None) -> nn.Module:
    """Make every BatchNorm of ``module`` synchronise its statistics across DDP processes, in place: each
    BatchNorm's class ``C`` becomes a subclass of ``C`` and :class:`DistributedBatchNorm` (same parameters,
    buffers and state-dict keys; ``C.forward`` still runs first). ``device`` is accepted for symmetry with
    :meth:`torch.nn.SyncBatchNorm.convert_sync_batchnorm` and not needed. Under DDP every process must call
    it (it creates the process group of the statistics all-reduce)."""
    if is_distributed() and not _BN_GROUP:
        _BN_GROUP.append(dist.new_group())
    for m in module.modules():
        cls = type(m)
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and not isinstance(m, DistributedBatchNorm):
            if cls not in _SYNC_CLASSES:
                _SYNC_CLASSES[cls] = type(f"Distributed{cls.__name__}", (cls, DistributedBatchNorm), {})
            m.__class__ = _SYNC_CLASSES[cls]
    return module
