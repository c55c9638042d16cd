"""VOneBlock: published parameter distributions, Gabor tuning, simple/complex cells, noise, seeds."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from neuroreg.models import VOneBlock, sample_gabor_params, vone_block, vone_noise

N = 20_000


@pytest.fixture(scope="module")
def params():
    return {k: v.numpy() for k, v in sample_gabor_params(N, seed=0).items()}


def test_orientation_follows_de_valois_histogram(params):
    deg = np.rad2deg(params["theta"])
    assert deg.min() >= 0 and deg.max() < 180
    bins = np.digitize((deg + 22.5) % 180, [45, 90, 135])        # 0, 45, 90, 135 deg centred bins
    observed = np.bincount(bins, minlength=4)
    published = np.array([66, 49, 77, 54])
    assert stats.chisquare(observed, published / published.sum() * N).pvalue > 1e-3


def test_spatial_frequency_follows_de_valois_histogram(params):
    edges = [0.5, 0.7, 1.0, 1.4, 2.0, 2.8, 4.0, 5.6, 8.0]
    observed, _ = np.histogram(params["sf"], bins=edges)
    assert observed.sum() == N
    published = np.array([4, 4, 8, 25, 32, 26, 28, 12])
    assert stats.chisquare(observed, published / published.sum() * N).pvalue > 1e-3
    # log-uniform within a bin: log2(sf) uniform inside the 2.0-2.8 bin
    inside = np.log2(params["sf"][(params["sf"] >= 2.0) & (params["sf"] < 2.8)])
    assert stats.kstest(inside, stats.uniform(1.0, np.log2(2.8) - 1.0).cdf).pvalue > 1e-3


def test_envelope_sizes_follow_ringach_joint_histogram(params):
    edges = np.logspace(-1, 0.2, 6)
    joint = np.array([[2, 0, 1, 0, 0], [8, 9, 4, 1, 0], [1, 2, 19, 17, 3], [0, 0, 1, 7, 4]], dtype=float)
    nx_obs, _ = np.histogram(params["nx"], bins=edges)
    nx_exp = joint.sum(1) / joint.sum() * N
    assert nx_obs[4] == 0
    assert stats.chisquare(nx_obs[:4], nx_exp).pvalue > 1e-3
    in_bin2 = (params["nx"] >= edges[2]) & (params["nx"] < edges[3])
    ny_obs, _ = np.histogram(params["ny"][in_bin2], bins=edges)
    ny_exp = joint[2] / joint[2].sum() * in_bin2.sum()
    assert stats.chisquare(ny_obs, ny_exp).pvalue > 1e-3


def test_sf_and_nx_are_tied_by_a_gaussian_copula(params):
    # Spearman's rho of a Gaussian copula with correlation r is 6/pi * arcsin(r/2)
    rho = stats.spearmanr(params["sf"], params["nx"]).statistic
    assert rho == pytest.approx(6 / math.pi * math.asin(0.75 / 2), abs=0.03)


def test_phase_is_uniform(params):
    assert stats.kstest(params["phase"], stats.uniform(0, 2 * math.pi).cdf).pvalue > 1e-3


def test_same_seed_same_parameters_new_seed_new_ones():
    a, b, c = (VOneBlock(image_size=64, simple_channels=8, complex_channels=8, seed=s) for s in (3, 3, 4))
    for k in ("sf", "theta", "phase", "nx", "ny"):
        assert torch.equal(a.params[k], b.params[k])
        assert not torch.equal(a.params[k], c.params[k])
        assert a.params[k].shape == (16,)
    assert torch.equal(a.weight, b.weight) and torch.equal(a.colour, b.colour)


def test_small_images_get_no_aliased_filters():
    block = VOneBlock(image_size=32, visual_degrees=8, simple_channels=64, complex_channels=64)
    assert float(block.params["sf"].max()) <= 32 / 8 / 2          # Nyquist: ppd / 2 cycles/degree


def _grating(theta, sf_cpd, phase, size, ppd):
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    x, y = torch.meshgrid(coords, coords, indexing="ij")        # the official axes: x down the rows
    g = torch.cos(2 * math.pi * sf_cpd / ppd * (x * math.cos(theta) + y * math.sin(theta)) + phase)
    return g.float().expand(3, size, size)


def _centre_responses(block, stimuli, size=100, ppd=28.0):
    """Response of channel 0 at the image centre to each (theta, sf_cpd, phase) grating."""
    out = block(torch.stack([_grating(t, f, p, size, ppd) for t, f, p in stimuli]))
    return out[:, 0, out.shape[2] // 2, out.shape[3] // 2].numpy()


def _unit(theta, sf, complex_=False):
    kw = dict(simple_channels=0, complex_channels=1) if complex_ else dict(simple_channels=1, complex_channels=0)
    one = lambda v: torch.tensor([v], dtype=torch.float64)  # noqa: E731
    return VOneBlock.from_params(one(sf), one(theta), one(0.3), one(1.0), one(1.0), image_size=112,
                                 visual_degrees=4, noise_mode=None, **kw)


def test_unit_prefers_its_own_orientation_and_spatial_frequency():
    theta0, sf0 = 1.0, 4.0
    unit = _unit(theta0, sf0)
    phases = np.linspace(0, 2 * math.pi, 12, endpoint=False)
    thetas = [theta0 + k * math.pi / 8 for k in range(-3, 5)]
    by_theta = _centre_responses(unit, [(t, sf0, p) for t in thetas for p in phases]).reshape(8, 12).max(1)
    assert int(np.argmax(by_theta)) == 3
    sfs = [sf0 * f for f in (0.5, 0.71, 1.0, 1.41, 2.0)]
    by_sf = _centre_responses(unit, [(theta0, f, p) for f in sfs for p in phases]).reshape(5, 12).max(1)
    assert int(np.argmax(by_sf)) == 2


def test_complex_cells_are_phase_invariant_and_simple_cells_are_not():
    theta0, sf0 = 0.4, 3.0
    phases = np.linspace(0, 2 * math.pi, 16, endpoint=False)
    simple = _centre_responses(_unit(theta0, sf0), [(theta0, sf0, p) for p in phases])
    cx = _centre_responses(_unit(theta0, sf0, True), [(theta0, sf0, p) for p in phases])
    assert cx.std() / cx.mean() < 0.05
    assert simple.min() < 0.05 * simple.max()           # half-wave rectified: silent at the wrong phase
    assert cx.mean() > 0.3 * simple.max()


def test_simple_then_complex_channel_order_and_shape():
    block = VOneBlock(image_size=64, simple_channels=5, complex_channels=7, noise_mode=None)
    out = block(torch.rand(2, 3, 64, 64))
    assert out.shape == (2, 12, 16, 16)
    assert block.weight.shape == (5 + 7 + 7, 1, 25, 25)
    ref = vone_block(torch.rand(1, 3, 64, 64), block.weight, block.colour, 5, noise_mode=None)
    assert ref.shape == (1, 12, 16, 16)


def test_functional_twin_matches_a_dense_conv_reference():
    torch.manual_seed(0)
    block = VOneBlock(image_size=64, simple_channels=6, complex_channels=6, noise_mode=None, k_exc=2.0)
    x = torch.rand(2, 3, 64, 64)
    dense = torch.zeros(block.weight.shape[0], 3, 25, 25)
    dense[torch.arange(dense.shape[0]), block.colour] = block.weight[:, 0]
    q = torch.nn.functional.conv2d(x, dense, stride=4, padding=12)
    expected = torch.cat([torch.relu(q[:, :6]), torch.sqrt(q[:, 6:12] ** 2 + q[:, 12:] ** 2) / math.sqrt(2)], 1) * 2
    torch.testing.assert_close(block(x), expected, rtol=1e-4, atol=1e-4)


def test_neuronal_noise_variance_grows_with_the_mean_as_published():
    torch.manual_seed(0)
    means = torch.tensor([40.0, 100.0, 300.0])      # >= 3.7 sd above 0: the final ReLU is inactive
    x = means.view(3, 1).expand(3, 200_000)
    out = vone_noise(x, "neuronal", noise_scale=0.35, noise_level=0.07)
    var = out.var(dim=1)
    expected = (0.35 * means + 0.07) / 0.35 ** 2
    torch.testing.assert_close(var, expected, rtol=0.03, atol=0.0)
    torch.testing.assert_close(out.mean(dim=1), means, rtol=0.01, atol=0.0)
    g = vone_noise(torch.full((200_000,), 50.0), "gaussian", noise_scale=2.0)
    assert float(g.std()) == pytest.approx(2.0, rel=0.02)


def test_noise_is_present_in_eval_and_can_be_switched_off():
    block = VOneBlock(image_size=32, simple_channels=4, complex_channels=4).eval()
    x = torch.rand(1, 3, 32, 32)
    assert not torch.equal(block(x), block(x))
    block.noise_mode = None
    assert torch.equal(block(x), block(x))
    gen = torch.Generator().manual_seed(5)
    a = vone_block(x, block.weight, block.colour, 4, generator=gen)
    b = vone_block(x, block.weight, block.colour, 4, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_gabor_bank_is_a_fixed_buffer():
    block = VOneBlock(image_size=32, simple_channels=4, complex_channels=4)
    assert list(block.parameters()) == []
    assert set(block.state_dict()) == {"weight", "colour"}


def test_rejects_bad_input():
    with pytest.raises(ValueError, match="noise_mode"):
        VOneBlock(noise_mode="poisson")
    with pytest.raises(ValueError, match="simple_channels"):
        VOneBlock(simple_channels=-1)
    with pytest.raises(ValueError, match="must equal"):
        VOneBlock.from_params(*(torch.ones(3),) * 5, simple_channels=1, complex_channels=1)
    with pytest.raises(ValueError, match="sf"):
        VOneBlock.from_params(-torch.ones(2), *(torch.ones(2),) * 4)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        VOneBlock(image_size=32, simple_channels=2, complex_channels=2)(torch.rand(1, 1, 32, 32))


def test_fixed_noise_is_reproducible_and_checks_the_batch():
    block = VOneBlock(image_size=32, simple_channels=4, complex_channels=4).fix_noise(batch_size=2, seed=0)
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(block(x), block(x))
    other = VOneBlock(image_size=32, simple_channels=4, complex_channels=4).fix_noise(batch_size=2, seed=0)
    assert torch.equal(block(x), other(x))
    with pytest.raises(ValueError, match="fix_noise"):
        block(torch.rand(3, 3, 32, 32))
    block.unfix_noise()
    assert not torch.equal(block(x), block(x))


def test_params_refuse_to_describe_a_bank_loaded_from_another_seed():
    a = VOneBlock(image_size=32, simple_channels=4, complex_channels=4, seed=1)
    b = VOneBlock(image_size=32, simple_channels=4, complex_channels=4, seed=2)
    b.load_state_dict(a.state_dict())
    with pytest.raises(RuntimeError, match="loaded kernels"):
        b.params
    b.describe_with(a.params)
    assert torch.equal(b.params["sf"], a.params["sf"])
    c = VOneBlock(image_size=32, simple_channels=4, complex_channels=4, seed=1)
    c.load_state_dict(a.state_dict())
    assert torch.equal(c.params["theta"], a.params["theta"])
    with pytest.raises(ValueError, match="do not describe"):
        b.describe_with(VOneBlock(image_size=32, simple_channels=4, complex_channels=4, seed=3).params)


def test_from_params_takes_every_filter_channel():
    one = torch.ones(3, dtype=torch.float64)
    block = VOneBlock.from_params(one * 2, one * 0.5, one * 0.1, one, one, simple_channels=1, complex_channels=2,
                                  channel=[0, 1, 2], channel_q1=[2, 0], image_size=32, noise_mode=None)
    assert block.channel.tolist() == [0, 1, 2] and block.channel_q1.tolist() == [2, 0]
    official_layout = VOneBlock.from_params(one * 2, one * 0.5, one * 0.1, one, one, simple_channels=1,
                                            complex_channels=2, channel=[0, 1, 2], channel_q1=[1, 2, 0],
                                            image_size=32, noise_mode=None)
    assert official_layout.channel_q1.tolist() == [2, 0]
    with pytest.raises(ValueError, match="channel_q1"):
        VOneBlock.from_params(one, one, one, one, one, simple_channels=1, complex_channels=2, channel_q1=[3, 0])
