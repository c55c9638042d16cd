"""simulate_voxels: truth fields, the generative model, geometry, noise ceiling and layer recovery."""

import numpy as np
import pytest
import torch
from scipy.stats import pearsonr
from sklearn.linear_model import RidgeCV
from torch import nn

from neuroreg.brain import BrainData
from neuroreg.features import simulate_voxels
from neuroreg.errors import ShapeError, UnknownNameError
from neuroreg.features.extraction import extract

from fixtures import reference as ref


LAYERS = ref.LAYERS


@pytest.fixture(scope="module")
def net():
    return ref.SmallConvNet(seed=0)


@pytest.fixture(scope="module")
def images():
    return ref.pink_noise_images(600, size=32, seed=0)


@pytest.fixture(scope="module")
def feats(net, images):
    return extract(net, images, LAYERS, progress=False)


@pytest.fixture(scope="module")
def sim(net, images):
    return simulate_voxels(net, images, layers=LAYERS, n_voxels=200, snr=(0.3, 6.0), repeats=4, seed=0,
                           batch_size=128, progress=False)


# ------------------------------------------------------------------ contract
def test_returns_braindata_and_truth_with_documented_fields(sim, images):
    brain, truth = sim
    n, v = 600, 200
    assert isinstance(brain, BrainData)
    assert brain.responses.shape == (n, v) and brain.trials.shape == (4, n, v)
    np.testing.assert_allclose(brain.responses, brain.trials.mean(0))
    for key in ("layer", "layer_name", "position", "scale", "snr", "ceiling", "roi"):
        assert len(truth[key]) == v, key
    assert len(truth["weights"]) == v
    channels = {0: 16, 1: 32, 2: 64, 3: 128}
    assert all(len(w) == channels[l] for w, l in zip(truth["weights"], truth["layer"]))
    assert list(truth["layer_name"][:3]) == [LAYERS[i] for i in truth["layer"][:3]]
    assert truth["position"].shape == (v, 2) and np.abs(truth["position"]).max() <= 1
    assert ((truth["scale"] > 0) & (truth["scale"] <= 1)).all()
    assert brain.unit_info["coords"].shape == (v, 2) and np.abs(brain.unit_info["coords"]).max() <= 1
    np.testing.assert_array_equal(brain.unit_info["roi"], truth["roi"])
    np.testing.assert_allclose(brain.unit_info["ncsnr"], np.sqrt(truth["snr"]))
    assert truth["snr"].min() >= 0.3 and truth["snr"].max() <= 6.0
    assert [int((truth["roi"] == r).sum()) for r in ("V1", "V2V3", "OPA", "EBA")] == [50, 50, 50, 50]


def test_signal_is_the_documented_gaussian_weighted_readout(sim, feats):
    """Recompute s_v = sum_c w_c sum_p g(p) F[c, p] with numpy from the truth fields."""
    _, truth = sim
    for v in [0, 60, 120, 190]:
        fmap = feats[LAYERS[truth["layer"][v]]].double().numpy()        # (n, C, H, W)
        _, _, h, w = fmap.shape
        xs = (2 * np.arange(w) + 1) / w - 1
        ys = (2 * np.arange(h) + 1) / h - 1
        px, py = truth["position"][v]
        sd = 2 * truth["scale"][v]
        g = np.exp(-((xs[None, :] - px) ** 2 + (ys[:, None] - py) ** 2) / (2 * sd ** 2))
        g /= g.sum()
        s = np.einsum("nchw,hw,c->n", fmap, g, truth["weights"][v])
        s = (s - s.mean()) / s.std()
        np.testing.assert_allclose(truth["signal"][:, v], s, atol=1e-6)


