"""CKA: analytic cases, independent reference formulas, gradients and bad input."""

import itertools

import numpy as np
import pytest
import torch
from scipy.stats import ortho_group

from neuroreg.errors import NonFiniteError, StimulusMismatchError, UnknownNameError
from neuroreg.scoring import CKA, cka, cka_from_grams, gram, gram_from_rdm


def _rng(seed=0):
    return np.random.default_rng(seed)


def _reference_biased_linear(x, y):
    """Kornblith et al. 2019, eq. for linear CKA on column-centred features."""
    x = x - x.mean(0)
    y = y - y.mean(0)
    return np.linalg.norm(y.T @ x) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y))


def _reference_unbiased_hsic_ustat(k, l):
    """Unbiased HSIC from its definition as a sum of U-statistics over distinct index tuples (Song et al. 2012)."""
    n = k.shape[0]
    t1 = sum(k[i, j] * l[i, j] for i, j in itertools.permutations(range(n), 2)) / (n * (n - 1))
    t2 = sum(k[i, j] * l[q, r] for i, j, q, r in itertools.permutations(range(n), 4)) / (n * (n - 1) * (n - 2) * (n - 3))
    t3 = sum(k[i, j] * l[i, q] for i, j, q in itertools.permutations(range(n), 3)) / (n * (n - 1) * (n - 2))
    return t1 + t2 - 2 * t3


