"""ClickMe human alignment (neuroreg.scoring.human_alignment) against the released harmonization 0.0.9.

Fixtures: tests/fixtures/harmonization/clickme_*.npz, written by
experiments/make_clickme_metrics_references.py with the released evaluate_clickme and Xplique's Saliency.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from neuroreg.errors import NonFiniteError, ShapeError
from neuroreg.scoring import (HUMAN_SPEARMAN_CEILING, ClickMeMetrics, absolute_saliency, clickme_metrics,
                              clickme_scores, human_alignment)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "harmonization"
CASES = ("random", "ties", "blobs", "constant")


@pytest.fixture(scope="module")
def metrics_ref() -> dict:
    with np.load(FIXTURES / "clickme_metrics.npz") as f:
        return dict(f)


@pytest.fixture(scope="module")
def saliency_ref() -> dict:
    with np.load(FIXTURES / "clickme_saliency.npz") as f:
        return dict(f)


class KerasTiny(nn.Sequential):
    """The saliency fixture's Keras network in PyTorch (stride-1 "same" = padding 1)."""

    def __init__(self, ref: dict) -> None:
        super().__init__(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))
        with torch.no_grad():
            for i, name in ((0, "conv1"), (2, "conv2")):
                self[i].weight.copy_(torch.from_numpy(ref[f"weight/{name}/kernel:0"]).permute(3, 2, 0, 1))
                self[i].bias.copy_(torch.from_numpy(ref[f"weight/{name}/bias:0"]))
            self[6].weight.copy_(torch.from_numpy(ref["weight/dense/kernel:0"]).T)
            self[6].bias.copy_(torch.from_numpy(ref["weight/dense/bias:0"]))


def _torch_data(ref: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    images = torch.from_numpy(ref["images"]).permute(0, 3, 1, 2).contiguous()
    return images, torch.from_numpy(ref["heatmaps"][..., 0]), torch.from_numpy(ref["labels"])


@pytest.mark.parametrize("case", CASES)
def test_metrics_equal_release(metrics_ref, case):
    ref = metrics_ref
    with pytest.warns(RuntimeWarning) if case == "constant" else _no_warning():
        got = clickme_metrics(ref[f"{case}/a"], ref[f"{case}/b"])
    for key in ("spearman", "dice", "iou"):
        np.testing.assert_allclose(got[key], ref[f"{case}/{key}"], rtol=0, atol=1e-6, equal_nan=True)
    np.testing.assert_allclose(got.alignment_score, ref[f"{case}/alignment_score"], rtol=0, atol=1e-6, equal_nan=True)


class _no_warning:
    def __enter__(self):
        import warnings
        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("error")

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)


def test_constant_maps_give_the_release_nan_and_empty_top_ten(metrics_ref):
    ref = metrics_ref
    assert np.isnan(ref["constant/spearman"][[1, 2]]).all()       # the release's NaN
    with pytest.warns(RuntimeWarning, match="2 of 4 image"):
        got = clickme_metrics(ref["constant/a"], ref["constant/b"])
    assert np.isnan(got.spearman[[1, 2]]).all() and np.isfinite(got.spearman[[0, 3]]).all()
    assert np.isnan(got.alignment_score)
    assert got.dice[1] == got.dice[2] == got.iou[1] == got.iou[2] == 0.0


def test_ties_case_really_ties_at_the_threshold(metrics_ref):
    a = metrics_ref["ties/a"][0]
    assert (a == np.percentile(a, 90)).sum() > 1      # the strict ">" of the release matters here


def test_spearman_matches_scipy_per_image_and_ceiling_constant():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(4, 9, 11)), rng.normal(size=(4, 9, 11))
    got = clickme_metrics(a, b)
    want = [spearmanr(x.astype(np.float32).ravel(), y.astype(np.float32).ravel())[0] for x, y in zip(a, b)]
    np.testing.assert_allclose(got.spearman, want, atol=1e-12)
    assert got.alignment_score == pytest.approx(np.mean(want) / 0.65753, abs=1e-12)
    assert HUMAN_SPEARMAN_CEILING == 0.65753