def test_position_follows_grid_sample_convention():
    """A voxel at x = -0.9 (left) prefers an image bright on the left; y = -0.9 is the top."""
    model = nn.Sequential(nn.Identity())
    img = torch.zeros(4, 3, 16, 16)
    img[0, :, :, :4] = 1   # left
    img[1, :, :, -4:] = 1  # right
    img[2, :, :4, :] = 1   # top
    img[3, :, -4:, :] = 1  # bottom
    brain, truth = simulate_voxels(model, img, rois=("A", "B"), layers=["0"], n_voxels=400, snr=1.0,
                                   weights="positive", seed=0, progress=False)
    s, pos = truth["signal"], truth["position"]
    left, right = pos[:, 0] < -0.6, pos[:, 0] > 0.6
    top, bottom = pos[:, 1] < -0.6, pos[:, 1] > 0.6
    assert (s[0, left] > s[1, left]).all() and (s[1, right] > s[0, right]).all()
    assert (s[2, top] > s[3, top]).all() and (s[3, bottom] > s[2, bottom]).all()


# ------------------------------------------------------------------ geometry
def test_rois_are_contiguous_bands_and_depth_increases(sim):
    brain, truth = sim
    x = brain.unit_info["coords"][:, 0]
    for k, roi in enumerate(("V1", "V2V3", "OPA", "EBA")):
        in_roi = truth["roi"] == roi
        assert x[in_roi].min() >= -1 + 0.5 * k - 1e-12 and x[in_roi].max() <= -1 + 0.5 * (k + 1) + 1e-12
        assert (truth["layer"][in_roi] == k).all()  # 4 ROIs, 4 layers: one each, shallow to deep
    mean_scale = [truth["scale"][truth["layer"] == k].mean() for k in range(4)]
    assert np.all(np.diff(mean_scale) > 0), mean_scale


def test_positions_vary_smoothly_on_the_sheet(sim):
    brain, truth = sim
    coords, pos = brain.unit_info["coords"], truth["position"]
    d_sheet = np.linalg.norm(coords[:, None] - coords[None], axis=-1)
    np.fill_diagonal(d_sheet, np.inf)
    nn_idx = d_sheet.argmin(1)
    d_pos_nn = np.linalg.norm(pos - pos[nn_idx], axis=1)
    rng = np.random.default_rng(0)
    d_pos_random = np.linalg.norm(pos - pos[rng.permutation(len(pos))], axis=1)
    # Lipschitz bound of the documented map (0.9 * 4 bands across x, 0.9 along y) holds for neighbours.
    assert (d_pos_nn <= 3.6 * d_sheet[np.arange(len(pos)), nn_idx] + 1e-9).all()
    assert np.median(d_pos_nn) < 0.25 * np.median(d_pos_random)


def test_dict_rois_and_counts(net, images):
    brain, truth = simulate_voxels(net, images[:40], rois={"early": ["relu1", "relu2"], "late": "relu4"},
                                   n_voxels={"early": 30, "late": 10}, seed=1, progress=False)
    assert truth["layers"] == ["relu1", "relu2", "relu4"]
    assert set(truth["layer"][truth["roi"] == "early"]) == {0, 1}
    assert set(truth["layer"][truth["roi"] == "late"]) == {2}
    early = truth["roi"] == "early"
    x = brain.unit_info["coords"][early, 0]
    # The two early layers sit in sub-bands, shallow first along x.
    assert x[truth["layer"][early] == 0].max() <= x[truth["layer"][early] == 1].min()


# ------------------------------------------------------------------ determinism
def test_same_seed_same_numbers_for_any_batch_size_and_input_type(net, images):
    kw = dict(layers=LAYERS, n_voxels=40, snr=(0.5, 2.0), repeats=2, progress=False)
    a, ta = simulate_voxels(net, images[:50], seed=3, batch_size=50, **kw)
    b, tb = simulate_voxels(net, torch.utils.data.TensorDataset(images[:50]), seed=3, batch_size=7, **kw)
    c, _ = simulate_voxels(net, images[:50], seed=4, **kw)
    np.testing.assert_allclose(a.trials, b.trials, atol=1e-4)  # float32 convs differ by batch
    np.testing.assert_array_equal(ta["position"], tb["position"])
    assert not np.allclose(a.trials, c.trials)


