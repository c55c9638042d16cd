"""One seeded-RNG context: a block of code draws from its own stream without touching the caller's."""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

__all__ = ["seeded"]


@contextlib.contextmanager
def seeded(seed: int, device: torch.device | str | None = None) -> Iterator[None]:
    """Seed torch's global generators with ``seed`` inside the block, then restore the caller's state.

    device: also fork and seed the CUDA generator of this device when it is a CUDA
    device (a stochastic model's noise, torchattacks' draws); CPU state is always forked.
    """
    device = torch.device(device) if device is not None else torch.device("cpu")
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed))
        yield
