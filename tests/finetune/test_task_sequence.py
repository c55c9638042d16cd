"""Chains of fine-tuning runs: accuracy on every earlier task before / after, and the chain's backward transfer."""

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import timm
import torch
import yaml
from sklearn.metrics import balanced_accuracy_score

from neuroreg.errors import CheckpointError
from neuroreg.data import PatternDataModule
from neuroreg.cli.finetune import cli_main
from neuroreg.finetune.forgetting import PreviousTask, forgetting_report
from neuroreg.finetune.chain import previous_tasks, task_chain

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
TINY = str(CONFIGS / "finetune_tiny.yaml")
FAST = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--trainer.num_sanity_val_steps", "0", "--trainer.max_steps", "2", "--data.init_args.n_images", "48",
        "--data.init_args.image_size", "32", "--data.init_args.batch_size", "8",
        "--forgetting.probe_sets", "[]", "--forgetting.reference", "null", "--scorecard.enabled", "false"]
REPORT = dict(probe_sets=[], reference=None, batch_size=16)


def _net(num_classes: int, seed: int):
    torch.manual_seed(seed)
    return timm.create_model("test_resnet", num_classes=num_classes).eval()


def _test_split(num_classes: int, seed: int):
    dm = PatternDataModule(n_images=40, num_classes=num_classes, image_size=32, batch_size=8, num_workers=0,
                           model_name="test_resnet", seed=seed)
    return dm.eval_dataset("test")


def _reference_accuracy(net, data):
    """Plain loop: accuracy and scikit-learn's balanced accuracy of ``net`` on ``data``."""
    with torch.no_grad():
        pred = np.array([int(net(x[None]).argmax(1)) for x, _ in data])
    y = np.array([int(y) for _, y in data])
    return float((pred == y).mean()), float(balanced_accuracy_score(y, pred))


def _under_head_of(after, task_net):
    """``after`` with ``task_net``'s classifier put back (built independently of ``with_head_of``)."""
    net = copy.deepcopy(after)
    net.reset_classifier(task_net.get_classifier().out_features)
    net.get_classifier().load_state_dict(task_net.get_classifier().state_dict())
    return net.eval()


def _rows(table, metric, dataset):
    return {r["stage"]: r["score"] for r in table if r["metric"] == metric and r.get("dataset") == dataset}


def test_previous_tasks_match_a_plain_evaluation_and_backward_transfer_is_their_mean_change():
    task_a, task_b = _net(4, 1), _net(3, 2)
    data_a, data_b = _test_split(4, 1), _test_split(3, 2)
    after = _net(6, 3)                                      # the current task's network (another body and head)
    table = forgetting_report(task_b, after, previous_tasks=[PreviousTask("a", task_a, data_a),
                                                             PreviousTask("b", task_b, data_b)], **REPORT)
    changes = []
    for name, net, data in (("a", task_a, data_a), ("b", task_b, data_b)):
        acc_b, bal_b = _reference_accuracy(net, data)
        acc_a, bal_a = _reference_accuracy(_under_head_of(after, net), data)
        acc = _rows(table, "previous_task_accuracy", name)
        bal = _rows(table, "previous_task_balanced_accuracy", name)
        assert acc == pytest.approx({"before": acc_b, "after": acc_a, "change": acc_a - acc_b}, abs=1e-12)
        assert bal == pytest.approx({"before": bal_b, "after": bal_a, "change": bal_a - bal_b}, abs=1e-12)
        changes.append(acc_a - acc_b)
    bwt = [r for r in table if r["metric"] == "backward_transfer" and r["dataset"] == "sequence"]
    assert len(bwt) == 1 and bwt[0]["n_tasks"] == 2
    assert bwt[0]["score"] == pytest.approx(np.mean(changes), abs=1e-12)


