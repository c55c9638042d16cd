"""veRSA and predictivity against scikit-learn + scipy pipelines written in the test; bad input."""

import numpy as np
import pytest
import torch
from scipy.spatial.distance import pdist
from scipy.stats import pearsonr
from sklearn.linear_model import RidgeCV

from neuroreg.brain import BrainData, RDMSet
from neuroreg.errors import StimulusMismatchError, UnknownNameError
from neuroreg.features.projection import sparse_random_projection
from neuroreg.scoring import CONWELL_ALPHAS, CONWELL_SRP_DIM, predictivity, versa


def _setup(n=60, seed=0, trials=False):
    rng = np.random.default_rng(seed)
    good = rng.normal(size=(n, 40))
    bad = rng.normal(size=(n, 200))
    w = rng.normal(size=(40, 30))
    signal = good @ w / 6
    resp = signal + 0.7 * rng.normal(size=(n, 30))
    info = {"roi": np.array(["V4"] * 15 + ["IT"] * 15), "subject": np.array([1] * 30)}
    tr = None
    if trials:
        tr = signal[None] + rng.normal(size=(4, n, 30))
        resp = tr.mean(0)
    return {"good": good, "bad": torch.from_numpy(bad).float()}, BrainData(resp, np.arange(n), info, trials=tr)


def test_conwell_constants():
    assert CONWELL_SRP_DIM == 5920
    np.testing.assert_allclose(CONWELL_ALPHAS, [0.1, 1, 10, 100, 1e3, 1e4, 1e5])


def test_versa_matches_sklearn_pipeline():
    feats, brain = _setup()
    table = versa(feats, brain, model="m")
    train, test = np.arange(0, 60, 2), np.arange(1, 60, 2)
    x = feats["good"]
    xs = (x - x[train].mean(0)) / x[train].std(0, ddof=1)
    sk = RidgeCV(alphas=CONWELL_ALPHAS, alpha_per_target=True).fit(xs[train], brain.responses[train])
    pred = sk.predict(xs[test])
    for roi, units in (("V4", slice(0, 15)), ("IT", slice(15, 30))):
        ref = pearsonr(pdist(pred[:, units], "correlation"), pdist(brain.responses[test][:, units], "correlation"))[0]
        row = table.filter(layer="good", region=roi, metric="versa", split="test")[0]
        assert row["score"] == pytest.approx(ref, abs=1e-6)
        r = [pearsonr(pred[:, u], brain.responses[test][:, u])[0] for u in range(30)[units]]
        assert table.filter(layer="good", region=roi, metric="encoding_r")[0]["score"] == pytest.approx(np.median(r), abs=1e-6)
    best = table.filter(metric="versa").best()
    assert set(best.to_pandas()["layer"]) == {"good"}
    good_test = table.filter(layer="good", metric="versa", split="test").to_pandas()["score"]
    bad_test = table.filter(layer="bad", metric="versa", split="test").to_pandas()["score"]
    assert good_test.min() > bad_test.max() + 0.2


def test_versa_projects_wide_layers_with_the_seeded_srp():
    feats, brain = _setup(seed=1)
    table = versa({"bad": feats["bad"]}, brain, srp_dim=50, seed=3)
    train, test = np.arange(0, 60, 2), np.arange(1, 60, 2)
    x = sparse_random_projection(feats["bad"].double(), 50, seed=3).numpy()
    xs = (x - x[train].mean(0)) / x[train].std(0, ddof=1)
    pred = RidgeCV(alphas=CONWELL_ALPHAS, alpha_per_target=True).fit(xs[train], brain.responses[train]).predict(xs[test])
    r2 = 1 - ((brain.responses[test] - pred) ** 2).sum(0) / ((brain.responses[test] - brain.responses[test].mean(0)) ** 2).sum(0)
    row = table.filter(region="IT", metric="encoding_r2")[0]
    assert row["score"] == pytest.approx(np.median(r2[15:]), abs=1e-6)
    again = versa({"bad": feats["bad"]}, brain, srp_dim=50, seed=3)
    assert [r["score"] for r in again] == [r["score"] for r in table]


def test_predictivity_ridge_and_pls_with_ceiling():
    feats, brain = _setup(n=80, seed=2, trials=True)
    table = predictivity(feats, brain, splits=3, seed=0)
    good = table.filter(layer="good", region="IT")[0]
    bad = table.filter(layer="bad", region="IT")[0]
    assert good["score"] > 0.5 and good["score"] > bad["score"] + 0.3
    assert 0 < good["ceiling_r"] <= 1 and good["n_splits"] == 3 and good["protocol"] == "neuroreg"
    assert table.to_pandas().loc[0, "normalized"] == pytest.approx(table[0]["score"] / table[0]["ceiling_r"])
    pls = predictivity(feats, brain, mapping="pls", splits=2, n_components=10)
    assert pls.filter(region="IT", layer="good")[0]["score"] > pls.filter(region="IT", layer="bad")[0]["score"] + 0.3
    # the same seed gives the same splits and numbers
    again = predictivity(feats, brain, splits=3, seed=0)
    assert [r["score"] for r in again] == [r["score"] for r in table]


def test_rejects_bad_input():
    feats, brain = _setup()
    with pytest.raises(StimulusMismatchError, match=r"features\['good'\] has 59 stimuli but brain has 60"):
        versa({"good": feats["good"][:59]}, brain)
    nan = feats["good"].copy()
    nan[2, 3] = np.nan
    with pytest.raises(ValueError, match=r"features\['good'\] contains non-finite"):
        versa({"good": nan}, brain)
    with pytest.raises(TypeError, match="brain must be a BrainData"):
        versa(feats, RDMSet(np.zeros((3, 3)) + (1 - np.eye(3))))
    with pytest.raises(UnknownNameError, match="mapping must be"):
        predictivity(feats, brain, mapping="lasso")
    flat = brain.responses.copy()
    flat[5, :15] = 1.0
    with pytest.raises(ValueError, match=r"region='V4'.*zero variance"):
        versa(feats, BrainData(flat, np.arange(60), brain.unit_info))


@pytest.mark.parametrize("kind", ["trials", "ncsnr"])
def test_perfect_model_normalizes_to_one_with_either_ceiling(kind):
    # The ceiling column held the Spearman-Brown reliability (a bound on r^2) with trials
    # and sqrt(NC) (a bound on r) with ncsnr: a perfect model came out at 1.32 and 0.99.
    rng = np.random.default_rng(5)
    n, units, reps = 600, 40, 3
    x = rng.normal(size=(n, 20))
    signal = x @ rng.normal(size=(20, units))
    signal /= signal.std(0)
    noise_sd = rng.uniform(0.8, 1.6, size=units)
    trials = signal[None] + noise_sd * rng.normal(size=(reps, n, units))
    if kind == "trials":
        brain = BrainData(trials.mean(0), np.arange(n), {"roi": np.array(["IT"] * units)}, trials=trials)
    else:   # NSD's ncsnr: signal SD / noise SD of single trials
        brain = BrainData(trials.mean(0), np.arange(n), {"roi": np.array(["IT"] * units), "ncsnr": 1 / noise_sd})
    table = predictivity({"signal": x}, brain, splits=3, srp_dim=None)
    norm = table.to_pandas()["normalized"].iloc[0]
    assert norm == pytest.approx(1.0, abs=0.08)
