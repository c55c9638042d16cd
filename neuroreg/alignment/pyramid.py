"""Binomial image pyramid of the Neural Harmonizer (Fel et al. 2022), as TensorFlow computes it.

Each level is the previous one convolved with the normalised 5 x 5 binomial
kernel ``outer(1-4-6-4-1, 1-4-6-4-1) / 256`` at stride 2 with TensorFlow's
``"SAME"`` zero padding: an ``n``-pixel side becomes ``ceil(n / 2)`` pixels and
the ``max((ceil(n / 2) - 1) * 2 + 5 - n, 0)`` padded pixels are split with the
extra one at the end (bottom, right), as ``tf.nn.conv2d(..., strides=2,
padding="SAME")`` does in ``harmonization.training.pyramid`` (harmonization 0.0.9).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from neuroreg.errors import ShapeError

__all__ = ["pyramid", "binomial_kernel", "downsample"]

_TAPS = (1.0, 4.0, 6.0, 4.0, 1.0)


def binomial_kernel(dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> Tensor:
    """The ``(5, 5)`` binomial smoothing kernel, summing to 1."""
    taps = torch.tensor(_TAPS, dtype=torch.float64)
    kernel = torch.outer(taps, taps)
    return (kernel / kernel.sum()).to(dtype=dtype, device=device)


def _same_padding(size: int, kernel: int = 5, stride: int = 2) -> tuple[int, int]:
    """TensorFlow's ``"SAME"`` padding ``(before, after)`` of one side of ``size`` pixels."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def downsample(maps: Tensor) -> Tensor:
    """One pyramid step: ``(B, H, W)`` -> ``(B, ceil(H / 2), ceil(W / 2))`` (binomial blur, stride 2)."""
    if maps.ndim != 3:
        raise ShapeError(f"maps must be (B, H, W); got shape {tuple(maps.shape)}")
    top, bottom = _same_padding(maps.shape[1])
    left, right = _same_padding(maps.shape[2])
    x = F.pad(maps[:, None], (left, right, top, bottom))
    kernel = binomial_kernel(maps.dtype, maps.device)[None, None]
    return F.conv2d(x, kernel, stride=2)[:, 0]


def pyramid(maps: Tensor, levels: int = 5) -> list[Tensor]:
    """The map and ``levels`` successive downsamplings: ``levels + 1`` tensors, the original first.

    maps: ``(B, H, W)``. Level ``k`` has sides ``ceil(H / 2**k)``, ``ceil(W / 2**k)``;
    a side of 1 pixel stays 1 pixel. Differentiable in ``maps``.
    """
    if maps.ndim != 3:
        raise ShapeError(f"maps must be (B, H, W); got shape {tuple(maps.shape)}")
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 0:
        raise ValueError(f"levels must be an integer >= 0; got {levels!r}")
    out = [maps]
    for _ in range(levels):
        out.append(downsample(out[-1]))
    return out
