"""The forgetting report compares like with like: what fine-tuning gained on the new task (the same probe before and
after; the fine-tuned head on rows of its own) apart from what the network lost on old tasks, each row with its kind."""

import copy
import logging

import lightning as L
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from neuroreg.finetune import FinetuneModule
from neuroreg.data import PatternDataModule
from neuroreg.finetune.forgetting import KINDS, PreviousTask, forgetting_report, metric_kind
from neuroreg.finetune.forgetting_output import write_forgetting

DATA = dict(batch_size=4, image_size=32, num_workers=0, model_name="test_resnet")
KW = dict(probe_sets=["kriegeskorte92"], reference="kriegeskorte92", image_size=32, batch_size=46)


@pytest.fixture(scope="module")
def patterns():
    dm = PatternDataModule(n_images=60, **DATA)
    dm.setup("fit")
    return dm


def _fit(module, dm, steps: int, root) -> None:
    L.Trainer(max_steps=steps, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
              default_root_dir=str(root)).fit(module, datamodule=dm)


def _stages(table, metric) -> dict[str, float]:
    return {r["stage"]: r["score"] for r in table if r["metric"] == metric}


def _changes_outside_the_new_task(table) -> pd.DataFrame:
    df = table.to_pandas()
    return df[(df["stage"] == "change") & (df["kind"] != "new_task")]


def test_a_frozen_backbone_with_an_unconverged_head_is_not_reported_as_forgetting(patterns, tmp_path, caplog):
    # the case: a frozen backbone and 8 steps; the report used to put the fine-tuned head "after" next to a
    # converged probe "before" under one metric and read the gap as a change of task accuracy
    L.seed_everything(0, verbose=False)
    module = FinetuneModule("test_resnet", num_classes=6, strategy="linear_probe")
    _fit(module, patterns, 8, tmp_path)
    with caplog.at_level(logging.WARNING, logger="neuroreg.finetune.forgetting"):
        table = forgetting_report(module.start_model(), module.backbone, task_data=patterns, **KW)
    head = [r for r in table if r["metric"] == "finetuned_head_accuracy"]
    probe = _stages(table, "task_accuracy")
    assert head[0]["score"] < probe["before"] - 0.2          # the old report's "change" would read this gap
    # the same probe on the same (frozen) features before and after: no change
    assert probe["before"] == probe["after"] and probe["change"] == 0.0
    assert _stages(table, "balanced_accuracy")["change"] == 0.0
    # the head is on rows of its own, named as such, after only, flagged, and counted as the new task
    assert [r["stage"] for r in head] == ["after"] and head[0]["kind"] == "new_task" and head[0]["layer"] == "head"
    assert "below a linear probe on its start's features" in head[0]["warning"]
    assert head[0]["chance"] == pytest.approx(1 / 6)
    assert any("finetuned_head_accuracy" in m and "fine-tuning did not converge" in m for m in caplog.messages)
    # nothing outside the new task changed: that is what forgetting is measured on
    assert len(_changes_outside_the_new_task(table)) >= 5
    assert (_changes_outside_the_new_task(table)["score"] == 0.0).all()

    paths = write_forgetting(table, tmp_path / "report")
    csv = pd.read_csv(paths["csv"])
    assert set(csv["kind"]) == {"new_task", "old_task", "representation", "brain"}
    assert csv.loc[csv["metric"] == "finetuned_head_accuracy", "warning"].str.contains("did not converge").all()
    md = paths["md"].read_text()
    assert "## Warnings" in md and "New task: transfer, not forgetting" in md and "Old tasks: forgetting" in md
    assert md.index("## Warnings") < md.index("New task")


