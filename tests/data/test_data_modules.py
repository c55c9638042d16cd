import math

import numpy as np
import pytest
import torch
from PIL import Image

from fixtures.neural import make_brain
from neuroreg.errors import DataFormatError
from neuroreg.data import (GratingsDataModule, GratingsDataset, ImageFolderDataModule, ImageNetDataModule,
                               JointSampler, load_neural_stimuli)


@pytest.fixture(scope="module")
def brain():
    return make_brain()


def _orientation(img: torch.Tensor) -> float:
    # Structure tensor: the dominant gradient direction of a grating is its orientation (mod pi).
    g = img.mean(0).numpy()
    gy, gx = np.gradient(g)
    return 0.5 * math.atan2(2 * (gx * gy).sum(), (gx ** 2 - gy ** 2).sum()) % math.pi


def test_gratings_are_seeded_and_oriented_by_class():
    ds = GratingsDataset(40, num_classes=4, image_size=64, seed=3)
    a, la = ds[5]
    b, lb = ds[5]
    assert torch.equal(a, b) and la == lb == 1
    assert a.shape == (3, 64, 64) and 0 <= float(a.min()) and float(a.max()) <= 1
    assert not torch.equal(a, GratingsDataset(40, 4, 64, seed=4)[5][0])
    spacing = math.pi / 4
    for i in range(40):
        img, label = ds[i]
        diff = abs(_orientation(img) - label * spacing)
        diff = min(diff, math.pi - diff)
        assert diff <= spacing / 4 + math.radians(4), (i, label, math.degrees(diff))


def _write_folder(root, classes, n_per_class, size=20, seed=0):
    rng = np.random.default_rng(seed)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            Image.fromarray(rng.integers(0, 255, (size, size + 4, 3), dtype=np.uint8)).save(root / c / f"{i}.jpg")


def test_imagenet_layout(tmp_path):
    _write_folder(tmp_path / "train", ["n01", "n02", "n03"], 4)
    _write_folder(tmp_path / "val", ["n01", "n02", "n03"], 2, seed=1)
    dm = ImageNetDataModule(str(tmp_path), batch_size=4, image_size=16, num_workers=0)
    dm.setup("fit")
    assert dm.num_classes == 3 and dm.classes == ["n01", "n02", "n03"]
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 3, 16, 16) and batch["label"].dtype == torch.long
    assert "neural_image" not in batch
    val = next(iter(dm.val_dataloader()))
    assert val["image"].shape == (4, 3, 16, 16)
    assert len(dm.train_dataloader()) == 3


def test_imagefolder_split_and_errors(tmp_path):
    _write_folder(tmp_path / "all", ["cat", "dog"], 10)
    dm = ImageFolderDataModule(root=str(tmp_path / "all"), val_fraction=0.2, batch_size=4, image_size=16,
                               num_workers=0, seed=1)
    dm.setup("fit")
    assert len(dm._train) == 16 and len(dm._val) == 4
    assert sorted(dm._val.indices + dm._train.indices) == list(range(20))
    _write_folder(tmp_path / "tr", ["a", "b"], 2)
    _write_folder(tmp_path / "va", ["a", "c"], 2)
    bad = ImageFolderDataModule(train_dir=str(tmp_path / "tr"), val_dir=str(tmp_path / "va"), batch_size=2,
                                num_workers=0)
    with pytest.raises(DataFormatError, match="different classes"):
        bad.setup("fit")
    with pytest.raises(DataFormatError, match="ImageNet layout"):
        ImageNetDataModule(str(tmp_path / "all"))
    with pytest.raises(ValueError, match="either root or train_dir"):
        ImageFolderDataModule()


