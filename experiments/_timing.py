"""Wall-clock timing shared by the benchmark scripts: device sync, one timed call, interleaved rounds."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import torch


def sync(device: str | torch.device) -> None:
    """Wait for the device's queued work (a CUDA device); no-op on the CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: str | torch.device) -> float:
    """Seconds of one call of ``fn``, the device synchronised before and after."""
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def interleaved_times(fns: Mapping[str, Callable[[], object]], repeats: int,
                      device: str | torch.device) -> dict[str, list[float]]:
    """Seconds of each function over ``repeats`` rounds, the functions run in turn in every round (fair under
    load), after one warm-up call each (allocator, kernel autotuning)."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(timed(fn, device))
    return times
