"""Ridge regression with exact leave-one-out (GCV) choice of alpha per target, in torch.

For centred X (n x p) with thin decomposition ``H_alpha = B diag(f_alpha) B^T``
(hat matrix), the leave-one-out residual of sample i is
``(y_i - yhat_i) / (1 - 1/n - H_ii)`` (Golub, Heath & Wahba 1979; the ``1/n``
is the unpenalised intercept). ``B, f`` come from the eigendecomposition of the
n x n Gram ``X X^T`` when p > n (kernel form, ``f = lambda / (lambda + alpha)``)
or of the p x p covariance ``X^T X`` when p <= n (primal form, ``B = X V``,
``f = 1 / (lambda + alpha)``). Per alpha the cost is one ``(n x r) @ (r x v)``
product; coefficients are formed once, for the chosen alphas only, and in
kernel form kept as dual coefficients (n x v), so 300,000 targets fit in
memory. Targets are processed in chunks. Alpha choice follows scikit-learn's
``RidgeCV(alpha_per_target=True)``: the lowest mean squared LOO error, the
first alpha of the grid winning ties.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted
from torch import Tensor

from neuroreg._utils.checks import check_finite
from neuroreg.errors import ShapeError, StimulusMismatchError
from neuroreg.scoring._precision import compute_dtype, to_float64
from neuroreg.scoring.columnwise import r2_per_column

__all__ = ["RidgeGCV"]

_TARGET_BLOCK_ELEMENTS = 1 << 24  # n x chunk elements per target block
_RESCORE_RTOL = 1e-3  # relative gap below which low-precision alpha choices are re-scored in float64


def _to_tensor(name: str, a, device, dtype) -> Tensor:
    t = a if isinstance(a, Tensor) else torch.from_numpy(np.ascontiguousarray(np.asarray(a, dtype=np.float64)))
    if not torch.is_floating_point(t):
        t = t.double()
    return t.detach().to(device=device, dtype=dtype)


def _gram(xc: Tensor, outer: bool) -> Tensor:
    """``xc @ xc.T`` (outer) or ``xc.T @ xc``; on CPU through numpy, whose matmul detects
    the transposed pair and runs the symmetric rank-k update (half the work of a full product)."""
    if xc.device.type == "cpu":
        a = xc.numpy()
        return torch.from_numpy(a @ a.T if outer else a.T @ a)
    return xc @ xc.T if outer else xc.T @ xc


def _neg_loo_mse(b: Tensor, keep: Tensor, inv_den2_n: Tensor, yc: Tensor, proj: Tensor,
                 kernel_form: bool) -> Tensor:
    """``(n_alphas, chunk)`` negative mean squared leave-one-out error, in float64.

    b ``(n, r)`` basis, keep ``(r, n_alphas)``: ``1 - f`` in kernel form (residual
    ``B diag(keep) B^T Y``), ``f`` in primal form (residual ``Y - B diag(keep) B^T Y``);
    inv_den2_n ``(n_alphas, n)``: ``1 / (n (1 - 1/n - H_ii)^2)``; yc ``(n, chunk)``
    centred targets and proj ``= B^T yc``, all in the dtype of the products.
    """
    out = torch.empty(keep.shape[1], yc.shape[1], dtype=torch.float64, device=yc.device)
    for j in range(keep.shape[1]):
        b_j = b * keep[:, j]                          # scale B's r columns, not the r x chunk block
        resid = b_j @ proj if kernel_form else torch.addmm(yc, b_j, proj, alpha=-1.0)
        resid.square_()
        out[j] = -(inv_den2_n[j] @ resid).to(torch.float64)
    return out


def _check_xy(X, Y, device) -> tuple[Tensor, Tensor, bool]:
    """``X`` as float64 ``(n, p)`` (trailing dims flattened), ``Y`` as float64 ``(n, v)``, and whether ``Y`` was 1-D."""
    x = _to_tensor("X", X, device, torch.float64)
    y = _to_tensor("Y", Y, device, torch.float64)
    if x.ndim < 2:
        raise ShapeError(f"X must be (n_samples, n_features); got shape {tuple(x.shape)}")
    x = x.reshape(x.shape[0], -1)
    y_1d = y.ndim == 1
    if y_1d:
        y = y[:, None]
    if y.ndim != 2:
        raise ShapeError(f"Y must be (n_samples,) or (n_samples, n_targets); got shape {tuple(y.shape)}")
    if x.shape[0] != y.shape[0]:
        raise StimulusMismatchError(f"X and Y must have the same samples: X has {x.shape[0]} rows, Y has {y.shape[0]}")
    if x.shape[0] < 3:
        raise ShapeError(f"leave-one-out ridge needs at least 3 samples; got {x.shape[0]}")
    check_finite("X", x)
    check_finite("Y", y)
    return x, y, y_1d


class _Spectrum(NamedTuple):
    """The hat matrices of every alpha, from one eigendecomposition (float64; r components)."""

    b: Tensor             # (n, r) basis: eigenvectors of X X^T (kernel form) or X V (primal form)
    lam: Tensor           # (r,) eigenvalues, clamped at 0
    vecs: Tensor | None   # (p, r) eigenvectors V of X^T X in primal form; None in kernel form
    alphas: Tensor        # (n_alphas,)
    f: Tensor             # (r, n_alphas) hat-matrix weights of component k at alpha j
    den: Tensor           # (n, n_alphas) 1 - 1/n - H_ii: leave-one-out residual = residual / den
    keep: Tensor          # (r, n_alphas) residual weights (1 - f in kernel form, f in primal form)

    @property
    def kernel_form(self) -> bool:
        return self.vecs is None


def _spectrum(xc: Tensor, alphas: Tensor, fit_intercept: bool) -> _Spectrum:
    """Eigendecomposition of the centred ``xc (n, p)``: of the n x n Gram when p > n, else of X^T X."""
    n, p = xc.shape
    kernel_form = p > n
    lam, b = torch.linalg.eigh(_gram(xc, outer=kernel_form))
    vecs = None
    if not kernel_form:
        vecs, b = b, xc @ b
    lam = lam.clamp_min(0)
    f = lam[:, None] / (lam[:, None] + alphas) if kernel_form else 1.0 / (lam[:, None] + alphas)
    lev = b.square() @ f                                              # (n, n_alphas) leverages H_ii
    den = (1.0 - (1.0 / n if fit_intercept else 0.0)) - lev
    # In kernel form B is a complete orthonormal basis, so the residual Y - H Y is
    # B diag(1 - f) B^T Y: one product per alpha and no cancellation at small alphas.
    keep = alphas / (lam[:, None] + alphas) if kernel_form else f
    return _Spectrum(b, lam, vecs, alphas, f, den, keep)


def _loo_scores(spec: _Spectrum, yc: Tensor, dtype: torch.dtype, chunk: int) -> tuple[Tensor, Tensor]:
    """``(n_alphas, v)`` negative mean squared LOO error of the centred targets ``yc (n, v)`` and the
    float64 projection ``B^T yc`` ``(r, v)`` (reused for the coefficients).

    The per-alpha products run in ``dtype``; in float32, targets whose two best alphas are within
    ``_RESCORE_RTOL`` are re-scored in float64, since low-precision scores can swap near-tied alphas.
    """
    n, v = yc.shape
    inv_den2_64 = 1.0 / (n * spec.den.square())                      # (n, n_alphas) LOO weights / n
    b_c, keep_c, inv_den2_n = spec.b.to(dtype), spec.keep.to(dtype), inv_den2_64.T.contiguous().to(dtype)
    scores = torch.empty(len(spec.alphas), v, dtype=torch.float64, device=yc.device)
    proj = torch.empty(spec.b.shape[1], v, dtype=dtype, device=yc.device)
    for s in range(0, v, chunk):
        y_block = yc[:, s:s + chunk].to(dtype)
        pr = b_c.T @ y_block
        proj[:, s:s + chunk] = pr
        scores[:, s:s + chunk] = _neg_loo_mse(b_c, keep_c, inv_den2_n, y_block, pr, spec.kernel_form)
    if dtype != torch.float64 and len(spec.alphas) > 1:
        top2 = scores.topk(2, dim=0).values
        close = ((top2[0] - top2[1]).abs() <= _RESCORE_RTOL * top2[0].abs()).nonzero().flatten()
        for s in range(0, close.numel(), chunk):
            idx = close[s:s + chunk]
            scores[:, idx] = _neg_loo_mse(spec.b, spec.keep, inv_den2_64.T, yc[:, idx], spec.b.T @ yc[:, idx],
                                          spec.kernel_form)
    # coefficients amplify B^T Y by 1 / (lambda + alpha): form them from float64 products
    return scores, (proj if dtype == torch.float64 else spec.b.T @ yc).to(torch.float64)


def _choose_alphas(scores: Tensor, per_target: bool) -> tuple[Tensor, Tensor]:
    """Index of the chosen alpha ``(v,)`` and its score ``(v,)``: the best per target (or the best mean
    over targets); the first alpha of the grid wins ties, as in scikit-learn's ``RidgeCV``."""
    n_alphas, v = scores.shape
    if per_target:
        best = torch.zeros(v, dtype=torch.long, device=scores.device)
        best_score = scores[0].clone()
        for j in range(1, n_alphas):          # strict improvement: the first alpha wins ties
            better = scores[j] > best_score
            best[better] = j
            best_score[better] = scores[j][better]
        return best, best_score
    mean = scores.mean(1)
    j_best = 0
    for j in range(1, n_alphas):
        if mean[j] > mean[j_best]:
            j_best = j
    return torch.full((v,), j_best, dtype=torch.long, device=scores.device), mean[j_best].expand(v)


