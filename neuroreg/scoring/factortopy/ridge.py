"""Closed-form ridge read-outs for the FactorTopy layer choice: cross-validated r per voxel and layer."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from neuroreg.scoring.columnwise import pearson_per_column


def ridge_cv_r(x: Tensor, y: Tensor, folds: np.ndarray, alpha: float, var_floor: float = 0.0) -> Tensor:
    """Cross-validated Pearson r of a ridge read-out fitted separately for every voxel.

    x: ``(N, n, K)`` features per stimulus and voxel; y: ``(N, n)`` responses; folds: ``(N,)``
    fold label per stimulus. Features are standardised on each training fold; ``alpha`` is
    the ridge penalty per training stimulus (``lambda = alpha * N_train``). ``var_floor``: each
    feature's training-fold variance is raised to at least this fraction of the voxel's mean
    feature variance before standardising (0: plain standardisation, SD >= 1e-9). A nearly
    constant feature (a ReLU channel that fires for a handful of training stimuli at a narrow
    window) is otherwise scaled up by orders of magnitude, and its test-fold values wreck the
    prediction: on a random ResNet-18 at 64 px with a window of 0.2 px, a floor of 1e-3 to 1e-1
    took the true-window ridge's layer choice from 0.56 to 1.00 of the voxels. Returns ``(n,)``
    r between held-out predictions (all folds stacked) and ``y``
    (:func:`~neuroreg.scoring.columnwise.pearson_per_column`: 0 where either is constant).
    """
    if not var_floor >= 0:
        raise ValueError(f"var_floor must be >= 0; got {var_floor}")
    x = x.double()
    y = y.double()
    pred = torch.zeros_like(y)
    eye = torch.eye(x.shape[2], dtype=x.dtype, device=x.device)
    for f in np.unique(folds):
        te = torch.as_tensor(folds == f, device=x.device)
        tr = ~te
        xt = x[tr]
        mu = xt.mean(0)
        sd = _floored_variance(xt.var(0, unbiased=False), var_floor).sqrt().clamp_min(1e-9)
        xt = (xt - mu) / sd
        ym = y[tr].mean(0)
        gram = torch.einsum("bnk,bnj->nkj", xt, xt) + alpha * int(tr.sum()) * eye
        rhs = torch.einsum("bnk,bn->nk", xt, y[tr] - ym)
        w = _spd_solve(gram, rhs[..., None])[..., 0]  # batched LU can fail inside MKL: see _spd_solve
        pred[te] = torch.einsum("bnk,nk->bn", (x[te] - mu) / sd, w) + ym
    return torch.as_tensor(pearson_per_column(pred.cpu().numpy(), y.cpu().numpy()), device=x.device)


def _floored_variance(var: Tensor, var_floor: float) -> Tensor:
    """Feature variances ``(..., K)`` raised to at least ``var_floor`` times their mean over the last axis
    (the ridge's standardisation, see :func:`ridge_cv_r`)."""
    return torch.maximum(var, var_floor * var.mean(-1, keepdim=True))


def _spd_solve(lhs: Tensor, rhs: Tensor) -> Tensor:
    """Solve symmetric positive definite systems ``lhs @ u = rhs`` (batched) by Cholesky.

    A third of the work of LU, and batched LU of 512 x 512 float64 systems was seen to fail inside
    MKL ("Parameter 6 was incorrect on entry to DLASWP", torch 2.14) and stall; systems whose
    Cholesky factorisation fails (not numerically positive definite) fall back to LU.
    """
    chol, info = torch.linalg.cholesky_ex(lhs)
    out = torch.cholesky_solve(rhs, chol)
    bad = info != 0
    if bool(bad.any()):
        out[bad] = torch.linalg.solve(lhs[bad], rhs[bad])
    return out


def _spd_inverse(mat: Tensor) -> Tensor:
    """Inverses of symmetric positive definite matrices ``(..., C, C)`` by Cholesky.

    Batched LU inversion (``torch.linalg.inv``) fails inside MKL from about 160 x 160 float64 on two
    threads, as in :func:`_spd_solve`; matrices whose Cholesky factorisation fails fall back to LU.
    """
    chol, info = torch.linalg.cholesky_ex(mat)
    out = torch.cholesky_inverse(chol)
    bad = info != 0
    if bool(bad.any()):
        out[bad] = torch.linalg.inv(mat[bad])
    return out


def _plan_passes(parts: list[tuple[int, int]], budget: int) -> list[list[tuple[int, slice]]]:
    """Group ``(layer, index range)`` pieces into passes over the stimuli that each hold at most ``budget`` bytes.

    parts: per layer ``(n_items, bytes per item)`` (voxels or pixels). A layer is cut into ranges of
    at most ``budget // bytes per item`` items (at least one); ranges fill a pass in order until the
    next would exceed the budget. Returns the passes, each a list of ``(layer, slice)``.
    """
    passes: list[list[tuple[int, slice]]] = [[]]
    used = 0
    for layer, (n_items, per_item) in enumerate(parts):
        step = max(1, budget // per_item)
        for start in range(0, n_items, step):
            sl = slice(start, min(start + step, n_items))
            cost = (sl.stop - sl.start) * per_item
            if passes[-1] and used + cost > budget:
                passes.append([])
                used = 0
            passes[-1].append((layer, sl))
            used += cost
    return passes


#: Bytes of ridge sufficient statistics held at once by the layer choice (more voxels -> more passes).
RIDGE_MEMORY = 2 ** 31
_RIDGE_BLOCK = 1024  # voxels pooled at once while accumulating them


class _RidgeStats:
    """Per-fold sufficient statistics of a ridge read-out for a block of voxels.

    ``add(fold, x, y)`` accumulates ``X'X``, ``X'1``, ``X'y``, ``y'1``, ``y'y`` and the count of
    the fold from a batch ``x`` ``(b, n, K)``, ``y`` ``(b, n)``; :meth:`cv_r` then gives the same
    cross-validated r as :func:`ridge_cv_r` without the features ever being held together.
    ``X'X`` accumulates in the features' dtype (float32 for float32 features: sums of a few
    hundred products), everything else and the solve in float64.

    Every voxel's features are accumulated minus a reference value, the mean of the first batch
    added for that voxel (``shift=True``). A feature read at a fixed position of a network's map
    can vary across stimuli by 1e-5 of its mean (an untrained ResNet's border and bias patterns):
    the centred ``X'X - n mu mu'`` of raw float32 sums then cancels to rounding noise, the
    standardised ridge blows that noise up, and the cross-validated r comes out wrong by up to
    0.7 (measured, ``experiments/factortopy_layer_choice_ablation.py``). Shifting by a constant
    changes no cross-validated prediction (the ridge has an intercept and centres per fold).
    """

    def __init__(self, n: int, k: int, n_folds: int, device, dtype=torch.float32, gram: Tensor | None = None,
                 shift: bool = True) -> None:
        f64 = dict(dtype=torch.float64, device=device)
        # gram: optional (n_folds, n, k, k) storage to reuse (zeroed here)
        self.gram = torch.zeros(n_folds, n, k, k, dtype=dtype, device=device) if gram is None else gram.zero_()
        # per-voxel reference subtracted from every feature before accumulation (set by the first batch)
        self.shift = torch.zeros(n, k, dtype=dtype, device=device) if shift else None
        self._shift_set = torch.zeros(n, dtype=torch.bool, device=device)
        self.xsum = torch.zeros(n_folds, n, k, **f64)
        self.xy = torch.zeros(n_folds, n, k, **f64)
        self.ysum = torch.zeros(n_folds, n, **f64)
        self.ysq = torch.zeros(n_folds, n, **f64)
        self.count = [0] * n_folds

    def add(self, fold: int, x: Tensor, y: Tensor, voxels: slice = slice(None)) -> None:
        """Accumulate a batch ``x`` ``(b, n, K)``, ``y`` ``(b, n)`` of the block's ``voxels``."""
        xt = x.to(self.gram.dtype).transpose(0, 1)  # (n, b, K)
        if self.shift is not None:
            shift = self.shift[voxels]
            fresh = ~self._shift_set[voxels]
            if bool(fresh.any()):  # first batch of these voxels: its mean is their reference
                shift[fresh] = xt[fresh].double().mean(1).to(shift.dtype)
                self.shift[voxels] = shift
                self._shift_set[voxels] = True
            xt = xt - shift[:, None, :]
        yt = y.to(self.gram.dtype).T                # (n, b)
        self.gram[fold, voxels].baddbmm_(xt.transpose(1, 2), xt)
        self.xsum[fold, voxels] += xt.sum(1)
        self.xy[fold, voxels] += torch.bmm(yt[:, None, :], xt)[:, 0]
        self.ysum[fold, voxels] += yt.sum(1)
        self.ysq[fold, voxels] += yt.square().sum(1)
        if voxels.start in (None, 0):  # a batch added block by block counts once
            self.count[fold] += x.shape[0]

    def cv_r(self, alpha, block: int = 128, var_floor: float = 0.0) -> Tensor:
        """``(n,)`` r between the stacked held-out predictions of every fold and ``y`` (``var_floor``: as in
        :func:`ridge_cv_r`); ``(n_alpha, n)`` for a sequence of penalties ``alpha``, which share each fold's
        centred ``X'X``."""
        alphas = [float(a) for a in np.atleast_1d(alpha)]
        n_folds, n, k = self.gram.shape[:3]
        block = min(block, n)
        # float64 work space, reused block after block (fresh large allocations cost page faults)
        work = torch.empty(n_folds + 3, block, k, k, dtype=torch.float64, device=self.gram.device)
        out = torch.cat([self._cv_r(alphas, slice(s, min(s + block, n)), work, var_floor)
                         for s in range(0, n, block)], dim=1)
        return out if np.ndim(alpha) else out[0]

    def _cv_r(self, alphas: list[float], sl: slice, work: Tensor, var_floor: float = 0.0) -> Tensor:
        n_folds, m = self.gram.shape[0], sl.stop - sl.start
        gram = work[:n_folds, :m]
        gram.copy_(self.gram[:, sl])
        g_all, centred, lhs = work[n_folds, :m], work[n_folds + 1, :m], work[n_folds + 2, :m]
        torch.sum(gram, 0, out=g_all)
        xsum, xy, ysum, ysq = self.xsum[:, sl], self.xy[:, sl], self.ysum[:, sl], self.ysq[:, sl]
        total = sum(self.count)
        s_all, xy_all, y_all = xsum.sum(0), xy.sum(0), ysum.sum(0)
        ps = y_all.new_zeros(len(alphas), m)
        pq = y_all.new_zeros(len(alphas), m)
        py = y_all.new_zeros(len(alphas), m)
        for f, n_test in enumerate(self.count):
            if n_test == 0:
                continue
            n_train = total - n_test
            mu = (s_all - xsum[f]) / n_train  # training-fold means
            ym = (y_all - ysum[f]) / n_train
            torch.sub(g_all, gram[f], out=centred)
            centred.baddbmm_(mu[:, :, None], mu[:, None, :], alpha=-n_train)  # centred X'X of the training folds
            # feature SD >= 1e-9, as in ridge_cv_r
            var = _floored_variance(centred.diagonal(dim1=1, dim2=2) / n_train, var_floor).clamp_min(1e-18)
            rhs = (xy_all - xy[f] - n_train * mu * ym[:, None])[..., None]
            for i, alpha in enumerate(alphas):
                # ridge on standardised features, (S^-1 C S^-1 + a n I) w = S^-1 r, solved as (C + a n S^2) u = r
                # with u = S^-1 w the weights of the raw features: prediction = x . u + c0
                lhs.copy_(centred)
                lhs.diagonal(dim1=1, dim2=2).add_(alpha * n_train * var)
                u = _spd_solve(lhs, rhs)[..., 0]
                c0 = ym - (mu * u).sum(-1)
                su = (xsum[f] * u).sum(-1)
                gu = torch.bmm(gram[f], u[..., None])[..., 0]
                ps[i] += su + n_test * c0
                pq[i] += (gu * u).sum(-1) + 2 * c0 * su + n_test * c0 ** 2
                py[i] += (xy[f] * u).sum(-1) + c0 * ysum[f]
        yt, yq = y_all, ysq.sum(0)
        cov_py = py - ps * yt / total
        den = ((pq - ps ** 2 / total).clamp_min(0.0) * (yq - yt ** 2 / total).clamp_min(0.0)).sqrt()
        return torch.where(den > 0, cov_py / den.clamp_min(1e-30), torch.zeros_like(den))