def test_an_unchanged_body_forgets_nothing_and_the_original_task_joins_the_mean():
    task_a, root = _net(4, 1), _net(5, 4)
    data_a, data_root = _test_split(4, 1), _test_split(5, 4)
    after = copy.deepcopy(task_a)
    after.reset_classifier(6)                               # new head, same body: a linear probe's outcome
    table = forgetting_report(task_a, after, previous_tasks=[PreviousTask("a", task_a, data_a)],
                              original_data=data_root, original_network=root, **REPORT)
    assert _rows(table, "previous_task_accuracy", "a")["change"] == 0.0
    orig = _rows(table, "original_accuracy", "original")
    root_acc, _ = _reference_accuracy(root, data_root)
    assert orig["before"] == pytest.approx(root_acc, abs=1e-12)     # the root's own head, not the start's
    assert orig["after"] == pytest.approx(_reference_accuracy(_under_head_of(after, root), data_root)[0], abs=1e-12)
    bwt = {r["dataset"]: r for r in table if r["metric"] == "backward_transfer"}
    assert bwt["sequence"]["n_tasks"] == 2
    assert bwt["sequence"]["score"] == pytest.approx(orig["change"] / 2, abs=1e-12)
    assert bwt["original"]["score"] == pytest.approx(orig["change"], abs=1e-12)


def test_without_previous_tasks_no_sequence_rows_and_bad_items_are_refused():
    net = _net(4, 1)
    table = forgetting_report(net, copy.deepcopy(net), **REPORT)
    assert not [r for r in table if r["metric"].startswith("previous_task") or r["metric"] == "backward_transfer"]
    with pytest.raises(TypeError, match=r"previous_tasks\[0\] must be a PreviousTask"):
        forgetting_report(net, net, previous_tasks=[(net, _test_split(4, 1))], **REPORT)


def _finetune(root: Path, start: str, n_classes: int, seed: int, extra: tuple[str, ...] | list[str] = ()) -> Path:
    args = ["--config", TINY, "--trainer.default_root_dir", str(root), "--model.start_from", start,
            "--data.init_args.num_classes", str(n_classes), "--data.init_args.seed", str(seed), *FAST, *extra]
    assert cli_main(args) == 0
    return root / "checkpoints" / "last.ckpt"


def _report(root: Path) -> list[dict]:
    return json.loads((root / "forgetting.json").read_text())


