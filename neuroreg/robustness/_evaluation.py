"""Seeded evaluation shared by the attack and corruption suites."""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch import Tensor, nn


@torch.no_grad()
def count_correct(model: nn.Module, x: Tensor, y: Tensor, n_draws: int) -> np.ndarray:
    """Correct top-1 predictions of ``model`` on ``(x, y)`` for each of ``n_draws`` forward passes."""
    return np.array([int((model(x).argmax(1) == y).sum()) for _ in range(n_draws)], dtype=float)


@contextlib.contextmanager
def seeded(seed: int, device: torch.device):
    """Seed the global RNGs (model noise, torchattacks' draws) without leaking state to the caller."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield
