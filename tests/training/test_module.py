import numpy as np
import pytest
import torch
import lightning as L
from sklearn.metrics import top_k_accuracy_score

from conftest import make_tiny_net
from neuroreg.alignment import CKALoss, RSALoss
from neuroreg.errors import StimulusMismatchError, UnknownNameError
from neuroreg.scoring import cka
from neuroreg.training import BrainRegularizedModule, capture_outputs, topk_accuracy
from neuroreg.data import GratingsDataModule


def _trainer(tmp_path, steps, **kw):
    return L.Trainer(max_steps=steps, accelerator="cpu", devices=1, default_root_dir=str(tmp_path),
                     enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                     deterministic=True, **kw)


def _dm(brain, **kw):
    args = dict(num_classes=4, n_train=64, n_val=16, neural=brain, neural_batch_size=12, neural_holdout=0.25,
                batch_size=16, image_size=16, seed=0)
    args.update(kw)
    return GratingsDataModule(**args)


def _it_cka(model, brain, positions) -> float:
    from neuroreg.data.preprocessing import preprocessing_of

    model.eval()
    with torch.no_grad(), capture_outputs(model, {"IT": "IT"}) as acts:
        # the data module feeds images normalised with the model's contract; so does the reference
        model(preprocessing_of(model).normalize(brain.images_tensor()[positions]))
    return float(cka(acts["IT"].flatten(1), torch.from_numpy(brain.responses[positions]), debiased=True))


def test_alignment_raises_cka_and_task_alone_does_not(tmp_path, brain):
    dm = _dm(brain)
    dm.setup("fit")
    train_pos = dm.neural_train_positions
    start = _it_cka(make_tiny_net(), brain, train_pos)
    results = {}
    for weight in (0.0, 2.0):
        L.seed_everything(0)
        model = make_tiny_net()
        module = BrainRegularizedModule(model, [CKALoss("IT", brain, weight=weight)], optimizer="adamw", lr=3e-3,
                                        scheduler="none", weight_decay=0.0)
        _trainer(tmp_path / str(weight), 40, limit_val_batches=0, logger=False,
                 enable_checkpointing=False).fit(module, _dm(brain))
        results[weight] = _it_cka(model, brain, train_pos)
    assert results[2.0] > start + 0.15, (start, results)
    assert results[2.0] > results[0.0] + 0.15, (start, results)


def test_logs_task_alignment_and_heldout_cka_to_tensorboard(tmp_path, brain):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    module = BrainRegularizedModule(make_tiny_net(), [CKALoss("IT", brain), RSALoss("V1", brain, weight=0.5)],
                                    lr=0.01)
    trainer = _trainer(tmp_path, 4, log_every_n_steps=1, val_check_interval=4, enable_checkpointing=False)
    trainer.fit(module, _dm(brain))
    acc = EventAccumulator(trainer.logger.log_dir)
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    for tag in ("train/task_loss_step", "train/cka_IT_step", "train/rsa_V1_step", "train/acc1_step",
                "train/acc5_step", "val/acc1", "val/acc5", "val/cka_IT", "val/cka_V1"):
        assert tag in tags, sorted(tags)
    held = _it_cka(module.backbone, brain, _heldout(brain))
    assert acc.Scalars("val/cka_IT")[-1].value == pytest.approx(held, abs=1e-4)


def _heldout(brain):
    dm = _dm(brain)
    dm.setup("fit")
    return dm.neural_heldout_positions


def test_unknown_area_fails_at_construction(brain):
    with pytest.raises(UnknownNameError, match="area 'V4' is not an area or module of TinyNet"):
        BrainRegularizedModule(make_tiny_net(), [CKALoss("V4", brain)])
    module = BrainRegularizedModule(make_tiny_net(), [CKALoss("V4", brain)], areas={"V4": "V1"})
    assert module.area_modules == {"V4": "V1"}


