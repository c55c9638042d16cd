"""Image helpers shared by feature extraction and the data loaders: folders of images, uint8 -> float."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from neuroreg.errors import ShapeError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

#: ImageNet per-channel pixel statistics (RGB, images in [0, 1]): timm's and torchvision's defaults.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_INTERPOLATIONS = ("bilinear", "bicubic", "nearest")


def resize_images(x: torch.Tensor, size: int | tuple[int, int], *, interpolation: str = "bilinear",
                  clamp: bool = True) -> torch.Tensor:
    """The one image resize: ``(..., C, H, W)`` -> ``(..., C, S, S)`` (or ``size=(H', W')``), antialiased.

    interpolation: "bilinear", "bicubic" or "nearest" (another name falls back to
    bilinear, as timm configs may name PIL-only filters); clamp: clip to [0, 1]
    afterwards (bicubic overshoots). Computed in float32, returned in ``x``'s dtype;
    a no-op when ``x`` is already at ``size``.
    """
    hw = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if min(hw) < 1:
        raise ValueError(f"size must be a positive number of pixels; got {size}")
    if x.ndim < 3:
        raise ShapeError(f"images must be (..., C, H, W); got shape {tuple(x.shape)}")
    if tuple(x.shape[-2:]) == hw:
        return x
    lead = x.shape[:-3]
    flat = x.reshape(-1, *x.shape[-3:]).float()
    mode = interpolation if interpolation in _INTERPOLATIONS else "bilinear"
    kw = {"align_corners": False, "antialias": True} if mode != "nearest" else {}
    out = F.interpolate(flat, size=hw, mode=mode, **kw)
    if clamp:
        out = out.clamp_(0, 1)
    return out.reshape(*lead, *out.shape[-3:]).to(x.dtype)


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files under ``folder`` (recursive), sorted by path; clear errors for a missing or empty folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"stimulus folder does not exist: {folder}")
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not paths:
        raise ValueError(f"stimulus folder {folder} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    return paths


def images_to_tensor(images, size: int | None = None) -> torch.Tensor:
    """uint8 ``(n, H, W, 3)`` array/tensor or float ``(n, 3, H, W)`` -> float32 ``(n, 3, H, W)`` in [0, 1].

    size: resize to ``size x size`` (bilinear, antialiased, clamped to [0, 1]); None keeps the native size.
    """
    x = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(images))
    if x.ndim != 4:
        raise ShapeError(f"images must be 4-D; got shape {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        if x.shape[-1] not in (1, 3):
            raise ShapeError(f"uint8 images must be (n, H, W, 3); got shape {tuple(x.shape)}")
        x = x.permute(0, 3, 1, 2).float().div_(255.0).contiguous()
    else:
        x = x.float()
    if size is not None:
        x = resize_images(x, int(size))
    return x


#: How far a float image may stray outside [0, 1] (rounding) before it counts as out of range.
PIXEL_ATOL = 1e-6

#: The rules of :func:`check_pixel_range`. ``"unit"``: every value in [0, 1] (attacks clip
#: adversarial images to that box, so the model must see raw pixels). ``"unit_or_normalized"``:
#: [0, 1], or already normalised images (any negative value); only the 0..255 scale is refused
#: (feature extraction, where a reference network's own inputs may be normalised already).
PIXEL_RULES = ("unit", "unit_or_normalized")


def check_pixel_range(name: str, lo: torch.Tensor, hi: torch.Tensor, *, rule: str = "unit_or_normalized",
                      first_index: int = 0, names=None, item: str = "stimulus", atol: float = PIXEL_ATOL) -> None:
    """Refuse images whose pixel range breaks ``rule`` (see :data:`PIXEL_RULES`), naming the first one.

    An image with values above 1 and none below 0 is taken for 0..255 pixels (a
    forgotten division by 255), which a network would otherwise read silently as a
    very bright image; both rules refuse it. ``"unit"`` also refuses values below 0.

    ``name``: the argument the images came in, for the message. ``lo``, ``hi``:
    ``(n,)`` minimum and maximum of each image (NaN passes: finiteness is checked
    apart). ``first_index``: the index of ``lo[0]`` among all images; ``names``:
    optional image names indexed like the images; ``item``: what one image is called
    in the message ("stimulus", "image"); ``atol``: rounding slack outside [0, 1].
    """
    if rule not in PIXEL_RULES:
        raise ValueError(f"rule must be one of {PIXEL_RULES}; got {rule!r}")
    if lo.shape != hi.shape or lo.ndim != 1:
        raise ShapeError(f"lo and hi must be (n,) per-image minima and maxima; got shapes "
                         f"{tuple(lo.shape)} and {tuple(hi.shape)}")
    above, below = hi > 1 + atol, lo < -atol
    bad = ((above | below) if rule == "unit" else (above & ~below)).nonzero().flatten()
    if not len(bad):
        return
    i = int(bad[0])
    index = first_index + i
    which = f"{item} {index}" + (f" ({names[index]!s})" if names is not None else "")
    seen = f"{which} has values in [{float(lo[i]):.4g}, {float(hi[i]):.4g}]"
    count = f"{len(bad)} such image(s) from {item} {first_index} on"
    if rule == "unit":
        fix = ("values below 0: already normalised? pass raw pixels in [0, 1]" if bool(below[i])
               else "values above 1: pixels on the 0..255 scale? divide them by 255")
        raise ValueError(f"{name} must be float images with values in [0, 1]; {seen} ({count}); {fix}")
    raise ValueError(f"{name} must be float images with values in [0, 1]; {seen}, pixels on the 0..255 scale "
                     f"({count}): divide them by 255, or pass uint8 arrays (n, H, W, 3)")