def test_uint8_images_and_image_size(net):
    imgs = (ref.pink_noise_images(12, size=48, seed=2).permute(0, 2, 3, 1).numpy() * 255).astype(np.uint8)
    brain, truth = simulate_voxels(net, imgs, layers=LAYERS, n_voxels=8, image_size=32, progress=False)
    assert brain.responses.shape == (12, 8)
    feats = extract(net, torch.rand(1, 3, 32, 32), LAYERS, progress=False)
    assert len(truth["weights"][-1]) == feats[LAYERS[truth["layer"][-1]]].shape[1]


def test_torchvision_resnet18_structure():
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    imgs = ref.pink_noise_images(6, size=64, seed=0)
    brain, truth = simulate_voxels(model, imgs, n_voxels=16, progress=False)  # layers from the area map
    assert truth["layers"] == ["layer1", "layer2", "layer3", "layer4"]
    assert brain.n_units == 16
    assert sorted({len(w) for w in truth["weights"]}) == [64, 128, 256, 512]


# ------------------------------------------------------------------ noise ceiling
def test_ceiling_formula_matches_analytic_values():
    from neuroreg.features import expected_split_half_ceiling
    # R snr / (R snr + 1): snr 1 with 3 repeats -> 3/4; snr 0.5 with 2 repeats -> 1/2.
    np.testing.assert_allclose(expected_split_half_ceiling([1.0, 0.5], 3), [0.75, 0.6])
    np.testing.assert_allclose(expected_split_half_ceiling(0.5, 2), 0.5)


def test_measured_split_half_ceiling_matches_truth(sim):
    brain, truth = sim
    t = brain.trials
    half_a, half_b = t[[0, 2]].mean(0), t[[1, 3]].mean(0)
    r = np.array([pearsonr(half_a[:, v], half_b[:, v])[0] for v in range(t.shape[2])])
    spearman_brown = 2 * r / (1 + r)
    err = spearman_brown - truth["ceiling"]
    assert np.abs(err.mean()) < 0.02
    assert np.abs(err).mean() < 0.05
    scoring = pytest.importorskip("neuroreg.scoring")
    if hasattr(scoring, "split_half_ceiling"):  # the scoring core's estimator agrees with the truth too
        measured = scoring.split_half_ceiling(t, n_splits=3, seed=0).per_unit
        assert np.abs(measured - truth["ceiling"]).mean() < 0.05
    # Noise variance per single trial is 1 / snr (signal variance 1).
    noise_var = (t - truth["signal"][None]).var(axis=(0, 1))
    np.testing.assert_allclose(noise_var * truth["snr"], 1.0, atol=0.15)


# ------------------------------------------------------------------ layer recovery
def _layer_scores(feats, responses, fit_predict):
    n = responses.shape[0]
    train, test = np.arange(0, n, 2), np.arange(1, n, 2)
    scores = []
    for layer in LAYERS:
        x = feats[layer].flatten(1).double().numpy()
        x = x - x[train].mean(0)
        x /= np.sqrt((x[train] ** 2).sum(1).mean())  # one scale per layer keeps the ridge prior isotropic
        pred = fit_predict(x[train], responses[train], x[test])
        p, y = pred - pred.mean(0), responses[test] - responses[test].mean(0)
        scores.append((p * y).sum(0) / np.sqrt((p ** 2).sum(0) * (y ** 2).sum(0)))
    return np.array(scores)


def test_encoding_recovers_true_layer_for_high_snr_voxels_sklearn(sim, feats):
    brain, truth = sim

    def fit_predict(xtr, ytr, xte):
        return RidgeCV(alphas=np.logspace(-3, 5, 9), alpha_per_target=True).fit(xtr, ytr).predict(xte)

    high = truth["snr"] >= 2.0
    assert high.sum() >= 40
    best = _layer_scores(feats, brain.responses[:, high], fit_predict).argmax(0)
    assert (best == truth["layer"][high]).mean() >= 0.9


