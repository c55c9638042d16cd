"""I1n / I2n on cases with a known answer, input-order invariance and clear errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm, pearsonr

import neuroreg as nr
from neuroreg.errors import DataFormatError, StimulusMismatchError

OBJECTS = ["a", "b", "c", "d"]


def _probabilities_with_false_alarms(fa: np.ndarray, truth: np.ndarray, ids: list[str]) -> pd.DataFrame:
    """Probabilities whose 2-alternative false-alarm rate p_c / (p_c + p_t) is ``fa[i, c]`` exactly."""
    odds = fa / (1 - fa)
    odds[np.arange(truth.size), truth] = 0.0
    p_truth = 1.0 / (1.0 + odds.sum(1))
    p = odds * p_truth[:, None]
    p[np.arange(truth.size), truth] = p_truth
    return pd.DataFrame([dict(stimulus_id=ids[i], choice=OBJECTS[c], probability=p[i, c])
                         for i in range(truth.size) for c in range(len(OBJECTS))])


def _trials_for(counts: np.ndarray, n_per_pair: int, truth: np.ndarray, ids: list[str]) -> list[dict]:
    """Trials of every (image, distractor) pair: ``counts[i, c]`` of the ``n_per_pair`` chose the distractor."""
    rows = []
    for i in range(truth.size):
        for c in range(len(OBJECTS)):
            if c != truth[i]:
                for k in range(n_per_pair):
                    rows.append(dict(stimulus_id=ids[i], sample_obj=OBJECTS[truth[i]], dist_obj=OBJECTS[c],
                                     choice=OBJECTS[c] if k < counts[i, c] else OBJECTS[truth[i]]))
    return rows


def _placed(half0: list[dict], half1: list[dict], seed: int) -> pd.DataFrame:
    """Trial order such that numpy's RandomState(seed) shuffle (as Brain-Score halves trials) gives these halves."""
    n = len(half0) + len(half1)
    order = list(range(n))
    np.random.RandomState(seed).shuffle(order)
    rows: list[dict] = [{}] * n
    for position, trial in zip(order, half0 + half1):
        rows[position] = trial
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def design():
    rng = np.random.default_rng(3)
    truth = np.repeat(np.arange(len(OBJECTS)), 8)
    ids = [f"s{k:02d}" for k in range(truth.size)]
    n = 10
    counts = rng.integers(1, n, size=(truth.size, len(OBJECTS)))   # 1..9 of 10: rates strictly inside (0, 1)
    return truth, ids, n, counts


def test_model_with_the_halfs_false_alarms_scores_one_and_identical_halves_ceil_at_one(design):
    truth, ids, n, counts = design
    half = _trials_for(counts, n, truth, ids)
    trials = _placed(half, list(half), seed=0)
    model = _probabilities_with_false_alarms(counts / n, truth, ids)
    for metric in (nr.behaviour.i2n, nr.behaviour.i1n, nr.behaviour.i2, nr.behaviour.i1, nr.behaviour.o2,
                   nr.behaviour.o1):
        table = metric(model, trials, repetitions=1, seed=0).to_pandas()
        assert table["score"].iloc[0] == pytest.approx(1.0, abs=1e-12)
        assert table["ceiling"].iloc[0] == pytest.approx(1.0, abs=1e-12)
        assert table["ceiling_r"].iloc[0] == pytest.approx(1.0, abs=1e-12)


def test_i2n_matches_the_formula_written_from_the_paper(design):
    """d' = z(HR) - z(FAR of the distractor's object), clipped, per-object mean removed; Pearson with the half."""
    truth, ids, n, counts = design
    rng = np.random.default_rng(8)
    half0 = _trials_for(counts, n, truth, ids)
    counts1 = rng.integers(1, n, size=counts.shape)
    trials = _placed(half0, _trials_for(counts1, n, truth, ids), seed=5)
    model_fa = rng.uniform(0.05, 0.95, size=counts.shape)
    model = _probabilities_with_false_alarms(model_fa.copy(), truth, ids)

    def i2n_pattern(fa):
        d = np.full(fa.shape, np.nan)
        for i in range(truth.size):
            for c in range(len(OBJECTS)):
                if c != truth[i]:
                    far = np.mean([fa[j, truth[i]] for j in range(truth.size) if truth[j] == c])
                    d[i, c] = np.clip(norm.ppf(1 - fa[i, c]) - norm.ppf(far), -5, 5)
        for o in range(len(OBJECTS)):   # column o of object o's images is all NaN (no distractor is itself)
            with np.errstate(all="ignore"), pytest.warns(RuntimeWarning, match="Mean of empty slice"):
                d[truth == o] -= np.nanmean(d[truth == o], axis=0)
        return d

    a, b, c = i2n_pattern(model_fa), i2n_pattern(counts / n), i2n_pattern(counts1 / n)
    keep = ~np.isnan(b)
    table = nr.behaviour.i2n(model, trials, repetitions=1, seed=5).to_pandas()
    assert table["score"].iloc[0] == pytest.approx(pearsonr(a[keep], b[keep])[0], abs=1e-12)
    assert table["ceiling"].iloc[0] == pytest.approx(pearsonr(b[keep], c[keep])[0], abs=1e-12)


