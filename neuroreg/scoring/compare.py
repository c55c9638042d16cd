"""Comparing RDMs: Pearson, Spearman, Kendall tau-a, rsatoolbox's rho-a and cosine, many-vs-many.

Every argument may be one RDM (square ``(n, n)`` or condensed ``(n (n - 1) / 2,)``
in scipy ``squareform`` order), a stack (``(k, n, n)`` or ``(k, m)``), or an
:class:`~neuroreg.brain.RDMSet`. Only the upper triangles enter a comparison
(Kriegeskorte et al. 2008; Nili et al. 2014). Kendall tau-a counts
(concordant - discordant) / (m (m - 1) / 2) with ties counting zero, the
comparison Nili et al. recommend when models predict tied dissimilarities.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import kendalltau, rankdata
from torch import Tensor

from neuroreg._utils.checks import check_finite
from neuroreg._utils.condensed import condense, n_from_condensed
from neuroreg.brain.data import RDMSet
from neuroreg.errors import ShapeError, StimulusMismatchError, UnknownNameError
from neuroreg.scoring._precision import compute_dtype, rdm_problem, to_float64

__all__ = ["compare_rdms", "compare_vectors", "COMPARE_METHODS"]

COMPARE_METHODS = ("pearson", "spearman", "kendall_tau_a", "rho_a", "cosine")
_ALIASES = {"corr": "pearson", "correlation": "pearson", "tau-a": "kendall_tau_a", "tau_a": "kendall_tau_a",
            "rho-a": "rho_a"}
_TAU_BLOCK = 1 << 23  # sign-matrix elements per block in the tau-a count
# A vector whose centred values all lie within this many units of rounding (of its largest value)
# of zero is constant up to rounding: its correlation with anything is undefined.
_CONSTANT_ULPS = 16


def _method(method: str) -> str:
    m = _ALIASES.get(method, method)
    if m not in COMPARE_METHODS:
        raise UnknownNameError(f"method must be one of {COMPARE_METHODS} (aliases {sorted(_ALIASES)}); got {method!r}")
    return m


def _vectors(name: str, x) -> tuple[np.ndarray | Tensor, bool]:
    """Any accepted RDM form -> ``(k, m)`` upper-triangle vectors and whether it was a single RDM."""
    if isinstance(x, RDMSet):
        return x.condensed(), False
    if not isinstance(x, Tensor):
        x = np.asarray(x)
        tol_dtype = x.dtype
        x = x.astype(np.float64, copy=False)
    else:
        tol_dtype = x.dtype
    check_finite(name, x)
    if x.ndim == 1:
        _n_from_m(name, x.shape[0])
        return x[None], True
    if x.ndim == 2:
        if x.shape[0] == x.shape[1]:
            # A square 2-D input is one RDM; reading it as k condensed RDMs would silently pair wrong cells.
            _check_rdm(name, x, tol_dtype)
            return condense(x[None]), True
        _n_from_m(name, x.shape[1])
        return x, False
    if x.ndim == 3:
        if x.shape[1] != x.shape[2]:
            raise ShapeError(f"{name} as a 3-D array must be a stack of square RDMs (k, n, n); got shape {tuple(x.shape)}")
        _check_rdm(name, x, tol_dtype)
        return condense(x), False
    raise ShapeError(f"{name} must be an RDM (n, n) or condensed (m,), or a stack (k, n, n) / (k, m); "
                     f"got shape {tuple(x.shape)}")


def _check_rdm(name: str, x, tol_dtype) -> None:
    """Raise unless square ``x`` (n, n) / (k, n, n) is symmetric with a zero diagonal at the precision it came in."""
    problem = rdm_problem(x, dtype=tol_dtype)
    if problem is not None:
        raise ValueError(f"{name} is a square matrix of shape {tuple(x.shape)} but not an RDM: {problem}. "
                         f"An RDM is symmetric with a zero diagonal; pass condensed stacks (k, m) only with "
                         f"k != m, or an RDMSet")


def _n_from_m(name: str, m: int) -> int:
    n = n_from_condensed(m)
    if n is None or m < 3:
        raise ShapeError(f"{name} looks condensed but has {m} entries; a condensed RDM of n >= 3 stimuli has "
                         f"n (n - 1) / 2 entries (3, 6, 10, ...), or pass square (n, n) matrices")
    return n


def _normalise_rows(name: str, v, center: bool):
    """Rows of ``v`` (centred first when ``center``) divided by their norms.

    Each row is first divided by its largest magnitude, so that no square overflows (RDMs of
    1e160) or underflows (RDMs of 1e-170) in the norm. A row whose centred values are all
    within rounding of zero (relative to the row's own magnitude) is constant: refused."""
    is_torch = isinstance(v, Tensor)
    if is_torch:
        top = v.detach().abs().amax(-1, keepdim=True)
        if center:
            v = v - v.mean(-1, keepdim=True)
        spread = v.detach().abs().amax(-1, keepdim=True)
        eps = torch.finfo(v.dtype).eps
        bad = (spread <= _CONSTANT_ULPS * eps * top).ravel().cpu().numpy()
        v = v / spread.clamp_min(torch.finfo(v.dtype).tiny)
        norm = v.norm(dim=-1, keepdim=True)
    else:
        top = np.abs(v).max(-1, keepdims=True)
        if center:
            v = v - v.mean(-1, keepdims=True)
        spread = np.abs(v).max(-1, keepdims=True)
        bad = (spread <= _CONSTANT_ULPS * np.finfo(v.dtype).eps * top).ravel()
        v = v / np.maximum(spread, np.finfo(v.dtype).tiny)
        norm = np.linalg.norm(v, axis=-1, keepdims=True)
    if bad.any():
        what = "constant (zero variance)" if center else "all zero"
        raise ValueError(f"{name}: RDM {int(np.flatnonzero(bad)[0])} is {what}, so the comparison is undefined")
    return v / norm


def _ranks(v) -> np.ndarray:
    arr = to_float64(v)
    return rankdata(arr, axis=-1)


def _tau_a(a: Tensor, b: Tensor) -> Tensor:
    """Kendall tau-a between every row of ``a (ka, m)`` and ``b (kb, m)`` by blocks of sign matrices (for GPUs)."""
    ka, m = a.shape
    kb = b.shape[0]
    total = torch.zeros(ka, kb, dtype=torch.float64, device=a.device)
    rows = max(1, _TAU_BLOCK // ((ka + kb) * m))
    for s in range(0, m, rows):
        # Each block's inner products are integers below 2^24, exact in float32.
        sa = torch.sign(a[:, s:s + rows, None] - a[:, None, :]).to(torch.float32).reshape(ka, -1)
        sb = torch.sign(b[:, s:s + rows, None] - b[:, None, :]).to(torch.float32).reshape(kb, -1)
        total += (sa @ sb.T).to(torch.float64)
    return total / (m * (m - 1))  # ordered pairs count every unordered pair twice


def _np(v) -> np.ndarray:
    return to_float64(v)


def _tied_pairs(v: np.ndarray) -> int:
    _, counts = np.unique(v, return_counts=True)
    return int((counts * (counts - 1) // 2).sum())


def _tau_a_sorted(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Kendall tau-a in O(m log m) per pair from scipy's merge-sort tau-b:
    tau_a = tau_b sqrt((n0 - t_a)(n0 - t_b)) / n0 with n0 = m (m - 1) / 2 and t the tied pairs."""
    m = a.shape[1]
    n0 = m * (m - 1) / 2
    ties_a = [_tied_pairs(v) for v in a]
    ties_b = [_tied_pairs(v) for v in b]
    out = np.zeros((a.shape[0], b.shape[0]))
    for i in range(a.shape[0]):
        for j in range(b.shape[0]):
            if ties_a[i] == n0 or ties_b[j] == n0:
                continue  # a constant vector has no concordant or discordant pair: tau-a = 0
            tau_b = kendalltau(a[i], b[j]).statistic
            out[i, j] = tau_b * np.sqrt((n0 - ties_a[i]) * (n0 - ties_b[j])) / n0
    return out


def compare_rdms(a, b, method: str = "pearson"):
    """Similarity between RDMs ``a`` and ``b`` by ``method``.

    Parameters
    ----------
    a, b: an RDM (square or condensed), a stack of RDMs, or an RDMSet; both over
        the same ``n`` stimuli in the same order.
    method: ``"pearson"`` (alias ``"corr"``), ``"spearman"`` (average ranks for
        ties, as ``scipy.stats.spearmanr``), ``"kendall_tau_a"`` (alias
        ``"tau-a"``), ``"rho_a"`` (rsatoolbox's ``rho-a``: the expected Spearman
        correlation under random tie breaking) or ``"cosine"``.

    Returns a float (0-d tensor for torch input) when ``a`` and ``b`` are single
    RDMs, else a ``(k_a, k_b)`` matrix. Torch inputs give torch outputs on their
    device; pearson and cosine are differentiable, rank-based methods are not.

    Precision: numpy inputs are compared in float64; torch inputs in float64
    when float64, else in float32 (float16/bfloat16 are promoted before any sum),
    and the result has that dtype. Each RDM is divided by its largest magnitude
    before any square, so RDMs of 1e-200 or 1e200 compare as the unscaled ones.

    A 2-D square input is always read as one RDM and must be symmetric with a
    zero diagonal (within rounding at its dtype: relative 1e-8 for float64,
    1e-5 for float32, 1e-2 for 16-bit); otherwise a ``ValueError`` says which
    property fails, rather than reading its rows as condensed RDMs. Minimum:
    3 stimuli (3 dissimilarities).
    """
    method = _method(method)
    va, single_a = _vectors("a", a)
    vb, single_b = _vectors("b", b)
    if va.shape[1] != vb.shape[1]:
        raise StimulusMismatchError(
            f"a and b must be RDMs over the same stimuli: a has {_n_from_m('a', va.shape[1])} stimuli, "
            f"b has {_n_from_m('b', vb.shape[1])}")
    out = compare_vectors(va, vb, method)
    if single_a and single_b:
        return out[0, 0] if isinstance(out, Tensor) else float(out[0, 0])
    return out


def compare_vectors(va, vb, method: str = "pearson"):
    """:func:`compare_rdms` on plain ``(k_a, m)`` and ``(k_b, m)`` vectors of any length ``m`` -> ``(k_a, k_b)``.

    No RDM shape checks: used for subsets of dissimilarities (bootstraps, masks). Two single
    ``(m,)`` vectors give a float (a 0-d tensor for torch input).
    """
    method = _method(method)
    use_torch = isinstance(va, Tensor) or isinstance(vb, Tensor)
    if use_torch:
        ref = va if isinstance(va, Tensor) else vb
        # float16/bfloat16 dissimilarities are compared in float32: their norms overflow or lose digits
        dtype = compute_dtype(ref.dtype)
        va = torch.as_tensor(va, dtype=dtype, device=ref.device) if isinstance(va, Tensor) else \
            torch.as_tensor(np.asarray(va, dtype=np.float64), dtype=dtype, device=ref.device)
        vb = torch.as_tensor(vb, dtype=dtype, device=ref.device) if isinstance(vb, Tensor) else \
            torch.as_tensor(np.asarray(vb, dtype=np.float64), dtype=dtype, device=ref.device)
    else:
        va = np.asarray(va, dtype=np.float64)
        vb = np.asarray(vb, dtype=np.float64)
    single = va.ndim == 1 and vb.ndim == 1
    va = va[None] if va.ndim == 1 else va
    vb = vb[None] if vb.ndim == 1 else vb
    if va.ndim != 2 or vb.ndim != 2:
        raise ShapeError(f"va and vb must be (k, m) stacks of dissimilarity vectors (or single (m,) vectors); "
                         f"got shapes {tuple(va.shape)} and {tuple(vb.shape)}")
    if va.shape[-1] != vb.shape[-1]:
        raise ShapeError(f"va and vb must hold the same dissimilarities: va has {va.shape[-1]} per vector, "
                         f"vb has {vb.shape[-1]} (shapes {tuple(va.shape)} and {tuple(vb.shape)})")
    if va.shape[-1] < 2:
        raise ValueError(f"cannot compare vectors of fewer than 2 dissimilarities; got {va.shape[-1]}")
    if method in ("pearson", "cosine"):
        center = method == "pearson"
        out = _normalise_rows("a", va, center) @ _normalise_rows("b", vb, center).T
    elif method in ("spearman", "rho_a"):
        ra, rb = _ranks(va), _ranks(vb)
        if method == "spearman":
            out = _normalise_rows("a", ra, True) @ _normalise_rows("b", rb, True).T
        else:
            m = ra.shape[1]
            out = (ra - ra.mean(1, keepdims=True)) @ (rb - rb.mean(1, keepdims=True)).T * (12.0 / (m ** 3 - m))
        if use_torch:
            out = torch.as_tensor(out, dtype=va.dtype, device=va.device)
    elif use_torch and va.device.type != "cpu":
        out = _tau_a(va.detach().to(torch.float64), vb.detach().to(torch.float64)).to(va.dtype)
    else:
        out = _tau_a_sorted(_np(va), _np(vb))
        if use_torch:
            out = torch.as_tensor(out, dtype=va.dtype, device=va.device)
    if use_torch:
        out = out.clamp(-1.0, 1.0)
        return out[0, 0] if single else out
    out = np.clip(out, -1.0, 1.0)
    return float(out[0, 0]) if single else out
