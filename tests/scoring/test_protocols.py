"""Protocol presets against numbers produced by the reference implementations themselves.

tests/fixtures/conwell_reference.csv: Conwell et al.'s released code (DeepNSD), made by
experiments/make_conwell_references.py; tests/fixtures/brainscore_reference.csv:
brain-score/vision's metric and ceiling code, made by experiments/make_brainscore_references.py.
Both on the synthetic problems of tests/fixtures/protocol_problems.py (commits named in the CSV headers).
"""

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from neuroreg.brain import BrainData
from neuroreg.errors import UnknownNameError
from neuroreg.features.extraction import Features
from neuroreg.scoring import crsa, predictivity, versa
from neuroreg.scoring.protocols.brainscore import brainscore_ceiling, brainscore_normalize
from fixtures import protocol_problems as problems

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
TOL = 1e-3
KEYS = ["metric", "split", "region", "subject", "layer"]


@pytest.fixture(scope="module")
def nsd():
    feats, resp, ids, roi, subj = problems.nsd_like()
    return feats, BrainData(resp, ids, {"roi": roi, "subject": subj})


@pytest.fixture(scope="module")
def conwell_ref():
    return pd.read_csv(FIXTURES / "conwell_reference.csv", comment="#")


@pytest.fixture(scope="module")
def brainscore_ref():
    return pd.read_csv(FIXTURES / "brainscore_reference.csv", comment="#")


def _object_set(part, layers=None):
    feats, trials, ids, labels, roi = problems.object_set(part)
    if layers is not None:
        feats = {k: feats[k] for k in layers}
    return feats, BrainData(trials.mean(0), ids, {"roi": roi}, trials=trials), labels


def _compare(ours: pd.DataFrame, ref: pd.DataFrame, metrics) -> None:
    ref = ref[ref["metric"].isin(metrics) & (ref["split"] != "best_test")]
    merged = ref.merge(ours[KEYS + ["score"]], on=KEYS, how="left", suffixes=("_ref", "_ours"))
    assert len(merged) == len(ref) and merged["score_ours"].notna().all(), "rows missing from neuroreg's table"
    worst = (merged["score_ref"] - merged["score_ours"]).abs().max()
    assert worst < TOL, merged.assign(diff=merged["score_ref"] - merged["score_ours"]).sort_values("diff")


def _check_best(table, ref, metric) -> None:
    best = ref[(ref["metric"] == metric) & (ref["split"] == "best_test")]
    ours = table.to_pandas()
    ours = ours[(ours["metric"] == metric) & ours["is_best"] & (ours["split"] == "test")]
    got = {(r.region, int(r.subject)): (r.layer, r.score) for r in ours.itertuples()}
    assert len(got) == len(best)
    for r in best.itertuples():
        layer, score = got[(r.region, r.subject)]
        assert layer == r.layer and score == pytest.approx(r.score, abs=TOL)


def test_crsa_conwell_matches_released_code(nsd, conwell_ref):
    feats, brain = nsd
    with pytest.warns(UserWarning, match="10 voxels"):     # the 8-voxel hV4 group is not scored
        table = crsa(feats, brain, protocol="conwell")
    df = table.to_pandas()
    assert set(df["protocol"]) == {"conwell"} and "hV4" not in set(df["region"])
    _compare(df, conwell_ref, ["crsa"])
    _check_best(table, conwell_ref, "crsa")


@pytest.mark.slow
def test_versa_conwell_matches_released_code(nsd, conwell_ref):
    feats, brain = nsd
    with pytest.warns(UserWarning, match="10 voxels"):
        table = versa(feats, brain, protocol="conwell")
    df = table.to_pandas()
    assert set(df["protocol"]) == {"conwell"} and set(df["projection_dim"]) == {5920}
    _compare(df, conwell_ref, ["versa", "encoding_r"])
    _check_best(table, conwell_ref, "versa")


def test_conwell_preset_refuses_other_settings(nsd):
    feats, brain = nsd
    small = {"layer1": feats["layer1"]}
    with pytest.raises(ValueError, match="split"):
        crsa(small, brain, protocol="conwell", split=None)
    with pytest.raises(ValueError, match="method"):
        crsa(small, brain, protocol="conwell", method="spearman")
    with pytest.raises(ValueError, match="split"):
        versa(small, brain, protocol="conwell", split=(np.arange(500), np.arange(500, 1000)))
    with pytest.raises(UnknownNameError, match="protocol"):
        versa(small, brain, protocol="brainscore")
    with pytest.raises(UnknownNameError, match="protocol"):
        predictivity(small, brain, protocol="conwell")


def test_brainscore_ceiling_matches_internal_consistency(brainscore_ref):
    for part in ("public", "private"):
        _, brain, _ = _object_set(part)
        for region in ("V4", "IT"):
            units = brain.unit_info["roi"] == region
            ref = brainscore_ref[(brainscore_ref["part"] == part) & (brainscore_ref["region"] == region)]
            assert brainscore_ceiling(brain.trials[:, :, units]) == pytest.approx(ref["ceiling"].iloc[0], abs=TOL)


