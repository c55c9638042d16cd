"""Column-wise Pearson r and R^2 against scipy and scikit-learn."""

import numpy as np
import pytest
from scipy.stats import pearsonr
from sklearn.metrics import r2_score

from neuroreg.scoring.columnwise import pearson_per_column, r2_per_column


def _pair(seed=0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(40, 6)) * rng.uniform(0.1, 10, size=6) + 5
    b = 0.5 * a + rng.normal(size=(40, 6))
    return a, b


def test_pearson_matches_scipy():
    a, b = _pair()
    want = [pearsonr(a[:, j], b[:, j])[0] for j in range(6)]
    np.testing.assert_allclose(pearson_per_column(a, b), want, rtol=1e-12)


def test_pearson_constant_column_is_zero_or_nan():
    a, b = _pair(1)
    a[:, 2] = 3.0
    assert pearson_per_column(a, b)[2] == 0.0
    assert np.isnan(pearson_per_column(a, b, constant="nan")[2])
    with pytest.raises(ValueError, match="constant must be"):
        pearson_per_column(a, b, constant="drop")
    with pytest.raises(ValueError, match="same shape"):
        pearson_per_column(a, b[:, :3])


def test_r2_matches_sklearn():
    y, pred = _pair(2)
    np.testing.assert_allclose(r2_per_column(y, pred), r2_score(y, pred, multioutput="raw_values"), rtol=1e-12)
    y[:, 0] = 1.0
    assert r2_per_column(y, pred)[0] == 0.0 and np.isnan(r2_per_column(y, pred, constant="nan")[0])
