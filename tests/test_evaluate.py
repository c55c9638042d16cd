"""The scorecard: accuracy vs scikit-learn, brain scores vs a scipy cRSA written here, saved reports."""

import logging

import numpy as np
import pytest
import torch
from scipy.spatial.distance import pdist
from scipy.stats import pearsonr
from sklearn.metrics import top_k_accuracy_score
from torch import nn

from neuroreg.brain import BrainData, load_kriegeskorte92
from neuroreg.errors import UnknownNameError
import neuroreg as nr
from neuroreg.scorecard.evaluation import Scorecard, accuracy, brain_scores, evaluate, factortopy_scores, summarize_brain
from neuroreg.data.preprocessing import Preprocessing
from neuroreg.scoring import FactorTopy


class TinyNet(nn.Module):
    def __init__(self, n_classes=6):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.block = nn.Sequential(nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, n_classes)
        self.pretrained_cfg = {"mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25), "input_size": (3, 32, 32),
                               "interpolation": "bilinear"}

    def forward(self, x):
        return self.fc(self.pool(self.block(self.conv(x))).flatten(1))


@pytest.fixture(scope="module")
def task():
    g = torch.Generator().manual_seed(0)
    return torch.rand(40, 3, 32, 32, generator=g), torch.randint(0, 6, (40,), generator=g)


def test_accuracy_matches_sklearn_topk(task):
    torch.manual_seed(0)
    model = TinyNet().eval()
    x, y = task
    table = accuracy(model, (x, y), topk=(1, 3), mean=(0.5,) * 3, std=(0.25,) * 3, batch_size=7)
    with torch.no_grad():
        logits = model((x - 0.5) / 0.25).numpy()
    assert table.filter(metric="top1")[0]["score"] == pytest.approx(top_k_accuracy_score(y, logits, k=1, labels=range(6)))
    assert table.filter(metric="top3")[0]["score"] == pytest.approx(top_k_accuracy_score(y, logits, k=3, labels=range(6)))


def test_accuracy_rejects_labels_beyond_outputs(task):
    x, y = task
    with pytest.raises(ValueError, match=r"labels must be in \[0, 5\].*6 outputs"):
        accuracy(TinyNet(), (x, y + 3))


def test_brain_scores_match_scipy_crsa():
    torch.manual_seed(0)
    model = TinyNet().eval()
    data = load_kriegeskorte92()
    table = brain_scores(model, [data], layers={"conv": "conv", "block": "block"}, image_size=32)
    row = table.filter(layer="block", split="test", rdm_set="monkey_IT")[0]
    # independent reference: scipy distances and Pearson on the odd-index stimuli
    # independent preprocessing written here: bilinear antialiased resize to 32 px, (x - 0.5) / 0.25
    with torch.no_grad():
        x = torch.nn.functional.interpolate(data.images_tensor(), size=(32, 32), mode="bilinear",
                                            align_corners=False, antialias=True).clamp(0, 1)
        x = (x - 0.5) / 0.25
        act = model.block(model.conv(x)).flatten(1).numpy().astype(np.float64)
    odd = np.arange(1, 92, 2)
    model_rdm = pdist(act[odd], "correlation")
    brain_rdm = data.rdms["monkey_IT"].rdms[0][np.ix_(odd, odd)][np.triu_indices(46, 1)]
    assert row["score"] == pytest.approx(pearsonr(model_rdm, brain_rdm)[0], abs=1e-5)
    summary = summarize_brain(table)
    assert {r["rdm_set"] for r in summary} == {"monkey_IT", "human_IT", "human_IT_sessions"}
    sessions = summary.filter(rdm_set="human_IT_sessions")[0]
    assert sessions["n_subjects"] == 4 and sessions["n_rdms"] == 8 and sessions["ceiling_r"] is not None


def test_unknown_brain_set_is_rejected():
    with pytest.raises(UnknownNameError, match="unknown brain set 'nsd'.*kriegeskorte92"):
        brain_scores(TinyNet(), ["nsd"], layers=["conv"])


def test_evaluate_writes_full_scorecard(task, tmp_path):
    torch.manual_seed(0)
    model = TinyNet().eval()
    card = evaluate(model, task, brain_sets=["kriegeskorte92"], attacks=["fgsm"], eps=[2 / 255, 8 / 255],
                    corruptions=["gaussian_noise"], severities=(1, 5), layers=["conv", "block"],
                    batch_size=20, attack_kwargs={"progress": False, "pgd_steps": 2, "square_queries": 20})
    assert isinstance(card, Scorecard)
    summary = card.summary().iloc[0]
    assert 0 <= summary["clean_top1"] <= 1
    assert summary["robust_acc@2/255"] <= summary["clean_top1"] + 1e-9
    assert "crsa:kriegeskorte92:monkey_IT" in summary.index
    paths = card.save(tmp_path)
    page = paths["html"].read_text()
    assert "Adversarial robustness" in page and "Brain scores" in page and "Corruption robustness" in page
    assert (tmp_path / "layer_profile_kriegeskorte92_crsa.png").is_file()
    sections = {r["section"] for r in card.table()}
    assert sections == {"accuracy", "attacks", "corruptions", "brain"}
    # every section says what it ran on
    assert set(card.ran_on) == sections and all("TinyNet" in v or v for v in card.ran_on["brain"].values())


