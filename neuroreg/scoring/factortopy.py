"""FactorTopy: which layer, position and scale of a network each voxel reads from (Yang, Gee & Shi 2024).

"Brain Decodes Deep Nets" (arXiv:2312.01280) fits one brain-encoding model for
all voxels at once. From a voxel's cortical coordinates (sinusoidal encoding),
three small MLPs choose

* a **layer**: softmax weights ``omega_i`` over the ``L`` layers,
* a **space** position ``u_i`` in the feature map (tanh -> ``grid_sample`` x, y in [-1, 1]),
* a **scale** ``alpha_i`` in [0, 1] mixing the local feature with the map's global mean;

each layer's channels are aligned by a shared linear map ``B_l`` to ``D``
dimensions and the voxel predicts ``y_i = sum_l omega_il ((1 - alpha_i) v_local_il
+ alpha_i v_global_l) . w_il + b_i``. Nearby voxels share the selector MLPs, which
is the topological smoothness of the paper. Summaries: expected depth
``sum_l (l - 1)/(L - 1) omega_il``, confidence ``1 - H(omega_i)/log L`` and the
hierarchy slope (regression of depth on ROI level V1 0, V2V3 1/3, OPA 2/3, EBA 1).

Differences from a literal reading that make layer recovery work (measured on
simulated voxels with a known layer, :func:`neuroreg.brain.simulate_voxels`):
features are normalised per channel on the training stimuli, every layer has
its own voxel read-out weights, the layer softmax temperature is annealed,
entropy pressure starts only after a warm-up, and the model kept is the one
with the best validation Pearson r. By default (``pooling="gaussian"``) the
scale is a Gaussian receptive-field size rather than the paper's local/global
token mix, read from a blur pyramid whose levels are standardised per channel
(the token mix cannot express a window of a given size, and the layer with the
best-matched window then wins); and (``layer_choice="ridge_cv"``) the layer is
chosen after training by the cross-validated r of a closed-form ridge read-out
of every layer at the learned position and scale, because gradient-trained
read-outs of deeper, ill-conditioned layers stay under-fitted and lose. With
``per_layer_space=True`` (default) every layer has its own position and scale per
voxel, so each layer is judged at its best window (``space_`` reports the chosen
layer's). The channel alignments ``B_l`` start orthonormal (a square Gaussian ``B_l``, for a
layer with ``C_l = D``, is so ill-conditioned that the layer's read-out, position and scale
stay untrained), and every voxel's position for every layer starts at the peak of its
channel-summed correlation map (:func:`correlation_peaks`). See ``docs/factortopy.md`` for the
recovery matrix on simulations the defaults were not tuned on.

Recovery on the plain-CNN simulation of the tests (240 voxels, 4 layers, SNR
0.5-4): with 2,000 stimuli the true layer for 0.94 of voxels with SNR >= 1,
median position error 0.09, hierarchy slope 0.71 (0.05 with shuffled ROI
labels); 0.91-0.94 over four simulation seeds (0.87-0.91 with one position
and scale shared by all layers). Stimuli are what limit it: ridge at the TRUE
position and scale gets 0.96-0.97 with 2,000 stimuli, 0.83-0.96 with 1,000 and
0.70-0.81 with 240 (where the fitted model gets 0.75).

Cost. A layer's blur pyramid is built once per batch as a gather table (one row
per blur level and pixel, holding a few images' channels) and a voxel's pooled
feature is the weighted sum of 8 rows (trilinear in x, y and blur level: the
numbers and gradients of ``grid_sample``), gathered by ``embedding_bag`` with
voxels visited in row order; tables of aligned layers are shared by all voxel
chunks and back-propagated into ``B_l`` once per step. The ridge layer choice
streams per-fold sufficient statistics (``X'X``, ``X'y``, ...) instead of
holding the pooled features. 10,000 voxels x 8 ResNet-18-shaped layers x 1,000
stimuli on one CPU core (``experiments/bench_factortopy.py --threads 1``):
about 75 s per epoch, 180 s for the layer choice, peak RSS 4.8 GiB.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
import time
import warnings
from collections.abc import Mapping
from typing import Any, NamedTuple, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator
from torch import Tensor, nn
from tqdm.auto import tqdm

from neuroreg._checks import check_finite
from neuroreg._modes import eval_mode
from neuroreg.brain.data import BrainData
from neuroreg.errors import ShapeError
from neuroreg.scoring._inputs import sorted_positions
from neuroreg.scoring.factortopy_diagnostics import choice_margin, weak_layers
from neuroreg.scoring.factortopy_init import correlation_peaks
from neuroreg.scoring.factortopy_sources import _DictSource, _ModelSource
from neuroreg.scoring.results import ScoreTable

__all__ = ["FactorTopy", "FactorTopyNet", "factorized_readout", "pooled_features", "ridge_cv_r", "gaussian_pyramid",
           "scale_to_sd", "sd_to_scale", "sinusoidal_encoding", "layer_confidence",
           "expected_depth", "hierarchy_fit", "compare_factortopy", "DEFAULT_LEVELS"]

#: ROI -> ideal depth of the four-level hierarchy of Yang et al. (section 4.3).
DEFAULT_LEVELS: dict[str, float] = {"V1": 0.0, "V2V3": 1 / 3, "OPA": 2 / 3, "EBA": 1.0}


# ----------------------------------------------------------------------------- formulas
def sinusoidal_encoding(coords: Tensor, n_freqs: int = 6) -> Tensor:
    """NeRF-style position encoding of voxel coordinates.

    coords: ``(n, k)`` scaled to about [-1, 1]. Returns ``(n, k + 2 k n_freqs)``:
    the coordinates, then ``sin(2^j pi c)`` and ``cos(2^j pi c)`` for ``j < n_freqs``.
    """
    freqs = (2.0 ** torch.arange(n_freqs, dtype=coords.dtype, device=coords.device)) * math.pi
    angles = coords[:, :, None] * freqs  # (n, k, f)
    return torch.cat([coords, angles.sin().flatten(1), angles.cos().flatten(1)], dim=1)


def layer_confidence(probs):
    """Confidence ``s_i = 1 - H(p_i) / log L`` of a layer choice (Yang et al. eq. 2).

    probs: ``(n, L)`` rows summing to 1 (numpy or torch). 1 for one-hot, 0 for uniform.
    """
    is_np = not isinstance(probs, Tensor)
    p = torch.as_tensor(np.asarray(probs, dtype=np.float64)) if is_np else probs
    n_layers = p.shape[-1]
    if n_layers < 2:
        raise ValueError(f"confidence needs at least 2 layers; got probs of shape {tuple(p.shape)}")
    ent = -(p * torch.log(p.clamp_min(1e-30))).sum(-1)
    out = 1.0 - ent / math.log(n_layers)
    return out.numpy() if is_np else out


def expected_depth(probs):
    """Mean selected depth ``sum_l (l - 1)/(L - 1) p_il`` in [0, 1] (Yang et al. section 4.3)."""
    is_np = not isinstance(probs, Tensor)
    p = torch.as_tensor(np.asarray(probs, dtype=np.float64)) if is_np else probs
    n_layers = p.shape[-1]
    if n_layers < 2:
        raise ValueError(f"depth needs at least 2 layers; got probs of shape {tuple(p.shape)}")
    depth = torch.linspace(0.0, 1.0, n_layers, dtype=p.dtype, device=p.device)
    out = p @ depth
    return out.numpy() if is_np else out


def hierarchy_fit(depth, roi, levels: Mapping[str, float] | None = None) -> dict[str, float]:
    """Least-squares line of voxel depth on ROI level: the hierarchy slope of Yang et al.

    depth: ``(n,)`` expected selected depth per voxel in [0, 1]; roi: ``(n,)`` labels.
    levels: ROI -> ideal depth (default :data:`DEFAULT_LEVELS`); voxels in other ROIs
    are ignored. Returns ``slope``, ``b0`` (fitted depth at level 0), ``b1`` (at level 1)
    and ``n`` (voxels used). At least two levels must hold voxels.
    """
    levels = dict(DEFAULT_LEVELS if levels is None else levels)
    depth = np.asarray(depth, dtype=np.float64)
    roi = np.asarray(roi)
    if depth.ndim != 1 or roi.shape != depth.shape:
        raise ShapeError(f"depth and roi must be 1-D of the same length; got {depth.shape} and {roi.shape}")
    check_finite("depth", depth)
    keep = np.isin(roi, list(levels))
    used = sorted(set(roi[keep].tolist()))
    if len({levels[r] for r in used}) < 2:
        raise ValueError(f"the hierarchy slope needs voxels in at least two ROIs of different level; levels "
                         f"{levels} but the voxels' ROIs are {sorted(set(roi.tolist()))[:12]}")
    x = np.array([levels[r] for r in roi[keep]], dtype=np.float64)
    y = depth[keep]
    xc = x - x.mean()
    slope = float((xc * (y - y.mean())).sum() / (xc ** 2).sum())
    b0 = float(y.mean() - slope * x.mean())
    return {"slope": slope, "b0": b0, "b1": b0 + slope, "n": int(keep.sum())}


#: Blur levels of the Gaussian pooling: window SD as a fraction of the map side, half-octave steps.
SCALE_RANGE: tuple[float, float] = (0.02, 1.0)
N_LEVELS = 12
_POOLINGS = ("gaussian", "token")


def scale_to_sd(scale: Tensor) -> Tensor:
    """Gaussian window SD (fraction of the map side) for a selector output ``scale`` in [0, 1].

    Log-linear: ``0 -> SCALE_RANGE[0]`` (0.02), ``1 -> SCALE_RANGE[1]`` (1.0).
    """
    lo, hi = SCALE_RANGE
    return lo * (hi / lo) ** scale


def sd_to_scale(sd):
    """Inverse of :func:`scale_to_sd` (numpy or torch), clipped to [0, 1]."""
    lo, hi = SCALE_RANGE
    if isinstance(sd, Tensor):
        return (torch.log(sd / lo) / math.log(hi / lo)).clamp(0.0, 1.0)
    return np.clip(np.log(np.asarray(sd, dtype=np.float64) / lo) / math.log(hi / lo), 0.0, 1.0)


def _blur_matrices(size: int, dtype, device) -> Tensor:
    """``(K, size, size)`` row-normalised Gaussian weights between pixel centres, one per blur level.

    Pixel ``j`` has its centre at ``(2j + 1) / size - 1`` (``align_corners=False``); level ``k``
    has SD ``2 * sd_k`` grid units, ``sd_k`` log-spaced over :data:`SCALE_RANGE`. Rows sum to 1,
    so a window cut by the map border is renormalised over the pixels inside it.
    """
    return _blur_matrices_cached(int(size), dtype, torch.device(device))


@functools.lru_cache(maxsize=64)
def _blur_matrices_cached(size: int, dtype, device: torch.device) -> Tensor:
    centres = (2 * torch.arange(size, dtype=torch.float64) + 1) / size - 1
    sds = scale_to_sd(torch.linspace(0.0, 1.0, N_LEVELS, dtype=torch.float64)) * 2.0
    d2 = (centres[:, None] - centres[None, :]) ** 2
    return torch.softmax(-d2[None] / (2 * sds[:, None, None] ** 2), dim=-1).to(dtype=dtype, device=device)


def gaussian_pyramid(fmap: Tensor) -> Tensor:
    """``(b, C, H, W)`` -> ``(b, C, K, H, W)``: the map blurred by each of the ``K`` Gaussian levels."""
    gy = _blur_matrices(fmap.shape[2], fmap.dtype, fmap.device)
    gx = _blur_matrices(fmap.shape[3], fmap.dtype, fmap.device)
    rows = torch.einsum("bchw,kvw->bckhv", fmap, gx)
    return torch.einsum("kuh,bckhv->bckuv", gy, rows)


#: Floats per row of a pyramid table (a few images' channels): a layer's table then stays in cache.
_TABLE_WIDTH = 256


class _Tables(NamedTuple):
    """A layer's blur pyramid laid out for gathering (see :func:`_gaussian_tables`)."""

    rows: list[Tensor]  # (K * H * W, s * channels) per group of s images
    height: int
    width: int
    channels: int


