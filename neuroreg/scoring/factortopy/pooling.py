"""Pooling a feature map at a voxel's position and scale: Gaussian blur pyramid or the paper's token mix.

See ``docs/factortopy.md`` (Cost) for how the gather tables make this fast."""

from __future__ import annotations

import functools
import math
from typing import NamedTuple, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


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


#: Floats of pooled features ``(b, voxels, C)`` held at once while gathering (bounds memory for many voxels).
_GATHER_FLOATS = 2 ** 22


class _Tables(NamedTuple):
    """Blur pyramids laid out for gathering: per image a block of ``K * H * W`` rows (see :func:`pyramid_rows`)."""

    rows: Tensor      # (M * K * H * W, channels): the blocks of M images (a batch, or every stimulus of a cache)
    offsets: Tensor   # (b,) first row of each batch image's block
    height: int
    width: int
    channels: int
    aligned: bool     # rows hold the B_l-aligned D channels (C_l > D) instead of the layer's own


def pyramid_rows(fmap: Tensor, level_std: Tensor | None = None) -> Tensor:
    """Blur pyramid of ``(b, C, H, W)`` maps as ``(b, K * H * W, C)`` rows.

    Row ``(k H + y) W + x`` of an image holds its ``C`` channels at pixel ``(y, x)`` of blur level
    ``k`` (:func:`gaussian_pyramid`), divided by ``level_std`` ``(C, K)`` when given. Pooling a voxel
    is then a weighted sum of 8 rows (:func:`_trilinear_taps`).
    """
    b, c, h, w = fmap.shape
    k = N_LEVELS
    gy = _blur_matrices(h, fmap.dtype, fmap.device).reshape(k * h, h)  # ((level, y out), y in)
    gx = _blur_matrices(w, fmap.dtype, fmap.device)                    # (K, x out, x in)
    x = fmap.permute(0, 2, 3, 1).reshape(b, h, w * c)                    # (image, y, (x, C))
    cols = torch.matmul(gy, x).view(b * k, h, w, c)                      # blurred along y
    pyr = torch.einsum("kvw,bkhwc->bkhvc", gx, cols.view(b, k, h, w, c))   # and along x
    if level_std is not None:
        pyr = pyr * level_std.to(fmap.dtype).reciprocal().T[None, :, None, None, :]
    return pyr.reshape(b, k * h * w, c)


#: Cost of one gathered table float (8 taps, forward and backward) in multiply-adds of the alignment's
#: matrix products, as the rule of :func:`_align_tables` counts it. Measured on one CPU core: on the 3 x 3 x 512
#: layer4 of ResNet-18 at 96 px with 240 voxels, folding (this value) took 1.2 CPU s per epoch, aligning
#: (a value of 150, what ``embedding_bag`` and ``matmul`` cost per float and multiply-add alone) 1.36 s.
_GATHER_COST = 2


def _align_tables(n_voxels: int | None, rows_per_image: int, c: int, d: int) -> bool:
    """Whether a ``C > D`` layer's pyramid is aligned by ``B_l`` before gathering (else ``B_l`` is folded
    into the voxel weights and ``C`` channels are gathered per voxel).

    Aligning costs about ``3 K H W C D`` multiply-adds per image and step (the product, the gradient of
    ``B_l`` and of the table), folding ``8 n (C - D)`` more gathered floats, each worth
    :data:`_GATHER_COST` multiply-adds: few voxels on large maps fold, many voxels or small maps align.
    ``n_voxels=None`` always aligns.
    """
    if c <= d:
        return False
    return n_voxels is None or 8 * _GATHER_COST * n_voxels * (c - d) > 3 * rows_per_image * c * d


