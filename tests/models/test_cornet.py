"""CORnet-Z/R/S: published parameter counts, timm conventions, recurrence and the original block maths."""

import pytest
import timm
import torch

import neuroreg  # noqa: F401  (registers the models)
from neuroreg.models import CORnetR, CORnetS, CORnetZ


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def test_parameter_counts_match_the_paper():
    with torch.device("meta"):      # counting needs no memory or initialisation
        assert n_params(CORnetZ()) == 2_071_656
        assert n_params(CORnetS()) == 53_416_616


def test_cornet_r_parameter_count_from_layer_arithmetic():
    # conv(k*k*cin*cout + cout) + 2 GroupNorms + 3x3 recurrent conv without bias, per area
    def area(cin, cout, k):
        return k * k * cin * cout + cout + 2 * (2 * cout) + 9 * cout * cout
    expected = area(3, 64, 7) + area(64, 128, 3) + area(128, 256, 3) + area(256, 512, 3) + 512 * 1000 + 1000
    with torch.device("meta"):
        assert n_params(CORnetR()) == expected


@pytest.mark.parametrize("name", ["cornet_z", "cornet_r"])   # CORnet-S: through vone_cornet_s
def test_timm_create_forward_backward_small_images(name):
    model = timm.create_model(name, num_classes=7)
    x = torch.rand(2, 3, 64, 64)
    out = model(x)
    assert out.shape == (2, 7)
    out.square().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    feats = model.forward_features(x)
    assert feats.shape == (2, 512, x.shape[2] // 32, x.shape[3] // 32)
    assert model.forward_head(feats, pre_logits=True).shape == (2, 512)
    assert model.pretrained_cfg["input_size"] == (3, 224, 224)
    assert model.pretrained_cfg["classifier"] == "decoder.linear"


def test_reset_classifier_and_headless_model():
    model = timm.create_model("cornet_z")
    model.reset_classifier(3)
    assert model.get_classifier().out_features == 3
    assert model(torch.rand(1, 3, 32, 32)).shape == (1, 3)
    model.reset_classifier(0)
    assert model(torch.rand(1, 3, 32, 32)).shape == (1, 512)


def test_times_configurable_and_changes_the_output():
    torch.manual_seed(0)
    short = CORnetR(times=1).eval()
    long = CORnetR(times=3).eval()
    long.load_state_dict(short.state_dict())
    x = torch.rand(1, 3, 64, 64)
    assert not torch.allclose(short(x), long(x))
    with torch.device("meta"):
        assert not hasattr(CORnetS(times=(1, 1, 1)).V4, "norm1_1")
        assert hasattr(CORnetS().V4, "norm1_3")


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="num_classes"):
        CORnetZ(num_classes=-1)
    with pytest.raises(ValueError, match="times"):
        CORnetS(times=(2, 4))
    with pytest.raises(ValueError, match="times"):
        CORnetR(times=0)


@pytest.mark.parametrize("name", ["cornet_z", "cornet_r", "cornet_s", "vone_cornet_s"])
def test_unbatched_or_wrong_channel_input_names_the_expected_shape(name):
    # before: a matmul error (cornet_z), an IndexError (cornet_r), torch's batch-norm message (cornet_s)
    model = timm.create_model(name, num_classes=5).eval()
    with pytest.raises(ValueError, match=r"expects a batch of images x of shape \(B, 3, H, W\); got shape "
                                         r"\(3, 32, 32\) \(one unbatched image\? add the batch dimension"):
        model(torch.rand(3, 32, 32))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\); got shape \(2, 1, 32, 32\)"):
        model.forward_features(torch.rand(2, 1, 32, 32))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\); got shape \(2, 3, 32, 32, 1\)"):
        model.forward_intermediates(torch.rand(2, 3, 32, 32, 1), intermediates_only=True)
    assert model(torch.rand(1, 3, 32, 32)).shape == (1, 5)
