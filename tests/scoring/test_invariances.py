"""Scores that must not change with row order or dtype, matrices that must not be misread, data too small to score.

One test class per way a score can be silently wrong. Values are checked against
scipy / scikit-learn / formulas written here, not against the code under test.
"""

import warnings

import numpy as np
import pytest
import torch
from scipy.spatial.distance import pdist
from scipy.stats import pearsonr, spearmanr
from sklearn.linear_model import RidgeCV

from neuroreg.brain import BrainData, RDMSet
from neuroreg.errors import StimulusMismatchError
from neuroreg.features.extraction import Features
from neuroreg.scoring import (CONWELL_ALPHAS, RidgeGCV, bootstrap_mean, bootstrap_rdm_comparison, cka, cka_from_grams,
                              compare_rdms, crsa, gram_from_rdm, noise_ceiling, predictivity, rdm,
                              rdm_noise_ceiling, split_half_ceiling, versa)

N = 64


def _data(n=N, seed=0):
    """Two layers and a two-subject BrainData (with repeats) sharing a latent code; ids s0..s{n-1}."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 6))
    good = latent @ rng.normal(size=(6, 40)) + 0.5 * rng.normal(size=(n, 40))
    bad = rng.normal(size=(n, 30))
    signal = np.concatenate([latent @ rng.normal(size=(6, 12)) for _ in range(2)], 1)
    trials = signal[None] + rng.normal(size=(3, n, 24))
    info = {"roi": np.array(["IT"] * 24), "subject": np.repeat([1, 2], 12)}
    ids = np.array([f"s{i}" for i in range(n)])
    return {"good": good, "bad": bad}, BrainData(trials.mean(0), ids, info, trials=trials)


def _scores(table):
    df = table.to_pandas()
    keys = [c for c in ("layer", "region", "subject", "metric", "split") if c in df]
    df = df.sort_values(keys).reset_index(drop=True)
    cols = [c for c in ("score", "ci_low", "ci_high", "ceiling_r", "ceiling_r_lower", "mean") if c in df]
    return df[keys], df[cols].to_numpy(dtype=np.float64)


def _permuted(feats, brain, seed):
    """The same data with features and brain rows in two different, independent random orders."""
    rng = np.random.default_rng(seed)
    pf = rng.permutation(brain.n_stimuli)
    pb = rng.permutation(brain.n_stimuli)
    f = Features({k: torch.from_numpy(v[pf]) for k, v in feats.items()}, stimulus_ids=brain.stimulus_ids[pf])
    return f, brain.take_stimuli(pb)


def _rdm_set(brain):
    mats = np.stack([pdist(brain.responses[:, brain.unit_info["subject"] == s], "correlation") for s in (1, 2)])
    return RDMSet.from_condensed(mats, region="IT", subject=[1, 2], stimulus_ids=brain.stimulus_ids)


# ----------------------------------------------------------------------------- row order
def _crsa(feats, brain):
    return _scores(crsa(feats, brain, n_boot=20, seed=1))


def _crsa_rdmset(feats, brain):
    return _scores(crsa(feats, _rdm_set(brain), method="spearman", n_boot=10))


def _versa(feats, brain):
    return _scores(versa(feats, brain, alphas=[0.1, 10, 1e3]))


def _predictivity_ridge(feats, brain):
    return _scores(predictivity(feats, brain, splits=4, test_fraction=0.25, alphas=[0.1, 10, 1e3]))


def _predictivity_pls(feats, brain):
    return _scores(predictivity(feats, brain, mapping="pls", n_components=4, splits=3, test_fraction=0.25))


SCORERS = {"crsa": _crsa, "crsa_rdmset": _crsa_rdmset, "versa": _versa, "predictivity_ridge": _predictivity_ridge,
           "predictivity_pls": _predictivity_pls}


def _on_rows(feats, brain, perm):
    """Features, responses, subject-1 RDM stack and ids with rows in the order ``perm``."""
    rs = _rdm_set(brain)
    return (feats["good"][perm], brain.responses[perm], rs.rdms[:, perm][:, :, perm],
            brain.stimulus_ids[perm], brain.take_stimuli(perm))


def _unpermute_rdm(feats, brain, perm):
    d = rdm(feats["good"][perm])
    inv = np.argsort(perm)
    return d[np.ix_(inv, inv)]


FUNCTIONS = {
    "rdm": _unpermute_rdm,
    "compare_rdms": lambda f, b, p: [compare_rdms(rdm(f["good"][p]), rdm(b.responses[p]), m)
                                     for m in ("pearson", "spearman", "kendall_tau_a")],
    "cka": lambda f, b, p: float(cka(f["good"][p], b.responses[p])),
    "cka_debiased": lambda f, b, p: float(cka(f["good"][p], b.responses[p], debiased=True)),
    "cka_rbf": lambda f, b, p: float(cka(f["good"][p], b.responses[p], kernel="rbf")),
    "cka_from_grams": lambda f, b, p: float(cka_from_grams(gram_from_rdm(_on_rows(f, b, p)[2][0]),
                                                           gram_from_rdm(_on_rows(f, b, p)[2][1]), debiased=True)),
    "ridge": lambda f, b, p: np.concatenate([RidgeGCV(CONWELL_ALPHAS).fit(f["good"][p], b.responses[p]).coef_.ravel(),
                                             RidgeGCV(CONWELL_ALPHAS).fit(f["good"][p], b.responses[p]).alpha_]),
    "rdm_noise_ceiling": lambda f, b, p: [getattr(rdm_noise_ceiling(_on_rows(f, b, p)[2], m), k)
                                          for m in ("pearson", "spearman") for k in ("lower", "upper")],
    "noise_ceiling_split_half": lambda f, b, p: noise_ceiling(b.take_stimuli(p)).per_unit,
    "bootstrap_rdm_comparison": lambda f, b, p: bootstrap_rdm_comparison(
        rdm(f["good"][p]), rdm(b.responses[p]), n_boot=50, seed=0, stimulus_ids=b.stimulus_ids[p]).samples,
    "bootstrap_mean": lambda f, b, p: bootstrap_mean(b.responses[:8, 0][np.argsort(p[:8])], n_boot=50).samples,
}


class TestRowOrder:
    @pytest.mark.parametrize("scorer", sorted(SCORERS))
    def test_scorer_is_invariant_to_row_order(self, scorer):
        feats, brain = _data()
        keys, ref = SCORERS[scorer](feats, brain)
        for seed in (0, 1):
            keys2, got = SCORERS[scorer](*_permuted(feats, brain, seed))
            assert keys.equals(keys2)
            np.testing.assert_allclose(got, ref, rtol=1e-7, atol=1e-9, err_msg=scorer)

    def test_conwell_split_is_parity_of_sorted_ids(self):
        # ids in natural order s0, s1, ..., s63; the rows in a random order
        feats, brain = _data()
        f, b = _permuted(feats, brain, 0)
        row = crsa(f, b).filter(layer="good", subject=1, split="test")[0]
        odd = np.arange(1, N, 2)
        units = brain.unit_info["subject"] == 1
        ref = pearsonr(pdist(feats["good"][odd], "correlation"),
                       pdist(brain.responses[odd][:, units], "correlation"))[0]
        assert row["score"] == pytest.approx(ref, abs=1e-9)
        assert row["n_stimuli"] == N // 2

    def test_explicit_split_is_given_by_stimulus_ids(self):
        feats, brain = _data()
        train_ids, test_ids = brain.stimulus_ids[:40], brain.stimulus_ids[40:]
        a = _scores(crsa(feats, brain, split=(train_ids, test_ids)))
        b = _scores(crsa(*_permuted(feats, brain, 3), split=(train_ids[::-1], test_ids)))
        np.testing.assert_allclose(a[1], b[1], atol=1e-9)
        row = crsa(feats, brain, split=(train_ids, test_ids)).filter(layer="bad", subject=2, split="test")[0]
        units = brain.unit_info["subject"] == 2
        ref = pearsonr(pdist(feats["bad"][40:], "correlation"), pdist(brain.responses[40:][:, units], "correlation"))[0]
        assert row["score"] == pytest.approx(ref, abs=1e-9)
        with pytest.raises(StimulusMismatchError, match="split"):
            crsa(feats, brain, split=(train_ids, ["nope"] + list(test_ids[:5])))
        with pytest.raises(ValueError, match="both"):
            crsa(feats, brain, split=(train_ids, train_ids[:10]))

    @pytest.mark.parametrize("name", sorted(FUNCTIONS))
    def test_function_is_invariant_to_row_order(self, name):
        # the same stimuli in another order: identical numbers (rdm: the same matrix, permuted)
        feats, brain = _data()
        ref = np.asarray(FUNCTIONS[name](feats, brain, np.arange(N)), dtype=np.float64)
        for seed in (0, 1):
            perm = np.random.default_rng(seed).permutation(N)
            got = np.asarray(FUNCTIONS[name](feats, brain, perm), dtype=np.float64)
            np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-10, err_msg=name)


class TestDuplicateIds:
    def test_duplicate_feature_ids_are_refused(self):
        feats, brain = _data()
        ids = brain.stimulus_ids.copy()
        ids[5] = ids[6]
        f = Features({k: torch.from_numpy(v) for k, v in feats.items()}, stimulus_ids=ids)
        for fn in (lambda: crsa(f, brain), lambda: crsa(f, _rdm_set(brain)), lambda: versa(f, brain),
                   lambda: predictivity(f, brain, splits=2, test_fraction=0.25)):
            with pytest.raises(ValueError, match=r"duplicate.*s6"):
                fn()

    def test_ids_matching_only_as_strings_are_refused_when_ambiguous(self):
        feats, brain = _data(n=24)
        f = Features({k: torch.from_numpy(v) for k, v in feats.items()},
                     stimulus_ids=np.array([3] + [f"s{i}" for i in range(1, 23)] + ["3"], dtype=object))
        with pytest.raises(ValueError, match="duplicate"):
            crsa(f, brain)


# ----------------------------------------------------------------------------- precision
LOW = [torch.float16, torch.bfloat16]


def _acts(n=64, d=2048, seed=0):
    """ReLU activations of realistic size and magnitude (a few hundred at the top)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(n, 8, generator=g) @ torch.randn(8, d, generator=g)
    q = min(d, 512)
    return torch.relu(8 * base + 4 * torch.randn(n, d, generator=g)), torch.relu(
        6 * base[:, :q] + 10 * torch.randn(n, q, generator=g))


