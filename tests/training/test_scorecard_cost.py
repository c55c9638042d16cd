"""The default interval of the periodic scorecard: pixel-pass counts against hand-computed values and the
forward passes the attack suite really makes."""

import math

import pytest
import torch
from torch import nn

from neuroreg.robustness import attack_suite
from neuroreg.training.callbacks.scorecard_cost import (attack_passes, default_interval, periodic_evaluation_cost,
                                              training_batch_cost)

from conftest import make_tiny_net


def test_attack_passes_by_hand():
    # PGD, 5 steps: 5 forward+backward (3 passes each) + 1 pass scoring the adversarial images
    assert attack_passes("pgd", steps=5, eot_iter=2, stochastic=False) == 16
    # a stochastic model's PGD brings EOT-PGD along: + 5 steps x 2 draws x 3 + 1
    assert attack_passes("pgd", steps=5, eot_iter=2, stochastic=True) == 16 + 31
    assert attack_passes("fgsm", steps=1, eot_iter=1, stochastic=False) == 4
    assert attack_passes("square", steps=1, eot_iter=1, stochastic=False) == 1001
    with pytest.raises(ValueError, match="attack must be one of .*got 'cw'"):
        attack_passes("cw", steps=5, eot_iter=1, stochastic=False)


def test_periodic_evaluation_cost_by_hand():
    # the tiny config: 92 stimuli at cornet_z's 224 px, 64 validation images of 32 px, 5-step PGD
    got = periodic_evaluation_cost(brain_stimuli=[(92, 224 * 224)], n_images=64, image_pixels=32 * 32,
                                   attack="pgd", steps=5, eot_iter=2, stochastic=False)
    assert got == 92 * 50176 + 64 * 1024 * (2 + 16) == 5_795_840
    # the ImageNet config: two brain sets (92 + 78 stimuli) and 128 images, all at 224 px; VOne is stochastic
    got = periodic_evaluation_cost(brain_stimuli=[(92, 50176), (78, 50176)], n_images=128, image_pixels=50176,
                                   attack="pgd", steps=5, eot_iter=2, stochastic=True)
    assert got == 50176 * (170 + 128 * 49) == 323_233_792
    assert periodic_evaluation_cost(brain_stimuli=[], n_images=10, image_pixels=100, attack=None, steps=5,
                                    eot_iter=2, stochastic=False) == 2000


def test_training_batch_cost_counts_task_and_neural_images():
    batch = {"image": torch.zeros(32, 3, 32, 32), "label": torch.zeros(32, dtype=torch.long),
             "neural_image": torch.zeros(32, 3, 32, 32), "neural_index": torch.arange(32)}
    assert training_batch_cost(batch) == 3 * 64 * 1024 == 196_608
    assert training_batch_cost((torch.zeros(4, 3, 10, 20), torch.zeros(4))) == 3 * 4 * 200
    with pytest.raises(ValueError, match="batch holds no images"):
        training_batch_cost({"label": torch.zeros(4)})


def test_default_interval_by_hand():
    # tiny config: 5,795,840 / (0.05 * 196,608) = 589.58 -> 590 batches -> ceil(590 / 8) = 74 epochs
    assert default_interval(5_795_840, 196_608, batches_per_epoch=8, budget=0.05) == (74, 0)
    # ImageNet config: batch 256 + 32 neural images at 224 px: 3 * 288 * 50176 = 43,352,064 per batch;
    # 323,233,792 / (0.05 * 43,352,064) = 149.1 -> 150 batches, within one 5,005-batch epoch
    assert default_interval(323_233_792, 43_352_064, batches_per_epoch=5005, budget=0.05) == (1, 0)
    # no epoch length (iterable data): 590 batches at 2 batches per optimizer step -> every 295 steps
    assert default_interval(5_795_840, 196_608, batches_per_epoch=math.inf, budget=0.05,
                            accumulate_grad_batches=2) == (0, 295)
    assert default_interval(0, 10, batches_per_epoch=3, budget=0.1) == (1, 0)
    with pytest.raises(ValueError, match=r"budget must be in \(0, 1\]; got 0"):
        default_interval(1, 1, batches_per_epoch=1, budget=0)


class _PassCounter:
    """Forward passes of a module weighted by batch size; a pass whose input needs a gradient counts 3."""

    def __init__(self, module: nn.Module) -> None:
        self.passes = 0
        module.register_forward_hook(self._hook)

    def _hook(self, module, args, output):
        x = args[0]
        self.passes += x.shape[0] * (3 if torch.is_grad_enabled() and x.requires_grad else 1)


@pytest.mark.parametrize("noise", [0.0, 0.2])
def test_attack_passes_match_the_calls_of_the_attack_suite(noise):
    net = make_tiny_net(noise=noise).eval()
    counter = _PassCounter(net)
    n = 12
    g = torch.Generator().manual_seed(0)
    data = (torch.rand(n, 3, 16, 16, generator=g), torch.randint(0, 4, (n,), generator=g))
    attack_suite(net, data, attacks=["pgd"], eps=[4 / 255], pgd_steps=5, eot_iter=2, n_draws=1, sanity=False,
                 batch_size=8, progress=False)
    stochastic = noise > 0
    # the suite's probe (class count, then two passes for stochasticity) on its first batch of 8, one clean pass,
    # then the attack runs
    expected = 3 * 8 + n * (1 + attack_passes("pgd", steps=5, eot_iter=2, stochastic=stochastic))
    assert counter.passes == expected
