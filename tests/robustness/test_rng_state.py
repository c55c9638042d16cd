"""Both suites leave the caller's global torch RNG state (CPU, and CUDA where used) as they found it.

Before, ``attack_suite`` advanced it: iterating the DataLoader draws a base seed from the global
generator, and that happened outside the forked, seeded sections; ``corruption_suite`` did not.
"""

import pytest
import torch
from torch import nn

from neuroreg.robustness import attack_suite, corruption_suite

from conftest import MEAN, STD, SmallCNN, make_gratings


class NoisyCNN(nn.Module):
    """A stochastic model: Gaussian noise on its input drawn from the global generator."""

    def __init__(self):
        super().__init__()
        self.net = SmallCNN()

    def forward(self, x):
        return self.net(x + 0.01 * torch.randn_like(x))


def _runs(model, data, device):
    return {
        "attack_suite": lambda: attack_suite(model, data, attacks=["fgsm", "pgd"], eps=[2 / 255], mean=MEAN, std=STD,
                                             pgd_steps=2, n_draws=2, sanity=False, batch_size=8, progress=False),
        "corruption_suite": lambda: corruption_suite(model, data, corruptions=["gaussian_noise"], severities=[1],
                                                     mean=MEAN, std=STD, batch_size=8, progress=False),
    }


@pytest.mark.parametrize("suite", ["attack_suite", "corruption_suite"])
@pytest.mark.parametrize("stochastic", [False, True])
def test_global_cpu_rng_state_is_unchanged(suite, stochastic):
    x, y = make_gratings(2, seed=0)
    model = (NoisyCNN() if stochastic else SmallCNN()).eval()
    shuffled = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8, shuffle=True)
    for data in ((x, y), shuffled):
        torch.manual_seed(1234)
        before = torch.get_rng_state()
        _runs(model, data, torch.device("cpu"))[suite]()
        assert torch.equal(torch.get_rng_state(), before)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("suite", ["attack_suite", "corruption_suite"])
def test_global_cuda_rng_state_is_unchanged(suite):
    x, y = make_gratings(2, seed=0)
    model = NoisyCNN().eval().cuda()
    torch.manual_seed(1234)
    before_cpu, before_cuda = torch.get_rng_state(), torch.cuda.get_rng_state()
    _runs(model, (x, y), torch.device("cuda"))[suite]()
    assert torch.equal(torch.get_rng_state(), before_cpu)
    assert torch.equal(torch.cuda.get_rng_state(), before_cuda)


def test_same_numbers_whatever_the_callers_rng_state():
    x, y = make_gratings(2, seed=0)
    model = NoisyCNN().eval()
    tables = []
    for caller_seed in (1, 2):
        torch.manual_seed(caller_seed)
        tables.append([r["score"] for r in _runs(model, (x, y), torch.device("cpu"))["attack_suite"]()])
    assert tables[0] == tables[1]
