"""Representational dissimilarity matrices, chunked over features.

``rdm(x)`` for ``x (n_stimuli, n_features)`` accumulates the ``n x n`` Gram
matrix of (row- or column-centred) patterns over blocks of features, so the
extra memory is one ``n x chunk`` block plus the ``n x n`` result: n = 1,000
stimuli x d = 1,000,000 features needs about 40 MB beyond ``x`` itself. On CPU
the Gram uses the BLAS symmetric rank-k update (half the work of ``x @ x.T``)
in float64, on contiguous float64 input in one call without any copy (the row
means of the correlation distance are then removed from the Gram); on other devices (or when ``x`` requires grad, as in training
losses) it stays in torch, differentiable, in the input's dtype.

Distances follow ``scipy.spatial.distance.pdist``: correlation is 1 - Pearson r
between stimulus patterns (Kriegeskorte et al. 2008), cosine is 1 - cosine
similarity, euclidean and sqeuclidean as usual.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.linalg import blas
from torch import Tensor

from neuroreg._utils.checks import check_finite
from neuroreg._utils.condensed import condense, square
from neuroreg.errors import NonFiniteError, ShapeError, UnknownNameError
from neuroreg.scoring._precision import compute_dtype, pow2_exponent, scaled_by_pow2, unit_exponent

__all__ = ["rdm", "RDM_METRICS", "condense", "square"]

RDM_METRICS = ("correlation", "euclidean", "sqeuclidean", "cosine")
_SS_LIMIT = 2.0 ** 700   # sums of squares beyond 2**+-700 trigger the rescale
_BLOCK_ELEMENTS = 1 << 22  # n x chunk block size (32 MB in float64)
# A row whose standard deviation is below this fraction of its mean is constant up to rounding.
_REL_STD_TOL = {torch.float64: 1e-13, torch.float32: 1e-5, torch.float16: 1e-2, torch.bfloat16: 1e-2}


def _check_metric(metric: str) -> None:
    if metric not in RDM_METRICS:
        raise UnknownNameError(f"metric must be one of {RDM_METRICS}; got {metric!r}")


def _as_2d(x) -> tuple[np.ndarray | Tensor, bool]:
    is_torch = isinstance(x, Tensor)
    if not is_torch:
        x = np.asarray(x)
        if x.dtype.kind not in "fiub":
            raise TypeError(f"x must be numeric; got dtype {x.dtype}")
    if x.ndim < 2:
        raise ShapeError(f"x must be (n_stimuli, n_features) (trailing dims are flattened); got shape {tuple(x.shape)}")
    n_features = int(np.prod(x.shape[1:]))
    if x.shape[0] < 2 or n_features < 1:
        raise ShapeError(f"x needs at least 2 stimuli and 1 feature (n_stimuli, n_features); got shape "
                         f"{tuple(x.shape)} ({x.shape[0]} stimuli x {n_features} features)")
    x = x.reshape(x.shape[0], n_features)
    return x, is_torch


def _chunk(n: int, d: int, chunk_size: int | None) -> int:
    if chunk_size is not None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1; got {chunk_size}")
        return int(chunk_size)
    return max(256, min(d, _BLOCK_ELEMENTS // max(n, 1)))


def _gram_numpy(x: np.ndarray, metric: str, chunk: int) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Symmetric Gram of the centred rows, in float64. Returns (G, offsets, ss); offsets is None for cosine."""
    n, d = x.shape
    if metric in ("correlation", "cosine") and x.dtype == np.float64 and x.flags.c_contiguous:
        # One rank-k update straight on the input (x.T is Fortran-ordered: no copy); for correlation
        # the row means come off afterwards, G_c = G - d m m^T, unless they dwarf the spread.
        g = _mirror(blas.dsyrk(1.0, x.T, trans=1, lower=0))
        if metric == "cosine":
            return g, None, np.diag(g).copy()
        offset = x.mean(1)[:, None]
        g -= d * (offset * offset.T)
        ss = np.diag(g).copy()
        # Subtracting d m^2 loses digits in proportion to m^2 / var: past 1e6 (or for constant rows) centre first.
        if (ss > 1e-6 * d * offset[:, 0] ** 2).all():
            return g, offset, ss
    if metric == "correlation":
        offset = x.mean(1, dtype=np.float64)[:, None]          # centre each stimulus pattern
    elif metric in ("euclidean", "sqeuclidean"):
        offset = x.mean(0, dtype=np.float64)[None, :]          # distances are translation invariant
    else:
        offset = None
    g = np.zeros((n, n), dtype=np.float64, order="F")
    for s in range(0, d, chunk):
        blk = np.array(x[:, s:s + chunk], dtype=np.float64, order="C")
        if offset is not None:
            blk -= offset if offset.shape[1] == 1 else offset[:, s:s + chunk]
        # blk.T is Fortran-ordered (chunk, n): syrk with trans=1 adds blk @ blk.T without a copy.
        g = blas.dsyrk(1.0, blk.T, beta=1.0, c=g, trans=1, lower=0, overwrite_c=1)
    g = _mirror(g)
    return g, offset, np.diag(g).copy()


