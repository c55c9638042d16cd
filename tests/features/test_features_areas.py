"""extract() on area maps (forward_intermediates, early stop) and pooling of token outputs."""

import sys
from pathlib import Path

import pytest
import timm
import torch

import neuroreg as nr
from neuroreg import extract

sys.path.insert(0, str(Path(__file__).parents[1] / "models"))
from _official import load, rel_diff, write_official_checkpoint  # noqa: E402

AREAS = ["V1", "V2", "V4", "IT"]


def test_area_features_equal_the_official_cornet_r(tmp_path):
    fx = load("cornet_r")
    path = write_official_checkpoint(fx, tmp_path / "cornet_r.pth")
    model = nr.create_model("cornet_r", pretrained=True, checkpoint_path=path)
    feats = extract(model, torch.from_numpy(fx["input"]), AREAS, pool="avg", batch_size=1)
    for area in AREAS:
        assert rel_diff(feats[area], fx[f"area_{area}"]) <= 1e-5, area


def test_early_areas_do_not_run_the_deeper_ones():
    model = nr.create_model("cornet_r", times=2)
    calls = []
    model.IT.register_forward_hook(lambda *_: calls.append(1))
    x = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    early = extract(model, x, ["V1", "V2"], batch_size=2)
    assert calls == []
    full = extract(model, x, AREAS, batch_size=3)
    assert len(calls) > 0
    torch.testing.assert_close(early["V2"], full["V2"])
    steps = extract(model, x, ["V2"], time_step="all")          # per-step outputs still come from hooks
    assert steps["V2"].shape == (3, 2, 128, 8, 8)
    torch.testing.assert_close(steps["V2"][:, -1], full["V2"])


def test_vonenet_areas_through_intermediates_equal_hooks():
    model = nr.create_model("vone_resnet50", image_size=64, simple_channels=8, complex_channels=8,
                            noise_mode="none").eval()
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    got = extract(model, x, {"v1": "V1", "v4": "V4", "l1": "backbone.layer1"})
    seen = {}
    for name in ("vone_block", "backbone.layer3", "backbone.layer1"):
        model.get_submodule(name).register_forward_hook(lambda _m, _i, out, name=name: seen.__setitem__(name, out))
    with torch.no_grad():
        model(x)
    torch.testing.assert_close(got["v1"], seen["vone_block"])
    torch.testing.assert_close(got["v4"], seen["backbone.layer3"])
    torch.testing.assert_close(got["l1"], seen["backbone.layer1"])


@pytest.fixture(scope="module")
def vit():
    torch.manual_seed(0)
    return timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=4, num_classes=5).eval()


def test_token_outputs_are_pooled_over_tokens_only(vit):
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    seen = {}
    vit.blocks[1].register_forward_hook(lambda _m, _i, out: seen.__setitem__("b1", out))
    with torch.no_grad():
        vit(x)
    tokens = seen["b1"]
    assert tokens.shape == (3, 17, 192)                            # 16 patches + class token, D = 192
    avg = extract(vit, x, ["blocks.1"], pool="avg")["blocks.1"]
    mx = extract(vit, x, ["blocks.1"], pool="max")["blocks.1"]
    assert avg.shape == mx.shape == (3, 192)
    torch.testing.assert_close(avg, tokens.mean(dim=1))
    torch.testing.assert_close(mx, tokens.amax(dim=1))
    areas = extract(vit, x, ["V1", "IT"], pool="avg")
    assert areas["IT"].shape == (3, 192)
