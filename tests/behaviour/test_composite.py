"""Brain-Score's composite and the per-image d': rows, arithmetic, refusals; d' against a direct computation."""

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import norm

import neuroreg as nr
from neuroreg.brain import BrainData
from neuroreg.results.table import ScoreTable
from neuroreg.scorecard.behaviour import row_space_coordinates
from neuroreg.scoring.protocols.brainscore import predictivity_brainscore


def _predictivity_rows(version="2026"):
    rows = []
    for region, layers in (("V4", {"a": (0.5, 0.81), "b": (0.7, 0.81)}), ("IT", {"a": (0.4, 0.64), "b": (0.3, 0.64)})):
        best = max(layers, key=lambda k: layers[k][0])
        for layer, (r, c) in layers.items():
            rows.append(dict(model="m", layer=layer, region=region, subject=None, metric="predictivity", split="cv",
                             score=r, reliability=c, ceiling_r=np.sqrt(c), brainscore_ceiled=r ** 2 / c,
                             brainscore_version=version, protocol="brainscore", data="scored", is_best=layer == best))
    return ScoreTable(rows)


def _i2n_rows():
    return ScoreTable([dict(metric="i2n", split=0, score=0.2, ceiling=0.25, ceiling_r=0.5, brainscore_ceiled=0.4),
                       dict(metric="i2n", split=1, score=0.3, ceiling=0.36, ceiling_r=0.6, brainscore_ceiled=0.5),
                       dict(metric="i2n", split="mean", score=0.25, ceiling=0.305, ceiling_r=0.55,
                            brainscore_ceiled=0.45)])


def test_composite_is_the_mean_of_the_three_ceiled_scores_with_their_versions():
    table = nr.behaviour.brainscore_composite(_predictivity_rows(), _i2n_rows(), model="m").to_pandas()
    rows = table.set_index("component")
    assert list(rows.index) == ["V4", "IT", "behaviour", "composite"]
    assert rows.loc["V4", "layer"] == "b" and rows.loc["IT", "layer"] == "a"
    assert rows.loc["V4", "brainscore_ceiled"] == pytest.approx(0.7 ** 2 / 0.81)
    assert rows.loc["IT", "ceiling"] == pytest.approx(0.64)
    assert rows.loc["behaviour", "brainscore_ceiled"] == pytest.approx(0.45)
    expected = np.mean([0.7 ** 2 / 0.81, 0.4 ** 2 / 0.64, 0.45])
    assert rows.loc["composite", "score"] == pytest.approx(expected)
    assert rows.loc["composite", "brainscore_ceiled"] == pytest.approx(expected)
    assert set(rows["protocol"]) == {"brainscore-2026"}
    assert "e376e30" in rows.loc["V4", "source"] and "c642dbe" in rows.loc["behaviour", "source"]
    assert (table["model"] == "m").all()


def test_composite_names_each_version_it_mixes():
    table = nr.behaviour.brainscore_composite(_predictivity_rows("2019"), _i2n_rows()).to_pandas()
    rows = table.set_index("component")
    assert rows.loc["V4", "protocol"] == "brainscore-2019" and rows.loc["V4", "formula"] == "PLS r, ceiled (r / c)^2"
    assert rows.loc["composite", "protocol"] == "brainscore-2019 + brainscore-2026"


def test_composite_refuses_tables_it_cannot_use():
    only_v4 = ScoreTable(r for r in _predictivity_rows() if r["region"] == "V4")
    with pytest.raises(ValueError, match="no committed-layer row .* region 'IT'"):
        nr.behaviour.brainscore_composite(only_v4, _i2n_rows())
    other = ScoreTable({**r, "protocol": "neuroreg"} for r in _predictivity_rows())
    with pytest.raises(ValueError, match="protocol='brainscore'"):
        nr.behaviour.brainscore_composite(other, _i2n_rows())
    with pytest.raises(ValueError, match="split='mean'"):
        nr.behaviour.brainscore_composite(_predictivity_rows(), ScoreTable(list(_i2n_rows())[:2]))
    with pytest.raises(TypeError, match="ScoreTables"):
        nr.behaviour.brainscore_composite(_predictivity_rows(), _i2n_rows().to_pandas())