def test_identical_maps_score_one_and_reversed_maps_minus_one():
    rng = np.random.default_rng(4)
    a = rng.uniform(size=(3, 20, 20))
    same = clickme_metrics(a, a)
    np.testing.assert_allclose(same.spearman, 1.0, atol=1e-12)
    np.testing.assert_allclose(same.dice, 1.0, atol=1e-9)
    np.testing.assert_allclose(same.iou, 1.0, atol=1e-9)
    assert same.alignment_score == pytest.approx(1 / 0.65753)
    flipped = clickme_metrics(a, -a)
    np.testing.assert_allclose(flipped.spearman, -1.0, atol=1e-12)
    np.testing.assert_allclose(flipped.dice, 0.0, atol=1e-12)


def test_dice_and_iou_of_known_top_ten_sets():
    # 100 pixels, distinct values: the top 10 % is the 10 largest; the maps share 5 of them
    a = np.arange(100, dtype=np.float32).reshape(1, 10, 10)
    b = a.copy().ravel()
    b[[90, 91, 92, 93, 94]], b[[0, 1, 2, 3, 4]] = b[[0, 1, 2, 3, 4]], b[[90, 91, 92, 93, 94]].copy()
    got = clickme_metrics(a, b.reshape(1, 10, 10))
    assert got.dice[0] == pytest.approx(2 * 5 / 20)
    assert got.iou[0] == pytest.approx(5 / 15)


def test_channel_axis_is_averaged_and_tensors_accepted():
    rng = np.random.default_rng(5)
    a, b = rng.uniform(size=(2, 3, 8, 8)), rng.uniform(size=(2, 8, 8))
    got = clickme_metrics(torch.from_numpy(a), torch.from_numpy(b))
    want = clickme_metrics(a.mean(1), b)
    np.testing.assert_array_equal(got.spearman, want.spearman)
    assert isinstance(got, ClickMeMetrics) and got.n_images == 2
    assert set(got.to_dict()) == {"spearman", "dice", "iou", "alignment_score"}


def test_bad_maps_are_refused_with_what_was_seen():
    a = np.zeros((2, 4, 4)) + np.arange(16).reshape(4, 4)
    with pytest.raises(ShapeError, match=r"\(2, 4, 4\) and human maps \(2, 4, 5\)"):
        clickme_metrics(a, np.ones((2, 4, 5)))
    with pytest.raises(ShapeError, match=r"\(n, H, W\)"):
        clickme_metrics(a[0], a[0])
    bad = a.copy()
    bad[1, 2, 2] = np.nan
    with pytest.raises(NonFiniteError, match="human_maps contains NaN or inf in 1 of 2 maps \\(first at image 1\\)"):
        clickme_metrics(a, bad)
    with pytest.raises(ShapeError, match="at least one map"):
        clickme_metrics(a[:0], a[:0])
    with pytest.raises(ValueError, match="percent"):
        clickme_metrics(a, a, percent=0)
    with pytest.raises(KeyError, match="spearman"):
        clickme_metrics(a, a)["rho"]


def test_absolute_saliency_equals_xplique_on_the_tiny_network(saliency_ref):
    model = KerasTiny(saliency_ref).eval()
    images, _, labels = _torch_data(saliency_ref)
    got = absolute_saliency(model, images, labels).numpy()
    scale = np.abs(saliency_ref["saliency"]).max()
    np.testing.assert_allclose(got, saliency_ref["saliency"], rtol=1e-5, atol=1e-6 * scale)


def test_clickme_scores_equal_release_evaluate_clickme(saliency_ref):
    model = KerasTiny(saliency_ref)
    images, heatmaps, labels = _torch_data(saliency_ref)
    got = clickme_scores(model, (images, heatmaps, labels), batch_size=3, normalize=False, progress=False)
    for key in ("spearman", "dice", "iou"):
        np.testing.assert_allclose(got[key], saliency_ref[key], rtol=0, atol=1e-6)
    assert got.alignment_score == pytest.approx(float(saliency_ref["alignment_score"]), abs=1e-6)
    np.testing.assert_array_equal(got.labels, saliency_ref["labels"])