def _cka_ref(k, l, debiased):
    """Kornblith et al. (2019) CKA of Grams k, l; debiased with Song et al.'s unbiased HSIC; numpy float64."""
    k = np.asarray(k, np.float64)
    l = np.asarray(l, np.float64)
    n = k.shape[0]

    def hsic(a, b):
        if not debiased:
            h = np.eye(n) - 1.0 / n
            return np.trace(a @ h @ b @ h)
        a = a - np.diag(np.diag(a))
        b = b - np.diag(np.diag(b))
        one = np.ones(n)
        return (np.trace(a @ b) + one @ a @ one * (one @ b @ one) / ((n - 1) * (n - 2))
                - 2.0 / (n - 2) * one @ a @ b @ one)
    return hsic(k, l) / np.sqrt(hsic(k, k) * hsic(l, l))


def _linear_cka_ref(x, y, debiased):
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    return _cka_ref(x @ x.T, y @ y.T, debiased)


class TestLowPrecision:
    @pytest.mark.parametrize("dtype", LOW)
    @pytest.mark.parametrize("debiased", [False, True])
    def test_cka(self, dtype, debiased):
        x, y = _acts()
        xl, yl = x.to(dtype), y.to(dtype)
        ref = _linear_cka_ref(xl.double(), yl.double(), debiased)
        got = cka(xl, yl, debiased=debiased)
        assert got.dtype in (torch.float32, torch.float64)
        assert float(got) == pytest.approx(ref, abs=1e-4)
        # Grams handed over in low precision (scaled into float16's range)
        kx, ky = xl.double() @ xl.double().T, yl.double() @ yl.double().T
        kxl, kyl = (kx / kx.max()).to(dtype), (ky / ky.max()).to(dtype)
        g = cka_from_grams(kxl, kyl, debiased=debiased)
        assert g.dtype in (torch.float32, torch.float64)
        assert float(g) == pytest.approx(_cka_ref(kxl.double(), kyl.double(), debiased), abs=1e-4)

    @pytest.mark.parametrize("dtype", LOW)
    def test_rdm_and_compare_rdms(self, dtype):
        x, y = _acts(n=40, d=300)
        xl, yl = x.to(dtype), y.to(dtype)
        xr, yr = xl.double().numpy(), yl.double().numpy()
        d = rdm(xl)
        assert d.dtype in (torch.float32, torch.float64)
        np.testing.assert_allclose(rdm(xl, condensed=True).double().numpy(), pdist(xr, "correlation"), atol=1e-6)
        dx, dy = pdist(xr, "correlation"), pdist(yr, "correlation")
        for method, ref in (("pearson", pearsonr(dx, dy)[0]), ("spearman", spearmanr(dx, dy)[0])):
            got = compare_rdms(torch.from_numpy(dx).to(dtype), torch.from_numpy(dy).to(dtype), method)
            ref_l = (pearsonr if method == "pearson" else spearmanr)(
                torch.from_numpy(dx).to(dtype).double(), torch.from_numpy(dy).to(dtype).double())[0]
            assert float(got) == pytest.approx(ref_l, abs=1e-5), method
            assert abs(float(got) - ref) < 0.05

    @pytest.mark.parametrize("dtype", LOW)
    def test_crsa_versa_predictivity(self, dtype):
        feats, brain = _data()
        low = {k: torch.from_numpy(v).to(dtype) for k, v in feats.items()}
        rounded = {k: v.double().numpy() for k, v in low.items()}
        t = crsa(low, brain, ceiling=False)
        units = brain.unit_info["subject"] == 1
        odd = np.arange(1, N, 2)
        ref = pearsonr(pdist(rounded["good"][odd], "correlation"),
                       pdist(brain.responses[odd][:, units], "correlation"))[0]
        assert t.filter(layer="good", subject=1, split="test")[0]["score"] == pytest.approx(ref, abs=1e-6)
        np.testing.assert_allclose(_scores(versa(low, brain, alphas=[1.0, 100.0]))[1],
                                   _scores(versa(rounded, brain, alphas=[1.0, 100.0]))[1], atol=1e-6)
        np.testing.assert_allclose(_scores(predictivity(low, brain, splits=2, test_fraction=0.25))[1],
                                   _scores(predictivity(rounded, brain, splits=2, test_fraction=0.25))[1], atol=1e-6)

    @pytest.mark.parametrize("dtype", LOW)
    def test_ridge(self, dtype):
        feats, brain = _data()
        xl = torch.from_numpy(feats["good"]).to(dtype)
        yl = torch.from_numpy(brain.responses).to(dtype)
        xr, yr = xl.double().numpy(), yl.double().numpy()
        ours = RidgeGCV(CONWELL_ALPHAS).fit(xl, yl)
        sk = RidgeCV(alphas=CONWELL_ALPHAS, alpha_per_target=True).fit(xr, yr)
        np.testing.assert_allclose(ours.alpha_, sk.alpha_)
        pred = ours.predict(xl)
        assert pred.dtype in (torch.float32, torch.float64)
        np.testing.assert_allclose(pred.double().numpy(), sk.predict(xr), rtol=1e-5, atol=1e-5)
        from sklearn.metrics import r2_score
        np.testing.assert_allclose(ours.score(xl, yl), r2_score(yr, sk.predict(xr), multioutput="raw_values"),
                                   atol=1e-9)

    @pytest.mark.parametrize("dtype", LOW)
    def test_ceilings_and_bootstraps(self, dtype):
        _, brain = _data()
        rs = _rdm_set(brain)
        stack = torch.from_numpy(rs.rdms).to(dtype)
        rounded = stack.double().numpy()
        ours = noise_ceiling(stack)
        ref = rdm_noise_ceiling(rounded)
        assert ours.kind == "rdm" and (ours.lower, ours.upper) == pytest.approx((ref.lower, ref.upper), abs=1e-9)
        tr = torch.from_numpy(brain.trials).to(dtype)
        a = split_half_ceiling(tr)
        b = split_half_ceiling(tr.double().numpy())
        np.testing.assert_allclose(a.per_unit, b.per_unit, atol=1e-12)
        m, b_ = stack[0], stack[1]
        bl = bootstrap_rdm_comparison(m, b_, n_boot=30)
        br = bootstrap_rdm_comparison(m.double().numpy(), b_.double().numpy(), n_boot=30)
        np.testing.assert_allclose(bl.samples, br.samples, atol=1e-12)
        v = torch.tensor([0.1, 0.4, 0.35, 0.2, 0.3]).to(dtype)
        np.testing.assert_allclose(bootstrap_mean(v, n_boot=20).samples,
                                   bootstrap_mean(v.double().numpy(), n_boot=20).samples)


    @pytest.mark.gpu
    @pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
    @pytest.mark.parametrize("dtype", LOW)
    def test_on_cuda(self, dtype):
        x, y = _acts()
        xl, yl = x.to(dtype), y.to(dtype)
        xc, yc = xl.cuda(), yl.cuda()
        for debiased in (False, True):
            ref = _linear_cka_ref(xl.double(), yl.double(), debiased)
            assert float(cka(xc, yc, debiased=debiased)) == pytest.approx(ref, abs=1e-4)
        d = rdm(xc[:, :300])
        assert d.is_cuda and d.dtype == torch.float32
        np.testing.assert_allclose(d.cpu().double().numpy(), rdm(xl[:, :300].double().numpy()), atol=1e-5)
        dx, dy = rdm(xc[:, :300], condensed=True), rdm(yc, condensed=True)
        ref = pearsonr(dx.cpu().double().numpy(), dy.cpu().double().numpy())[0]
        assert float(compare_rdms(dx.to(dtype), dy.to(dtype))) == pytest.approx(
            pearsonr(dx.to(dtype).double().cpu(), dy.to(dtype).double().cpu())[0], abs=1e-5)
        assert abs(float(compare_rdms(dx, dy)) - ref) < 1e-5
        feats, brain = _data()
        low = {k: torch.from_numpy(v).to(dtype) for k, v in feats.items()}
        rounded = {k: v.double().numpy() for k, v in low.items()}
        np.testing.assert_allclose(_scores(crsa(low, brain, device="cuda", ceiling=False))[1],
                                   _scores(crsa(rounded, brain, ceiling=False))[1], atol=1e-5)
        np.testing.assert_allclose(_scores(versa(low, brain, device="cuda", alphas=[1.0, 100.0]))[1],
                                   _scores(versa(rounded, brain, alphas=[1.0, 100.0]))[1], atol=1e-5)


