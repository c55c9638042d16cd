"""rdm(): equal to scipy.spatial.distance, chunking, array types, gradients and bad input."""

import numpy as np
import pytest
import torch
from scipy.spatial.distance import pdist, squareform

from neuroreg.errors import NonFiniteError, ShapeError, UnknownNameError
from neuroreg.scoring import RDM_METRICS, condense, rdm, square


@pytest.fixture(scope="module")
def x():
    rng = np.random.default_rng(0)
    # a common offset and unequal scales stress the Gram-based formulas
    return rng.normal(size=(40, 523)) * rng.uniform(0.5, 3, size=(40, 1)) + 5.0


@pytest.mark.parametrize("metric", RDM_METRICS)
def test_numpy_matches_scipy_pdist(x, metric):
    ref = squareform(pdist(x, metric))
    out = rdm(x, metric)
    assert isinstance(out, np.ndarray) and out.dtype == np.float64 and out.shape == (40, 40)
    np.testing.assert_allclose(out, ref, atol=1e-6 if metric != "sqeuclidean" else 1e-6 * ref.max(), rtol=0)
    np.testing.assert_array_equal(np.diag(out), 0.0)
    np.testing.assert_array_equal(out, out.T)


@pytest.mark.parametrize("metric", RDM_METRICS)
def test_chunking_does_not_change_the_result(x, metric):
    ref = squareform(pdist(x, metric))
    out = rdm(x, metric, chunk_size=37)
    np.testing.assert_allclose(out, ref, atol=1e-6 * max(1.0, ref.max()))


@pytest.mark.parametrize("metric", RDM_METRICS)
def test_torch_in_torch_out_and_grad_path(x, metric):
    t = torch.from_numpy(x)
    ref = squareform(pdist(x, metric))
    out = rdm(t, metric)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-6 * max(1.0, ref.max()))
    t32 = t.float().requires_grad_(True)
    out32 = rdm(t32, metric, chunk_size=100)          # differentiable torch path
    assert out32.dtype == torch.float32 and out32.requires_grad
    np.testing.assert_allclose(out32.detach().numpy(), ref, atol=2e-4 * max(1.0, ref.max()))
    out32.sum().backward()
    assert torch.isfinite(t32.grad).all()


def test_gradcheck_correlation_rdm():
    t = torch.randn(6, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(1), requires_grad=True)
    assert torch.autograd.gradcheck(lambda a: rdm(a, "correlation"), (t,))
    assert torch.autograd.gradcheck(lambda a: rdm(a, "euclidean"), (t,))


def test_condensed_and_trailing_dims(x):
    feats = x.reshape(40, 523, 1, 1)
    np.testing.assert_allclose(rdm(feats, condensed=True), pdist(x, "correlation"), atol=1e-6)
    d = rdm(x)
    np.testing.assert_array_equal(condense(d), d[np.triu_indices(40, 1)])
    np.testing.assert_allclose(square(condense(d)), d)
    np.testing.assert_allclose(square(torch.from_numpy(condense(d))).numpy(), d)


def test_large_offsets_keep_full_precision(x):
    # mean / spread ~ 1e5: removing the means from the uncentred Gram would lose ~10 digits
    far = x * 1e-3 + 1e2
    ref = squareform(pdist(far, "correlation"))
    np.testing.assert_allclose(rdm(far), ref, atol=1e-9)
    np.testing.assert_allclose(rdm(np.asfortranarray(far)), ref, atol=1e-9)   # chunked path


def test_float32_numpy_input_is_computed_in_float64(x):
    out = rdm(x.astype(np.float32))
    ref = squareform(pdist(x.astype(np.float32).astype(np.float64), "correlation"))
    np.testing.assert_allclose(out, ref, atol=1e-9)


def test_zero_variance_rows_raise_not_nan(x):
    bad = x.copy()
    bad[3] = 7.25
    bad[11] = 0.0
    with pytest.raises(ValueError, match=r"x has 2 stimuli with zero variance.*rows \[3, 11\]"):
        rdm(bad)
    with pytest.raises(ValueError, match=r"zero norm.*rows \[11\]"):
        rdm(bad, "cosine")
    with pytest.raises(ValueError, match="zero variance"):
        rdm(torch.from_numpy(bad).requires_grad_(True))
    assert np.isfinite(rdm(bad, "euclidean")).all()   # distances stay defined


def test_rejects_bad_input(x):
    bad = x.copy()
    bad[5, 17] = np.nan
    with pytest.raises(NonFiniteError, match=r"x contains non-finite.*\(5, 17\)"):
        rdm(bad)
    with pytest.raises(UnknownNameError, match="metric must be one of"):
        rdm(x, "manhattan")
    with pytest.raises(ShapeError, match="x must be"):
        rdm(x[0])
    with pytest.raises(ShapeError):
        square(np.ones(5))