def _gaussian_tables(fmap: Tensor, level_std: Tensor | None = None, align: Tensor | None = None, *,
                     cached: Tensor | None = None, index: Tensor | None = None) -> _Tables:
    """Gather tables of a batch: from ``fmap`` ``(b, C, H, W)`` (built here), or from ``cached``
    ``(N, K * H * W, C)`` pyramids (already divided by the level SDs) at the batch's stimulus rows
    ``index`` ``(b,)``. ``align`` ``(D, C)``: the rows are aligned (``B_l v``), so only ``D`` channels
    are gathered."""
    b, c, h, w = fmap.shape
    per = N_LEVELS * h * w
    if cached is not None:
        if index is None:
            raise ValueError("cached pyramids need the batch's stimulus rows (index)")
        if align is None:  # gather straight from the cache
            return _Tables(cached.view(-1, c), index.to(cached.device) * per, h, w, c, False)
        pyr = cached[index.to(cached.device)]
    else:
        pyr = pyramid_rows(fmap, level_std)
    if align is not None:
        pyr = pyr @ align.T.to(pyr.dtype)
    width = pyr.shape[-1]
    return _Tables(pyr.reshape(-1, width), torch.arange(b, device=pyr.device) * per, h, w, width, align is not None)


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

    eff: optional ``(n, C')`` voxel weights; contracting them block by block never holds more than
    :data:`_GATHER_FLOATS` pooled floats. Each image's voxels are visited in table-row order (neighbouring
    voxels read neighbouring rows, cache-friendly) and put back in their order at the end.
    """
    index, weight = _trilinear_taps(space, scale, tables.height, tables.width)
    order = torch.argsort(index[:, 0])
    index, weight = index[order], weight[order].to(tables.rows.dtype)
    n, c, b = index.shape[0], tables.channels, tables.offsets.shape[0]
    if eff is not None:
        eff = eff[order]
    offsets = tables.offsets.to(index.device)[:, None, None]
    block = max(1, _GATHER_FLOATS // max(1, b * c))
    parts = []
    for start in range(0, n, block):
        sl = slice(start, min(start + block, n))
        m = sl.stop - sl.start
        taps = (offsets + index[None, sl]).reshape(b * m, -1)                      # image-major bags
        pooled = F.embedding_bag(taps, tables.rows, per_sample_weights=weight[None, sl].expand(b, -1, -1)
                                 .reshape(b * m, -1), mode="sum").view(b, m, c)
        parts.append(pooled if eff is None else torch.linalg.vecdot(pooled, eff[None, sl]))
    out = torch.cat(parts, dim=1)  # (b, n[, C']) in row order
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(n, device=order.device)
    return out[:, inverse]


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
                    level_std: Sequence[Tensor] | None = None, *, cache: Sequence[Tensor | None] | None = None,
                    index: Tensor | None = None, n_voxels: int | None = None) -> list[_Tables | Tensor]:
    """Per layer, what the voxels pool from: gather tables (``"gaussian"``) or the map (``"token"``).

    Layers with more channels than ``D`` (``C_l > D``) are aligned here (token pooling, or gather
    tables when :func:`_align_tables` says so for ``n_voxels``), so only ``D`` channels are pooled;
    the others are pooled as they are and ``B_l`` is folded into the voxel weights (:func:`_layer_terms`).
    cache: per layer ``(N, K H W, C)`` pyramids of every stimulus (divided by the level SDs) or None,
    read at the batch's stimulus rows ``index``. Shared by all voxels: prepare once per batch.
    """
    if pooling not in _POOLINGS:
        raise ValueError(f"pooling must be one of {_POOLINGS}; got {pooling!r}")
    out: list[_Tables | Tensor] = []
    for layer, (fmap, mat) in enumerate(zip(maps, align)):
        if pooling == "gaussian":
            aligned = _align_tables(n_voxels, N_LEVELS * fmap.shape[2] * fmap.shape[3], mat.shape[1], mat.shape[0])
            cached = None if cache is None else cache[layer]
            out.append(_gaussian_tables(fmap, None if level_std is None else level_std[layer],
                                        mat if aligned else None, cached=cached, index=index))
        else:
            out.append(torch.einsum("dc,bchw->bdhw", mat, fmap) if mat.shape[1] > mat.shape[0] else fmap)
    return out


def _is_aligned(prepared: _Tables | Tensor, mat: Tensor) -> bool:
    """Whether a layer's prepared maps or tables hold the ``D`` aligned channels (else its own ``C_l``)."""
    return prepared.aligned if isinstance(prepared, _Tables) else mat.shape[1] > mat.shape[0]


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
        # fold B_l into the voxel weights (w_il B_l) unless the prepared maps are aligned already
        eff = weights[:, layer] if _is_aligned(prep, mat) else weights[:, layer] @ mat
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
    return [_aligned_pool(prep, mat, *_layer_args(space, scale, layer))
            for layer, (prep, mat) in enumerate(zip(prepared, align))]


def _aligned_pool(prepared: _Tables | Tensor, mat: Tensor, space: Tensor, scale: Tensor) -> Tensor:
    """``(b, n, min(C_l, D))`` pooled features: a ``C_l > D`` layer's through ``B_l`` ``(D, C_l)``."""
    x = _pool(prepared, space, scale)
    if mat.shape[1] > mat.shape[0] and not _is_aligned(prepared, mat):
        x = x @ mat.T.to(x.dtype)
    return x
