"""Seeded procedural textures for the weather corruptions (fog, frost), batched in torch."""

from __future__ import annotations

from typing import TypedDict

import torch
from torch import Tensor

from neuroreg.robustness._filters import motion_blur


def _uniform(shape, low, high, generator, like: Tensor) -> Tensor:
    return low + (high - low) * torch.rand(shape, generator=generator, dtype=like.dtype, device=like.device)


def plasma_fractal(n: int, mapsize: int, wibble_decay: float, generator: torch.Generator,
                   like: Tensor) -> Tensor:
    """Diamond-square height maps, (n, mapsize, mapsize) in [0, 1].

    The fog texture of ImageNet-C (Hendrycks & Dietterich 2019): each level
    fills square centres, then diamond centres, with the mean of their four
    neighbours (wrapping around) plus uniform noise of amplitude ``wibble``^2,
    starting at wibble = 100 and dividing it by ``wibble_decay`` per level.
    ``mapsize`` must be a power of two.
    """
    if mapsize < 2 or mapsize & (mapsize - 1):
        raise ValueError(f"mapsize must be a power of two >= 2; got {mapsize}")
    grid = torch.zeros(n, mapsize, mapsize, dtype=like.dtype, device=like.device)
    step = mapsize
    wibble = 100.0

    def noisy_mean(total):
        return total / 4 + wibble * _uniform(total.shape, -wibble, wibble, generator, like)

    while step >= 2:
        half = step // 2
        # squares: centre of each step x step cell from its four corners
        corners = grid[:, 0::step, 0::step]
        acc = corners + corners.roll(-1, dims=1)
        acc = acc + acc.roll(-1, dims=2)
        grid[:, half::step, half::step] = noisy_mean(acc)
        # diamonds: edge midpoints from the two adjacent corners and two centres
        centres = grid[:, half::step, half::step]
        corners = grid[:, 0::step, 0::step]
        acc = centres + centres.roll(1, dims=1) + corners + corners.roll(-1, dims=2)
        grid[:, 0::step, half::step] = noisy_mean(acc)
        acc = centres + centres.roll(1, dims=2) + corners + corners.roll(-1, dims=1)
        grid[:, half::step, 0::step] = noisy_mean(acc)
        step //= 2
        wibble /= wibble_decay
    flat = grid.flatten(1)
    lo = flat.min(1).values[:, None, None]
    hi = flat.max(1).values[:, None, None]
    return (grid - lo) / (hi - lo).clamp_min(1e-12)


def _standardise(t: Tensor) -> Tensor:
    """Zero mean, unit standard deviation per image (over all but the first axis)."""
    dims = tuple(range(1, t.ndim))
    return (t - t.mean(dims, keepdim=True)) / t.std(dims, keepdim=True).clamp_min(1e-12)


#: Calibration of the procedural frost to ImageNet-C's frost photographs (random crops as
#: the original takes them, measured at 224 px): mean colour (R, G, B) 0.574, 0.639, 0.684
#: (per-photo grey level 0.48 ... 0.81), standard deviation over a crop 0.093, over a 7 x 7
#: window 0.061, mean absolute difference of neighbouring pixels 0.041. The grey level range
#: was then trimmed so that blends match imagecorruptions' mean absolute change (docs/robustness.md).
class _FrostCalibration(TypedDict):
    level: tuple[float, float]
    tint: tuple[float, float, float]
    cloud_sd: float
    crystal_sd: float


FROST_CALIBRATION: _FrostCalibration = {"level": (0.44, 0.82), "tint": (0.908, 1.011, 1.082), "cloud_sd": 0.07,
                                        "crystal_sd": 0.068}


def frost_texture(n: int, height: int, width: int, generator: torch.Generator, like: Tensor) -> Tensor:
    """Synthetic frost, (n, 3, height, width) in [0, 1], pale blue-white.

    ImageNet-C blends photographs of frost on glass; they are not bundled here,
    so a texture with the same ingredients and the same first- and second-order
    statistics (:data:`FROST_CALIBRATION`) is drawn instead: a bright grey level
    drawn per image, cloudy diamond-square haze, and needle-like crystals made
    by streaking sparse seeds along a few random directions (the motion-blur
    kernel), tinted towards blue as in the photographs.
    """
    cal = FROST_CALIBRATION
    size = 1
    while size < max(height, width):
        size *= 2
    cloud = _standardise(plasma_fractal(n, size, 2.0, generator, like)[:, None, :height, :width])
    crystals = torch.zeros(n, 1, height, width, dtype=like.dtype, device=like.device)
    for _ in range(4):
        seeds = (torch.rand(n, 1, height, width, generator=generator, dtype=like.dtype, device=like.device)
                 < 0.012).to(like.dtype)
        seeds = seeds * _uniform((n, 1, height, width), 0.5, 1.0, generator, like)
        angle = _uniform((n,), 0.0, 360.0, generator, like)
        length = max(height, width) / 28
        crystals = torch.maximum(crystals, motion_blur(seeds, length, length / 2, angle))
    crystals = _standardise(crystals)
    level = _uniform((n, 1, 1, 1), *cal["level"], generator, like)
    grey = level + cal["cloud_sd"] * cloud + cal["crystal_sd"] * crystals
    tint = torch.tensor(cal["tint"], dtype=like.dtype, device=like.device).view(1, 3, 1, 1)
    return (grey * tint).clamp(0, 1)
