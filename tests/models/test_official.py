"""neuroreg's models against outputs of the official code (dicarlolab/vonenet, dicarlolab/CORnet).

The fixtures were produced once by experiments/make_official_fixtures.py from
checkouts of the two repositories (commits stored in each file); the same
weights and inputs go through our models here.
"""

import json
import math

import numpy as np
import pytest
import torch

import neuroreg as nr
from neuroreg.errors import CheckpointError
from neuroreg.models import VOneBlock

from _official import load, last_outputs, rel_diff, write_official_checkpoint

VONE_TOL = 1e-4      # VOneBlock, simple and complex outputs
MODEL_TOL = 1e-5     # CORnet-Z/R/S and the VOneNets


def _params(fx):
    return {"sf": fx["sf"], "theta": fx["theta_deg"] / 180 * np.pi, "phase": fx["phase_deg"] / 180 * np.pi,
            "nx": fx["nx"], "ny": fx["ny"]}


def _block_from_fixture(fx, **kw):
    p = {k: torch.from_numpy(v) for k, v in _params(fx).items()}
    return VOneBlock.from_params(**p, simple_channels=int(fx["simple_channels"]),
                                 complex_channels=int(fx["complex_channels"]), channel=fx["colour_q0"],
                                 channel_q1=fx["colour_q1"], image_size=int(fx["image_size"]),
                                 visual_degrees=float(fx["visual_degrees"]), **kw)


# ----------------------------------------------------------------------------- VOneBlock
def test_fixtures_name_the_official_commits():
    fx = load("vone_block")
    assert len(str(fx["vonenet_commit"])) == 40 and len(str(fx["cornet_commit"])) == 40


def test_vone_block_kernels_match_the_official_bank():
    fx = load("vone_block")
    block = _block_from_fixture(fx, noise_mode=None)
    n = block.out_channels
    assert rel_diff(block.weight[:n, 0], fx["kernels_q0"]) <= 1e-6
    assert rel_diff(block.weight[n:, 0], fx["kernels_q1"][block.simple_channels:]) <= 1e-6


@pytest.mark.parametrize("mode, key, scale, level", [
    (None, "output_clean", 0.35, 0.07),
    ("neuronal", "output_neuronal_seed7", 0.35, 0.07),
    ("gaussian", "output_gaussian_seed8", 0.5, 0.0)])
def test_vone_block_outputs_match_the_official_block(mode, key, scale, level):
    fx = load("vone_block")
    block = _block_from_fixture(fx, noise_mode=mode, noise_scale=scale, noise_level=level)
    if mode is not None:
        block.fix_noise(batch_size=2, seed=7 if mode == "neuronal" else 8)
    out = block(torch.from_numpy(fx["input"]))
    s = block.simple_channels
    assert rel_diff(out[:, :s], fx[key][:, :s]) <= VONE_TOL          # simple cells
    assert rel_diff(out[:, s:], fx[key][:, s:]) <= VONE_TOL          # complex cells
    block.unfix_noise()
    if mode is not None:
        assert not torch.equal(block(torch.from_numpy(fx["input"])), out)


def test_official_rng_reproduces_the_seeded_small_block():
    fx = load("vone_block")
    block = VOneBlock(seed=int(fx["gabor_seed"]), rng="official", simple_channels=16, complex_channels=16,
                      image_size=64, visual_degrees=2.0, noise_mode=None)
    assert rel_diff(block(torch.from_numpy(fx["input"])), fx["output_clean"]) <= VONE_TOL


@pytest.mark.parametrize("seed", [0, 3])
def test_official_rng_reproduces_the_published_bank(seed):
    fx = load(f"vone_bank_seed{seed}")
    block = VOneBlock(seed=seed, rng="official", noise_mode=None)     # 256 + 256 channels, 224 px, 8 deg
    ref = _params(fx)
    for k in ("theta", "phase"):                  # plain uniform draws through np.interp: identical
        assert np.array_equal(block._params64[k].numpy(), ref[k]), k
    # sf, nx, ny pass through numpy's vectorised power, multivariate_normal (an SVD) and norm.cdf, whose
    # last bit may differ between numpy/scipy builds and CPUs: same draws, equal to float64 rounding
    for k in ("sf", "nx", "ny"):
        np.testing.assert_allclose(block._params64[k].numpy(), ref[k], rtol=1e-14, atol=0, err_msg=k)
    assert np.array_equal(block.channel.numpy(), fx["colour_q0"])
    assert np.array_equal(block.channel_q1.numpy(), fx["colour_q1"][256:])
    assert rel_diff(block.weight[:8, 0], fx["kernels_q0_first"]) <= 1e-6
    assert rel_diff(block.weight[512:520, 0], fx["kernels_q1_complex_first"]) <= 1e-6


