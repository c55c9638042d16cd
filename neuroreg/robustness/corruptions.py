"""The 15 ImageNet-C corruptions (Hendrycks & Dietterich 2019), batched in torch.

Severity parameters are the published tables of the ``imagenet_c`` package
(hendrycks/robustness, ImageNet-C/imagenet_c/imagenet_c/corruptions.py, the
same as create_c/make_imagenet_c.py), copied into :data:`SEVERITY_PARAMS`.
The implementation is ours: torch and kornia on the images' device, one call
per batch, every random draw from a ``torch.Generator`` seeded by ``seed``.
Random draws do not depend on the severity, so the five severities of one
seed share their noise, angles and textures and differ only in the parameters.

Images are (N, 3, H, W) RGB in [0, 1]; outputs too. The tables are defined
for 224-px images; at other sizes lengths in pixels (blur radii and sigmas,
shuffle distances, elastic displacements) scale with min(H, W) / 224, and the
snow, frost and fog layers are drawn at the 224-px scale and resized.

Deviations from the original, all documented where they occur:
frost uses a procedural texture (the original blends bundled photographs);
glass blur reuses a few swap chains per batch (the original draws one per
image); JPEG uses kornia's differentiable codec; zoom blur
resamples about the centre in one step (the original crops, then rescales);
the elastic transform composes its affine and elastic warps into one resampling.
"""

from __future__ import annotations

from typing import Callable

import kornia
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neuroreg.errors import ShapeError, UnknownNameError
from neuroreg.robustness._filters import (box_resize, convolve, disk_kernel, gaussian_blur, motion_blur,
                                          reflect_gaussian_smooth, sample_pixels, zoom)
from neuroreg.robustness._textures import frost_texture, plasma_fractal
from neuroreg.robustness.wrapper import check_images

__all__ = ["CORRUPTIONS", "SEVERITY_PARAMS", "corrupt", "Corruption",
           "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur_corruption",
           "zoom_blur", "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate",
           "jpeg_compression"]

_BASE = 224  # the image size the published parameters are defined for

#: Published ImageNet-C parameters, severity 1..5 (Hendrycks & Dietterich 2019, imagenet_c corruptions.py).
SEVERITY_PARAMS: dict[str, tuple] = {
    # noise standard deviation
    "gaussian_noise": (0.08, 0.12, 0.18, 0.26, 0.38),
    # photons per unit intensity (Poisson rate scale)
    "shot_noise": (60, 25, 12, 5, 3),
    # salt-and-pepper amount
    "impulse_noise": (0.03, 0.06, 0.09, 0.17, 0.27),
    # (disk radius px, alias blur sigma)
    "defocus_blur": ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)),
    # (gaussian sigma px, max shuffle distance px, iterations)
    "glass_blur": ((0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)),
    # (ImageMagick radius px, sigma px)
    "motion_blur": ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15)),
    # zoom factors: numpy.arange(1, stop, step) of the original
    "zoom_blur": ((1, 1.11, 0.01), (1, 1.16, 0.01), (1, 1.21, 0.02), (1, 1.26, 0.02), (1, 1.31, 0.03)),
    # (flake mean, flake sd, flake zoom, threshold, blur radius px, blur sigma px, image weight)
    "snow": ((0.1, 0.3, 3, 0.5, 10, 4, 0.8), (0.2, 0.3, 2, 0.5, 12, 4, 0.7),
             (0.55, 0.3, 4, 0.9, 12, 8, 0.7), (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65),
             (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55)),
    # (image weight, frost weight)
    "frost": ((1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75)),
    # (fog strength, fractal wibble decay)
    "fog": ((1.5, 2), (2, 2), (2.5, 1.7), (2.5, 1.5), (3, 1.4)),
    # added HSV value
    "brightness": (0.1, 0.2, 0.3, 0.4, 0.5),
    # contrast factor about the channel mean
    "contrast": (0.4, 0.3, 0.2, 0.1, 0.05),
    # (alpha px, sigma px, affine jitter px); 244 (sic) in the original, see its comment
    "elastic_transform": ((244 * 2, 244 * 0.7, 244 * 0.1), (244 * 2, 244 * 0.08, 244 * 0.2),
                          (244 * 0.05, 244 * 0.01, 244 * 0.02), (244 * 0.07, 244 * 0.01, 244 * 0.02),
                          (244 * 0.12, 244 * 0.01, 244 * 0.02)),
    # fraction of the side kept before upsampling
    "pixelate": (0.6, 0.5, 0.4, 0.3, 0.25),
    # JPEG quality
    "jpeg_compression": (25, 18, 15, 10, 7),
}


