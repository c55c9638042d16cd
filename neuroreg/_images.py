"""Image helpers shared by feature extraction and the data loaders: folders of images, uint8 -> float."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from neuroreg.errors import ShapeError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


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
        if int(size) < 1:
            raise ValueError(f"size must be a positive number of pixels; got {size}")
        x = F.interpolate(x, size=(int(size), int(size)), mode="bilinear", align_corners=False,
                          antialias=True).clamp_(0, 1)
    return x
