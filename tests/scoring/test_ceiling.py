"""Noise ceilings: rsatoolbox on the bundled 78-image data, analytic split-half and NSD ncsnr cases."""

import warnings

import numpy as np
import pytest

from neuroreg.brain import BrainData, load_algonauts2019_78
from neuroreg.errors import ShapeError, UnknownNameError
from neuroreg.scoring import (NoiseCeiling, ncsnr_ceiling, noise_ceiling, rdm_noise_ceiling, spearman_brown,
                              split_half_ceiling)


@pytest.fixture(scope="module")
def algonauts():
    return load_algonauts2019_78()


@pytest.mark.parametrize("ours, theirs, region", [("pearson", "corr", "IT"), ("pearson", "corr", "EVC"),
                                                  ("spearman", "spearman", "IT"), ("kendall_tau_a", "tau-a", "IT"),
                                                  ("rho_a", "rho-a", "EVC")])
def test_rdm_ceiling_matches_rsatoolbox_on_bundled_data(algonauts, ours, theirs, region):
    from rsatoolbox.inference import boot_noise_ceiling
    from rsatoolbox.rdm import RDMs
    rdms = algonauts.rdms[region]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lower, upper = boot_noise_ceiling(RDMs(rdms.condensed()), method=theirs)
    nc = rdm_noise_ceiling(rdms, ours)
    assert nc.lower == pytest.approx(lower, abs=1e-10)
    assert nc.upper == pytest.approx(upper, abs=1e-10)
    assert nc["lower"] < nc["upper"]
    assert noise_ceiling(rdms, method=ours).as_dict()["upper"] == pytest.approx(upper, abs=1e-10)


def test_split_half_matches_analytic_reliability():
    rng = np.random.default_rng(0)
    n_rep, n_stim, n_units = 4, 2000, 50
    signal_sd = np.linspace(0.3, 2.0, n_units)
    signal = rng.normal(size=(n_stim, n_units)) * signal_sd
    trials = signal[None] + rng.normal(size=(n_rep, n_stim, n_units))
    nc = split_half_ceiling(trials, n_splits=5, seed=1)
    # reliability of the mean of 4 repeats: var_s / (var_s + var_noise / 4)
    expected = signal_sd ** 2 / (signal_sd ** 2 + 1 / n_rep)
    err = np.abs(nc.per_unit - expected)
    assert err.mean() < 0.02 and err.max() < 0.07     # sampling error of r at 2,000 stimuli
    assert nc.lower == nc.upper == pytest.approx(np.median(nc.per_unit))
    again = split_half_ceiling(trials, n_splits=5, seed=1)
    np.testing.assert_array_equal(again.per_unit, nc.per_unit)


def test_spearman_brown_values():
    assert spearman_brown(0.5) == pytest.approx(2 / 3)
    assert spearman_brown(0.25, factor=3) == pytest.approx(0.5)


def test_ncsnr_ceiling_is_nsd_formula():
    # Allen et al. 2022: NC = ncsnr^2 / (ncsnr^2 + 1/n); ncsnr = 1 and 3 trials -> 75 %
    nc = ncsnr_ceiling([1.0, 0.0, 2.0], n_trials=3)
    np.testing.assert_allclose(nc.per_unit, [0.75, 0.0, 4 / (4 + 1 / 3)])
    assert ncsnr_ceiling([1.0], n_trials=1).upper == pytest.approx(0.5)


def test_dispatch_on_brain_data():
    rng = np.random.default_rng(2)
    trials = rng.normal(size=(2, 10, 3)) + rng.normal(size=(1, 10, 3))
    b = BrainData(trials.mean(0), np.arange(10), trials=trials)
    assert noise_ceiling(b).kind == "split_half"
    b2 = BrainData(trials.mean(0), np.arange(10), {"ncsnr": np.array([0.5, 1.0, 2.0])})
    assert noise_ceiling(b2, n_trials=3).per_unit[1] == pytest.approx(0.75)
    assert isinstance(noise_ceiling(trials), NoiseCeiling)
    with pytest.raises(ValueError, match="neither trials"):
        noise_ceiling(BrainData(trials.mean(0), np.arange(10)))


def test_rejects_bad_input(algonauts):
    with pytest.raises(ShapeError, match="at least 2 RDMs"):
        rdm_noise_ceiling(algonauts.rdms["IT"][0])
    with pytest.raises(UnknownNameError):
        rdm_noise_ceiling(algonauts.rdms["IT"], "euclid")
    with pytest.raises(ShapeError, match="at least 2 repeats"):
        split_half_ceiling(np.ones((1, 5, 2)))
    with pytest.raises(ValueError, match="ncsnr must be finite"):
        ncsnr_ceiling([np.nan])