def _gaussian_tables(fmap: Tensor, level_std: Tensor | None = None, align: Tensor | None = None) -> _Tables:
    """Blur pyramid of ``(b, C, H, W)`` maps as gather tables, one per group of a few images.

    Row ``(k H + y) W + x`` of a group's table holds the channels of all its images at pixel
    ``(y, x)`` of blur level ``k`` (image-major), divided by ``level_std`` ``(C, K)`` and then
    aligned by ``align`` ``(D, C)`` when given. Pooling a voxel is then a weighted sum of 8
    rows (:func:`_trilinear_taps`), for every image and channel of the group at once.
    """
    b, c, h, w = fmap.shape
    k = N_LEVELS
    gy = _blur_matrices(h, fmap.dtype, fmap.device).reshape(k * h, h)  # ((level, y out), y in)
    gx = _blur_matrices(w, fmap.dtype, fmap.device)[:, None]           # (K, 1, x out, x in)
    inv = None if level_std is None else level_std.to(fmap.dtype).reciprocal().T    # (K, C)
    width = c if align is None else align.shape[0]
    group = max(1, _TABLE_WIDTH // width)
    rows = []
    for start in range(0, b, group):
        x = fmap[start:start + group]
        m = x.shape[0]
        x = x.permute(2, 3, 0, 1).reshape(h, w * m * c)                        # (y, (x, image, C))
        pyr = torch.matmul(gx, (gy @ x).view(k, h, w, m * c))                   # (K, y, x, (image, C))
        pyr = pyr.view(k, h * w * m, c)
        if inv is not None:
            pyr = pyr * inv[:, None, :]
        if align is not None:
            pyr = pyr @ align.T
        rows.append(pyr.reshape(k * h * w, m * width))
    return _Tables(rows, h, w, width)


def _axis_taps(pix: Tensor, size: int) -> tuple[Tensor, Tensor, Tensor]:
    """Linear interpolation along one axis at pixel coordinate ``pix`` (clamped to the border)."""
    pix = pix.clamp(0.0, size - 1.0)
    lo = pix.detach().floor().clamp(max=max(size - 2, 0))
    frac = pix - lo
    lo = lo.long()
    return lo, (lo + 1).clamp(max=size - 1), frac


def _trilinear_taps(space: Tensor, scale: Tensor, height: int, width: int) -> tuple[Tensor, Tensor]:
    """``(n, 8)`` rows of a ``(K, height, width)`` table and their ``(n, 8)`` weights.

    The same trilinear interpolation as ``grid_sample`` (``align_corners=False``, border
    padding) at ``x, y = space`` and blur level ``scale * (K - 1)``; the weights carry the
    gradient with respect to position and scale.
    """
    x0, x1, fx = _axis_taps(((space[:, 0] + 1) * width - 1) / 2, width)
    y0, y1, fy = _axis_taps(((space[:, 1] + 1) * height - 1) / 2, height)
    z0, z1, fz = _axis_taps(scale * (N_LEVELS - 1), N_LEVELS)
    index, weight = [], []
    for zi, wz in ((z0, 1 - fz), (z1, fz)):
        for yi, wy in ((y0, 1 - fy), (y1, fy)):
            for xi, wx in ((x0, 1 - fx), (x1, fx)):
                index.append((zi * height + yi) * width + xi)
                weight.append(wz * wy * wx)
    return torch.stack(index, 1), torch.stack(weight, 1)


def _sample_tables(tables: _Tables, space: Tensor, scale: Tensor, eff: Tensor | None = None) -> Tensor:
    """Gaussian-window pooling from gather tables: ``(b, n, C')`` features, or ``(b, n)`` features . ``eff``.

    eff: optional ``(n, C')`` voxel weights; contracting them group by group never holds the
    ``(b, n, C')`` features. Voxels are visited in table-row order, so neighbouring voxels
    read neighbouring rows (cache-friendly), and put back in their order at the end.
    """
    index, weight = _trilinear_taps(space, scale, tables.height, tables.width)
    order = torch.argsort(index[:, 0])
    index, weight = index[order], weight[order].to(tables.rows[0].dtype)
    n, c = index.shape[0], tables.channels
    if eff is not None:
        eff = eff[order]
    parts = []
    for rows in tables.rows:
        pooled = F.embedding_bag(index, rows, per_sample_weights=weight, mode="sum").view(n, -1, c)
        parts.append(pooled if eff is None else torch.linalg.vecdot(pooled, eff[:, None, :]))
    out = torch.cat(parts, dim=1)  # (n, b[, C']) in row order
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(n, device=order.device)
    return out[inverse].transpose(0, 1)


def _token_pool(fmap: Tensor, space: Tensor, scale: Tensor, eff: Tensor | None = None) -> Tensor:
    """The paper's pooling, ``(1 - a) v(u) + a mean_p v(p)``: ``(b, n, C)``, or ``(b, n)`` with ``eff``."""
    grid = space[None, :, None, :].expand(fmap.shape[0], -1, -1, -1)
    local = F.grid_sample(fmap, grid, mode="bilinear", padding_mode="border", align_corners=False)[..., 0]
    glob = fmap.mean(dim=(2, 3))
    if eff is None:
        return (local + scale * (glob[:, :, None] - local)).transpose(1, 2)
    local_term = torch.einsum("bcn,nc->bn", local, eff)
    return local_term + scale * (glob @ eff.T - local_term)


def _prepare_layers(maps: Sequence[Tensor], align: Sequence[Tensor], pooling: str,
                    level_std: Sequence[Tensor] | None = None) -> list:
    """Per layer, what the voxels pool from: gather tables (``"gaussian"``) or the map (``"token"``).

    Layers with more channels than ``D`` (``C_l > D``) are aligned here, so only ``D``
    channels are pooled; the others are pooled as they are and ``B_l`` is folded into
    the voxel weights (:func:`_layer_terms`). Shared by all voxels: prepare once per batch.
    """
    if pooling not in _POOLINGS:
        raise ValueError(f"pooling must be one of {_POOLINGS}; got {pooling!r}")
    out = []
    for layer, (fmap, mat) in enumerate(zip(maps, align)):
        aligned = mat.shape[1] > mat.shape[0]
        if pooling == "gaussian":
            out.append(_gaussian_tables(fmap, None if level_std is None else level_std[layer],
                                        mat if aligned else None))
        else:
            out.append(torch.einsum("dc,bchw->bdhw", mat, fmap) if aligned else fmap)
    return out


def _layer_args(space: Tensor, scale: Tensor, layer: int) -> tuple[Tensor, Tensor]:
    """A layer's positions and scales: shared ``(n, 2)``, ``(n,)`` or per layer ``(n, L, 2)``, ``(n, L)``."""
    return (space[:, layer] if space.ndim == 3 else space), (scale[:, layer] if scale.ndim == 2 else scale)


def _pool(prepared, space: Tensor, scale: Tensor, eff: Tensor | None = None) -> Tensor:
    if isinstance(prepared, _Tables):
        return _sample_tables(prepared, space, scale, eff)
    return _token_pool(prepared, space, scale, eff)


def _layer_terms(prepared: Sequence, align: Sequence[Tensor], space: Tensor, scale: Tensor,
                 weights: Tensor) -> list[Tensor]:
    """Each layer's ``(b, n)`` read-out ``(B_l v_il) . w_il`` (without bias) from :func:`_prepare_layers`."""
    terms = []
    for layer, (prep, mat) in enumerate(zip(prepared, align)):
        # C_l <= D: fold B_l into the voxel weights (w_il B_l); C_l > D: prepared maps are aligned
        eff = weights[:, layer] @ mat if mat.shape[1] <= mat.shape[0] else weights[:, layer]
        terms.append(_pool(prep, *_layer_args(space, scale, layer), eff))
    return terms


def pooled_features(maps: Sequence[Tensor], align: Sequence[Tensor], space: Tensor, scale: Tensor, *,
                    pooling: str = "token", level_std: Sequence[Tensor] | None = None) -> list[Tensor]:
    """Each layer's pooled feature per voxel, before the voxel weights: ``L`` tensors ``(b, n, K_l)``.

    Same pooling as :func:`factorized_readout`; ``K_l = C_l`` (the layer's own channels)
    when ``C_l <= D``, else the ``D`` aligned channels ``B_l v``, so no layer has more than
    ``D`` read-out dimensions. space/scale: shared ``(n, 2)``/``(n,)`` or per layer ``(n, L, 2)``/``(n, L)``.
    """
    prepared = _prepare_layers(maps, align, pooling, level_std)
    return [_pool(prep, *_layer_args(space, scale, layer)) for layer, prep in enumerate(prepared)]


def ridge_cv_r(x: Tensor, y: Tensor, folds: np.ndarray, alpha: float) -> Tensor:
    """Cross-validated Pearson r of a ridge read-out fitted separately for every voxel.

    x: ``(N, n, K)`` features per stimulus and voxel; y: ``(N, n)`` responses; folds: ``(N,)``
    fold label per stimulus. Features are standardised on each training fold; ``alpha`` is
    the ridge penalty per training stimulus (``lambda = alpha * N_train``). Returns ``(n,)``
    r between held-out predictions (all folds stacked) and ``y``.
    """
    x = x.double()
    y = y.double()
    pred = torch.zeros_like(y)
    eye = torch.eye(x.shape[2], dtype=x.dtype, device=x.device)
    for f in np.unique(folds):
        te = torch.as_tensor(folds == f, device=x.device)
        tr = ~te
        xt = x[tr]
        mu, sd = xt.mean(0), xt.std(0, unbiased=False).clamp_min(1e-9)
        xt = (xt - mu) / sd
        ym = y[tr].mean(0)
        gram = torch.einsum("bnk,bnj->nkj", xt, xt) + alpha * int(tr.sum()) * eye
        rhs = torch.einsum("bnk,bn->nk", xt, y[tr] - ym)
        w = torch.linalg.solve(gram, rhs[..., None])[..., 0]
        pred[te] = torch.einsum("bnk,nk->bn", (x[te] - mu) / sd, w) + ym
    pc, yc = pred - pred.mean(0), y - y.mean(0)
    den = (pc.square().sum(0) * yc.square().sum(0)).sqrt()
    return torch.where(den > 0, (pc * yc).sum(0) / den.clamp_min(1e-30), torch.zeros_like(den))


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
    """

    def __init__(self, n: int, k: int, n_folds: int, device, dtype=torch.float32, gram: Tensor | None = None) -> None:
        f64 = dict(dtype=torch.float64, device=device)
        # gram: optional (n_folds, n, k, k) storage to reuse (zeroed here)
        self.gram = torch.zeros(n_folds, n, k, k, dtype=dtype, device=device) if gram is None else gram.zero_()
        self.xsum = torch.zeros(n_folds, n, k, **f64)
        self.xy = torch.zeros(n_folds, n, k, **f64)
        self.ysum = torch.zeros(n_folds, n, **f64)
        self.ysq = torch.zeros(n_folds, n, **f64)
        self.count = [0] * n_folds

    def add(self, fold: int, x: Tensor, y: Tensor, voxels: slice = slice(None)) -> None:
        """Accumulate a batch ``x`` ``(b, n, K)``, ``y`` ``(b, n)`` of the block's ``voxels``."""
        xt = x.to(self.gram.dtype).transpose(0, 1)  # (n, b, K)
        yt = y.to(self.gram.dtype).T                # (n, b)
        self.gram[fold, voxels].baddbmm_(xt.transpose(1, 2), xt)
        self.xsum[fold, voxels] += xt.sum(1)
        self.xy[fold, voxels] += torch.bmm(yt[:, None, :], xt)[:, 0]
        self.ysum[fold, voxels] += yt.sum(1)
        self.ysq[fold, voxels] += yt.square().sum(1)
        if voxels.start in (None, 0):  # a batch added block by block counts once
            self.count[fold] += x.shape[0]

    def cv_r(self, alpha: float, block: int = 128) -> Tensor:
        """``(n,)`` r between the stacked held-out predictions of every fold and ``y``."""
        n_folds, n, k = self.gram.shape[:3]
        block = min(block, n)
        # float64 work space, reused block after block (fresh large allocations cost page faults)
        work = torch.empty(n_folds + 2, block, k, k, dtype=torch.float64, device=self.gram.device)
        return torch.cat([self._cv_r(alpha, slice(s, min(s + block, n)), work) for s in range(0, n, block)])

    def _cv_r(self, alpha: float, sl: slice, work: Tensor) -> Tensor:
        n_folds, m = self.gram.shape[0], sl.stop - sl.start
        gram = work[:n_folds, :m]
        gram.copy_(self.gram[:, sl])
        g_all, lhs = work[n_folds, :m], work[n_folds + 1, :m]
        torch.sum(gram, 0, out=g_all)
        xsum, xy, ysum, ysq = self.xsum[:, sl], self.xy[:, sl], self.ysum[:, sl], self.ysq[:, sl]
        total = sum(self.count)
        s_all, xy_all, y_all = xsum.sum(0), xy.sum(0), ysum.sum(0)
        ps = torch.zeros_like(y_all)
        pq = torch.zeros_like(y_all)
        py = torch.zeros_like(y_all)
        for f, n_test in enumerate(self.count):
            if n_test == 0:
                continue
            n_train = total - n_test
            mu = (s_all - xsum[f]) / n_train  # training-fold means
            ym = (y_all - ysum[f]) / n_train
            torch.sub(g_all, gram[f], out=lhs)
            lhs.baddbmm_(mu[:, :, None], mu[:, None, :], alpha=-n_train)  # centred X'X of the training folds
            diag = lhs.diagonal(dim1=1, dim2=2)
            var = (diag / n_train).clamp_min(1e-18)  # feature SD >= 1e-9, as in ridge_cv_r
            # ridge on standardised features, (S^-1 C S^-1 + a n I) w = S^-1 r, solved as (C + a n S^2) u = r
            # with u = S^-1 w the weights of the raw features: prediction = x . u + c0
            diag.add_(alpha * n_train * var)
            u = torch.linalg.solve(lhs, (xy_all - xy[f] - n_train * mu * ym[:, None])[..., None])[..., 0]
            c0 = ym - (mu * u).sum(-1)
            su = (xsum[f] * u).sum(-1)
            gu = torch.bmm(gram[f], u[..., None])[..., 0]
            ps += su + n_test * c0
            pq += (gu * u).sum(-1) + 2 * c0 * su + n_test * c0 ** 2
            py += (xy[f] * u).sum(-1) + c0 * ysum[f]
        yt, yq = y_all, ysq.sum(0)
        cov_py = py - ps * yt / total
        den = ((pq - ps ** 2 / total).clamp_min(0.0) * (yq - yt ** 2 / total).clamp_min(0.0)).sqrt()
        return torch.where(den > 0, cov_py / den.clamp_min(1e-30), torch.zeros_like(den))


def factorized_readout(maps: Sequence[Tensor], align: Sequence[Tensor], layer_probs: Tensor, space: Tensor,
                       scale: Tensor, weights: Tensor, bias: Tensor, *, per_layer: bool = False,
                       pooling: str = "token", level_std: Sequence[Tensor] | None = None) -> Tensor:
    """Voxel predictions from feature maps (Yang et al. eq. 1, with per-layer read-out weights).

    maps: ``L`` tensors ``(b, C_l, H_l, W_l)``; align: ``L`` channel-alignment matrices
    ``B_l`` ``(D, C_l)``; layer_probs ``(n, L)``; space ``(n, 2)`` x, y in [-1, 1]
    (``grid_sample`` convention, ``align_corners=False``, border padding); scale ``(n,)``
    in [0, 1]; weights ``(n, L, D)``; bias ``(n,)``. Returns ``(b, n)``::

        y_i = b_i + sum_l p_il (B_l v_il) . w_il

    The pooled feature ``v_il`` depends on ``pooling``:

    * ``"token"`` (the paper): ``(1 - a_i) v_l(u_i) + a_i mean_p v_l(p)``, the local
      feature bilinearly sampled at ``u_i`` mixed with the map's global mean by ``a_i = scale``.
    * ``"gaussian"``: the average of the map under a normalised Gaussian window centred at
      ``u_i`` with SD :func:`scale_to_sd` ``(scale)`` as a fraction of the map side, the same
      receptive-field model as :func:`neuroreg.brain.simulate.gaussian_windows`. It is read
      from a pyramid of ``K`` blurred copies of the map, interpolated trilinearly in x, y and
      log-SD (8 rows of a table per voxel, gathered with ``embedding_bag``), so the cost does
      not grow with the window size.

    space and scale may also be given per layer, ``(n, L, 2)`` and ``(n, L)``: layer ``l`` is
    then pooled at ``space[:, l]`` with ``scale[:, l]``.

    level_std: optional ``L`` tensors ``(C_l, K)``, the SD of every channel at every blur
    level (over stimuli and positions); each level is divided by it, so pooled features
    have unit variance at every layer and scale and no layer learns faster for having
    more spatially correlated channels. ``K`` is :data:`N_LEVELS`.

    With ``per_layer=True`` the result is ``(b, n, L)``: each layer's prediction alone
    (``b_i + (B_l v_il) . w_il``), whose ``p``-weighted sum is the prediction above.

    Interpolation, blur and the spatial mean are linear, so for layers with ``C_l <= D`` the
    alignment is folded into the read-out (``w_il B_l``) and applied after pooling:
    the same numbers as aligning the full maps first, at a fraction of the cost.
    """
    terms = _layer_terms(_prepare_layers(maps, align, pooling, level_std), align, space, scale, weights)
    return _combine(terms, layer_probs, bias, per_layer)


def _combine(terms: Sequence[Tensor], layer_probs: Tensor, bias: Tensor, per_layer: bool) -> Tensor:
    if per_layer:
        return torch.stack(terms, dim=-1) + bias[:, None]
    out = bias[None, :]
    for layer, term in enumerate(terms):
        out = out + layer_probs[:, layer] * term
    return out


# ----------------------------------------------------------------------------- module
def _orthogonal(d: int, c: int) -> Tensor:
    """A ``(d, c)`` matrix with orthonormal rows or columns (all singular values 1), from the current RNG.

    The channel alignment ``B_l`` must start well conditioned: the voxel weights of a layer with
    ``C_l <= D`` act through ``w_il B_l``, and a square Gaussian ``B_l`` (``C_l = D``) has
    singular values down to about ``1 / D``, which leaves that layer's read-out (and with it its
    position and scale) under-trained by gradient descent.
    """
    q, r = torch.linalg.qr(torch.randn(max(d, c), min(d, c)))
    q = q * torch.sign(torch.diagonal(r))[None, :]
    return q if d >= c else q.T


def _mlp(n_in: int, hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                         nn.Linear(hidden, n_out))


class FactorTopyNet(nn.Module):
    """Selectors, channel alignment and voxel read-outs; :func:`factorized_readout` does the prediction.

    in_channels: channels of each layer (shallow -> deep); n_voxels; n_coord: width of
    the coordinate encoding; d: shared channel dimension D (128 in the paper).
    ``forward(maps, encoding, temperature)`` takes normalised maps ``(b, C_l, H_l, W_l)``
    and returns ``(b, n_voxels)``. per_layer_space: one position and scale per voxel and
    layer (selectors output ``(n, L, 2)`` and ``(n, L)``) instead of one per voxel.
    """

    def __init__(self, in_channels: Sequence[int], n_voxels: int, n_coord: int, d: int = 128,
                 hidden: int = 128, pooling: str = "token", per_layer_space: bool = False) -> None:
        super().__init__()
        if pooling not in _POOLINGS:
            raise ValueError(f"pooling must be one of {_POOLINGS}; got {pooling!r}")
        self.pooling = pooling
        self.per_layer_space = bool(per_layer_space)
        n_layers = len(in_channels)
        n_pos = n_layers if self.per_layer_space else 1
        self.layer_selector = _mlp(n_coord, hidden, n_layers)
        self.space_selector = _mlp(n_coord, hidden, 2 * n_pos)
        self.scale_selector = _mlp(n_coord, hidden, n_pos)
        # B_l of the paper: one (D, C_l) channel alignment per layer, shared by all voxels
        self.align = nn.ParameterList(nn.Parameter(_orthogonal(d, c)) for c in in_channels)
        self.weights = nn.Parameter(torch.zeros(n_voxels, n_layers, d))
        self.bias = nn.Parameter(torch.zeros(n_voxels))
        with torch.no_grad():  # start every voxel at the image centre, half local / half global
            for sel in (self.layer_selector, self.space_selector, self.scale_selector):
                sel[-1].weight.mul_(0.1)
                sel[-1].bias.zero_()

    def selectors(self, encoding: Tensor, temperature: float = 1.0) -> tuple[Tensor, Tensor, Tensor]:
        """``(n, L)`` layer probabilities, ``(n, 2)`` positions in [-1, 1], ``(n,)`` scales in [0, 1]
        (``(n, L, 2)`` and ``(n, L)`` with ``per_layer_space``)."""
        probs = torch.softmax(self.layer_selector(encoding) / temperature, dim=-1)
        space = torch.tanh(self.space_selector(encoding))
        scale = torch.sigmoid(self.scale_selector(encoding))
        if self.per_layer_space:
            return probs, space.view(len(space), -1, 2), scale
        return probs, space, scale[:, 0]

    def forward(self, maps: Sequence[Tensor], encoding: Tensor, temperature: float = 1.0) -> Tensor:
        probs, space, scale = self.selectors(encoding, temperature)
        return factorized_readout(maps, list(self.align), probs, space, scale, self.weights, self.bias,
                                  pooling=self.pooling)


# ----------------------------------------------------------------------------- estimator
class FactorTopy(BaseEstimator):
    """Fit a FactorTopy brain-to-network mapping (Yang, Gee & Shi 2024) for one network and one brain.

    Parameters
    ----------
    layers: layer (module) names, shallow -> deep; at least two.
    d: shared channel dimension after alignment (paper: 128).
    seed: seeds the initialisation, the validation split and the batch order.
    hidden, n_freqs: selector MLP width and number of sinusoidal frequencies.
    lr, weight_decay: AdamW (paper: lr 1e-3).
    batch_size: stimuli per step; voxel_batch_size: voxels per forward chunk (bounds memory;
        gradients are accumulated over chunks, so the result does not depend on it).
    max_epochs, patience: early stopping on the mean validation Pearson r, checked from
        ``warmup_epochs + anneal_epochs`` on.
    val_fraction: share of stimuli held out for validation (ignored when ``val_index`` is
        given to :meth:`fit`).
    warmup_epochs: epochs without entropy pressure.
    entropy_weight, entropy_decay: weight of the mean layer-choice entropy after warm-up,
        multiplied by ``entropy_decay`` every further epoch.
    temperature: (start, end) of the layer-softmax temperature, annealed geometrically over
        ``anneal_epochs``.
    smooth_weight, smooth_k: optional penalty on the squared difference of layer choices
        between each voxel and its ``smooth_k`` nearest cortical neighbours.
    beta: SmoothL1 beta (paper: 0.1) on z-scored responses.
    expert_weight: weight of the per-layer terms: every layer's read-out ``y_il`` is also
        fitted to the voxel alone (``mean_l SmoothL1(y_i, y_il)``) and the layer choice pays
        ``sum_l p_il SmoothL1(y_i, y_il)`` with the read-outs held fixed, on a
        ``select_fraction`` of the training stimuli that the read-outs never train on, which
        moves it to the layer that predicts best out of sample. 0 gives the paper's loss alone.
    pooling: ``"gaussian"`` (scale = Gaussian window SD, :func:`scale_to_sd`) or ``"token"``
        (the paper's local/global mix); see :func:`factorized_readout`.
    layer_choice: ``"ridge_cv"`` (final layer probabilities ``softmax(cv_r_ / choice_temperature)``
        from ``cv_folds``-fold ridge with penalty ``ridge_alpha`` per stimulus (a number, or a
        sequence: each voxel and layer then keeps its best cross-validated r over them), see
        :func:`ridge_cv_r`) or ``"selector"`` (the layer-selector MLP, as in the paper).
    per_layer_space: give every layer its own position and scale per voxel (the selectors
        output ``(n, L, 2)`` and ``(n, L)``), so each layer's read-out is judged at its own
        best window; ``space_`` and ``scale_`` report the most probable layer's. False: one
        position and scale per voxel shared by all layers, as in the paper.
    position_init: ``"correlation"`` (default) starts every voxel's position for every layer at
        the peak of its channel-summed squared-correlation map (:func:`correlation_peaks`), by
        fitting the space selector to those peaks for ``init_steps`` Adam steps before training;
        ``"centre"`` starts every voxel at the image centre (the paper).
    random_state: scikit-learn's name for ``seed``; when given it overrides ``seed``.
    device: torch device (default: CUDA when available, else CPU).
    progress: show a progress bar over epochs (default: only on a terminal).

    A scikit-learn ``BaseEstimator``: ``get_params``/``set_params`` and
    ``sklearn.base.clone`` work (a clone is unfitted, with the same parameters).

    Fitted attributes
    -----------------
    layer_probs_ ``(n_voxels, L)``, layer_ ``(n_voxels,)`` expected depth in [0, 1],
    space_ ``(n_voxels, 2)`` x, y in [-1, 1], scale_ ``(n_voxels,)`` (with ``per_layer_space``
    those of the most probable layer; every layer's in space_layers_ ``(n_voxels, L, 2)`` and
    scale_layers_ ``(n_voxels, L)``), confidence_
    ``(n_voxels,)``, r2_ ``(n_voxels,)`` validation R^2, val_r_ ``(n_voxels,)``,
    history_ (per-epoch loss, validation r, temperature, seconds), best_epoch_, n_epochs_,
    roi_, coords_, temperature_ (layer-softmax temperature of the kept model), cv_r_
    ``(n_voxels, L)`` cross-validated ridge r per layer (``layer_choice="ridge_cv"``),
    level_std_ (per-layer ``(C, K)`` blur-level SDs, ``pooling="gaussian"``), timings_ (seconds
    spent on feature statistics, position initialisation, training epochs and the ridge layer choice),
    init_space_ ``(n_voxels, L, 2)`` correlation peaks (``position_init="correlation"``).
    window_candidate_ ``(n_voxels, L)`` which window the ridge layer choice kept per voxel and layer
    (0 learned, 1 learned position with the narrowest window, 2 correlation peak with it) and
    choice_space_layers_ ``(n_voxels, L, 2)``, choice_scale_layers_ ``(n_voxels, L)`` those windows.

    Diagnostics (``layer_choice="ridge_cv"``): cv_r_ per voxel and layer; confidence_ (entropy
    of the layer choice); choice_margin_ ``(n_voxels,)`` best minus second-best cv r; weak_layers_,
    the layers whose cv r is below their neighbours' for nearly every voxel
    (:func:`neuroreg.scoring.factortopy_diagnostics.weak_layers`), each also raised as a
    ``RuntimeWarning``: such a layer usually points at its read-out, not at the brain.
    """

    def __init__(self, layers: Sequence[str], d: int = 128, seed: int = 0, *, hidden: int = 128,
                 n_freqs: int = 6, lr: float = 1e-3, weight_decay: float = 0.01, batch_size: int = 32,
                 voxel_batch_size: int = 4096, max_epochs: int = 30, patience: int = 3,
                 val_fraction: float = 0.1, warmup_epochs: int = 2, anneal_epochs: int = 6,
                 entropy_weight: float = 0.01, entropy_decay: float = 0.95,
                 temperature: tuple[float, float] = (1.0, 0.2), smooth_weight: float = 0.0,
                 smooth_k: int = 6, beta: float = 0.1, expert_weight: float = 1.0, select_fraction: float = 0.2,
                 pooling: str = "gaussian", layer_choice: str = "ridge_cv", cv_folds: int = 5,
                 ridge_alpha: float | Sequence[float] = (2e-3, 2e-2, 2e-1, 2.0), choice_temperature: float = 0.01, per_layer_space: bool = True,
                 position_init: str = "correlation", init_steps: int = 500,
                 random_state: int | None = None, device: str | torch.device | None = None,
                 progress: bool | None = None) -> None:
        self.layers = layers
        self.random_state = random_state
        self.per_layer_space = per_layer_space
        self.position_init = position_init
        self.init_steps = init_steps
        self.d = d
        self.seed = seed
        self.hidden = hidden
        self.n_freqs = n_freqs
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.voxel_batch_size = voxel_batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.val_fraction = val_fraction
        self.warmup_epochs = warmup_epochs
        self.anneal_epochs = anneal_epochs
        self.entropy_weight = entropy_weight
        self.entropy_decay = entropy_decay
        self.temperature = temperature
        self.smooth_weight = smooth_weight
        self.smooth_k = smooth_k
        self.beta = beta
        self.expert_weight = expert_weight
        self.select_fraction = select_fraction
        self.pooling = pooling
        self.layer_choice = layer_choice
        self.cv_folds = cv_folds
        self.ridge_alpha = ridge_alpha
        self.choice_temperature = choice_temperature
        self.device = device
        self.progress = progress

    # ------------------------------------------------------------------ checks
    def _check_params(self) -> list[str]:
        layers = [self.layers] if isinstance(self.layers, str) else list(self.layers)
        if len(layers) < 2:
            raise ValueError(f"layers must name at least 2 layers (shallow -> deep); got {layers}")
        if len(set(layers)) != len(layers):
            raise ValueError(f"layers must be unique; got {layers}")
        for name in ("d", "hidden", "batch_size", "voxel_batch_size", "max_epochs", "smooth_k"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer; got {value!r}")
        if self.layer_choice not in ("ridge_cv", "selector"):
            raise ValueError(f"layer_choice must be 'ridge_cv' or 'selector'; got {self.layer_choice!r}")
        if isinstance(self.cv_folds, bool) or not isinstance(self.cv_folds, (int, np.integer)) or self.cv_folds < 2:
            raise ValueError(f"cv_folds must be an integer >= 2; got {self.cv_folds!r}")
        alphas = np.atleast_1d(np.asarray(self.ridge_alpha, dtype=np.float64))
        if alphas.ndim != 1 or alphas.size == 0 or not (np.isfinite(alphas) & (alphas > 0)).all():
            raise ValueError(f"ridge_alpha must be a positive number or a sequence of them; got {self.ridge_alpha!r}")
        if not self.choice_temperature > 0:
            raise ValueError(f"choice_temperature must be > 0; got {self.choice_temperature}")
        if self.pooling not in _POOLINGS:
            raise ValueError(f"pooling must be one of {_POOLINGS}; got {self.pooling!r}")
        if self.position_init not in ("correlation", "centre"):
            raise ValueError(f"position_init must be 'correlation' or 'centre'; got {self.position_init!r}")
        if isinstance(self.init_steps, bool) or not isinstance(self.init_steps, (int, np.integer)) or self.init_steps < 0:
            raise ValueError(f"init_steps must be an integer >= 0; got {self.init_steps!r}")
        if not 0.0 < self.select_fraction < 1.0:
            raise ValueError(f"select_fraction must be in (0, 1); got {self.select_fraction}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1); got {self.val_fraction}")
        t0, t1 = self.temperature
        if not (t0 > 0 and t1 > 0):
            raise ValueError(f"temperature must be two positive numbers (start, end); got {self.temperature}")
        for name in ("lr", "beta"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0; got {getattr(self, name)}")
        for name in ("entropy_weight", "smooth_weight", "expert_weight", "weight_decay", "warmup_epochs", "anneal_epochs",
                     "patience"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0; got {getattr(self, name)}")
        return layers

    @property
    def _seed(self) -> int:
        return int(self.seed if self.random_state is None else self.random_state)

    def _device(self) -> torch.device:
        if self.device is not None:
            return torch.device(self.device)
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")

    @staticmethod
    def _coords(brain: BrainData) -> np.ndarray:
        if not isinstance(brain, BrainData):
            raise TypeError(f"brain must be a neuroreg.brain.BrainData; got {type(brain).__name__}")
        if "coords" not in brain.unit_info:
            raise ValueError("brain.unit_info has no 'coords': FactorTopy needs cortical coordinates "
                             f"(n_voxels x 2 or 3) for every voxel; unit_info has {sorted(brain.unit_info) or 'no keys'}")
        coords = np.asarray(brain.unit_info["coords"], dtype=np.float64)
        if coords.ndim != 2 or coords.shape[1] not in (2, 3):
            raise ShapeError(f"brain.unit_info['coords'] must be (n_voxels, 2 or 3); got shape {coords.shape}")
        check_finite("brain.unit_info['coords']", coords)
        return coords

    def _source(self, features_or_model, n_stimuli: int, stimuli, device: torch.device):
        if isinstance(features_or_model, nn.Module):
            return _ModelSource(features_or_model, stimuli, self.layers_, n_stimuli, device)
        if isinstance(features_or_model, Mapping):
            return _DictSource(features_or_model, self.layers_, n_stimuli)
        raise TypeError("features_or_model must be a mapping layer -> (n, C, H, W) tensor or a torch "
                        f"nn.Module; got {type(features_or_model).__name__}")

    # ------------------------------------------------------------------ fit
    def fit(self, features_or_model, brain: BrainData, *, stimuli=None, val_index=None) -> "FactorTopy":
        """Fit the selectors and read-outs.

        features_or_model: mapping layer -> ``(n_stimuli, C, H, W)`` (or ``(n_stimuli, C)``)
            tensors in ``brain``'s stimulus order, or a frozen ``nn.Module`` run on
            ``stimuli`` (default ``brain.stimuli``) batch by batch.
        brain: BrainData ``(n_stimuli, n_voxels)`` with ``unit_info['coords']``.
        val_index: optional stimulus indices for validation (default: a seeded
            ``val_fraction`` of the stimuli).
        """
        layers = self._check_params()
        coords = self._coords(brain)
        self.layers_ = layers
        device = self._device()
        n_stim, n_vox = brain.responses.shape
        # every random choice over stimuli (validation split, read-out/selection split, batch
        # order, ridge folds) is made on ranks in sorted stimulus-id order, so the same data in
        # another row order gives the same fit
        rank_order = sorted_positions(brain.stimulus_ids)
        train_idx, val_idx = self._split(n_stim, val_index, rank_order)

        y_all = brain.responses
        mean = y_all[train_idx].mean(0)
        std = y_all[train_idx].std(0)
        flat = np.flatnonzero(std <= 1e-12 * np.maximum(1.0, np.abs(mean)))
        if flat.size:
            raise ValueError(f"{flat.size} voxels have constant responses over the training stimuli "
                             f"(first: {flat[:5].tolist()}); remove them before fitting")
        self.y_mean_, self.y_std_ = mean, std
        y = torch.as_tensor((y_all - mean) / std, dtype=torch.float32)

        lo, hi = coords.min(0), coords.max(0)
        span = np.where(hi - lo > 0, hi - lo, 1.0)
        self.coords_ = coords
        self.coords_center_, self.coords_scale_ = (hi + lo) / 2, span / 2
        enc = sinusoidal_encoding(torch.as_tensor((coords - self.coords_center_) / self.coords_scale_,
                                                  dtype=torch.float32), self.n_freqs).to(device)
        neighbours = self._neighbours(coords, device) if self.smooth_weight > 0 else None

        is_model = isinstance(features_or_model, nn.Module)
        if is_model and stimuli is None:
            stimuli = brain.stimuli
        with eval_mode(features_or_model, device) if is_model else contextlib.nullcontext():
            source = self._source(features_or_model, n_stim, stimuli, device)
            shapes = source.shapes()
            self.layer_shapes_ = shapes
            tic = time.perf_counter()
            self.feature_mean_, self.feature_std_ = self._feature_stats(source, train_idx, device)
            self.level_std_ = self._level_stats(source, train_idx, device) if self.pooling == "gaussian" else None
            self.timings_ = {"statistics": time.perf_counter() - tic}
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self._seed)
                net = FactorTopyNet([shapes[k][0] for k in layers], n_vox, enc.shape[1], self.d, self.hidden,
                                   self.pooling, self.per_layer_space)
            net.to(device)
            if self.position_init == "correlation":
                tic = time.perf_counter()
                self._init_positions(net, source, y, enc, train_idx, device)
                self.timings_["position_init"] = time.perf_counter() - tic
            self._train(net, source, y, enc, train_idx, val_idx, neighbours, device)
        self.roi_ = np.asarray(brain.unit_info["roi"]) if "roi" in brain.unit_info else None
        return self

    def _init_positions(self, net: FactorTopyNet, source, y: Tensor, enc: Tensor, train_idx, device) -> None:
        """Start the space selector at each voxel's correlation peak (:func:`correlation_peaks`).

        The selector MLP is fitted to the peaks (pre-tanh values, least squares) before training,
        so the positions stay a smooth function of cortical coordinates wherever the data allow.
        """
        target_y = y.to(device)
        peaks, height = correlation_peaks(
            lambda: ((idx, self._normalise(maps)) for idx, maps in source.batches(train_idx, self.batch_size * 4,
                                                                                  device)),
            target_y, y.shape[1])
        self.init_space_ = peaks.double().cpu().numpy()
        if not net.per_layer_space:  # one position per voxel: the layer whose peak is highest
            peaks = peaks[torch.arange(len(peaks)), height.argmax(1)]
        goal = torch.atanh(peaks.clamp(-0.95, 0.95)).reshape(len(peaks), -1).to(device)
        sel = net.space_selector
        opt = torch.optim.Adam(sel.parameters(), lr=3e-3)
        for _ in range(self.init_steps):
            opt.zero_grad(set_to_none=True)
            loss = (sel(enc) - goal).square().mean()
            loss.backward()
            opt.step()
        self.init_loss_ = float(loss.detach())

    def _split(self, n_stim: int, val_index, rank_order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Training and validation rows, each listed in sorted stimulus-id order."""
        is_val = np.zeros(n_stim, dtype=bool)
        if val_index is not None:
            val = np.unique(np.asarray(val_index, dtype=np.int64))
            if val.size and (val.min() < 0 or val.max() >= n_stim):
                raise ValueError(f"val_index must lie in [0, {n_stim}); got range [{val.min()}, {val.max()}]")
            is_val[val] = True
        else:
            n_val = int(round(self.val_fraction * n_stim))
            is_val[rank_order[np.random.default_rng(self._seed).permutation(n_stim)[:n_val]]] = True
        val, train = rank_order[is_val[rank_order]], rank_order[~is_val[rank_order]]
        if val.size < 3 or train.size < 3:
            raise ValueError(f"need at least 3 training and 3 validation stimuli; got {train.size} and "
                             f"{val.size} of {n_stim} (val_fraction={self.val_fraction})")
        self.train_index_, self.val_index_ = train, val
        return train, val

    def _neighbours(self, coords: np.ndarray, device: torch.device) -> Tensor:
        from scipy.spatial import cKDTree

        k = min(self.smooth_k, coords.shape[0] - 1)
        if k < 1:
            raise ValueError("the smoothness penalty needs at least 2 voxels")
        _, idx = cKDTree(coords).query(coords, k=k + 1)
        return torch.as_tensor(idx[:, 1:], dtype=torch.long, device=device)

    def _feature_stats(self, source, train_idx, device) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Per-channel mean and std of each layer over training stimuli and positions."""
        sums: dict[str, Tensor] = {}
        sq: dict[str, Tensor] = {}
        count: dict[str, int] = {}
        for _, maps in source.batches(train_idx, self.batch_size * 4, device):
            for name, x in maps.items():
                x64 = x.double()
                sums[name] = sums.get(name, 0) + x64.sum(dim=(0, 2, 3))
                sq[name] = sq.get(name, 0) + (x64 ** 2).sum(dim=(0, 2, 3))
                count[name] = count.get(name, 0) + x.shape[0] * x.shape[2] * x.shape[3]
        means, stds = {}, {}
        for name in sums:
            m = sums[name] / count[name]
            var = (sq[name] / count[name] - m ** 2).clamp_min(0.0)
            s = var.sqrt()
            # dead channels (constant everywhere) become zeros instead of dividing by 0
            s = torch.where(s > 1e-6 * s.max().clamp_min(1e-12), s, torch.full_like(s, float("inf")))
            means[name], stds[name] = m.float(), s.float()
        return means, stds

    def _level_stats(self, source, train_idx, device) -> dict[str, Tensor]:
        """``(C_l, K)`` SD of every normalised channel at every blur level, over training stimuli and positions."""
        sums: dict[str, Tensor] = {}
        sq: dict[str, Tensor] = {}
        count = 0
        for _, maps in source.batches(train_idx, self.batch_size, device):
            for name, x in zip(self.layers_, self._normalise(maps)):
                for rows in _gaussian_tables(x).rows:
                    pyr = rows.view(N_LEVELS, -1, x.shape[1])  # (K, positions x images, C)
                    sums[name] = sums.get(name, 0) + pyr.sum(dim=1, dtype=torch.float64).T
                    sq[name] = sq.get(name, 0) + pyr.square().sum(dim=1, dtype=torch.float64).T
            count += len(_)
        out = {}
        for name in self.layers_:
            h, w = self.layer_shapes_[name][1:]
            n = count * h * w
            var = (sq[name] / n - (sums[name] / n) ** 2).clamp_min(0.0)
            s = var.sqrt()
            # dead channels (normalised to zeros) stay zero: divide by 1
            out[name] = torch.where(s > 1e-6, s, torch.ones_like(s)).float()
        return out

    @property
    def _readout_kw(self) -> dict[str, Any]:
        level_std = getattr(self, "level_std_", None)
        return {"pooling": self.pooling,
                "level_std": None if level_std is None else [level_std[k] for k in self.layers_]}

    def _prepare(self, normed: Sequence[Tensor], align: Sequence[Tensor]) -> list:
        """What every voxel pools from, per layer, for one batch of normalised maps."""
        return _prepare_layers(normed, align, **self._readout_kw)

    def _normalise(self, maps: Mapping[str, Tensor]) -> list[Tensor]:
        return [(maps[k] - self.feature_mean_[k][:, None, None]) / self.feature_std_[k][:, None, None]
                for k in self.layers_]

    def _temperature(self, epoch: int) -> float:
        t0, t1 = self.temperature
        frac = 1.0 if self.anneal_epochs == 0 else min(epoch / self.anneal_epochs, 1.0)
        return float(t0 * (t1 / t0) ** frac)

    def _train(self, net: FactorTopyNet, source, y: Tensor, enc: Tensor, train_idx, val_idx, neighbours,
               device) -> None:
        n_vox = y.shape[1]
        opt = torch.optim.AdamW(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        rng = np.random.default_rng(self._seed)
        train_idx_all = train_idx
        select_idx = None
        if self.expert_weight > 0:
            # stimuli the read-outs never train on: the layer choice is made on out-of-sample fit,
            # otherwise the layer with the most read-out capacity wins
            n_sel = max(1, int(round(self.select_fraction * len(train_idx))))
            is_sel = np.zeros(len(train_idx), dtype=bool)
            is_sel[rng.permutation(len(train_idx))[:n_sel]] = True  # positions in sorted-id order
            select_idx, train_idx = train_idx[is_sel], train_idx[~is_sel]
        chunks = [slice(s, min(s + self.voxel_batch_size, n_vox)) for s in range(0, n_vox, self.voxel_batch_size)]
        start_checking = self.warmup_epochs + self.anneal_epochs
        best_r, best_state, best_epoch, waited = -np.inf, None, -1, 0
        history: list[dict[str, float]] = []
        bar = tqdm(range(self.max_epochs), desc="FactorTopy", unit="epoch", leave=False,
                   disable=None if self.progress is None else not self.progress)
        for epoch in bar:
            tic = time.perf_counter()
            tau = self._temperature(epoch)
            ent_w = 0.0 if epoch < self.warmup_epochs else \
                self.entropy_weight * self.entropy_decay ** (epoch - self.warmup_epochs)
            net.train()
            order = rng.permutation(train_idx)
            total, steps = 0.0, 0
            sel_batches = None
            if select_idx is not None:
                n_steps = -(-len(order) // self.batch_size)
                sel_size = max(1, -(-len(select_idx) // n_steps))
                sel_batches = source.batches(rng.permutation(select_idx), sel_size, device)
            for idx, maps in source.batches(order, self.batch_size, device):
                opt.zero_grad(set_to_none=True)
                target = y[torch.as_tensor(idx)].to(device)
                select = None
                if sel_batches is not None:
                    sel = next(sel_batches, None)
                    if sel is not None:
                        select = (self._normalise(sel[1]), y[torch.as_tensor(sel[0])].to(device))
                total += self._step(net, self._normalise(maps), target, enc, tau, ent_w, neighbours, chunks,
                                    select)
                opt.step()
                steps += 1
            val_r = self._val_r(net, source, y, enc, val_idx, tau, device)
            mean_r = float(np.mean(val_r))
            history.append({"epoch": epoch, "loss": total / max(steps, 1), "val_r": mean_r,
                            "temperature": tau, "entropy_weight": ent_w,
                            "seconds": time.perf_counter() - tic})
            bar.set_postfix(loss=f"{total / max(steps, 1):.4f}", val_r=f"{mean_r:.3f}")
            if epoch + 1 < start_checking and epoch + 1 < self.max_epochs:
                continue
            if mean_r > best_r:
                best_r, best_epoch, waited = mean_r, epoch, 0
                best_state = (copy.deepcopy(net.state_dict()), tau)
            else:
                waited += 1
                if waited > self.patience:
                    break
        bar.close()
        self.timings_["training"] = sum(h["seconds"] for h in history)
        net.load_state_dict(best_state[0])
        self.temperature_ = best_state[1]
        self.history_, self.best_epoch_, self.n_epochs_ = history, best_epoch, len(history)
        net.eval()
        self.net_ = net
        self._fixed_probs = None
        if self.layer_choice == "ridge_cv":
            tic = time.perf_counter()
            # ridge is cross-validated by itself: it uses the validation stimuli too (train, then
            # validation rows, each in sorted stimulus-id order, so the folds do not depend on row order)
            choice_idx = np.concatenate([train_idx_all, val_idx])
            self.cv_r_ = self._ridge_layer_scores(net, source, y, enc, choice_idx, device)
            self.timings_["layer_choice"] = time.perf_counter() - tic
            self._fixed_probs = torch.softmax(torch.as_tensor(self.cv_r_, dtype=torch.float32) / self.choice_temperature,
                                              dim=1).to(device)
            self.choice_margin_ = choice_margin(self.cv_r_)
            self.weak_layers_ = weak_layers(self.cv_r_, self.layers_)
            for item in self.weak_layers_:
                warnings.warn(
                    f"FactorTopy: layer {item['layer']!r} has a lower cross-validated r than its neighbours for "
                    f"{item['fraction_below']:.0%} of voxels (median r {item['median_r']:.3f} vs "
                    f"{', '.join(f'{v:.3f}' for v in item['median_r_neighbours'])}); its read-out, not the brain, "
                    "is the likely cause, and voxels reading it will be assigned to its neighbours. Check the "
                    "layer's features (dead or constant channels, map size) before trusting the map.",
                    RuntimeWarning, stacklevel=3)
        self._set_fitted(net, enc, source, y, val_idx, device)

    @torch.no_grad()
    def _ridge_layer_scores(self, net, source, y, enc, train_idx, device) -> np.ndarray:
        """``(n_voxels, L)`` cross-validated r of a closed-form ridge read-out of every layer.

        Gradient descent leaves the read-outs of layers with ill-conditioned pooled features
        under-fitted, which biases a choice made from them; ridge solves them exactly, at the
        best of a few windows per layer (see below), with at most ``D`` dimensions per layer. The features are
        never stored: each pass over the training stimuli accumulates per-fold sufficient
        statistics (:class:`_RidgeStats`) for as many (layer, voxel block) pairs as fit in
        :data:`RIDGE_MEMORY` bytes.
        """
        _, space, scale = net.selectors(enc, 1.0)
        # Gradient training settles on a window that is about right but often a pixel off or too
        # wide for a layer (on a 12 x 12 map a one-pixel blur halves a point read-out's r), which
        # loses that layer the choice. Ridge also judges each layer at its learned position with
        # the narrowest window and at its correlation peak with the narrowest window, and each
        # voxel and layer keeps its best window (``window_candidate_``: 0 learned, 1 learned
        # position with the narrowest window, 2 correlation peak with the narrowest window).
        candidates = [(space, scale), (space, torch.zeros_like(scale))]
        if self.position_init == "correlation" and space.ndim == 3:
            candidates.append((torch.as_tensor(self.init_space_, dtype=space.dtype, device=space.device),
                               torch.zeros_like(scale)))
        per = np.stack([self._ridge_scores_at(net, source, y, train_idx, device, sp, sc) for sp, sc in candidates])
        best = per.argmax(0)                                    # (n_voxels, L)
        self.window_candidate_ = best
        if space.ndim == 3:  # the windows the layer choice judged, per voxel and layer
            pick = torch.as_tensor(best, device=space.device)
            spaces = torch.stack([sp for sp, _ in candidates])   # (n_candidates, n, L, 2)
            scales = torch.stack([sc for _, sc in candidates])   # (n_candidates, n, L)
            self.choice_space_layers_ = spaces.gather(0, pick[None, :, :, None].expand(1, -1, -1, 2))[0] \
                .double().cpu().numpy()
            self.choice_scale_layers_ = scales.gather(0, pick[None])[0].double().cpu().numpy()
        return per.max(0)

    @torch.no_grad()
    def _ridge_scores_at(self, net, source, y, train_idx, device, space, scale) -> np.ndarray:
        """``(n_voxels, L)`` cross-validated ridge r of every layer at the windows ``space``, ``scale``."""
        n_vox, n_layers = y.shape[1], len(self.layers_)
        folds = np.random.default_rng(self._seed + 1).permutation(len(train_idx)) % self.cv_folds
        align = list(net.align)
        level_std = self._readout_kw["level_std"]
        widths = [min(self.d, self.layer_shapes_[k][0]) for k in self.layers_]
        passes: list[list[tuple[int, slice]]] = [[]]
        used = 0
        for layer, k in enumerate(widths):
            per_voxel = self.cv_folds * k * k * 4
            step = max(1, RIDGE_MEMORY // per_voxel)
            for start in range(0, n_vox, step):
                sl = slice(start, min(start + step, n_vox))
                cost = (sl.stop - sl.start) * per_voxel
                if passes[-1] and used + cost > RIDGE_MEMORY:
                    passes.append([])
                    used = 0
                passes[-1].append((layer, sl))
                used += cost
        target = y.to(device)
        scores = np.zeros((n_vox, n_layers))
        sizes = [[self.cv_folds * (sl.stop - sl.start) * widths[layer] ** 2 for layer, sl in items] for items in passes]
        storage = torch.empty(max(sum(s) for s in sizes), device=device)  # reused by every pass
        for items, size in zip(passes, sizes):
            offsets = np.cumsum([0] + size)
            stats = [_RidgeStats(sl.stop - sl.start, widths[layer], self.cv_folds, device,
                                 gram=storage[offsets[i]:offsets[i + 1]].view(self.cv_folds, -1, widths[layer],
                                                                                widths[layer]))
                     for i, (layer, sl) in enumerate(items)]
            needed = sorted({layer for layer, _ in items})
            for fold in range(self.cv_folds):
                for idx, maps in source.batches(train_idx[folds == fold], self.batch_size, device):
                    normed = self._normalise(maps)
                    prepared = {layer: _prepare_layers([normed[layer]], [align[layer]], self.pooling,
                                                       None if level_std is None else [level_std[layer]])[0]
                                for layer in needed}
                    yb = target[torch.as_tensor(idx)]
                    for st, (layer, sl) in zip(stats, items):
                        # a few voxels at a time: the pooled features stay small (no fresh pages per batch)
                        for start in range(sl.start, sl.stop, _RIDGE_BLOCK):
                            sub = slice(start, min(start + _RIDGE_BLOCK, sl.stop))
                            x = _pool(prepared[layer], *_layer_args(space[sub], scale[sub], layer))
                            st.add(fold, x, yb[:, sub], slice(sub.start - sl.start, sub.stop - sl.start))
            for st, (layer, sl) in zip(stats, items):
                # the penalty that suits a layer depends on its width and the stimulus count: keep
                # each voxel's best over a small grid (the same grid for every layer)
                scores[sl, layer] = torch.stack([st.cv_r(float(a)) for a in np.atleast_1d(self.ridge_alpha)]) \
                    .amax(0).cpu().numpy()
        return scores

    def _step(self, net, maps, target, enc, tau, ent_w, neighbours, chunks, select=None) -> float:
        """One optimisation step's gradients, accumulated over voxel chunks; returns the loss."""
        probs, space, scale = net.selectors(enc, tau)
        # the selectors run once; chunks backpropagate into detached copies, then into the MLPs
        leaves = [t.detach().requires_grad_(True) for t in (probs, space, scale)]
        align = list(net.align)
        # so do the pyramids shared by all chunks (aligned ones depend on B_l): built once per batch
        prepared, shared, shared_leaves = [], [], []
        for prep in self._prepare(maps, align):
            parts = prep.rows if isinstance(prep, _Tables) else [prep]
            if not parts[0].requires_grad:
                prepared.append(prep)
                continue
            copies = [t.detach().requires_grad_(True) for t in parts]
            shared += parts
            shared_leaves += copies
            prepared.append(prep._replace(rows=copies) if isinstance(prep, _Tables) else copies[0])
        sel_prepared = None
        if select is not None:
            with torch.no_grad():
                sel_prepared = self._prepare(select[0], align)
        total = 0.0
        for sl in chunks:
            p, sp, sc = (leaf[sl] for leaf in leaves)
            per = _combine(_layer_terms(prepared, align, sp, sc, net.weights[sl]), p, net.bias[sl], True)  # (b, n, L)
            pred = (per * p).sum(-1)
            loss = F.smooth_l1_loss(pred, target[:, sl], beta=self.beta, reduction="sum")
            if self.expert_weight > 0:
                each = F.smooth_l1_loss(per, target[:, sl, None].expand_as(per), beta=self.beta, reduction="none")
                # Every layer's read-out learns to explain the voxel alone, whatever the current
                # choice (gating its gradient by p lets the first layer to fit win for good);
                # the choice moves towards the layer whose read-out fits best.
                loss = loss + self.expert_weight * each.mean(-1).sum()
            loss = loss / target.numel()
            if sel_prepared is not None:
                with torch.no_grad():
                    per_sel = _combine(_layer_terms(sel_prepared, align, sp.detach(), sc.detach(), net.weights[sl]),
                                       p, net.bias[sl], True)
                    each_sel = F.smooth_l1_loss(per_sel, select[1][:, sl, None].expand_as(per_sel), beta=self.beta,
                                                reduction="none").mean(0)  # (n, L)
                loss = loss + self.expert_weight * (each_sel * p).sum() / target.shape[1]
            loss.backward()
            total += float(loss.detach())
        reg = probs.new_zeros(())
        if ent_w > 0:
            ent = -(probs * torch.log(probs.clamp_min(1e-12))).sum(-1).mean()
            reg = reg + ent_w * ent
        if neighbours is not None:
            reg = reg + self.smooth_weight * ((probs[:, None, :] - probs[neighbours]) ** 2).sum(-1).mean()
        pairs = [(out, leaf.grad) for out, leaf in zip([probs, space, scale, *shared], [*leaves, *shared_leaves])
                 if leaf.grad is not None]
        if reg.requires_grad:
            pairs.append((reg, torch.ones_like(reg)))
        if pairs:
            torch.autograd.backward([o for o, _ in pairs], [g for _, g in pairs])
        return total + float(reg.detach())

    @torch.no_grad()
    def _predict_z(self, net, source, enc, index, tau, device) -> Tensor:
        probs, space, scale = net.selectors(enc, tau)
        if getattr(self, "_fixed_probs", None) is not None:
            probs = self._fixed_probs.to(probs.device)
        align = list(net.align)
        chunks = [slice(s, s + self.voxel_batch_size) for s in range(0, probs.shape[0], self.voxel_batch_size)]
        out = []
        for _, maps in source.batches(index, self.batch_size, device):
            prepared = self._prepare(self._normalise(maps), align)
            parts = [_combine(_layer_terms(prepared, align, space[sl], scale[sl], net.weights[sl]), probs[sl],
                              net.bias[sl], False) for sl in chunks]
            out.append(torch.cat(parts, dim=1).cpu())
        return torch.cat(out, dim=0)

    def _val_r(self, net, source, y, enc, val_idx, tau, device) -> np.ndarray:
        net.eval()
        pred = self._predict_z(net, source, enc, val_idx, tau, device).double().numpy()
        return _pearson_columns(pred, y[torch.as_tensor(val_idx)].double().numpy())

    def _set_fitted(self, net, enc, source, y, val_idx, device) -> None:
        with torch.no_grad():
            probs, space, scale = net.selectors(enc, self.temperature_)
        if self._fixed_probs is not None:
            probs = self._fixed_probs
        self.encoding_ = enc
        self.layer_probs_ = probs.double().cpu().numpy()
        space, scale = space.double().cpu().numpy(), scale.double().cpu().numpy()
        if space.ndim == 3:  # per layer: report the most probable layer's
            self.space_layers_, self.scale_layers_ = space, scale
            best = self.layer_probs_.argmax(1)
            space, scale = space[np.arange(len(best)), best], scale[np.arange(len(best)), best]
        self.space_, self.scale_ = space, scale
        self.layer_ = expected_depth(self.layer_probs_)
        self.confidence_ = layer_confidence(self.layer_probs_)
        pred = self._predict_z(net, source, enc, val_idx, self.temperature_, device).double().numpy()
        truth = y[torch.as_tensor(val_idx)].double().numpy()
        self.val_r_ = _pearson_columns(pred, truth)
        sst = ((truth - truth.mean(0)) ** 2).sum(0)
        self.r2_ = 1.0 - ((truth - pred) ** 2).sum(0) / np.where(sst > 0, sst, np.inf)

    # ------------------------------------------------------------------ use
    def _check_fitted(self) -> None:
        if not hasattr(self, "net_"):
            raise RuntimeError("this FactorTopy is not fitted yet; call fit(features_or_model, brain) first")

    @property
    def best_layer_(self) -> np.ndarray:
        """``(n_voxels,)`` index of the most probable layer per voxel."""
        self._check_fitted()
        return self.layer_probs_.argmax(1)

    def predict(self, features_or_model, *, stimuli=None) -> np.ndarray:
        """Predicted responses ``(n_stimuli, n_voxels)`` in the units of the fitted responses."""
        self._check_fitted()
        device = next(self.net_.parameters()).device
        if isinstance(features_or_model, nn.Module):
            if stimuli is None:
                raise ValueError("predict with a model needs stimuli=... images (n, 3, H, W)")
            n = int(np.asarray(stimuli.shape)[0])
        elif isinstance(features_or_model, Mapping):
            missing = [k for k in self.layers_ if k not in features_or_model]
            if missing:
                raise ValueError(f"layers {missing} are missing from the features; have {list(features_or_model)}")
            n = int(features_or_model[self.layers_[0]].shape[0])
        else:
            raise TypeError("features_or_model must be a mapping layer -> tensor or a torch nn.Module; "
                            f"got {type(features_or_model).__name__}")
        is_model = isinstance(features_or_model, nn.Module)
        with eval_mode(features_or_model, device) if is_model else contextlib.nullcontext():
            source = self._source(features_or_model, n, stimuli, device)
            shapes = source.shapes()
            bad = {k: (shapes[k], self.layer_shapes_[k]) for k in self.layers_ if shapes[k][0] != self.layer_shapes_[k][0]}
            if bad:
                raise ShapeError(f"channel counts differ from the fitted features (seen, fitted): {bad}")
            z = self._predict_z(self.net_, source, self.encoding_, np.arange(n), self.temperature_, device)
        return z.double().numpy() * self.y_std_ + self.y_mean_

    def _roi(self, roi) -> np.ndarray:
        if roi is not None:
            roi = np.asarray(roi)
            if roi.shape != (self.layer_.shape[0],):
                raise ShapeError(f"roi must have one label per voxel ({self.layer_.shape[0]}); got shape {roi.shape}")
            return roi
        if self.roi_ is None:
            raise ValueError("no ROI labels: the fitted brain had no unit_info['roi']; pass roi=...")
        return self.roi_

    def hierarchy_fit(self, levels: Mapping[str, float] | None = None, roi=None) -> dict[str, float]:
        """Slope, b0, b1 and n of depth regressed on ROI level; see :func:`hierarchy_fit`."""
        self._check_fitted()
        return hierarchy_fit(self.layer_, self._roi(roi), levels)

    def hierarchy_slope(self, levels: Mapping[str, float] | None = None, roi=None) -> float:
        """Hierarchy slope (Yang et al. section 4.3): steeper = more brain-like layer ordering.

        levels: ROI -> depth (default V1 0, V2V3 1/3, OPA 2/3, EBA 1); roi: optional labels
        overriding the fitted brain's ``unit_info['roi']`` (e.g. shuffled, as a null).
        """
        return self.hierarchy_fit(levels, roi)["slope"]

    def summary(self, model: str | None = None, levels: Mapping[str, float] | None = None) -> ScoreTable:
        """Score rows: per ROI (and ``all``) the mean depth, mean confidence and median validation R^2;
        with ROI labels also the hierarchy slope, b0 and b1."""
        self._check_fitted()
        table = ScoreTable()
        layer = "|".join(self.layers_)
        groups: list[tuple[str, np.ndarray]] = [("all", np.ones(self.layer_.shape[0], dtype=bool))]
        if self.roi_ is not None:
            groups += [(str(r), self.roi_ == r) for r in np.unique(self.roi_)]
        for region, mask in groups:
            common = dict(model=model, layer=layer, region=region, split="val", n_voxels=int(mask.sum()))
            table.append(metric="factortopy_depth", score=float(self.layer_[mask].mean()), **common)
            table.append(metric="factortopy_confidence", score=float(self.confidence_[mask].mean()), **common)
            table.append(metric="factortopy_r2", score=float(np.median(self.r2_[mask])), **common)
        if self.roi_ is not None:
            try:
                fit = self.hierarchy_fit(levels)
            except ValueError:
                fit = None
            if fit is not None:
                for key in ("slope", "b0", "b1"):
                    table.append(model=model, layer=layer, region="hierarchy", split="val",
                                 metric=f"hierarchy_{key}", score=fit[key], n_voxels=fit["n"])
        return table


def _pearson_columns(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r per column; a constant column gives r = 0 (no linear relation)."""
    a = a - a.mean(0)
    b = b - b.mean(0)
    den = np.sqrt((a ** 2).sum(0) * (b ** 2).sum(0))
    return np.where(den > 0, (a * b).sum(0) / np.where(den > 0, den, 1.0), 0.0)


def compare_factortopy(before: FactorTopy, after: FactorTopy, *, levels: Mapping[str, float] | None = None,
                       model: str | None = None) -> ScoreTable:
    """Before/after fine-tuning: hierarchy slope, mean confidence and median R^2, and their change.

    Both estimators must be fitted on the same voxels (same brain data). Rows carry a
    ``stage`` column: ``before``, ``after`` or ``change`` (after - before).
    """
    for name, ft in (("before", before), ("after", after)):
        if not isinstance(ft, FactorTopy):
            raise TypeError(f"{name} must be a fitted FactorTopy; got {type(ft).__name__}")
        ft._check_fitted()
    if before.layer_.shape != after.layer_.shape:
        raise ShapeError(f"before and after were fitted on different voxels: {before.layer_.shape[0]} vs "
                         f"{after.layer_.shape[0]}")
    if before.roi_ is not None and after.roi_ is not None and not np.array_equal(before.roi_, after.roi_):
        raise ValueError("before and after were fitted on voxels with different ROI labels")

    def numbers(ft: FactorTopy) -> dict[str, float]:
        out = {"factortopy_confidence": float(ft.confidence_.mean()),
               "factortopy_r2": float(np.median(ft.r2_)),
               "factortopy_depth": float(ft.layer_.mean())}
        if ft.roi_ is not None:
            out["hierarchy_slope"] = ft.hierarchy_slope(levels)
        return out

    nb, na = numbers(before), numbers(after)
    table = ScoreTable()
    for metric in nb:
        for stage, value in (("before", nb[metric]), ("after", na[metric]), ("change", na[metric] - nb[metric])):
            table.append(model=model, region="all", split="val", metric=metric, score=value, stage=stage)
    return table
