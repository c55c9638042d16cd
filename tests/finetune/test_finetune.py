import copy

import lightning as L
import pytest
import torch
from finetune_layouts import make_eurosat, make_isic

from neuroreg.scoring import cka
from neuroreg.data import EuroSATDataModule, ISIC2019DataModule, PatternDataModule
from neuroreg.finetune import FinetuneModule
from neuroreg.finetune.finetune import trainable_parameter_names
from neuroreg.finetune.forgetting import forgetting_report, with_head_of

DATA = dict(batch_size=4, image_size=32, num_workers=0, model_name="test_resnet")


def _fit(module, dm, steps: int, root) -> L.Trainer:
    trainer = L.Trainer(max_steps=steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        limit_val_batches=2, default_root_dir=str(root))
    trainer.fit(module, datamodule=dm)
    return trainer


def _body(model) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("fc.")}


def _changed(a: dict, b: dict) -> list[str]:
    return [k for k in a if not torch.equal(a[k], b[k])]


@pytest.fixture(scope="module")
def eurosat(tmp_path_factory):
    return make_eurosat(tmp_path_factory.mktemp("eurosat"), per_class=5)


@pytest.mark.parametrize("strategy", ["full", "linear_probe", "last_k", "lp_ft", "l2_sp"])
def test_every_strategy_trains_on_eurosat_layout(eurosat, tmp_path, strategy):
    dm = EuroSATDataModule(str(eurosat), val_fraction=0.2, test_fraction=0.2, **DATA)
    module = FinetuneModule("test_resnet", num_classes=dm.num_classes, strategy=strategy, lp_steps=2, lr=1e-2)
    start = _body(module.start_model())
    _fit(module, dm, 4, tmp_path)
    changed = _changed(start, _body(module.backbone))
    assert module.backbone.fc.out_features == 10 and (tmp_path / "splits.csv").is_file()
    if strategy == "linear_probe":
        assert changed == []                      # weights and BatchNorm running statistics untouched
    elif strategy == "last_k":
        assert changed and all(k.startswith("layer4.") for k in changed)
    else:
        assert any(k.startswith("conv1.") for k in changed)


def test_last_k_unfreezes_areas_from_the_top():
    model = FinetuneModule("test_resnet", num_classes=3).backbone
    names = trainable_parameter_names(model, "last_k", last_k=2)
    assert any(n.startswith("layer3.") for n in names) and any(n.startswith("layer4.") for n in names)
    assert not any(n.startswith(("layer2.", "layer1.", "conv1", "bn1")) for n in names)
    assert {"fc.weight", "fc.bias"} <= names
    assert trainable_parameter_names(model, "linear_probe") == {"fc.weight", "fc.bias"}
    with pytest.raises(ValueError, match=r"last_k must be in \[1, 4\]"):
        trainable_parameter_names(model, "last_k", last_k=5)


def test_lp_ft_keeps_the_backbone_during_the_probe_phase(tmp_path):
    dm = PatternDataModule(n_images=60, **DATA)
    module = FinetuneModule("test_resnet", num_classes=6, strategy="lp_ft", lp_steps=3, lr=1e-2)
    start = _body(module.start_model())
    _fit(module, dm, 3, tmp_path)
    assert _changed(start, _body(module.backbone)) == []
    _fit(module, dm, 5, tmp_path)                # continues past lp_steps: now everything trains
    assert any(k.startswith("conv1.") for k in _changed(start, _body(module.backbone)))


def test_l2_sp_penalty_is_the_squared_distance_to_the_start(tmp_path):
    dm = PatternDataModule(n_images=60, **DATA)
    module = FinetuneModule("test_resnet", num_classes=6, strategy="l2_sp", lr=1e-2)
    assert float(module._l2_sp().detach()) == 0.0
    _fit(module, dm, 2, tmp_path)
    start = dict(module.start_model().named_parameters())
    expected = sum(float((p.detach() - start[n]).pow(2).sum()) for n, p in module.backbone.named_parameters()
                   if not n.startswith("fc."))
    assert expected > 0
    assert float(module._l2_sp().detach()) == pytest.approx(expected, rel=1e-5)
    groups = module.configure_optimizers()
    opt = groups["optimizer"] if isinstance(groups, dict) else groups
    assert opt.param_groups[0]["weight_decay"] == 0.0 and opt.param_groups[-1]["weight_decay"] == 0.01


