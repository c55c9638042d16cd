"""Noise ceilings: how well a perfect model could score given the noise in the data.

- :func:`rdm_noise_ceiling`: lower and upper bounds for a stack of subject RDMs
  (Nili et al. 2014), computed as rsatoolbox's ``boot_noise_ceiling`` does: the
  upper bound is the mean similarity of each RDM to the pooled RDM of all
  subjects, the lower bound to the pooled RDM of the others (leave one out).
  Pooling follows the comparison: z-scored vectors for Pearson, ranks for the
  rank-based methods, RMS-normalised vectors for cosine.
- :func:`split_half_ceiling`: Spearman-Brown-corrected split-half reliability
  per unit for responses with repeats (Brain-Score's internal consistency).
- :func:`ncsnr_ceiling`: NSD's noise ceiling for ``n_trials`` averaged trials,
  ``ncsnr^2 / (ncsnr^2 + 1 / n_trials)`` (Allen et al. 2022), as a fraction of variance.
- :func:`noise_ceiling`: dispatches on the kind of data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import rankdata

from neuroreg.brain.data import BrainData, RDMSet
from neuroreg.errors import ShapeError
from neuroreg.scoring._precision import pow2_exponent, rdm_problem, scaled_by_pow2, to_float64, unit_exponent
from neuroreg.scoring.columnwise import pearson_per_column
from neuroreg.scoring.compare import _method, _vectors, compare_rdms

__all__ = ["NoiseCeiling", "noise_ceiling", "rdm_noise_ceiling", "split_half_ceiling", "ncsnr_ceiling",
           "spearman_brown"]


@dataclass(frozen=True)
class NoiseCeiling:
    """Bounds on the best achievable score; ``nc["lower"]`` and ``nc.lower`` both work.

    ``per_unit`` holds unit-wise values where the ceiling is unit-wise (split-half, ncsnr);
    ``lower``/``upper`` are then their median.
    """

    lower: float
    upper: float
    kind: str
    method: str | None = None
    per_unit: np.ndarray | None = None

    def __getitem__(self, key: str) -> Any:
        if key not in ("lower", "upper", "kind", "method", "per_unit"):
            raise KeyError(f"NoiseCeiling has lower, upper, kind, method, per_unit; not {key!r}")
        return getattr(self, key)

    def as_dict(self) -> dict[str, Any]:
        return {"lower": self.lower, "upper": self.upper, "kind": self.kind, "method": self.method}


def _pool_transform(v: np.ndarray, method: str) -> np.ndarray:
    """Per-RDM transform whose mean is the pooled RDM rsatoolbox uses for ``method``."""
    if method == "pearson":
        c = v - v.mean(1, keepdims=True)
        return c / c.std(1, keepdims=True)
    if method == "cosine":
        return v / np.sqrt((v ** 2).mean(1, keepdims=True))
    return rankdata(v, axis=1)  # spearman, rho_a, kendall_tau_a: averaged ranks


def rdm_noise_ceiling(rdms, method: str = "pearson", *, groups=None) -> NoiseCeiling:
    """Nili et al. (2014) lower/upper noise ceiling of ``k >= 2`` RDMs from >= 2 subjects.

    ``rdms``: an RDMSet, ``(k, n, n)`` square (symmetric, zero diagonal) or
    ``(k, m)`` condensed RDMs, any float dtype (computed in float64).
    ``method``: any :func:`~neuroreg.scoring.compare_rdms` method.
    ``groups``: one label per RDM naming its subject (e.g. ``RDMSet.subject`` when a
    subject has an RDM per session); default: every RDM is its own subject. As
    rsatoolbox's ``boot_noise_ceiling(rdm_descriptor=...)``: the lower bound leaves a
    whole subject out, comparing each of its RDMs with the pool of the other
    subjects' RDMs; both bounds average over the subject's RDMs, then over subjects.
    Minimum: 2 RDMs of 3 stimuli from 2 subjects. Invariant to the order of stimuli and of RDMs.
    """
    method = _method(method)
    v, _ = _vectors("rdms", rdms)
    v = to_float64(v)
    # every comparison method is blind to an RDM's own scale: bring each to magnitude ~1 (exactly, by a
    # power of two) so that the pooled RDM's squares neither overflow nor underflow
    v = np.ldexp(v, -np.array([[pow2_exponent(float(np.abs(row).max()))] for row in v], dtype=np.int64))
    k = v.shape[0]
    labels = np.arange(k) if groups is None else np.asarray([str(g) for g in groups])
    if labels.shape != (k,):
        raise ShapeError(f"groups must have one label per RDM ({k}); got {labels.shape[0] if labels.ndim else 0}")
    uniq = np.unique(labels)
    if uniq.size < 2:
        raise ShapeError(f"rdms must hold at least 2 RDMs of at least 2 subjects for a noise ceiling; got "
                         f"{k} RDM(s) of {uniq.size} subject(s)")
    t = _pool_transform(v, method)
    total = t.sum(0)
    upper_per, lower_per = [], []
    for g in uniq:
        own = np.flatnonzero(labels == g)
        rest = (total - t[own].sum(0)) / (k - own.size)
        upper_per.append(np.mean([compare_rdms(total / k, v[i], method) for i in own]))
        lower_per.append(np.mean([compare_rdms(rest, v[i], method) for i in own]))
    return NoiseCeiling(float(np.mean(lower_per)), float(np.mean(upper_per)), "rdm", method)


def spearman_brown(r, factor: float = 2.0):
    """Reliability of data ``factor`` times as long: ``factor r / (1 + (factor - 1) r)``."""
    r = to_float64(r)
    return factor * r / (1 + (factor - 1) * r)


def split_half_ceiling(trials, *, n_splits: int = 10, seed: int = 0) -> NoiseCeiling:
    """Spearman-Brown-corrected split-half reliability per unit.

    ``trials``: ``(n_repeats, n_stimuli, n_units)`` with ``n_repeats >= 2``. Each
    split assigns half of the repeats (seeded) to each side; the per-unit Pearson
    r across stimuli between the half means is corrected by Spearman-Brown and
    averaged over ``n_splits`` splits. ``lower == upper ==`` the median over
    units (Brain-Score's ceiling for Pearson-r predictivity). Any float dtype
    (torch or numpy) is computed in float64. Minimum: 2 repeats, 3 stimuli.
    The seeded splits are over repeats, so the order of stimuli does not matter.
    """
    tr = to_float64(trials)
    if tr.ndim != 3:
        raise ShapeError(f"trials must be (n_repeats, n_stimuli, n_units); got shape {tr.shape}")
    r_, n, u = tr.shape
    if r_ < 2:
        raise ShapeError(f"trials needs at least 2 repeats for a split-half ceiling; got {r_}")
    if n < 3:
        raise ShapeError(f"trials needs at least 3 stimuli; got {n}")
    if not np.isfinite(tr).all():
        raise ValueError("trials contains non-finite values (NaN or inf)")
    tr = scaled_by_pow2(tr, unit_exponent(tr))     # Pearson r is scale free; keeps the squares in range
    rng = np.random.default_rng(seed)
    acc = np.zeros(u)
    for _ in range(n_splits):
        perm = rng.permutation(r_)
        r = pearson_per_column(tr[perm[: r_ // 2]].mean(0), tr[perm[r_ // 2:]].mean(0))   # 0 for a constant unit
        acc += spearman_brown(r)
    per_unit = acc / n_splits
    med = float(np.median(per_unit))
    return NoiseCeiling(med, med, "split_half", "pearson", per_unit)


def ncsnr_ceiling(ncsnr, n_trials: int = 1) -> NoiseCeiling:
    """NSD noise ceiling (fraction of variance) for responses averaged over ``n_trials`` trials."""
    s = to_float64(ncsnr)
    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1; got {n_trials}")
    if not np.isfinite(s).all() or (s < 0).any():
        raise ValueError("ncsnr must be finite and >= 0")
    per_unit = s ** 2 / (s ** 2 + 1.0 / n_trials)
    med = float(np.median(per_unit))
    return NoiseCeiling(med, med, "ncsnr", "r2", per_unit)


_CEILING_KINDS = ("auto", "rdm", "split_half", "ncsnr")


def noise_ceiling(data, *, kind: str = "auto", method: str = "pearson", n_trials: int | None = None,
                  n_splits: int = 10, seed: int = 0) -> NoiseCeiling:
    """Noise ceiling of ``data``; ``kind`` says which, or (``"auto"``) the data decide when unambiguous.

    - ``kind="rdm"``: RDMSet, ``(k, n, n)`` RDMs or ``(k, m)`` condensed: Nili bounds for
      ``method`` (:func:`rdm_noise_ceiling`).
    - ``kind="split_half"``: BrainData with ``trials`` or an ``(n_repeats, n_stimuli, n_units)``
      array: split-half Spearman-Brown (:func:`split_half_ceiling`).
    - ``kind="ncsnr"``: BrainData with ``unit_info["ncsnr"]``: NSD ceiling for ``n_trials``
      (default 3, NSD's repeats per image) (:func:`ncsnr_ceiling`).
    - ``kind="auto"``: RDMSet -> rdm; BrainData -> split_half when it has trials, else ncsnr;
      2-D array -> rdm; 3-D array -> rdm when its matrices are square, symmetric and zero on
      the diagonal, split_half when they are not square. A 3-D array of square matrices that
      are *not* RDMs is ambiguous (slightly asymmetric RDMs, or trials with as many units as
      stimuli) and raises, asking for ``kind``; it is never silently read as trials.

    The returned :class:`NoiseCeiling` names its ``kind``. Every kind computes in float64.
    """
    if kind not in _CEILING_KINDS:
        raise ValueError(f"kind must be one of {_CEILING_KINDS}; got {kind!r}")
    if isinstance(data, RDMSet):
        if kind not in ("auto", "rdm"):
            raise ValueError(f"an RDMSet has an RDM noise ceiling only; got kind={kind!r}")
        return rdm_noise_ceiling(data, method)
    if isinstance(data, BrainData):
        if kind == "rdm":
            raise ValueError("kind='rdm' needs RDMs (an RDMSet or (k, n, n) array), not BrainData")
        if kind in ("auto", "split_half") and data.trials is not None:
            return split_half_ceiling(data.trials, n_splits=n_splits, seed=seed)
        if kind in ("auto", "ncsnr") and "ncsnr" in data.unit_info:
            return ncsnr_ceiling(data.unit_info["ncsnr"], 3 if n_trials is None else n_trials)
        need = {"auto": "neither trials (repeats) nor unit_info['ncsnr']", "split_half": "no trials (repeats)",
                "ncsnr": "no unit_info['ncsnr']"}[kind]
        raise ValueError(f"brain data has {need}: no noise ceiling of kind={kind!r} can be estimated")
    arr = to_float64(data)
    if kind == "ncsnr":
        return ncsnr_ceiling(arr, 3 if n_trials is None else n_trials)
    if kind == "split_half":
        return split_half_ceiling(arr, n_splits=n_splits, seed=seed)
    if kind == "rdm" or arr.ndim == 2:
        return rdm_noise_ceiling(data if arr.ndim == 3 else arr, method)
    if arr.ndim == 3:
        if arr.shape[1] != arr.shape[2]:
            return split_half_ceiling(arr, n_splits=n_splits, seed=seed)
        problem = rdm_problem(arr, dtype=getattr(data, "dtype", arr.dtype))
        if problem is None:
            return rdm_noise_ceiling(data, method)
        raise ValueError(f"data of shape {arr.shape} is ambiguous: square matrices that are not RDMs ({problem}). "
                         f"Pass kind='rdm' for RDMs (after making them symmetric with a zero diagonal) or "
                         f"kind='split_half' for (n_repeats, n_stimuli, n_units) trials")
    raise ShapeError(f"data must be an RDMSet, BrainData, (k, n, n) RDMs or (r, n, u) trials; got shape {arr.shape}")
