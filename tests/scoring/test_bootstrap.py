"""Bootstraps: seeded, analytic standard errors, degenerate resamples counted and never NaN."""

import numpy as np
import pytest
from scipy.spatial.distance import pdist, squareform

from neuroreg.scoring import bootstrap, bootstrap_mean, bootstrap_rdm_comparison


def test_same_seed_same_numbers_and_seed_matters():
    v = np.random.default_rng(0).normal(size=50)
    a = bootstrap_mean(v, n_boot=200, seed=3)
    b = bootstrap_mean(v, n_boot=200, seed=3)
    c = bootstrap_mean(v, n_boot=200, seed=4)
    np.testing.assert_array_equal(a.samples, b.samples)
    assert not np.array_equal(a.samples, c.samples)


def test_bootstrap_mean_standard_error_matches_analytic():
    v = np.random.default_rng(1).normal(2.0, 3.0, size=400)
    res = bootstrap_mean(v, n_boot=2000, seed=0)
    se = v.std(ddof=1) / np.sqrt(v.size)
    assert res.std == pytest.approx(se, rel=0.1)
    assert res.low < v.mean() < res.high
    assert res.high - res.low == pytest.approx(2 * 1.96 * se, rel=0.12)


def test_degenerate_resamples_are_counted_not_nan():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(4, 5))
    a, b = squareform(pdist(x)), squareform(pdist(x + rng.normal(size=(4, 5))))
    res = bootstrap_rdm_comparison(a, b, "pearson", n_boot=300, seed=0)
    # only resamples with at least 3 of the 4 stimuli distinct ((24 + 144) / 256 of them) have pairs to correlate
    assert res.n_valid + res.n_degenerate == 300
    assert 0.55 < res.n_valid / 300 < 0.76 and res.n_degenerate > 0
    assert np.isfinite(res.samples).all() and np.isfinite([res.low, res.high]).all()


def test_rdm_bootstrap_covers_the_full_sample_score():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(40, 20))
    a, b = squareform(pdist(x, "correlation")), squareform(pdist(x + rng.normal(size=(40, 20)), "correlation"))
    full = np.corrcoef(squareform(a), squareform(b))[0, 1]
    res = bootstrap_rdm_comparison(a, b, "spearman", n_boot=200, seed=0)
    assert res.n_degenerate == 0
    assert res.low < full < res.high


def test_all_degenerate_raises():
    with pytest.raises(ValueError, match="all 20 bootstrap resamples were degenerate"):
        bootstrap(lambda idx: float("nan"), 10, n_boot=20)
    with pytest.raises(ValueError, match="n_boot must be >= 1"):
        bootstrap_mean([1.0, 2.0], n_boot=0)