def test_a_chain_of_runs_revisits_every_earlier_task(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)                             # relative start paths, as a user types them
    ckpt_a = _finetune(Path("a"), "cornet_z", 4, 1)
    ckpt_b = _finetune(Path("b"), str(ckpt_a), 3, 2)
    ckpt_c = _finetune(Path("c"), str(ckpt_b), 5, 3)
    assert [r.run_dir.name for r in task_chain(str(ckpt_b))] == ["a", "b"]
    a, b, c = _report(Path("a")), _report(Path("b")), _report(Path("c"))
    assert not [r for r in a if r["metric"].startswith("previous_task")]      # the chain's first run

    def after_of(rows, metric="finetuned_head_accuracy"):
        return next(r["score"] for r in rows if r["metric"] == metric and r["stage"] == "after")

    # a task's "before" in a later run is that task's own "after": the same network on the same test split
    assert _rows(b, "previous_task_accuracy", "pattern:a")["before"] == pytest.approx(after_of(a), abs=1e-12)
    assert _rows(c, "previous_task_accuracy", "pattern:a")["before"] == pytest.approx(after_of(a), abs=1e-12)
    assert _rows(c, "previous_task_accuracy", "pattern:b")["before"] == pytest.approx(after_of(b), abs=1e-12)
    assert (_rows(c, "previous_task_balanced_accuracy", "pattern:b")["before"]
            == pytest.approx(after_of(b, "finetuned_head_balanced_accuracy"), abs=1e-12))
    bwt = [r for r in c if r["metric"] == "backward_transfer" and r["dataset"] == "sequence"]
    changes = [_rows(c, "previous_task_accuracy", f"pattern:{t}")["change"] for t in "ab"]
    assert bwt[0]["n_tasks"] == 2 and bwt[0]["score"] == pytest.approx(np.mean(changes), abs=1e-12)
    assert "previous_task_*" in (Path("c") / "forgetting.md").read_text()

    # the accuracy matrix gathers the three reports: R[j, i] = task i after run j, and each task's forgetting
    matrix = pd.read_csv(Path("c") / "forgetting_chain.csv", index_col=0)
    tasks = ["pattern:a", "pattern:b", "pattern:c"]
    assert list(matrix.columns) == tasks and list(matrix.index) == [*tasks, "forgetting"]
    r_aa, r_bb, r_cc = after_of(a), after_of(b), after_of(c)
    r_ba = _rows(b, "previous_task_accuracy", "pattern:a")["after"]
    r_ca = _rows(c, "previous_task_accuracy", "pattern:a")["after"]
    r_cb = _rows(c, "previous_task_accuracy", "pattern:b")["after"]
    expected = [[r_aa, np.nan, np.nan], [r_ba, r_bb, np.nan], [r_ca, r_cb, r_cc],
                [max(r_aa, r_ba) - r_ca, r_bb - r_cb, np.nan]]
    np.testing.assert_allclose(matrix.to_numpy(), expected, atol=1e-12)
    assert (Path("c") / "forgetting_chain.png").stat().st_size > 1000
    assert list(pd.read_csv(Path("b") / "forgetting_chain.csv", index_col=0).columns) == tasks[:2]

    # an earlier run whose split no longer fits its data is left out with a warning; a missing splits.csv ends
    # the chain there
    splits = Path("a") / "splits.csv"
    text = splits.read_text()
    splits.write_text("\n".join(text.splitlines()[:-1]) + "\n")
    with pytest.warns(UserWarning, match="earlier task pattern:a left out"):
        assert [t.name for t in previous_tasks(task_chain(str(ckpt_c)))] == ["pattern:b", "pattern:c"]
    splits.unlink()
    with pytest.warns(UserWarning, match="splits.csv is missing"):
        assert [r.run_dir.name for r in task_chain(str(ckpt_c))] == ["b", "c"]
    splits.write_text(text)

    # a moved checkpoint ends the chain with a warning naming it
    shutil.move(str(ckpt_a), "moved.ckpt")
    with pytest.warns(UserWarning, match="chain of fine-tuning runs stops at"):
        assert [r.run_dir.name for r in task_chain(str(ckpt_c))] == ["b", "c"]
    assert task_chain("cornet_z") == []