def _mirror(g: np.ndarray) -> np.ndarray:
    """Copy the upper triangle written by syrk into the lower one."""
    iu = np.triu_indices(g.shape[0], 1)
    g[iu[1], iu[0]] = g[iu]
    return g


def _gram_torch(x: Tensor, metric: str, chunk: int) -> tuple[Tensor, Tensor | None, Tensor]:
    n, d = x.shape
    if not torch.is_floating_point(x) or x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    if metric == "correlation":
        offset = x.mean(1, keepdim=True)
    elif metric in ("euclidean", "sqeuclidean"):
        offset = x.mean(0, keepdim=True)
    else:
        offset = None
    g: Tensor | None = None
    for s in range(0, d, chunk):
        blk = x[:, s:s + chunk]
        if offset is not None:
            blk = blk - (offset if offset.shape[1] == 1 else offset[:, s:s + chunk])
        part = blk @ blk.T
        g = part if g is None else g + part
    if g is None:
        raise ShapeError(f"x needs at least 1 feature; got shape {tuple(x.shape)}")
    return g, offset, g.diagonal()


def _raise_nonfinite(x, ss) -> None:
    bad_rows = np.flatnonzero(~np.isfinite(np.asarray(ss)))
    row = int(bad_rows[0])
    vals = x[row].detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x[row])
    cols = np.flatnonzero(~np.isfinite(vals))
    where = f"first at index ({row}, {int(cols[0])})" if cols.size else f"overflow in row {row}"
    raise NonFiniteError(f"x contains non-finite values (NaN or inf) in {bad_rows.size} of {x.shape[0]} "
                         f"stimuli, {where}")


def _check_variance(x, metric: str, ss, offset, dtype) -> None:
    if metric not in ("correlation", "cosine"):
        return
    d = x.shape[1]
    ss_np = ss.detach().cpu().numpy() if isinstance(ss, Tensor) else ss
    if metric == "correlation":
        mean = offset.detach().cpu().numpy().ravel() if isinstance(offset, Tensor) else offset.ravel()
        tol = _REL_STD_TOL.get(dtype, 1e-13)
        zero = ss_np <= d * (tol * mean) ** 2
        what = "zero variance across features (constant patterns), so their correlation distance is undefined"
    else:
        zero = ss_np <= 0
        what = "zero norm, so their cosine distance is undefined"
    if zero.any():
        idx = np.flatnonzero(zero)
        raise ValueError(f"x has {idx.size} stimuli with {what}: rows {idx[:10].tolist()}"
                         + (" ..." if idx.size > 10 else ""))


def _finish_numpy(g: np.ndarray, ss: np.ndarray, metric: str) -> np.ndarray:
    if metric in ("correlation", "cosine"):
        inv = 1.0 / np.sqrt(ss)
        g *= np.outer(inv, inv)  # outer products are exactly symmetric, so is the result
        np.subtract(1.0, g, out=g)
        np.clip(g, 0.0, 2.0, out=g)
    else:
        g *= -2.0
        g += np.add.outer(ss, ss)
        np.maximum(g, 0.0, out=g)
        if metric == "euclidean":
            np.sqrt(g, out=g)
    np.fill_diagonal(g, 0.0)
    return np.ascontiguousarray(g)


def _finish_torch(g: Tensor, ss: Tensor, metric: str) -> Tensor:
    n = g.shape[0]
    if metric in ("correlation", "cosine"):
        inv = ss.rsqrt()
        out = (1.0 - g * (inv[:, None] * inv[None, :])).clamp(0.0, 2.0)
    else:
        out = (ss[:, None] + ss[None, :] - 2.0 * g).clamp_min(0.0)
        if metric == "euclidean":
            # sqrt has an infinite derivative at 0: keep the diagonal out of the graph.
            off = ~torch.eye(n, dtype=torch.bool, device=g.device)
            out = torch.where(off, out.where(off, torch.ones_like(out)).sqrt(), torch.zeros_like(out))
    return out * (1.0 - torch.eye(n, dtype=out.dtype, device=out.device))


