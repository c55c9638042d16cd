"""The scorecard's behaviour section on the fixture Brain-Score cache, with small CNNs: rows, groups, report."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import neuroreg as nr
from neuroreg.scorecard.behaviour import BehaviourOptions, behaviour_scores
from neuroreg.scorecard.behaviour_data import load_brainscore_cache

CACHE = Path(__file__).resolve().parent / "fixtures" / "brainio" / "composite"
OPTIONS = {"readout_layer": "block2", "number_of_trials": 1}
pytestmark = pytest.mark.filterwarnings("ignore:Maximum number of iterations:sklearn.exceptions.ConvergenceWarning")


class Tiny(nn.Module):
    """Two conv blocks and a linear head: a network small enough for the default test lane."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.block1 = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.block2 = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        return self.head(self.block2(self.block1(x)).mean((2, 3)))


@pytest.fixture(scope="module")
def cache():
    return load_brainscore_cache(f"brainio:{CACHE}")


def test_the_cache_is_found_and_split(cache):
    assert cache.neural.brain.n_stimuli == 96 and sorted(set(cache.neural.brain.unit_info["region"])) == ["IT", "V4"]
    assert cache.neural.time_bin == (70.0, 170.0) and cache.neural.brain.trials.shape == (4, 96, 16)
    assert len(cache.behaviour.trials) == 1008 and cache.behaviour.trials["stimulus_id"].nunique() == 24
    tested = set(cache.behaviour.trials["stimulus_id"])
    assert cache.fitting.n_stimuli == 72 and not tested & set(cache.fitting.stimulus_ids.tolist())
    assert sorted(pd.Series(cache.fitting_labels).value_counts().tolist()) == [18] * 4
    assert "no trial shows" in cache.describe() and "1008 trials on 24 images" in cache.describe()


def test_missing_caches_and_fitting_sets_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_brainscore_cache(f"brainio:{tmp_path / 'absent'}")
    with pytest.raises(FileNotFoundError, match="no neural assembly"):
        load_brainscore_cache(f"brainio:{tmp_path}")
    with pytest.raises(FileNotFoundError, match="no BrainIO file for identifier 'nope'"):
        load_brainscore_cache(CACHE, fitting="nope")
    with pytest.raises(FileNotFoundError, match="no neural assembly 'other.id'"):
        load_brainscore_cache(CACHE, neural="other.id")


def test_section_rows_for_one_model(cache):
    table, note = behaviour_scores(Tiny(0), cache, options=BehaviourOptions(**OPTIONS),
                                   layers=["block1", "block2"], image_size=32, model_name="tiny", progress=False)
    df = table.to_pandas()
    assert set(df["model"]) == {"tiny"}
    pred = df[(df["metric"] == "predictivity") & df["component"].isna()]
    assert len(pred) == 4 and pred.groupby("region")["is_best"].sum().to_dict() == {"IT": 1, "V4": 1}
    i2n = df[(df["metric"] == "i2n") & df["component"].isna()]
    assert list(i2n["split"].astype(str)) == ["0", "1", "mean"] and set(i2n["primates"]) == {"all"}
    # the split-half ceiling is the trials' own: the same for any model's probabilities
    probs = pd.DataFrame([(s, o, 0.25) for s in sorted(set(cache.behaviour.trials["stimulus_id"]))
                          for o in ["cross", "disk", "square", "triangle"]], columns=["stimulus_id", "choice",
                                                                                     "probability"])
    random = np.random.default_rng(0).dirichlet(np.ones(4), 24).reshape(-1)
    own = nr.behaviour.i2n(probs.assign(probability=random), cache.behaviour.trials)
    assert i2n["ceiling"].tolist() == pytest.approx([r["ceiling"] for r in own])
    comp = df[df["component"].notna()].set_index("component")
    assert list(comp.index) == ["V4", "IT", "behaviour", "composite"]
    assert comp.loc["composite", "score"] == pytest.approx(comp.loc[["V4", "IT", "behaviour"],
                                                                    "brainscore_ceiled"].mean())
    assert comp.loc["behaviour", "brainscore_ceiled"] == pytest.approx(i2n["brainscore_ceiled"].iloc[-1])
    committed = pred[pred["is_best"] == True].set_index("region")  # noqa: E712
    assert comp.loc["IT", "brainscore_ceiled"] == pytest.approx(committed.loc["IT", "brainscore_ceiled"])
    assert set(comp["protocol"]) == {"brainscore-2026"}
    dp = df[df["metric"] == "image_dprime"]
    assert len(dp) == 24 and dp["primate_dprime"].notna().all() and (dp["n_trials"] == 42).all()
    assert "read-out on block2" in note and "1 passes averaged" in note


