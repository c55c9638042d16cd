import pytest
import torch
from torch import nn
from torchvision.transforms import Normalize

from neuroreg.errors import NonFiniteError, ShapeError
from neuroreg.robustness import RobustClassifier, check_images, normalize_images


def test_normalization_matches_torchvision():
    x = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    torch.testing.assert_close(normalize_images(x, mean, std), Normalize(mean, std)(x))
    wrapped = RobustClassifier(nn.Identity(), mean, std)
    torch.testing.assert_close(wrapped(x), Normalize(mean, std)(x))
    assert torch.equal(RobustClassifier(nn.Identity(), None, None)(x), x)


def test_forward_is_differentiable_and_leaves_input_alone():
    x = torch.rand(2, 3, 4, 4, requires_grad=True)
    before = x.detach().clone()
    RobustClassifier(nn.Flatten(), (0.5,) * 3, (0.25,) * 3)(x).sum().backward()
    assert torch.equal(x.detach(), before)
    torch.testing.assert_close(x.grad, torch.full_like(x, 4.0))  # d/dx (x - m) / 0.25


def test_infer_reads_classes_and_stochasticity():
    class Noisy(nn.Module):
        def forward(self, x):
            return x.flatten(1)[:, :5] + torch.randn(x.shape[0], 5)

    x = torch.rand(3, 3, 4, 4)
    w = RobustClassifier(Noisy(), None, None).infer(x)
    assert w.num_classes == 5 and w.stochastic is True
    d = RobustClassifier(nn.Sequential(nn.Flatten(), nn.Linear(48, 7)), None, None).infer(x)
    assert d.num_classes == 7 and d.stochastic is False
    declared = RobustClassifier(Noisy(), None, None, stochastic=False).infer(x)
    assert declared.stochastic is False  # a declaration wins over detection


@pytest.mark.parametrize("bad, error, words", [
    (torch.rand(2, 3, 4, 4) * 2, ValueError, r"\[0, 1\]"),
    (torch.rand(3, 4, 4), ShapeError, "4-D"),
    ((torch.rand(2, 3, 4, 4) * 255).to(torch.uint8), ValueError, "float"),
    (torch.full((1, 3, 2, 2), float("nan")), NonFiniteError, "non-finite"),
])
def test_check_images_rejects(bad, error, words):
    with pytest.raises(error, match=words):
        check_images("x", bad)


def test_constructor_rejects_bad_statistics():
    with pytest.raises(ValueError, match="both"):
        RobustClassifier(nn.Identity(), (0.5,) * 3, None)
    with pytest.raises(ValueError, match="positive"):
        RobustClassifier(nn.Identity(), (0.5,) * 3, (0.2, 0.0, 0.2))
    with pytest.raises(ShapeError, match="channels"):
        RobustClassifier(nn.Identity(), (0.5,) * 3, (0.2,) * 3)(torch.rand(1, 1, 4, 4))