def test_brainscore_normalisations_of_each_version(brainscore_ref):
    for version in ("2018", "2019", "2026"):
        np.testing.assert_allclose(brainscore_normalize(brainscore_ref["score"], brainscore_ref["ceiling"], version),
                                   brainscore_ref[f"ceiled_{version}"], atol=1e-8)
    with pytest.raises(UnknownNameError, match="2026"):
        brainscore_normalize(0.5, 0.7, "2.0")


def test_predictivity_brainscore_matches_pls_metric_and_is_row_order_free(brainscore_ref):
    feats, brain, labels = _object_set("private", layers=["early"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")        # scikit-learn's PLS convergence notes, as in Brain-Score
        table = predictivity(feats, brain, labels=labels, protocol="brainscore", brainscore_version="2019")
        perm = np.random.default_rng(0).permutation(brain.n_stimuli)
        shuffled = BrainData(brain.responses[perm], brain.stimulus_ids[perm], brain.unit_info,
                             trials=brain.trials[:, perm])
        again = predictivity(Features({k: v for k, v in feats.items()}, stimulus_ids=brain.stimulus_ids),
                             shuffled, labels=labels[perm], protocol="brainscore", brainscore_version="2019")
    ref = brainscore_ref[(brainscore_ref["part"] == "private") & (brainscore_ref["layer"] == "early")]
    for row in table:
        r = ref[ref["region"] == row["region"]].iloc[0]
        assert row["score"] == pytest.approx(r["score"], abs=TOL)
        assert row["reliability"] == pytest.approx(r["ceiling"], abs=TOL)
        assert row["ceiling_r"] == pytest.approx(np.sqrt(r["ceiling"]), abs=TOL)
        assert row["brainscore_ceiled"] == pytest.approx(r["ceiled_2019"], abs=TOL)
        assert row["protocol"] == "brainscore" and row["selected_on"] == "same data"
    assert [r["score"] for r in again] == pytest.approx([r["score"] for r in table], abs=1e-10)


@pytest.mark.slow
def test_predictivity_brainscore_commits_layer_on_select_on(brainscore_ref):
    feats, brain, labels = _object_set("private")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = predictivity(feats, brain, labels=labels, protocol="brainscore", select_on=_object_set("public"))
    df = table.to_pandas()
    df["part"] = df["data"].map({"scored": "private", "select_on": "public"})
    merged = brainscore_ref.merge(df, on=["part", "region", "layer"], suffixes=("_ref", ""))
    assert len(merged) == len(brainscore_ref) == 12
    assert (merged["score_ref"] - merged["score"]).abs().max() < TOL
    assert (merged["ceiled_2026"] - merged["brainscore_ceiled"]).abs().max() < TOL
    public = brainscore_ref[brainscore_ref["part"] == "public"]
    for region, grp in public.groupby("region"):
        committed = grp["layer"].iloc[int(np.argmax(grp["ceiled_2026"].to_numpy()))]
        rows = df[(df["region"] == region) & df["is_best"]]
        assert set(rows["layer"]) == {committed} and set(rows["selected_on"]) == {"select_on"}


def test_predictivity_brainscore_needs_labels_and_trials():
    feats, brain, labels = _object_set("private", layers=["early"])
    with pytest.raises(ValueError, match="labels"):
        predictivity(feats, brain, protocol="brainscore")
    with pytest.raises(ValueError, match="one entry per stimulus"):
        predictivity(feats, brain, labels=labels[:10], protocol="brainscore")
    no_trials = BrainData(brain.responses, brain.stimulus_ids, brain.unit_info)
    with pytest.raises(ValueError, match="trials"):
        predictivity(feats, no_trials, labels=labels, protocol="brainscore")
    with pytest.raises(ValueError, match="protocol='brainscore'"):
        predictivity(feats, brain, labels=labels)


def test_readme_protocol_example_runs():
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = text[text.index("#### Comparable with published numbers"):]
    code = section[section.index("```python") + len("```python"):]
    code = code[:code.index("```")]
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    df = namespace["table"].to_pandas()
    assert set(df["protocol"]) == {"conwell"} and set(df["metric"]) == {"versa", "encoding_r"}


def test_versa_conwell_halves_come_from_sorted_ids_not_row_order():
    rng = np.random.default_rng(3)
    n = 120
    x = rng.normal(size=(n, 30))
    y = x @ rng.normal(size=(30, 24)) + 2 * rng.normal(size=(n, 24))
    ids = np.array([f"img{i:03d}" for i in range(n)])
    info = {"roi": np.array(["OTC"] * 24)}
    table = versa(Features({"l": x}, stimulus_ids=ids), BrainData(y, ids, info), protocol="conwell")
    perm = rng.permutation(n)
    again = versa(Features({"l": x[perm]}, stimulus_ids=ids[perm]), BrainData(y[perm], ids[perm], info),
                  protocol="conwell")
    assert [r["score"] for r in again] == pytest.approx([r["score"] for r in table], abs=1e-9)
    assert len(table) == 4
