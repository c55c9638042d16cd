"""Error consistency against scikit-learn's Cohen's kappa, analytic cases and clear errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score

import neuroreg as nr
from neuroreg.errors import DataFormatError, StimulusMismatchError

LABELS = ["cat", "dog", "car", "boat"]


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(2)
    ids = [f"im{k:02d}" for k in range(40)]
    truth = rng.choice(LABELS, size=len(ids))
    condition = np.repeat(["low", "high"], 20)

    def answers(p_right):
        right = rng.random(len(ids)) < p_right
        wrong = [rng.choice([x for x in LABELS if x != t]) for t in truth]
        return np.where(right, truth, wrong)

    trials = pd.concat([pd.DataFrame(dict(stimulus_id=ids, subject=s, condition=condition, choice=answers(0.6),
                                          truth=truth)) for s in ("s1", "s2", "s3")], ignore_index=True)
    choices = pd.DataFrame(dict(stimulus_id=ids, choice=answers(0.7)))
    return choices, trials


def test_cohens_kappa_equals_scikit_learn():
    rng = np.random.default_rng(0)
    for _ in range(20):
        a, b = rng.random(30) < 0.6, rng.random(30) < rng.uniform(0.2, 0.8)
        assert nr.behaviour.cohens_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b), abs=1e-12)


def test_per_subject_scores_are_kappa_of_correctness(data):
    choices, trials = data
    table = nr.behaviour.error_consistency(choices, trials).to_pandas()
    model = choices.set_index("stimulus_id")["choice"]
    grid = []
    for (subject, condition), grp in trials.groupby(["subject", "condition"]):
        expected = cohen_kappa_score(model.loc[grp["stimulus_id"]].to_numpy() == grp["truth"].to_numpy(),
                                     grp["choice"].to_numpy() == grp["truth"].to_numpy())
        got = table[(table["subject"] == subject) & (table["condition"] == condition)]["score"].item()
        assert got == pytest.approx(expected, abs=1e-12)
        grid.append(expected)
    mean = table[table["split"] == "mean"].iloc[0]
    assert mean["score"] == pytest.approx(abs(np.mean(grid)), abs=1e-12)


def test_ceiling_is_the_mean_kappa_over_subject_pairs(data):
    _, trials = data
    table = nr.behaviour.error_consistency_ceiling(trials).to_pandas()
    pairs = table[table["split"] != "mean"]
    assert sorted(zip(pairs["subject_left"], pairs["subject_right"])) == sorted(
        [("s1", "s2"), ("s1", "s3"), ("s2", "s3")] * 2)
    by = {k: g.sort_values("stimulus_id") for k, g in trials.groupby(["subject", "condition"])}
    def correct(subject, condition):
        return by[(subject, condition)]["choice"] == by[(subject, condition)]["truth"]

    values = [cohen_kappa_score(correct(a, c), correct(b, c))
              for a, b, c in zip(pairs["subject_left"], pairs["subject_right"], pairs["condition"])]
    np.testing.assert_allclose(pairs["score"], values, atol=1e-12)
    assert table[table["split"] == "mean"]["score"].item() == pytest.approx(abs(np.mean(values)), abs=1e-12)


def test_model_answering_as_a_subject_has_kappa_one_with_that_subject(data):
    _, trials = data
    s1 = trials[trials["subject"] == "s1"]
    table = nr.behaviour.error_consistency(s1[["stimulus_id", "choice"]], trials).to_pandas()
    np.testing.assert_allclose(table[table["subject"] == "s1"]["score"], 1.0, atol=1e-12)


def test_row_order_does_not_matter(data):
    choices, trials = data
    a = nr.behaviour.error_consistency(choices, trials).to_pandas()
    b = nr.behaviour.error_consistency(choices.sample(frac=1.0, random_state=1),
                                       trials.sample(frac=1.0, random_state=2)).to_pandas()
    np.testing.assert_allclose(a["score"], b["score"], atol=0)


def test_ceiled_score_is_bounded_by_one(data):
    choices, trials = data
    mean = nr.behaviour.error_consistency(choices, trials).to_pandas().query("split == 'mean'").iloc[0]
    assert mean["brainscore_ceiled"] == pytest.approx(min(1.0, max(0.0, mean["score"] / mean["ceiling"])))


def test_missing_image_and_missing_trial_are_named(data):
    choices, trials = data
    with pytest.raises(StimulusMismatchError, match=r"choices lack 1 image\(s\) of trials, e.g. \['im00'\]"):
        nr.behaviour.error_consistency(choices[choices["stimulus_id"] != "im00"], trials)
    with pytest.raises(DataFormatError, match="subject 's2' has trials on 19 of the 20 images of condition 'low'"):
        nr.behaviour.error_consistency(choices, trials.drop(index=trials.index[(trials["subject"] == "s2")][0]))
    with pytest.raises(DataFormatError, match=r"trials lacks the column\(s\) \['truth'\]"):
        nr.behaviour.error_consistency(choices, trials.drop(columns="truth"))


def test_always_right_observers_give_a_clear_error():
    with pytest.raises(DataFormatError, match="always right or both always wrong"):
        nr.behaviour.cohens_kappa(np.ones(5, bool), np.ones(5, bool))