def test_isic_class_weights_reach_the_loss(tmp_path):
    info = make_isic(tmp_path / "isic")
    dm = ISIC2019DataModule(str(info["root"]), **DATA)
    module = FinetuneModule("test_resnet", num_classes=dm.num_classes)
    _fit(module, dm, 1, tmp_path)
    w = dm.loss_weights()
    assert torch.equal(module._class_weights, w)
    logits, y = torch.randn(6, 8), torch.tensor([0, 1, 2, 3, 4, 5])
    per = -torch.log_softmax(logits, 1)[torch.arange(6), y]
    expected = (w[y] * per).sum() / w[y].sum()
    assert float(module.task_loss(logits, y)) == pytest.approx(float(expected), rel=1e-6)


def _report(before, after, **kw):
    return forgetting_report(before, after, probe_sets=["kriegeskorte92"], reference=None, image_size=32,
                             batch_size=46, **kw)


def test_linear_probe_report_shows_no_drift_and_full_does(tmp_path):
    dm = PatternDataModule(n_images=60, **DATA)
    probe = FinetuneModule("test_resnet", num_classes=6, strategy="linear_probe", lr=1e-2)
    _fit(probe, dm, 3, tmp_path)
    table = _report(probe.start_model(), probe.backbone, task_data=dm)
    drift = table.filter(metric="cka_to_start").to_pandas()
    assert list(drift["layer"]) == ["V1", "V2", "V4", "IT"]
    assert (drift["score"] == 1.0).all()
    crsa_change = table.filter(metric="crsa", stage="change").to_pandas()["score"]
    assert len(crsa_change) == 3 and (crsa_change == 0.0).all()
    task = table.filter(metric="task_accuracy").to_pandas().set_index("stage")["score"]
    assert task["change"] == pytest.approx(task["after"] - task["before"])

    full = FinetuneModule("test_resnet", num_classes=6, strategy="full", lr=1e-2)
    _fit(full, dm, 3, tmp_path)
    drift = _report(full.start_model(), full.backbone).filter(metric="cka_to_start").to_pandas()
    assert (drift["score"] < 1.0 - 1e-6).all()


def test_report_drift_is_scoring_cka_and_original_accuracy_uses_the_start_head():
    torch.manual_seed(0)
    before = FinetuneModule("test_resnet", num_classes=6).start_model()
    after = copy.deepcopy(before)
    with torch.no_grad():
        after.layer4[0].downsample[1].weight.mul_(-1.0)
    after.reset_classifier(6)
    images = torch.rand(24, 3, 32, 32)
    labels = torch.arange(24) % 5
    data = torch.utils.data.TensorDataset(images, labels)
    table = _report(before, after, original_data=data)
    drift = table.filter(metric="cka_to_start").to_pandas().set_index("layer")["score"]
    assert drift["V1"] == 1.0 and drift["IT"] < 1.0
    from neuroreg.brain import load_bundled
    from neuroreg.features.extraction import extract
    from neuroreg.finetune.forgetting import model_preprocess
    x = load_bundled("kriegeskorte92").images_tensor()
    tf = model_preprocess(before, 32)
    fb = extract(before, x, {"IT": "layer4"}, transform=tf, progress=False)["IT"].flatten(1).double()
    fa = extract(after, x, {"IT": "layer4"}, transform=tf, progress=False)["IT"].flatten(1).double()
    assert drift["IT"] == pytest.approx(float(cka(fb, fa, debiased=True)), abs=1e-12)
    orig = table.filter(metric="original_accuracy").to_pandas().set_index("stage")["score"]
    head_after = with_head_of(after, before).eval()
    with torch.no_grad():
        acc_after = float((head_after(images).argmax(1) == labels).float().mean())
        acc_before = float((before.eval()(images).argmax(1) == labels).float().mean())
    assert orig["before"] == pytest.approx(acc_before) and orig["after"] == pytest.approx(acc_after)
    bwt = table.filter(metric="backward_transfer").to_pandas()["score"]
    assert float(bwt.iloc[0]) == pytest.approx(acc_after - acc_before)


def test_start_from_a_checkpoint_continues_the_chain(tmp_path):
    dm = PatternDataModule(n_images=60, **DATA)
    first = FinetuneModule("test_resnet", num_classes=6, strategy="full", lr=1e-2)
    trainer = _fit(first, dm, 2, tmp_path)
    ckpt = tmp_path / "first.ckpt"
    trainer.save_checkpoint(ckpt)
    second = FinetuneModule(str(ckpt), num_classes=4)
    start = second.start_model()
    assert start.fc.out_features == 6
    for k, v in first.backbone.state_dict().items():
        assert torch.equal(v, start.state_dict()[k]), k
    assert second.hparams.arch == "test_resnet" and second.backbone.fc.out_features == 4