def test_side_by_side_summary_save_and_load(task, tmp_path):
    torch.manual_seed(0)
    a, b = TinyNet().eval(), TinyNet().eval()
    card = nr.evaluate({"a": a, "b": b}, task, ["kriegeskorte92"], sections=["accuracy", "brain"],
                       layers=["conv", "block"], batch_size=20)
    summary = card.summary()
    assert list(summary["model"]) == ["a", "b"]
    # one summary row per model; its brain score is the mean over subjects of the train-chosen layer's test score
    ref = summarize_brain(brain_scores(b, ["kriegeskorte92"], layers=["conv", "block"], model_name="b"))
    monkey = ref.filter(rdm_set="monkey_IT")[0]["score"]
    assert summary.set_index("model").loc["b", "crsa:kriegeskorte92:monkey_IT"] == pytest.approx(monkey)
    paths = card.save(tmp_path / "ab")
    assert (tmp_path / "ab" / "comparison.png").read_bytes()[:4] == b"\x89PNG"
    page = paths["html"].read_text()
    assert page.index("comparison") < page.index("<h2>Task accuracy") < page.index("<h2>Brain scores")
    loaded = nr.Scorecard.load(tmp_path / "ab")
    assert loaded.models == ["a", "b"] and loaded.ran_on == card.ran_on
    pd_eq = loaded.summary().round(12).equals(summary.round(12))
    assert pd_eq
    with pytest.raises(ValueError, match="unknown sections"):
        nr.evaluate(a, task, sections=["accuracy", "vibes"])


def _resize_normalize(images, size=32):
    # independent preprocessing written here (TinyNet's contract): bilinear antialiased resize, (x - 0.5) / 0.25
    x = torch.nn.functional.interpolate(images, size=(size, size), mode="bilinear", align_corners=False,
                                        antialias=True).clamp(0, 1)
    return (x - 0.5) / 0.25


def test_factortopy_scores_run_the_network_once_and_match_the_streamed_fit():
    torch.manual_seed(0)
    model = TinyNet().eval()
    images = torch.rand(40, 3, 48, 48, generator=torch.Generator().manual_seed(3))
    rng = np.random.default_rng(0)
    roi = np.array(["V1", "V2V3", "OPA", "EBA"])[np.arange(24) % 4]
    brain = BrainData(rng.normal(size=(40, 24)), np.arange(40), {"coords": rng.uniform(-1, 1, (24, 2)), "roi": roi})
    brain.stimuli = images
    fit = dict(d=8, hidden=16, batch_size=16, max_epochs=3, warmup_epochs=1, anneal_epochs=1, patience=1)
    calls = []
    hook = model.register_forward_hook(lambda *_: calls.append(1))
    try:
        table, ft = factortopy_scores(model, brain, layers=["conv", "block"], image_size=32, fit_kwargs=fit,
                                      batch_size=64, progress=False)
    finally:
        hook.remove()
    # one image sizing the maps, then one pass over the 40 stimuli, not one per batch per epoch
    assert len(calls) == 2
    # reference: FactorTopy streaming the network batch by batch in every epoch, on images prepared here
    streamed = FactorTopy(["conv", "block"], random_state=0, progress=False, **fit).fit(
        model, brain, stimuli=_resize_normalize(images))
    np.testing.assert_allclose(ft.layer_probs_, streamed.layer_probs_, atol=1e-5)
    slope = table.filter(metric="hierarchy_slope")[0]["score"]
    assert slope == pytest.approx(streamed.summary().filter(metric="hierarchy_slope")[0]["score"], abs=1e-5)
    # maps over the memory budget: the fit streams the network instead (bounded memory), same numbers
    calls.clear()
    hook = model.register_forward_hook(lambda *_: calls.append(1))
    try:
        _, low = factortopy_scores(model, brain, layers=["conv", "block"], image_size=32, fit_kwargs=fit,
                                   batch_size=64, maps_memory=1000, progress=False)
    finally:
        hook.remove()
    assert len(calls) > 2
    np.testing.assert_allclose(low.layer_probs_, streamed.layer_probs_, atol=1e-5)


def test_evaluate_reports_every_model_and_section_as_it_goes(task, caplog, capsys):
    torch.manual_seed(0)
    models = {"a": TinyNet().eval(), "b": TinyNet().eval()}
    caplog.set_level(logging.INFO, logger="neuroreg.scorecard.evaluation")
    evaluate(models, task, ["kriegeskorte92"], sections=["accuracy", "brain"], layers=["conv", "block"],
             batch_size=20, progress=True)
    messages = [r.getMessage() for r in caplog.records if r.name == "neuroreg.scorecard.evaluation"]
    assert [m for m in messages if m.endswith(" ...")] == [
        "[1/4] a: accuracy ...", "[2/4] a: brain kriegeskorte92 ...",
        "[3/4] b: accuracy ...", "[4/4] b: brain kriegeskorte92 ..."]
    done = [m for m in messages if " done in " in m]
    assert len(done) == 4 and done[-1].startswith("[4/4] b: brain kriegeskorte92 done in ")
    bar = capsys.readouterr().err        # progress=True: tqdm's bar on stderr, named after the current step
    assert "b: brain kriegeskorte92" in bar and "4/4" in bar
