"""Summaries of a FactorTopy layer choice: confidence, expected depth and the hierarchy slope."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch
from torch import Tensor

from neuroreg._utils.checks import check_finite
from neuroreg.errors import ShapeError


#: ROI -> ideal depth of the four-level hierarchy of Yang et al. (section 4.3).
DEFAULT_LEVELS: dict[str, float] = {"V1": 0.0, "V2V3": 1 / 3, "OPA": 2 / 3, "EBA": 1.0}


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