def test_primate_groups_each_get_their_ceiling_and_the_composite_takes_the_humans(cache):
    trials = cache.behaviour.trials
    both = pd.concat([trials.assign(species="human"), trials.assign(species="monkey")], ignore_index=True)
    grouped = dataclasses.replace(cache, behaviour=dataclasses.replace(cache.behaviour, trials=both))
    kwargs = dict(options=BehaviourOptions(**OPTIONS), layers=["block1", "block2"], image_size=32, progress=False)
    plain = behaviour_scores(Tiny(0), cache, **kwargs)[0].to_pandas()
    split = behaviour_scores(Tiny(0), grouped, **kwargs)[0].to_pandas()
    means = split[(split["metric"] == "i2n") & (split["split"].astype(str) == "mean") & split["component"].isna()]
    assert list(means["primates"]) == ["human", "monkey"]
    plain_mean = plain[(plain["metric"] == "i2n") & (plain["split"].astype(str) == "mean") & plain["component"].isna()]
    assert means["ceiling"].tolist() == pytest.approx([plain_mean["ceiling"].item()] * 2)
    comp = split[split["component"] == "composite"]
    assert comp["primates"].item() == "human"
    assert comp["score"].item() == pytest.approx(plain[plain["component"] == "composite"]["score"].item())


def test_evaluate_writes_the_section_summary_and_figure(tmp_path):
    card = nr.evaluate({"tiny_a": Tiny(0), "tiny_b": Tiny(1)}, brain_sets=[f"brainio:{CACHE}"],
                       layers=["block1", "block2"], image_size=32, behaviour=OPTIONS, progress=False)
    assert "behaviour" in card.sections and "brain" not in card.sections
    summary = card.summary().set_index("model")
    for model in ("tiny_a", "tiny_b"):
        comp = card.behaviour.filter(model=model, component="composite")
        assert summary.loc[model, "brainscore:composite"] == pytest.approx(comp[0]["score"])
        assert 0 < summary.loc[model, "i2n:all ceiling"] < 1
    assert "Brain-Score cache" in card.ran_on["behaviour"]["tiny_a"]
    card.save(tmp_path)
    figures = list(tmp_path.glob("behaviour_dprime_*.png"))
    assert len(figures) == 1 and figures[0].read_bytes()[:4] == b"\x89PNG"
    page = (tmp_path / "report.md").read_text()
    assert "Behaviour and the Brain-Score composite" in page and "brainscore-2026" in page
    rows = json.loads((tmp_path / "scorecard.json").read_text())
    assert {r["component"] for r in rows if r.get("section") == "behaviour" and r.get("component")} == {
        "V4", "IT", "behaviour", "composite"}
    loaded = nr.Scorecard.load(tmp_path)
    assert loaded.summary().set_index("model").loc["tiny_b", "brainscore:composite"] == pytest.approx(
        summary.loc["tiny_b", "brainscore:composite"])


def test_section_choices_are_checked():
    with pytest.raises(ValueError, match="section 'behaviour' needs a Brain-Score cache"):
        nr.evaluate(Tiny(0), sections=["behaviour"], brain_sets=["kriegeskorte92"])
    with pytest.raises(ValueError, match=r"behaviour options \['nmber_of_trials'\] are unknown"):
        nr.evaluate(Tiny(0), brain_sets=[f"brainio:{CACHE}"], behaviour={"nmber_of_trials": 2})
    with pytest.raises(ValueError, match="number_of_trials must be a positive integer"):
        BehaviourOptions(number_of_trials=0)