def test_encoding_recovers_true_layer_for_high_snr_voxels_neuroreg(sim, feats):
    scoring = pytest.importorskip("neuroreg.scoring")
    if not hasattr(scoring, "RidgeGCV"):
        pytest.skip("neuroreg.scoring.RidgeGCV is not available in this build")
    brain, truth = sim

    def fit_predict(xtr, ytr, xte):
        model = scoring.RidgeGCV(alphas=np.logspace(-3, 5, 9), alpha_per_target=True).fit(xtr, ytr)
        return np.asarray(model.predict(xte))

    high = truth["snr"] >= 2.0
    best = _layer_scores(feats, brain.responses[:, high], fit_predict).argmax(0)
    assert (best == truth["layer"][high]).mean() >= 0.9


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize("kw, err, match", [
    (dict(snr=0.0), ValueError, "snr"),
    (dict(snr=(2.0, 1.0)), ValueError, "snr"),
    (dict(repeats=0), ValueError, "repeats"),
    (dict(n_voxels=3), ValueError, "n_voxels=3"),
    (dict(weights="uniform"), ValueError, "weights"),
    (dict(rois={"V1": "nope"}), UnknownNameError, "nope"),
    (dict(n_voxels={"V7": 3}), UnknownNameError, "V7"),
])
def test_rejects_bad_arguments(net, images, kw, err, match):
    kw = {"layers": LAYERS, **kw} if "rois" not in kw else {"layers": LAYERS, **kw}
    with pytest.raises(err, match=match):
        simulate_voxels(net, images[:8], progress=False, **kw)


def test_rejects_bad_stimuli_and_unknown_layer(net):
    with pytest.raises(ShapeError, match="4-D"):
        simulate_voxels(net, torch.rand(3, 32, 32), layers=LAYERS, progress=False)
    with pytest.raises(UnknownNameError, match="layer9"):
        simulate_voxels(net, torch.rand(4, 3, 32, 32), layers=["layer9"], n_voxels=4, progress=False)


def test_layers_required_without_an_area_map(net):
    with pytest.raises(ValueError, match="layers="):
        simulate_voxels(net, torch.rand(4, 3, 32, 32), n_voxels=4, progress=False)


def test_constant_readout_is_an_error(net):
    with pytest.raises(ValueError, match="no signal variance"):
        simulate_voxels(net, torch.zeros(5, 3, 32, 32), layers=LAYERS, n_voxels=4, progress=False)


def test_folder_stimuli_give_path_ids(net, tmp_path):
    from PIL import Image
    imgs = (ref.pink_noise_images(5, size=32, seed=4).permute(0, 2, 3, 1).numpy() * 255).astype(np.uint8)
    for k, img in enumerate(imgs):
        Image.fromarray(img).save(tmp_path / f"s{k}.png")
    brain, _ = simulate_voxels(net, tmp_path, layers=LAYERS, n_voxels=8, progress=False)
    np.testing.assert_array_equal(brain.stimulus_ids, [f"s{k}.png" for k in range(5)])
    same, _ = simulate_voxels(net, imgs, layers=LAYERS, n_voxels=8, progress=False)
    np.testing.assert_allclose(brain.trials, same.trials, atol=1e-4)


def test_versa_best_layer_per_roi_is_the_true_layer(sim, feats):
    scoring = pytest.importorskip("neuroreg.scoring")
    if not hasattr(scoring, "versa"):
        pytest.skip("neuroreg.scoring.versa is not available in this build")
    brain, truth = sim
    high = brain.take_units(np.flatnonzero(truth["snr"] >= 1.0))
    table = scoring.versa(feats, high, srp_dim=None, progress=False).to_pandas()
    best = table[table.is_best & (table.metric == "versa") & (table.split == "test")].set_index("region")["layer"]
    assert best.to_dict() == {"V1": "relu1", "V2V3": "relu2", "OPA": "relu3", "EBA": "relu4"}
