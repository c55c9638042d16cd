"""RidgeGCV against scikit-learn's RidgeCV (GCV mode): predictions, chosen alphas, LOO scores; bad input."""

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import RidgeCV
from sklearn.metrics import r2_score

from neuroreg.errors import NonFiniteError, ShapeError, StimulusMismatchError
from neuroreg.scoring import RidgeGCV

ALPHAS = np.logspace(-1, 5, 7)


def _data(n, p, v, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, p)) + rng.normal(size=p)           # non-zero means exercise the intercept
    w = rng.normal(size=(p, v)) * rng.uniform(0, 1, size=v)
    y = x @ w / np.sqrt(p) + rng.normal(size=(n, v)) * rng.uniform(0.2, 5, size=v) + 3.0
    return x, y, rng.normal(size=(15, p)) + 0.5


@pytest.mark.parametrize("n, p", [(40, 150), (120, 25)], ids=["kernel_p_gt_n", "primal_p_lt_n"])
@pytest.mark.parametrize("per_target", [True, False])
def test_matches_sklearn_ridgecv(n, p, per_target):
    x, y, xt = _data(n, p, 60)
    ref = RidgeCV(alphas=ALPHAS, alpha_per_target=per_target).fit(x, y)
    ours = RidgeGCV(ALPHAS, alpha_per_target=per_target).fit(x, y)
    np.testing.assert_array_equal(ours.alpha_, ref.alpha_)
    np.testing.assert_allclose(ours.predict(xt), ref.predict(xt), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(ours.coef_, ref.coef_, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(ours.intercept_, ref.intercept_, rtol=1e-8, atol=1e-10)
    if per_target:
        np.testing.assert_allclose(ours.best_score_, ref.best_score_, rtol=1e-8)


def test_float32_products_keep_predictions_and_alphas():
    x, y, xt = _data(80, 400, 300, seed=1)
    ref = RidgeCV(alphas=ALPHAS, alpha_per_target=True).fit(x, y)
    ours = RidgeGCV(ALPHAS, dtype=torch.float32).fit(x, y)
    assert np.mean(ours.alpha_ == ref.alpha_) >= 0.99
    pred, want = ours.predict(xt), ref.predict(xt)
    assert np.abs(pred - want).max() <= 1e-4 * np.abs(want).max()


def test_target_chunks_give_the_same_fit():
    x, y, xt = _data(50, 80, 33, seed=2)
    a = RidgeGCV(ALPHAS).fit(x, y)
    b = RidgeGCV(ALPHAS, target_chunk=7).fit(x, y)
    np.testing.assert_array_equal(a.alpha_, b.alpha_)
    np.testing.assert_allclose(a.predict(xt), b.predict(xt), rtol=1e-12)


def test_one_d_target_no_intercept_and_torch_io():
    x, y, xt = _data(30, 10, 1, seed=3)
    ref = RidgeCV(alphas=ALPHAS, fit_intercept=False).fit(x, y[:, 0])
    ours = RidgeGCV(ALPHAS, fit_intercept=False).fit(torch.from_numpy(x), torch.from_numpy(y[:, 0]))
    assert isinstance(ours.alpha_, float) and ours.alpha_ == ref.alpha_
    assert ours.coef_.shape == (10,)
    out = ours.predict(torch.from_numpy(xt))
    assert isinstance(out, torch.Tensor) and out.shape == (15,)
    np.testing.assert_allclose(out.numpy(), ref.predict(xt), rtol=1e-8)
    assert ours.fit(x, y[:, 0]) is ours


def test_ties_pick_the_first_alpha_like_sklearn():
    x, _, _ = _data(20, 5, 1, seed=4)
    y = np.column_stack([np.full(20, 2.0), x[:, 0]])           # a constant target: every alpha ties
    ref = RidgeCV(alphas=ALPHAS[::-1], alpha_per_target=True).fit(x, y)
    ours = RidgeGCV(ALPHAS[::-1]).fit(x, y)
    np.testing.assert_array_equal(ours.alpha_, ref.alpha_)
    assert ours.alpha_[0] == ALPHAS[-1]


def test_rejects_bad_input():
    x, y, _ = _data(20, 5, 2)
    with pytest.raises(StimulusMismatchError, match="X has 20 rows, Y has 19"):
        RidgeGCV(ALPHAS).fit(x, y[:19])
    bad = x.copy()
    bad[3, 1] = np.inf
    with pytest.raises(NonFiniteError, match="X contains non-finite"):
        RidgeGCV(ALPHAS).fit(bad, y)
    with pytest.raises(ValueError, match="alphas must be finite and > 0"):
        RidgeGCV([0.0, 1.0]).fit(x, y)
    with pytest.raises(ShapeError, match="at least 3 samples"):
        RidgeGCV(ALPHAS).fit(x[:2], y[:2])
    for use in (lambda: RidgeGCV(ALPHAS).predict(x), lambda: RidgeGCV(ALPHAS).coef_,
                lambda: RidgeGCV(ALPHAS).score(x, y)):
        with pytest.raises(NotFittedError, match="RidgeGCV"):
            use()
    with pytest.raises(ShapeError, match="X has 4 features"):
        RidgeGCV(ALPHAS).fit(x, y).predict(x[:, :4])


def test_loo_predictions_equal_explicit_refits():
    x, y, _ = _data(25, 40, 3, seed=5)
    ours = RidgeGCV(ALPHAS, store_loo=True).fit(x, y)
    from sklearn.linear_model import Ridge
    for i in (0, 7, 24):
        keep = np.arange(25) != i
        for t in range(3):
            ref = Ridge(alpha=ours.alpha_[t]).fit(x[keep], y[keep, t]).predict(x[i:i + 1])[0]
            assert ours.loo_predictions_[i, t] == pytest.approx(ref, rel=1e-8)


def test_clone_and_params_follow_sklearn():
    from sklearn.base import clone
    est = RidgeGCV(ALPHAS, alpha_per_target=False, dtype=torch.float32, target_chunk=5)
    copy = clone(est)
    assert copy is not est
    got, want = copy.get_params(), est.get_params()
    np.testing.assert_array_equal(got.pop("alphas"), want.pop("alphas"))
    assert got == want
    assert copy.set_params(alpha_per_target=True) is copy and copy.alpha_per_target
    x, y, _ = _data(30, 8, 2, seed=6)
    fitted = clone(RidgeGCV(ALPHAS)).fit(x, y)
    assert not hasattr(clone(fitted), "alpha_")                   # clone drops the fitted state


def test_grid_search_picks_the_same_setting_as_sklearn_ridge():
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import GridSearchCV, KFold
    x, y, _ = _data(60, 12, 1, seed=7)
    y1 = y[:, 0]
    cv = KFold(4, shuffle=True, random_state=0)
    # a one-alpha grid per candidate turns RidgeGCV into plain ridge: both searches must agree
    ours = GridSearchCV(RidgeGCV(), {"alphas": [[a] for a in ALPHAS]}, cv=cv).fit(x, y1)
    ref = GridSearchCV(Ridge(), {"alpha": list(ALPHAS)}, cv=cv).fit(x, y1)
    assert ours.best_params_["alphas"] == [ref.best_params_["alpha"]]
    np.testing.assert_allclose(ours.cv_results_["mean_test_score"], ref.cv_results_["mean_test_score"], rtol=1e-8)
    x, y, _ = _data(60, 12, 3, seed=7)
    grid = {"fit_intercept": [True, False]}
    multi = GridSearchCV(RidgeGCV(ALPHAS), grid, cv=cv, scoring="r2").fit(x, y)
    want = GridSearchCV(RidgeCV(alphas=ALPHAS, alpha_per_target=True), grid, cv=cv, scoring="r2").fit(x, y)
    np.testing.assert_allclose(multi.cv_results_["mean_test_score"], want.cv_results_["mean_test_score"], rtol=1e-8)


@pytest.mark.parametrize("n, p", [(30, 90), (70, 12)], ids=["kernel_p_gt_n", "primal_p_lt_n"])
def test_cv_results_equal_sklearn(n, p):
    x, y, _ = _data(n, p, 4, seed=8)
    ref = RidgeCV(alphas=ALPHAS, alpha_per_target=True, store_cv_results=True).fit(x, y)
    ours = RidgeGCV(ALPHAS, store_cv_results=True, target_chunk=3).fit(x, y)
    np.testing.assert_allclose(ours.cv_results_, ref.cv_results_, rtol=1e-7, atol=1e-12)
    ref1 = RidgeCV(alphas=ALPHAS, store_cv_results=True).fit(x, y[:, 1])
    ours1 = RidgeGCV(ALPHAS, store_cv_results=True).fit(x, y[:, 1])
    np.testing.assert_allclose(ours1.cv_results_, ref1.cv_results_, rtol=1e-7, atol=1e-12)
    assert not hasattr(RidgeGCV(ALPHAS).fit(x, y), "cv_results_")


def test_score_is_r2_per_target_as_sklearn_and_constant_targets_score_zero():
    x, y, _ = _data(30, 6, 3, seed=2)
    fit = RidgeGCV(ALPHAS).fit(x[:20], y[:20])
    want = r2_score(y[20:], fit.predict(x[20:]), multioutput="raw_values")
    np.testing.assert_allclose(fit.score(x[20:], y[20:]), want, rtol=1e-10, atol=1e-12)
    one = RidgeGCV(ALPHAS).fit(x[:20], y[:20, 0])
    assert one.score(x[20:], y[20:, 0]) == pytest.approx(r2_score(y[20:, 0], one.predict(x[20:])), rel=1e-12)
    # a held-out target that is constant gets 0 (r2_per_column's rule), not scikit-learn's 1.0-or-0.0
    flat = y[20:].copy()
    flat[:, 1] = 0.1
    assert fit.score(x[20:], flat)[1] == 0.0
