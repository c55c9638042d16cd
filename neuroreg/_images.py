"""Image helpers shared by feature extraction and the data loaders: folders of images, uint8 -> float."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

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


def images_to_tensor(images) -> torch.Tensor:
    """uint8 ``(n, H, W, 3)`` array/tensor or float ``(n, 3, H, W)`` -> float32 ``(n, 3, H, W)`` in [0, 1]."""
    x = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(images))
    if x.ndim != 4:
        raise ShapeError(f"images must be 4-D; got shape {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        if x.shape[-1] not in (1, 3):
            raise ShapeError(f"uint8 images must be (n, H, W, 3); got shape {tuple(x.shape)}")
        return x.permute(0, 3, 1, 2).float().div_(255.0).contiguous()
    return x.float()
