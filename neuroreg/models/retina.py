"""Foveated retina front end: a differentiable non-uniform resampling, dense at the fixation point.

Reddy, Banburski, Pant & Poggio (2020), "Biologically Inspired Mechanisms for
Adversarial Robustness": the cone density of the primate retina falls with
eccentricity, so the image reaching cortex samples the fovea densely and the
periphery coarsely. We use the cortical-magnification form ``M(E) ∝ 1 / (E + e2)``
(Horton & Hoyt 1991): an output pixel at normalized radius ``u`` from the
fixation point reads the input at eccentricity

    E(u) = e2 * ((1 + R / e2) ** (u / R) - 1),      0 <= u <= R,

along the same direction, so ``E(0) = 0``, ``E(R) = R`` (the field of view is
kept) and the local magnification at the fixation point is
``R / (e2 * log(1 + R / e2))``. Coordinates are those of
``torch.nn.functional.grid_sample`` (``[-1, 1]``, ``align_corners=False``);
``R = sqrt(2)`` reaches the corners from the image centre. Small ``e2``: strong
foveation; ``e2 -> inf``: identity. Bilinear sampling keeps it differentiable
with respect to the image (and to ``fixation``), so it can sit before
VOneBlock or any backbone and be attacked end to end.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neuroreg.errors import ShapeError

__all__ = ["foveate", "foveation_grid", "Retina"]


def foveation_grid(height: int, width: int, *, fixation: Tensor | tuple[float, float] = (0.0, 0.0),
                   e2: float = 0.25, radius: float = math.sqrt(2.0), device=None,
                   dtype: torch.dtype = torch.float32) -> Tensor:
    """Sampling grid ``(B or 1, height, width, 2)`` in grid_sample coordinates (x, y).

    fixation: ``(x, y)`` in ``[-1, 1]`` (``(0, 0)`` = image centre), or a
    ``(B, 2)`` tensor for one fixation per image. e2: eccentricity at which the
    magnification halves, in the same normalized units (> 0). radius: output
    radius mapped onto itself.
    """
    if e2 <= 0 or radius <= 0:
        raise ValueError(f"e2 and radius must be positive; got e2={e2}, radius={radius}")
    fix = torch.as_tensor(fixation, dtype=dtype, device=device)
    if fix.shape[-1] != 2 or fix.ndim not in (1, 2):
        raise ShapeError(f"fixation must be (x, y) or (B, 2); got shape {tuple(fix.shape)}")
    fix = fix.reshape(-1, 1, 1, 2)
    ys = (torch.arange(height, device=device, dtype=dtype) * 2 + 1) / height - 1
    xs = (torch.arange(width, device=device, dtype=dtype) * 2 + 1) / width - 1
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    offset = torch.stack([gx, gy], dim=-1)[None]                  # output position relative to the centre
    u = offset.norm(dim=-1, keepdim=True)
    ecc = e2 * torch.expm1(u / radius * math.log1p(radius / e2))
    slope_at_fixation = e2 * math.log1p(radius / e2) / radius     # dE/du at u = 0
    scale = torch.where(u > 0, ecc / u.clamp_min(1e-12), torch.full_like(u, slope_at_fixation))
    return fix + offset * scale


def foveate(x: Tensor, fixation: Tensor | tuple[float, float] = (0.0, 0.0), *, e2: float = 0.25,
            radius: float = math.sqrt(2.0), output_size: tuple[int, int] | None = None,
            padding_mode: str = "border") -> Tensor:
    """Foveate images ``(B, C, H, W)`` around ``fixation``; returns ``(B, C, *output_size)`` (default H, W)."""
    if x.ndim != 4:
        raise ShapeError(f"x must be images (B, C, H, W); got shape {tuple(x.shape)}")
    h, w = output_size if output_size is not None else x.shape[-2:]
    grid = foveation_grid(h, w, fixation=fixation, e2=e2, radius=radius, device=x.device, dtype=x.dtype)
    if grid.shape[0] not in (1, x.shape[0]):
        raise ShapeError(f"fixation gives {grid.shape[0]} points for a batch of {x.shape[0]} images")
    grid = grid.expand(x.shape[0], -1, -1, -1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)


class Retina(nn.Module):
    """Module twin of :func:`foveate` (no parameters); ``Retina(e2=0.25)`` then VOneBlock or any backbone."""

    def __init__(self, e2: float = 0.25, fixation: tuple[float, float] = (0.0, 0.0), radius: float = math.sqrt(2.0),
                 output_size: tuple[int, int] | None = None, padding_mode: str = "border") -> None:
        super().__init__()
        if e2 <= 0:
            raise ValueError(f"e2 must be positive; got {e2}")
        fix = tuple(fixation)
        if len(fix) != 2:
            raise ShapeError(f"fixation must be one (x, y) point; got {fixation!r}")
        self.e2, self.fixation, self.radius = float(e2), fix, float(radius)
        self.output_size, self.padding_mode = output_size, padding_mode

    def forward(self, x: Tensor) -> Tensor:
        return foveate(x, self.fixation, e2=self.e2, radius=self.radius, output_size=self.output_size,
                       padding_mode=self.padding_mode)

    def extra_repr(self) -> str:
        return f"e2={self.e2}, fixation={self.fixation}, radius={self.radius:.4g}"