@pytest.mark.slow
def test_with_a_frozen_backbone_every_change_outside_the_new_task_is_exactly_zero(patterns):
    torch.manual_seed(0)
    start = FinetuneModule("test_resnet", num_classes=6).start_model()
    after = copy.deepcopy(start)
    after.reset_classifier(6)                               # a new head on the same body: a linear probe's outcome
    original = torch.utils.data.TensorDataset(torch.rand(24, 3, 32, 32), torch.arange(24) % 6)
    table = forgetting_report(start, after, task_data=patterns, original_data=original,
                              previous_tasks=[PreviousTask("earlier", start, patterns.eval_dataset("test"))],
                              brain="simulate", factortopy={"max_epochs": 3}, **KW)
    df = table.to_pandas()
    assert set(df["kind"]) == set(KINDS)
    assert {"original_accuracy", "previous_task_accuracy", "retention_accuracy", "crsa", "versa",
            "hierarchy_slope"} <= set(df["metric"])
    outside = _changes_outside_the_new_task(table)
    assert set(outside["kind"]) == {"old_task", "brain"} and (outside["score"] == 0.0).all()
    assert (df[df["metric"] == "backward_transfer"]["score"] == 0.0).all()
    assert (df[df["metric"] == "cka_to_start"]["score"] == 1.0).all()
    assert _stages(table, "task_accuracy")["change"] == 0.0


def test_the_probe_after_is_the_same_recipe_on_the_fine_tuned_features(patterns, tmp_path):
    L.seed_everything(0, verbose=False)
    module = FinetuneModule("test_resnet", num_classes=6, strategy="full", lr=1e-2)
    _fit(module, patterns, 4, tmp_path)
    after = module.backbone.eval()
    table = forgetting_report(module.start_model(), after, task_data=patterns, probe_sets=[], reference=None,
                              image_size=32, batch_size=46)

    def features_and_logits(split):
        feats = []
        handle = after.fc.register_forward_pre_hook(lambda _m, inp: feats.append(inp[0].flatten(1)))
        with torch.no_grad():
            data = patterns.eval_dataset(split)
            logits = torch.cat([after(x[None]) for x, _ in data])
        handle.remove()
        return torch.cat(feats).numpy(), logits.numpy(), np.array([int(y) for _, y in data])

    x_train, _, y_train = features_and_logits("train")
    x_test, logits, y_test = features_and_logits("test")
    reference = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, tol=1e-10, max_iter=100_000))
    expected = float((reference.fit(x_train, y_train).predict(x_test) == y_test).mean())
    probe = _stages(table, "task_accuracy")
    assert probe["after"] == pytest.approx(expected, abs=1 / len(y_test) + 1e-12)   # at most one test image apart
    assert probe["change"] == pytest.approx(probe["after"] - probe["before"], abs=1e-15)
    head = _stages(table, "finetuned_head_accuracy")
    assert head == {"after": pytest.approx(float((logits.argmax(1) == y_test).mean()), abs=1e-12)}


def test_a_head_near_chance_is_flagged_and_a_margin_outside_0_1_is_refused(patterns):
    torch.manual_seed(0)
    start = FinetuneModule("test_resnet", num_classes=6).start_model()
    after = copy.deepcopy(start)
    after.reset_classifier(6)
    with torch.no_grad():
        after.fc.weight.zero_()
        after.fc.bias.copy_(torch.tensor([1.0, 0, 0, 0, 0, 0]))      # always class 0: exactly chance
    table = forgetting_report(start, after, task_data=patterns, probe_sets=[], reference=None, image_size=32)
    row = next(r for r in table if r["metric"] == "finetuned_head_balanced_accuracy")
    assert row["score"] == pytest.approx(1 / 6) and "is near chance (0.167; chance 0.167, margin 0.10)" in row["warning"]
    lenient = forgetting_report(start, after, task_data=patterns, probe_sets=[], reference=None, image_size=32,
                                near_chance_margin=0.0)
    assert "near chance" in next(r for r in lenient if r["metric"] == "finetuned_head_accuracy")["warning"]
    with pytest.raises(ValueError, match="near_chance_margin must be in"):
        forgetting_report(start, after, probe_sets=[], reference=None, near_chance_margin=1.5)


def test_every_metric_has_one_kind_and_unknown_ones_are_refused():
    assert {metric_kind(m) for m in ("task_accuracy", "finetuned_head_accuracy")} == {"new_task"}
    assert {metric_kind(m) for m in ("original_accuracy", "backward_transfer", "previous_task_accuracy",
                                     "retention_accuracy")} == {"old_task"}
    assert metric_kind("cka_to_start") == "representation"
    assert {metric_kind(m) for m in ("crsa", "versa", "hierarchy_slope", "factortopy_r2")} == {"brain"}
    with pytest.raises(ValueError, match="unknown forgetting-report metric 'top5'"):
        metric_kind("top5")
