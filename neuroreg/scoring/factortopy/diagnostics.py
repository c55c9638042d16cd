"""Checks that tell a user whether a FactorTopy layer map can be trusted.

A voxel's cross-validated ridge r changes smoothly with depth in any real network: a
layer between two others is rarely worse than both for nearly every voxel. When it is,
that layer's read-out (not the brain) is the likely cause (for example a badly
conditioned channel alignment, a window that cannot reach the map's scale, or dead
channels), and voxels that read it are pushed to its neighbours.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from neuroreg.errors import ShapeError

__all__ = ["weak_layers", "choice_margin"]


def weak_layers(cv_r, layers: Sequence[str], *, fraction: float = 0.9) -> list[dict]:
    """Layers whose cross-validated r is below their neighbours' for nearly every voxel.

    cv_r: ``(n_voxels, L)`` cross-validated r per voxel and layer (shallow -> deep);
    layers: the ``L`` names. An interior layer is flagged when it is below BOTH
    neighbours for at least ``fraction`` of voxels; the first and last layers, which
    have one neighbour, when they are below it for every voxel and by a median margin
    larger than the spread between that neighbour and the next layer (a deep or
    shallow layer read by no voxel is otherwise legitimately worst).

    Returns one dict per flagged layer: ``layer``, ``index``, ``fraction_below``
    (share of voxels below the neighbours), ``median_r`` and ``median_r_neighbours``.
    """
    r = np.asarray(cv_r, dtype=np.float64)
    if r.ndim != 2 or r.shape[1] != len(layers):
        raise ShapeError(f"cv_r must be (n_voxels, {len(layers)}) for layers {list(layers)}; got shape {r.shape}")
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1]; got {fraction}")
    n_layers = r.shape[1]
    out = []
    for k in range(n_layers):
        nbrs = [j for j in (k - 1, k + 1) if 0 <= j < n_layers]
        if not nbrs or r.shape[0] == 0:
            continue
        below = (r[:, [k]] < r[:, nbrs]).all(1)
        share = float(below.mean())
        if len(nbrs) == 2:
            flagged = share >= fraction
        else:
            j = nbrs[0]
            nxt = j + (j - k)
            gap = float(np.median(r[:, j] - r[:, k]))
            spread = float(np.median(np.abs(r[:, j] - r[:, nxt]))) if 0 <= nxt < n_layers else 0.0
            flagged = share >= 1.0 and gap > max(spread, 0.0) and n_layers > 2
        if flagged:
            out.append({"layer": str(layers[k]), "index": k, "fraction_below": share,
                        "median_r": float(np.median(r[:, k])),
                        "median_r_neighbours": [float(np.median(r[:, j])) for j in nbrs]})
    return out


def choice_margin(cv_r) -> np.ndarray:
    """``(n_voxels,)`` best minus second-best cross-validated r: how clearly a layer won."""
    r = np.sort(np.asarray(cv_r, dtype=np.float64), axis=1)
    if r.shape[1] < 2:
        raise ShapeError(f"cv_r needs at least 2 layers; got shape {r.shape}")
    return r[:, -1] - r[:, -2]
