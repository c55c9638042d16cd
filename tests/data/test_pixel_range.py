"""The one pixel-range check and its two rules: [0, 1] only (attacks) and [0, 1] or normalised (extraction)."""

import itertools

import numpy as np
import pytest
import torch

from neuroreg._utils.images import IMAGENET_MEAN, IMAGENET_STD, PIXEL_ATOL, check_pixel_range
from neuroreg.errors import ShapeError
from neuroreg.robustness import check_images


def _reference_refuses(lo: float, hi: float, rule: str) -> bool:
    """The rules as written in the docs, one image at a time."""
    above, below = hi > 1 + PIXEL_ATOL, lo < -PIXEL_ATOL
    return (above or below) if rule == "unit" else (above and not below)


EDGES = [-255.0, -2.1, -1e-3, -PIXEL_ATOL / 2, 0.0, 0.3, 1.0, 1 + PIXEL_ATOL / 2, 1.001, 2.6, 255.0]


@pytest.mark.parametrize("rule", ["unit", "unit_or_normalized"])
def test_each_image_is_judged_as_the_rule_says(rule):
    pairs = [(lo, hi) for lo, hi in itertools.product(EDGES, EDGES) if lo <= hi]
    for lo, hi in pairs:
        refused = _reference_refuses(lo, hi, rule)
        lo_t, hi_t = torch.tensor([0.2, lo]), torch.tensor([0.8, hi])   # image 0 always in range
        if refused:
            with pytest.raises(ValueError, match=r"image 1 has"):
                check_pixel_range("x", lo_t, hi_t, rule=rule, item="image")
        else:
            check_pixel_range("x", lo_t, hi_t, rule=rule, item="image")


def test_normalised_images_pass_extraction_but_not_attacks():
    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    normalised = (x - mean) / std
    lo, hi = normalised.flatten(1).aminmax(dim=1)
    assert float(lo.min()) < 0 and float(hi.max()) > 1            # both sides of [0, 1] are left
    check_pixel_range("stimuli", lo, hi)                          # the default: unit_or_normalized
    with pytest.raises(ValueError, match=r"x must be float images with values in \[0, 1\]; image 0 has values in "
                                         r"\[-.*\] \(3 such image\(s\) from image 0 on\); values below 0"):
        check_images("x", normalised)


def test_0_255_floats_are_refused_by_both_rules_naming_the_first_one():
    x = torch.rand(5, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    x[2] *= 255
    x[4] *= 255
    lo, hi = x.flatten(1).aminmax(dim=1)
    names = [f"img{i}.png" for i in range(10, 15)]
    expected_range = rf"\[{float(lo[2]):.4g}, {float(hi[2]):.4g}\]"
    with pytest.raises(ValueError, match=r"stimuli must be float images with values in \[0, 1\]; stimulus 12 "
                                         rf"\(img12.png\) has values in {expected_range}, pixels on the 0..255 "
                                         r"scale \(2 such image\(s\) from stimulus 10 on\): divide them by 255"):
        check_pixel_range("stimuli", lo, hi, first_index=10, names=[None] * 10 + names)
    with pytest.raises(ValueError, match=rf"x must be float images .* image 2 has values in {expected_range} .*"
                                         r"values above 1: pixels on the 0..255 scale\? divide them by 255"):
        check_images("x", x)


def test_rounding_slack_and_nan_pass():
    ok = torch.tensor([[0.0, 1.0], [-PIXEL_ATOL / 2, 1 + PIXEL_ATOL / 2]])
    for rule in ("unit", "unit_or_normalized"):
        check_pixel_range("x", ok[:, 0], ok[:, 1], rule=rule)
        check_pixel_range("x", torch.tensor([np.nan]), torch.tensor([np.nan]), rule=rule)
    check_images("x", torch.full((1, 3, 2, 2), 1 + PIXEL_ATOL / 2))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        check_images("x", torch.full((1, 3, 2, 2), 1.01), atol=1e-3)
    check_images("x", torch.full((1, 3, 2, 2), 1.01), atol=0.02)   # the caller's slack is used


def test_bad_rule_or_shapes_are_named():
    with pytest.raises(ValueError, match=r"rule must be one of \('unit', 'unit_or_normalized'\); got 'strict'"):
        check_pixel_range("x", torch.zeros(1), torch.ones(1), rule="strict")
    with pytest.raises(ShapeError, match=r"lo and hi must be \(n,\) .* got shapes \(2,\) and \(3,\)"):
        check_pixel_range("x", torch.zeros(2), torch.ones(3))
