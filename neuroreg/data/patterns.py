"""A generated second domain for offline fine-tuning: six families of procedural patterns.

Classes: ``checkerboard``, ``dots``, ``rings``, ``stripes``, ``blobs``,
``zigzag``. Every image draws its own scale, orientation, colours, contrast
and pixel noise from ``(seed, index)``, so item ``i`` is the same image on
every call and the set is far from the natural photographs an ImageNet
network was trained on (a domain shift, as EuroSAT or dermoscopy are).
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any, Literal

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from neuroreg.data.split_data import SplitImageDataModule

__all__ = ["PATTERN_CLASSES", "pattern_image", "PatternDataModule"]

PATTERN_CLASSES = ("checkerboard", "dots", "rings", "stripes", "blobs", "zigzag")


def pattern_image(label: int, size: int = 64, *, seed: int = 0, index: int = 0) -> Tensor:
    """One ``(3, size, size)`` float image in [0, 1] of class ``PATTERN_CLASSES[label]``."""
    if not 0 <= label < len(PATTERN_CLASSES):
        raise ValueError(f"label must be in [0, {len(PATTERN_CLASSES)}); got {label}")
    g = torch.Generator().manual_seed(seed * 1_000_003 + index * 7 + 13)
    u = torch.rand(12, generator=g)
    ax = torch.linspace(-1.0, 1.0, size)
    yy, xx = torch.meshgrid(ax, ax, indexing="ij")
    theta = math.pi * float(u[0])
    xr = xx * math.cos(theta) + yy * math.sin(theta)
    yr = -xx * math.sin(theta) + yy * math.cos(theta)
    freq = 2.0 + 5.0 * float(u[1])                      # cycles per image half-width
    name = PATTERN_CLASSES[label]
    if name == "checkerboard":
        m = (torch.sign(torch.sin(math.pi * freq * xr)) * torch.sign(torch.sin(math.pi * freq * yr)) + 1) / 2
    elif name == "dots":
        n = 6 + int(20 * float(u[2]))
        centres = torch.rand(n, 2, generator=g) * 2 - 1
        radius = 0.06 + 0.1 * float(u[3])
        d2 = (xx[None] - centres[:, 0, None, None]) ** 2 + (yy[None] - centres[:, 1, None, None]) ** 2
        m = (d2.min(0).values < radius ** 2).float()
    elif name == "rings":
        cx, cy = (float(u[2]) - 0.5), (float(u[3]) - 0.5)
        r = torch.sqrt((xx - cx) ** 2 + (yy - cy) ** 2)
        m = (torch.cos(2 * math.pi * freq * r / 2) + 1) / 2
    elif name == "stripes":
        m = (torch.sign(torch.sin(math.pi * freq * xr)) + 1) / 2
    elif name == "blobs":
        coarse = torch.rand(1, 1, 5, 5, generator=g)
        m = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=True)[0, 0]
        m = ((m - m.min()) / (m.max() - m.min() + 1e-6) > 0.5).float()
    else:  # zigzag: a triangle wave bent by a second triangle wave
        tri = torch.abs(((yr * freq / 2) % 1.0) - 0.5) * 2
        m = (torch.sin(math.pi * freq * (xr + 0.4 * tri)) > 0).float()
    fg, bg = torch.rand(3, generator=g), torch.rand(3, generator=g)
    contrast = 0.5 + 0.5 * float(u[4])
    img = bg[:, None, None] + contrast * (fg - bg)[:, None, None] * m[None]
    img = img + 0.04 * torch.randn(3, size, size, generator=g)
    return img.clamp(0, 1)


class PatternDataModule(SplitImageDataModule):
    """Generated pattern images as a fine-tuning domain (offline, no files): ``n_images`` over 6 classes.

    Image ``i`` has class ``i % num_classes`` and name ``pattern_<i>``; the
    split, budget, balancing and ``splits.csv`` work as for the real data
    sets. ``num_classes``: the first so many of :data:`PATTERN_CLASSES`, None
    for all 6.
    ``native_size`` is the generated resolution (64 px, as EuroSAT);
    images are resized to ``image_size`` (default: the model's input size).
    ``augment``: random crops and flips of training images, off by default.
    All other options: :class:`~neuroreg.data.split_data.SplitImageDataModule`.
    """

    def __init__(self, n_images: int = 600, num_classes: int | None = None, native_size: int = 64,
                 augment: bool = False, **kwargs: Any) -> None:
        k = len(PATTERN_CLASSES) if num_classes is None else num_classes
        super().__init__(augment=augment, check_images=False, **kwargs)
        if not 2 <= k <= len(PATTERN_CLASSES):
            raise ValueError(f"num_classes must be in [2, {len(PATTERN_CLASSES)}]; got {k}")
        if n_images < k:
            raise ValueError(f"n_images must be >= num_classes ({k}); got {n_images}")
        if native_size < 8:
            raise ValueError(f"native_size must be >= 8; got {native_size}")
        # The requested count; the num_classes property (AlignedDataModule) reports the built task's.
        self._num_classes: int = k
        self.n_images, self.native_size = n_images, native_size

    def _workers_default(self) -> int:
        return 0

    def _scan(self) -> tuple[pd.DataFrame, list[str]]:
        idx = range(self.n_images)
        table = pd.DataFrame({"image": [f"pattern_{i:05d}" for i in idx],
                              "label": [i % self._num_classes for i in idx], "path": ""})
        return table, list(PATTERN_CLASSES[: self._num_classes])

    def _loader(self) -> "_PatternLoader":
        return _PatternLoader(tuple(int(v) for v in self._built_table()["label"]), self.native_size, self.seed)


class _PatternLoader:
    """Row -> generated image (picklable for DataLoader workers)."""

    def __init__(self, labels: tuple[int, ...], size: int, seed: int) -> None:
        self.labels, self.size, self.seed = labels, size, seed

    def __call__(self, row: int) -> Tensor:
        return pattern_image(self.labels[row], self.size, seed=self.seed, index=row)

    def fingerprint(self) -> str:
        """What the generated images depend on (for caches keyed by the data, e.g. the forgetting report's)."""
        text = json.dumps({"generator": "pattern_image", "labels": self.labels, "size": self.size, "seed": self.seed})
        return hashlib.sha256(text.encode()).hexdigest()