def test_composite_is_refused_when_a_component_has_no_ceiled_score():
    i2n = ScoreTable({**r, "brainscore_ceiled": None} for r in _i2n_rows())
    with pytest.raises(ValueError, match=r"composite is undefined: component\(s\) \['behaviour'\]"):
        nr.behaviour.brainscore_composite(_predictivity_rows(), i2n)


def _direct_i1n(p: pd.DataFrame, trials: pd.DataFrame, model: bool) -> pd.Series:
    """I1n per image written out from Rajalingham et al.'s definitions, loops and scipy's norm.ppf."""
    objects = sorted(trials["sample_obj"].unique())
    truth = trials.drop_duplicates("stimulus_id").set_index("stimulus_id")["sample_obj"]
    images = sorted(truth.index)
    fa = {}
    for i in images:
        for c in objects:
            if c == truth[i]:
                continue
            if model:
                pc = p[(p.stimulus_id == i) & (p.choice == c)].probability.item()
                pt = p[(p.stimulus_id == i) & (p.choice == truth[i])].probability.item()
                fa[i, c] = pc / (pc + pt)
            else:
                offered = trials[(trials.stimulus_id == i) & (trials.dist_obj == c)]
                fa[i, c] = (offered.choice == c).mean() if len(offered) else np.nan
    d = {}
    for i in images:
        for c in objects:
            if c == truth[i]:
                continue
            other = [fa[j, truth[i]] for j in images if truth[j] == c]
            value = norm.ppf(1 - fa[i, c]) - norm.ppf(np.nanmean(other))
            d[i, c] = float(np.clip(value, -5, 5))
    frame = pd.Series(d).rename_axis(["image", "dist"]).reset_index(name="d")
    frame["object"] = frame["image"].map(truth)
    frame["d"] = frame["d"] - frame.groupby(["object", "dist"])["d"].transform("mean")
    return frame.groupby("image")["d"].mean()


def test_image_dprimes_equal_the_definitions_written_out():
    rng = np.random.default_rng(3)
    objects = ["a", "b", "c"]
    ids = [f"{o}{k}" for o in objects for k in range(4)]
    rows, trials = [], []
    for sid in ids:
        for o, q in zip(objects, rng.dirichlet(np.ones(3))):
            rows.append((sid, o, q))
        for dist in objects:
            if dist != sid[0]:
                for _ in range(6):
                    trials.append((sid, sid[0], dist, sid[0] if rng.random() < 0.7 else dist))
    p = pd.DataFrame(rows, columns=["stimulus_id", "choice", "probability"])
    t = pd.DataFrame(trials, columns=["stimulus_id", "sample_obj", "dist_obj", "choice"])
    got = nr.behaviour.image_dprimes(p, t).set_index("stimulus_id")
    np.testing.assert_allclose(got["model_dprime"], _direct_i1n(p, t, model=True).loc[got.index], atol=1e-12)
    np.testing.assert_allclose(got["primate_dprime"], _direct_i1n(p, t, model=False).loc[got.index], atol=1e-12)
    assert (got["n_trials"] == 12).all() and list(got["object"]) == [s[0] for s in got.index]


def test_row_space_coordinates_keep_brainscore_predictivity_exactly():
    rng = np.random.default_rng(0)
    n, d = 40, 600
    x = rng.normal(size=(n, d))
    y = x[:, :5] @ rng.normal(size=(5, 4)) + rng.normal(size=(n, 4))
    trials = y[None] + rng.normal(size=(3, n, 4))
    brain = BrainData(trials.mean(0), np.array([f"s{i:02d}" for i in range(n)]), {"roi": np.array(["IT"] * 4)},
                      trials=trials)
    labels = np.repeat(["a", "b", "c", "d"], 10)
    z = row_space_coordinates(torch.from_numpy(x))
    assert z.shape == (n, n - 1)
    with pytest.warns(UserWarning, match="test stimuli per split"):
        full = predictivity_brainscore({"L": torch.from_numpy(x)}, brain, labels=labels)
    with pytest.warns(UserWarning, match="test stimuli per split"):
        reduced = predictivity_brainscore({"L": torch.from_numpy(z)}, brain, labels=labels)
    assert reduced[0]["score"] == pytest.approx(full[0]["score"], abs=1e-10)
    assert reduced[0]["brainscore_ceiled"] == pytest.approx(full[0]["brainscore_ceiled"], abs=1e-10)