def _params(name: str, severity: int):
    if isinstance(severity, bool) or not isinstance(severity, int) or not 1 <= severity <= 5:
        raise ValueError(f"severity must be an integer in 1..5; got {severity!r}")
    return SEVERITY_PARAMS[name][severity - 1]


def _prepare(x: Tensor) -> None:
    check_images("x", x)
    if x.shape[1] != 3:
        raise ShapeError(f"ImageNet-C corruptions act on RGB images (N, 3, H, W); got shape {tuple(x.shape)}")


def _generator(seed: int, x: Tensor) -> torch.Generator:
    return torch.Generator(device=x.device).manual_seed(int(seed))


def _scale(x: Tensor) -> float:
    return min(x.shape[-2:]) / _BASE


def _base_shape(x: Tensor) -> tuple[int, int]:
    s = _scale(x)
    return max(1, round(x.shape[-2] / s)), max(1, round(x.shape[-1] / s))


def _resize_to(layer: Tensor, x: Tensor) -> Tensor:
    if tuple(layer.shape[-2:]) == tuple(x.shape[-2:]):
        return layer
    return F.interpolate(layer, size=x.shape[-2:], mode="bilinear", align_corners=False, antialias=True)


def _rand(shape, gen, x: Tensor) -> Tensor:
    return torch.rand(shape, generator=gen, dtype=x.dtype, device=x.device)


def _randn(shape, gen, x: Tensor) -> Tensor:
    return torch.randn(shape, generator=gen, dtype=x.dtype, device=x.device)


# ---------------------------------------------------------------- noise

def gaussian_noise(x: Tensor, severity: int = 1, seed: int = 0) -> Tensor:
    """Additive Gaussian noise of sd 0.08 ... 0.38."""
    _prepare(x)
    sd = _params("gaussian_noise", severity)
    return (x + sd * _randn(x.shape, _generator(seed, x), x)).clamp(0, 1)


def shot_noise(x: Tensor, severity: int = 1, seed: int = 0) -> Tensor:
    """Poisson (photon) noise: Poisson(x * c) / c, c = 60 ... 3."""
    _prepare(x)
    c = _params("shot_noise", severity)
    return (torch.poisson(x * c, generator=_generator(seed, x)) / c).clamp(0, 1)


def impulse_noise(x: Tensor, severity: int = 1, seed: int = 0) -> Tensor:
    """Salt-and-pepper noise: a fraction 0.03 ... 0.27 of the values set to 0 or 1 (half each)."""
    _prepare(x)
    amount = _params("impulse_noise", severity)
    gen = _generator(seed, x)
    hit = _rand(x.shape, gen, x) < amount
    salt = _rand(x.shape, gen, x) < 0.5
    return torch.where(hit, salt.to(x.dtype), x)


# ---------------------------------------------------------------- blur

def defocus_blur(x: Tensor, severity: int = 1, seed: int = 0) -> Tensor:
    """Convolution with an anti-aliased disk (radius 3 ... 10 px at 224 px). Deterministic."""
    _prepare(x)
    radius, alias = _params("defocus_blur", severity)
    s = _scale(x)
    return convolve(x, disk_kernel(radius * s, alias * s, dtype=x.dtype, device=x.device)).clamp(0, 1)


