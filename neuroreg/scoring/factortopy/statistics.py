"""Feature statistics over the training stimuli that FactorTopy normalises its read-outs with."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from neuroreg.scoring.factortopy.pooling import N_LEVELS, pyramid_rows

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


def plan_cache(layer_shapes: Sequence[tuple[int, int, int]], n_stimuli: int, budget: int) -> list[bool]:
    """Which layers' blur pyramids (``n_stimuli x K H W x C`` float32 each) are kept for the whole fit:
    layers in order, each kept when it still fits in ``budget`` bytes."""
    keep, used = [], 0
    for c, h, w in layer_shapes:
        size = 4 * n_stimuli * N_LEVELS * h * w * c
        keep.append(used + size <= budget)
        used += size if keep[-1] else 0
    return keep


def level_stats(source, index: np.ndarray, batch_size: int, device: torch.device, layers: Sequence[str],
                layer_shapes: Mapping[str, tuple[int, int, int]],
                normalise: Callable[[Mapping[str, Tensor]], list[Tensor]], *, cache_index: np.ndarray | None = None,
                cache_bytes: int = 0) -> tuple[dict[str, Tensor], list[Tensor | None]]:
    """``(C_l, K)`` SD of every normalised channel at every blur level, over the ``index`` stimuli and positions,
    and the blur pyramids kept for the fit.

    normalise: maps a batch ``{layer: (b, C_l, H_l, W_l)}`` to the normalised maps in ``layers`` order.
    A dead channel (normalised to zeros) gets SD 1, so it stays zero. cache_index: the stimulus rows whose
    pyramids are kept (a superset of ``index``, e.g. training and validation rows); the layers that fit in
    ``cache_bytes`` (:func:`plan_cache`) get ``(source.n_stimuli, K H W, C_l)`` pyramids divided by these SDs
    (:func:`~neuroreg.scoring.factortopy.pooling.pyramid_rows`), computed in the same pass; the others None.
    """
    shapes = [layer_shapes[name] for name in layers]
    rows = index if cache_index is None else cache_index
    keep = plan_cache(shapes, source.n_stimuli, cache_bytes) if cache_index is not None else [False] * len(layers)
    cache: list[Tensor | None] = [torch.empty(source.n_stimuli, N_LEVELS * h * w, c, device=device) if k else None
                                  for k, (c, h, w) in zip(keep, shapes)]
    is_stat = np.zeros(source.n_stimuli, dtype=bool)
    is_stat[index] = True
    sums: dict[str, Tensor] = {}
    sq: dict[str, Tensor] = {}
    for idx, maps in source.batches(rows, batch_size, device):
        use = torch.as_tensor(is_stat[idx], device=device)
        for layer, (name, x) in enumerate(zip(layers, normalise(maps))):
            pyr = pyramid_rows(x)                                   # (b, K H W, C)
            store = cache[layer]
            if store is not None:
                store[torch.as_tensor(idx, device=device)] = pyr
            part = pyr[use].view(-1, N_LEVELS, shapes[layer][1] * shapes[layer][2], x.shape[1])
            # float32 sums over one image's pixels (a float64 reduction of the strided view is 30x slower),
            # float64 over images and batches
            sums[name] = sums.get(name, 0) + part.sum(2).double().sum(0)
            sq[name] = sq.get(name, 0) + part.square().sum(2).double().sum(0)
    out = {}
    for layer, name in enumerate(layers):
        h, w = layer_shapes[name][1:]
        n = len(index) * h * w
        var = (sq[name] / n - (sums[name] / n) ** 2).clamp_min(0.0).T   # (C, K)
        s = var.sqrt()
        out[name] = torch.where(s > 1e-6, s, torch.ones_like(s)).float()
        store = cache[layer]
        if store is not None:
            store.mul_(out[name].reciprocal().T.reshape(N_LEVELS, 1, -1).expand(-1, h * w, -1).reshape(-1, store.shape[2]))
    return out, cache
