"""The one preprocessing contract: read from the model, equal to independent torchvision/timm references."""

import pytest
import timm
import torch
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch import nn
from torchvision.transforms import Normalize

import neuroreg as nr
from neuroreg.data.preprocessing import Preprocessing, preprocessing_of
from neuroreg.robustness import RobustClassifier


def test_vone_models_get_half_mean_std_also_when_built_directly():
    from neuroreg.models import VOneNet
    for model in (nr.create_model("vone_cornet_s"),
                  VOneNet(nr.create_model("cornet_z"), simple_channels=8, complex_channels=8, ksize=7)):
        prep = preprocessing_of(model)
        assert prep.mean == (0.5, 0.5, 0.5) and prep.std == (0.5, 0.5, 0.5)
    assert preprocessing_of("vone_cornet_s").mean == (0.5, 0.5, 0.5)


def test_timm_model_contract_matches_timm_resolution():
    model = timm.create_model("efficientnet_lite0")
    cfg = timm.data.resolve_model_data_config(model)
    prep = preprocessing_of(model)
    assert prep.input_size == tuple(cfg["input_size"]) and prep.interpolation == cfg["interpolation"]
    assert prep.crop_pct == pytest.approx(cfg["crop_pct"]) and prep.mean == tuple(cfg["mean"])


def test_plain_module_falls_back_to_timm_imagenet_defaults():
    prep = preprocessing_of(nn.Conv2d(3, 4, 3))
    assert prep.mean == tuple(IMAGENET_DEFAULT_MEAN) and prep.std == tuple(IMAGENET_DEFAULT_STD)


def test_normalize_and_resize_match_torchvision_and_interpolate():
    prep = Preprocessing(input_size=(3, 20, 20), mean=(0.4, 0.5, 0.6), std=(0.2, 0.3, 0.4))
    x = torch.rand(2, 3, 33, 27, generator=torch.Generator().manual_seed(0))
    ref = F.interpolate(x, size=(20, 20), mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)
    torch.testing.assert_close(prep.resize(x), ref)
    torch.testing.assert_close(prep(x), Normalize((0.4, 0.5, 0.6), (0.2, 0.3, 0.4))(ref))
    torch.testing.assert_close(prep(x[0]), prep(x)[0])        # one image or a batch
    assert prep.with_size(8).input_size == (3, 8, 8)


def test_bad_contracts_are_clear_errors():
    with pytest.raises(ValueError, match="one value per input channel"):
        Preprocessing(mean=(0.5,), std=(0.5,))
    with pytest.raises(ValueError, match="give mean and std together"):
        preprocessing_of(nn.Conv2d(3, 3, 1), mean=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="4 channels"):
        Preprocessing().normalize(torch.zeros(1, 4, 2, 2))


def test_robust_classifier_uses_the_models_contract_by_default():
    model = nr.create_model("cornet_z", num_classes=3).eval()
    model.pretrained_cfg = dict(model.pretrained_cfg, mean=(0.1, 0.2, 0.3), std=(0.5, 0.6, 0.7))
    wrapped = RobustClassifier(model)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(wrapped(x), model(Normalize((0.1, 0.2, 0.3), (0.5, 0.6, 0.7))(x)))


def test_eval_transform_of_a_tensor_is_resize_images_then_the_centre_crop():
    from torchvision.transforms.functional import center_crop
    prep = Preprocessing(input_size=(3, 16, 16), interpolation="bicubic", crop_pct=0.8)
    x = torch.rand(3, 30, 40, generator=torch.Generator().manual_seed(2))
    # shorter side to round(16 / 0.8) = 20, the longer one as torchvision rounds it: int(20 * 40 / 30) = 26
    big = F.interpolate(x[None], size=(20, 26), mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)[0]
    torch.testing.assert_close(prep.eval_transform()(x), center_crop(big, [16, 16]))
    tall = x.transpose(1, 2)
    assert prep.eval_transform()(tall).shape == (3, 16, 16)


def test_transforms_refuse_bad_scale_and_integer_tensors():
    with pytest.raises(ValueError, match=r"scale must be \(min, max\) area fractions .* got \(0\.5, 0\.2\)"):
        Preprocessing().train_transform(scale=(0.5, 0.2))
    with pytest.raises(TypeError, match=r"image tensors must be float .* got dtype torch.uint8"):
        Preprocessing(input_size=(3, 8, 8)).eval_transform()(torch.zeros(3, 8, 8, dtype=torch.uint8))
