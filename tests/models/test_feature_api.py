"""timm's feature API on neuroreg's models: feature_info, forward_intermediates, features_only."""

import contextlib

import pytest
import timm
import torch

import neuroreg as nr

from _official import load, rel_diff, write_official_checkpoint

AREAS = ("V1", "V2", "V4", "IT")


@pytest.mark.parametrize("name, kw, channels, modules", [
    ("cornet_s", {}, [64, 128, 256, 512], list(AREAS)),
    ("cornet_z", {}, [64, 128, 256, 512], list(AREAS)),
    ("cornet_r", {"times": 2}, [64, 128, 256, 512], list(AREAS)),
    ("vone_resnet50", {"image_size": 64}, [512, 512, 1024, 2048],
     ["vone_block", "backbone.layer2", "backbone.layer3", "backbone.layer4"]),
    ("vone_cornet_s", {"image_size": 64, "simple_channels": 8, "complex_channels": 8, "times": (1, 1, 1)},
     [16, 128, 256, 512], ["vone_block", "backbone.V2", "backbone.V4", "backbone.IT"]),
])
def test_features_only_returns_the_area_maps(name, kw, channels, modules):
    model = timm.create_model(name, features_only=True, **kw).eval()
    info = model.feature_info
    assert info.channels() == channels
    assert info.reduction() == [4, 8, 16, 32]
    assert info.module_name() == modules
    with torch.no_grad():
        maps = model(torch.rand(2, 3, 64, 64))
    assert [tuple(m.shape) for m in maps] == [(2, c, 64 // r, 64 // r) for c, r in zip(channels, [4, 8, 16, 32])]
    with torch.device("meta") if name.startswith("cornet") else contextlib.nullcontext():
        full = timm.create_model(name, **kw)
    assert nr.area_layers(full) == dict(zip(AREAS, modules))     # the same areas extract() uses


def test_out_indices_select_areas_and_prune_the_rest():
    model = timm.create_model("cornet_s", features_only=True, out_indices=(1, -1))
    assert model.feature_info.module_name() == ["V2", "IT"]
    shallow = timm.create_model("cornet_z", features_only=True, out_indices=(0,))
    assert isinstance(shallow.model.IT, torch.nn.Identity) and shallow.model.num_classes == 0
    assert [tuple(m.shape) for m in shallow(torch.rand(1, 3, 64, 64))] == [(1, 64, 16, 16)]
    with pytest.raises(ValueError, match="out of range"):
        nr.create_model("cornet_z").forward_intermediates(torch.rand(1, 3, 32, 32), indices=[4])


@pytest.mark.parametrize("name", ["cornet_z", "cornet_r"])
def test_intermediates_match_the_official_area_outputs(name, tmp_path):
    fx = load(name)
    path = write_official_checkpoint(fx, tmp_path / f"{name}.pth")
    model = nr.create_model(name, pretrained=True, checkpoint_path=path).eval()
    with torch.no_grad():
        final, maps = model.forward_intermediates(torch.from_numpy(fx["input"]))
        assert rel_diff(model.forward_head(final), fx["logits"]) <= 1e-5
    for area, m in zip(AREAS, maps):
        assert rel_diff(m.mean(dim=(2, 3)), fx[f"area_{area}"]) <= 1e-5, area
    feats = timm.create_model(name, features_only=True, pretrained=True,
                              pretrained_cfg_overlay={"file": str(path)}).eval()
    with torch.no_grad():
        v1 = feats(torch.from_numpy(fx["input"]))[0]
    assert rel_diff(v1.mean(dim=(2, 3)), fx["area_V1"]) <= 1e-5


@pytest.mark.parametrize("name, kw", [("cornet_r", {"times": 3}),
                                      ("vone_resnet50", {"image_size": 64, "noise_mode": "none"})])
def test_stop_early_never_runs_the_deeper_areas(name, kw):
    model = nr.create_model(name, **kw).eval()
    calls = []
    deepest = dict(model.named_modules())[nr.area_layers(model)["IT"]]
    deepest.register_forward_hook(lambda *_: calls.append(1))
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        early = model.forward_intermediates(x, indices=[0, 1], intermediates_only=True)
        assert calls == []
        final, full = model.forward_intermediates(x)
    assert len(calls) >= 1 and len(full) == 4
    torch.testing.assert_close(early[1], full[1])
    torch.testing.assert_close(final, model.forward_features(x))


def test_feature_info_leaves_the_random_stream_alone():
    """The sizing pass behind feature_info draws VOneBlock noise; a seeded extraction on a fresh network
    (whose first call computes feature_info) must equal the same extraction on later calls."""
    kw = {"image_size": 64, "simple_channels": 8, "complex_channels": 8, "times": (1, 1, 1)}
    images = torch.rand(6, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    model = nr.create_model("vone_cornet_s", **kw)
    torch.manual_seed(3)
    state = torch.get_rng_state()
    model.feature_info
    assert torch.equal(torch.get_rng_state(), state)
    fresh = nr.create_model("vone_cornet_s", **kw)
    fresh.load_state_dict(model.state_dict())
    first = nr.extract(fresh, images, ["V1", "IT"], seed=5, progress=False)
    again = nr.extract(fresh, images, ["V1", "IT"], seed=5, progress=False)
    for layer in ("V1", "IT"):
        assert torch.equal(torch.as_tensor(first[layer]), torch.as_tensor(again[layer])), layer
