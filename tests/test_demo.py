"""`neuroreg demo --quick` runs end to end offline and its numbers tell the documented story."""

import pytest

from neuroreg.demo import run_demo


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    return out, run_demo(out, quick=True, device="cpu")


def test_writes_report_tables_and_figures(demo):
    out, _ = demo
    page = (out / "report.html").read_text()
    for heading in ("Brain scores (cRSA)", "Brain-regularized training", "Adversarial robustness",
                    "Fine-tuning and forgetting"):
        assert heading in page
    for name in ("brain_scores.csv", "brain_scores_summary.csv", "layer_profile_kriegeskorte92.png",
                 "layer_profile_algonauts2019_78.png", "report.md"):
        assert (out / name).is_file(), name


def test_trained_network_is_more_it_like_than_untrained(demo):
    _, results = demo
    score = {(r["model"], r["rdm_set"]): r["score"] for r in results["brain"]}
    trained = score[("efficientnet_lite0 (ImageNet-trained)", "monkey_IT")]
    untrained = score[("efficientnet_lite0 (untrained)", "monkey_IT")]
    assert trained > untrained + 0.1


def test_alignment_term_raises_heldout_it_cka(demo):
    _, results = demo
    cka = {r["alignment_weight"]: r["score"] for r in results["training"] if r["metric"] == "val/cka_IT"}
    assert cka[2.0] > cka[0.0]


def test_robustness_sanity_checks_pass(demo):
    _, results = demo
    sanity = [r for r in results["robustness"] if str(r["metric"]).startswith("sanity:")]
    assert sanity and all(r["passed"] for r in sanity)


def test_finetuning_stage_reports_drift_for_both_models(demo):
    out, results = demo
    drift = [r for r in results["forgetting"] if r["metric"] == "cka_to_start"]
    assert {r["model"] for r in drift} == {"cornet_z (task only)", "cornet_z (task + IT CKA)"}
    assert all(r["score"] < 1.0 for r in drift)
    assert (out / "finetune" / "task_only" / "forgetting.md").is_file()