# ----------------------------------------------------------------------------- ambiguous matrices
class TestAmbiguousMatrices:
    def test_compare_rdms_refuses_a_square_matrix_that_is_not_an_rdm(self):
        rng = np.random.default_rng(0)
        a = rng.random((10, 10))
        b = rdm(rng.normal(size=(10, 5)))
        with pytest.raises(ValueError, match="not symmetric"):
            compare_rdms(a, b)
        sym = a + a.T
        with pytest.raises(ValueError, match="diagonal"):
            compare_rdms(sym, b)
        with pytest.raises(ValueError, match="not symmetric"):
            compare_rdms(torch.from_numpy(a), b)

    def test_rounding_asymmetry_of_float32_rdms_is_accepted(self):
        rng = np.random.default_rng(1)
        d = rdm(rng.normal(size=(30, 8)))
        noisy = (d + 1e-7 * rng.normal(size=d.shape) * (1 - np.eye(30))).astype(np.float32)
        other = rdm(rng.normal(size=(30, 8)))
        iu = np.triu_indices(30, 1)
        ref = pearsonr(noisy[iu].astype(np.float64), other[iu])[0]
        assert float(compare_rdms(torch.from_numpy(noisy), other)) == pytest.approx(ref, abs=1e-6)
        assert float(compare_rdms(noisy, other)) == pytest.approx(ref, abs=1e-6)

    def test_noise_ceiling_never_switches_kind_silently(self):
        _, brain = _data()
        stack = _rdm_set(brain).rdms
        skewed = stack.copy()
        skewed[:, 0, 1] += 1e-3
        with pytest.raises(ValueError, match=r"not symmetric.*kind="):
            noise_ceiling(skewed)
        assert noise_ceiling(stack).kind == "rdm"
        assert noise_ceiling(skewed, kind="split_half").kind == "split_half"
        with pytest.raises(ValueError, match="not symmetric"):
            noise_ceiling(skewed, kind="rdm")
        assert noise_ceiling(brain.trials).kind == "split_half"     # (3, 64, 24): trials, unambiguously
        trials = brain.trials[:, :24]          # (3, 24, 24): square but not RDMs -> the caller must say which
        with pytest.raises(ValueError, match="ambiguous.*kind='split_half'"):
            noise_ceiling(trials)
        assert noise_ceiling(trials, kind="split_half").kind == "split_half"
        with pytest.raises(ValueError, match="kind"):
            noise_ceiling(stack, kind="nope")

    def test_rdm_inputs_elsewhere_are_checked(self):
        rng = np.random.default_rng(2)
        a = rng.random((12, 12))
        good = rdm(rng.normal(size=(12, 4)))
        with pytest.raises(ValueError, match="not symmetric"):
            bootstrap_rdm_comparison(a, good, n_boot=5)
        with pytest.raises(ValueError, match="not symmetric"):
            gram_from_rdm(a)
        with pytest.raises(ValueError, match="diagonal"):
            gram_from_rdm(good + np.eye(12))
        with pytest.raises(ValueError, match="not symmetric"):
            cka_from_grams(a, good @ good)


