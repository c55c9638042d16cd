"""The ridge layer choice of FactorTopy (``layer_choice="ridge_cv"``): cross-validated r of a closed-form
ridge read-out of every layer, per voxel, at the best of a few windows.

Gradient descent leaves the read-outs of layers with ill-conditioned pooled features under-fitted,
which biases a choice made from them; ridge solves them exactly, with at most ``D`` dimensions per
layer. The features are never stored: each pass over the stimuli accumulates per-fold sufficient
statistics (:class:`~neuroreg.scoring.factortopy.ridge._RidgeStats`) for as many (layer, voxel block)
pairs as fit in :data:`~neuroreg.scoring.factortopy.ridge.RIDGE_MEMORY` bytes.

Every function takes ``ft``, the fitted-so-far :class:`~neuroreg.scoring.factortopy.FactorTopy`: its
parameters, feature normalisation and ``layer_shapes_``.
"""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from neuroreg.scoring.factortopy.network import FactorTopyNet
from neuroreg.scoring.factortopy.pooling import _aligned_pool, _layer_args, _prepare_layers
from neuroreg.scoring.factortopy.ridge import _RIDGE_BLOCK, RIDGE_MEMORY, _plan_passes, _RidgeStats

__all__: list[str] = []


class LayerChoice(NamedTuple):
    """The ridge layer choice per voxel and layer."""

    cv_r: np.ndarray                     # (n_voxels, L) cross-validated ridge r at the kept window
    window_candidate: np.ndarray         # (n_voxels, L) kept window: 0 learned, 1 learned point, 2 ridge-fit peak
    space_layers: np.ndarray | None      # (n_voxels, L, 2) kept positions (per-layer space only)
    scale_layers: np.ndarray | None      # (n_voxels, L) kept scales (per-layer space only)


@torch.no_grad()
def ridge_layer_choice(ft: Any, net: FactorTopyNet, source, y: Tensor, enc: Tensor, index: np.ndarray,
                       device: torch.device) -> LayerChoice:
    """Cross-validated ridge r of every layer and voxel on the ``index`` stimuli (y: ``(n_stimuli, n_voxels)``
    z-scored responses), each at the best of its candidate windows."""
    _, space, scale = net.selectors(enc, 1.0)
    # Gradient training settles on a window that is about right but often a pixel off or too
    # wide for a layer (on a 12 x 12 map a one-pixel blur halves a point read-out's r), which
    # loses that layer the choice. Ridge also judges each layer at its learned position with
    # the narrowest window and at its ridge-fit peak with the narrowest window, and each
    # voxel and layer keeps its best window.
    candidates = [(space, scale), (space, torch.zeros_like(scale))]
    if ft.position_init == "correlation" and space.ndim == 3:
        candidates.append((torch.as_tensor(ft.init_space_, dtype=space.dtype, device=space.device),
                           torch.zeros_like(scale)))
    # the narrowest candidates are read as what they stand for, a bilinear point sample of the
    # (aligned) map: the narrowest blur level (SD 0.02 of the map side, half a pixel of a 24 x 24
    # map) mixes in the neighbours and cost layer2 its voxels (docs/factortopy.md, third pass)
    per = np.stack([_scores_at(ft, net, source, y, index, device, sp, sc, point=i > 0)
                    for i, (sp, sc) in enumerate(candidates)])
    best = per.argmax(0)                                    # (n_voxels, L)
    space_layers = scale_layers = None
    if space.ndim == 3:  # the windows the layer choice judged, per voxel and layer
        pick = torch.as_tensor(best, device=space.device)
        spaces = torch.stack([sp for sp, _ in candidates])   # (n_candidates, n, L, 2)
        scales = torch.stack([sc for _, sc in candidates])   # (n_candidates, n, L)
        space_layers = spaces.gather(0, pick[None, :, :, None].expand(1, -1, -1, 2))[0].double().cpu().numpy()
        scale_layers = scales.gather(0, pick[None])[0].double().cpu().numpy()
    return LayerChoice(per.max(0), best, space_layers, scale_layers)


