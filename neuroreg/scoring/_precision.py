"""Working precision and square-matrix checks shared by the scorers (private).

Every scoring function accumulates in float32 or float64 whatever the input
dtype: float16 and bfloat16 (AMP activations) are promoted to float32 before
any sum, product or norm, because float16 overflows past 65,504 (a sum of
squares of a few hundred activations) and bfloat16 keeps 8 bits of mantissa.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

_LOW = (torch.float16, torch.bfloat16)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 stays float64; every other dtype (float32, float16, bfloat16, ints) computes in float32
    (ints in float64, as numpy would)."""
    if dtype == torch.float64:
        return torch.float64
    if dtype in _LOW or dtype == torch.float32:
        return torch.float32
    return torch.float64


def promote(t: Tensor) -> Tensor:
    """``t`` in its working precision (no copy when already float32/float64)."""
    return t.to(compute_dtype(t.dtype))


def to_float64(x) -> np.ndarray:
    """Any array-like or tensor (any device, any float dtype incl. bfloat16) as a float64 numpy array."""
    if isinstance(x, Tensor):
        return x.detach().to(device="cpu", dtype=torch.float64).numpy()
    return np.asarray(x, dtype=np.float64)


def rel_tolerance(dtype) -> float:
    """Relative tolerance for 'symmetric' and 'zero diagonal' at the precision the matrix was stored in."""
    if isinstance(dtype, torch.dtype):
        if dtype == torch.float64:
            return 1e-8
        if dtype == torch.float32:
            return 1e-5
        return 1e-2
    dtype = np.dtype(dtype)
    if dtype == np.float64 or dtype.kind in "iub":
        return 1e-8
    if dtype == np.float32:
        return 1e-5
    return 1e-2


def square_defect(x) -> tuple[float, float, float]:
    """``(max |x - x^T|, max |diag x|, max |x|)`` over the last two dims of a square (..., n, n) input."""
    if isinstance(x, Tensor):
        x = x.detach()
        x = x.to(compute_dtype(x.dtype))
        scale = float(x.abs().max()) if x.numel() else 0.0
        diag = float(torch.diagonal(x, 0, -2, -1).abs().max())
        asym = float((x - x.transpose(-1, -2)).abs().max())
    else:
        x = np.asarray(x)
        scale = float(np.abs(x).max()) if x.size else 0.0
        diag = float(np.abs(np.diagonal(x, 0, -2, -1)).max())
        asym = float(np.abs(x - np.swapaxes(x, -1, -2)).max())
    return asym, diag, scale


def rdm_problem(x, *, zero_diagonal: bool = True, dtype=None) -> str | None:
    """Why a square ``(..., n, n)`` input is not an RDM (None when it is one): asymmetry or a
    non-zero diagonal beyond rounding at ``dtype`` (default: ``x``'s own; pass the dtype the
    data came in when ``x`` was already converted)."""
    asym, diag, scale = square_defect(x)
    tol = rel_tolerance(x.dtype if dtype is None else dtype) * max(scale, 1e-300)
    if asym > tol:
        return f"not symmetric (max |m - m^T| = {asym:.3g}, tolerance {tol:.3g})"
    if zero_diagonal and diag > tol:
        return f"its diagonal is not zero (max |diagonal| = {diag:.3g}, tolerance {tol:.3g})"
    return None


# Magnitudes whose squares, summed over any realistic number of features, stay far from float64's
# overflow (1.8e308) and underflow (2.2e-308): inside this range data are used as given, outside it
# they are first scaled by a power of two (exact: only the exponent changes).
SAFE_EXPONENT = 100   # 2**100 ~ 1.3e30, 2**-100 ~ 7.9e-31
SAFE_EXPONENT_FLOAT32 = 20   # torch arithmetic in float32 (max 3.4e38, smallest normal 1.2e-38)


def max_abs(x) -> float:
    """Largest magnitude of ``x`` (0.0 when empty; NaN/inf pass through), without an ``abs`` copy."""
    if isinstance(x, Tensor):
        if x.numel() == 0:
            return 0.0
        lo, hi = torch.aminmax(x.detach())
        return max(abs(float(lo)), abs(float(hi)))
    x = np.asarray(x)
    if x.size == 0:
        return 0.0
    return max(abs(float(x.min())), abs(float(x.max())))


def pow2_exponent(magnitude: float) -> int:
    """``e`` with ``magnitude * 2**-e`` in [0.5, 1); 0 for 0 or a non-finite magnitude."""
    if magnitude == 0 or not np.isfinite(magnitude):
        return 0
    return int(np.frexp(magnitude)[1])


def unit_exponent(x, *, safe: int | None = None) -> int:
    """The power of two to divide ``x`` by so that its largest magnitude is about 1, or 0 when that
    magnitude lies within ``2**-safe .. 2**safe`` (the data are used as given then). Default ``safe``:
    :data:`SAFE_EXPONENT`, or :data:`SAFE_EXPONENT_FLOAT32` for tensors that compute in float32."""
    if safe is None:
        low = isinstance(x, Tensor) and compute_dtype(x.dtype) == torch.float32
        safe = SAFE_EXPONENT_FLOAT32 if low else SAFE_EXPONENT
    e = pow2_exponent(max_abs(x))
    return e if abs(e) > safe else 0


def scaled_by_pow2(x, e: int):
    """``x * 2**-e`` (exact for normal numbers); ``x`` itself when ``e == 0``. numpy or torch alike."""
    if e == 0:
        return x
    if isinstance(x, Tensor):
        half = -e // 2          # two factors: 2**-e alone can exceed float32's range (subnormal inputs)
        return (x * (2.0 ** half)) * (2.0 ** (-e - half))
    return np.ldexp(np.asarray(x, dtype=np.float64), -e)