def _glass_permutation(h: int, w: int, delta: int, iterations: int, rng: np.random.Generator) -> np.ndarray:
    """The pixel permutation of ImageNet-C's glass blur, (h * w,) source indices.

    The original walks from the bottom-right to the top-left interior pixel and
    swaps each with a random neighbour at offsets in [-delta, delta); the swaps
    chain, so pixels can travel far. The chain depends only on the random draws,
    not on pixel values, so it is run once on indices and applied to all
    channels with one gather.
    """
    index = list(range(h * w))
    rows = np.arange(h - delta, delta, -1)
    cols = np.arange(w - delta, delta, -1)
    if rows.size == 0 or cols.size == 0:
        return np.asarray(index, dtype=np.int64)
    here = (rows[:, None] * w + cols[None, :]).ravel()
    for _ in range(iterations):
        # draws in the original's order: (dx, dy) per visited pixel, row by row
        offsets = rng.integers(-delta, delta, size=(here.size, 2))
        there = here + offsets[:, 1] * w + offsets[:, 0]
        for a, b in zip(here.tolist(), there.tolist()):
            index[a], index[b] = index[b], index[a]
    return np.asarray(index, dtype=np.int64)


def glass_blur(x: Tensor, severity: int = 1, seed: int = 0, n_permutations: int = 4) -> Tensor:
    """Blur, shuffle pixels locally by a chain of random neighbour swaps, blur again.

    The blurred image is quantised to 8 bits before the shuffle, as in the
    original. The swap chain is sequential by nature, so it is computed on
    indices on the CPU (tens of ms per 224-px permutation); to keep batches cheap,
    ``n_permutations`` chains are drawn per call and image i uses chain
    i mod n_permutations (the original draws one per image).
    """
    _prepare(x)
    sigma, delta, iterations = _params("glass_blur", severity)
    s = _scale(x)
    sigma, delta = sigma * s, max(1, round(delta * s))
    n, c, h, w = x.shape
    rng = np.random.default_rng(int(seed))
    perms = [_glass_permutation(h, w, delta, iterations, rng) for _ in range(min(n, n_permutations))]
    index = torch.as_tensor(np.stack([perms[i % len(perms)] for i in range(n)]), device=x.device)
    out = torch.floor(gaussian_blur(x, sigma).clamp(0, 1) * 255) / 255
    out = out.flatten(2).gather(2, index[:, None].expand(-1, c, -1)).view_as(x)
    return gaussian_blur(out, sigma).clamp(0, 1)


def motion_blur_corruption(x: Tensor, severity: int = 1, seed: int = 0) -> Tensor:
    """ImageMagick motion blur (radius 10 ... 20 px, sigma 3 ... 15 px) at a random angle in [-45, 45) deg."""
    _prepare(x)
    radius, sigma = _params("motion_blur", severity)
    s = _scale(x)
    angle = -45 + 90 * _rand((x.shape[0],), _generator(seed, x), x)
    return motion_blur(x, radius * s, sigma * s, angle).clamp(0, 1)


def zoom_blur(x: Tensor, severity: int = 1, seed: int = 0) -> Tensor:
    """Mean of the image and its zooms about the centre by factors 1 ... 1.3. Deterministic."""
    _prepare(x)
    start, stop, step = _params("zoom_blur", severity)
    factors = torch.arange(start, stop, step, dtype=torch.float64).tolist()  # numpy.arange semantics
    out = x.clone()
    for f in factors:
        out = out + zoom(x, f)
    return (out / (len(factors) + 1)).clamp(0, 1)


# ---------------------------------------------------------------- weather

def snow(x: Tensor, severity: int = 1, seed: int = 0) -> Tensor:
    """Snow: thresholded zoomed Gaussian flakes, motion-blurred at [-135, -45) deg, added twice
    (also rotated 180 deg) over a brightened, greyed image."""
    _prepare(x)
    loc, scale, flake_zoom, threshold, radius, sigma, weight = _params("snow", severity)
    gen = _generator(seed, x)
    n = x.shape[0]
    bh, bw = _base_shape(x)
    layer = loc + scale * _randn((n, 1, bh, bw), gen, x)
    angle = -135 + 90 * _rand((n,), gen, x)
    layer = zoom(layer, flake_zoom)
    layer = torch.where(layer < threshold, torch.zeros_like(layer), layer)
    layer = torch.floor(layer.clamp(0, 1) * 255) / 255  # the original passes the layer through 8-bit PNG
    layer = _resize_to(motion_blur(layer, radius, sigma, angle), x)
    gray = kornia.color.rgb_to_grayscale(x)  # 0.299 R + 0.587 G + 0.114 B, as OpenCV
    x = weight * x + (1 - weight) * torch.maximum(x, gray * 1.5 + 0.5)
    return (x + layer + layer.flip(-1, -2)).clamp(0, 1)


