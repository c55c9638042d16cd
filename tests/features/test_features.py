"""extract(): equals a manual forward, independent of batch size, streams to HDF5, leaves no hooks."""

import h5py
import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from neuroreg import extract
from neuroreg.errors import UnknownNameError


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None).eval()


@pytest.fixture(scope="module")
def images():
    return torch.rand(10, 3, 64, 64, generator=torch.Generator().manual_seed(1))


def _manual_layer3(model, x):
    with torch.no_grad():
        x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
        return model.layer3(model.layer2(model.layer1(x)))


def test_equals_manual_forward_of_submodule(resnet, images):
    feats = extract(resnet, images, ["layer3", "avgpool"], batch_size=4)
    torch.testing.assert_close(feats["layer3"], _manual_layer3(resnet, images), rtol=1e-5, atol=1e-5)
    pooled = resnet.avgpool(resnet.layer4(_manual_layer3(resnet, images)))
    torch.testing.assert_close(feats["avgpool"], pooled.detach(), rtol=1e-5, atol=1e-5)
    assert feats["layer3"].shape == (10, 256, 4, 4)


def test_unchanged_by_batch_size(resnet, images):
    a = extract(resnet, images, ["layer2"], batch_size=1)
    b = extract(resnet, images, ["layer2"], batch_size=7)
    torch.testing.assert_close(a["layer2"], b["layer2"], rtol=1e-4, atol=2e-5)


def test_streamed_to_hdf5_equals_in_memory(resnet, images, tmp_path):
    mem = extract(resnet, images, ["layer1", "layer4"], batch_size=3)
    path = tmp_path / "feats.h5"
    disk = extract(resnet, images, ["layer1", "layer4"], batch_size=3, out=path)
    assert path.is_file() and disk.path == path
    with h5py.File(path) as f:
        assert set(f["features"]) == {"layer1", "layer4"}
        np.testing.assert_array_equal(f["features"]["layer4"][...], mem["layer4"].numpy())
    torch.testing.assert_close(disk["layer1"], mem["layer1"])
    streamed = torch.cat(list(disk.iter_batches("layer1", batch_size=4)))
    torch.testing.assert_close(streamed, mem["layer1"])
    assert not list(tmp_path.glob(".*.tmp"))


def test_no_hooks_left_behind_even_on_error(resnet, images):
    def count_hooks(m):
        return sum(len(mod._forward_hooks) for mod in m.modules())
    before = count_hooks(resnet)
    extract(resnet, images[:2], ["layer1", "fc"])
    assert count_hooks(resnet) == before

    class Boom(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 2, 3)

        def forward(self, x):
            self.a(x)
            raise RuntimeError("boom")

    model = Boom()
    with pytest.raises(RuntimeError, match="boom"):
        extract(model, images[:2], ["a"])
    assert count_hooks(model) == 0


def test_restores_train_mode_and_uses_eval(images):
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Dropout(0.9), nn.Flatten())
    model.train()
    a = extract(model, images[:3], ["1"])
    b = extract(model, images[:3], ["1"])
    torch.testing.assert_close(a["1"], b["1"])  # dropout off during extraction
    assert model.training and model[1].training


def test_time_steps_of_recurrent_module(images):
    class Recurrent(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1)

        def forward(self, x):
            for _ in range(3):
                x = self.conv(x)
            return x

    torch.manual_seed(0)
    model = Recurrent().eval()
    x = images[:2]
    with torch.no_grad():
        s1 = model.conv(x)
        s2 = model.conv(s1)
        s3 = model.conv(s2)
    torch.testing.assert_close(extract(model, x, "conv")["conv"], s3)
    torch.testing.assert_close(extract(model, x, "conv", time_step=0)["conv"], s1)
    allsteps = extract(model, x, "conv", time_step="all")["conv"]
    assert allsteps.shape == (2, 3, 3, 64, 64)
    torch.testing.assert_close(allsteps[:, 1], s2)
    pooled = extract(model, x, "conv", time_step="all", pool="avg")["conv"]
    torch.testing.assert_close(pooled, allsteps.mean((3, 4)))
    projected = extract(model, x, "conv", time_step="all", pool="srp", srp_dim=8)["conv"]
    assert projected.shape == (2, 3, 8)  # each time step projected on its own


