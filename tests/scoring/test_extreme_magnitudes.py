"""Scores do not depend on the magnitude of the data: inputs scaled by 1e-200 .. 1e200 score as the
unscaled ones (or are refused with the reason), against scipy references and the unscaled result.

Before, squares overflowed or underflowed silently: ``compare_rdms(R * 1e160, R2)`` returned 0.0,
``rdm(X * 1e-170, "euclidean")`` was all zeros, and cRSA called responses of 1e-200 "constant".
"""

import warnings

import numpy as np
import pytest
import torch
from scipy.spatial.distance import pdist, squareform
from scipy.stats import pearsonr, spearmanr

from neuroreg.brain import BrainData, RDMSet
from neuroreg.scoring import compare_rdms, crsa, predictivity, rdm, versa
from neuroreg.scoring.ceiling import rdm_noise_ceiling, split_half_ceiling
from neuroreg.scoring.columnwise import pearson_per_column, r2_per_column
from neuroreg.scoring.compare import compare_vectors

SCALES = [1e-200, 1e-150, 1.0, 1e150, 1e200]
RTOL = 1e-9


def _problem(n=24, d=15, v=12, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    y = x @ rng.normal(size=(d, v)) + rng.normal(size=(n, v))
    return x, y


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("metric", ["correlation", "cosine", "euclidean"])
def test_rdm_matches_scipy_at_any_magnitude(scale, metric):
    x, _ = _problem()
    with warnings.catch_warnings():
        warnings.simplefilter("error")           # no overflow/underflow warning either
        got = rdm(x * scale, metric)
    unit = scale if metric == "euclidean" else 1.0
    ref = squareform(pdist(x, metric)) * unit
    np.testing.assert_allclose(got, ref, rtol=RTOL, atol=RTOL * np.abs(ref).max())
    assert (np.diag(got) == 0).all()


@pytest.mark.parametrize("scale", [1e-150, 1.0, 1e150])
def test_sqeuclidean_rdm_matches_scipy_where_representable(scale):
    x, _ = _problem()
    ref = squareform(pdist(x, "sqeuclidean")) * scale ** 2
    np.testing.assert_allclose(rdm(x * scale, "sqeuclidean"), ref, rtol=RTOL, atol=RTOL * ref.max())


@pytest.mark.parametrize("scale", [1e-170, 1e170])
def test_sqeuclidean_rdm_out_of_range_is_refused_with_the_reason(scale):
    x, _ = _problem()
    with pytest.raises(ValueError, match="sqeuclidean distances .* not representable in float64"):
        rdm(x * scale, "sqeuclidean")


@pytest.mark.parametrize("scale", SCALES)
def test_rdm_of_torch_tensors_with_gradient_at_any_magnitude(scale):
    x, _ = _problem()
    t = torch.tensor(x * scale, requires_grad=True)          # float64: the differentiable torch path
    got = rdm(t, "correlation")
    np.testing.assert_allclose(got.detach().numpy(), squareform(pdist(x, "correlation")), rtol=RTOL, atol=1e-12)
    got.sum().backward()
    assert torch.isfinite(t.grad).all()
    eu = rdm(torch.tensor(x * scale, requires_grad=True), "euclidean")
    np.testing.assert_allclose(eu.detach().numpy(), squareform(pdist(x)) * scale, rtol=RTOL)


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("method", ["pearson", "spearman", "cosine", "kendall_tau_a"])
def test_compare_rdms_at_any_magnitude(scale, method):
    x, y = _problem()
    a, b = pdist(x), pdist(y, "correlation")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = compare_rdms(a * scale, b, method)
        both = compare_rdms(a * scale, b * scale, method)
    ref = {"pearson": pearsonr(a, b)[0], "spearman": spearmanr(a, b)[0],
           "cosine": a @ b / np.linalg.norm(a) / np.linalg.norm(b),
           "kendall_tau_a": compare_rdms(a, b, method)}[method]
    assert got == pytest.approx(ref, rel=RTOL) and both == pytest.approx(ref, rel=RTOL)


@pytest.mark.parametrize("scale", SCALES)
def test_compare_rdms_of_torch_tensors_at_any_magnitude(scale):
    x, y = _problem()
    a, b = pdist(x), pdist(y)
    got = compare_rdms(torch.tensor(a * scale), torch.tensor(b), "pearson")
    assert float(got) == pytest.approx(pearsonr(a, b)[0], rel=RTOL)


def test_constant_rdm_is_still_refused_at_any_magnitude():
    for scale in (1e-200, 1.0, 1e200):
        with pytest.raises(ValueError, match="constant"):
            compare_rdms(np.full(10, 0.1 * scale), np.arange(10.0), "pearson")


@pytest.mark.parametrize("scale", SCALES)
def test_columnwise_statistics_at_any_magnitude(scale):
    x, y = _problem()
    pred = x @ np.linalg.lstsq(x, y, rcond=None)[0]
    ref_r = [pearsonr(pred[:, j], y[:, j])[0] for j in range(y.shape[1])]
    np.testing.assert_allclose(pearson_per_column(pred * scale, y * scale), ref_r, rtol=RTOL)
    ref_r2 = 1 - ((y - pred) ** 2).sum(0) / ((y - y.mean(0)) ** 2).sum(0)
    np.testing.assert_allclose(r2_per_column(y * scale, pred * scale), ref_r2, rtol=RTOL)


@pytest.mark.parametrize("scale", SCALES)
def test_ceilings_at_any_magnitude(scale):
    rng = np.random.default_rng(1)
    base = rng.normal(size=(20, 8))
    trials = base[None] + 0.5 * rng.normal(size=(4, 20, 8))
    ref = split_half_ceiling(trials).per_unit
    np.testing.assert_allclose(split_half_ceiling(trials * scale).per_unit, ref, rtol=RTOL)
    rdms = np.stack([pdist(base + 0.5 * rng.normal(size=base.shape)) for _ in range(3)])
    ref_nc = rdm_noise_ceiling(rdms)
    nc = rdm_noise_ceiling(rdms * scale)
    assert (nc.lower, nc.upper) == pytest.approx((ref_nc.lower, ref_nc.upper), rel=RTOL)


def _scores(table):
    return np.array([r["score"] for r in table])


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("what", ["features", "brain"])
def test_crsa_at_any_magnitude(scale, what):
    x, y = _problem(n=24)
    ids = np.arange(24)
    roi = {"roi": np.array(["a"] * 6 + ["b"] * 6), "subject": np.array([1, 2] * 6)}
    ref = crsa({"l": x}, BrainData(y, ids, roi), n_boot=20)
    fs, bs = (scale, 1.0) if what == "features" else (1.0, scale)
    got = crsa({"l": x * fs}, BrainData(y * bs, ids, roi), n_boot=20)
    np.testing.assert_allclose(_scores(got), _scores(ref), rtol=RTOL)
    eu_ref = crsa({"l": x}, BrainData(y, ids, roi), metric="euclidean")
    eu = crsa({"l": x * fs}, BrainData(y * bs, ids, roi), metric="euclidean")
    np.testing.assert_allclose(_scores(eu), _scores(eu_ref), rtol=RTOL)
    for a, b in zip(eu, eu_ref):
        assert a.get("ceiling_r") == pytest.approx(b.get("ceiling_r"), rel=RTOL)


@pytest.mark.parametrize("scale", SCALES)
def test_crsa_on_rdm_sets_at_any_magnitude(scale):
    x, y = _problem(n=24)
    rdms = np.stack([squareform(pdist(y[:, :6])), squareform(pdist(y[:, 6:]))])
    ref = crsa({"l": x}, RDMSet(rdms, subject=[1, 2]))
    got = crsa({"l": x}, RDMSet(rdms * scale, subject=[1, 2]))
    np.testing.assert_allclose(_scores(got), _scores(ref), rtol=RTOL)


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("protocol", [None, "conwell"])
def test_versa_at_any_magnitude(scale, protocol):
    x, y = _problem(n=40, v=24)
    ids = np.arange(40)
    info = {"roi": np.array(["a"] * 24)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        ref = versa({"l": x}, BrainData(y, ids, info), protocol=protocol)
        got = versa({"l": x * scale}, BrainData(y * scale, ids, info), protocol=protocol)
        brain_only = versa({"l": x}, BrainData(y * scale, ids, info), protocol=protocol)
    np.testing.assert_allclose(_scores(got), _scores(ref), rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(_scores(brain_only), _scores(ref), rtol=1e-7, atol=1e-12)


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("mapping", ["ridge", "pls"])
def test_predictivity_at_any_magnitude(scale, mapping):
    x, y = _problem(n=40)
    rng = np.random.default_rng(2)
    trials = y[None] + 0.3 * rng.normal(size=(3, 40, y.shape[1]))
    ids = np.arange(40)
    ref = predictivity({"l": x}, BrainData(trials.mean(0), ids, trials=trials), mapping=mapping, splits=3,
                       test_fraction=0.25)
    got = predictivity({"l": x * scale}, BrainData(trials.mean(0) * scale, ids, trials=trials * scale),
                       mapping=mapping, splits=3, test_fraction=0.25)
    np.testing.assert_allclose(_scores(got), _scores(ref), rtol=1e-7)
    assert got[0]["ceiling_r"] == pytest.approx(ref[0]["ceiling_r"], rel=RTOL)


@pytest.mark.parametrize("scale", SCALES)
def test_predictivity_brainscore_protocol_at_any_magnitude(scale):
    x, y = _problem(n=40)
    rng = np.random.default_rng(2)
    trials = y[None] + 0.3 * rng.normal(size=(3, 40, y.shape[1]))
    ids = np.arange(40)
    labels = np.repeat(["a", "b", "c", "d"], 10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # scikit-learn's PLS convergence notes
        ref = predictivity({"l": x}, BrainData(trials.mean(0), ids, trials=trials), labels=labels,
                           protocol="brainscore", splits=3)
        got = predictivity({"l": x * scale}, BrainData(trials.mean(0) * scale, ids, trials=trials * scale),
                           labels=labels, protocol="brainscore", splits=3)
    np.testing.assert_allclose(_scores(got), _scores(ref), rtol=1e-7)
    assert got[0]["reliability"] == pytest.approx(ref[0]["reliability"], rel=RTOL)


def test_compare_vectors_of_different_lengths_name_both():
    with pytest.raises(ValueError, match="va has 10 per vector, vb has 11"):
        compare_vectors(np.arange(10.0)[None], np.arange(11.0)[None])
    assert compare_vectors(np.arange(10.0), np.arange(10.0) ** 2) == pytest.approx(
        pearsonr(np.arange(10.0), np.arange(10.0) ** 2)[0], rel=RTOL)
