"""Seeded percentile bootstraps over stimuli or subjects (Efron & Tibshirani 1993).

A resample whose statistic cannot be computed (too few distinct stimuli, a
constant vector, a non-finite value) is *degenerate*: it is skipped and
counted, never averaged in as NaN. If every resample is degenerate the
bootstrap raises instead of returning a meaningless interval.

Resamples never depend on row order: over stimuli they index the stimuli in
sorted-id order (pass ``stimulus_ids``), over subjects the sorted values.
Inputs of any float dtype (float16, bfloat16 tensors) are computed in float64.
Minimums: 4 stimuli for an RDM comparison (3 distinct ones per resample), 2
values for a mean, with a warning below 5 values (a percentile interval from so
few values has almost no resolution).
"""

from __future__ import annotations

from dataclasses import dataclass
import warnings
from typing import Callable

import numpy as np

from neuroreg.errors import NeuroregError, ShapeError
from neuroreg.scoring._inputs import check_unique_ids, sorted_positions
from neuroreg.scoring._precision import rdm_problem, to_float64
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
    ``ValueError`` or non-finite return marks the resample degenerate. The
    indices are positions: hand ``statistic`` data in sorted-id order for an
    interval that does not depend on row order.
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


_MIN_RDM_STIMULI = 4
_WARN_MEAN_VALUES = 5


def bootstrap_rdm_comparison(model_rdm, brain_rdm, method: str = "pearson", *, n_boot: int = 1000,
                             seed: int = 0, ci: float = 0.95, stimulus_ids=None) -> BootstrapResult:
    """Bootstrap over stimuli of ``compare_rdms(model_rdm, brain_rdm, method)``.

    Both RDMs are square ``(n, n)``. Each resample draws ``n`` stimuli with
    replacement and compares the dissimilarities of pairs of *distinct* drawn
    stimuli (pairs of a stimulus with its own copy have no dissimilarity and are
    left out, as rsatoolbox does). Resamples with fewer than 3 distinct stimuli
    are degenerate. Both RDMs must be symmetric with a zero diagonal.

    ``stimulus_ids``: ids of the rows; the resamples then draw positions in
    sorted-id order, so the same RDMs with rows in another order give the same
    interval. Without ids the rows are taken to be in sorted order already.
    Needs at least 4 stimuli.
    """
    method = _method(method)
    a_in, b_in = model_rdm, brain_rdm
    a = to_float64(model_rdm)
    b = to_float64(brain_rdm)
    if a.ndim != 2 or a.shape != b.shape or a.shape[0] != a.shape[1]:
        raise ShapeError(f"model_rdm and brain_rdm must be square RDMs of the same size; got shapes "
                         f"{a.shape} and {b.shape}")
    for name, m, given in (("model_rdm", a, a_in), ("brain_rdm", b, b_in)):
        problem = rdm_problem(m, dtype=getattr(given, "dtype", m.dtype))
        if problem is not None:
            raise ValueError(f"{name} of shape {m.shape} is not an RDM: {problem}")
    n = a.shape[0]
    if n < _MIN_RDM_STIMULI:
        raise ValueError(f"bootstrap over stimuli needs at least {_MIN_RDM_STIMULI} stimuli; got {n}")
    if stimulus_ids is not None:
        ids = np.asarray(stimulus_ids)
        if ids.shape != (n,):
            raise ShapeError(f"stimulus_ids must hold one id per row ({n}); got shape {ids.shape}")
        check_unique_ids("stimulus_ids", ids)
        order = sorted_positions(ids)
        a, b = a[np.ix_(order, order)], b[np.ix_(order, order)]
    iu = np.triu_indices(n, 1)

    def stat(idx: np.ndarray) -> float:
        if np.unique(idx).size < 3:
            raise ValueError("fewer than 3 distinct stimuli")
        i, j = idx[iu[0]], idx[iu[1]]
        keep = i != j
        return compare_vectors(a[i[keep], j[keep]][None], b[i[keep], j[keep]][None], method)[0, 0]

    return bootstrap(stat, n, n_boot=n_boot, seed=seed, ci=ci)


def bootstrap_mean(values, *, n_boot: int = 1000, seed: int = 0, ci: float = 0.95) -> BootstrapResult:
    """Bootstrap over subjects (or any units): the mean of ``values`` resampled with replacement.

    The values are sorted first, so their order does not change the interval.
    Needs 2 values; warns below 5.
    """
    v = np.sort(to_float64(values).ravel())
    if not np.isfinite(v).all():
        raise ValueError("values contains non-finite entries")
    if 2 <= v.size < _WARN_MEAN_VALUES:
        warnings.warn(f"bootstrap of a mean over {v.size} values: a percentile interval from fewer than "
                      f"{_WARN_MEAN_VALUES} values has almost no resolution", UserWarning, stacklevel=2)
    return bootstrap(lambda idx: v[idx].mean(), v.size, n_boot=n_boot, seed=seed, ci=ci)
