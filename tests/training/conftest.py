import pytest
import torch
from torch import nn

from fixtures.neural import make_brain


class TinyNet(nn.Module):
    """Two-area CNN for fast CPU tests: V1 (16 -> 8 px), IT (8 -> 4 px), linear read-out."""

    areas = {"V1": "V1", "IT": "IT"}

    def __init__(self, num_classes: int = 4, width: int = 8, noise: float = 0.0) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.noise = noise
        self.V1 = nn.Sequential(nn.Conv2d(3, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.ReLU())
        self.IT = nn.Sequential(nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(2 * width, num_classes))

    def forward(self, x):
        v1 = self.V1(x)
        if self.noise:  # stochastic like VOneBlock: global RNG, on in train and eval
            v1 = v1 + self.noise * torch.randn_like(v1)
        return self.head(self.IT(v1))


def make_tiny_net(num_classes: int = 4, seed: int = 0, noise: float = 0.0) -> TinyNet:
    torch.manual_seed(seed)
    return TinyNet(num_classes, noise=noise)


@pytest.fixture
def tiny_net():
    return make_tiny_net


@pytest.fixture(scope="session")
def brain():
    return make_brain()