def _loo_residuals(spec: _Spectrum, yc: Tensor, best: Tensor, proj: Tensor, chunk: int) -> Tensor:
    """Leave-one-out residuals ``(n, v)`` at each target's chosen alpha: residual / (1 - 1/n - H_ii)."""
    out = torch.empty_like(yc)
    for s in range(0, yc.shape[1], chunk):
        sel = best[s:s + chunk]
        resid = yc[:, s:s + chunk] - spec.b @ (spec.f[:, sel] * proj[:, s:s + chunk])
        out[:, s:s + chunk] = resid / spec.den[:, sel]
    return out


def _cv_results(spec: _Spectrum, yc: Tensor, chunk: int) -> np.ndarray:
    """Squared leave-one-out errors ``(n, v, n_alphas)`` of every alpha (scikit-learn's ``cv_results_``)."""
    n, v = yc.shape
    cv = np.empty((n, v, len(spec.alphas)))
    for s in range(0, v, chunk):
        y_block = yc[:, s:s + chunk]
        pr = spec.b.T @ y_block
        for j in range(len(spec.alphas)):
            bj = spec.b * spec.keep[:, j]
            resid = bj @ pr if spec.kernel_form else y_block - bj @ pr
            cv[:, s:s + chunk, j] = (resid / spec.den[:, j:j + 1]).square().cpu().numpy()
    return cv


