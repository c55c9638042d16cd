"""Tiny seeded task for the robustness tests: 10 classes of procedural gratings.

Classes are 5 orientations x 2 spatial frequencies of a sinusoidal grating
(random phase, contrast and pixel noise) at 32 x 32 px; a small CNN learns
them to high accuracy in a few CPU seconds.
"""

import math

import pytest
import torch
from torch import nn

N_CLASSES = 10
SIZE = 32


def make_gratings(n_per_class: int, seed: int, size: int = SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(N_CLASSES).repeat_interleave(n_per_class)
    theta = (labels % 5).float() * math.pi / 5
    freq = torch.where(labels < 5, torch.tensor(2.0), torch.tensor(5.0)) / size  # cycles per pixel
    phase = torch.rand(len(labels), generator=gen) * 2 * math.pi
    contrast = 0.08 + 0.08 * torch.rand(len(labels), generator=gen)
    coords = torch.arange(size).float()
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    arg = (xx[None] * torch.cos(theta)[:, None, None] + yy[None] * torch.sin(theta)[:, None, None])
    img = 0.5 + contrast[:, None, None] * torch.cos(2 * math.pi * freq[:, None, None] * arg + phase[:, None, None])
    tint = 0.8 + 0.2 * torch.rand(len(labels), 3, 1, 1, generator=gen)
    img = img[:, None] * tint + 0.04 * torch.randn(len(labels), 3, size, size, generator=gen)
    return img.clamp(0, 1), labels


class SmallCNN(nn.Module):
    def __init__(self, num_classes: int = N_CLASSES, in_channels: int = 3):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2))
        self.head = nn.Linear(32 * 4, num_classes)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, seed: int,
          normalize=None, lr: float = 3e-3) -> nn.Module:
    torch.manual_seed(seed)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(y), generator=gen)
        for i in range(0, len(y), 50):
            idx = perm[i:i + 50]
            xb = x[idx] if normalize is None else normalize(x[idx])
            loss = nn.functional.cross_entropy(model(xb), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


MEAN = (0.5, 0.5, 0.5)
STD = (0.25, 0.25, 0.25)


@pytest.fixture(scope="session")
def gratings():
    x_train, y_train = make_gratings(40, seed=0)
    x_test, y_test = make_gratings(10, seed=1)
    return x_train, y_train, x_test, y_test


@pytest.fixture(scope="session")
def trained_cnn(gratings):
    """A SmallCNN trained on normalized gratings (mean 0.5, std 0.25 inside the wrapper)."""
    x_train, y_train, _, _ = gratings
    torch.manual_seed(0)
    model = SmallCNN()
    return train(model, x_train, y_train, epochs=8, seed=0,
                 normalize=lambda x: (x - 0.5) / 0.25)


@pytest.fixture(autouse=True, scope="session")
def _single_thread():
    # Small convolutions are several times faster on one thread when the CPU is shared.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
