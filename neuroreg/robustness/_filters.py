"""Batched image filters the ImageNet-C corruptions are built from (torch + kornia).

Conventions: images (N, C, H, W) float; pixel i sits at coordinate i; angles in
degrees, x to the right and y down.
"""

from __future__ import annotations

import math

import kornia
import torch
import torch.nn.functional as F
from torch import Tensor


def gaussian_blur(x: Tensor, sigma: float, truncate: float = 4.0) -> Tensor:
    """Gaussian blur with edge replication, as skimage.filters.gaussian (scipy truncate=4)."""
    if sigma <= 0:
        return x
    radius = int(truncate * sigma + 0.5)
    size = 2 * radius + 1
    return kornia.filters.gaussian_blur2d(x, (size, size), (sigma, sigma), border_type="replicate")


def disk_kernel(radius: float, alias_blur: float, *, dtype=torch.float32, device=None) -> Tensor:
    """Anti-aliased disk (defocus) kernel, (K, K), sums to about 1.

    Follows imagenet_c's ``disk``: a binary disk on a grid of half-width 8 (or
    ceil(radius) when larger), normalised, then a 3 x 3 (5 x 5 above radius 8)
    Gaussian of sigma ``alias_blur`` with mirrored borders.
    """
    half = 8 if radius <= 8 else math.ceil(radius)
    ksize = 3 if radius <= 8 else 5
    coords = torch.arange(-half, half + 1, dtype=dtype, device=device)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    disk = ((xx ** 2 + yy ** 2) <= radius ** 2).to(dtype)
    disk = disk / disk.sum()
    if alias_blur <= 0:
        return disk
    return kornia.filters.gaussian_blur2d(disk[None, None], (ksize, ksize), (alias_blur, alias_blur),
                                          border_type="reflect")[0, 0]


def convolve(x: Tensor, kernel: Tensor) -> Tensor:
    """Same-size filtering of every channel with one (K, K) kernel, mirrored borders
    (OpenCV's BORDER_REFLECT_101) when the image is large enough, replicated otherwise."""
    half = kernel.shape[-1] // 2
    border = "reflect" if half < min(x.shape[-2:]) else "replicate"
    return kornia.filters.filter2d(x, kernel[None].to(x), border_type=border)


def _pixel_grid(h: int, w: int, like: Tensor) -> tuple[Tensor, Tensor]:
    ys = torch.arange(h, dtype=like.dtype, device=like.device)
    xs = torch.arange(w, dtype=like.dtype, device=like.device)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return gy, gx


def sample_pixels(x: Tensor, px: Tensor, py: Tensor, *, mode: str = "bilinear",
                  padding_mode: str = "border", half_sample_reflect: bool = False) -> Tensor:
    """Read ``x`` (N, C, H, W) at pixel coordinates px, py (N, H', W').

    ``padding_mode="reflection"`` mirrors about the outermost pixel centres
    (OpenCV's REFLECT_101); with ``half_sample_reflect`` it mirrors about the
    image edges instead (scipy.ndimage's ``mode="reflect"``).
    """
    h, w = x.shape[-2:]
    if half_sample_reflect:
        gx, gy = (2 * px + 1) / w - 1, (2 * py + 1) / h - 1
    else:
        gx, gy = 2 * px / max(w - 1, 1) - 1, 2 * py / max(h - 1, 1) - 1
    grid = torch.stack([gx, gy], dim=-1).to(x.dtype)
    return F.grid_sample(x, grid, mode=mode, padding_mode=padding_mode, align_corners=not half_sample_reflect)


def motion_blur(x: Tensor, radius: float, sigma: float, angle_deg: Tensor) -> Tensor:
    """ImageMagick's MotionBlurImage, batched: a one-sided Gaussian streak.

    Output pixel p averages ``2 * ceil(radius) + 1`` input pixels at integer
    offsets round(i * (cos a, sin a)), i = 0, 1, ..., weighted by exp(-i^2 / 2 sigma^2)
    (normalised); edges are replicated. ``angle_deg``: (N,) one angle per image.
    """
    width = 2 * math.ceil(radius) + 1 if radius > 0 else 1
    sigma = max(float(sigma), 1e-6)
    steps = torch.arange(width, dtype=x.dtype, device=x.device)
    weights = torch.exp(-steps ** 2 / (2 * sigma ** 2))
    weights = weights / weights.sum()
    angle = torch.deg2rad(angle_deg.to(x.dtype))
    # ImageMagick rounds each offset with ceil(v - 0.5).
    off_x = torch.ceil(steps[None] * torch.cos(angle)[:, None] - 0.5)  # (N, width)
    off_y = torch.ceil(steps[None] * torch.sin(angle)[:, None] - 0.5)
    h, w = x.shape[-2:]
    yy, xx = _pixel_grid(h, w, x)
    out = torch.zeros_like(x)
    for i in range(width):
        px = (xx[None] + off_x[:, i, None, None]).clamp(0, w - 1).long()
        py = (yy[None] + off_y[:, i, None, None]).clamp(0, h - 1).long()
        flat = (py * w + px).flatten(1)[:, None].expand(-1, x.shape[1], -1)
        out = out + weights[i] * x.flatten(2).gather(2, flat).view_as(x)
    return out