def test_bad_data_fails_before_training(tmp_path, brain):
    with pytest.raises(ValueError, match="class-count mismatch: the model has 4 outputs but the data module has 6"):
        _trainer(tmp_path, 2).fit(BrainRegularizedModule(make_tiny_net()), _dm(brain, num_classes=6))
    with pytest.raises(ValueError, match="needs at least 4 neural stimuli per batch.*neural_batch_size=3"):
        _trainer(tmp_path, 2).fit(BrainRegularizedModule(make_tiny_net(), [CKALoss("IT", brain)]),
                                  _dm(brain, neural_batch_size=3))
    with pytest.raises(ValueError, match="need neural stimuli"):
        _trainer(tmp_path, 2).fit(BrainRegularizedModule(make_tiny_net(), [CKALoss("IT", brain)]),
                                  _dm(None))
    other = brain.take_stimuli(np.arange(30))
    with pytest.raises(StimulusMismatchError, match="10 of 40 neural stimuli have no row"):
        _trainer(tmp_path, 2).fit(BrainRegularizedModule(make_tiny_net(), [CKALoss("IT", other)]), _dm(brain))


def test_topk_accuracy_matches_sklearn():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(50, 7, generator=g)
    labels = torch.randint(0, 7, (50,), generator=g)
    for k in (1, 3, 5):
        ref = top_k_accuracy_score(labels.numpy(), logits.numpy(), k=k, labels=list(range(7)))
        assert float(topk_accuracy(logits, labels, k)) == pytest.approx(ref)
    assert float(topk_accuracy(logits[:, :3], labels % 3, 5)) == 1.0


def test_capture_outputs_keeps_gradient_and_removes_hooks():
    model = make_tiny_net()
    with capture_outputs(model, {"a": "IT"}) as acts:
        model(torch.rand(2, 3, 16, 16))
    assert acts["a"].shape == (2, 16, 4, 4) and acts["a"].requires_grad
    assert not model.IT._forward_hooks


def test_cosine_schedule_and_optimizers(tmp_path, brain):
    module = BrainRegularizedModule(make_tiny_net(), lr=0.1, warmup_steps=2, scheduler="cosine", min_lr_ratio=0.1)
    trainer = _trainer(tmp_path, 6, limit_val_batches=0, logger=False, enable_checkpointing=False)
    trainer.fit(module, _dm(brain))
    sched = trainer.lr_scheduler_configs[0].scheduler
    lrs = [0.1 * f(s) for f in sched.lr_lambdas for s in range(7)]
    np.testing.assert_allclose(lrs[:4], [0.05, 0.1, 0.1, 0.1 * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi / 4)))])
    assert lrs[6] == pytest.approx(0.01)
    assert trainer.optimizers[0].param_groups[1]["weight_decay"] == 0.0  # biases and norms
    with pytest.raises(ValueError, match="optimizer"):
        BrainRegularizedModule(make_tiny_net(), optimizer="lamb")


@pytest.mark.slow
def test_trains_stochastic_vone_model(tmp_path, brain):
    from neuroreg.finetune import build_model

    def run():
        L.seed_everything(0)
        backbone = build_model("vone_cornet_s", num_classes=4, image_size=32, simple_channels=16,
                               complex_channels=16, ksize=7)
        module = BrainRegularizedModule(backbone, [CKALoss("IT", brain, weight=1.0)], lr=0.01)
        trainer = _trainer(tmp_path, 2, limit_val_batches=1, val_check_interval=2, logger=False,
                           enable_checkpointing=False)
        trainer.fit(module, _dm(brain, image_size=32, batch_size=8, neural_batch_size=6, normalize=True,
                                model_name="vone_cornet_s"))
        return trainer, backbone

    trainer, a = run()
    assert torch.isfinite(trainer.callback_metrics["train/cka_IT"])
    assert torch.isfinite(trainer.callback_metrics["val/cka_IT"])
    _, b = run()
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k  # the VOneBlock noise is seeded: same seed, same weights
    x = torch.rand(2, 3, 32, 32)
    a.eval()
    assert not torch.equal(a(x), a(x))  # and it is stochastic (noise stays on in eval)
