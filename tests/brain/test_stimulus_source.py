"""One interface for stimuli with neural data: BrainData and the bundled sets answer the same calls."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from neuroreg.brain import BrainData, StimulusSource, load_bundled
from neuroreg.errors import ShapeError


def _brain(n=6, size=10):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)
    return BrainData(rng.normal(size=(n, 4)), [f"s{i}" for i in range(n)], stimuli=images, name="toy"), images


def test_brain_data_and_bundled_sets_are_stimulus_sources():
    brain, _ = _brain()
    k92 = load_bundled("kriegeskorte92")
    for source in (brain, k92):
        assert isinstance(source, StimulusSource)
        x = source.images_tensor()
        assert x.dtype == torch.float32 and x.shape[0] == source.n_stimuli == len(source.stimulus_ids)
        assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
        assert source.images_tensor(size=16).shape == (source.n_stimuli, 3, 16, 16)


def test_images_tensor_matches_torch_resizing_of_the_raw_pixels():
    brain, images = _brain()
    ref = torch.from_numpy(images).permute(0, 3, 1, 2).double() / 255.0
    torch.testing.assert_close(brain.images_tensor().double(), ref, rtol=0, atol=1e-7)
    want = F.interpolate(ref, size=(7, 7), mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)
    torch.testing.assert_close(brain.images_tensor(size=7).double(), want, rtol=0, atol=1e-6)


def test_images_tensor_refuses_a_missing_image_set_and_a_bad_size():
    no_images = BrainData(np.zeros((3, 2)), ["a", "b", "c"], name="bare")
    with pytest.raises(ValueError, match="no stimulus images"):
        no_images.images_tensor()
    brain, _ = _brain()
    with pytest.raises(ValueError, match="size must be a positive"):
        brain.images_tensor(size=0)
    with pytest.raises(ShapeError):
        BrainData(np.zeros((2, 2)), ["a", "b"], stimuli=np.zeros((2, 4, 4), dtype=np.uint8)).images_tensor()


def test_a_stimulus_set_of_float_images_without_rdms_is_a_stimulus_source():
    from neuroreg.brain import NeuralStimulusSet

    rng = np.random.default_rng(1)
    images = torch.from_numpy(rng.uniform(0, 1, size=(5, 3, 12, 12))).float()
    stim = NeuralStimulusSet("toy", images, [f"s{i}" for i in range(5)])
    assert isinstance(stim, StimulusSource) and stim.rdms == {} and len(stim) == 5
    assert stim.stimulus_ids.tolist() == ["s0", "s1", "s2", "s3", "s4"]
    torch.testing.assert_close(stim.images_tensor(), images, rtol=0, atol=0)
    want = F.interpolate(images.double(), size=(6, 6), mode="bilinear", align_corners=False,
                         antialias=True).clamp(0, 1)
    torch.testing.assert_close(stim.images_tensor(size=6).double(), want, rtol=0, atol=1e-6)


def test_a_stimulus_set_refuses_images_ids_and_rdms_that_do_not_match():
    from neuroreg.brain import NeuralStimulusSet, RDMSet
    from neuroreg.errors import StimulusMismatchError

    images = np.zeros((4, 8, 8, 3), dtype=np.uint8)
    with pytest.raises(StimulusMismatchError, match="stimulus_ids has 3 entries but there are 4 stimuli"):
        NeuralStimulusSet("toy", images, ["a", "b", "c"])
    with pytest.raises(ValueError, match="stimulus_ids must be unique"):
        NeuralStimulusSet("toy", images, ["a", "b", "c", "a"])
    with pytest.raises(ShapeError, match=r"images must be 4-D .* got shape \(4, 8, 8\)"):
        NeuralStimulusSet("toy", images[..., 0], ["a", "b", "c", "d"])
    square = np.ones((3, 3)) - np.eye(3)
    with pytest.raises(StimulusMismatchError, match=r"rdms\['IT'\] is over 3 stimuli; there are 4 images"):
        NeuralStimulusSet("toy", images, ["a", "b", "c", "d"], rdms={"IT": RDMSet(square)})