def test_bad_strategy_and_missing_checkpoint_are_clear():
    with pytest.raises(ValueError, match="strategy must be one of"):
        FinetuneModule("test_resnet", num_classes=3, strategy="partial")
    from neuroreg.errors import CheckpointError, UnknownNameError
    with pytest.raises(CheckpointError, match="does not exist"):
        FinetuneModule("runs/none/checkpoints/last.ckpt", num_classes=3)
    with pytest.raises(UnknownNameError, match="unknown model 'resnet1x'"):
        FinetuneModule("resnet1x", num_classes=3)


def test_stochastic_front_end_gets_the_same_noise_before_and_after():
    from neuroreg.models import VOneNet
    torch.manual_seed(0)
    model = VOneNet("resnet18", num_classes=5, image_size=32, simple_channels=16, complex_channels=16)
    assert model.vone_block.noise_mode is not None
    table = _report(model, copy.deepcopy(model))
    drift = table.filter(metric="cka_to_start").to_pandas()
    assert len(drift) == 4 and (drift["score"] == 1.0).all()


@pytest.mark.slow
def test_retention_from_the_probe_pass_equals_a_separate_pass():
    torch.manual_seed(0)
    before = FinetuneModule("test_resnet", num_classes=6).start_model()
    after = copy.deepcopy(before)
    with torch.no_grad():
        after.layer3[0].conv1.weight.add_(0.1 * torch.randn_like(after.layer3[0].conv1.weight))
    kw = dict(image_size=32, batch_size=46, layers={"IT": "layer4"})
    reused = forgetting_report(before, after, probe_sets=["kriegeskorte92"], **kw).filter(metric="retention_accuracy")
    separate = forgetting_report(before, after, probe_sets=[], **kw).filter(metric="retention_accuracy")
    assert len(reused) == 6
    assert [r["score"] for r in reused] == pytest.approx([r["score"] for r in separate], abs=1e-12)


@pytest.mark.slow
def test_simulated_voxels_give_versa_and_hierarchy_rows_through_compare_factortopy():
    before = FinetuneModule("test_resnet", num_classes=6).start_model()
    table = _report(before, copy.deepcopy(before), brain="simulate", factortopy={"max_epochs": 3})
    versa_rows = table.filter(metric="versa").to_pandas()
    assert set(versa_rows["region"]) == {"V1", "V2V3", "OPA", "EBA"}
    slope = table.filter(metric="hierarchy_slope").to_pandas().set_index("stage")["score"]
    assert slope["before"] == slope["after"] and slope["change"] == 0.0      # same network, same seed
    assert (versa_rows[versa_rows.stage == "change"]["score"] == 0.0).all()


def test_probe_in_the_row_span_equals_logistic_regression_on_all_features():
    # fewer images than features, as the retention probe (92 images, 1280 features): the probe solved in the
    # span of the training rows must give scikit-learn's full-dimensional optimum (converged far tighter)
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from neuroreg.finetune.forgetting_probes import logistic_probe

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 400)) * rng.uniform(0.1, 3.0, size=400)
    y = (x[:, 0] > 0).astype(int) + (x[:, 1] > 1.0).astype(int)          # three classes
    test = rng.normal(size=(30, 400)) * rng.uniform(0.1, 3.0, size=400)
    ours = logistic_probe(0).fit(x, y)
    reference = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, tol=1e-12, max_iter=100_000)).fit(x, y)
    assert ours[-1].coef_.shape[1] < 60                                     # solved in <= n dimensions
    np.testing.assert_allclose(ours.decision_function(test), reference.decision_function(test), atol=2e-3)
    assert (ours.predict(test) == reference.predict(test)).all()


def test_one_read_of_the_test_images_gives_each_network_its_own_pass():
    # _embed_models runs both networks on each batch; every network must see exactly what a pass of its own
    # (seeded the same way) gives, noise of a stochastic front end included
    from neuroreg.models import VOneNet
    from neuroreg.finetune.forgetting_passes import embed_models

    torch.manual_seed(0)
    first = VOneNet("resnet18", num_classes=5, image_size=32, simple_channels=16, complex_channels=16)
    second = copy.deepcopy(first)
    with torch.no_grad():
        second.backbone.fc.weight.mul_(-1.0)
    images = torch.rand(10, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    data = torch.utils.data.TensorDataset(images, torch.arange(10) % 5)
    (_, logits), labels = embed_models([first, second], data, batch_size=4, device=torch.device("cpu"), seed=3)
    for model, got in zip((first, second), logits):
        model.eval()
        torch.manual_seed(3)
        with torch.no_grad():
            expected = torch.cat([model(images[i:i + 4]) for i in range(0, 10, 4)])
        assert torch.equal(torch.as_tensor(got), expected)
    assert labels.tolist() == (torch.arange(10) % 5).tolist()
