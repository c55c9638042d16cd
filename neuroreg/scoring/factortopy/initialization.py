"""Where to start FactorTopy's position selectors: the peak of each voxel's channel-summed correlation map.

For voxel ``v`` and layer ``l`` the map ``S_vl(p) = sum_c corr(y_v, F_lc(p))^2`` over the
pixels ``p`` of the layer's (per-channel normalised) feature map peaks where the voxel's
receptive field is: a voxel reading ``w . F_l(p0)`` (or a window around ``p0``) correlates
with every channel that carries signal at ``p0``, and less with the same channels further
away. The statistic is a sum of the ``C`` squared correlations, so it needs no read-out
weights and costs one ``(n_voxels x stimuli) @ (stimuli x C H W)`` product per layer,
streamed over stimulus batches. Gradient descent from the image centre can settle on a
wrong position for a layer (the read-out then explains little there, and the layer loses
the layer choice); starting from the peak avoids that and needs fewer epochs.
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = ["correlation_peaks"]

#: Bytes of ``(voxels x C H W)`` cross-products held at once (more voxels -> more passes).
PEAK_MEMORY = 2 ** 30


def correlation_peaks(batches: Callable[[], Iterable[tuple[np.ndarray, Sequence[Tensor]]]], y: Tensor,
                      n_voxels: int) -> tuple[Tensor, Tensor]:
    """Per voxel and layer, the (x, y) of the peak of ``sum_c corr(y_v, F_lc(p))^2`` and its height.

    batches: a function returning an iterator over ``(rows, maps)``, ``maps`` one ``(b, C_l, H_l, W_l)``
    tensor per layer; called once per block of voxels. y: ``(n_stimuli, n_voxels)`` responses
    indexed by ``rows`` (on the maps' device). Returns positions ``(n_voxels, L, 2)`` in
    ``grid_sample`` coordinates (pixel ``j`` of ``W`` at ``(2 j + 1) / W - 1``; sub-pixel by a
    parabola through the peak and its neighbours) and peak heights ``(n_voxels, L)``
    (mean squared correlation over channels). Accumulates in float64.
    """
    out_pos, out_height = [], []
    first = next(iter(batches()))[1]
    shapes = [tuple(m.shape[1:]) for m in first]
    width = max(c * h * w for c, h, w in shapes)
    block = max(1, min(n_voxels, PEAK_MEMORY // (8 * width * len(shapes))))
    f64, dev = torch.float64, y.device
    for start in range(0, n_voxels, block):
        vox = slice(start, min(start + block, n_voxels))
        m_vox = vox.stop - vox.start
        cross = [torch.zeros(m_vox, c * h * w, dtype=f64, device=dev) for c, h, w in shapes]
        xs = [torch.zeros(c * h * w, dtype=f64, device=dev) for c, h, w in shapes]
        xq = [torch.zeros(c * h * w, dtype=f64, device=dev) for c, h, w in shapes]
        ys = torch.zeros(m_vox, dtype=f64, device=dev)
        yq = torch.zeros(m_vox, dtype=f64, device=dev)
        n = 0
        for rows, maps in batches():
            yb = y[torch.as_tensor(rows, device=y.device), vox].float()
            for k, m in enumerate(maps):
                x = m.float().reshape(m.shape[0], -1)
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
            score = corr.square().view(-1, c, h, w).mean(1)  # (v, h, w)
            pos, height = _peak(score)
            pos_l.append(pos)
            height_l.append(height)
        out_pos.append(torch.stack(pos_l, 1))
        out_height.append(torch.stack(height_l, 1))
    return torch.cat(out_pos).float(), torch.cat(out_height).float()


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
