"""The Neural Harmonizer loss against the released TensorFlow code (harmonization 0.0.9) and analytic cases.

Fixtures: tests/fixtures/harmonization/, written by experiments/make_harmonization_references.py
from the released functions (see its meta.json for the versions).
"""

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import neuroreg as nr
from neuroreg.alignment import HarmonizationLoss, WeightSchedule, harmonization_loss
from neuroreg.alignment.harmonization import (harmonization_term, input_saliency, pyramid, pyramidal_mse,
                                              saliency_maps, standardize_cut)
from neuroreg.errors import NonFiniteError, ShapeError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "harmonization"


def _load(name: str) -> dict:
    with np.load(FIXTURES / name) as data:
        return {k: data[k] for k in data.files}


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))


# ---------------------------------------------------------------------------------------- the released outputs
def test_standardize_cut_equals_release():
    ref = _load("standardize_cut.npz")
    np.testing.assert_allclose(standardize_cut(_t(ref["maps"])).numpy(), ref["expected"], rtol=1e-5, atol=1e-5)


def test_pyramid_levels_equal_release_with_tensorflow_same_padding():
    ref = _load("pyramid.npz")
    levels = pyramid(_t(ref["maps"]), levels=5)
    assert len(levels) == 6
    for k, level in enumerate(levels):
        expected = ref[f"level_{k}"]
        assert level.shape == expected.shape, f"level {k}"
        np.testing.assert_allclose(level.numpy(), expected, rtol=1e-5, atol=1e-6, err_msg=f"level {k}")


def test_pyramidal_mse_equals_release():
    ref = _load("pyramidal_mse.npz")
    a, b, tokens = _t(ref["a"]), _t(ref["b"]), _t(ref["tokens"])
    assert float(pyramidal_mse(a, b, tokens)) == pytest.approx(float(ref["loss_tokens"]), rel=1e-5)
    assert float(pyramidal_mse(a, b)) == pytest.approx(float(ref["loss_ones"]), rel=1e-5)
    assert float(pyramidal_mse(a, b, tokens, levels=3)) == pytest.approx(float(ref["loss_levels_3"]), rel=1e-5)


class _TinyNet(nn.Sequential):
    """The fixture's Keras network in PyTorch: TF "SAME" at stride 2 pads 32 px by (0, 1)."""

    def __init__(self, weights: dict) -> None:
        super().__init__(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(3, 6, 3, stride=2, bias=False),
                         nn.BatchNorm2d(6, eps=1e-3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 5))
        with torch.no_grad():
            for name, value in self._keras_view().items():
                value.copy_(self._from_keras(weights[f"weight/{name}"]))

    def _keras_view(self) -> dict:
        return {"conv/kernel:0": self[1].weight,
                "batch_normalization/gamma:0": self[2].weight, "batch_normalization/beta:0": self[2].bias,
                "dense/kernel:0": self[6].weight, "dense/bias:0": self[6].bias}

    @staticmethod
    def _from_keras(w: np.ndarray) -> torch.Tensor:
        t = _t(w)   # HWIO -> OIHW; (in, out) -> (out, in)
        return t.permute(3, 2, 0, 1) if t.ndim == 4 else t.T if t.ndim == 2 else t

    @staticmethod
    def _to_keras(t: torch.Tensor) -> np.ndarray:
        return (t.permute(2, 3, 1, 0) if t.ndim == 4 else t.T if t.ndim == 2 else t).detach().numpy()

    def keras_grads(self) -> dict:
        return {name: self._to_keras(torch.zeros_like(p) if p.grad is None else p.grad)   # None: not in the graph
                for name, p in self._keras_view().items()}


@pytest.fixture(scope="module")
def network():
    return _load("network.npz"), json.loads((FIXTURES / "meta.json").read_text())


def _network_batch(ref: dict) -> tuple:
    images = _t(ref["images"]).permute(0, 3, 1, 2).contiguous().requires_grad_(True)
    return images, _t(ref["labels"]), _t(ref["human_maps"]), _t(ref["tokens"])


