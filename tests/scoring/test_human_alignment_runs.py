"""Batched human-alignment scoring (clickme_scores, human_alignment): layouts, invariances, refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from neuroreg.errors import NonFiniteError, ShapeError
from neuroreg.scoring import HUMAN_SPEARMAN_CEILING, clickme_metrics, clickme_scores, human_alignment

N, K, S = 10, 4, 12


class MapModel(nn.Module):
    """Linear logits ``logit_k = sum(w_k * x)``: the input gradient of class k is ``w_k``, known exactly."""

    def __init__(self, weights: torch.Tensor, noise: float = 0.0) -> None:
        super().__init__()
        self.w = nn.Parameter(weights.clone())    # (K, C, H, W)
        self.noise = noise

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.noise:
            x = x * (1 + self.noise * torch.randn_like(x))
        return torch.einsum("bchw,kchw->bk", x, self.w)


class ConvNet(nn.Sequential):
    def __init__(self, seed: int) -> None:
        torch.manual_seed(seed)
        super().__init__(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.Conv2d(6, 6, 3, padding=1),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, K))


def _data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(N, 3, S, S, generator=g)
    yy, xx = torch.meshgrid(torch.arange(S), torch.arange(S), indexing="ij")
    centres = torch.rand(N, 2, generator=g) * (S - 4) + 2
    heatmaps = torch.exp(-((yy - centres[:, :1, None]) ** 2 + (xx - centres[:, 1:, None]) ** 2) / 8.0)
    labels = torch.randint(0, K, (N,), generator=g)
    return images, heatmaps + 0.01 * torch.rand(N, S, S, generator=g), labels


def _run(model, data, **kw):
    kw.setdefault("progress", False)
    return clickme_scores(model, data, normalize=False, **kw)


def test_a_model_whose_saliency_is_the_human_map_scores_one():
    images, _, labels = _data()
    weights = torch.rand(K, 3, S, S, generator=torch.Generator().manual_seed(1))
    human = weights.abs().amax(dim=1)[labels]          # |d logit / d x| max over channels, of each true class
    table = human_alignment(MapModel(weights), (images, human, labels), normalize=False, progress=False)
    rows = {r["metric"]: r for r in table}
    assert rows["spearman"]["score"] == pytest.approx(1.0, abs=1e-12)
    assert rows["dice"]["score"] == pytest.approx(1.0, abs=1e-9)
    assert rows["iou"]["score"] == pytest.approx(1.0, abs=1e-9)
    assert rows["alignment_score"]["score"] == pytest.approx(1 / HUMAN_SPEARMAN_CEILING)
    assert rows["alignment_score"]["n_images"] == N and rows["alignment_score"]["n_omitted"] == 0


def test_per_image_values_equal_clickme_metrics_of_the_gradient():
    images, heatmaps, labels = _data()
    model = ConvNet(0).eval()
    x = images.clone().requires_grad_(True)
    model(x).gather(1, labels[:, None]).sum().backward()
    want = clickme_metrics(x.grad.abs().amax(1), heatmaps)
    per_image: dict = {}
    table = human_alignment(model, (images, heatmaps, labels), normalize=False, per_image=per_image,
                            model_name="net", progress=False)
    got = per_image["net"]
    np.testing.assert_allclose(got.spearman, want.spearman, atol=1e-6)
    np.testing.assert_allclose(got.dice, want.dice, atol=1e-6)
    assert table.filter(metric="dice")[0]["score"] == pytest.approx(float(np.mean(want.dice)), abs=1e-6)
    np.testing.assert_array_equal(got.labels, labels.numpy())


@pytest.mark.parametrize("batch_size", [1, 3, 10])
def test_batch_size_and_data_layout_do_not_change_the_scores(batch_size):
    images, heatmaps, labels = _data()
    model = ConvNet(0)
    ref = _run(model, (images, heatmaps, labels), batch_size=4)
    for data in ((images, heatmaps, labels), TensorDataset(images, heatmaps[:, None], labels),
                 DataLoader(TensorDataset(images, heatmaps, labels), batch_size=batch_size)):
        got = _run(model, data, batch_size=batch_size)
        for key in ("spearman", "dice", "iou"):
            np.testing.assert_allclose(got[key], ref[key], atol=1e-6)
        assert got.alignment_score == pytest.approx(ref.alignment_score, abs=1e-6)


def test_tokens_drop_images_without_a_map_and_one_hot_labels_are_read():
    images, heatmaps, labels = _data()
    tokens = torch.tensor([1.0, 0, 1, 1, 0, 1, 1, 1, 0, 1])
    keep = tokens > 0
    model = ConvNet(2)
    got = _run(model, (images, heatmaps, tokens, nn.functional.one_hot(labels, K).float()), batch_size=4)
    want = _run(model, (images[keep], heatmaps[keep], labels[keep]), batch_size=4)
    np.testing.assert_allclose(got.spearman, want.spearman, atol=1e-6)
    assert got.n_images == int(keep.sum())


def test_normalisation_uses_the_model_contract_or_the_given_statistics():
    images, heatmaps, labels = _data()
    model = ConvNet(3)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    got = clickme_scores(model, (images, heatmaps, labels), mean=mean, std=std, progress=False)
    normalised = (images - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    want = _run(model, (normalised, heatmaps, labels))
    np.testing.assert_allclose(got.spearman, want.spearman, atol=1e-6)
    assert not np.allclose(_run(model, (images, heatmaps, labels)).spearman, want.spearman, atol=1e-3)


def test_pluggable_explainer_and_channel_maps_are_averaged():
    images, heatmaps, labels = _data()

    def brightness(model, x, y):       # (B, C, H, W): averaged over C, as the release averages a channel axis
        return x

    got = human_alignment(ConvNet(0), (images, heatmaps, labels), explainer=brightness, normalize=False,
                          progress=False)
    want = clickme_metrics(images.mean(1), heatmaps)
    assert got.filter(metric="spearman")[0]["score"] == pytest.approx(float(np.mean(want.spearman)), abs=1e-9)
    assert got[0]["explainer"] == "brightness"


def test_two_models_are_told_apart_and_seeded_noise_repeats():
    images, _, labels = _data()
    weights = torch.rand(K, 3, S, S, generator=torch.Generator().manual_seed(1))
    human = weights.abs().amax(dim=1)[labels]
    aligned = human_alignment(MapModel(weights), (images, human, labels), normalize=False, progress=False)
    other = human_alignment(ConvNet(0), (images, human, labels), normalize=False, progress=False)
    assert aligned[0]["score"] > other[0]["score"] + 0.5
    noisy = MapModel(weights, noise=0.5)
    a = _run(noisy, (images, human, labels), seed=1)
    b = _run(noisy, (images, human, labels), seed=1)
    c = _run(noisy, (images, human, labels), seed=2)
    np.testing.assert_array_equal(a.spearman, b.spearman)
    assert not np.array_equal(a.spearman, c.spearman) and (a.spearman < 1).all()


def test_constant_maps_are_refused_or_omitted_from_the_means():
    images, heatmaps, labels = _data()
    heatmaps[3] = 0.5
    model = ConvNet(0)
    with pytest.raises(NonFiniteError, match="image 3 has a constant human map"):
        _run(model, (images, heatmaps, labels), batch_size=2)
    per_image: dict = {}
    table = human_alignment(model, (images, heatmaps, labels), normalize=False, constant_maps="omit",
                            per_image=per_image, progress=False)
    full = per_image["model"]
    assert np.isnan(full.spearman[3]) and np.isnan(full.alignment_score)      # the release's NaN
    row = table.filter(metric="alignment_score")[0]
    assert row["n_images"] == N - 1 and row["n_omitted"] == 1
    assert row["score"] == pytest.approx(np.nanmean(full.spearman) / HUMAN_SPEARMAN_CEILING)
    dead = MapModel(torch.zeros(K, 3, S, S))      # zero gradient everywhere: a constant saliency map
    with pytest.raises(NonFiniteError, match="image 0 has a constant saliency map"):
        _run(dead, (images, heatmaps, labels))
    with pytest.raises(NonFiniteError, match="every one of the 10 images"):
        human_alignment(dead, (images, heatmaps, labels), constant_maps="omit", normalize=False, progress=False)


def test_bad_inputs_are_refused_with_what_was_seen():
    images, heatmaps, labels = _data()
    model = ConvNet(0)
    with pytest.raises(ShapeError, match=r"heatmaps \(10, 12, 11\) for images \(10, 3, 12, 12\)"):
        _run(model, (images, heatmaps[..., :11], labels), batch_size=10)
    bad = heatmaps.clone()
    bad[5, 0, 0] = float("nan")
    with pytest.raises(NonFiniteError, match="heatmaps"):
        _run(model, (images, bad, labels))
    with pytest.raises(ShapeError, match=r"explainer must return \(B, H, W\).*\(4, 6\)"):
        _run(model, (images, heatmaps, labels), batch_size=4, explainer=lambda m, x, y: torch.zeros(4, 6))
    with pytest.raises(NonFiniteError, match="explainer's maps contain NaN"):
        _run(model, (images, heatmaps, labels), explainer=lambda m, x, y: torch.full(x.shape[:1] + x.shape[2:], np.nan))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\]"):
        _run(model, (images, heatmaps, labels + K))
    with pytest.raises(ValueError, match="no image with a human map"):
        _run(model, (images, heatmaps, torch.zeros(N), labels))
    with pytest.raises(TypeError, match="yield \\(images, heatmaps, labels\\)"):
        _run(model, DataLoader(TensorDataset(images, labels), batch_size=4))
    with pytest.raises(TypeError, match="clickme_val must be"):
        _run(model, [images, heatmaps, labels])
    with pytest.raises(ShapeError, match="one entry per image"):
        _run(model, (images, heatmaps[:5], labels))
    with pytest.raises(ValueError, match="constant_maps must be"):
        _run(model, (images, heatmaps, labels), constant_maps="skip")
    with pytest.raises(ShapeError, match=r"\(B, K\) logits"):
        _run(nn.Conv2d(3, 2, 1), (images, heatmaps, labels))


def test_progress_bar_and_model_modes_are_restored(capsys):
    images, heatmaps, labels = _data()
    model = ConvNet(0).train()
    model[0].eval()                       # a submodule's own mode inside a training model is kept
    _run(model, (images, heatmaps, labels), batch_size=5, progress=None)
    _run(model, (images, heatmaps, labels), batch_size=5, progress=True)
    assert "human alignment" in capsys.readouterr().err
    assert model.training and model[1].training and not model[0].training
    assert float(model[1].running_mean.abs().sum()) == 0.0     # scored in eval mode: BatchNorm statistics untouched


@pytest.mark.gpu
def test_gpu_scores_equal_cpu_scores():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    images, heatmaps, labels = _data()
    model = ConvNet(0)
    cpu = _run(model, (images, heatmaps, labels), batch_size=4)
    gpu = _run(model, (images, heatmaps, labels), batch_size=4, device="cuda")
    np.testing.assert_allclose(gpu.spearman, cpu.spearman, atol=1e-5)
    np.testing.assert_allclose(gpu.dice, cpu.dice, atol=0.05)
    assert next(model.parameters()).device.type == "cpu"      # moved back


def test_drop_last_scores_the_full_batches_only_as_the_release_loader():
    images, heatmaps, labels = _data()
    model = ConvNet(0)
    got = _run(model, (images, heatmaps, labels), batch_size=4, drop_last=True)
    want = _run(model, (images[:8], heatmaps[:8], labels[:8]), batch_size=4)
    assert got.n_images == 8
    np.testing.assert_array_equal(got.spearman, want.spearman)
