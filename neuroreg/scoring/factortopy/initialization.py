"""Where to start FactorTopy's position selectors: the peak of each voxel's per-pixel ridge fit.

For voxel ``v``, layer ``l`` and pixel ``p`` of the layer's (per-channel normalised) feature map,
let ``r_vp`` be the ``C`` correlations between the voxel and the channels at ``p`` over the
stimuli and ``R_p`` the ``C x C`` correlation matrix of those channels. The map

    S_vp = r_vp' (R_p + alpha I)^-1 r_vp

is the in-sample R^2 of a ridge read-out of the channels at ``p`` (penalty ``alpha`` on
standardised channels). It peaks where the voxel's receptive field is. ``R_p`` does not depend on
the voxel, so a layer costs one ``C x C`` inverse per pixel plus one quadratic form per voxel
and pixel, on top of the ``(n_voxels x stimuli) @ (stimuli x C H W)`` product of the
correlations, streamed over stimulus batches.

``alpha=None`` gives the channel-summed squared correlation ``mean_c r_vpc^2`` (channels treated
as independent, ``R_p = I``). Channels of a network layer are strongly correlated, so that map is
broad and its peak drifts towards where many channels co-vary: on a random ResNet-18 at 96 px
(600 stimuli, point read-outs) its median error at the true layer was 0.09, 0.18, 0.43 and 0.79
grid units for the four blocks, against 0.02, 0.03, 0.09 and 0.19 with ``alpha=0.1``
(``docs/factortopy.md``, fourth pass). Gradient descent from the image centre can settle on a
wrong position for a layer (the read-out then explains little there, and the layer loses the
layer choice); starting from the peak avoids that and needs fewer epochs.
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

import numpy as np
import torch
from torch import Tensor

from neuroreg.scoring.factortopy.ridge import _plan_passes, _spd_inverse

__all__ = ["correlation_peaks"]

#: Bytes of ``(voxels x C H W)`` cross-products, or of per-pixel ``C x C`` channel statistics, held at once.
PEAK_MEMORY = 2 ** 30


def correlation_peaks(batches: Callable[[], Iterable[tuple[np.ndarray, Sequence[Tensor]]]], y: Tensor,
                      n_voxels: int, alpha: float | None = None) -> tuple[Tensor, Tensor]:
    """Per voxel and layer, the (x, y) of the peak of its per-pixel ridge fit (module docstring) and its height.

    batches: a function returning an iterator over ``(rows, maps)``, ``maps`` one ``(b, C_l, H_l, W_l)``
    tensor per layer; called once per block of voxels (and once more for the channel statistics when
    ``alpha`` is given). y: ``(n_stimuli, n_voxels)`` responses indexed by ``rows`` (on the maps'
    device). alpha: ridge penalty on the channels' correlation matrix (whose trace is ``C``);
    ``None``: the mean squared correlation over channels. Returns positions ``(n_voxels, L, 2)`` in
    ``grid_sample`` coordinates (pixel ``j`` of ``W`` at ``(2 j + 1) / W - 1``; sub-pixel by a
    parabola through the peak and its neighbours) and peak heights ``(n_voxels, L)`` (the in-sample
    ridge R^2, or the mean squared correlation for ``alpha=None``). Accumulates in float64.
    """
    if alpha is not None and not alpha > 0:
        raise ValueError(f"alpha must be > 0 or None; got {alpha!r}")
    out_pos, out_height = [], []
    first = next(iter(batches()))[1]
    shapes = [(int(m.shape[1]), int(m.shape[2]), int(m.shape[3])) for m in first]
    width = max(c * h * w for c, h, w in shapes)
    block = max(1, min(n_voxels, PEAK_MEMORY // (8 * width * len(shapes))))
    f64, dev = torch.float64, y.device
    solvers = None if alpha is None else _pixel_solvers(batches, shapes, alpha, dev)
    for start in range(0, n_voxels, block):
        vox = slice(start, min(start + block, n_voxels))
        m_vox = vox.stop - vox.start
        cross = [torch.zeros(m_vox, c * h * w, dtype=f64, device=dev) for c, h, w in shapes]
        xs = [torch.zeros(c * h * w, dtype=f64, device=dev) for c, h, w in shapes]
        xq = [torch.zeros(c * h * w, dtype=f64, device=dev) for c, h, w in shapes]
        ys = torch.zeros(m_vox, dtype=f64, device=dev)
        yq = torch.zeros(m_vox, dtype=f64, device=dev)
        shift: list[Tensor | None] = [None] * len(shapes)
        n = 0
        for rows, maps in batches():
            yb = y[torch.as_tensor(rows, device=y.device), vox].float()
            for k, m in enumerate(maps):
                x = m.float().reshape(m.shape[0], -1)
                ref = shift[k]
                if ref is None:  # about the first batch's mean: no cancellation when centred below
                    ref = shift[k] = x.mean(0)
                x = x - ref
                cross[k] += (yb.T @ x).double()  # float32 products of one batch, summed over batches in float64
                xs[k] += x.sum(0, dtype=torch.float64)
                xq[k] += x.square().sum(0, dtype=torch.float64)
            yb = yb.double()
            ys += yb.sum(0)
            yq += yb.square().sum(0)
            n += yb.shape[0]
        y_sd = (yq / n - (ys / n) ** 2).clamp_min(1e-24).sqrt()
        pos_l, height_l = [], []
        for k, (c, h, w) in enumerate(shapes):
            x_mean = xs[k] / n
            x_sd = (xq[k] / n - x_mean ** 2).clamp_min(0.0).sqrt()
            cov = cross[k] / n - (ys / n)[:, None] * x_mean[None, :]
            corr = torch.where(x_sd > 1e-9, cov / (y_sd[:, None] * x_sd.clamp_min(1e-9)), torch.zeros_like(cov))
            corr = corr.view(-1, c, h * w)
            if solvers is None:
                score = corr.square().mean(1)  # (v, h w)
            else:
                # r' M r per pixel, M = (R_p + alpha I)^-1 shared by all voxels; pixels in chunks bound the memory
                inv = solvers[k]
                score = torch.empty(corr.shape[0], h * w, dtype=f64, device=dev)
                step = max(1, PEAK_MEMORY // (8 * corr.shape[0] * c))
                for p0 in range(0, h * w, step):
                    r = corr[:, :, p0:p0 + step].permute(2, 0, 1)                # (p, v, C)
                    score[:, p0:p0 + step] = (torch.bmm(r, inv[p0:p0 + step]) * r).sum(-1).T
            pos, height = _peak(score.view(-1, h, w))
            pos_l.append(pos)
            height_l.append(height)
        out_pos.append(torch.stack(pos_l, 1))
        out_height.append(torch.stack(height_l, 1))
    return torch.cat(out_pos).float(), torch.cat(out_height).float()


def _pixel_solvers(batches: Callable[[], Iterable[tuple[np.ndarray, Sequence[Tensor]]]],
                   shapes: Sequence[tuple[int, int, int]], alpha: float, device) -> list[Tensor]:
    """Per layer ``(H W, C, C)`` inverses ``(R_p + alpha I)^-1`` of every pixel's channel correlation matrix.

    Channel products are accumulated in float64 about the first batch's mean at each pixel: a
    channel of a network read at one pixel can vary across stimuli by a tiny fraction of its value,
    and raw sums would cancel to rounding noise when centred. Layers (and, for very wide layers,
    pixel ranges) are grouped into passes over the stimuli so that at most :data:`PEAK_MEMORY` bytes
    of products are held at once.
    """
    groups = _plan_passes([(h * w, 8 * c * c) for c, h, w in shapes], PEAK_MEMORY)
    pieces: dict[int, list[Tensor]] = {k: [] for k in range(len(shapes))}
    for group in groups:
        grams = [torch.zeros(p.stop - p.start, shapes[k][0], shapes[k][0], dtype=torch.float64, device=device)
                 for k, p in group]
        sums = [torch.zeros(p.stop - p.start, shapes[k][0], dtype=torch.float64, device=device) for k, p in group]
        shift: list[Tensor | None] = [None] * len(group)
        n = 0
        for _, maps in batches():
            for i, (k, part) in enumerate(group):
                m = maps[k]
                x = m.double().reshape(m.shape[0], m.shape[1], -1)[:, :, part].permute(2, 0, 1)  # (p, b, C)
                ref = shift[i]
                if ref is None:
                    ref = shift[i] = x.mean(1, keepdim=True)
                x = x - ref
                grams[i].baddbmm_(x.transpose(1, 2), x)
                sums[i] += x.sum(1)
            n += maps[0].shape[0]
        for i, (k, part) in enumerate(group):
            mean = sums[i] / n
            cov = grams[i] / n - mean[:, :, None] * mean[:, None, :]
            sd = cov.diagonal(dim1=1, dim2=2).clamp_min(0.0).sqrt()
            live = sd > 1e-9
            scale = torch.where(live, sd.clamp_min(1e-9).reciprocal(), torch.zeros_like(sd))
            corr = cov * scale[:, :, None] * scale[:, None, :]        # dead channels: zero rows and columns
            corr.diagonal(dim1=1, dim2=2).add_(alpha)
            pieces[k].append(_spd_inverse(corr))  # batched LU fails in MKL for wide layers
    return [torch.cat(pieces[k]) for k in range(len(shapes))]


def _peak(score: Tensor) -> tuple[Tensor, Tensor]:
    """``(v, H, W)`` maps -> ``(v, 2)`` sub-pixel peak (x, y) in grid coordinates and ``(v,)`` heights."""
    v, h, w = score.shape
    flat = score.reshape(v, -1)
    height, arg = flat.max(1)
    iy, ix = arg // w, arg % w

    def offset(centre, minus, plus):
        # vertex of the parabola through three samples, clamped to half a pixel
        den = minus - 2 * centre + plus
        return torch.where(den < 0, 0.5 * (minus - plus) / den.where(den < 0, torch.ones_like(den)),
                           torch.zeros_like(den)).clamp(-0.5, 0.5)

    rows = torch.arange(v, device=score.device)
    at = score[rows, iy, ix]
    dx = offset(at, score[rows, iy, (ix - 1).clamp_min(0)], score[rows, iy, (ix + 1).clamp_max(w - 1)])
    dy = offset(at, score[rows, (iy - 1).clamp_min(0), ix], score[rows, (iy + 1).clamp_max(h - 1), ix])
    dx = torch.where((ix == 0) | (ix == w - 1), torch.zeros_like(dx), dx) if w > 1 else torch.zeros_like(dx)
    dy = torch.where((iy == 0) | (iy == h - 1), torch.zeros_like(dy), dy) if h > 1 else torch.zeros_like(dy)
    px = (2 * (ix.double() + dx) + 1) / w - 1
    py = (2 * (iy.double() + dy) + 1) / h - 1
    return torch.stack([px, py], 1), height
