"""The 15 ImageNet-C corruptions (Hendrycks & Dietterich 2019), batched in torch.

Severity parameters are the published tables of the ``imagenet_c`` package
(hendrycks/robustness, ImageNet-C/imagenet_c/imagenet_c/corruptions.py), the
same in the maintained ``imagecorruptions`` port, except the elastic
transform, whose port-specific table (any image size) is used. The
implementation is ours: torch and kornia on the images' device, one call per
batch, every random draw from a ``torch.Generator`` seeded by ``seed``.
Random draws do not depend on the severity, so the five severities of one
seed share their noise, angles and textures and differ only in the parameters.

Calibration: on 20 fixed photographs the mean absolute change and the SSIM to
the clean image match ``imagecorruptions`` 1.1.2 for every corruption and
severity (tests/robustness/test_corruptions_reference.py, docs/robustness.md).

Images are (N, 3, H, W) RGB in [0, 1]; outputs too. The tables are defined
for 224-px images; at other sizes lengths in pixels (blur radii and sigmas,
shuffle distances, elastic displacements) scale with min(H, W) / 224, and the
snow, frost and fog layers are drawn at the 224-px scale and resized.

Deviations from the original, all documented where they occur: frost uses a
procedural texture calibrated to the frost photographs unless the photographs
are given (``frost_images``); glass blur reuses a few shuffle chains per
batch (the original draws one per image); JPEG uses kornia's differentiable
codec instead of libjpeg.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Sequence

import kornia
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from neuroreg._utils.images import resize_images
from neuroreg.errors import ShapeError, UnknownNameError
from neuroreg.robustness._filters import (box_resize, convolve, disk_kernel, gaussian_blur, motion_blur,
                                          nearest_resize, reflect_gaussian_smooth, sample_pixels, zoom)
from neuroreg.robustness._textures import frost_texture, plasma_fractal
from neuroreg.robustness.wrapper import check_images

__all__ = ["CORRUPTIONS", "SEVERITY_PARAMS", "corrupt", "Corruption", "load_frost_images",
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
    # displacement gain alpha of the imagecorruptions port (250 x 0.05 ... 0.12)
    "elastic_transform": (250 * 0.05, 250 * 0.065, 250 * 0.085, 250 * 0.1, 250 * 0.12),
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
    """A layer drawn at the 224-px scale (snow, frost, fog), resized to the images' size; not clipped."""
    return resize_images(layer, (int(x.shape[-2]), int(x.shape[-1])), interpolation="bilinear", clamp=False)


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


