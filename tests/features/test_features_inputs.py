"""extract(): images of mixed sizes and images outside [0, 1] are refused with what to do, before a collate error."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.data import Dataset

from neuroreg import extract
from neuroreg.errors import ShapeError


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.AdaptiveAvgPool2d(2))


def _save(path, size: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)


class _Images(Dataset):
    def __init__(self, x):
        self.x = x

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], 0


def test_folder_of_mixed_sizes_names_the_files_and_what_to_do(tmp_path):
    for i in range(3):
        _save(tmp_path / f"a{i}.png", 32, i)
    _save(tmp_path / "b_large.png", 40, 9)
    with pytest.raises(ShapeError, match=r"stimuli differ in size: stimulus 3 \(b_large.png\) is 3 x 40 x 40 but "
                                         r"stimulus 0 \(a0.png\) is 3 x 32 x 32; pass transform='model'"):
        extract(_model(), tmp_path, ["0"], batch_size=8)


def test_mixed_sizes_in_another_batch_are_named_too(tmp_path):
    for i in range(3):
        _save(tmp_path / f"a{i}.png", 32, i)
    _save(tmp_path / "b_large.png", 40, 9)
    with pytest.raises(ShapeError, match=r"stimulus 3 \(b_large.png\) is 3 x 40 x 40 but stimulus 0 \(a0.png\)"):
        extract(_model(), tmp_path, ["0"], batch_size=2)   # each batch has one size; the second differs


def test_mixed_sizes_with_the_model_transform_work(tmp_path):
    for i in range(3):
        _save(tmp_path / f"a{i}.png", 32, i)
    _save(tmp_path / "b_large.png", 40, 9)
    model = _model()
    model.pretrained_cfg = {"input_size": (3, 24, 24), "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5),
                            "crop_pct": 1.0, "interpolation": "bilinear"}
    feats = extract(model, tmp_path, ["0"], batch_size=8, transform="model")
    assert feats["0"].shape == (4, 4, 24, 24)


def test_a_transform_that_keeps_sizes_apart_is_named(tmp_path):
    _save(tmp_path / "a.png", 32, 0)
    _save(tmp_path / "b.png", 40, 1)
    with pytest.raises(ShapeError, match="differ in size after the transform: .*the transform must give every image"):
        extract(_model(), tmp_path, ["0"], transform=lambda x: x * 1.0)


@pytest.mark.parametrize("as_dataset", [False, True], ids=["tensor", "dataset"])
def test_float_images_in_0_255_are_refused(as_dataset):
    x = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    x[4] *= 255
    model = _model()
    stimuli = _Images(x) if as_dataset else x
    with pytest.raises(ValueError, match=r"stimuli must be float images with values in \[0, 1\]; stimulus 4 has "
                                         r"values in \[.*\], pixels on the 0..255 scale \(1 such image.*divide them "
                                         r"by 255"):
        extract(model, stimuli, ["0"], batch_size=4)


def test_folder_ids_name_the_refused_image(tmp_path):
    class _Bright(Dataset):
        def __len__(self):
            return 3

        def __getitem__(self, i):
            return torch.full((3, 8, 8), 0.5 if i != 2 else 200.0)

    with pytest.raises(ValueError, match=r"stimulus 2 \(c\) has values in \[200, 200\]"):
        extract(_model(), _Bright(), ["0"], stimulus_ids=["a", "b", "c"])


def test_normalised_images_pass_as_they_are():
    # images with negative values are a network's own (normalised) inputs, as the reference features of the
    # official CORnets are computed on; only the 0..255 scale is refused
    x = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 4 - 2
    model = _model()
    got = extract(model, x, ["0"])["0"]
    with torch.no_grad():
        torch.testing.assert_close(got, model[0](x))


def test_images_in_0_1_with_a_rescaling_transform_pass():
    # the range is checked on the images as given, not after the transform (a network may want 0..255)
    x = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    feats = extract(_model(), _Images(x), ["0"], transform=lambda im: im * 255)
    assert feats["0"].shape == (4, 4, 8, 8)
