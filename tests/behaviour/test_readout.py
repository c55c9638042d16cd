"""The behavioural read-out against Brain-Score's ProbabilitiesClassifier and the models' own pre-logits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import timm
import torch

import neuroreg as nr
from neuroreg.errors import ShapeError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "brainscore_behaviour"


@pytest.mark.parametrize("case, labels", [("4-way", ["bear", "car", "dog", "elephant"]), ("2-way", ["car", "dog"])])
def test_readout_equals_brainscore_probabilities_classifier(case, labels):
    features = pd.read_csv(FIXTURES / "readout_features.csv", comment="#")
    reference = pd.read_csv(FIXTURES / "readout_probabilities.csv", comment="#")
    reference = reference[reference["case"] == case]
    columns = [c for c in features.columns if c.startswith("f")]
    fit = features[(features["part"] == "fit") & features["image_label"].isin(labels)]
    test = features[features["part"] == "test"]
    readout = nr.behaviour.ProbabilitiesReadout().fit(fit[columns].to_numpy(), fit["image_label"].to_numpy())
    got = readout.probabilities(test[columns].to_numpy(), test["stimulus_id"].to_numpy())
    both = got.merge(reference, on=["stimulus_id", "choice"], suffixes=("", "_brainscore"), validate="1:1")
    assert len(both) == len(reference) == len(test) * len(labels)
    np.testing.assert_allclose(both["probability"], both["probability_brainscore"], atol=1e-6, rtol=0)
    # Brain-Score orders its choices by first appearance in the fitting labels
    assert readout.labels_.tolist() == list(pd.unique(fit["image_label"]))


def _images(n: int, seed: int) -> torch.Tensor:
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", ["cornet_z", "resnet18"])
def test_default_layer_is_the_penultimate_layer(name):
    model = timm.create_model(name, num_classes=5).eval()
    images = _images(6, 0)
    with torch.no_grad():
        pre_logits = model.forward_head(model.forward_features(images), pre_logits=True).double().numpy()
    got = nr.behaviour.readout_features(model, images, transform=None)
    np.testing.assert_allclose(got, pre_logits, rtol=1e-5, atol=1e-6)


def test_choice_probabilities_feed_i2n_shaped_table():
    model = timm.create_model("cornet_z", num_classes=5).eval()
    labels = np.array(["b", "a", "c"] * 6)
    table = nr.behaviour.choice_probabilities(model, _images(18, 1), labels, _images(4, 2), ["x", "y", "z", "w"],
                                              transform=None)
    assert list(table.columns) == ["stimulus_id", "choice", "probability"]
    assert len(table) == 12 and set(table["choice"]) == {"a", "b", "c"}
    np.testing.assert_allclose(table.groupby("stimulus_id")["probability"].sum(), 1.0, atol=1e-12)


def test_stochastic_model_averages_its_passes():
    from neuroreg.models import VOneNet
    model = VOneNet(timm.create_model("cornet_z", num_classes=3), image_size=32, visual_degrees=4, simple_channels=8,
                    complex_channels=8, ksize=5).eval()
    images = _images(3, 3)
    one = [nr.behaviour.readout_features(model, images, transform=None, seed=s) for s in (10, 11)]
    assert not np.allclose(one[0], one[1])    # the noise is on: passes differ
    two = nr.behaviour.readout_features(model, images, transform=None, seed=10, number_of_trials=2)
    np.testing.assert_allclose(two, (one[0] + one[1]) / 2, rtol=1e-6, atol=1e-7)


def test_readout_rejects_bad_input():
    readout = nr.behaviour.ProbabilitiesReadout()
    with pytest.raises(ShapeError, match=r"labels must give one label per row of features \(4\); got shape \(3,\)"):
        readout.fit(np.zeros((4, 2)), ["a", "b", "a"])
    with pytest.raises(ValueError, match="at least 2 classes"):
        readout.fit(np.random.default_rng(0).normal(size=(4, 2)), ["a"] * 4)
    readout.fit(np.random.default_rng(0).normal(size=(4, 2)), ["a", "b"] * 2)
    with pytest.raises(ShapeError, match="features have 3 columns; the read-out was fitted on 2"):
        readout.predict_proba(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="number_of_trials must be a positive integer; got 0"):
        nr.behaviour.readout_features(torch.nn.Identity(), _images(2, 0), number_of_trials=0)
