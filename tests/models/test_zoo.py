"""Registry and area maps: names in timm, neuroreg.list_models, area_layers defaults and overrides."""

import pytest
import timm
import torch
import torchvision

import neuroreg as nr
from neuroreg.errors import UnknownNameError

OURS = ["cornet_r", "cornet_s", "cornet_z", "efficientnet_lite0_imagenet"]


def test_list_models_lists_registered_names():
    names = nr.list_models()
    for name in OURS:
        assert name in names
        assert timm.is_model(name)
    assert nr.list_models("cornet_*") == ["cornet_r", "cornet_s", "cornet_z"]
    assert "resnet50" in nr.list_models("resnet5*", neuroreg_only=False)


def test_create_model_rejects_unknown_names():
    with pytest.raises(UnknownNameError, match="cornet_q"):
        nr.create_model("cornet_q")


@pytest.mark.parametrize("name", ["cornet_z", "cornet_r", "cornet_s"])
def test_cornet_area_map_names_real_modules(name):
    with torch.device("meta"):
        model = nr.create_model(name)
    areas = nr.area_layers(model)
    assert areas == {"V1": "V1", "V2": "V2", "V4": "V4", "IT": "IT"}
    modules = dict(model.named_modules())
    assert all(v in modules for v in areas.values())


def test_documented_defaults_for_common_backbones():
    assert nr.area_layers(timm.create_model("resnet18")) == {
        "V1": "layer1", "V2": "layer2", "V4": "layer3", "IT": "layer4"}
    with torch.device("meta"):
        resnet34, alexnet, vgg11 = torchvision.models.resnet34(), torchvision.models.alexnet(), torchvision.models.vgg11()
    assert nr.area_layers(resnet34) == {
        "V1": "layer1", "V2": "layer2", "V4": "layer3", "IT": "layer4"}
    assert nr.area_layers(alexnet) == {
        "V1": "features.2", "V2": "features.5", "V4": "features.9", "IT": "features.12"}
    assert nr.area_layers(timm.create_model("efficientnet_lite0")) == {
        "V1": "blocks.1", "V2": "blocks.2", "V4": "blocks.4", "IT": "blocks.6"}
    assert nr.area_layers(vgg11) == {
        "V1": "features.5", "V2": "features.10", "V4": "features.15", "IT": "features.20"}


def test_user_mapping_overrides_and_is_checked():
    model = timm.create_model("resnet18")
    assert nr.area_layers(model, mapping={"IT": "layer4.1"}) == {"IT": "layer4.1"}
    with pytest.raises(UnknownNameError, match="layer9"):
        nr.area_layers(model, mapping={"IT": "layer9"})
    with pytest.raises(UnknownNameError, match="MT"):
        nr.area_layers(model, mapping={"MT": "layer4"})


def test_unknown_architecture_asks_for_a_mapping():
    import torch.nn as nn
    with pytest.raises(UnknownNameError, match="mapping"):
        nr.area_layers(nn.Sequential(nn.Conv2d(3, 4, 3)))


def test_area_aliases_work_in_extract():
    model = nr.create_model("cornet_z", num_classes=5).eval()
    feats = nr.extract(model, torch.rand(3, 3, 32, 32), ["V1", "IT"], batch_size=2, progress=False)
    assert feats["IT"].shape[:2] == (3, 512)
    assert feats["V1"].shape[:2] == (3, 64)