def test_tiny_network_saliency_and_term_equal_release(network):
    ref, _ = network
    model = _TinyNet(ref).train()
    images, labels, maps, tokens = _network_batch(ref)
    logits = model(images)
    np.testing.assert_allclose(logits.detach().numpy(), ref["logits"], rtol=1e-5, atol=1e-5)
    saliency = input_saliency(logits, images, labels)
    scale = np.abs(ref["saliency"]).max()
    np.testing.assert_allclose(saliency.detach().numpy(), ref["saliency"], rtol=1e-4, atol=1e-5 * scale)
    term = HarmonizationLoss()(logits, images, labels, maps, tokens)
    assert float(term.detach()) == pytest.approx(float(ref["harmonization_term"]), rel=1e-5)


@pytest.mark.parametrize("recipe", ["harmonization", "full"])
def test_tiny_network_gradients_equal_release(network, recipe):
    """Double backpropagation: the weights' gradients equal the released harmonizer_loss's."""
    ref, meta = network
    model = _TinyNet(ref).train()
    images, labels, maps, tokens = _network_batch(ref)
    logits = model(images)
    loss = harmonization_loss(logits, images, labels, maps, tokens)
    if recipe == "full":   # the release's recipe around the term: label smoothing 0.1, L2 1e-5 (sum w**2 / 2)
        decayed = [p for name, p in model._keras_view().items() if name in meta["weight_decayed"]]
        loss = loss + F.cross_entropy(logits, labels, label_smoothing=0.1) + \
            1e-5 * sum(p.square().sum() / 2 for p in decayed)
    loss.backward()
    grads = model.keras_grads()
    scale = max(np.abs(ref[f"grad_{recipe}/{name}"]).max() for name in grads)
    for name, grad in grads.items():
        expected = ref[f"grad_{recipe}/{name}"]
        np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-5 * scale, err_msg=name)
    assert np.abs(ref["grad_harmonization/conv/kernel:0"]).max() > 1e-3   # the term does train the network


# ---------------------------------------------------------------------------------------- analytic cases
def test_standardize_cut_is_the_positive_part_of_the_z_score():
    m = torch.tensor([[[0.0, 1.0], [2.0, 5.0]]])
    z = (m - 2.0) / (np.sqrt((4 + 1 + 0 + 9) / 4) + 1e-5)
    assert torch.allclose(standardize_cut(m), z.clamp(min=0), atol=1e-7)
    assert torch.equal(standardize_cut(torch.full((2, 3, 4), 7.0)), torch.zeros(2, 3, 4))


def test_pyramid_of_ones_shows_tensorflow_same_padding():
    # 4 px side: SAME pads 1 before and 2 after; 1-4-6-4-1 taps / 16 covering the image: 15/16 first, 11/16 last.
    level = pyramid(torch.ones(1, 4, 4), levels=1)[1][0]
    edge = torch.tensor([15 / 16, 11 / 16])
    assert torch.allclose(level, torch.outer(edge, edge), atol=1e-7)
    assert [tuple(p.shape) for p in pyramid(torch.ones(2, 37, 50), levels=5)] == \
        [(2, 37, 50), (2, 19, 25), (2, 10, 13), (2, 5, 7), (2, 3, 4), (2, 2, 2)]


def test_pyramidal_mse_is_zero_for_equal_maps_or_zero_tokens_and_linear_in_tokens():
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(3, 16, 16, generator=g), torch.rand(3, 16, 16, generator=g)
    assert float(pyramidal_mse(a, a)) == 0.0
    assert float(pyramidal_mse(a, b, torch.zeros(3))) == 0.0
    one = pyramidal_mse(a, b, torch.tensor([1.0, 0.0, 0.0]))
    assert float(pyramidal_mse(a, b, torch.tensor([2.0, 0.0, 0.0]))) == pytest.approx(2 * float(one), rel=1e-6)
    # Level 0 alone is the plain token-weighted MSE over all images.
    assert float(pyramidal_mse(a, b, torch.tensor([1.0, 0.0, 1.0]), levels=1)) == \
        pytest.approx(float(((a - b) ** 2)[[0, 2]].sum() / (3 * 16 * 16)), rel=1e-6)