class RidgeGCV(RegressorMixin, BaseEstimator):
    """Ridge regression, alpha chosen per target (or shared) by exact leave-one-out error.

    A scikit-learn estimator: ``sklearn.base.clone``, ``get_params``/``set_params``,
    pipelines and ``GridSearchCV`` work. ``score`` returns R^2 per target (an array for
    2-D Y), so a grid search over several targets names a scalar scorer
    (``scoring="r2"`` averages over targets, as scikit-learn's ``r2_score`` does).

    Parameters
    ----------
    alphas: 1-D grid of positive penalties (Conwell et al. use ``np.logspace(-1, 5, 7)``).
    alpha_per_target: one alpha per target (True) or one for all targets.
    fit_intercept: centre X and Y (the intercept is not penalised).
    device: torch device for the computation (default: X's device if a tensor, else CPU).
    dtype: torch dtype of the per-alpha products (default float64; float32 is
        about twice as fast on CPU and much faster on GPUs; decompositions always run in float64).
    target_chunk: targets per block (default: about 16 M elements of n x chunk).
    store_loo: keep the leave-one-out predictions at the chosen alphas (``loo_predictions_``);
        scikit-learn has no name for this (its ``cv_results_`` hold every alpha).
    store_cv_results: keep the squared leave-one-out errors of every alpha in ``cv_results_``,
        as scikit-learn's ``RidgeCV(store_cv_results=True)`` with its default scoring
        (memory: n_samples x n_targets x n_alphas float64).

    Precision: X and Y of any dtype (float16, bfloat16, float32, numpy or torch)
    are converted to float64; decompositions, coefficients and predictions are
    float64, only the per-alpha leave-one-out products use ``dtype`` (near-tied
    alphas are re-scored in float64). ``predict`` returns float32 for
    float16/bfloat16/float32 tensors. Row order: the fit is a function of the
    set of (x, y) rows, not their order. Minimum: 3 samples.

    Attributes (after ``fit``)
    --------------------------
    alpha_: ``(n_targets,)`` chosen alphas (a float when shared or Y is 1-D).
    coef_: ``(n_targets, n_features)`` (``(n_features,)`` for 1-D Y), as scikit-learn;
        in kernel form it is formed from the dual coefficients on first access.
    intercept_: ``(n_targets,)`` (a float for 1-D Y).
    cv_scores_: ``(n_alphas, n_targets)`` negative mean squared LOO error.
    best_score_: the score of the chosen alpha per target.
    dual_coef_: ``(n_samples, n_targets)`` in kernel form (p > n), else None.
    loo_predictions_: ``(n_samples, n_targets)`` when ``store_loo``.
    cv_results_: ``(n_samples, n_targets, n_alphas)`` squared LOO errors (``(n_samples, n_alphas)``
        for 1-D Y) when ``store_cv_results``.
    """

    def __init__(self, alphas=(0.1, 1.0, 10.0), *, alpha_per_target: bool = True, fit_intercept: bool = True,
                 device: str | torch.device | None = None, dtype: torch.dtype = torch.float64,
                 target_chunk: int | None = None, store_loo: bool = False,
                 store_cv_results: bool = False) -> None:
        self.alphas = alphas
        self.alpha_per_target = alpha_per_target
        self.fit_intercept = fit_intercept
        self.device = device
        self.dtype = dtype
        self.target_chunk = target_chunk
        self.store_loo = store_loo
        self.store_cv_results = store_cv_results

    # ------------------------------------------------------------------ fit
    def _check_alphas(self) -> np.ndarray:
        a = np.ascontiguousarray(np.atleast_1d(np.asarray(self.alphas, dtype=np.float64)))
        if a.ndim != 1 or a.size == 0:
            raise ValueError(f"alphas must be a non-empty 1-D grid; got shape {a.shape}")
        if not np.isfinite(a).all() or (a <= 0).any():
            raise ValueError(f"alphas must be finite and > 0; got {a.tolist()}")
        return a

    def fit(self, X, Y) -> "RidgeGCV":
        """Fit on ``X (n, p)`` (trailing dims flattened) and ``Y (n,)`` or ``(n, v)``; returns self."""
        alphas = self._check_alphas()
        if self.dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64 (the precision of the per-alpha "
                             f"products); got {self.dtype}")
        device = self.device if self.device is not None else (X.device if isinstance(X, Tensor) else "cpu")
        x, y, y_1d = _check_xy(X, Y, device)
        n, p = x.shape
        v = y.shape[1]
        x_mean = x.mean(0) if self.fit_intercept else torch.zeros(p, dtype=x.dtype, device=x.device)
        y_mean = y.mean(0) if self.fit_intercept else torch.zeros(v, dtype=y.dtype, device=y.device)
        xc, yc = x - x_mean, y - y_mean
        spec = _spectrum(xc, torch.as_tensor(alphas, dtype=torch.float64, device=x.device), self.fit_intercept)
        chunk = self.target_chunk or max(1, _TARGET_BLOCK_ELEMENTS // max(n, spec.b.shape[1]))
        scores, proj = _loo_scores(spec, yc, self.dtype, chunk)
        best, best_score = _choose_alphas(scores, self.alpha_per_target)
        chosen = spec.alphas[best]                                        # (v,)
        if self.store_loo:
            loo = y - _loo_residuals(spec, yc, best, proj, chunk)
            self.loo_predictions_ = (loo[:, 0] if y_1d else loo).cpu().numpy()
        if self.store_cv_results:
            cv = _cv_results(spec, yc, chunk)
            self.cv_results_ = cv[:, 0, :] if y_1d else cv
        weights = 1.0 / (spec.lam[:, None] + chosen[None, :])             # (r, v)
        self.x_mean_ = x_mean
        self.kernel_form_ = spec.vecs is None
        self._xc_: Tensor | None = None        # kept in kernel form only, for predictions and coef_
        self._coef_t_: Tensor | None = None    # (p, v); in kernel form formed on first access to coef_
        self.dual_coef_t_: Tensor | None = None
        if spec.vecs is None:
            self._xc_ = xc
            self.dual_coef_t_ = dual = spec.b @ (weights * proj)            # (n, v)
            intercept = y_mean - (x_mean @ xc.T) @ dual
        else:
            self._coef_t_ = coef = spec.vecs @ (weights * proj)             # (p, v)
            intercept = y_mean - x_mean @ coef
        self._intercept_t_ = intercept
        self._y_1d_ = y_1d
        self.n_features_in_ = p
        self.alpha_ = float(chosen[0]) if (y_1d or not self.alpha_per_target) else chosen.cpu().numpy()
        self.cv_scores_ = scores.cpu().numpy()
        self.best_score_ = best_score.cpu().numpy()
        self.intercept_ = float(intercept[0]) if y_1d else intercept.cpu().numpy()
        self.dual_coef_ = None if self.dual_coef_t_ is None else self.dual_coef_t_.cpu().numpy()
        return self

    # ------------------------------------------------------------------ use
    @property
    def coef_(self) -> np.ndarray:
        check_is_fitted(self)
        coef = self._coef_t_
        if coef is None:
            assert self._xc_ is not None and self.dual_coef_t_ is not None  # kernel form keeps both
            coef = self._coef_t_ = self._xc_.T @ self.dual_coef_t_
        c = coef.T.cpu().numpy()
        return c[0] if self._y_1d_ else c

    def predict(self, X):
        """Predictions ``(m, n_targets)`` (``(m,)`` for 1-D Y), same array type as ``X``."""
        check_is_fitted(self)
        dev = self._intercept_t_.device
        x = _to_tensor("X", X, dev, torch.float64)
        x = x.reshape(x.shape[0], -1)
        if x.shape[1] != self.n_features_in_:
            raise ShapeError(f"X has {x.shape[1]} features but the model was fitted on {self.n_features_in_}")
        check_finite("X", x)
        # intercept_ = y_mean - x_mean coef, so raw X goes straight through the coefficients
        if self._coef_t_ is not None:
            out = x @ self._coef_t_ + self._intercept_t_
        else:
            assert self._xc_ is not None and self.dual_coef_t_ is not None  # kernel form keeps both
            out = (x @ self._xc_.T) @ self.dual_coef_t_ + self._intercept_t_
        if self._y_1d_:
            out = out[:, 0]
        if isinstance(X, Tensor):
            # float16/bfloat16 X gets float32 predictions: rounding them back would cost 3 digits
            dtype = compute_dtype(X.dtype) if torch.is_floating_point(X) else torch.float64
            return out.to(device=X.device, dtype=dtype)
        return out.cpu().numpy()

    def score(self, X, Y) -> np.ndarray | float:
        """Coefficient of determination R^2 per target on ``(X, Y)`` (a float for 1-D ``Y``), by
        :func:`~neuroreg.scoring.columnwise.r2_per_column` (a constant target column scores 0)."""
        pred = to_float64(self.predict(X.detach().cpu() if isinstance(X, Tensor) else X))
        y = to_float64(Y)
        if self._y_1d_:
            return float(r2_per_column(y[:, None], pred[:, None])[0])
        return r2_per_column(y, pred)
