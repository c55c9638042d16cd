"""FactorTopy: formulas against scipy/analytic references, recovery of simulated voxels, errors."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import scipy.ndimage
import scipy.stats
import torch
import torch.nn.functional as F
import torchvision
from sklearn.exceptions import NotFittedError
from torch import nn

from neuroreg.brain import BrainData
from neuroreg.errors import NonFiniteError, ShapeError, UnknownNameError
from neuroreg.scoring.factortopy import (DEFAULT_LEVELS, N_LEVELS, FactorTopy, compare_factortopy,
                                         expected_depth, factorized_readout, gaussian_pyramid, hierarchy_fit,
                                         layer_confidence, ridge_cv_r, scale_to_sd, sd_to_scale, sinusoidal_encoding)

LAYERS = ["layer1", "layer2", "layer3", "layer4"]


# ----------------------------------------------------------------------------- formulas
def test_confidence_is_one_minus_normalised_entropy():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(5), size=20)
    expected = 1.0 - scipy.stats.entropy(p, axis=1) / math.log(5)
    np.testing.assert_allclose(layer_confidence(p), expected, rtol=1e-10)
    assert layer_confidence(np.eye(5)) == pytest.approx(np.ones(5))
    assert layer_confidence(np.full((1, 5), 0.2))[0] == pytest.approx(0.0, abs=1e-12)


def test_expected_depth_is_mean_layer_position():
    p = np.array([[1, 0, 0, 0], [0, 0, 0, 1], [0.5, 0, 0, 0.5], [0, 1, 0, 0]], dtype=float)
    np.testing.assert_allclose(expected_depth(p), [0.0, 1.0, 0.5, 1 / 3])


def test_hierarchy_fit_matches_scipy_linregress():
    rng = np.random.default_rng(1)
    roi = rng.choice(["V1", "V2V3", "OPA", "EBA", "FFA"], size=300)
    depth = rng.uniform(0, 1, size=300)
    fit = hierarchy_fit(depth, roi)
    keep = roi != "FFA"  # not one of the four levels: ignored
    ref = scipy.stats.linregress([DEFAULT_LEVELS[r] for r in roi[keep]], depth[keep])
    assert fit["slope"] == pytest.approx(ref.slope, rel=1e-10)
    assert fit["b0"] == pytest.approx(ref.intercept, rel=1e-10)
    assert fit["b1"] == pytest.approx(ref.intercept + ref.slope, rel=1e-10)
    assert fit["n"] == keep.sum()


def test_hierarchy_fit_perfect_ordering_gives_slope_one():
    roi = np.array(["V1", "V2V3", "OPA", "EBA"] * 5)
    depth = np.array([DEFAULT_LEVELS[r] for r in roi])
    assert hierarchy_fit(depth, roi)["slope"] == pytest.approx(1.0)


def test_hierarchy_fit_needs_two_levels():
    with pytest.raises(ValueError, match="at least two ROIs"):
        hierarchy_fit(np.zeros(4), np.array(["V1"] * 4))


def test_sinusoidal_encoding_values():
    c = torch.tensor([[0.25, -0.5]])
    enc = sinusoidal_encoding(c, n_freqs=2)
    expected = [0.25, -0.5,
                math.sin(math.pi * 0.25), math.sin(2 * math.pi * 0.25),
                math.sin(-math.pi * 0.5), math.sin(-2 * math.pi * 0.5),
                math.cos(math.pi * 0.25), math.cos(2 * math.pi * 0.25),
                math.cos(-math.pi * 0.5), math.cos(-2 * math.pi * 0.5)]
    torch.testing.assert_close(enc[0], torch.tensor(expected), atol=1e-6, rtol=0)


def _readout_inputs(seed: int = 0, d: int = 3):
    g = torch.Generator().manual_seed(seed)
    maps = [torch.randn(5, 4, 6, 8, generator=g), torch.randn(5, 7, 3, 3, generator=g)]
    align = [torch.randn(d, 4, generator=g), torch.randn(d, 7, generator=g)]
    weights = torch.randn(2, 2, d, generator=g)
    bias = torch.tensor([0.5, -1.0])
    return maps, align, weights, bias


@pytest.mark.parametrize("d", [8, 3])  # C_l <= D folds B_l into the weights; C_l > D aligns first
def test_readout_at_pixel_centre_reads_that_pixel(d):
    maps, align, weights, bias = _readout_inputs(d=d)
    # voxel 0 -> layer 0 at pixel (row 2, col 5) of a 6 x 8 map; voxel 1 -> layer 1, global only
    x0, y0 = (2 * 5 + 1) / 8 - 1, (2 * 2 + 1) / 6 - 1
    probs = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    space = torch.tensor([[x0, y0], [0.3, -0.7]])
    scale = torch.tensor([0.0, 1.0])
    out = factorized_readout(maps, align, probs, space, scale, weights, bias)
    ref0 = (align[0] @ maps[0][:, :, 2, 5].T).T @ weights[0, 0] + bias[0]
    ref1 = (align[1] @ maps[1].mean((2, 3)).T).T @ weights[1, 1] + bias[1]
    torch.testing.assert_close(out[:, 0], ref0, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[:, 1], ref1, atol=1e-5, rtol=1e-5)


def test_readout_interpolates_bilinearly_like_scipy():
    maps, align, weights, bias = _readout_inputs(d=8)
    x, y = 0.13, -0.41  # between pixel centres
    probs = torch.tensor([[0.3, 0.7], [1.0, 0.0]])
    space = torch.tensor([[x, y], [x, y]])
    scale = torch.tensor([0.25, 0.0])
    out = factorized_readout(maps, align, probs, space, scale, weights, bias)
    ref = np.zeros(5)
    for layer, p in enumerate([0.3, 0.7]):
        m = maps[layer].double().numpy()
        h, w = m.shape[2:]
        # align_corners=False: pixel j has its centre at (2j + 1)/W - 1
        row, col = ((y + 1) * h - 1) / 2, ((x + 1) * w - 1) / 2
        local = np.array([[scipy.ndimage.map_coordinates(m[b, c], [[row], [col]], order=1, mode="nearest")[0]
                           for c in range(m.shape[1])] for b in range(5)])
        glob = m.mean((2, 3))
        feat = 0.75 * local + 0.25 * glob
        ref += p * (feat @ align[layer].double().numpy().T @ weights[0, layer].double().numpy())
    np.testing.assert_allclose(out[:, 0].double().numpy(), ref + 0.5, rtol=1e-4, atol=1e-4)


def test_scale_maps_log_linearly_to_window_sd():
    assert float(scale_to_sd(torch.tensor(0.0))) == pytest.approx(0.02)
    assert float(scale_to_sd(torch.tensor(1.0))) == pytest.approx(1.0)
    assert float(scale_to_sd(torch.tensor(0.5))) == pytest.approx(math.sqrt(0.02))
    np.testing.assert_allclose(sd_to_scale(np.array([0.02, 0.1, 1.0])), [0.0, math.log(5) / math.log(50), 1.0])


def test_gaussian_pooling_equals_simulator_windows():
    from neuroreg.features.simulate import gaussian_windows

    g = torch.Generator().manual_seed(0)
    fmap = torch.randn(3, 5, 12, 10, generator=g, dtype=torch.float64)
    eye = torch.eye(5, dtype=torch.float64)
    # at a pixel centre and a blur-level centre the pyramid is exact; between them, interpolated
    space = np.array([[(2 * 3 + 1) / 10 - 1, (2 * 7 + 1) / 12 - 1], [0.13, -0.4]])
    scale = np.array([3 / (N_LEVELS - 1), 0.5])
    sd = scale_to_sd(torch.tensor(scale)).numpy()
    out = factorized_readout([fmap], [eye], torch.ones(2, 1, dtype=torch.float64), torch.tensor(space),
                             torch.tensor(scale), torch.ones(2, 1, 5, dtype=torch.float64),
                             torch.zeros(2, dtype=torch.float64), pooling="gaussian")
    ref = torch.einsum("bcp,vp->bv", fmap.reshape(3, 5, -1), gaussian_windows(space, sd, 12, 10))
    torch.testing.assert_close(out[:, 0], ref[:, 0], atol=1e-10, rtol=0)
    torch.testing.assert_close(out[:, 1], ref[:, 1], atol=0.05 * float(ref[:, 1].abs().max()), rtol=0)


@pytest.mark.parametrize("d", [6, 2])  # C_l <= D: weights fold B_l; C_l > D: the pyramid is aligned
def test_gaussian_pooling_is_grid_sample_of_the_pyramid_with_gradients(d):
    g = torch.Generator().manual_seed(0)
    fmap = torch.randn(3, 4, 9, 7, generator=g, dtype=torch.float64)
    align = torch.randn(d, 4, generator=g, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(6, 1, d, generator=g, dtype=torch.float64)
    # some positions beyond the border (clamped, as grid_sample's border padding)
    space = (torch.rand(6, 2, generator=g, dtype=torch.float64) * 2.4 - 1.2).requires_grad_(True)
    scale = torch.rand(6, generator=g, dtype=torch.float64).requires_grad_(True)
    level_std = torch.rand(4, N_LEVELS, generator=g, dtype=torch.float64) + 0.5
    out = factorized_readout([fmap], [align], torch.ones(6, 1, dtype=torch.float64), space, scale, weights,
                             torch.zeros(6, dtype=torch.float64), pooling="gaussian", level_std=[level_std])
    grads = torch.autograd.grad(out.square().sum(), [space, scale, align])

    pyramid = gaussian_pyramid(fmap) / level_std[None, :, :, None, None]  # (b, C, K, H, W)
    z = (2 * scale * (N_LEVELS - 1) + 1) / N_LEVELS - 1  # level scale * (K - 1), grid_sample's coordinates
    grid = torch.cat([space, z[:, None]], dim=1)[None, :, None, None, :].expand(3, -1, -1, -1, -1)
    pooled = F.grid_sample(pyramid, grid, mode="bilinear", padding_mode="border", align_corners=False)[..., 0, 0]
    ref = torch.einsum("bcn,dc,nd->bn", pooled, align, weights[:, 0])
    ref_grads = torch.autograd.grad(ref.square().sum(), [space, scale, align])
    torch.testing.assert_close(out, ref, atol=1e-10, rtol=1e-10)
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got, want, atol=1e-8, rtol=1e-8)


def test_ridge_statistics_give_the_cross_validated_r():
    from neuroreg.scoring.factortopy.ridge import _RidgeStats

    rng = np.random.default_rng(0)
    x = torch.as_tensor(rng.normal(size=(90, 5, 4)) + 3 * rng.normal(size=(1, 5, 4)))
    y = torch.einsum("bnk,nk->bn", x, torch.as_tensor(rng.normal(size=(5, 4))))
    y = y + 3 * torch.as_tensor(rng.normal(size=(90, 5)))
    folds = rng.permutation(90) % 4
    stats = _RidgeStats(5, 4, 4, "cpu", dtype=torch.float64)
    for fold in range(4):
        idx = np.flatnonzero(folds == fold)
        for start in range(0, len(idx), 7):  # streamed in batches
            stats.add(fold, x[idx[start:start + 7]], y[idx[start:start + 7]])
    torch.testing.assert_close(stats.cv_r(0.05, block=2), ridge_cv_r(x, y, folds, 0.05), atol=1e-12, rtol=0)


def test_float32_ridge_statistics_survive_features_with_a_large_constant_part():
    # a map read at a fixed position can vary across stimuli by 1e-5 of its mean (border and bias
    # patterns of a random network): raw float32 sums of X'X then cancel to noise when centred
    from neuroreg.scoring.factortopy.ridge import _RidgeStats

    rng = np.random.default_rng(1)
    x64 = rng.normal(size=(120, 6, 5)) * np.array([1.0, 1e-4, 1e-3, 1.0, 1e-2]) + 30.0
    x = torch.as_tensor(x64, dtype=torch.float32)
    y = torch.einsum("bnk,nk->bn", x.double() - 30.0, torch.as_tensor(rng.normal(size=(6, 5))))
    y = (y + torch.as_tensor(rng.normal(size=(120, 6)))).float()
    folds = rng.permutation(120) % 5

    def streamed(shift):
        stats = _RidgeStats(6, 5, 5, "cpu", shift=shift)  # float32 X'X, as the layer choice uses it
        for fold in range(5):
            idx = np.flatnonzero(folds == fold)
            for start in range(0, len(idx), 8):
                stats.add(fold, x[idx[start:start + 8]], y[idx[start:start + 8]])
        return stats.cv_r(0.02)

    want = ridge_cv_r(x, y, folds, 0.02)  # float64, explicitly centred
    torch.testing.assert_close(streamed(True), want, atol=1e-4, rtol=0)
    assert (streamed(False) - want).abs().max() > 1e-2  # what the unshifted sums gave


def test_ridge_cv_r_matches_sklearn():
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import PredefinedSplit, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3, 4))
    y = np.einsum("bnk,nk->bn", x, rng.normal(size=(3, 4))) + rng.normal(size=(40, 3))
    folds = np.arange(40) % 4
    alpha = 0.05
    got = ridge_cv_r(torch.as_tensor(x), torch.as_tensor(y), folds, alpha).numpy()
    for v in range(3):
        model = make_pipeline(StandardScaler(), Ridge(alpha=alpha * 30))  # lambda = alpha * N_train
        pred = cross_val_predict(model, x[:, v], y[:, v], cv=PredefinedSplit(folds))
        assert got[v] == pytest.approx(scipy.stats.pearsonr(pred, y[:, v])[0], abs=1e-8)


def test_variance_floor_keeps_a_nearly_constant_feature_from_wrecking_the_ridge():
    # a ReLU channel that fires for one training stimulus (weakly) and one test stimulus (strongly):
    # plain standardisation scales it by ~1e7 and the held-out prediction explodes
    from sklearn.linear_model import Ridge

    from neuroreg.scoring.factortopy.ridge import _RidgeStats

    rng = np.random.default_rng(0)
    n, v, k = 200, 3, 4
    x = rng.normal(size=(n, v, k))
    y = np.einsum("bnk,nk->bn", x, rng.normal(size=(v, k))) + 0.5 * rng.normal(size=(n, v))
    folds = np.arange(n) % 5
    spike = np.zeros((n, v, 1))
    spike[0] = 1e-6                      # fold 0
    spike[1] = 1.0                       # fold 1
    xs = torch.as_tensor(np.concatenate([x, spike], 2))
    clean = ridge_cv_r(torch.as_tensor(x), torch.as_tensor(y), folds, 0.02)
    plain = ridge_cv_r(xs, torch.as_tensor(y), folds, 0.02)
    floored = ridge_cv_r(xs, torch.as_tensor(y), folds, 0.02, var_floor=1e-2)
    assert (plain < 0.5).all() and (clean > 0.8).all()
    torch.testing.assert_close(floored, clean, atol=0.02, rtol=0)
    # reference: scikit-learn's Ridge on the features standardised with the floored SD per fold
    for j in range(v):
        pred = np.zeros(n)
        for f in range(5):
            tr, te = folds != f, folds == f
            xt = xs[tr, j].numpy()
            var = xt.var(0)
            sd = np.sqrt(np.maximum(var, 1e-2 * var.mean()))
            mu = xt.mean(0)
            model = Ridge(alpha=0.02 * tr.sum()).fit((xt - mu) / sd, y[tr, j])
            pred[te] = model.predict((xs[te, j].numpy() - mu) / sd)
        assert float(floored[j]) == pytest.approx(scipy.stats.pearsonr(pred, y[:, j])[0], abs=1e-8)
    # the streamed statistics of the layer choice apply the same floor
    stats = _RidgeStats(v, k + 1, 5, "cpu", dtype=torch.float64)
    for f in range(5):
        idx = np.flatnonzero(folds == f)
        stats.add(f, xs[idx], torch.as_tensor(y[idx]))
    torch.testing.assert_close(stats.cv_r(0.02, var_floor=1e-2), floored, atol=1e-10, rtol=0)
    with pytest.raises(ValueError, match="var_floor must be >= 0"):
        ridge_cv_r(xs, torch.as_tensor(y), folds, 0.02, var_floor=-1.0)


def test_readout_gradients_reach_every_selector():
    maps, align, weights, bias = _readout_inputs(d=8)
    probs = torch.full((2, 2), 0.5, requires_grad=True)
    space = torch.tensor([[0.1, 0.2], [-0.3, 0.4]], requires_grad=True)
    scale = torch.tensor([0.2, 0.6], requires_grad=True)
    w = weights.clone().requires_grad_(True)
    factorized_readout(maps, align, probs, space, scale, w, bias).pow(2).sum().backward()
    for t in (probs, space, scale, w):
        assert t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0


# ----------------------------------------------------------------------------- estimator on tiny data
def _tiny(n_stim: int = 40, n_vox: int = 24, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    feats = {"a": torch.randn(n_stim, 6, 8, 8, generator=g), "b": torch.randn(n_stim, 10, 4, 4, generator=g)}
    rng = np.random.default_rng(seed)
    roi = np.array(["V1", "V2V3", "OPA", "EBA"])[np.arange(n_vox) % 4]
    brain = BrainData(rng.normal(size=(n_stim, n_vox)), np.arange(n_stim),
                      {"coords": rng.uniform(-1, 1, size=(n_vox, 2)), "roi": roi})
    return feats, brain


def _quick(**kw):
    params = dict(d=8, hidden=16, batch_size=16, max_epochs=2, warmup_epochs=1, anneal_epochs=1, patience=1,
                  progress=False)
    params.update(kw)
    return FactorTopy(["a", "b"], **params)


def test_fitted_attributes_have_documented_shapes_and_ranges():
    feats, brain = _tiny()
    ft = _quick().fit(feats, brain)
    n = brain.n_units
    assert ft.layer_probs_.shape == (n, 2)
    np.testing.assert_allclose(ft.layer_probs_.sum(1), 1.0, atol=1e-6)
    assert ft.layer_.shape == (n,) and ((ft.layer_ >= 0) & (ft.layer_ <= 1)).all()
    assert ft.space_.shape == (n, 2) and (np.abs(ft.space_) <= 1).all()
    assert ft.scale_.shape == (n,) and ((ft.scale_ >= 0) & (ft.scale_ <= 1)).all()
    assert ft.confidence_.shape == (n,) and ((ft.confidence_ >= -1e-9) & (ft.confidence_ <= 1 + 1e-9)).all()
    assert ft.r2_.shape == (n,) and np.isfinite(ft.r2_).all()
    assert ft.predict(feats).shape == (brain.n_stimuli, n)
    # per-layer positions and scales; space_/scale_ are the most probable layer's
    assert ft.space_layers_.shape == (n, 2, 2) and ft.scale_layers_.shape == (n, 2)
    best = ft.layer_probs_.argmax(1)
    np.testing.assert_array_equal(ft.space_, ft.space_layers_[np.arange(n), best])
    np.testing.assert_array_equal(ft.scale_, ft.scale_layers_[np.arange(n), best])
    shared = _quick(per_layer_space=False).fit(feats, brain)
    assert shared.space_.shape == (n, 2) and shared.scale_.shape == (n,) and not hasattr(shared, "space_layers_")


def test_layer_choice_keeps_each_layers_best_window_of_the_candidates():
    feats, brain = _tiny()
    ft = _quick().fit(feats, brain)
    n = brain.n_units
    # candidates: learned window, learned position with the narrowest window, correlation peak with it
    cand = ft.window_candidate_
    assert cand.shape == (n, 2) and set(np.unique(cand)) <= {0, 1, 2}
    expect_space = np.where((cand == 2)[..., None], ft.init_space_.astype(np.float32), ft.space_layers_)
    expect_scale = np.where(cand == 0, ft.scale_layers_, 0.0)
    np.testing.assert_allclose(ft.choice_space_layers_, expect_space, atol=1e-6)
    np.testing.assert_allclose(ft.choice_scale_layers_, expect_scale, atol=1e-6)
    # cv_r_ is ridge_cv_r (checked against scikit-learn above) at those windows, on all stimuli
    from neuroreg.scoring.factortopy import pooled_features, ridge_cv_r

    rows = np.concatenate([ft.train_index_, ft.val_index_])
    folds = np.random.default_rng(ft.random_state + 1).permutation(len(rows)) % ft.cv_folds
    y = torch.as_tensor((brain.responses - ft.y_mean_) / ft.y_std_)[rows]
    normed = ft._normalise({k: torch.as_tensor(feats[k])[rows].float() for k in ft.layers_})
    with torch.no_grad():
        pooled = pooled_features(normed, list(ft.net_.align), torch.as_tensor(ft.choice_space_layers_).float(),
                                 torch.as_tensor(ft.choice_scale_layers_).float(), pooling="gaussian",
                                 level_std=[ft.level_std_[k] for k in ft.layers_])
    for k in range(2):
        r = torch.stack([ridge_cv_r(pooled[k], y, folds, float(a), ft.ridge_var_floor) for a in ft.ridge_alpha]).amax(0).numpy()
        np.testing.assert_allclose(ft.cv_r_[:, k], r, atol=1e-5)
    # without a correlation start there is no peak candidate
    learned_only = _quick(position_init="centre").fit(feats, brain)
    assert learned_only.window_candidate_.max() <= 1


def test_same_seed_same_numbers_other_seed_differs():
    feats, brain = _tiny()
    a = _quick(random_state=3).fit(feats, brain)
    b = _quick(random_state=3).fit(feats, brain)
    c = _quick(random_state=4).fit(feats, brain)
    np.testing.assert_array_equal(a.layer_probs_, b.layer_probs_)
    np.testing.assert_array_equal(a.predict(feats), b.predict(feats))
    assert not np.allclose(a.layer_probs_, c.layer_probs_)


def test_voxel_chunks_do_not_change_the_fit():
    feats, brain = _tiny()
    whole = _quick(voxel_batch_size=4096).fit(feats, brain)
    chunked = _quick(voxel_batch_size=5).fit(feats, brain)
    np.testing.assert_allclose(whole.layer_probs_, chunked.layer_probs_, atol=1e-4)
    np.testing.assert_allclose(whole.predict(feats), chunked.predict(feats), atol=1e-3)


class _TwoStage(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.a = nn.Conv2d(3, 6, 3, stride=2, padding=1)
        self.b = nn.Conv2d(6, 10, 3, stride=2, padding=1)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


def test_streamed_model_equals_precomputed_features():
    model = _TwoStage().eval()
    images = torch.rand(40, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        a = model.a(images)
        feats = {"a": a, "b": model.b(torch.relu(a))}
    _, brain = _tiny()
    from_dict = _quick().fit(feats, brain)
    streamed = _quick().fit(model, brain, stimuli=images)
    np.testing.assert_allclose(streamed.layer_probs_, from_dict.layer_probs_, atol=1e-5)
    np.testing.assert_allclose(streamed.predict(model, stimuli=images), from_dict.predict(feats), atol=1e-4)
    assert model.training is False and not model.a._forward_hooks


def test_summary_and_compare_tables():
    feats, brain = _tiny()
    ft = _quick().fit(feats, brain)
    df = ft.summary(model="net").to_pandas()
    assert set(df["region"]) == {"all", "V1", "V2V3", "OPA", "EBA", "hierarchy"}
    slope_row = df[df["metric"] == "hierarchy_slope"]
    assert slope_row["score"].iloc[0] == pytest.approx(ft.hierarchy_slope())
    other = _quick(random_state=1).fit(feats, brain)
    cmp = compare_factortopy(ft, other).to_pandas()
    change = cmp[(cmp["metric"] == "hierarchy_slope") & (cmp["stage"] == "change")]["score"].iloc[0]
    assert change == pytest.approx(other.hierarchy_slope() - ft.hierarchy_slope())


def test_figures_are_written(tmp_path):
    from neuroreg.scoring.factortopy.plots import plot_compare, plot_hierarchy, plot_layer_map, plot_roi_histograms

    feats, brain = _tiny()
    ft = _quick().fit(feats, brain)
    for fn, name in ((plot_layer_map, "map.png"), (plot_roi_histograms, "hist.png"), (plot_hierarchy, "slope.svg")):
        fig = fn(ft, path=tmp_path / name)
        assert fig.axes and (tmp_path / name).stat().st_size > 1000
    assert plot_compare(ft, ft, path=tmp_path / "cmp.png").axes


# ----------------------------------------------------------------------------- bad input
def test_rejects_voxels_without_coords():
    feats, brain = _tiny()
    no_coords = BrainData(brain.responses, brain.stimulus_ids, {"roi": brain.unit_info["roi"]})
    with pytest.raises(ValueError, match="coords"):
        _quick().fit(feats, no_coords)


def test_rejects_layers_missing_from_features():
    feats, brain = _tiny()
    with pytest.raises(UnknownNameError, match="'c'"):
        FactorTopy(["a", "c"], progress=False).fit(feats, brain)


def test_rejects_nan_features():
    feats, brain = _tiny()
    feats["b"][3, 1, 0, 0] = float("nan")
    with pytest.raises(NonFiniteError, match="features\\['b'\\]"):
        _quick().fit(feats, brain)


def test_rejects_mismatched_stimuli_and_bad_params():
    feats, brain = _tiny()
    with pytest.raises(ShapeError, match="39 stimuli"):
        _quick().fit({k: v[:39] for k, v in feats.items()}, brain)
    with pytest.raises(ValueError, match="at least 2 layers"):
        FactorTopy(["a"]).fit(feats, brain)
    with pytest.raises(ValueError, match="pooling"):
        FactorTopy(["a", "b"], pooling="max").fit(feats, brain)
    with pytest.raises(ValueError, match="layer_choice"):
        FactorTopy(["a", "b"], layer_choice="vote").fit(feats, brain)
    with pytest.raises(ValueError, match="cv_folds"):
        FactorTopy(["a", "b"], cv_folds=1).fit(feats, brain)
    with pytest.raises(ValueError, match="val_fraction"):
        FactorTopy(["a", "b"], val_fraction=1.5).fit(feats, brain)
    with pytest.raises(ValueError, match="random_state must be an integer >= 0.*'3'"):
        FactorTopy(["a", "b"], random_state="3").fit(feats, brain)


# ----------------------------------------------------------------------------- recovery of simulated voxels
def _natural_crops(n: int, size: int, seed: int) -> torch.Tensor:
    """Seeded random crops of the bundled 78 natural images, resized to ``size`` px."""
    from neuroreg.brain import load_algonauts2019_78

    images = torch.from_numpy(load_algonauts2019_78().images).permute(0, 3, 1, 2).float() / 255.0
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        img = images[rng.integers(len(images))]
        side = int(rng.integers(120, 400))
        y0, x0 = rng.integers(0, 400 - side + 1, size=2)
        crop = img[:, y0:y0 + side, x0:x0 + side]
        if rng.random() < 0.5:
            crop = crop.flip(-1)
        out.append(torch.nn.functional.interpolate(crop[None], size=(size, size), mode="bilinear",
                                                   antialias=True, align_corners=False)[0])
    return torch.stack(out)


class _PlainCNN(nn.Module):
    """Four conv-ReLU stages with stride 2 (no skip connections), seeded random weights."""

    def __init__(self, widths=(16, 16, 16, 16)) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        chans = (3, *widths)
        self.stages = nn.ModuleDict()
        for k in range(len(widths)):
            conv = nn.Conv2d(chans[k], chans[k + 1], 3, stride=2, padding=1)
            with torch.no_grad():
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * math.sqrt(2.0 / (9 * chans[k])))
                conv.bias.zero_()
            self.stages[f"s{k + 1}"] = nn.Sequential(conv, nn.ReLU())

    def forward(self, x):
        for stage in self.stages.values():
            x = stage(x)
        return x


def _recovery(model, layers, n_images, size, n_voxels, **params):
    from neuroreg.features.simulate import simulate_voxels
    from neuroreg.features.extraction import extract

    images = _natural_crops(n_images, size, seed=0)
    brain, truth = simulate_voxels(model, images, layers=layers, n_voxels=n_voxels, snr=(0.5, 4.0), seed=0,
                                   progress=False)
    feats = dict(extract(model, images, layers, progress=False))
    ft = FactorTopy(layers, random_state=0, progress=False, **params).fit(feats, brain)
    return ft, brain, truth


@pytest.fixture(scope="module")
def plain_cnn_fit():
    # a fit on 2,000 stimuli takes minutes on 2 shared cores: the three tests using it run in the
    # slow lane (what they assert needs the 2,000 stimuli, see below)
    # 2,000 stimuli (NSD: about 10,000 per subject): with 240, ridge at the TRUE position and
    # scale picks the right layer for only about 0.8 of voxels, with 2,000 for about 0.97
    model = _PlainCNN().eval()
    return _recovery(model, ["stages.s1", "stages.s2", "stages.s3", "stages.s4"], n_images=2000, size=64,
                     n_voxels=240, d=16, batch_size=16, max_epochs=6, warmup_epochs=2, anneal_epochs=4,
                     patience=3, lr=3e-3, temperature=(30.0, 30.0), entropy_weight=0.0)


@pytest.mark.slow
def test_hierarchy_slope_positive_for_ordered_truth_and_null_for_shuffled_rois(plain_cnn_fit):
    ft, brain, _ = plain_cnn_fit
    slope = ft.hierarchy_slope()
    shuffled = ft.hierarchy_slope(roi=np.random.default_rng(1).permutation(brain.unit_info["roi"]))
    assert slope > 0.15, f"hierarchy slope {slope:.2f} for an ordered truth"
    assert abs(shuffled) < 0.1, f"hierarchy slope {shuffled:.2f} with shuffled ROI labels"
    assert slope > 2 * abs(shuffled)


@pytest.mark.slow
def test_recovers_position_of_shallow_voxels(plain_cnn_fit):
    ft, _, truth = plain_cnn_fit
    error = np.linalg.norm(ft.space_ - truth["position"], axis=1)
    v1 = truth["layer"] == 0
    assert np.median(error[v1]) <= 0.15, f"median V1 position error {np.median(error[v1]):.3f}"
    assert np.median(error) < 0.25


@pytest.mark.slow
def test_recovers_layer_of_simulated_voxels_done_when(plain_cnn_fit):
    ft, brain, truth = plain_cnn_fit
    good = truth["snr"] >= 1.0
    accuracy = float((ft.best_layer_ == truth["layer"])[good].mean())
    pos_error = float(np.median(np.linalg.norm(ft.space_ - truth["position"], axis=1)))
    assert accuracy >= 0.8, f"layer recovered for {accuracy:.2f} of voxels with SNR >= 1"
    assert pos_error <= 0.15, f"median position error {pos_error:.3f}"


def _recovery_matrix():
    """The simulation matrix script (experiments/factortopy_recovery_matrix.py), imported from its file."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "experiments" / "factortopy_recovery_matrix.py"
    spec = importlib.util.spec_from_file_location("factortopy_recovery_matrix", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_recovers_resnet18_point_readouts_of_an_independent_simulation():
    # the setting where layer2 (128 channels = D) used to lose its voxels (0.53 overall, layer2 12/111):
    # ResNet-18, 96 px, voxels reading one block at a random location by bilinear sampling; defaults only
    # (SNR 0.5-4 here). The oracle (ridge at the TRUE position and scale, run by the matrix script,
    # too slow for this test) gets 0.99 on this cell; FactorTopy got 0.91 (1.00 0.71 0.93 1.00) with the
    # ridge-fit position start and 0.96 (1.00 0.93 0.93 1.00) with the ridge's variance floor as well
    # (docs/factortopy.md, fourth and fifth pass).
    matrix = _recovery_matrix()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no layer may be flagged as uniformly weak
        rec = matrix.run_cell("resnet18", 96, "point", 600, n_voxels=240, oracle=False)
    assert rec["accuracy"] >= 0.75, f"layer recovered for {rec['accuracy']:.2f} of voxels with SNR >= 1: {rec}"
    assert min(rec["per_layer"]) >= 0.6, f"per-layer recovery {rec['per_layer']}: {rec}"
    assert rec["slope"] > 0.3, f"hierarchy slope {rec['slope']:.2f}"


# ----------------------------------------------------------------------------- invariances and diagnostics
def test_same_data_in_another_row_order_gives_the_same_maps():
    feats, brain = _tiny(n_stim=48)
    perm = np.random.default_rng(5).permutation(brain.n_stimuli)
    shuffled_brain = BrainData(brain.responses[perm], brain.stimulus_ids[perm], brain.unit_info)
    a = _quick(random_state=2).fit(feats, brain)
    b = _quick(random_state=2).fit({k: v[perm] for k, v in feats.items()}, shuffled_brain)
    # the same stimuli (by id) are held out, whatever their rows
    np.testing.assert_array_equal(np.sort(brain.stimulus_ids[a.val_index_]),
                                  np.sort(shuffled_brain.stimulus_ids[b.val_index_]))
    np.testing.assert_allclose(a.layer_probs_, b.layer_probs_, atol=1e-5)
    np.testing.assert_allclose(a.space_layers_, b.space_layers_, atol=1e-5)
    np.testing.assert_allclose(a.cv_r_, b.cv_r_, atol=1e-5)
    np.testing.assert_allclose(a.predict(feats)[perm], b.predict({k: v[perm] for k, v in feats.items()}), atol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_features_fit_like_their_float32_values(dtype):
    feats, brain = _tiny()
    low = {k: v.to(dtype) for k, v in feats.items()}
    ref = _quick().fit({k: v.float() for k, v in low.items()}, brain)  # the same numbers, stored in float32
    got = _quick().fit(low, brain)
    assert np.isfinite(got.cv_r_).all() and np.isfinite(got.predict(low)).all()
    np.testing.assert_allclose(got.layer_probs_, ref.layer_probs_, atol=1e-5)
    np.testing.assert_allclose(got.cv_r_, ref.cv_r_, atol=1e-6)
    np.testing.assert_allclose(got.predict(low), ref.predict({k: v.float() for k, v in low.items()}), atol=1e-4)


def test_weak_layer_is_flagged_only_when_below_both_neighbours_for_nearly_all_voxels():
    from neuroreg.scoring.factortopy.diagnostics import choice_margin, weak_layers

    rng = np.random.default_rng(0)
    base = rng.uniform(0.5, 0.8, size=(200, 1))
    smooth = base - 0.05 * np.abs(np.arange(4)[None, :] - rng.integers(0, 4, size=(200, 1)))
    assert weak_layers(smooth, ["a", "b", "c", "d"]) == []
    dip = smooth.copy()
    dip[:, 1] -= 0.25  # the pattern: one layer about 0.25 below its neighbours everywhere
    flagged = weak_layers(dip, ["a", "b", "c", "d"])
    assert [f["layer"] for f in flagged] == ["b"] and flagged[0]["fraction_below"] == pytest.approx(1.0)
    np.testing.assert_allclose(choice_margin(np.array([[0.1, 0.5, 0.3], [0.2, 0.2, 0.9]])), [0.2, 0.7])
    with pytest.raises(ShapeError, match="cv_r must be"):
        weak_layers(dip, ["a", "b"])


def test_fit_warns_when_a_layer_is_uniformly_below_its_neighbours():
    # a middle layer of pure noise: no voxel reads it and its features carry nothing
    feats, brain = _tiny(n_stim=60)
    g = torch.Generator().manual_seed(1)
    signal = torch.randn(60, 6, 1, 1, generator=g).expand(-1, -1, 8, 8).contiguous()  # read anywhere
    noise = torch.randn(60, 6, 8, 8, generator=g)
    feats = {"a": signal, "noise": noise, "c": signal + torch.randn(60, 6, 8, 8, generator=g)}
    y = signal[:, :, 4, 4] @ torch.randn(6, brain.n_units, generator=g)
    brain = BrainData(y.double().numpy() + 0.1 * np.random.default_rng(0).normal(size=y.shape),
                      brain.stimulus_ids, brain.unit_info)
    with pytest.warns(RuntimeWarning, match="layer 'noise' has a lower cross-validated r"):
        ft = FactorTopy(["a", "noise", "c"], d=8, hidden=16, batch_size=16, max_epochs=2, warmup_epochs=1,
                        anneal_epochs=1, patience=1, progress=False).fit(feats, brain)
    assert [w["layer"] for w in ft.weak_layers_] == ["noise"]


def test_channel_alignment_starts_well_conditioned_for_every_layer_width():
    # the weak-layer cause: a square Gaussian B_l (C_l = D) has singular values near 0, so that
    # layer's read-out w_il B_l trains in only a few directions; tall, square and wide must all start at 1
    from neuroreg.scoring.factortopy import FactorTopyNet

    torch.manual_seed(0)
    net = FactorTopyNet([64, 128, 256], n_voxels=3, n_coord=4, d=128)
    for mat in net.align:
        sv = torch.linalg.svdvals(mat.detach())
        torch.testing.assert_close(sv, torch.ones_like(sv), atol=1e-5, rtol=0)
    gaussian = torch.randn(128, 128) / math.sqrt(128)  # the previous initialisation, for contrast
    assert torch.linalg.svdvals(gaussian).min() < 0.05


def test_correlation_peak_finds_the_pixel_a_voxel_reads():
    from neuroreg.scoring.factortopy.initialization import correlation_peaks

    g = torch.Generator().manual_seed(0)
    maps = torch.randn(300, 5, 6, 8, generator=g)
    rows, cols = torch.tensor([1, 4, 2]), torch.tensor([6, 0, 3])
    y = torch.stack([maps[:, :, r, c] @ torch.randn(5, generator=g) for r, c in zip(rows, cols)], 1)
    y = y + 0.3 * torch.randn(y.shape, generator=g)
    pos, height = correlation_peaks(lambda: ((np.arange(s, s + 50), [maps[s:s + 50]]) for s in range(0, 300, 50)),
                                    y, 3)
    expected = torch.stack([(2 * cols + 1) / 8 - 1, (2 * rows + 1) / 6 - 1], 1).float()
    assert pos.shape == (3, 1, 2) and height.shape == (3, 1)
    torch.testing.assert_close(pos[:, 0], expected, atol=0.5 / 6, rtol=0)  # within half a pixel


def test_ridge_peak_height_is_the_in_sample_fit_of_a_ridge_on_the_pixels_channels():
    # r' (R_p + alpha I)^-1 r is y . y_hat / n of a ridge (penalty alpha n) on the pixel's standardised
    # channels with z-scored y: checked against scikit-learn at every pixel
    from sklearn.linear_model import Ridge
    from sklearn.preprocessing import StandardScaler

    from neuroreg.scoring.factortopy.initialization import correlation_peaks

    g = torch.Generator().manual_seed(1)
    base = torch.randn(200, 1, 4, 5, generator=g)
    maps = base + 0.5 * torch.randn(200, 6, 4, 5, generator=g)  # correlated channels
    y = torch.stack([maps[:, :, 2, 3] @ torch.randn(6, generator=g), maps[:, :, 0, 1] @ torch.randn(6, generator=g)], 1)
    y = y + torch.randn(y.shape, generator=g)
    alpha = 0.3
    _, height = correlation_peaks(lambda: ((np.arange(s, s + 40), [maps[s:s + 40]]) for s in range(0, 200, 40)),
                                  y, 2, alpha=alpha)
    for v in range(2):
        yz = (y[:, v] - y[:, v].mean()) / y[:, v].std(unbiased=False)
        fits = []
        for r in range(4):
            for c in range(5):
                x = StandardScaler().fit_transform(maps[:, :, r, c].double().numpy())
                pred = Ridge(alpha=alpha * 200).fit(x, yz.double().numpy()).predict(x)
                fits.append(float((yz.double().numpy() * pred).mean()))
        assert float(height[v, 0]) == pytest.approx(max(fits), rel=1e-6)


def test_ridge_peak_locates_point_readouts_of_a_resnet_block_closer_than_summed_correlations():
    # the 128 channels of a random ResNet-18's layer2 on natural images are strongly correlated:
    # treating them as independent (alpha=None) broadens the map and moves its peak about a pixel
    # off; the per-pixel ridge fit finds the point read (the weak-layer case of docs/factortopy.md)
    from neuroreg.features.extraction import extract
    from neuroreg.scoring.factortopy.initialization import correlation_peaks

    matrix = _recovery_matrix()
    model, _ = matrix.make_model("resnet18")
    maps = extract(model, matrix.make_stimuli(400, 64, seed=0), ["layer2"], progress=False)["layer2"].float()
    maps = (maps - maps.mean((0, 2, 3), keepdim=True)) / maps.std((0, 2, 3), keepdim=True).clamp_min(1e-6)
    rng = np.random.default_rng(0)
    pos = torch.as_tensor(rng.uniform(-0.8, 0.8, size=(40, 2)), dtype=torch.float32)
    grid = pos[None, :, None, :].expand(len(maps), -1, -1, -1)
    signal = torch.einsum("bcv,vc->bv", F.grid_sample(maps, grid, align_corners=False)[..., 0],
                          torch.as_tensor(rng.normal(size=(40, maps.shape[1])), dtype=torch.float32))
    y = signal / signal.std(0) + 0.5 * torch.as_tensor(rng.normal(size=signal.shape), dtype=torch.float32)

    def batches():
        return ((np.arange(s, s + 100), [maps[s:s + 100]]) for s in range(0, len(maps), 100))

    err = {}
    for alpha in (None, 0.1):
        peaks, _ = correlation_peaks(batches, y, 40, alpha=alpha)
        err[alpha] = float((peaks[:, 0] - pos).norm(dim=1).median())
    pixel = 2 / maps.shape[-1]
    assert err[0.1] < 0.5 * pixel, err
    assert err[0.1] < 0.5 * err[None], err


def test_peak_alpha_is_checked():
    feats, brain = _tiny()
    for bad in (0, -1.0, True):
        with pytest.raises(ValueError, match="peak_alpha"):
            _quick(peak_alpha=bad).fit(feats, brain)
    with pytest.raises(ValueError, match="alpha"):
        from neuroreg.scoring.factortopy.initialization import correlation_peaks
        correlation_peaks(lambda: iter([(np.arange(3), [torch.zeros(3, 1, 2, 2)])]), torch.zeros(3, 1), 1, alpha=0.0)


def test_ridge_var_floor_is_checked_and_reaches_the_layer_choice():
    feats, brain = _tiny()
    for bad in (-1e-3, "x", None, True):
        with pytest.raises(ValueError, match="ridge_var_floor"):
            _quick(ridge_var_floor=bad).fit(feats, brain)
    plain = _quick(random_state=0).fit(feats, brain)
    floored = _quick(random_state=0, ridge_var_floor=1e9).fit(feats, brain)     # every feature at the mean variance
    assert plain.cv_r_.shape == floored.cv_r_.shape
    assert not np.allclose(plain.cv_r_, floored.cv_r_)


def test_is_a_sklearn_estimator_clone_and_params():
    from sklearn.base import BaseEstimator, clone

    est = _quick(ridge_alpha=(0.1, 1.0), temperature=(1.0, 0.5))
    assert isinstance(est, BaseEstimator)
    params = est.get_params()
    assert params["layers"] == ["a", "b"] and params["d"] == 8 and params["ridge_alpha"] == (0.1, 1.0)
    copy = clone(est)
    assert copy is not est and copy.get_params() == params
    feats, brain = _tiny()
    est.fit(feats, brain)
    fresh = clone(est)
    assert not hasattr(fresh, "layer_probs_")  # a clone is unfitted
    assert est.set_params(d=4) is est and est.d == 4
    with pytest.raises(ValueError, match="Invalid parameter"):
        est.set_params(not_a_param=1)
    assert "FactorTopy(" in repr(est)


def test_random_state_seeds_the_fit_and_seed_is_not_a_parameter():
    feats, brain = _tiny()
    a = _quick(random_state=3).fit(feats, brain)
    b = _quick(random_state=3).fit(feats, brain)
    other = _quick(random_state=0).fit(feats, brain)
    np.testing.assert_array_equal(a.layer_probs_, b.layer_probs_)
    assert not np.array_equal(a.val_r_, other.val_r_)
    assert "seed" not in FactorTopy(["a", "b"]).get_params()
    with pytest.raises(TypeError, match="seed"):
        FactorTopy(["a", "b"], seed=3)


def test_use_before_fit_raises_not_fitted_error():
    feats, _ = _tiny()
    ft = FactorTopy(["a", "b"])
    for use in (lambda: ft.predict(feats), lambda: ft.best_layer_, ft.hierarchy_slope, ft.summary):
        with pytest.raises(NotFittedError, match="FactorTopy"):
            use()
    with pytest.raises(NotFittedError):
        compare_factortopy(ft, ft)


def test_r2_is_sklearns_r2_of_the_predictions_on_the_validation_stimuli():
    from sklearn.metrics import r2_score

    feats, brain = _tiny()
    ft = _quick().fit(feats, brain)
    val = ft.val_index_
    # R^2 does not change when truth and prediction get the same affine map per voxel (the z-scoring)
    want = r2_score(brain.responses[val], ft.predict(feats)[val], multioutput="raw_values")
    np.testing.assert_allclose(ft.r2_, want, atol=1e-5)


def test_temperature_is_annealed_geometrically_then_held():
    from neuroreg.scoring.factortopy.training import temperature_at

    assert temperature_at((1.0, 0.2), 6, 0) == 1.0
    assert temperature_at((1.0, 0.2), 6, 3) == pytest.approx(0.2 ** 0.5, rel=1e-12)
    assert temperature_at((1.0, 0.2), 6, 6) == pytest.approx(0.2, rel=1e-12)
    assert temperature_at((1.0, 0.2), 6, 20) == pytest.approx(0.2, rel=1e-12)
    assert temperature_at((1.0, 0.2), 0, 0) == pytest.approx(0.2, rel=1e-12)  # no annealing: the end at once


def test_a_refit_keeps_nothing_of_the_previous_fit():
    feats, brain = _tiny()
    ft = _quick().fit(feats, brain)
    assert hasattr(ft, "space_layers_") and hasattr(ft, "init_space_")
    ft.set_params(per_layer_space=False, position_init="centre").fit(feats, brain)
    assert not hasattr(ft, "space_layers_") and not hasattr(ft, "init_space_")
    fresh = _quick(per_layer_space=False, position_init="centre").fit(feats, brain)
    np.testing.assert_array_equal(ft.layer_probs_, fresh.layer_probs_)
    np.testing.assert_array_equal(ft.predict(feats), fresh.predict(feats))


def test_ridge_statistics_give_every_penalty_of_a_grid_at_once():
    from neuroreg.scoring.factortopy.ridge import _RidgeStats

    rng = np.random.default_rng(3)
    x = torch.as_tensor(rng.normal(size=(90, 7, 5)))
    y = torch.as_tensor(rng.normal(size=(90, 7)) + x[:, :, 0].numpy())
    folds = rng.permutation(90) % 4
    stats = _RidgeStats(7, 5, 4, "cpu", dtype=torch.float64)
    for f in range(4):
        stats.add(f, x[folds == f], y[folds == f])
    alphas = [1e-3, 0.1, 10.0]
    grid = stats.cv_r(alphas, block=3, var_floor=1e-2)
    assert grid.shape == (3, 7)
    for i, a in enumerate(alphas):
        torch.testing.assert_close(grid[i], ridge_cv_r(x, y, folds, a, var_floor=1e-2), atol=1e-10, rtol=0)
    assert not torch.allclose(grid[0], grid[2])  # the penalties do differ


@pytest.mark.parametrize("n_voxels", [5, 100_000])  # few voxels fold B_l into the weights, many align the table
def test_cached_pyramids_give_the_read_out_and_gradients_of_per_batch_pyramids(n_voxels):
    from neuroreg.scoring.factortopy.pooling import _layer_terms, _prepare_layers, pyramid_rows

    g = torch.Generator().manual_seed(0)
    maps = [torch.randn(7, 3, 6, 5, generator=g, dtype=torch.float64),
            torch.randn(7, 9, 4, 4, generator=g, dtype=torch.float64)]  # C_l > D = 4 for the second
    align = [torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True),
             torch.randn(4, 9, generator=g, dtype=torch.float64, requires_grad=True)]
    level_std = [torch.rand(m.shape[1], N_LEVELS, generator=g, dtype=torch.float64) + 0.5 for m in maps]
    cache = [pyramid_rows(m, s) for m, s in zip(maps, level_std)]  # every stimulus, divided by the level SDs
    rows = torch.tensor([5, 1, 3])
    space = (torch.rand(5, 2, 2, generator=g, dtype=torch.float64) * 2 - 1).requires_grad_(True)
    scale = torch.rand(5, 2, generator=g, dtype=torch.float64).requires_grad_(True)
    weights = torch.randn(5, 2, 4, generator=g, dtype=torch.float64)

    def read(**kw):
        prepared = _prepare_layers([m[rows] for m in maps], align, "gaussian", level_std, n_voxels=n_voxels, **kw)
        out = torch.stack(_layer_terms(prepared, align, space, scale, weights))
        return out, torch.autograd.grad(out.square().sum(), [space, scale, *align])

    got, got_grads = read(cache=cache, index=rows)
    want, want_grads = read()
    torch.testing.assert_close(got, want, atol=1e-10, rtol=1e-10)
    for a, b in zip(got_grads, want_grads):
        torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-9)