def test_a_config_that_points_into_its_own_chain_is_refused(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    ckpt = run / "checkpoints" / "last.ckpt"
    ckpt.write_bytes(b"")
    (run / "splits.csv").write_text("image,split,label\n")
    (run / "config.yaml").write_text(yaml.safe_dump({"model": {"start_from": str(ckpt)},
                                                     "data": {"class_path": "neuroreg.data.PatternDataModule"}}))
    with pytest.raises(CheckpointError, match="loops back on itself"):
        task_chain(str(ckpt))


def test_the_start_cache_keeps_original_networks_apart(tmp_path):
    start, after = _net(4, 1), _net(6, 3)
    data = _test_split(5, 4)
    roots = [_net(5, 4), _net(5, 5)]
    cold = [forgetting_report(start, after, original_data=data, original_network=r, start_cache=tmp_path, **REPORT)
            for r in roots]
    assert len(list(tmp_path.glob("start_*.pt"))) == 2
    for root, first in zip(roots, cold):
        warm = forgetting_report(start, after, original_data=data, original_network=root, start_cache=tmp_path,
                                 **REPORT)
        assert [r["score"] for r in warm] == pytest.approx([r["score"] for r in first], abs=1e-12)
        assert _rows(warm, "original_accuracy", "original")["before"] == pytest.approx(
            _reference_accuracy(root, data)[0], abs=1e-12)


def _image_folder(root: Path, n_classes: int, per_class: int = 3, size: int = 40) -> Path:
    """``root/<class>/<i>.png``: pattern images, one class folder per pattern family."""
    from PIL import Image

    from neuroreg.data.patterns import pattern_image

    for c in range(n_classes):
        (root / f"class_{c}").mkdir(parents=True)
        for i in range(per_class):
            img = (pattern_image(c, size, seed=9, index=i).permute(1, 2, 0).numpy() * 255).astype("uint8")
            Image.fromarray(img).save(root / f"class_{c}" / f"{i}.png")
    return root


def test_original_data_uses_the_networks_own_evaluation_preprocessing(tmp_path):
    from neuroreg.errors import DataFormatError
    from neuroreg.cli.finetune import _original_dataset

    net = _net(4, 1)                                        # timm's test_resnet: 160 px, crop 0.95, mean/std 0.5
    data = _original_dataset(str(_image_folder(tmp_path / "orig", 3)), net)
    x, y = data[4]
    assert tuple(x.shape) == (3, 160, 160) and y == 1 and len(data) == 9
    assert float(x.min()) >= -1.0 - 1e-6 and float(x.max()) <= 1.0 + 1e-6      # normalised with mean = std = 0.5
    with pytest.raises(DataFormatError, match="5 classes but the network of the original task has 4 outputs"):
        _original_dataset(str(_image_folder(tmp_path / "five", 5)), net)


def test_a_chain_from_a_random_network_refuses_original_data_before_training(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    ckpt_a = _finetune(Path("a"), "cornet_z", 4, 1)
    orig = _image_folder(tmp_path / "orig", 3)
    args = ["--config", TINY, "--trainer.default_root_dir", "b", "--model.start_from", str(ckpt_a),
            "--forgetting.original_data", str(orig), *FAST]
    assert cli_main(args) == 4
    assert "initialised at random" in capsys.readouterr().err
    assert not Path("b/checkpoints").exists()               # stopped before the first step


@pytest.mark.slow
def test_the_original_task_is_scored_on_the_chains_first_network(tmp_path, monkeypatch):
    """Run a from the ImageNet network with original_data, run b from a's checkpoint with the same folder: b
    rebuilds the chain's first network, so its original accuracy before equals a's (the same network, the same
    images), and the sequence's backward transfer averages the original task with task a."""
    monkeypatch.chdir(tmp_path)
    orig = _image_folder(tmp_path / "orig", 3)
    extra = ["--forgetting.original_data", str(orig), "--data.init_args.model_name", "efficientnet_lite0_imagenet"]
    ckpt_a = _finetune(Path("a"), "efficientnet_lite0_imagenet", 4, 1, extra)
    _finetune(Path("b"), str(ckpt_a), 3, 2, extra)
    a, b = _report(Path("a")), _report(Path("b"))
    assert _rows(b, "original_accuracy", "original")["before"] == _rows(a, "original_accuracy", "original")["before"]
    bwt = next(r for r in b if r["metric"] == "backward_transfer" and r["dataset"] == "sequence")
    expected = np.mean([_rows(b, "previous_task_accuracy", "pattern:a")["change"],
                        _rows(b, "original_accuracy", "original")["change"]])
    assert bwt["n_tasks"] == 2 and bwt["score"] == pytest.approx(expected, abs=1e-12)


def test_runs_in_folders_of_the_same_name_keep_their_tasks_apart(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ckpt = _finetune(Path("x") / "run", "cornet_z", 4, 1)
    _finetune(Path("y") / "run", str(ckpt), 3, 2)
    first, second = _report(Path("x") / "run"), _report(Path("y") / "run")
    matrix = pd.read_csv(Path("y") / "run" / "forgetting_chain.csv", index_col=0)
    assert list(matrix.columns) == ["pattern:run", "pattern:run#2"]

    def after(rows, metric, dataset=None):
        return next(r["score"] for r in rows if r["metric"] == metric and r["stage"] == "after"
                    and (dataset is None or r["dataset"] == dataset))

    np.testing.assert_allclose(matrix.to_numpy()[:2],
                               [[after(first, "finetuned_head_accuracy"), np.nan],
                                [after(second, "previous_task_accuracy", "pattern:run"),
                                 after(second, "finetuned_head_accuracy")]], atol=1e-12)