def test_vone_resnet50_with_official_rng_has_the_official_untrained_bank():
    fx = load("vone_bank_seed0")
    model = nr.create_model("vone_resnet50", gabor_seed=0, rng="official", noise_mode="none")
    assert np.array_equal(model.vone_block.channel_q1.numpy(), fx["colour_q1"][256:])
    assert rel_diff(model.vone_block.weight[:8, 0], fx["kernels_q0_first"]) <= 1e-6


def test_quadrature_filters_draw_their_own_colour():
    fx = load("vone_bank_seed0")
    block = VOneBlock(seed=0, noise_mode=None)
    assert not torch.equal(block.channel[256:], block.channel_q1)   # two draws, as the original
    agree = float((torch.from_numpy(fx["colour_q0"][256:]) == torch.from_numpy(fx["colour_q1"][256:])).float().mean())
    assert agree < 0.6                                              # about 1/3 for independent draws


# ----------------------------------------------------------------------------- orientation convention
def _gratings_rows_cols(theta, sf_cpp, phases, size):
    """The official convention: luminance cos(2 pi f (row cos(theta) + col sin(theta)) + phase).

    sf_cpp: (units,) cycles/pixel; phases: (p,). Returns (units, p, size, size)."""
    c = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    row, col = torch.meshgrid(c, c, indexing="ij")
    carrier = 2 * math.pi * sf_cpp[:, None, None, None] * (row * math.cos(theta) + col * math.sin(theta))
    return torch.cos(carrier + phases[None, :, None, None])


def test_each_sampled_unit_prefers_its_orientation_in_the_official_convention():
    fx = load("vone_bank_seed0")
    block = VOneBlock(seed=0, rng="official", noise_mode=None)
    idx = torch.arange(0, 512, 8)                                    # 64 units, simple and complex
    thetas = torch.linspace(0, math.pi, 36 + 1)[:-1]
    phases = torch.linspace(0, 2 * math.pi, 8 + 1, dtype=torch.float64)[:-1]
    sf_cpp = block.params["sf"].double()[idx] / block.ppd
    kernels = block.weight[idx, 0].double()[:, None]                 # q0 kernels (units, 1, k, k)
    k = kernels.shape[-1]
    resp = torch.stack([(_gratings_rows_cols(float(th), sf_cpp, phases, k) * kernels).sum((2, 3)).amax(1)
                        for th in thetas], dim=1)
    preferred = thetas[resp.argmax(1)]
    theta = torch.from_numpy(fx["theta_deg"][idx.numpy()] / 180 * np.pi).float()
    err = torch.remainder(preferred - theta + math.pi / 2, math.pi) - math.pi / 2
    assert float(err.abs().max()) <= math.pi / 36 + 1e-6
    # the transposed convention would put them at pi/2 - theta: far off for most units
    err_t = torch.remainder(preferred - (math.pi / 2 - theta) + math.pi / 2, math.pi) - math.pi / 2
    assert float((err_t.abs() > math.pi / 18).float().mean()) > 0.5


@pytest.mark.parametrize("rng", ["default", "official"])
def test_population_orientation_histogram_is_66_49_77_54(rng):
    from scipy import stats
    block = VOneBlock(image_size=64, visual_degrees=2, simple_channels=2048, complex_channels=2048, seed=5,
                      rng=rng, noise_mode=None, ksize=3)
    deg = torch.rad2deg(block.params["theta"]).double().numpy()
    observed = np.bincount(np.digitize((deg + 22.5) % 180, [45, 90, 135]), minlength=4)
    published = np.array([66, 49, 77, 54])
    assert stats.chisquare(observed, published / published.sum() * observed.sum()).pvalue > 1e-3
    # the 90-degree bin is the largest and the 45-degree the smallest, not swapped with 0 degrees
    assert observed.argmax() == 2 and observed.argmin() == 1


# ----------------------------------------------------------------------------- whole models
CORNET_AREAS = {a: a for a in ("V1", "V2", "V4", "IT")}


@pytest.mark.parametrize("name", ["cornet_z", "cornet_r", pytest.param("cornet_s", marks=pytest.mark.slow)])
def test_cornet_matches_the_official_model(name, tmp_path):
    fx = load(name)
    path = write_official_checkpoint(fx, tmp_path / f"{name}.pth")
    model = nr.create_model(name, pretrained=True, checkpoint_path=path).eval()
    logits, areas = last_outputs(model, CORNET_AREAS, torch.from_numpy(fx["input"]))
    assert rel_diff(logits, fx["logits"]) <= MODEL_TOL
    for area in CORNET_AREAS:
        assert rel_diff(areas[area], fx[f"area_{area}"]) <= MODEL_TOL, area


