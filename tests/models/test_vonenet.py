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


def _to_official(model):
    """Our VOneNet state -> the dicarlolab/vonenet layout, written independently of the loader."""
    block = model.vone_block
    n, s = block.out_channels, block.simple_channels
    k = block.ksize
    q0 = torch.zeros(n, 3, k, k)
    q1 = torch.zeros(n, 3, k, k)
    q0[torch.arange(n), block.colour[:n]] = block.weight[:n, 0]
    q1[torch.arange(s, n), block.colour[n:]] = block.weight[n:, 0]
    q1[torch.arange(s), (block.colour[:s] + 1) % 3] = 1.0      # unused by simple cells in the original
    state = {"module.vone_block.simple_conv_q0.weight": q0, "module.vone_block.simple_conv_q1.weight": q1}
    for key, value in model.state_dict().items():
        if key.startswith("backbone."):
            state["module.model." + key[len("backbone."):]] = value
        elif key.startswith("bottleneck."):
            state["module." + key] = value
    return {"flags": {"arch": "resnet50", "simple_channels": s, "complex_channels": n - s}, "state_dict": state}


def test_official_vonenet_checkpoint_loads_and_reproduces_outputs(tmp_path):
    kw = dict(simple_channels=16, complex_channels=16, image_size=64, noise_mode="none")
    torch.manual_seed(0)
    source = nr.create_model("vone_resnet50", seed=1, **kw).eval()
    path = tmp_path / "voneresnet50_e70.pth.tar"
    torch.save(_to_official(source), path)
    loaded = nr.create_model("vone_resnet50", pretrained=True, checkpoint_path=path, seed=2, **kw).eval()
    assert torch.equal(loaded.vone_block.weight, source.vone_block.weight)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), source(x), rtol=1e-4, atol=1e-4)


def test_official_alexnet_backend_indices_are_mapped():
    from neuroreg.models.pretrained import vonenet_key_map
    model = timm.create_model("vone_alexnet", simple_channels=4, complex_channels=4)
    ours = model.state_dict()
    official = {}
    for key, value in ours.items():
        if key.startswith("backbone.features."):
            _, _, idx, tail = key.split(".", 3)
            official[f"module.model.features.{int(idx) - 3}.{tail}"] = value
        elif key.startswith("backbone."):
            official["module.model." + key[len("backbone."):]] = value
    official["module.bottleneck.weight"] = ours["bottleneck.weight"]
    mapped = vonenet_key_map(official, arch="alexnet", simple_channels=4)
    assert set(mapped) == set(ours) - {"vone_block.weight", "vone_block.colour"}
    assert "module.model.features.0.weight" in official and "backbone.features.3.weight" in mapped


def test_vonenet_without_file_says_where_weights_are_published():
    from neuroreg.errors import CheckpointError
    with pytest.raises(CheckpointError, match="vonenet-models"):
        nr.create_model("vone_cornet_s", pretrained=True)