def _scale_back(out, e: int, metric: str):
    """Distances of data that were divided by ``2**e`` back in the data's units (euclidean: ``2**e``,
    sqeuclidean: ``2**(2 e)``); correlation and cosine distances do not depend on the scale. Refuses
    when a distance is not representable (overflows, or a non-zero one falls below the smallest
    normal number and loses its digits) rather than returning inf or 0."""
    if e == 0 or metric in ("correlation", "cosine"):
        return out
    k = e if metric == "euclidean" else 2 * e
    is_torch = isinstance(out, Tensor)
    vals = out.detach().cpu().numpy() if is_torch else out
    positive = vals[vals > 0]
    info = np.finfo(np.float32 if is_torch and out.dtype == torch.float32 else np.float64)
    if positive.size:
        hi_exp = pow2_exponent(float(positive.max())) + k      # 2**(hi_exp - 1) <= largest distance < 2**hi_exp
        lo_exp = pow2_exponent(float(positive.min())) + k
        if hi_exp > info.maxexp or lo_exp - 1 < info.minexp:
            raise ValueError(
                f"x has magnitude about 2^{e} (~{np.ldexp(1.0, e):.0e}): its {metric} distances (about 2^{lo_exp} to 2^{hi_exp}) are not "
                f"representable in {info.dtype} (2^{info.minexp} to 2^{info.maxexp}); rescale x (e.g. divide it "
                f"by its largest magnitude) or use metric='correlation' or 'cosine', which do not depend on it")
    if is_torch:
        half = k // 2        # two factors: 2**k alone can exceed float32's range
        return (out * (2.0 ** half)) * (2.0 ** (k - half))
    return np.ldexp(out, k)


def rdm(x, metric: str = "correlation", *, condensed: bool = False, chunk_size: int | None = None):
    """Dissimilarity matrix between the rows (stimuli) of ``x``.

    Parameters
    ----------
    x: ``(n_stimuli, n_features)`` numpy array or torch tensor; trailing
        dimensions are flattened (``(n, C, H, W)`` activations work as is).
    metric: ``"correlation"`` (1 - Pearson r, the default of RSA), ``"cosine"``,
        ``"euclidean"`` or ``"sqeuclidean"``, as in ``scipy.spatial.distance.pdist``.
    condensed: return the upper triangle ``(n (n - 1) / 2,)`` in scipy
        ``squareform`` order instead of the square matrix.
    chunk_size: features per block (default: about 4 M elements per block).

    Returns ``(n, n)`` (or condensed): numpy float64 for numpy input; a torch
    tensor on ``x``'s device for torch input, differentiable when ``x`` requires
    grad. Precision: on CPU without gradient the Gram accumulates in float64
    whatever the input dtype; otherwise in float32 for float16/bfloat16/float32
    input and float64 for float64. Torch results are float32 for float16,
    bfloat16 and float32 input, float64 for float64.
    Row order: ``rdm(x[p])`` is ``rdm(x)[p][:, p]``. Minimum: 2 stimuli.
    Rows with zero variance (correlation) or zero norm (cosine) raise ``ValueError``.
    Magnitude: data far from 1 (1e-200 or 1e200) are scaled by a power of two before any
    square (exact), so every metric gives the distances of the unscaled data (euclidean ones
    scaled back); distances that float64 (float32 for torch results) cannot represent, such
    as sqeuclidean ones of data of 1e-170, raise ``ValueError`` saying so.
    """
    _check_metric(metric)
    x, is_torch = _as_2d(x)
    n, d = x.shape
    chunk = _chunk(n, d, chunk_size)
    use_torch = is_torch and (x.device.type != "cpu" or (x.requires_grad and torch.is_grad_enabled()))
    if use_torch:
        xw = x if torch.is_floating_point(x) and x.dtype not in (torch.float16, torch.bfloat16) else x.float()
        e = unit_exponent(xw)
        g, offset, ss = _gram_torch(scaled_by_pow2(xw, e), metric, chunk)
        if not bool(torch.isfinite(ss).all()):
            _raise_nonfinite(x, ss.detach().cpu().numpy())
        _check_variance(x, metric, ss, offset, g.dtype)
        out = _scale_back(_finish_torch(g, ss, metric), e, metric)
        return condense(out) if condensed else out
    # bfloat16 has no numpy twin; float16 blocks are widened to float64 chunk by chunk below
    x_np = (x.detach().float() if x.dtype == torch.bfloat16 else x.detach()).numpy() if is_torch else x
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        g_np, offset_np, ss_np = _gram_numpy(x_np, metric, chunk)
    # Sums of squares near float64's limits (data far from magnitude 1): recompute on the data scaled by a
    # power of two (exact), so that no square overflows or underflows; euclidean distances are scaled back.
    # Only then is the data's magnitude looked at, so ordinary data pay nothing.
    e = 0
    if not np.isfinite(ss_np).all() or ss_np.max() > _SS_LIMIT or ss_np.min() < 1.0 / _SS_LIMIT:
        e = unit_exponent(x_np)
        if e:
            g_np, offset_np, ss_np = _gram_numpy(scaled_by_pow2(x_np, e), metric, chunk)
    if not np.isfinite(ss_np).all():
        _raise_nonfinite(x_np, ss_np)
    _check_variance(x_np, metric, ss_np, offset_np, torch.float64)
    out_np = _scale_back(_finish_numpy(g_np, ss_np, metric), e, metric)
    if condensed:
        out_np = out_np[np.triu_indices(n, 1)]
    if is_torch:
        dtype = compute_dtype(x.dtype) if torch.is_floating_point(x) else torch.float64
        return torch.from_numpy(out_np).to(dtype)
    return out_np
