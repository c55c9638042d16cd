"""How strongly a corruption degrades images, and neuroreg's corruptions side by side with a reference.

The calibration measure of neuroreg's ImageNet-C corruptions: per image, the
mean absolute change |corrupted - clean| (images in [0, 1]) and the SSIM to
the clean image. A reference table of these statistics, produced once from
the ``imagecorruptions`` package on fixed images
(experiments/make_corruption_reference.py), is compared with neuroreg's
statistics on the same pixels by :func:`compare_to_reference`.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from torch import Tensor

from neuroreg.errors import ShapeError
from neuroreg.robustness.corruptions import CORRUPTIONS, corrupt, load_frost_images

__all__ = ["structural_similarity", "degradation_statistics", "read_corruption_reference",
           "compare_to_reference"]


def structural_similarity(clean: Tensor, corrupted: Tensor, *, window: int = 7) -> Tensor:
    """Mean SSIM per image, (N,), of images (N, C, H, W) in [0, 1].

    The definition of scikit-image's ``structural_similarity`` defaults
    (data_range 1, ``window`` x ``window`` uniform window, sample covariances,
    K1 = 0.01, K2 = 0.03, windows that fit inside the image, mean over
    channels), computed in float64.
    """
    if clean.shape != corrupted.shape or clean.ndim != 4:
        raise ShapeError(f"clean and corrupted must both be (N, C, H, W); got {tuple(clean.shape)} and "
                         f"{tuple(corrupted.shape)}")
    if min(clean.shape[-2:]) < window:
        raise ShapeError(f"images must be at least {window} px on each side for SSIM; got {tuple(clean.shape)}")
    a, b = clean.double(), corrupted.double()
    n_pix = window * window
    cov = n_pix / (n_pix - 1)

    def mean(t):  # window means by running sums, separable (far cheaper than avg_pool2d)
        for dim in (-2, -1):
            c = torch.cat([torch.zeros_like(t.narrow(dim, 0, 1)), t.cumsum(dim)], dim=dim)
            t = c.narrow(dim, window, c.shape[dim] - window) - c.narrow(dim, 0, c.shape[dim] - window)
        return t / n_pix

    ma, mb = mean(a), mean(b)
    va = cov * (mean(a * a) - ma * ma)
    vb = cov * (mean(b * b) - mb * mb)
    vab = cov * (mean(a * b) - ma * mb)
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = (2 * ma * mb + c1) * (2 * vab + c2) / ((ma * ma + mb * mb + c1) * (va + vb + c2))
    return s.flatten(1).mean(1)


def degradation_statistics(clean: Tensor, corrupted: Tensor) -> dict[str, Tensor]:
    """{"mae": (N,), "ssim": (N,)}: mean absolute change and SSIM of each corrupted image to its clean one."""
    if clean.shape != corrupted.shape:
        raise ShapeError(f"clean and corrupted must have one shape; got {tuple(clean.shape)} and "
                         f"{tuple(corrupted.shape)}")
    mae = (corrupted.double() - clean.double()).abs().flatten(1).mean(1)
    return {"mae": mae, "ssim": structural_similarity(clean, corrupted)}


def read_corruption_reference(path: str | Path) -> dict[tuple[str, str, int], tuple[float, float]]:
    """{(image, corruption, severity): (mae, ssim)} from a reference CSV ('#' lines are comments)."""
    path = Path(path)
    with open(path, newline="") as f:
        rows = list(csv.DictReader(line for line in f if not line.startswith("#")))
    need = {"image", "corruption", "severity", "mae", "ssim"}
    if not rows or not need <= set(rows[0]):
        raise ValueError(f"{path}: expected columns {sorted(need)}; got {sorted(rows[0]) if rows else 'no rows'}")
    return {(r["image"], r["corruption"], int(r["severity"])): (float(r["mae"]), float(r["ssim"])) for r in rows}


def compare_to_reference(images: Tensor, names: Sequence[str],
                         reference: dict[tuple[str, str, int], tuple[float, float]], *,
                         corruptions: Iterable[str] | None = None, severities: Iterable[int] = (1, 2, 3, 4, 5),
                         seeds: Sequence[int] = (0, 1), frost_images=None) -> list[dict]:
    """neuroreg's degradation statistics next to the reference's, per corruption x severity.

    images: (N, 3, H, W) in [0, 1], the reference's input images; names: their
    ids in the reference. Statistics are averaged over ``seeds`` (draws of the
    corruption) and then over images. Returns rows with corruption, severity,
    n_images, ref_mae, mae, ref_ssim, ssim.
    """
    if images.ndim != 4 or images.shape[0] != len(names):
        raise ShapeError(f"images must be (N, 3, H, W) with N = len(names) = {len(names)}; got "
                         f"{tuple(images.shape)}")
    if not seeds:
        raise ValueError("seeds must name at least one seed")
    names = list(names)
    if isinstance(frost_images, (str, Path)):
        frost_images = load_frost_images(frost_images)
    rows = []
    for c in (list(CORRUPTIONS) if corruptions is None else list(corruptions)):
        for s in severities:
            missing = [n for n in names if (n, c, s) not in reference]
            if missing:
                raise KeyError(f"the reference has no ({missing[0]!r}, {c!r}, {s}) entry")
            ref = np.array([reference[(n, c, s)] for n in names])
            stats = [degradation_statistics(images, corrupt(images, c, s, seed=k, frost_images=frost_images))
                     for k in seeds]
            mae = torch.stack([st["mae"] for st in stats]).mean(0)
            ssim = torch.stack([st["ssim"] for st in stats]).mean(0)
            rows.append(dict(corruption=c, severity=int(s), n_images=len(names),
                             ref_mae=float(ref[:, 0].mean()), mae=float(mae.mean()),
                             ref_ssim=float(ref[:, 1].mean()), ssim=float(ssim.mean())))
    return rows