@torch.no_grad()
def _scores_at(ft: Any, net: FactorTopyNet, source, y: Tensor, index: np.ndarray, device: torch.device,
               space: Tensor, scale: Tensor, point: bool = False) -> np.ndarray:
    """``(n_voxels, L)`` cross-validated ridge r of every layer at the windows ``space``, ``scale``.

    point: read every layer by bilinear sampling of its normalised (``C_l > D``: aligned) map at
    ``space`` (``scale`` ignored) instead of from the blur pyramid.
    """
    n_vox, n_layers, n_folds = y.shape[1], len(ft.layers_), ft.cv_folds
    folds = np.random.default_rng(ft.random_state + 1).permutation(len(index)) % n_folds
    align = list(net.align)
    level_std = ft._readout_kw["level_std"]
    widths = [min(ft.d, ft.layer_shapes_[k][0]) for k in ft.layers_]
    passes = _plan_passes([(n_vox, n_folds * k * k * 4) for k in widths], RIDGE_MEMORY)
    target = y.to(device)
    scores = np.zeros((n_vox, n_layers))
    sizes = [[n_folds * (sl.stop - sl.start) * widths[layer] ** 2 for layer, sl in items] for items in passes]
    storage = torch.empty(max(sum(s) for s in sizes), device=device)  # reused by every pass
    for items, size in zip(passes, sizes):
        offsets = np.cumsum([0] + size)
        stats = [_RidgeStats(sl.stop - sl.start, widths[layer], n_folds, device,
                             gram=storage[offsets[i]:offsets[i + 1]].view(n_folds, -1, widths[layer], widths[layer]))
                 for i, (layer, sl) in enumerate(items)]
        needed = sorted({layer for layer, _ in items})
        for fold in range(n_folds):
            for idx, maps in source.batches(index[folds == fold], ft.batch_size, device):
                normed = ft._normalise(maps)
                cache = getattr(ft, "_cache", None)
                prepared = {layer: _prepare_layers([normed[layer]], [align[layer]], "token")[0] if point else
                            _prepare_layers([normed[layer]], [align[layer]], ft.pooling,
                                            None if level_std is None else [level_std[layer]],
                                            cache=None if cache is None else [cache[layer]],
                                            index=torch.as_tensor(idx), n_voxels=n_vox)[0]
                            for layer in needed}
                yb = target[torch.as_tensor(idx)]
                for st, (layer, sl) in zip(stats, items):
                    # a few voxels at a time: the pooled features stay small (no fresh pages per batch)
                    for start in range(sl.start, sl.stop, _RIDGE_BLOCK):
                        sub = slice(start, min(start + _RIDGE_BLOCK, sl.stop))
                        sp, sc = _layer_args(space[sub], scale[sub], layer)
                        # the token pooling with scale 0 is the bilinear sample at sp
                        x = _aligned_pool(prepared[layer], align[layer], sp, torch.zeros_like(sc) if point else sc)
                        st.add(fold, x, yb[:, sub], slice(sub.start - sl.start, sub.stop - sl.start))
        for st, (layer, sl) in zip(stats, items):
            # the penalty that suits a layer depends on its width and the stimulus count: keep
            # each voxel's best over a small grid (the same grid for every layer)
            alphas = [float(a) for a in np.atleast_1d(ft.ridge_alpha)]
            scores[sl, layer] = st.cv_r(alphas, var_floor=float(ft.ridge_var_floor)).amax(0).cpu().numpy()
    return scores


def warn_weak_layers(weak: list[dict], stacklevel: int) -> None:
    """One ``RuntimeWarning`` per layer of
    :func:`~neuroreg.scoring.factortopy.diagnostics.weak_layers`: such a layer points at its read-out."""
    for item in weak:
        warnings.warn(
            f"FactorTopy: layer {item['layer']!r} has a lower cross-validated r than its neighbours for "
            f"{item['fraction_below']:.0%} of voxels (median r {item['median_r']:.3f} vs "
            f"{', '.join(f'{v:.3f}' for v in item['median_r_neighbours'])}); its read-out, not the brain, "
            "is the likely cause, and voxels reading it will be assigned to its neighbours. Check the "
            "layer's features (dead or constant channels, map size) before trusting the map.",
            RuntimeWarning, stacklevel=stacklevel + 1)
