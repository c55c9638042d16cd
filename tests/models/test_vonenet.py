"""VOneNet: registered models, trainable parameters, gradients, official vonenet checkpoints."""

import pytest
import timm
import torch
import torchvision

import neuroreg as nr
from neuroreg.models import VOneNet


def trainable(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_vone_resnet50_has_the_published_trainable_parameter_count():
    model = timm.create_model("vone_resnet50")
    assert trainable(model) == 25_580_264
    assert model.pretrained_cfg["mean"] == (0.5, 0.5, 0.5)


@pytest.mark.parametrize("size", [224, 64])
def test_vone_cornet_s_forward_backward_reaches_every_trainable_parameter(size):
    # the default model at 224 px; at 64 px one recurrent step per area keeps the test fast
    extra = {} if size == 224 else {"times": (1, 1, 1)}
    model = timm.create_model("vone_cornet_s", num_classes=10, image_size=size, **extra)
    x = torch.rand(1 if size == 224 else 2, 3, size, size)
    out = model(x)
    assert out.shape == (x.shape[0], 10)
    out.logsumexp(1).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert missing == []
    assert not model.vone_block.weight.requires_grad and model.vone_block.weight.grad is None
    assert not any(n.startswith("vone_block") for n, _ in model.named_parameters())
    assert nr.area_layers(model) == {"V1": "vone_block", "V2": "backbone.V2", "V4": "backbone.V4",
                                     "IT": "backbone.IT"}


def test_vone_alexnet_and_generic_backbones():
    model = timm.create_model("vone_alexnet", num_classes=5, simple_channels=16, complex_channels=16)
    assert model(torch.rand(1, 3, 224, 224)).shape == (1, 5)
    tv = VOneNet(torchvision.models.resnet18(num_classes=3), image_size=64, simple_channels=8, complex_channels=8)
    assert isinstance(tv.backbone.conv1, torch.nn.Identity)
    assert tv.bottleneck.weight.shape == (64, 16, 1, 1)
    feats = tv.forward_features(torch.rand(2, 3, 64, 64))
    assert feats.shape == (2, 512, 2, 2)
    assert tv.forward_head(feats).shape == (2, 3)
    tv.reset_classifier(7)
    assert tv(torch.rand(1, 3, 64, 64)).shape == (1, 7)
    eff = VOneNet("efficientnet_lite0", num_classes=4, image_size=64, simple_channels=8, complex_channels=8)
    assert eff.bottleneck.out_channels == 32
    assert eff.eval()(torch.rand(1, 3, 64, 64)).shape == (1, 4)
    assert nr.area_layers(eff)["IT"] == "backbone.blocks.6"


def test_unknown_backbone_needs_an_explicit_stem():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3))
    with pytest.raises(ValueError, match="stem"):
        VOneNet(net, image_size=32, simple_channels=2, complex_channels=2)


def test_deep_stem_resnet_takes_an_explicit_stem_and_refuses_a_guess():
    # timm's resnet*d stem is a Sequential of three convs: its channels cannot be read off conv1
    deep = timm.create_model("resnet18d", num_classes=3)
    with pytest.raises(ValueError, match="no stem is known"):
        VOneNet(deep, image_size=64, simple_channels=8, complex_channels=8)
    deep = timm.create_model("resnet18d", num_classes=3)
    net = VOneNet(deep, stem=["conv1", "bn1", "act1", "maxpool"], backbone_channels=64, image_size=64,
                  simple_channels=8, complex_channels=8)
    assert isinstance(net.backbone.conv1, torch.nn.Identity)
    assert net.eval()(torch.rand(1, 3, 64, 64)).shape == (1, 3)


def test_checkpoint_flags_fill_in_the_block_and_contradictions_are_refused(tmp_path):
    from neuroreg.errors import CheckpointError
    from neuroreg.models.pretrained import vone_kwargs_from_flags
    flags = {"arch": "resnet50", "simple_channels": 16, "complex_channels": 16, "k_exc": 25.0, "noise_mode": None,
             "noise_scale": 0.35, "noise_level": 0.07, "stride": 4, "ksize": 25, "gabor_seed": 4, "sf_corr": 0.75,
             "sf_max": 6.0, "sf_min": 0.0, "visual_degrees": 8.0}
    kw = vone_kwargs_from_flags(flags, {"image_size": 64}, arch="resnet50")
    assert kw["seed"] == 4 and kw["rng"] == "official" and kw["noise_mode"] == "none" and kw["sf_max"] == 6.0
    assert kw["image_size"] == 64
    with pytest.raises(CheckpointError, match="k_exc=25.0 but k_exc=10"):
        vone_kwargs_from_flags(flags, {"k_exc": 10}, arch="resnet50")
    with pytest.raises(CheckpointError, match="noise_mode"):
        vone_kwargs_from_flags(dict(flags, noise_mode="neuronal"), {"noise_mode": "none"}, arch="resnet50")
    with pytest.raises(CheckpointError, match="arch="):
        vone_kwargs_from_flags(flags, {}, arch="alexnet")


def test_vonenet_without_file_says_where_weights_are_published():
    from neuroreg.errors import CheckpointError
    with pytest.raises(CheckpointError, match="vonenet-models"):
        nr.create_model("vone_cornet_s", pretrained=True)
