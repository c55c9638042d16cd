"""Evaluation paths put every submodule back in its own mode: a frozen BatchNorm stays frozen."""

import numpy as np
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


class _Probe(nn.Module):
    """A conv net with a frozen BatchNorm and a timm-style classifier, for the paths that need one."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 3)
        self.train()
        self.bn.eval()

    def get_classifier(self) -> nn.Module:
        return self.fc

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).mean((2, 3)))


def _assert_frozen(model: _Probe) -> None:
    assert model.training and model.conv.training and not model.bn.training
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_accuracy_keeps_a_frozen_batchnorm_frozen():
    from neuroreg.scorecard.evaluation import accuracy

    model = _Probe()
    accuracy(model, _data(), topk=(1,), mean=(0.5,) * 3, std=(0.5,) * 3, batch_size=4)
    _assert_frozen(model)


def test_extract_keeps_a_frozen_batchnorm_frozen_and_runs_in_eval_mode():
    from neuroreg.features.extraction import extract

    model = _Probe()
    images = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    feats = extract(model, images, ["bn"], batch_size=3, progress=False)
    _assert_frozen(model)
    with torch.no_grad():
        model.eval()
        expected = model.bn(model.conv(images))
    np.testing.assert_allclose(np.asarray(feats["bn"]), expected.numpy(), atol=1e-6)


def test_forgetting_embedding_keeps_a_frozen_batchnorm_frozen():
    from neuroreg.finetune.forgetting_passes import embed as _embed

    model = _Probe()
    feats, logits, labels = _embed(model, _data(), batch_size=4, device=torch.device("cpu"))
    _assert_frozen(model)
    assert feats.shape == (8, 4) and logits.shape == (8, 3) and labels.shape == (8,)


def test_factortopy_fit_and_predict_keep_a_frozen_batchnorm_frozen():
    from neuroreg.brain.data import BrainData
    from neuroreg.scoring.factortopy import FactorTopy

    model = _Probe()
    rng = np.random.default_rng(0)
    n_stim, n_vox = 40, 8
    brain = BrainData(rng.normal(size=(n_stim, n_vox)), np.arange(n_stim),
                      {"coords": rng.uniform(-1, 1, size=(n_vox, 2)), "roi": np.array(["V1", "V4"] * 4)})
    images = torch.rand(n_stim, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    ft = FactorTopy(["conv", "bn"], d=8, hidden=16, batch_size=8, max_epochs=1, warmup_epochs=1, anneal_epochs=1,
                    patience=1, progress=False)
    ft.fit(model, brain, stimuli=images)
    _assert_frozen(model)
    ft.predict(model, stimuli=images)
    _assert_frozen(model)
