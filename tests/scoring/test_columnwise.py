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


@pytest.mark.parametrize("value", [0.1, 0.3, 0.7, 1 / 3, -2.5e-7, 1e12])
@pytest.mark.parametrize("n", [3, 7, 10])
def test_constant_column_gets_the_stated_value_whatever_the_prediction(value, n):
    # the rule of r2_per_column's docstring: a column whose values are all equal gets `constant`
    # (0 or NaN), for an exact prediction as for any other; a mean rounded away from the value
    # (0.1 * 3 / 3 != 0.1 in float64) must not turn the column into a tiny variance
    rng = np.random.default_rng(n)
    y = rng.normal(size=(n, 3))
    y[:, 1] = value
    for pred in (y.copy(), y + rng.normal(size=y.shape)):
        r2 = r2_per_column(y, pred)
        assert r2[1] == 0.0
        assert np.isnan(r2_per_column(y, pred, constant="nan")[1])
        r = pearson_per_column(pred, y)
        assert r[1] == 0.0 and np.isnan(pearson_per_column(pred, y, constant="nan")[1])
    # the ordinary columns beside it are scikit-learn's and scipy's numbers
    pred = y + rng.normal(size=y.shape)
    keep = [0, 2]
    np.testing.assert_allclose(r2_per_column(y, pred)[keep],
                               r2_score(y[:, keep], pred[:, keep], multioutput="raw_values"), rtol=1e-12)
    np.testing.assert_allclose(pearson_per_column(y, pred)[keep],
                               [pearsonr(y[:, j], pred[:, j])[0] for j in keep], rtol=1e-12)


def test_r2_of_a_single_ordinary_column_matches_sklearn():
    rng = np.random.default_rng(4)
    y = rng.normal(size=(30, 1)) * 1e-3 + 7.0
    pred = y + rng.normal(size=(30, 1)) * 5e-4
    assert r2_per_column(y, pred)[0] == pytest.approx(r2_score(y[:, 0], pred[:, 0]), rel=1e-10)
