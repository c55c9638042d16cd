"""Seeded percentile bootstraps over stimuli or subjects (Efron & Tibshirani 1993).

A resample whose statistic cannot be computed (too few distinct stimuli, a
constant vector, a non-finite value) is *degenerate*: it is skipped and
counted, never averaged in as NaN. If every resample is degenerate the
bootstrap raises instead of returning a meaningless interval.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from neuroreg.errors import NeuroregError
from neuroreg.scoring.compare import _method, compare_vectors

__all__ = ["BootstrapResult", "bootstrap", "bootstrap_rdm_comparison", "bootstrap_mean"]


@dataclass(frozen=True)
class BootstrapResult:
    """Percentile interval ``[low, high]`` of the statistic over valid resamples."""

    low: float
    high: float
    n_valid: int
    n_degenerate: int
    samples: np.ndarray

    @property
    def std(self) -> float:
        return float(self.samples.std(ddof=1)) if self.samples.size > 1 else 0.0


def _check(n_boot: int, ci: float) -> None:
    if int(n_boot) < 1:
        raise ValueError(f"n_boot must be >= 1; got {n_boot}")
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1); got {ci}")


def bootstrap(statistic: Callable[[np.ndarray], float], n: int, *, n_boot: int = 1000, seed: int = 0,
              ci: float = 0.95) -> BootstrapResult:
    """Percentile bootstrap of ``statistic(indices)`` over ``n`` items resampled with replacement.

    ``statistic`` receives an int array of ``n`` indices (with repeats). A
    ``ValueError`` or non-finite return marks the resample degenerate.
    """
    _check(n_boot, ci)
    if n < 2:
        raise ValueError(f"bootstrap needs at least 2 items to resample; got {n}")
    rng = np.random.default_rng(seed)
    values = []
    degenerate = 0
    for _ in range(int(n_boot)):
        idx = rng.integers(0, n, size=n)
        try:
            v = float(statistic(idx))
        except (ValueError, NeuroregError, FloatingPointError, ZeroDivisionError):
            degenerate += 1
            continue
        if not np.isfinite(v):
            degenerate += 1
            continue
        values.append(v)
    if not values:
        raise ValueError(f"all {n_boot} bootstrap resamples were degenerate; the statistic cannot be bootstrapped")
    arr = np.asarray(values)
    alpha = (1 - ci) / 2
    low, high = np.quantile(arr, [alpha, 1 - alpha])
    return BootstrapResult(float(low), float(high), arr.size, degenerate, arr)


def bootstrap_rdm_comparison(model_rdm, brain_rdm, method: str = "pearson", *, n_boot: int = 1000,
                             seed: int = 0, ci: float = 0.95) -> BootstrapResult:
    """Bootstrap over stimuli of ``compare_rdms(model_rdm, brain_rdm, method)``.

    Both RDMs are square ``(n, n)``. Each resample draws ``n`` stimuli with
    replacement and compares the dissimilarities of pairs of *distinct* drawn
    stimuli (pairs of a stimulus with its own copy have no dissimilarity and are
    left out, as rsatoolbox does). Resamples with fewer than 3 distinct stimuli
    are degenerate.
    """
    method = _method(method)
    a = np.asarray(model_rdm, dtype=np.float64)
    b = np.asarray(brain_rdm, dtype=np.float64)
    if a.ndim != 2 or a.shape != b.shape or a.shape[0] != a.shape[1]:
        raise ValueError(f"model_rdm and brain_rdm must be square RDMs of the same size; got shapes "
                         f"{a.shape} and {b.shape}")
    n = a.shape[0]
    iu = np.triu_indices(n, 1)

    def stat(idx: np.ndarray) -> float:
        if np.unique(idx).size < 3:
            raise ValueError("fewer than 3 distinct stimuli")
        i, j = idx[iu[0]], idx[iu[1]]
        keep = i != j
        return compare_vectors(a[i[keep], j[keep]][None], b[i[keep], j[keep]][None], method)[0, 0]

    return bootstrap(stat, n, n_boot=n_boot, seed=seed, ci=ci)


def bootstrap_mean(values, *, n_boot: int = 1000, seed: int = 0, ci: float = 0.95) -> BootstrapResult:
    """Bootstrap over subjects (or any units): the mean of ``values`` resampled with replacement."""
    v = np.asarray(values, dtype=np.float64).ravel()
    if not np.isfinite(v).all():
        raise ValueError("values contains non-finite entries")
    return bootstrap(lambda idx: v[idx].mean(), v.size, n_boot=n_boot, seed=seed, ci=ci)
