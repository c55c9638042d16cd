"""Weight schedules for alignment terms: the multiplier of ``weight`` at a given optimizer step."""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["WeightSchedule"]


@dataclass(frozen=True)
class WeightSchedule:
    """Piecewise schedule of an alignment weight, in optimizer steps.

    factor(step) = 0 before ``delay_steps``; then a linear (or cosine) ramp
    from 0 to 1 over ``warmup_steps``; then 1. ``WeightSchedule()`` is constant 1.
    Turning alignment on after the task loss has shaped the network is the
    usual recipe when the neural batch is small (Dapello et al. 2023 fine-tune
    an ImageNet-trained model with the CKA term on).
    """

    delay_steps: int = 0
    warmup_steps: int = 0
    ramp: str = "linear"

    def __post_init__(self) -> None:
        if self.delay_steps < 0 or self.warmup_steps < 0:
            raise ValueError(f"delay_steps and warmup_steps must be >= 0; got {self.delay_steps}, {self.warmup_steps}")
        if self.ramp not in ("linear", "cosine"):
            raise ValueError(f"ramp must be 'linear' or 'cosine'; got {self.ramp!r}")

    def __call__(self, step: int) -> float:
        t = step - self.delay_steps
        if t < 0:
            return 0.0
        if self.warmup_steps == 0 or t >= self.warmup_steps:
            return 1.0
        frac = t / self.warmup_steps
        return frac if self.ramp == "linear" else 0.5 * (1.0 - math.cos(math.pi * frac))
