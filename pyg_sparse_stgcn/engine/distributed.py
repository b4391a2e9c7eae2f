"""Distributed helpers: ``torchrun`` process-group set-up (gloo on CPU, NCCL on CUDA) and a BatchNorm that
synchronises its batch statistics across processes on any device (``torch.nn.SyncBatchNorm`` only runs on
GPUs)."""
from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import Tensor, nn

__all__ = ["init_distributed", "is_distributed", "rank", "world_size", "barrier", "is_main",
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


class DistributedBatchNorm(nn.modules.batchnorm._BatchNorm):
    r"""BatchNorm whose training-time statistics are computed over the union of the batches of all
    processes (mean and biased variance from all-reduced :math:`\sum x`, :math:`\sum x^2` and counts, with
    gradients through the all-reduce), so DDP with :math:`P` processes of batch :math:`B/P` equals one process
    with batch :math:`B`. Any input rank :math:`\ge 2` (channels in dim 1). Evaluation and single-process
    training behave exactly as :class:`torch.nn.BatchNorm2d`.
    """

    def _check_input_dim(self, x: Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"DistributedBatchNorm expects at least 2-D input (N, C, ...), got {x.dim()}-D")

    def forward(self, x: Tensor) -> Tensor:
        self._check_input_dim(x)
        if not (self.training and is_distributed()):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        dims = [0] + list(range(2, x.dim()))
        n_local = x.numel() // x.size(1)
        xf = x.float()
        packed = torch.cat([xf.sum(dims), (xf * xf).sum(dims),
                            torch.full((1,), float(n_local), device=x.device)])
        packed = all_reduce(packed)
        c = x.size(1)
        n = packed[-1]
        mean = packed[:c] / n
        var = (packed[c:2 * c] / n - mean * mean).clamp_min(0)
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                mom = (1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum)
                unbiased = var * n / (n - 1).clamp_min(1)
                self.running_mean.mul_(1 - mom).add_(mom * mean.to(self.running_mean.dtype))
                self.running_var.mul_(1 - mom).add_(mom * unbiased.to(self.running_var.dtype))
        shape = [1, c] + [1] * (x.dim() - 2)
        y = (xf - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def convert_sync_batchnorm(module: nn.Module, device: str | torch.device) -> nn.Module:
    """Replace every BatchNorm by a synchronised one: :class:`torch.nn.SyncBatchNorm` on CUDA,
    :class:`DistributedBatchNorm` elsewhere. Parameter and buffer names are kept, so state dicts are
    interchangeable with the unconverted model."""
    if torch.device(device).type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, DistributedBatchNorm):
        new = DistributedBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                                   module.track_running_stats)
        if module.affine:
            with torch.no_grad():
                new.weight = module.weight
                new.bias = module.bias
        if module.track_running_stats:
            new.running_mean = module.running_mean
            new.running_var = module.running_var
            new.num_batches_tracked = module.num_batches_tracked
        new.training = module.training
        return new
    for name, child in module.named_children():
        new_child = convert_sync_batchnorm(child, device)
        if new_child is not child:
            module.add_module(name, new_child)
    return module

