"""Counting correct predictions, shared by the attack and corruption suites."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn


@torch.no_grad()
def count_correct(model: nn.Module, x: Tensor, y: Tensor, n_draws: int) -> np.ndarray:
    """Correct top-1 predictions of ``model`` on ``(x, y)`` for each of ``n_draws`` forward passes.

    x: (N, C, H, W) images; y: (N,) class indices. Returns a float array of shape
    ``(n_draws,)``: the count for each pass (they differ only for a stochastic model).
    """
    return np.array([int((model(x).argmax(1) == y).sum()) for _ in range(n_draws)], dtype=float)
