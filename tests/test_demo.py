"""`neuroreg demo --quick` runs end to end offline; its scorecard has every section and its report renders."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from report_browser import find_chromium, render

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    proc = subprocess.run([sys.executable, "-m", "neuroreg.cli.main", "demo", "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=1800)   # a hang bound, not a speed check
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc.stdout


def test_scorecard_has_every_section(demo):
    out, _ = demo
    rows = pd.read_csv(out / "scorecard.csv")
    sections = set(rows["section"])
    assert {"accuracy", "attacks", "corruptions", "brain", "factortopy", "training"} <= sections
    ft = rows[(rows["section"] == "factortopy") & (rows["metric"] == "hierarchy_slope")].set_index("model")["score"]
    # voxels simulated from the trained EfficientNet: its own layers recover the ROI ordering
    assert ft["EfficientNet-Lite0 (ImageNet)"] > 0.3
    metrics = set(rows["metric"])
    assert {"crsa", "versa", "predictivity", "hierarchy_slope"} <= metrics
    att = rows[rows["section"] == "attacks"]
    assert "eotpgd" in set(att["attack"].dropna())              # the stochastic VOne model is attacked with EOT
    sanity = att[att["metric"].astype(str).str.startswith("sanity:")]
    assert len(sanity) and sanity["passed"].astype(bool).all()
    # real bundled sets for cRSA; the voxel scores are on data labelled as simulated
    brain = rows[rows["section"] == "brain"]
    assert set(brain[brain["metric"] == "crsa"]["dataset"]) == {"kriegeskorte92", "algonauts2019_78"}
    assert all("simulated" in d for d in brain[brain["metric"] == "versa"]["dataset"])


def test_summary_compares_all_models(demo):
    out, stdout = demo
    summary = pd.read_csv(out / "summary.csv")
    assert len(summary) == 5 and summary["model"].is_unique
    trained = summary[summary["model"].str.contains("CORnet")]
    assert trained["clean_top1"].notna().all() and trained["corruption_acc"].notna().all()
    # the ImageNet-trained network is more monkey-IT-like than the same architecture untrained
    s = summary.set_index("model")["crsa:kriegeskorte92:monkey_IT"]
    assert s["EfficientNet-Lite0 (ImageNet)"] > s["EfficientNet-Lite0 (untrained)"] + 0.1
    assert (out / "comparison.png").is_file() and "VOne-CORnet-Z" in stdout


def test_alignment_term_raises_heldout_it_cka(demo):
    out, _ = demo
    rows = pd.read_csv(out / "scorecard.csv")
    cka = rows[(rows["section"] == "training") & (rows["metric"] == "val/cka_IT")].set_index("model")["score"]
    assert cka["CORnet-Z (task + IT CKA)"] > cka["CORnet-Z (task)"]


def test_report_renders_in_headless_chromium(demo):
    out, _ = demo
    page = (out / "report.html").read_text()
    assert page.index("comparison") < page.index("<h2>Task accuracy")
    assert "SIMULATED" in page and "<details>" in page and 'src="data:image/png;base64,' in page
    browser = find_chromium()
    if browser is None:
        pytest.skip("no Chromium installed (apt-get install chromium); the HTML checks above still ran")
    result = render(out / "report.html", browser)
    assert result["images"] >= 6 and result["loaded"] == result["images"], result
    assert result["errors"] == [], result["errors"]
    from PIL import Image
    shot = np.asarray(Image.open(result["screenshot"]).convert("L"), dtype=float)
    assert shot.std() > 10 and (shot < 128).mean() > 0.005   # not a blank page: text and figures drawn


def test_fine_tuning_stage_reports_what_each_network_forgot(demo):
    out, _ = demo
    rows = pd.read_csv(out / "scorecard.csv")
    ft = rows[rows["section"] == "forgetting"]
    assert {"CORnet-Z (task)", "CORnet-Z (task + IT CKA)"} <= set(ft["model"])
    assert {"before", "after", "change"} <= set(ft["stage"].dropna())
    assert {"task_accuracy", "finetuned_head_accuracy", "cka_to_start", "crsa"} <= set(ft["metric"])
    assert {"new_task", "old_task", "representation", "brain"} <= set(ft["kind"].dropna())
    assert len(list((out / "finetune").glob("*/forgetting.md"))) == 2
    # the fine-tuned head on rows of its own, with its chance level; a head that did not learn carries a warning
    head = ft[ft["metric"] == "finetuned_head_accuracy"]
    assert len(head) == 2 and (head["stage"] == "after").all()
    assert np.allclose(head["chance"], 1 / 3, atol=0.05)   # three balanced classes (the majority class of the test split)
    near_chance = head["score"] <= head["chance"] + 0.1
    assert head.loc[near_chance, "warning"].astype(str).str.contains("near chance").all()


def test_fine_tuned_networks_learn_their_new_task(demo):
    """Both fine-tuned heads end well above chance (1/3) on the pattern task's test split, read from each
    network's own forgetting.csv, so the forgetting section shows networks that learned the new task."""
    out, _ = demo
    files = sorted((out / "finetune").glob("*/forgetting.csv"))
    assert len(files) == 2
    for path in files:
        rows = pd.read_csv(path)
        head = rows[(rows["metric"] == "finetuned_head_accuracy") & (rows["stage"] == "after")]
        assert len(head) == 1, path
        assert head["score"].iloc[0] >= 0.7, (path, head["score"].iloc[0])
        assert head["warning"].isna().all(), head["warning"].tolist()
        # the same linear probe reads the new task better from the fine-tuned features than from the start's
        probe = rows[rows["metric"] == "task_accuracy"].set_index("stage")["score"]
        assert probe["after"] > probe["before"] + 0.1, probe.to_dict()