def test_cornet_r_single_step_does_not_depend_on_the_recurrence_order(tmp_path):
    # with times=1 no area reads another's output: a check that the fixture test above is about the order
    fx = load("cornet_r")
    path = write_official_checkpoint(fx, tmp_path / "r.pth")
    one = nr.create_model("cornet_r", pretrained=True, checkpoint_path=path, times=1).eval()
    five = nr.create_model("cornet_r", pretrained=True, checkpoint_path=path).eval()
    x = torch.from_numpy(fx["input"])
    with torch.no_grad():
        assert rel_diff(one(x), fx["logits"]) > 1e-2
        assert rel_diff(five(x), fx["logits"]) <= MODEL_TOL


VONE_AREAS = {
    "vone_resnet50": {"vone_block": "vone_block", "layer1": "backbone.layer1", "V2": "backbone.layer2",
                      "V4": "backbone.layer3", "IT": "backbone.layer4"},
    "vone_cornets": {"vone_block": "vone_block", "V2": "backbone.V2", "V4": "backbone.V4", "IT": "backbone.IT"},
    "vone_alexnet": {"vone_block": "vone_block", "V2": "backbone.features.5", "V4": "backbone.features.9",
                     "IT": "backbone.features.12"},
}


@pytest.mark.parametrize("fixture, name", [
    ("vone_resnet50", "vone_resnet50"),
    pytest.param("vone_cornets", "vone_cornet_s", marks=pytest.mark.slow),
    pytest.param("vone_alexnet", "vone_alexnet", marks=pytest.mark.slow)])
def test_vonenet_matches_the_official_model(fixture, name, tmp_path):
    fx = load(fixture)
    path = write_official_checkpoint(fx, tmp_path / f"{fixture}.pth.tar")
    model = nr.create_model(name, pretrained=True, checkpoint_path=path, image_size=int(fx["image_size"])).eval()
    logits, areas = last_outputs(model, VONE_AREAS[fixture], torch.from_numpy(fx["input"]))
    assert rel_diff(logits, fx["logits"]) <= MODEL_TOL
    for key in VONE_AREAS[fixture]:
        assert rel_diff(areas[key], fx[f"area_{key}"]) <= MODEL_TOL, key
    flags = json.loads(str(fx["flags"]))
    assert model.official_flags == flags
    assert model.vone_block.noise_mode == "none" and model.vone_block.official_flags()["gabor_seed"] == 2


def test_loaded_official_bank_is_described_by_its_parameters(tmp_path):
    fx = load("vone_resnet50")
    path = write_official_checkpoint(fx, tmp_path / "v.pth.tar")
    block = nr.create_model("vone_resnet50", pretrained=True, checkpoint_path=path, image_size=64).vone_block
    assert block.kernel_mismatch(block.params) <= 1e-6
    assert block.rng == "official" and block.seed == 2 and block.k_exc == 25.0
    with pytest.warns(UserWarning, match="params is unavailable"):
        other = nr.create_model("vone_resnet50", pretrained=True, checkpoint_path=path, image_size=96).vone_block
    with pytest.raises(RuntimeError, match="loaded kernels"):
        other.params
    with pytest.raises(CheckpointError, match="stride=4 but stride=2"):
        nr.create_model("vone_resnet50", pretrained=True, checkpoint_path=path, stride=2)


def test_vone_alexnet_has_the_official_back_end():
    from neuroreg.models import strip_stem
    from neuroreg.models.zoo import _alexnet_backend
    fx = load("vone_alexnet")
    dims, flat, official, i = fx["weight_ndim"].tolist(), fx["weight_shapes"].tolist(), {}, 0
    for name, d in zip(fx["weight_names"], dims):
        if str(name).startswith("model."):
            _, rest = str(name).split(".", 1)
            if rest.startswith("features."):                      # official features.i = ours features.{i+3}
                _, idx, tail = rest.split(".", 2)
                rest = f"features.{int(idx) + 3}.{tail}"
            official[rest] = tuple(flat[i:i + d])
        i += d
    with torch.device("meta"):
        ours = {k: tuple(v.shape) for k, v in strip_stem(_alexnet_backend())[0].state_dict().items()}
    assert ours == official
    assert ours["classifier.1.weight"] == (4096, 12544)