def test_pyramid_cache_keeps_the_layers_that_fit_shallow_first():
    from neuroreg.scoring.factortopy.statistics import plan_cache

    shapes = [(64, 24, 24), (128, 12, 12), (256, 6, 6)]
    per = [4 * 10 * N_LEVELS * h * w * c for c, h, w in shapes]   # bytes per layer for 10 stimuli
    assert plan_cache(shapes, 10, sum(per)) == [True, True, True]
    assert plan_cache(shapes, 10, per[1] + per[2]) == [False, True, True]
    assert plan_cache(shapes, 10, 0) == [False, False, False]
    with pytest.raises(ValueError, match="pyramid_cache"):
        FactorTopy(["a", "b"], pyramid_cache=-1).fit({"a": torch.zeros(4, 1), "b": torch.zeros(4, 1)},
                                                    BrainData(np.random.default_rng(0).normal(size=(4, 2)), np.arange(4),
                                                              {"coords": np.zeros((2, 2))}))


def test_a_fit_without_cached_pyramids_gives_the_same_maps_and_frees_the_cache():
    feats, brain = _tiny()
    cached = _quick().fit(feats, brain)
    plain = _quick(pyramid_cache=0).fit(feats, brain)
    assert not hasattr(cached, "_cache")  # the fit's pyramids are not kept by the fitted estimator
    np.testing.assert_allclose(cached.cv_r_, plain.cv_r_, atol=1e-4)
    np.testing.assert_allclose(cached.space_layers_, plain.space_layers_, atol=1e-4)
    np.testing.assert_array_equal(cached.best_layer_, plain.best_layer_)
    np.testing.assert_allclose(cached.predict(feats), plain.predict(feats), atol=1e-4)
