"""Foveated retina warp: analytic eccentricity map, identity limit, fixation, gradients."""

import math

import pytest
import torch

from neuroreg.models import Retina, foveate, foveation_grid


def _ramp(size):
    coords = (torch.arange(size, dtype=torch.float64) * 2 + 1) / size - 1     # grid_sample pixel centres
    return coords.expand(1, 1, size, size).clone()                             # value = x coordinate


def test_samples_follow_the_cortical_magnification_formula():
    size, e2, radius = 64, 0.2, math.sqrt(2)
    out = foveate(_ramp(size), e2=e2)
    # along the centre row y is ~0, so the sampled value is the eccentricity E(u) (signed)
    row = size // 2
    u = abs((2 * 40 + 1) / size - 1)
    y = (2 * row + 1) / size - 1
    r = math.hypot(u, y)
    expected = e2 * math.expm1(r / radius * math.log1p(radius / e2)) * u / r
    assert float(out[0, 0, row, 40]) == pytest.approx(expected, rel=1e-4)


def test_fovea_is_magnified_and_periphery_compressed():
    grid = foveation_grid(65, 65, e2=0.1)
    centre_step = float(grid[0, 32, 33, 0] - grid[0, 32, 32, 0])
    edge_step = float(grid[0, 32, 64, 0] - grid[0, 32, 63, 0])
    assert centre_step < 2 / 65 < edge_step
    assert centre_step == pytest.approx(2 / 65 * 0.1 * math.log1p(math.sqrt(2) / 0.1) / math.sqrt(2), rel=0.05)


def test_large_e2_is_the_identity():
    x = torch.rand(2, 3, 16, 16, dtype=torch.float64)
    torch.testing.assert_close(foveate(x, e2=1e7), x, rtol=1e-4, atol=1e-4)


def test_fixation_point_lands_in_the_output_centre():
    x = _ramp(33)
    out = foveate(x, fixation=torch.tensor([[0.5, 0.0]], dtype=torch.float64), e2=0.1)
    assert float(out[0, 0, 16, 16]) == pytest.approx(0.5, abs=1e-6)


def test_differentiable_for_images_and_fixation():
    x = torch.rand(1, 1, 6, 6, dtype=torch.float64, requires_grad=True)
    fix = torch.tensor([[0.1, -0.2]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, f: foveate(a, f, e2=0.3), (x, fix))


def test_module_and_errors():
    assert Retina(e2=0.3)(torch.rand(2, 3, 8, 8)).shape == (2, 3, 8, 8)
    assert Retina(output_size=(4, 5))(torch.rand(1, 3, 8, 8)).shape == (1, 3, 4, 5)
    with pytest.raises(ValueError, match="e2"):
        Retina(e2=0)
    with pytest.raises(ValueError, match="fixation"):
        foveate(torch.rand(1, 3, 8, 8), fixation=(0.0, 0.0, 0.0))
