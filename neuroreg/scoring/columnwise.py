"""Column-by-column statistics between two ``(n, k)`` arrays: Pearson r and R^2.

The one implementation used by the encoding scores and the published protocols.
A column without variance has no defined r or R^2: ``constant`` says what to
return there (0, the encoding scores' convention, or NaN, as scipy's ``pearsonr``).
Both statistics are scale free: each column is divided by its largest magnitude
(a power of two, exactly) before any square, so data of 1e-200 or 1e200 give the same numbers as data of 1.
"""

from __future__ import annotations

import numpy as np

__all__ = ["pearson_per_column", "r2_per_column"]


def _fill(constant: str) -> float:
    if constant not in ("zero", "nan"):
        raise ValueError(f"constant must be 'zero' or 'nan'; got {constant!r}")
    return 0.0 if constant == "zero" else np.nan


def _pow2_columns(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """The arrays with each column divided by the power of two nearest the column's largest magnitude
    over all of them (exact: only exponents change, so constant columns stay exactly constant)."""
    top = np.zeros(arrays[0].shape[1:])
    for a in arrays:
        top = np.maximum(top, np.abs(a).max(0, initial=0.0))
    exponent = np.frexp(np.where(np.isfinite(top), top, 0.0))[1]
    return tuple(np.ldexp(a, -exponent) for a in arrays)


def pearson_per_column(a: np.ndarray, b: np.ndarray, *, constant: str = "zero") -> np.ndarray:
    """Pearson r between matching columns of ``a`` and ``b`` ``(n, k)`` -> ``(k,)``.

    ``constant``: value where either column is constant, ``"zero"`` (default) or ``"nan"``.
    """
    fill = _fill(constant)
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape (n, k); got {a.shape} and {b.shape}")
    (a,) = _pow2_columns(a - a.mean(0))
    (b,) = _pow2_columns(b - b.mean(0))
    den = np.sqrt((a ** 2).sum(0) * (b ** 2).sum(0))
    return np.divide((a * b).sum(0), den, out=np.full(den.shape, fill), where=den > 0)


def r2_per_column(y: np.ndarray, pred: np.ndarray, *, constant: str = "zero") -> np.ndarray:
    """Coefficient of determination of ``pred`` for each column of ``y`` ``(n, k)`` -> ``(k,)``.

    ``1 - SS_res / SS_tot`` about each column's own mean (scikit-learn's
    ``r2_score(..., multioutput="raw_values")``); ``constant`` is returned where ``y``'s column is constant.
    """
    fill = _fill(constant)
    y = np.asarray(y, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    if y.shape != pred.shape:
        raise ValueError(f"y and pred must have the same shape; got {y.shape} and {pred.shape}")
    y, pred = _pow2_columns(y, pred)     # the ratio below does not depend on the scale; the squares stay in range
    ss_tot = ((y - y.mean(0)) ** 2).sum(0)
    ss_res = ((y - pred) ** 2).sum(0)
    return np.divide(ss_tot - ss_res, ss_tot, out=np.full(ss_tot.shape, fill), where=ss_tot > 0)