def test_identical_inputs_give_one():
    x = torch.randn(50, 20, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for kernel in ("linear", "rbf"):
        for debiased in (False, True):
            assert float(cka(x, x, kernel=kernel, debiased=debiased)) == pytest.approx(1.0, abs=1e-10)


def test_invariant_to_orthogonal_transform_and_isotropic_scaling():
    rng = _rng(1)
    x = rng.normal(size=(40, 12))
    y = x @ rng.normal(size=(12, 30)) + 0.5 * rng.normal(size=(40, 30))
    q = ortho_group.rvs(30, random_state=2)
    for debiased in (False, True):
        base = float(cka(x, y, debiased=debiased))
        assert 0.2 < base < 0.99
        assert float(cka(x, 3.7 * y @ q, debiased=debiased)) == pytest.approx(base, rel=1e-9)
        assert float(cka(0.01 * x, y @ q, debiased=debiased, kernel="rbf")) == pytest.approx(
            float(cka(x, y, debiased=debiased, kernel="rbf")), rel=1e-9)


def test_not_invariant_to_anisotropic_scaling():
    rng = _rng(3)
    x = rng.normal(size=(60, 5))
    y = x + 0.3 * rng.normal(size=(60, 5))
    scaled = y * np.array([10.0, 1, 1, 1, 1])
    assert abs(float(cka(x, y)) - float(cka(x, scaled))) > 0.05


def test_biased_linear_matches_feature_space_formula_both_paths():
    rng = _rng(4)
    narrow_x, narrow_y = rng.normal(size=(80, 6)), rng.normal(size=(80, 9))   # feature-space path
    wide_x, wide_y = rng.normal(size=(10, 300)), rng.normal(size=(10, 200))   # Gram path
    for x, y in ((narrow_x, narrow_y), (wide_x, wide_y)):
        assert float(cka(x, y)) == pytest.approx(_reference_biased_linear(x, y), rel=1e-10)


def test_debiased_matches_u_statistic_definition():
    rng = _rng(5)
    n = 7
    x, y = rng.normal(size=(n, 3)), rng.normal(size=(n, 4)) + 0.0
    y[:, 0] += 2 * x[:, 0]
    k, l = x @ x.T, y @ y.T
    ref = _reference_unbiased_hsic_ustat(k, l) / np.sqrt(
        _reference_unbiased_hsic_ustat(k, k) * _reference_unbiased_hsic_ustat(l, l))
    assert float(cka(x, y, debiased=True)) == pytest.approx(ref, rel=1e-9)          # feature-space path
    assert float(cka_from_grams(k, l, debiased=True)) == pytest.approx(ref, rel=1e-9)
    wide = np.concatenate([x, np.zeros((n, 30))], 1)                                 # forces the Gram path
    assert float(cka(wide, y, debiased=True)) == pytest.approx(ref, rel=1e-9)


def test_rbf_matches_reference_gram():
    rng = _rng(6)
    x, y = rng.normal(size=(30, 5)), rng.normal(size=(30, 4))
    sigma = 2.0
    from scipy.spatial.distance import cdist
    k = np.exp(-cdist(x, x, "sqeuclidean") / (2 * sigma ** 2))
    l = np.exp(-cdist(y, y, "sqeuclidean") / (2 * sigma ** 2))
    h = np.eye(30) - 1 / 30
    kc, lc = h @ k @ h, h @ l @ h
    ref = np.sum(kc * lc) / (np.linalg.norm(kc) * np.linalg.norm(lc))
    assert float(cka(x, y, kernel="rbf", sigma=sigma)) == pytest.approx(ref, rel=1e-9)
    np.testing.assert_allclose(gram(x, "rbf", sigma=sigma).numpy(), k, atol=1e-12)


def test_debiased_near_zero_for_independent_data_where_biased_is_inflated():
    g = torch.Generator().manual_seed(7)
    x = torch.randn(128, 2048, generator=g, dtype=torch.float64)
    y = torch.randn(128, 2048, generator=g, dtype=torch.float64)
    biased = float(cka(x, y))
    debiased = float(cka(x, y, debiased=True))
    assert biased > 0.6          # Dapello et al. 2023: about 0.67 at n = 128
    assert abs(debiased) < 0.02


def test_rdm_path_equals_feature_cka_for_squared_euclidean():
    rng = _rng(8)
    x, y = rng.normal(size=(25, 7)), rng.normal(size=(25, 40))
    y[:, :7] += x
    from scipy.spatial.distance import cdist
    dx, dy = cdist(x, x, "sqeuclidean"), cdist(y, y, "sqeuclidean")
    h = np.eye(25) - 1 / 25
    np.testing.assert_allclose(gram_from_rdm(dx).numpy(), -h @ dx @ h / 2, atol=1e-10)
    for debiased in (False, True):
        assert float(cka_from_grams(gram_from_rdm(dx), gram_from_rdm(dy), debiased=debiased)) == pytest.approx(
            float(cka(x, y, debiased=debiased)), rel=1e-9)


def test_batched_grams_broadcast():
    rng = _rng(9)
    xs = rng.normal(size=(3, 12, 4))
    y = rng.normal(size=(12, 5))
    ks = np.einsum("kni,kmi->knm", xs, xs)
    out = cka_from_grams(ks, y @ y.T, debiased=True)
    assert out.shape == (3,)
    for i in range(3):
        assert float(out[i]) == pytest.approx(float(cka(xs[i], y, debiased=True)), rel=1e-9)


def test_gradcheck_and_module_twin():
    g = torch.Generator().manual_seed(10)
    x = torch.randn(8, 3, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randn(8, 20, generator=g, dtype=torch.float64, requires_grad=True)
    for kernel in ("linear", "rbf"):
        for debiased in (False, True):
            assert torch.autograd.gradcheck(lambda a, b: cka(a, b, kernel=kernel, debiased=debiased), (x, y))
    out = CKA(debiased=True)(x, y)
    out.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert float(out.detach()) == pytest.approx(float(cka(x.detach(), y.detach(), debiased=True)))


def test_float32_numpy_and_trailing_dims():
    rng = _rng(11)
    x = rng.normal(size=(20, 2, 3, 3)).astype(np.float32)
    y = rng.normal(size=(20, 6))
    out = cka(x, y)
    assert isinstance(out, torch.Tensor) and out.ndim == 0
    assert float(out) == pytest.approx(_reference_biased_linear(x.reshape(20, -1).astype(np.float64), y), rel=1e-6)


def test_rejects_bad_input():
    x = np.random.default_rng(0).normal(size=(10, 3))
    with pytest.raises(StimulusMismatchError, match="x has 10 rows, y has 9"):
        cka(x, x[:9])
    with pytest.raises(ValueError, match="at least 4 stimuli"):
        cka(x[:3], x[:3], debiased=True)
    with pytest.raises(ValueError, match="at least 4 stimuli"):
        cka_from_grams(np.eye(3), np.eye(3), debiased=True)
    bad = x.copy()
    bad[2, 1] = np.nan
    with pytest.raises(NonFiniteError, match="x contains non-finite"):
        cka(bad, x)
    with pytest.raises(UnknownNameError, match="kernel must be one of"):
        cka(x, x, kernel="poly")
    with pytest.raises(ValueError, match="y carries no variance"):
        cka(x, np.ones((10, 4)))
    with pytest.raises(StimulusMismatchError):
        cka_from_grams(np.eye(5), np.eye(6))