def test_model_of_shuffled_images_scores_far_below_the_matching_model(design):
    truth, ids, n, counts = design
    half = _trials_for(counts, n, truth, ids)
    trials = _placed(half, list(half), seed=0)
    model = _probabilities_with_false_alarms(counts / n, truth, ids)
    rng = np.random.default_rng(0)
    swapped = model.copy()
    for o in OBJECTS:   # shuffle the probability rows among the images of each object
        of_o = [ids[i] for i in range(truth.size) if OBJECTS[truth[i]] == o]
        mapping = dict(zip(of_o, rng.permutation(of_o)))
        swapped["stimulus_id"] = swapped["stimulus_id"].map(lambda s, m=mapping: m.get(s, s))
    score = nr.behaviour.i2n(swapped, trials, repetitions=1).to_pandas()["score"].iloc[0]
    assert abs(score) < 0.3


def test_rows_of_probabilities_in_any_order_give_the_same_table(design):
    truth, ids, n, counts = design
    rng = np.random.default_rng(1)
    half0 = _trials_for(counts, n, truth, ids)
    trials = _placed(half0, _trials_for(rng.integers(1, n, size=counts.shape), n, truth, ids), seed=0)
    model = _probabilities_with_false_alarms(rng.uniform(0.05, 0.95, size=counts.shape), truth, ids)
    a = nr.behaviour.i2n(model, trials).to_pandas()
    b = nr.behaviour.i2n(model.sample(frac=1.0, random_state=4), trials).to_pandas()
    np.testing.assert_array_equal(a["score"], b["score"])
    np.testing.assert_array_equal(a["ceiling"], b["ceiling"])
    # the trial order is data: Brain-Score halves it by a seeded shuffle of that order
    c = nr.behaviour.i2n(model, trials.sample(frac=1.0, random_state=4).reset_index(drop=True)).to_pandas()
    assert not np.array_equal(a["score"], c["score"])


@pytest.fixture()
def small(design):
    truth, ids, n, counts = design
    half = _trials_for(counts, n, truth, ids)
    return _probabilities_with_false_alarms(counts / n, truth, ids), _placed(half, list(half), seed=0)


def test_missing_column_is_named(small):
    model, trials = small
    with pytest.raises(DataFormatError, match=r"probabilities lacks the column\(s\) \['probability'\]"):
        nr.behaviour.i2n(model.drop(columns="probability"), trials)
    with pytest.raises(DataFormatError, match=r"trials lacks the column\(s\) \['dist_obj'\]"):
        nr.behaviour.i2n(model, trials.drop(columns="dist_obj"))


def test_unknown_stimulus_ids_are_named(small):
    model, trials = small
    trials = trials.copy()
    trials.loc[trials["stimulus_id"] == "s00", "stimulus_id"] = "nope"
    with pytest.raises(StimulusMismatchError, match="absent from probabilities.*nope"):
        nr.behaviour.i2n(model, trials)


def test_probabilities_not_summing_to_one_are_rejected(small):
    model, trials = small
    model = model.copy()
    model.loc[0, "probability"] += 0.2
    with pytest.raises(DataFormatError, match="sum to 1.*stimulus_id='s00' sums to"):
        nr.behaviour.i2n(model, trials)


def test_too_few_trials_says_how_many(small):
    model, trials = small
    of_s00 = trials.index[trials["stimulus_id"] == "s00"]
    fewer = trials.drop(index=of_s00[1:])          # s00 keeps a single trial: one half cannot have it
    with pytest.raises(DataFormatError, match=r"too few trials: half [01] of repetition 0 \(\d+ of 1861 trials\) "
                                              r"has no trial of 1 of the 32 images, e.g. stimulus_id='s00'"):
        nr.behaviour.i2n(model, fewer)


def test_choice_outside_the_offered_pair_is_rejected(small):
    model, trials = small
    trials = trials.copy()
    row = trials.index[0]
    other = next(o for o in OBJECTS if o not in (trials.at[row, "sample_obj"], trials.at[row, "dist_obj"]))
    trials.at[row, "choice"] = other
    with pytest.raises(DataFormatError, match="row 0: choice .* is neither sample_obj"):
        nr.behaviour.i2n(model, trials)


def test_a_perfect_model_gives_a_clear_error_not_nan(small):
    model, trials = small
    model = model.copy()
    truth_of = trials.drop_duplicates("stimulus_id").set_index("stimulus_id")["sample_obj"]
    model["probability"] = (model["choice"] == model["stimulus_id"].map(truth_of)).astype(float)
    with pytest.raises(DataFormatError, match="constant"):
        nr.behaviour.i2n(model, trials)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_repetitions_must_be_a_positive_integer(small, bad):
    model, trials = small
    with pytest.raises(ValueError, match="repetitions must be a positive integer"):
        nr.behaviour.i2n(model, trials, repetitions=bad)


def test_negative_split_half_ceiling_leaves_ceiling_r_empty(design):
    truth, ids, n, counts = design
    half0 = _trials_for(counts, n, truth, ids)
    half1 = _trials_for(n - counts, n, truth, ids)      # false-alarm rates mirrored: the halves disagree
    trials = _placed(half0, half1, seed=0)
    model = _probabilities_with_false_alarms(counts / n, truth, ids)
    row = nr.behaviour.i2(model, trials, repetitions=1).to_pandas().iloc[0]
    assert row["ceiling"] < 0
    assert row["ceiling_r"] is None and row["brainscore_ceiled"] is None
    assert row["score"] == pytest.approx(1.0, abs=1e-12)
