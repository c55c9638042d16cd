"""neuroreg's behavioural metrics against Brain-Score's own code run on the committed fixtures.

The fixtures are written by experiments/make_brainscore_behaviour_references.py, which runs
brain-score/vision's ``metrics.i1i2``, ``metrics.error_consistency`` and the benchmarks'
ceiling steps in a separate environment.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import neuroreg as nr

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "brainscore_behaviour"
TOL = 1e-6


def _read(name: str) -> pd.DataFrame:
    return pd.read_csv(FIXTURES / name, comment="#")


def test_fixtures_name_the_brainscore_commit():
    for name in ("i1i2_scores.csv", "ec_scores.csv", "trials.csv", "probabilities.csv"):
        header = (FIXTURES / name).read_text().splitlines()[0]
        assert header.startswith("# brain-score/vision c642dbe42aae3ed064bc0b66f70a80b264021164")
        assert "brainscore-core" in header


RUNS = _read("i1i2_scores.csv").groupby(["metric", "repetitions", "seed"], sort=False)


@pytest.mark.parametrize("key", list(RUNS.groups), ids=lambda k: f"{k[0]}-r{k[1]}-s{k[2]}")
def test_i1i2_equal_brainscore_per_split_and_aggregated(key):
    metric, repetitions, seed = key
    reference = RUNS.get_group(key).set_index("split")
    got = getattr(nr.behaviour, metric.lower())(_read("probabilities.csv"), _read("trials.csv"),
                                                 repetitions=int(repetitions), seed=int(seed)).to_pandas()
    got["split"] = got["split"].astype(str)
    got = got.set_index("split")
    assert list(got.index) == [str(s) for s in range(repetitions)] + ["mean"]
    np.testing.assert_allclose(got["score"], reference.loc[got.index, "score"], atol=TOL, rtol=0)
    np.testing.assert_allclose(got["ceiling"], reference.loc[got.index, "ceiling"], atol=TOL, rtol=0)
    # the benchmark's ceiled score: per split score / sqrt(ceiling); its value is their mean
    np.testing.assert_allclose(got["brainscore_ceiled"], reference.loc[got.index, "ceiled"], atol=TOL, rtol=0)
    splits = got.drop(index="mean")
    np.testing.assert_allclose(splits["ceiling_r"], np.sqrt(reference.loc[splits.index, "ceiling"]), atol=TOL)
    assert (got["protocol"] == "brainscore").all()


def test_error_consistency_equals_brainscore():
    reference = _read("ec_scores.csv")
    got = nr.behaviour.error_consistency(_read("ec_choices.csv"), _read("ec_trials.csv")).to_pandas()
    per_subject = reference[(reference["kind"] == "score") & (reference["subject"] != "mean")]
    mine = got[got["split"] != "mean"].set_index(["subject", "condition"])["score"]
    assert len(mine) == len(per_subject) == 12
    np.testing.assert_allclose(mine.loc[list(zip(per_subject["subject"], per_subject["condition"]))],
                               per_subject["value"], atol=TOL, rtol=0)
    mean = got[got["split"] == "mean"].iloc[0]
    aggregate = reference[reference["subject"] == "mean"].set_index("kind")["value"]
    assert mean["score"] == pytest.approx(aggregate["score"], abs=TOL)
    assert mean["ceiling"] == pytest.approx(aggregate["ceiling"], abs=TOL)
    assert mean["ceiling_r"] == pytest.approx(aggregate["ceiling"], abs=TOL)
    assert mean["brainscore_ceiled"] == pytest.approx(aggregate["ceiled"], abs=TOL)


def test_error_consistency_ceiling_equals_brainscore_per_pair():
    reference = _read("ec_scores.csv")
    pairs = reference[(reference["kind"] == "ceiling") & (reference["subject"] != "mean")]
    got = nr.behaviour.error_consistency_ceiling(_read("ec_trials.csv")).to_pandas()
    mine = got[got["split"] != "mean"].set_index(["subject_left", "subject_right", "condition"])["score"]
    assert len(mine) == len(pairs) == 18
    np.testing.assert_allclose(
        mine.loc[list(zip(pairs["subject"], pairs["subject_right"], pairs["condition"]))], pairs["value"],
        atol=TOL, rtol=0)
    ceiling = reference[(reference["kind"] == "ceiling") & (reference["subject"] == "mean")]["value"].item()
    assert got[got["split"] == "mean"]["score"].item() == pytest.approx(ceiling, abs=TOL)