def _clipped_zoom_coords(n: int, factor: float) -> list[float]:
    # Crop ceil(n / factor) central pixels, stretch them to round(crop * factor)
    # samples with the end points on the end pixels (scipy.ndimage.zoom, order 1),
    # keep the first n: ImageNet-C's clipped_zoom, one axis.
    crop = math.ceil(n / factor)
    top = (n - crop) // 2
    out = max(int(round(crop * factor)), n)
    step = (crop - 1) / (out - 1) if out > 1 else 0.0
    return [top + i * step for i in range(n)]


def zoom(x: Tensor, factor: float) -> Tensor:
    """Zoom into the image centre by ``factor`` >= 1 keeping the size (bilinear), as
    ImageNet-C's ``clipped_zoom``: the central ceil(side / factor) pixels are
    stretched end pixel to end pixel and the output is cut to the input size
    from the top-left, so the zoom centre sits up to half a pixel off the middle."""
    h, w = x.shape[-2:]
    ys = torch.tensor(_clipped_zoom_coords(h, factor), dtype=x.dtype, device=x.device)
    xs = torch.tensor(_clipped_zoom_coords(w, factor), dtype=x.dtype, device=x.device)
    py, px = torch.meshgrid(ys, xs, indexing="ij")
    n = x.shape[0]
    return sample_pixels(x, px.expand(n, h, w), py.expand(n, h, w))


def reflect_gaussian_smooth(field: Tensor, sigma: float | tuple[float, float], truncate: float = 3.0) -> Tensor:
    """Gaussian smoothing of (N, H, W) with scipy's ``mode='reflect'``, any sigma
    (one for both axes, or (sigma_rows, sigma_columns)).

    Mirroring the field once along each axis makes it periodic with period 2H
    (2W), and circular convolution of that periodic signal with the truncated
    Gaussian (wrapped onto the period) equals scipy.ndimage.gaussian_filter with
    mode='reflect', also when the kernel is wider than the image (ImageNet-C's
    elastic transform smooths with sigma up to 171 px on 224-px images).
    """
    sigmas = (float(sigma), float(sigma)) if isinstance(sigma, (int, float)) else tuple(map(float, sigma))
    for dim, sigma in zip((-2, -1), sigmas):
        if sigma <= 0:
            continue
        n = field.shape[dim]
        period = 2 * n
        radius = int(truncate * sigma + 0.5)
        taps = torch.arange(-radius, radius + 1, dtype=field.dtype, device=field.device)
        kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
        kernel = kernel / kernel.sum()
        wrapped = torch.zeros(period, dtype=field.dtype, device=field.device)
        wrapped.index_add_(0, torch.remainder(taps.long(), period), kernel)
        ext = torch.cat([field, field.flip(dim)], dim=dim)
        spec = torch.fft.rfft(ext, dim=dim)
        kspec = torch.fft.rfft(wrapped)
        shape = [1] * field.ndim
        shape[dim] = kspec.shape[0]
        smoothed = torch.fft.irfft(spec * kspec.view(shape), n=period, dim=dim)
        field = smoothed.narrow(dim, 0, n)
    return field


def _box_weights(n_in: int, n_out: int, like: Tensor) -> Tensor:
    """(n_out, n_in) row-normalised weights of PIL's BOX resampling along one axis."""
    scale = n_in / n_out
    support = 0.5 * max(scale, 1.0)
    inv = 1.0 / max(scale, 1.0)
    weights = torch.zeros(n_out, n_in, dtype=torch.float64)
    for i in range(n_out):
        centre = (i + 0.5) * scale
        lo = max(int(centre - support + 0.5), 0)
        hi = min(int(centre + support + 0.5), n_in)
        for j in range(lo, hi):
            t = (j - centre + 0.5) * inv
            if -0.5 < t <= 0.5:
                weights[i, j] = 1.0
    weights = weights / weights.sum(1, keepdim=True).clamp_min(1e-12)
    return weights.to(dtype=like.dtype, device=like.device)


def nearest_resize(x: Tensor, height: int, width: int) -> Tensor:
    """Resize (N, C, H, W) to (height, width) with PIL's ``Image.NEAREST``: output
    pixel i reads input pixel floor((i + 0.5) * n_in / n_out)."""
    h, w = x.shape[-2:]
    rows = torch.floor((torch.arange(height, dtype=torch.float64) + 0.5) * h / height).long().clamp_(0, h - 1)
    cols = torch.floor((torch.arange(width, dtype=torch.float64) + 0.5) * w / width).long().clamp_(0, w - 1)
    return x.index_select(-2, rows.to(x.device)).index_select(-1, cols.to(x.device))


def box_resize(x: Tensor, height: int, width: int) -> Tensor:
    """Resize (N, C, H, W) to (height, width) with PIL's ``Image.BOX`` filter (separable)."""
    wy = _box_weights(x.shape[-2], height, x)
    wx = _box_weights(x.shape[-1], width, x)
    return torch.einsum("oh,nchw,pw->ncop", wy, x, wx)
