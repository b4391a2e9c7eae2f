r"""Timing candidates against each other: the one timer behind every speed-measured choice in the library.

Wherever the library picks an implementation by measurement (``STGCNConv(backend='auto')``, the CSR-or-dense
and sparse-or-dense choices of :func:`~pyg_sparse_stgcn.sparsity.export.to_sparse_kernels`), it times the
candidates with :func:`interleaved_times` / :func:`best_times`: every round runs each candidate once, in
turn, so that a machine whose load changes during the measurement (a shared CPU) slows all candidates alike,
and CUDA work is waited for (:func:`synchronize`) before and after each timed call.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import torch

__all__ = ["synchronize", "interleaved_times", "best_times"]


def synchronize(device: torch.device | str | None) -> None:
    r"""Wait for the work queued on ``device`` (a no-op for CPU and :obj:`None`).

    Args:
        device (torch.device or str, optional): The device whose work is waited for.
    """
    if device is None:
        return
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved_times(fns: Mapping[str, Callable[[], Any]], device: torch.device | str | None = None,
                      rounds: int = 3, warmup: int = 1,
                      clock: Callable[[], float] = time.perf_counter) -> dict[str, list[float]]:
    r"""Seconds of every call of every candidate, the candidates alternating within each round.

    Each candidate is first called ``warmup`` times (untimed). Then, ``rounds`` times, every candidate is
    called once, in the order of ``fns``, between two :func:`synchronize` calls.

    Args:
        fns (Mapping[str, Callable[[], Any]]): The candidates by name; each is called without arguments.
        device (torch.device or str, optional): The device to synchronise around every timed call.
            (default: :obj:`None`)
        rounds (int, optional): Timed calls per candidate. (default: :obj:`3`)
        warmup (int, optional): Untimed calls per candidate before the first round. (default: :obj:`1`)
        clock (Callable[[], float], optional): The clock, in seconds; e.g. :func:`time.thread_time` for the
            calling thread's CPU time, which other processes cannot inflate. (default:
            :func:`time.perf_counter`)

    Returns:
        dict[str, list[float]]: The ``rounds`` durations of each candidate, in seconds.
    """
    if rounds < 1 or warmup < 0:
        raise ValueError(f"interleaved_times: rounds must be >= 1 and warmup >= 0, got {rounds}, {warmup}")
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            synchronize(device)
            start = clock()
            fn()
            synchronize(device)
            times[name].append(clock() - start)
    return times


def best_times(fns: Mapping[str, Callable[[], Any]], device: torch.device | str | None = None,
               rounds: int = 3, warmup: int = 1) -> dict[str, float]:
    r"""The best (smallest) wall-clock seconds of each candidate over alternating rounds.

    The minimum is the estimate least affected by other work on the machine.

    Args:
        fns (Mapping[str, Callable[[], Any]]): The candidates by name; each is called without arguments.
        device (torch.device or str, optional): The device to synchronise around every timed call.
            (default: :obj:`None`)
        rounds (int, optional): Timed calls per candidate. (default: :obj:`3`)
        warmup (int, optional): Untimed calls per candidate before the first round. (default: :obj:`1`)

    Example::

        t = best_times({"dense": lambda: a @ b, "sparse": lambda: a_csr @ b}, a.device)
        choice = min(t, key=t.get)

    Returns:
        dict[str, float]: Seconds per candidate.
    """
    return {name: min(t) for name, t in interleaved_times(fns, device, rounds, warmup).items()}
