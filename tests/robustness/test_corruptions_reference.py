"""neuroreg's ImageNet-C corruptions against reference statistics of the imagecorruptions package.

tests/fixtures/corruption_reference/ holds the exact input images (20 bundled
photographs at 224 px) and, per image, corruption and severity, the mean
absolute change and SSIM to the clean image that ``imagecorruptions`` 1.1.2
produced (experiments/make_corruption_reference.py, run once in a separate
environment). neuroreg's statistics on the same pixels, averaged over the
images, must agree within TOLERANCE: |mae / ref_mae - 1| <= rel and
|ssim - ref_ssim| <= abs, per corruption x severity.
"""

from pathlib import Path

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity as skimage_ssim

from neuroreg.robustness import CORRUPTIONS
from neuroreg.robustness.corruptions_reference import (compare_to_reference, degradation_statistics,
                                                       read_corruption_reference, structural_similarity)

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "corruption_reference"

# (relative MAE tolerance, absolute SSIM tolerance). Deterministic and pixel-exact ports
# agree to well under 1%; random ones differ by their draws (the reference averages 3
# draws per image, 10 for frost); frost is the procedural substitute for the photographs,
# matched on average, and motion blur's one random angle per image moves its statistics.
TOLERANCE = {name: (0.05, 0.02) for name in CORRUPTIONS}
TOLERANCE.update({"frost": (0.10, 0.05), "fog": (0.10, 0.04), "motion_blur": (0.10, 0.04),
                  "snow": (0.10, 0.04), "jpeg_compression": (0.06, 0.02)})
# the full set averages more images and draws, so the random corruptions agree more tightly
TOLERANCE_ALL = {name: (rel * 0.6, ab * 0.6) if name in ("frost", "fog", "motion_blur", "snow") else (rel, ab)
                 for name, (rel, ab) in TOLERANCE.items()}


def _images(n=None):
    with np.load(FIXTURE / "images.npz") as npz:
        images = torch.from_numpy(npz["images"]).permute(0, 3, 1, 2).float() / 255
        names = [str(s) for s in npz["names"]]
    return (images, names) if n is None else (images[:n], names[:n])


@pytest.fixture(scope="module")
def reference():
    return read_corruption_reference(FIXTURE / "reference.csv")


def _check(rows, tolerance):
    bad = []
    for r in rows:
        rel, ab = tolerance[r["corruption"]]
        if abs(r["mae"] / r["ref_mae"] - 1) > rel or abs(r["ssim"] - r["ref_ssim"]) > ab:
            bad.append(f"{r['corruption']} s{r['severity']}: mae {r['mae']:.4f} vs {r['ref_mae']:.4f}, "
                       f"ssim {r['ssim']:.4f} vs {r['ref_ssim']:.4f}")
    assert not bad, "\n".join(bad)


def test_fixture_covers_every_corruption_and_severity(reference):
    _, names = _images()
    assert len(names) == 20
    assert {(n, c, s) for n in names for c in CORRUPTIONS for s in range(1, 6)} == set(reference)


def test_ssim_equals_skimage():
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(2, 3, 31, 44, generator=gen, dtype=torch.float64)
    b = (a + 0.3 * torch.rand(2, 3, 31, 44, generator=gen, dtype=torch.float64) - 0.15).clamp(0, 1)
    ours = structural_similarity(a, b)
    for i in range(2):
        ref = skimage_ssim(a[i].permute(1, 2, 0).numpy(), b[i].permute(1, 2, 0).numpy(), channel_axis=2,
                           data_range=1.0)
        assert float(ours[i]) == pytest.approx(ref, abs=1e-12)
    stats = degradation_statistics(a, b)
    torch.testing.assert_close(stats["mae"], (a - b).abs().mean((1, 2, 3)))


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_statistics_match_imagecorruptions_on_three_images(reference, name):
    images, names = _images(3)
    rows = compare_to_reference(images, names, reference, corruptions=[name], seeds=(0,))
    _check(rows, TOLERANCE)


@pytest.mark.slow
def test_statistics_match_imagecorruptions_on_all_twenty_images(reference):
    images, names = _images()
    rows = compare_to_reference(images, names, reference, seeds=(0,))
    _check(rows, TOLERANCE_ALL)