def test_neural_batches_and_holdout(brain):
    dm = GratingsDataModule(n_train=32, n_val=8, neural=brain, neural_batch_size=6, neural_holdout=0.25,
                            batch_size=8, image_size=16, model_name="vone_cornet_s", seed=0)
    dm.setup("fit")
    held = set(dm.neural_heldout_positions.tolist())
    assert len(held) == 10 and len(dm.neural_train_positions) == 30
    assert held.isdisjoint(dm.neural_train_positions.tolist())
    batches = list(dm.train_dataloader())
    assert len(batches) == 4
    for b in batches:
        assert b["neural_image"].shape == (6, 3, 16, 16)
        idx = b["neural_index"].tolist()
        assert len(set(idx)) == 6 and held.isdisjoint(idx)
        # normalised with the VOneNet contract: mean = std = 0.5 (Dapello et al. 2020)
        torch.testing.assert_close(b["neural_image"], (brain.images_tensor()[b["neural_index"]] - 0.5) / 0.5)
    val_task, val_neural = dm.val_dataloader()
    assert sorted(torch.cat([v["neural_index"] for v in val_neural]).tolist()) == sorted(held)


def test_neural_set_smaller_than_batch_is_an_error(brain):
    dm = GratingsDataModule(n_train=64, neural=brain, neural_batch_size=35, neural_holdout=0.25, batch_size=40,
                            image_size=16)
    with pytest.raises(ValueError, match="neural_batch_size=35 but the neural set 'tiny' has only 30 training"):
        dm.setup("fit")


def test_sampler_resumes_mid_epoch():
    pool = torch.arange(10, 30)
    full = JointSampler(40, 8, pool, 3, seed=2)
    full.set_epoch(1)
    keys = list(full)
    assert len(keys) == 40 and sorted(k[0] for k in keys) == list(range(40))
    assert all(k[1] in range(10, 30) for i, k in enumerate(keys) if i % 8 < 3)
    assert all(k[1] == -1 for i, k in enumerate(keys) if i % 8 >= 3)
    resumed = JointSampler(40, 8, pool, 3, seed=2)
    resumed.epoch, resumed.start_batch = 1, 2
    assert list(resumed) == keys[16:]
    assert list(resumed) == keys  # the offset applies once
    other = JointSampler(40, 8, pool, 3, seed=2)
    assert list(other) != keys  # epoch 0 differs from epoch 1


def test_load_neural_stimuli_from_npz(tmp_path):
    imgs = np.random.default_rng(0).integers(0, 255, (5, 8, 8, 3), dtype=np.uint8)
    np.savez(tmp_path / "s.npz", images=imgs, stimulus_ids=np.array(list("abcde")))
    stim = load_neural_stimuli(str(tmp_path / "s.npz"))
    assert stim.images.shape == (5, 3, 8, 8) and stim.stimulus_ids.tolist() == list("abcde")
    np.savez(tmp_path / "n.npz", responses=np.zeros((5, 2)))
    with pytest.raises(DataFormatError, match="no 'images'"):
        load_neural_stimuli(str(tmp_path / "n.npz"))
    with pytest.raises(KeyError, match="not bundled"):
        load_neural_stimuli("nsd")


def test_normalizes_with_the_trained_backbone_by_default(brain):
    """No model_name: the contract is read from the LightningModule's backbone at setup, never assumed."""
    from types import SimpleNamespace

    import neuroreg as nr
    from neuroreg.training import BrainRegularizedModule

    module = BrainRegularizedModule(nr.create_model("vone_cornet_s", num_classes=4))
    dm = GratingsDataModule(n_train=16, n_val=8, neural=brain, neural_batch_size=4, batch_size=8, image_size=16)
    dm.trainer = SimpleNamespace(lightning_module=module)
    assert dm.preprocessing.mean == (0.5, 0.5, 0.5) and dm.preprocessing.std == (0.5, 0.5, 0.5)
    dm.setup("fit")
    raw = GratingsDataset(16, 4, 16, seed=0)[3][0]
    torch.testing.assert_close(dm._train[3][0], (raw - 0.5) / 0.5)
    raw_dm = GratingsDataModule(n_train=16, n_val=8, batch_size=8, image_size=16, normalize=False)
    raw_dm.setup("fit")
    torch.testing.assert_close(raw_dm._train[3][0], raw)
