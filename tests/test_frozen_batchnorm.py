"""Evaluation paths put every submodule back in its own mode: a frozen BatchNorm stays frozen."""

import torch
from torch import nn
from torch.utils.data import TensorDataset

from neuroreg.robustness import attack_suite, corruption_suite
from neuroreg.robustness.wrapper import RobustClassifier


def _probe_like_model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(4, 3))
    model.train()
    model[1].eval()  # BatchNorm statistics frozen, as a linear probe does
    return model


def _data():
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.rand(8, 3, 16, 16, generator=g), torch.arange(8) % 3)


def test_attack_and_corruption_suites_keep_a_frozen_batchnorm_frozen():
    model = _probe_like_model()
    attack_suite(model, _data(), attacks=["fgsm"], eps=[0.0, 2 / 255], mean=None, std=None, sanity=False,
                 batch_size=8, progress=False)
    assert model.training and not model[1].training
    corruption_suite(model, _data(), corruptions=["gaussian_noise"], severities=[1], mean=None, std=None,
                     batch_size=8, progress=False)
    assert model.training and not model[1].training


def test_wrapper_inference_keeps_a_frozen_batchnorm_frozen():
    model = _probe_like_model()
    wrapped = RobustClassifier(model, mean=None, std=None)
    wrapped.train()
    model[1].eval()
    wrapped.infer(torch.rand(2, 3, 16, 16))
    assert model.training and not model[1].training
