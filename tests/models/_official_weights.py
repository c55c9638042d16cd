"""Deterministic stand-in weights shared by the official-fixture script and the tests.

The fixtures in ``tests/fixtures/official/`` hold inputs and the outputs the
official code (dicarlolab/CORnet, dicarlolab/vonenet) computed with these
weights; storing the weights themselves would take hundreds of MB. Tensor
``i`` of a state dict (official key order) is drawn from its own CPU
generator, so the test rebuilds exactly the weights the official code ran
with; every fixture also stores a float64 checksum per tensor and the test
refuses to compare when the recipe no longer reproduces them.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

_NORM_HINTS = ("norm", "bn", "downsample.1")


def synthetic_tensor(name: str, shape: tuple[int, ...], index: int, seed: int = 0) -> Tensor:
    """Tensor ``index`` of the state dict: He-like weights, mild norm layers, positive running variances."""
    g = torch.Generator().manual_seed(seed * 100_003 + index)
    if name.endswith("num_batches_tracked"):
        return torch.zeros((), dtype=torch.long)
    if name.endswith("running_var"):
        return torch.rand(shape, generator=g) + 0.5
    if name.endswith("running_mean"):
        return torch.randn(shape, generator=g) * 0.1
    if len(shape) == 1:
        is_norm_weight = name.endswith(".weight") and any(h in name for h in _NORM_HINTS)
        base = 1.0 if is_norm_weight else 0.0
        return base + 0.1 * torch.randn(shape, generator=g)
    fan_in = math.prod(shape[1:])
    return torch.randn(shape, generator=g) * math.sqrt(1.0 / fan_in)


def synthetic_state_dict(names, shapes, seed: int = 0, given: dict | None = None) -> dict[str, Tensor]:
    """``{name: tensor}`` in the given order; ``given`` tensors (e.g. Gabor banks) are used as they are."""
    given = given or {}
    return {n: (given[n] if n in given else synthetic_tensor(n, tuple(s), i, seed))
            for i, (n, s) in enumerate(zip(names, shapes))}


def checksum(t: Tensor) -> float:
    return float(t.double().sum())