# ----------------------------------------------------------------------------- too little data
class TestTooLittleData:
    @pytest.mark.parametrize("n", [10, 20])
    def test_predictivity_refuses_folds_of_fewer_than_3_test_stimuli(self, n):
        feats, brain = _data(n=n)
        with pytest.raises(ValueError, match=r"at least 3 test stimuli per fold.*got \d"):
            predictivity(feats, brain)

    def test_predictivity_warns_with_the_number_below_10_test_stimuli(self):
        feats, brain = _data(n=64)
        with pytest.warns(UserWarning, match=r"6 test stimuli per fold"):
            predictivity(feats, brain, splits=2)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            predictivity(feats, brain, splits=2, test_fraction=0.2)

    def test_crsa_and_versa_refuse_tiny_splits_and_warn_on_small_ones(self):
        feats, brain = _data(n=6)
        with pytest.raises(ValueError, match=r"at least 4 stimuli per split.*3"):
            crsa(feats, brain)
        with pytest.raises(ValueError, match=r"at least 4 stimuli per split.*3"):
            versa(feats, brain)
        feats, brain = _data(n=14)
        with pytest.warns(UserWarning, match=r"7 stimuli"):
            crsa(feats, brain)
        with pytest.warns(UserWarning, match=r"7 stimuli"):
            versa(feats, brain)
        feats, brain = _data(n=24)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            crsa(feats, brain)

    def test_bootstraps_state_their_minimum(self):
        good = rdm(np.random.default_rng(0).normal(size=(3, 4)))
        with pytest.raises(ValueError, match="at least 4 stimuli"):
            bootstrap_rdm_comparison(good, good, n_boot=5)
        with pytest.warns(UserWarning, match="3 values"):
            bootstrap_mean([0.1, 0.2, 0.4], n_boot=10)
