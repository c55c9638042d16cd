import numpy as np
import pytest
import torch

from neuroreg.brain import BrainData
from neuroreg.data import GratingsDataset


def make_brain(n: int = 40, size: int = 16, n_units: int = 24, seed: int = 7) -> BrainData:
    """Neural responses to procedural images from a fixed random filter bank (a learnable target)."""
    ds = GratingsDataset(n, num_classes=8, image_size=size, seed=seed)
    images = torch.stack([ds[i][0] for i in range(n)])
    g = torch.Generator().manual_seed(seed)
    filters = torch.randn(n_units, 3, 5, 5, generator=g)
    resp = torch.relu(torch.nn.functional.conv2d(images - 0.5, filters, stride=3)).mean((2, 3))
    return BrainData(resp.numpy().astype(np.float64), [f"img{i:03d}" for i in range(n)], stimuli=images, name="tiny")


@pytest.fixture(scope="session")
def brain():
    return make_brain()
