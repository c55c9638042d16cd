"""Column-by-column statistics between two ``(n, k)`` arrays: Pearson r and R^2.

The one implementation of each in neuroreg: the encoding scores, the published protocols,
:class:`~neuroreg.scoring.RidgeGCV` and FactorTopy all use these two functions.
A column without variance has no defined r or R^2: ``constant`` says what to
return there (0, the encoding scores' convention, or NaN, as scipy's ``pearsonr``).
A column is constant when all its values are equal (tested exactly: subtracting a rounded
mean would leave a column of 0.1s a variance of 1e-33 and an R^2 of -1e30).
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


def _constant_columns(a: np.ndarray) -> np.ndarray:
    """``(k,)`` True where every value of the column of ``a`` ``(n, k)`` is the same (or n is 0)."""
    return (a == a[:1]).all(0)


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
    defined = ~(_constant_columns(a) | _constant_columns(b))
    (a,) = _pow2_columns(a - a.mean(0))
    (b,) = _pow2_columns(b - b.mean(0))
    den = np.sqrt((a ** 2).sum(0) * (b ** 2).sum(0))
    return np.divide((a * b).sum(0), den, out=np.full(den.shape, fill), where=defined & (den > 0))


def r2_per_column(y: np.ndarray, pred: np.ndarray, *, constant: str = "zero") -> np.ndarray:
    """Coefficient of determination of ``pred`` for each column of ``y`` ``(n, k)`` -> ``(k,)``.

    ``1 - SS_res / SS_tot`` about each column's own mean, as scikit-learn's
    ``r2_score(..., multioutput="raw_values")`` for every column with variance.

    Constant-column rule: a column of ``y`` whose values are all equal has ``SS_tot = 0``, so R^2 is
    0/0 for an exact prediction and -inf for any other; it gets ``constant`` whatever ``pred`` is:
    ``"zero"`` (default): R^2 is the share of a column's variance that the prediction explains beyond
    the column's mean; a constant column has no variance, its mean already predicts it exactly, and no
    prediction can explain anything beyond that, which is the score of the mean itself, 0;
    ``"nan"``: leave it out of an average. (scikit-learn gives 1.0 to an exact prediction and 0.0
    otherwise, so a median over voxels would hang on whether a flat voxel is predicted to the last bit.)
    """
    fill = _fill(constant)
    y = np.asarray(y, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    if y.shape != pred.shape:
        raise ValueError(f"y and pred must have the same shape; got {y.shape} and {pred.shape}")
    defined = ~_constant_columns(y)
    y, pred = _pow2_columns(y, pred)     # the ratio below does not depend on the scale; the squares stay in range
    ss_tot = ((y - y.mean(0)) ** 2).sum(0)
    ss_res = ((y - pred) ** 2).sum(0)
    return np.divide(ss_tot - ss_res, ss_tot, out=np.full(ss_tot.shape, fill), where=defined & (ss_tot > 0))