def _glass_index(h: int, w: int, delta: int, iterations: int, rng: np.random.Generator) -> np.ndarray:
    """The pixel shuffle of ImageNet-C's glass blur, (h * w,) source indices.

    The original walks from the bottom-right to the top-left interior pixel and
    "swaps" each with a random neighbour at offsets [-delta, delta). Its swap is
    a tuple assignment of numpy views, so it copies the neighbour into the pixel
    and leaves the neighbour unchanged; copies chain, so pixels can travel far
    and some are duplicated. That is the corruption ImageNet-C (and the
    ``imagecorruptions`` port) made, so it is reproduced here. The chain depends
    only on the random draws, not on pixel values: it is run once on indices and
    applied to all channels with one gather.
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
            index[a] = index[b]
    return np.asarray(index, dtype=np.int64)


def glass_blur(x: Tensor, severity: int = 1, seed: int = 0, n_permutations: int = 4) -> Tensor:
    """Blur, shuffle pixels locally by a chain of random neighbour copies, blur again.

    The blurred image is quantised to 8 bits before the shuffle, as in the
    original. The copy chain is sequential by nature, so it is computed on
    indices on the CPU (tens of ms per 224-px shuffle); to keep batches cheap,
    ``n_permutations`` chains are drawn per call and image i uses chain
    i mod n_permutations (the original draws one per image).
    """
    _prepare(x)
    sigma, delta, iterations = _params("glass_blur", severity)
    s = _scale(x)
    sigma, delta = sigma * s, max(1, round(delta * s))
    n, c, h, w = x.shape
    rng = np.random.default_rng(int(seed))
    perms = [_glass_index(h, w, delta, iterations, rng) for _ in range(min(n, n_permutations))]
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
    layer = torch.where(layer < threshold, torch.zeros_like(layer), layer).clamp(0, 1)
    layer = motion_blur(layer, radius, sigma, angle)
    layer = _resize_to(torch.round(layer * 255) / 255, x)  # the original rounds the layer to 8 bits
    gray = kornia.color.rgb_to_grayscale(x)  # 0.299 R + 0.587 G + 0.114 B, as OpenCV
    x = weight * x + (1 - weight) * torch.maximum(x, gray * 1.5 + 0.5)
    return (x + layer + layer.flip(-1, -2)).clamp(0, 1)


_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
_ORIGINAL_FROST = ["frost1", "frost2", "frost3", "frost4", "frost5", "frost6"]


def load_frost_images(path: str | Path | Sequence[str | Path]) -> list[Tensor]:
    """Frost photographs for :func:`frost`, each (3, H, W) float32 in [0, 1].

    ``path``: a folder of images or a list of image files. Given the original
    ImageNet-C set (frost1.png ... frost6.jpg, shipped with ``imagenet_c`` and
    ``imagecorruptions``), only frost1-5 are kept: the original draws its photo
    with ``randint(5)`` and never uses the sixth.
    """
    if isinstance(path, (str, Path)):
        folder = Path(path)
        if not folder.exists():
            raise FileNotFoundError(f"frost_images: {folder} does not exist")
        files = ([folder] if folder.is_file() else
                 sorted(p for p in folder.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES))
        if [p.stem for p in files] == _ORIGINAL_FROST:
            files = files[:5]
    else:
        files = [Path(p) for p in path]
    if not files:
        raise FileNotFoundError(f"frost_images: no image files ({', '.join(_IMAGE_SUFFIXES)}) in {path}")
    photos = []
    for f in files:
        with Image.open(f) as img:
            photos.append(torch.from_numpy(np.asarray(img.convert("RGB")).copy()).permute(2, 0, 1).float() / 255)
    return photos


def _photo_frost(photos: Sequence[Tensor], n: int, height: int, width: int, gen: torch.Generator,
                 like: Tensor) -> Tensor:
    """(n, 3, height, width) random crops of the photos, each rescaled as the original does:
    1.1 x the factor that makes it cover the image (1.1 when it already does), bicubic, 8 bits."""
    rescaled = []
    for p in photos:
        if p.ndim != 3 or p.shape[0] != 3:
            raise ShapeError(f"frost_images must be RGB images (3, H, W); got shape {tuple(p.shape)}")
        ph, pw = p.shape[-2:]
        factor = 1.1 * max(1.0, height / ph, width / pw)
        size = (math.ceil(ph * factor), math.ceil(pw * factor))
        # Not resize_images: the original (imagecorruptions) enlarges the photographs with OpenCV's
        # INTER_CUBIC (a = -0.75, no antialiasing), which is this plain bicubic; the antialiased one
        # that resize_images uses is PIL's kernel (a = -0.5).
        big = F.interpolate(p[None].to(device=like.device, dtype=torch.float32), size=size, mode="bicubic",
                            align_corners=False)
        rescaled.append((torch.round(big.clamp(0, 1) * 255) / 255).to(like.dtype)[0])
    which = torch.randint(len(rescaled), (n,), generator=gen, device=like.device).tolist()
    u = _rand((n, 2), gen, like).tolist()
    crops = []
    for k, (uy, ux) in zip(which, u):
        big = rescaled[k]
        top = int(uy * max(1, big.shape[-2] - height))
        left = int(ux * max(1, big.shape[-1] - width))
        crops.append(big[:, top:top + height, left:left + width])
    return torch.stack(crops)


def frost(x: Tensor, severity: int = 1, seed: int = 0,
          images: str | Path | Sequence[Tensor] | None = None) -> Tensor:
    """a * image + b * frost layer, (a, b) from (1, 0.4) to (0.6, 0.75).

    ImageNet-C blends random crops of frost photographs, which neuroreg does not
    ship. By default a seeded procedural frost (``_textures.frost_texture``)
    calibrated to the photographs' degradation statistics is used; accuracies
    on it are close to, but not the same as, ImageNet-C's. ``images`` (a folder,
    see :func:`load_frost_images`, or a list of (3, H, W) tensors in [0, 1])
    uses the original photographs instead, cropped as the original does.
    """
    _prepare(x)
    a, b = _params("frost", severity)
    bh, bw = _base_shape(x)
    gen = _generator(seed, x)
    if images is None:
        layer = frost_texture(x.shape[0], bh, bw, gen, x)
    else:
        photos = load_frost_images(images) if isinstance(images, (str, Path)) else list(images)
        if not photos:
            raise ValueError("images must hold at least one frost photograph; got none")
        layer = _photo_frost(photos, x.shape[0], bh, bw, gen, x)
    return (a * x + b * _resize_to(layer, x)).clamp(0, 1)


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
    """Smooth random displacement field (Simard et al. 2003), as the ``imagecorruptions`` port.

    Each displacement component is uniform noise in [-0.005 H, 0.005 H],
    Gaussian-smoothed with sigma 0.01 x the side (scipy's reflect borders,
    truncate 3) and scaled by alpha = 12.5 ... 30; the image is read bilinearly
    at the displaced positions with mirrored borders. At 224 px that moves
    pixels by about 1 ... 2.4 px (sd); at other sizes displacements scale with
    min(H, W) / 224.
    """
    _prepare(x)
    alpha = _params("elastic_transform", severity)
    s = _scale(x)
    gen = _generator(seed, x)
    n, _, h, w = x.shape
    dt = torch.float64
    noise = (2 * _rand((n, 2, h, w), gen, x) - 1).to(dt)
    amplitude = 0.005 * h * s * alpha
    sigma = (0.01 * h, 0.01 * w)
    dx = reflect_gaussian_smooth(noise[:, 0], sigma) * amplitude
    dy = reflect_gaussian_smooth(noise[:, 1], sigma) * amplitude
    yy, xx = torch.meshgrid(torch.arange(h, dtype=dt, device=x.device),
                            torch.arange(w, dtype=dt, device=x.device), indexing="ij")
    out = sample_pixels(x, (xx[None] + dx).to(x.dtype), (yy[None] + dy).to(x.dtype), padding_mode="reflection",
                        half_sample_reflect=True)
    return out.clamp(0, 1)


def pixelate(x: Tensor, severity: int = 1, seed: int = 0) -> Tensor:
    """Shrink to 0.6 ... 0.25 of the side with PIL's box filter, enlarge back with
    nearest neighbours (as the ``imagecorruptions`` port). Deterministic."""
    _prepare(x)
    c = _params("pixelate", severity)
    h, w = x.shape[-2:]
    # PIL's BOX down and NEAREST up, as ImageNet-C pixelates; resize_images has neither filter's pixel grid
    small = box_resize(x, max(1, int(h * c)), max(1, int(w * c)))
    return nearest_resize(small, h, w).clamp(0, 1)


#: Quality given to kornia's differentiable JPEG codec per severity, so that it degrades images as
#: libjpeg does at the published qualities 25, 18, 15, 10, 7: its rounding is a smooth approximation
#: and at the same quality it changes images about 9% less (measured against imagecorruptions on
#: the reference images; see docs/robustness.md).
JPEG_CODEC_QUALITY = (20.0, 14.6, 12.1, 8.0, 5.25)


def jpeg_compression(x: Tensor, severity: int = 1, seed: int = 0) -> Tensor:
    """JPEG encode-decode at published quality 25 ... 7 (kornia's differentiable codec at the
    calibrated qualities :data:`JPEG_CODEC_QUALITY`). Deterministic."""
    _prepare(x)
    _params("jpeg_compression", severity)
    quality = JPEG_CODEC_QUALITY[severity - 1]
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


def corrupt(x: Tensor, name: str, severity: int = 1, seed: int = 0, *,
            frost_images: str | Path | Sequence[Tensor] | None = None) -> Tensor:
    """Apply ImageNet-C corruption ``name`` at ``severity`` (1..5) to x (N, 3, H, W) in [0, 1].

    ``frost_images``: the original frost photographs (folder or loaded tensors,
    see :func:`load_frost_images`) for ``"frost"``; None uses the procedural frost.
    """
    if name not in CORRUPTIONS:
        raise UnknownNameError(f"unknown corruption {name!r}; expected one of {list(CORRUPTIONS)}")
    with torch.no_grad():
        if name == "frost":
            return frost(x, severity, seed, images=frost_images)
        return CORRUPTIONS[name](x, severity, seed)


class Corruption(nn.Module):
    """Module twin of :func:`corrupt` (e.g. inside a transform pipeline).

    ``seed`` fixes the draws of every call, so the same batch is corrupted the
    same way each time. A ``frost_images`` folder is read once, here.
    """

    def __init__(self, name: str, severity: int = 1, seed: int = 0,
                 frost_images: str | Path | Sequence[Tensor] | None = None) -> None:
        super().__init__()
        if name not in CORRUPTIONS:
            raise UnknownNameError(f"unknown corruption {name!r}; expected one of {list(CORRUPTIONS)}")
        _params(name, severity)
        self.name, self.severity, self.seed = name, severity, seed
        self.frost_images = (load_frost_images(frost_images) if isinstance(frost_images, (str, Path))
                             else frost_images)

    def forward(self, x: Tensor) -> Tensor:
        return corrupt(x, self.name, self.severity, self.seed, frost_images=self.frost_images)

    def extra_repr(self) -> str:
        frost = ", frost_images=photographs" if self.frost_images is not None else ""
        return f"name={self.name!r}, severity={self.severity}, seed={self.seed}{frost}"
