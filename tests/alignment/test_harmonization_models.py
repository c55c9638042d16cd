"""Double backpropagation of the harmonization term through every kind of neuroreg model, and noise draws.

For each model the term alone must give finite gradients that reach the
network's weights (the saliency depends on them); the VOneBlock front end is
stochastic, so its saliency is averaged over noise draws and must get less
noisy with more draws, and equal the single draw without noise.
"""

import pytest
import torch
from torch import nn

import neuroreg as nr
from neuroreg.alignment import HarmonizationLoss
from neuroreg.alignment.harmonization import harmonization_loss, harmonization_term, input_saliency, saliency_maps
from neuroreg.errors import ShapeError
from neuroreg.models import VOneBlock, VOneNet

SIZE = 32


def _vone_block_net(noise_mode: str = "neuronal") -> nn.Module:
    """A VOneBlock (8 simple + 8 complex cells) read out by a linear layer."""
    block = VOneBlock(image_size=SIZE, visual_degrees=4, simple_channels=8, complex_channels=8, ksize=9, stride=2,
                      noise_mode=noise_mode)
    return nn.Sequential(block, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4))


def _vone_cornet_z(noise_mode: str = "neuronal") -> nn.Module:
    """A small VOneNet: the VOneBlock and bottleneck of ``vone_cornet_s`` on a CORnet-Z back end."""
    return VOneNet(nr.create_model("cornet_z", num_classes=4), image_size=SIZE, visual_degrees=4,
                   simple_channels=8, complex_channels=8, ksize=9, stride=2, noise_mode=noise_mode)


BUILDERS = {
    "vone_block": _vone_block_net,
    "vone_cornet_z": _vone_cornet_z,
    "cornet_z": lambda: nr.create_model("cornet_z", num_classes=4),
    "cornet_r": lambda: nr.create_model("cornet_r", num_classes=4, times=2),
    "timm_test_resnet": lambda: nr.create_model("test_resnet", num_classes=4),
}
SLOW_BUILDERS = {   # the full-size CORnet-S back end: tens of seconds per double backward on a busy CPU
    "cornet_s": lambda: nr.create_model("cornet_s", num_classes=4, times=(1, 1, 1)),
    "vone_cornet_s": lambda: nr.create_model("vone_cornet_s", num_classes=4, image_size=SIZE),
}


def _check_double_backprop(model: nn.Module) -> None:
    g = torch.Generator().manual_seed(0)
    images = torch.rand(2, 3, SIZE, SIZE, generator=g).requires_grad_(True)
    maps = torch.rand(2, SIZE, SIZE, generator=g)
    term = harmonization_loss(model(images), images, torch.tensor([0, 3]), maps)
    term.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert torch.isfinite(term.detach()) and float(term.detach()) > 0
    assert all(torch.isfinite(gr).all() for gr in grads.values() if gr is not None)
    # the saliency depends on every trainable weight: the term reaches the first one (a VOneBlock is fixed)
    first = next(n for n, p in model.named_parameters() if p.requires_grad and p.ndim > 1)
    assert grads[first] is not None and float(grads[first].abs().max()) > 0, first
    assert images.grad is not None and torch.isfinite(images.grad).all()


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_term_alone_trains_the_network_by_double_backprop(name):
    torch.manual_seed(0)
    _check_double_backprop(BUILDERS[name]().train())


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SLOW_BUILDERS))
def test_term_alone_trains_full_size_cornet_s_models(name):
    torch.manual_seed(0)
    _check_double_backprop(SLOW_BUILDERS[name]().train())


def test_vone_front_end_weights_receive_the_term_through_the_bottleneck():
    torch.manual_seed(0)
    model = _vone_cornet_z().train()
    _check_double_backprop(model)
    assert model.bottleneck.weight.grad is not None and model.bottleneck.weight.grad.abs().max() > 0


def test_noise_draws_average_to_the_noiseless_saliency_when_there_is_no_noise():
    torch.manual_seed(0)
    model = _vone_cornet_z(noise_mode="none").eval()
    images = torch.rand(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([0, 1, 2])
    one = saliency_maps(model, images, labels)
    four = saliency_maps(model, images, labels, draws=4)
    assert torch.allclose(four, one, rtol=1e-4, atol=1e-6 * float(one.abs().max()))


def test_more_noise_draws_give_a_less_noisy_saliency():
    """The k-draw saliency is a mean of k single-draw saliencies: its spread over repeats falls ~ 1/sqrt(k)."""
    torch.manual_seed(0)
    model = _vone_cornet_z().eval()
    images = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([0, 1])
    torch.manual_seed(2)
    single = torch.stack([saliency_maps(model, images, labels) for _ in range(6)])
    eight = torch.stack([saliency_maps(model, images, labels, draws=8) for _ in range(6)])
    spread_single, spread_eight = single.std(0).mean(), eight.std(0).mean()
    assert float(spread_single) > 0   # the noise does change the saliency
    assert float(spread_eight) < 0.6 * float(spread_single)   # 1/sqrt(8) = 0.35 expected


def test_draws_repeat_the_batch_in_one_forward_and_check_the_logits():
    torch.manual_seed(0)
    model = BUILDERS["cornet_z"]()
    x = torch.rand(2, 3, SIZE, SIZE, requires_grad=True)
    logits = model(x.repeat(3, 1, 1, 1))
    maps = torch.rand(2, SIZE, SIZE)
    term = HarmonizationLoss(noise_draws=3)(logits, x, torch.tensor([1, 2]), maps)
    assert term.ndim == 0 and torch.isfinite(term)
    with pytest.raises(ShapeError, match=r"draws \* B"):
        input_saliency(logits, x, torch.tensor([1, 2]), draws=2)
    with pytest.raises(ValueError, match="draws"):
        HarmonizationLoss(noise_draws=0)


def test_a_flat_saliency_map_gives_a_finite_gradient():
    """A network whose saliency is constant on one image (dead units): the release's gradient is NaN there."""
    saliency = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0))
    saliency[1] = 0.0
    saliency.requires_grad_(True)
    term = harmonization_term(saliency, torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(1)))
    (grad,) = torch.autograd.grad(term, saliency)
    assert torch.isfinite(term) and torch.isfinite(grad).all()
    assert float(grad[1].abs().max()) == 0.0 and float(grad[0].abs().max()) > 0
