"""Per-stimulus VOneBlock noise in extraction: a stochastic network's features belong to the images (ids), not to
their row, batch or device."""

import numpy as np
import pytest
import torch

import neuroreg as nr
from neuroreg.models.stimulus_noise import StimulusNoise, stimulus_seed

KW = {"image_size": 32, "simple_channels": 4, "complex_channels": 4, "times": (1, 1, 1)}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return nr.create_model("vone_cornet_s", **KW).eval()


@pytest.fixture(scope="module")
def images():
    return torch.rand(10, 3, 32, 32, generator=torch.Generator().manual_seed(1))


IDS = np.array([f"img{i:02d}" for i in range(10)])


def _v1(model, images, ids, **kw):
    return torch.as_tensor(nr.extract(model, images, ["V1", "IT"], stimulus_ids=ids, progress=False, **kw)["V1"])


def test_row_order_and_batch_size_do_not_change_the_features(model, images):
    ref = _v1(model, images, IDS, seed=3, batch_size=4)
    perm = np.random.default_rng(0).permutation(10)
    shuffled = _v1(model, images[perm], IDS[perm], seed=3, batch_size=7)
    assert torch.equal(shuffled, ref[perm])
    assert torch.equal(_v1(model, images, IDS, seed=3, batch_size=10), ref)


def test_the_noise_is_the_documented_per_stimulus_draw(model, images):
    """V1 of image 2 equals the block run with the draw of Generator(stimulus_seed(seed, 0, id))."""
    got = _v1(model, images, IDS, seed=5)
    block = model.vone_block
    shape = (block.out_channels, block.output_size(32), block.output_size(32))
    draw = torch.randn(shape, generator=torch.Generator().manual_seed(stimulus_seed(5, 0, "img02")))
    block.fixed_noise = draw[None]
    try:
        with torch.no_grad():
            expected = block(images[2:3])
    finally:
        block.fixed_noise = None
    torch.testing.assert_close(got[2:3], expected, rtol=0, atol=1e-6)


def test_ids_and_seeds_choose_the_draw(model, images):
    same = images[[0, 0]]
    pair = _v1(model, same, ["a", "b"], seed=0)
    assert not torch.equal(pair[0], pair[1])                   # one image, two ids: independent draws
    assert torch.equal(_v1(model, same, ["a", "a"], seed=0)[1], pair[0])
    assert not torch.equal(_v1(model, same, ["a", "b"], seed=1)[0], pair[0])


def test_frozen_noise_is_respected_and_state_is_restored(model, images):
    block = model.vone_block
    block.fix_noise(batch_size=10, seed=0)
    try:
        frozen = block.fixed_noise.clone()
        got = _v1(model, images, IDS, batch_size=10)
        assert torch.equal(block.fixed_noise, frozen)           # the caller's frozen draw is kept and used
        with torch.no_grad():
            torch.testing.assert_close(got, block(images), rtol=0, atol=1e-6)
    finally:
        block.unfix_noise()
    state = torch.get_rng_state()
    _v1(model, images, IDS)
    assert block.fixed_noise is None and torch.equal(torch.get_rng_state(), state)


def test_a_batch_with_another_count_of_ids_is_refused(model, images):
    with StimulusNoise(model, seed=0) as noise, torch.no_grad():
        assert noise.active
        noise.set_batch(["a", "b"])
        with pytest.raises(RuntimeError, match="a batch of 3 images came with 2 stimulus ids"):
            model(images[:3])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_same_noise_on_a_gpu(model, images):
    cpu = _v1(model, images, IDS, seed=2)
    gpu = _v1(model, images, IDS, seed=2, device="cuda")
    torch.testing.assert_close(gpu, cpu, rtol=1e-4, atol=1e-4)
