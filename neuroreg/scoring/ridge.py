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

import numpy as np
import torch
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.metrics import r2_score
from torch import Tensor

from neuroreg._utils.checks import check_finite
from neuroreg.errors import ShapeError, StimulusMismatchError
from neuroreg.scoring._precision import compute_dtype, to_float64

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
        x = _to_tensor("X", X, device, torch.float64)
        y = _to_tensor("Y", Y, device, torch.float64)
        if x.ndim < 2:
            raise ShapeError(f"X must be (n_samples, n_features); got shape {tuple(x.shape)}")
        x = x.reshape(x.shape[0], -1)
        self._y_1d = y.ndim == 1
        if y.ndim == 1:
            y = y[:, None]
        if y.ndim != 2:
            raise ShapeError(f"Y must be (n_samples,) or (n_samples, n_targets); got shape {tuple(y.shape)}")
        if x.shape[0] != y.shape[0]:
            raise StimulusMismatchError(f"X and Y must have the same samples: X has {x.shape[0]} rows, Y has {y.shape[0]}")
        n, p = x.shape
        if n < 3:
            raise ShapeError(f"leave-one-out ridge needs at least 3 samples; got {n}")
        check_finite("X", x)
        check_finite("Y", y)
        v = y.shape[1]

        self.x_mean_ = x.mean(0) if self.fit_intercept else torch.zeros(p, dtype=x.dtype, device=x.device)
        y_mean = y.mean(0) if self.fit_intercept else torch.zeros(v, dtype=y.dtype, device=y.device)
        xc = x - self.x_mean_
        self.kernel_form_ = p > n
        lam, b = torch.linalg.eigh(_gram(xc, outer=self.kernel_form_))
        if not self.kernel_form_:
            vecs, b = b, xc @ b
        lam = lam.clamp_min(0)
        dt = self.dtype
        b_c = b.to(dt)
        a_t = torch.as_tensor(alphas, dtype=torch.float64, device=x.device)
        # f[k, j]: hat-matrix weights of component k at alpha j
        f = lam[:, None] / (lam[:, None] + a_t) if self.kernel_form_ else 1.0 / (lam[:, None] + a_t)
        lev = b.square() @ f                                              # (n, n_alphas) leverages H_ii
        den = (1.0 - (1.0 / n if self.fit_intercept else 0.0)) - lev
        inv_den2_64 = 1.0 / (n * den.square())                           # (n, n_alphas) LOO weights / n
        inv_den2_n = inv_den2_64.T.contiguous().to(dt)                   # (n_alphas, n)
        # In kernel form B is a complete orthonormal basis, so the residual Y - H Y is
        # B diag(1 - f) B^T Y: one product per alpha and no cancellation at small alphas.
        keep = a_t / (lam[:, None] + a_t) if self.kernel_form_ else f
        keep_c = keep.to(dt)

        chunk = self.target_chunk or max(1, _TARGET_BLOCK_ELEMENTS // max(n, b.shape[1]))
        scores = torch.empty(len(alphas), v, dtype=torch.float64, device=x.device)
        proj = torch.empty(b.shape[1], v, dtype=dt, device=x.device)     # B^T Y, reused for the coefficients
        for s in range(0, v, chunk):
            yc = (y[:, s:s + chunk] - y_mean[s:s + chunk]).to(dt)
            pr = b_c.T @ yc
            proj[:, s:s + chunk] = pr
            scores[:, s:s + chunk] = _neg_loo_mse(b_c, keep_c, inv_den2_n, yc, pr, self.kernel_form_)

        if dt != torch.float64 and len(alphas) > 1:
            # Low-precision scores can swap near-tied alphas: re-score those targets in float64.
            top2 = scores.topk(2, dim=0).values
            close = ((top2[0] - top2[1]).abs() <= _RESCORE_RTOL * top2[0].abs()).nonzero().flatten()
            for s in range(0, close.numel(), chunk):
                idx = close[s:s + chunk]
                yc = y[:, idx] - y_mean[idx]
                scores[:, idx] = _neg_loo_mse(b, keep, inv_den2_64.T, yc, b.T @ yc, self.kernel_form_)
        if self.alpha_per_target:
            best = torch.zeros(v, dtype=torch.long, device=x.device)
            best_score = scores[0].clone()
            for j in range(1, len(alphas)):          # strict improvement: the first alpha wins ties
                better = scores[j] > best_score
                best[better] = j
                best_score[better] = scores[j][better]
        else:
            mean = scores.mean(1)
            j_best = 0
            for j in range(1, len(alphas)):
                if mean[j] > mean[j_best]:
                    j_best = j
            best = torch.full((v,), j_best, dtype=torch.long, device=x.device)
            best_score = mean[j_best].expand(v)
        chosen = a_t[best]                                                # (v,)
        # Coefficients amplify B^T Y by 1 / (lambda + alpha): form them from float64 products.
        proj = proj if dt == torch.float64 else b.T @ (y - y_mean)
        if self.store_loo:
            # leave-one-out predictions at each target's chosen alpha: y - residual / (1 - 1/n - H_ii)
            loo = torch.empty(n, v, dtype=torch.float64, device=x.device)
            for s in range(0, v, chunk):
                sel = best[s:s + chunk]
                yc = y[:, s:s + chunk] - y_mean[s:s + chunk]
                resid = yc - b @ (f[:, sel] * proj[:, s:s + chunk].to(torch.float64))
                loo[:, s:s + chunk] = y[:, s:s + chunk] - resid / den[:, sel]
            self.loo_predictions_ = (loo[:, 0] if self._y_1d else loo).cpu().numpy()
        if self.store_cv_results:
            cv = np.empty((n, v, len(alphas)))
            for s in range(0, v, chunk):
                yc = y[:, s:s + chunk] - y_mean[s:s + chunk]
                pr = b.T @ yc
                for j in range(len(alphas)):
                    bj = b * keep[:, j]
                    resid = bj @ pr if self.kernel_form_ else yc - bj @ pr
                    cv[:, s:s + chunk, j] = (resid / den[:, j:j + 1]).square().cpu().numpy()
            self.cv_results_ = cv[:, 0, :] if self._y_1d else cv
        weights = 1.0 / (lam[:, None] + chosen[None, :])                  # (r, v)
        if self.kernel_form_:
            self.dual_coef_t_ = b @ (weights * proj.to(torch.float64))    # (n, v)
            self._xc = xc
            self._coef_t = None
            intercept = y_mean - (self.x_mean_ @ xc.T) @ self.dual_coef_t_
        else:
            self.dual_coef_t_ = None
            self._coef_t = vecs @ (weights * proj.to(torch.float64))     # (p, v)
            intercept = y_mean - self.x_mean_ @ self._coef_t
        self._intercept_t = intercept
        self._alpha_index = best
        self.n_features_in_ = p
        self.alpha_ = (float(chosen[0]) if (self._y_1d or not self.alpha_per_target)
                       else chosen.cpu().numpy())
        self.cv_scores_ = scores.cpu().numpy()
        self.best_score_ = best_score.cpu().numpy()
        self.intercept_ = float(intercept[0]) if self._y_1d else intercept.cpu().numpy()
        self.dual_coef_ = None if self.dual_coef_t_ is None else self.dual_coef_t_.cpu().numpy()
        return self

    # ------------------------------------------------------------------ use
    def _check_fitted(self) -> None:
        if not hasattr(self, "_intercept_t"):
            raise RuntimeError("this RidgeGCV is not fitted yet; call fit(X, Y) first")

    @property
    def coef_(self) -> np.ndarray:
        self._check_fitted()
        if self._coef_t is None:
            self._coef_t = self._xc.T @ self.dual_coef_t_
        c = self._coef_t.T.cpu().numpy()
        return c[0] if self._y_1d else c

    def predict(self, X):
        """Predictions ``(m, n_targets)`` (``(m,)`` for 1-D Y), same array type as ``X``."""
        self._check_fitted()
        dev = self._intercept_t.device
        x = _to_tensor("X", X, dev, torch.float64)
        x = x.reshape(x.shape[0], -1)
        if x.shape[1] != self.n_features_in_:
            raise ShapeError(f"X has {x.shape[1]} features but the model was fitted on {self.n_features_in_}")
        check_finite("X", x)
        # intercept_ = y_mean - x_mean coef, so raw X goes straight through the coefficients
        if self._coef_t is None:
            out = (x @ self._xc.T) @ self.dual_coef_t_ + self._intercept_t
        else:
            out = x @ self._coef_t + self._intercept_t
        if self._y_1d:
            out = out[:, 0]
        if isinstance(X, Tensor):
            # float16/bfloat16 X gets float32 predictions: rounding them back would cost 3 digits
            dtype = compute_dtype(X.dtype) if torch.is_floating_point(X) else torch.float64
            return out.to(device=X.device, dtype=dtype)
        return out.cpu().numpy()

    def score(self, X, Y) -> np.ndarray | float:
        """Coefficient of determination R^2 per target on ``(X, Y)`` (a float for 1-D ``Y``)."""
        pred = to_float64(self.predict(X.detach().cpu() if isinstance(X, Tensor) else X))
        return r2_score(to_float64(Y), pred, multioutput="raw_values") if not self._y_1d else \
            float(r2_score(to_float64(Y), pred))