def test_pooling_modes(resnet, images):
    full = extract(resnet, images, "layer3")["layer3"]
    avg = extract(resnet, images, "layer3", pool="avg")["layer3"]
    mx = extract(resnet, images, "layer3", pool="max")["layer3"]
    torch.testing.assert_close(avg, full.mean((2, 3)))
    torch.testing.assert_close(mx, full.amax((2, 3)))
    srp1 = extract(resnet, images, "layer3", pool="srp", srp_dim=64, seed=3)["layer3"]
    srp2 = extract(resnet, images, "layer3", pool="srp", srp_dim=64, seed=3, batch_size=2)["layer3"]
    assert srp1.shape == (10, 64)
    torch.testing.assert_close(srp1, srp2, rtol=1e-5, atol=1e-5)


def test_stimuli_as_uint8_array_paths_folder_and_dataset(tmp_path):
    from PIL import Image
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, size=(4, 16, 16, 3), dtype=np.uint8)
    for i, a in enumerate(arr):
        Image.fromarray(a).save(tmp_path / f"im{i}.png")
    model = nn.Sequential(nn.Conv2d(3, 2, 3), nn.Flatten())
    ref = extract(model, torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 255, "0")["0"]
    torch.testing.assert_close(extract(model, arr, "0")["0"], ref)
    from_folder = extract(model, tmp_path, "0")
    torch.testing.assert_close(from_folder["0"], ref)
    assert list(from_folder.stimulus_ids) == [f"im{i}.png" for i in range(4)]
    paths = [tmp_path / f"im{i}.png" for i in range(4)]
    torch.testing.assert_close(extract(model, paths, "0")["0"], ref)
    ds = torch.utils.data.TensorDataset(ref.new_tensor(arr).permute(0, 3, 1, 2) / 255, torch.arange(4))
    torch.testing.assert_close(extract(model, ds, "0")["0"], ref)


def test_transform_applied_per_image(images):
    model = nn.Sequential(nn.Identity())
    out = extract(model, images[:2], "0", transform=lambda x: x * 2)["0"]
    torch.testing.assert_close(out, images[:2] * 2)


def test_unknown_layer_names_the_model(resnet, images):
    with pytest.raises(UnknownNameError, match="layer9.*ResNet"):
        extract(resnet, images, ["layer9"])


def test_bad_stimuli_rejected(resnet):
    with pytest.raises(ValueError, match=r"stimuli must be 4-D.*\(3, 8, 8\)"):
        extract(resnet, torch.rand(3, 8, 8), "layer1")
    bad = torch.rand(2, 3, 8, 8)
    bad[1, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        extract(resnet, bad, "layer1")
    with pytest.raises(ValueError, match="pool must be"):
        extract(resnet, bad, "layer1", pool="median")


def test_cornet_s_shared_conv_is_hooked_at_every_step():
    from neuroreg.models.cornet import CORnetS

    torch.manual_seed(0)
    model = CORnetS(num_classes=10, times=(2, 1, 1)).eval()
    x = torch.rand(2, 3, 64, 64)
    steps = extract(model, x, ["V2.conv2", "V2"], time_step="all", progress=False)
    # step 0 halves the 16 x 16 V1 output, step 1 keeps 8 x 8
    assert steps["V2.conv2"].shape == (2, 2, 512, 8, 8)
    with torch.no_grad():
        block = model.V2
        h = block.conv_input(model.V1(x))
        h = block.nonlin1(block.norm1_0(block.conv1(h)))
        expected = torch.nn.functional.conv2d(h, block.conv2.weight, stride=2, padding=1)
    torch.testing.assert_close(steps["V2.conv2"][:, 0], expected)