def frost(x: Tensor, severity: int = 1, seed: int = 0) -> Tensor:
    """a * image + b * frost texture, (a, b) from (1, 0.4) to (0.6, 0.75).

    The original blends crops of six bundled frost photographs; this uses a
    seeded procedural frost texture (see ``_textures.frost_texture``) instead,
    so absolute accuracies on this corruption are not comparable to ImageNet-C's.
    """
    _prepare(x)
    a, b = _params("frost", severity)
    bh, bw = _base_shape(x)
    texture = _resize_to(frost_texture(x.shape[0], bh, bw, _generator(seed, x), x), x)
    return (a * x + b * texture).clamp(0, 1)


def fog(x: Tensor, severity: int = 1, seed: int = 0) -> Tensor:
    """Add a diamond-square fractal (strength 1.5 ... 3), rescale by max / (max + strength)."""
    _prepare(x)
    strength, decay = _params("fog", severity)
    bh, bw = _base_shape(x)
    mapsize = 256
    while mapsize < max(bh, bw):
        mapsize *= 2
    plasma = plasma_fractal(x.shape[0], mapsize, decay, _generator(seed, x), x)[:, None, :bh, :bw]
    max_val = x.flatten(1).max(1).values.view(-1, 1, 1, 1)
    out = x + strength * _resize_to(plasma, x)
    return (out * max_val / (max_val + strength)).clamp(0, 1)


# ---------------------------------------------------------------- digital

def brightness(x: Tensor, severity: int = 1, seed: int = 0) -> Tensor:
    """Add 0.1 ... 0.5 to the HSV value channel. Deterministic."""
    _prepare(x)
    c = _params("brightness", severity)
    hsv = kornia.color.rgb_to_hsv(x)
    hsv = torch.cat([hsv[:, :2], (hsv[:, 2:] + c).clamp(0, 1)], dim=1)
    return kornia.color.hsv_to_rgb(hsv).clamp(0, 1)


def contrast(x: Tensor, severity: int = 1, seed: int = 0) -> Tensor:
    """Scale deviations from each channel's mean by 0.4 ... 0.05. Deterministic."""
    _prepare(x)
    c = _params("contrast", severity)
    mean = x.mean(dim=(2, 3), keepdim=True)
    return ((x - mean) * c + mean).clamp(0, 1)


