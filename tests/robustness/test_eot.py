"""Stochastic models (VOneBlock with neuronal noise on in eval): detection, EOT, sanity."""

import pytest
import torch
from torch import nn

from neuroreg.models import VOneBlock
from neuroreg.robustness import RobustClassifier, attack_suite, is_stochastic, make_attack

from conftest import MEAN, N_CLASSES, STD, make_gratings, train

VONE_MEAN = VONE_STD = (0.5, 0.5, 0.5)  # VOneNet's input normalization


@pytest.fixture(scope="module")
def vone_model(gratings):
    x, y, _, _ = gratings
    torch.manual_seed(0)
    block = VOneBlock(image_size=32, visual_degrees=8, simple_channels=16, complex_channels=16, ksize=9,
                      stride=2, seed=0)
    model = nn.Sequential(block, nn.Conv2d(block.out_channels, 32, 3, padding=1), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(128, N_CLASSES))
    return train(model, x, y, epochs=12, seed=0, normalize=lambda z: (z - 0.5) / 0.5)


def _mean_accuracy(model, x, y, draws, seed):
    torch.manual_seed(seed)
    with torch.no_grad():
        return sum(float((model(x).argmax(1) == y).float().mean()) for _ in range(draws)) / draws


def test_stochasticity_is_detected(vone_model, trained_cnn, gratings):
    x = gratings[2][:8]
    assert is_stochastic(RobustClassifier(vone_model, VONE_MEAN, VONE_STD), x)
    assert not is_stochastic(RobustClassifier(trained_cnn, MEAN, STD), x)
    wrapped = RobustClassifier(vone_model, VONE_MEAN, VONE_STD).infer(x)
    assert wrapped.stochastic is True and wrapped.num_classes == N_CLASSES


def test_eot_pgd_beats_plain_pgd_on_vone(vone_model):
    x, y = make_gratings(8, seed=2)
    model = RobustClassifier(vone_model, VONE_MEAN, VONE_STD, num_classes=N_CLASSES).eval()
    clean = _mean_accuracy(model, x, y, 4, seed=0)
    # 1/255: PGD leaves about half the images intact, so a stronger attack has room to show
    torch.manual_seed(0)
    adv_plain = make_attack("pgd", model, 1 / 255, steps=5)(x, y)
    torch.manual_seed(0)
    adv_eot = make_attack("eotpgd", model, 1 / 255, steps=5, eot_iter=8)(x, y)
    plain = _mean_accuracy(model, adv_plain, y, 4, seed=10)
    eot = _mean_accuracy(model, adv_eot, y, 4, seed=10)
    assert clean > 0.5
    assert eot < plain - 0.02, (clean, plain, eot)


def test_suite_on_a_stochastic_model_passes_its_checks(vone_model, gratings):
    _, _, x, y = gratings
    table = attack_suite(vone_model, (x[::5], y[::5]), attacks=["pgd"], eps=[4 / 255, 8 / 255], mean=VONE_MEAN,
                         std=VONE_STD, pgd_steps=3, eot_iter=4, n_draws=3, square_queries=50, progress=False)
    df = table.to_pandas()
    clean = df[df["attack"] == "none"]
    assert clean["n_draws"].item() == 3 and clean["sd"].item() > 0  # mean +/- sd over noise draws
    assert {"pgd", "eotpgd"} <= set(df[df["role"] == "main"]["attack"])
    verdicts = {c.name: c for c in table.sanity}
    assert {"clean_noise_draws", "eot:0.03137", "large_eps", "more_steps", "black_box"} <= set(verdicts)
    failed = [c for c in table.sanity if not c.passed]
    assert not failed, failed
