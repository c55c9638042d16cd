"""The fine-tuning data modules take their transforms from the model's preprocessing contract.

References are torchvision pipelines and F.interpolate written out here, with the
crop fraction and interpolation read from timm's own data-config resolution.
"""

from pathlib import Path

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms.functional import center_crop

import neuroreg.models  # noqa: F401  (registers neuroreg's models in timm)
from neuroreg.data import EuroSATDataModule, PatternDataModule
from neuroreg.data.patterns import pattern_image

MODEL = "vit_tiny_patch16_224"   # a contract unlike the defaults: bicubic, crop_pct 0.9, mean = std = 0.5


def _contract() -> dict:
    return timm.data.resolve_data_config(pretrained_cfg=timm.models.get_pretrained_cfg(MODEL).to_dict(),
                                         use_test_size=True)


def _folders(root: Path, per_class: int = 10, size: tuple[int, int] = (50, 70)) -> Path:
    rng = np.random.default_rng(0)
    for c in ("AnnualCrop", "Forest"):
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(root / c / f"{c}_{i}.png")
    return root


def test_evaluation_images_are_the_models_resize_and_centre_crop(tmp_path):
    cfg = _contract()
    assert cfg["interpolation"] == "bicubic" and cfg["crop_pct"] == 0.9 and cfg["mean"] == (0.5, 0.5, 0.5)
    root = _folders(tmp_path / "e")
    dm = EuroSATDataModule(str(root), classes="folders", image_size=40, batch_size=4, num_workers=0,
                           model_name=MODEL, check_images=False)
    ds = dm.eval_dataset("test")
    ref = T.Compose([T.Resize(int(round(40 / cfg["crop_pct"])), interpolation=T.InterpolationMode.BICUBIC),
                     T.CenterCrop(40), T.ToTensor(), T.Normalize(cfg["mean"], cfg["std"])])
    table = dm._built_table()
    for i in range(len(ds)):
        x, _ = ds[i]
        path = table["path"].to_numpy()[ds.rows[i]]
        torch.testing.assert_close(x, ref(Image.open(path).convert("RGB")))


def test_training_crops_follow_the_models_interpolation(tmp_path):
    cfg = _contract()
    root = _folders(tmp_path / "e", size=(40, 40))
    dm = EuroSATDataModule(str(root), classes="folders", image_size=24, batch_size=4, num_workers=0,
                           model_name=MODEL, normalize=False, check_images=False)
    dm.setup("fit")
    train = dm._train
    crop = T.RandomResizedCrop(24, scale=(0.6, 1.0), interpolation=T.InterpolationMode.BICUBIC)
    ref = T.Compose([crop, T.RandomHorizontalFlip(), T.ToTensor()])
    table = dm._built_table()
    for i in range(3):
        torch.manual_seed(i)
        got, _ = train[i]
        torch.manual_seed(i)
        want = ref(Image.open(table["path"].to_numpy()[train.rows[i]]).convert("RGB"))
        torch.testing.assert_close(got, want)
    assert cfg["interpolation"] == "bicubic"


def test_generated_images_are_resized_with_the_models_crop(tmp_path):
    cfg = _contract()
    dm = PatternDataModule(n_images=24, native_size=40, image_size=32, batch_size=4, num_workers=0,
                           model_name=MODEL, normalize=False)
    ds = dm.eval_dataset("val")
    short = int(round(32 / cfg["crop_pct"]))
    assert short != 32                    # the crop does something at this size
    for i in range(len(ds)):
        x, label = ds[i]
        row = int(ds.rows[i])
        image = pattern_image(label, 40, seed=0, index=row)
        big = F.interpolate(image[None], size=(short, short), mode="bicubic", align_corners=False,
                            antialias=True).clamp(0, 1)[0]
        torch.testing.assert_close(x, center_crop(big, [32, 32]))


def test_unknown_model_takes_timm_defaults_geometry_without_normalising(tmp_path):
    root = _folders(tmp_path / "e", size=(30, 30))
    dm = EuroSATDataModule(str(root), classes="folders", image_size=16, batch_size=4, num_workers=0,
                           normalize=False, check_images=False)
    ds = dm.eval_dataset("val")
    defaults = timm.data.resolve_data_config(pretrained_cfg={"architecture": "unknown"})
    mode = T.InterpolationMode(defaults["interpolation"])
    ref = T.Compose([T.Resize(int(round(16 / defaults["crop_pct"])), interpolation=mode), T.CenterCrop(16),
                     T.ToTensor()])
    x, _ = ds[0]
    torch.testing.assert_close(x, ref(Image.open(dm._built_table()["path"].to_numpy()[ds.rows[0]]).convert("RGB")))


@pytest.mark.parametrize("augment", [True, False])
def test_no_augmentation_means_the_evaluation_transform_for_training(tmp_path, augment):
    dm = PatternDataModule(n_images=24, native_size=40, image_size=32, batch_size=4, num_workers=0,
                           model_name=MODEL, normalize=False, augment=augment)
    dm.setup("fit")
    x_train, _ = dm._train[0]
    x_eval, _ = dm.eval_dataset("train")[0]
    assert torch.equal(x_train, x_eval) is (not augment)