def elastic_transform(x: Tensor, severity: int = 1, seed: int = 0) -> Tensor:
    """Random affine warp (corner jitter c px) then a smooth random displacement field
    (uniform noise smoothed with sigma px, scaled by alpha px), Simard et al. 2003.

    Note the published table: severities 1-2 move pixels more (large affine
    jitter, very smooth fields) than 3-5 (small jitter, local wobble), so this
    corruption is not monotone in pixel distance over severities 2 -> 3.
    """
    _prepare(x)
    alpha, sigma, jitter = (v * _scale(x) for v in _params("elastic_transform", severity))
    gen = _generator(seed, x)
    n, _, h, w = x.shape
    dt = torch.float64
    centre = torch.tensor([h // 2, w // 2], dtype=dt, device=x.device)
    side = min(h, w) // 3
    pts1 = torch.stack([centre + side, torch.stack([centre[0] + side, centre[1] - side]), centre - side])
    unit = torch.rand((n, 3, 2), generator=gen, dtype=x.dtype, device=x.device).to(dt)
    pts2 = pts1 + (2 * unit - 1) * jitter
    # affine M with M [p; 1] = q for the three point pairs (OpenCV getAffineTransform), then invert
    src = torch.cat([pts1, torch.ones(3, 1, dtype=dt, device=x.device)], dim=1)  # (3, 3)
    m = torch.linalg.solve(src.expand(n, 3, 3), pts2).transpose(1, 2)  # (n, 2, 3)
    full = torch.cat([m, torch.tensor([0, 0, 1], dtype=dt, device=x.device).expand(n, 1, 3)], dim=1)
    inverse = torch.linalg.inv(full)[:, :2]
    noise = 2 * _rand((n, 2, h, w), gen, x) - 1
    dx = reflect_gaussian_smooth(noise[:, 0].to(dt), sigma) * alpha
    dy = reflect_gaussian_smooth(noise[:, 1].to(dt), sigma) * alpha
    yy, xx = torch.meshgrid(torch.arange(h, dtype=dt, device=x.device),
                            torch.arange(w, dtype=dt, device=x.device), indexing="ij")
    qx, qy = xx[None] + dx, yy[None] + dy
    src_x = inverse[:, 0, 0, None, None] * qx + inverse[:, 0, 1, None, None] * qy + inverse[:, 0, 2, None, None]
    src_y = inverse[:, 1, 0, None, None] * qx + inverse[:, 1, 1, None, None] * qy + inverse[:, 1, 2, None, None]
    out = sample_pixels(x, src_x.to(x.dtype), src_y.to(x.dtype), padding_mode="reflection")
    return out.clamp(0, 1)


def pixelate(x: Tensor, severity: int = 1, seed: int = 0) -> Tensor:
    """Resize to 0.6 ... 0.25 of the side and back with PIL's box filter. Deterministic."""
    _prepare(x)
    c = _params("pixelate", severity)
    h, w = x.shape[-2:]
    small_h, small_w = int(_BASE * c * h / _BASE), int(_BASE * c * w / _BASE)
    small = box_resize(x, max(1, small_h), max(1, small_w))
    return box_resize(small, h, w).clamp(0, 1)


def jpeg_compression(x: Tensor, severity: int = 1, seed: int = 0) -> Tensor:
    """JPEG encode-decode at quality 25 ... 7 (kornia's differentiable codec). Deterministic."""
    _prepare(x)
    quality = _params("jpeg_compression", severity)
    q = torch.tensor([float(quality)], dtype=x.dtype, device=x.device)
    return kornia.enhance.jpeg_codec_differentiable(x, q).clamp(0, 1)


#: name -> function(x, severity, seed), in the order of the ImageNet-C paper.
CORRUPTIONS: dict[str, Callable[..., Tensor]] = {
    "gaussian_noise": gaussian_noise,
    "shot_noise": shot_noise,
    "impulse_noise": impulse_noise,
    "defocus_blur": defocus_blur,
    "glass_blur": glass_blur,
    "motion_blur": motion_blur_corruption,
    "zoom_blur": zoom_blur,
    "snow": snow,
    "frost": frost,
    "fog": fog,
    "brightness": brightness,
    "contrast": contrast,
    "elastic_transform": elastic_transform,
    "pixelate": pixelate,
    "jpeg_compression": jpeg_compression,
}


def corrupt(x: Tensor, name: str, severity: int = 1, seed: int = 0) -> Tensor:
    """Apply ImageNet-C corruption ``name`` at ``severity`` (1..5) to x (N, 3, H, W) in [0, 1]."""
    if name not in CORRUPTIONS:
        raise UnknownNameError(f"unknown corruption {name!r}; expected one of {list(CORRUPTIONS)}")
    with torch.no_grad():
        return CORRUPTIONS[name](x, severity, seed)


class Corruption(nn.Module):
    """Module twin of :func:`corrupt` (e.g. inside a transform pipeline).

    ``seed`` fixes the draws of every call, so the same batch is corrupted the
    same way each time.
    """

    def __init__(self, name: str, severity: int = 1, seed: int = 0) -> None:
        super().__init__()
        if name not in CORRUPTIONS:
            raise UnknownNameError(f"unknown corruption {name!r}; expected one of {list(CORRUPTIONS)}")
        _params(name, severity)
        self.name, self.severity, self.seed = name, severity, seed

    def forward(self, x: Tensor) -> Tensor:
        return corrupt(x, self.name, self.severity, self.seed)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, severity={self.severity}, seed={self.seed}"
