"""Feature statistics over the training stimuli that FactorTopy normalises its read-outs with."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from neuroreg.scoring.factortopy.pooling import N_LEVELS, _gaussian_tables

__all__: list[str] = []


def feature_stats(source, index: np.ndarray, batch_size: int,
                  device: torch.device) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Per-channel mean and SD ``(C_l,)`` of each layer over the ``index`` stimuli and all map positions.

    A dead channel (SD below 1e-6 of the layer's largest) gets SD ``inf``, so it normalises to zeros
    instead of dividing by 0.
    """
    sums: dict[str, Tensor] = {}
    sq: dict[str, Tensor] = {}
    count: dict[str, int] = {}
    for _, maps in source.batches(index, batch_size, device):
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
        s = torch.where(s > 1e-6 * s.max().clamp_min(1e-12), s, torch.full_like(s, float("inf")))
        means[name], stds[name] = m.float(), s.float()
    return means, stds


def level_stats(source, index: np.ndarray, batch_size: int, device: torch.device, layers: Sequence[str],
                layer_shapes: Mapping[str, tuple[int, int, int]],
                normalise: Callable[[Mapping[str, Tensor]], list[Tensor]]) -> dict[str, Tensor]:
    """``(C_l, K)`` SD of every normalised channel at every blur level, over the ``index`` stimuli and positions.

    normalise: maps a batch ``{layer: (b, C_l, H_l, W_l)}`` to the normalised maps in ``layers`` order.
    A dead channel (normalised to zeros) gets SD 1, so it stays zero.
    """
    sums: dict[str, Tensor] = {}
    sq: dict[str, Tensor] = {}
    count = 0
    for idx, maps in source.batches(index, batch_size, device):
        for name, x in zip(layers, normalise(maps)):
            for rows in _gaussian_tables(x).rows:
                pyr = rows.view(N_LEVELS, -1, x.shape[1])  # (K, positions x images, C)
                sums[name] = sums.get(name, 0) + pyr.sum(dim=1, dtype=torch.float64).T
                sq[name] = sq.get(name, 0) + pyr.square().sum(dim=1, dtype=torch.float64).T
        count += len(idx)
    out = {}
    for name in layers:
        h, w = layer_shapes[name][1:]
        n = count * h * w
        var = (sq[name] / n - (sums[name] / n) ** 2).clamp_min(0.0)
        s = var.sqrt()
        out[name] = torch.where(s > 1e-6, s, torch.ones_like(s)).float()
    return out
