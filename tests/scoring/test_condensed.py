"""Condensed <-> square RDM conversions against scipy's squareform."""

import numpy as np
import pytest
import torch
from scipy.spatial.distance import pdist, squareform

from neuroreg._utils.condensed import condense, n_from_condensed, square
from neuroreg.errors import ShapeError


def _rdms(k=3, n=7, seed=0):
    rng = np.random.default_rng(seed)
    return np.stack([squareform(pdist(rng.normal(size=(n, 4)))) for _ in range(k)])


def test_numpy_matches_squareform_both_ways():
    d = _rdms()
    v = condense(d)
    np.testing.assert_array_equal(v, np.stack([squareform(m, checks=False) for m in d]))
    np.testing.assert_array_equal(square(v), d)
    np.testing.assert_array_equal(square(v[0]), squareform(v[0]))


def test_torch_keeps_dtype_device_and_grad():
    d = torch.tensor(_rdms(), dtype=torch.float32, requires_grad=True)
    v = condense(d)
    assert v.dtype == torch.float32
    np.testing.assert_allclose(v.detach().numpy(), condense(_rdms()), rtol=1e-6)
    back = square(v)
    back.sum().backward()
    assert d.grad is not None
    np.testing.assert_allclose(back.detach().numpy(), _rdms(), rtol=1e-6)


def test_sizes_and_errors():
    assert n_from_condensed(21) == 7 and n_from_condensed(20) is None
    with pytest.raises(ShapeError, match="20 is not such a number"):
        square(np.zeros(20))
    with pytest.raises(ShapeError, match="must be square"):
        condense(np.zeros((3, 4)))