def test_human_maps_are_rescaled_to_the_saliency_maximum_without_gradient_through_it():
    sal = torch.rand(2, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64, requires_grad=True)
    # A human map equal to the saliency up to scale and offset is standardized to the same map: zero loss.
    assert float(harmonization_term(sal, 3 * sal.detach() + 1).detach()) == pytest.approx(0.0, abs=1e-10)
    human = torch.rand(2, 8, 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    term = harmonization_term(sal, human)
    (grad,) = torch.autograd.grad(term, sal)
    s = standardize_cut(sal.detach()).requires_grad_(True)
    h = standardize_cut(human)
    h = h / (h.amax((1, 2), keepdim=True) + 1e-6) * (s.detach().amax((1, 2), keepdim=True) + 1e-6)
    (expected,) = torch.autograd.grad(pyramidal_mse(standardize_cut(sal), h), sal)
    assert term.dtype == torch.float64
    assert torch.allclose(grad, expected, rtol=1e-10, atol=1e-14)


class _SmoothNet(nn.Sequential):
    def __init__(self) -> None:
        torch.manual_seed(0)
        super().__init__(nn.Conv2d(3, 4, 3, padding=1), nn.Softplus(), nn.Conv2d(4, 4, 3, stride=2),
                         nn.Softplus(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))


def test_double_backprop_matches_finite_differences():
    model = _SmoothNet().double()
    g = torch.Generator().manual_seed(3)
    images = torch.rand(3, 3, 12, 12, generator=g, dtype=torch.float64)
    maps = torch.rand(3, 12, 12, generator=g, dtype=torch.float64)
    labels = torch.tensor([0, 2, 1])
    weight = model[2].weight

    def loss_of(w):
        x = images.clone().requires_grad_(True)
        logits = torch.func.functional_call(model, {"2.weight": w}, (x,))
        saliency = input_saliency(logits, x, labels)
        # Without the rescaling to max(saliency), whose stop-gradient finite differences cannot see.
        return pyramidal_mse(standardize_cut(saliency), standardize_cut(maps), levels=3)

    assert torch.autograd.gradcheck(loss_of, (weight.detach().clone().requires_grad_(True),), eps=1e-6, atol=1e-6)


# ---------------------------------------------------------------------------------------- neuroreg models
def test_double_backprop_trains_cornet_z():
    torch.manual_seed(0)
    model = nr.create_model("cornet_z", num_classes=4).train()
    images = torch.rand(3, 3, 32, 32, requires_grad=True)
    labels = torch.tensor([0, 1, 3])
    term = HarmonizationLoss()(model(images), images, labels, torch.rand(3, 32, 32), torch.tensor([1.0, 0.0, 1.0]))
    term.backward()
    assert torch.isfinite(term) and float(term.detach()) > 0
    convs = [m.weight for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(w.grad is not None and torch.isfinite(w.grad).all() and w.grad.abs().sum() > 0
                         for w in convs)


def test_vone_net_one_step_trains_it_and_updates_batchnorm_statistics_once():
    """The term reuses the step's forward pass: running statistics after one step equal the task-only step's."""
    kw = {"image_size": 32, "simple_channels": 4, "complex_channels": 4, "times": (1, 1, 1)}
    torch.manual_seed(0)
    start = nr.create_model("vone_cornet_s", num_classes=3, **kw).train()
    images = torch.rand(2, 3, 32, 32)
    labels = torch.tensor([0, 2])
    maps = torch.rand(2, 32, 32)

    def one_step(with_term: bool) -> nn.Module:
        model = copy.deepcopy(start)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        x = images.clone().requires_grad_(with_term)
        torch.manual_seed(1)                               # the same VOneBlock noise draw in both runs
        logits = model(x)
        loss = F.cross_entropy(logits, labels)
        if with_term:
            loss = loss + harmonization_loss(logits, x, labels, maps)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return model

    plain, harmonized = one_step(False), one_step(True)
    bns = [(n, m) for n, m in harmonized.named_modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns
    plain_modules = dict(plain.named_modules())
    for name, bn in bns:
        assert int(bn.num_batches_tracked) == 1, name
        assert torch.equal(bn.running_mean, plain_modules[name].running_mean), name
        assert torch.equal(bn.running_var, plain_modules[name].running_var), name
    changed = [n for n, p in harmonized.named_parameters()
               if p.requires_grad and not torch.equal(p, dict(plain.named_parameters())[n])]
    assert changed, "the harmonization term changed no weight"


def test_saliency_in_float32_under_autocast():
    torch.manual_seed(0)
    model = nr.create_model("cornet_z", num_classes=4).train()
    images = torch.rand(2, 3, 32, 32, requires_grad=True)
    labels = torch.tensor([1, 2])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(images)
        term = harmonization_loss(logits, images, labels, torch.rand(2, 32, 32))
    assert logits.dtype == torch.bfloat16 and term.dtype == torch.float32
    term.backward()
    assert torch.isfinite(term) and all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fp16_autocast_term_is_close_to_float32_on_gpu():
    torch.manual_seed(0)
    model = nr.create_model("cornet_z", num_classes=4).cuda().eval()
    images = torch.rand(4, 3, 64, 64, device="cuda")
    labels = torch.tensor([0, 1, 2, 3], device="cuda")
    maps = torch.rand(4, 64, 64, device="cuda")
    x = images.clone().requires_grad_(True)
    full = harmonization_loss(model(x), x, labels, maps)
    x = images.clone().requires_grad_(True)
    with torch.autocast("cuda", dtype=torch.float16):
        logits = model(x)
        half = harmonization_loss(logits, x, labels, maps)
    half.backward()
    assert half.dtype == torch.float32 and float(half.detach()) == pytest.approx(float(full.detach()), rel=0.05)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


# ---------------------------------------------------------------------------------------- the module and its inputs
def test_module_weight_schedule_and_functional_twin_agree():
    torch.manual_seed(0)
    model = _SmoothNet()
    images = torch.rand(2, 3, 12, 12, requires_grad=True)
    labels = torch.tensor([0, 2])
    maps = torch.rand(2, 12, 12)
    term = HarmonizationLoss(weight=0.5, schedule=WeightSchedule(warmup_steps=10), levels=3)
    logits = model(images)
    assert torch.equal(term(logits, images, labels, maps), harmonization_loss(logits, images, labels, maps, levels=3))
    assert term.name == "harmonization" and term.weight_at(4) == pytest.approx(0.5 * 0.4)
    one_hot = F.one_hot(labels, 3).float()
    assert torch.allclose(input_saliency(logits, images, one_hot), input_saliency(logits, images, labels))
    assert torch.allclose(saliency_maps(model, images.detach(), labels), input_saliency(logits, images, labels))


def test_channel_axis_human_maps_and_boolean_tokens_give_the_same_term():
    g = torch.Generator().manual_seed(4)
    sal, maps = torch.randn(3, 16, 16, generator=g), torch.rand(3, 16, 16, generator=g)
    expected = harmonization_term(sal, maps, torch.tensor([1.0, 0.0, 1.0]))
    assert torch.equal(harmonization_term(sal, maps[:, None], torch.tensor([True, False, True])), expected)
    assert float(expected) < float(harmonization_term(sal, maps))   # a token of 0 drops that image's error


def test_bad_inputs_are_refused_with_what_was_seen():
    model = _SmoothNet()
    images = torch.rand(2, 3, 12, 12, requires_grad=True)
    labels = torch.tensor([0, 2])
    logits = model(images)
    with pytest.raises(ValueError, match="requires_grad"):
        input_saliency(model(images.detach()), images.detach(), labels)
    with pytest.raises(ValueError, match=r"class indices in \[0, 3\); got values in \[0, 7\]"):
        input_saliency(logits, images, torch.tensor([0, 7]))
    with pytest.raises(ShapeError, match=r"human_maps .* \(2, 12, 12\).*got shape \(2, 10, 10\)"):
        harmonization_loss(logits, images, labels, torch.rand(2, 10, 10))
    with pytest.raises(NonFiniteError, match="human_maps contains NaN"):
        harmonization_loss(logits, images, labels, torch.full((2, 12, 12), float("nan")))
    with pytest.raises(ShapeError, match=r"tokens must be \(B,\) with B=2; got shape \(3,\)"):
        pyramidal_mse(torch.rand(2, 8, 8), torch.rand(2, 8, 8), torch.ones(3))
    with pytest.raises(ShapeError, match=r"maps must be \(B, H, W\); got shape \(2, 1, 8, 8\)"):
        standardize_cut(torch.rand(2, 1, 8, 8))
    with pytest.raises(ValueError, match="levels must be an integer >= 1; got 0"):
        HarmonizationLoss(levels=0)
    with pytest.raises(ValueError, match="weight must be >= 0; got -1"):
        HarmonizationLoss(weight=-1)
