"""Generated images with a known important region (the tiny Neural Harmonizer's data)."""

import pytest
import torch

from neuroreg.data import SalientPatternsDataModule, SalientPatternsDataset, salient_pattern_image
from neuroreg.data.salient_patterns import DISTRACTOR_COLOURS


def test_image_is_reproducible_and_the_map_peaks_on_the_achromatic_shape():
    image, importance = salient_pattern_image(2, 32, seed=3, index=5)
    again, _ = salient_pattern_image(2, 32, seed=3, index=5)
    assert torch.equal(image, again) and image.shape == (3, 32, 32) and importance.shape == (32, 32)
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    r, c = divmod(int(importance.argmax()), 32)
    assert float(importance.max()) == pytest.approx(1.0, abs=0.05)
    # the object (side 8) is grey: around the peak the colour channels agree up to pixel noise
    patch = image[:, max(r - 3, 0):r + 4, max(c - 3, 0):c + 4]
    assert float((patch.amax(0) - patch.amin(0)).mean()) < 0.1
    # the distractor carries its class's colour far from the peak
    colour = torch.tensor(DISTRACTOR_COLOURS[2])[:, None, None]
    far = importance < 1e-3
    saturated = (image - image.mean(0, keepdim=True)).abs().amax(0) > 0.2
    assert (far & saturated).sum() > 50
    mean_colour = image[:, far & saturated].mean(1)
    assert int(mean_colour.argmax()) == int(colour.flatten().argmax())


def test_distractor_agreement_and_map_fraction_are_honoured():
    ds = SalientPatternsDataset(200, num_classes=4, image_size=24, seed=1, distractor_agreement=0.0,
                                map_fraction=0.25)
    assert (ds.distractor_labels != ds.labels).all()
    assert int(ds.tokens.sum()) == 50
    assert torch.equal(ds.heatmaps[ds.tokens == 0], torch.zeros(150, 24, 24))
    agree = SalientPatternsDataset(200, num_classes=4, image_size=24, seed=1, distractor_agreement=0.5)
    assert 0.35 < float((agree.distractor_labels == agree.labels).float().mean()) < 0.65
    with pytest.raises(ValueError, match="num_classes must be in"):
        SalientPatternsDataset(8, num_classes=5)
    with pytest.raises(ValueError, match="size must be >= 24"):
        salient_pattern_image(0, 16)


def test_data_module_batches_carry_maps_tokens_and_normalised_images():
    dm = SalientPatternsDataModule(n_train=32, n_val=16, batch_size=8, image_size=24, map_fraction=0.5,
                                   model_name="cornet_z", seed=0)
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"image", "heatmap", "token", "label"}
    assert batch["image"].shape == (8, 3, 24, 24) and batch["heatmap"].shape == (8, 24, 24)
    assert batch["token"].dtype == torch.float32 and batch["label"].dtype == torch.int64
    assert float(batch["image"].min()) < 0   # normalised with cornet_z's ImageNet mean/std
    val = next(iter(dm.val_dataloader()))
    assert bool((val["token"] == 1).all()) and dm.num_classes == 4
    image, label = dm._val[0]                # the (image, label) view the scorecard reads
    assert image.shape == (3, 24, 24) and label == 0
    # held-out images come from another seed than the training images
    assert not torch.equal(dm._train.images[:4], dm._val.images[:4])
