"""The harmonization term inside BrainRegularizedModule: one forward pass, the release's batches, the recipe's
weight decay, mixed precision, and the tiny configuration through ``neuroreg train``."""

import copy
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F
import yaml

from conftest import make_tiny_net
from fixtures.clickme import write_clickme_shard
from neuroreg.alignment import HarmonizationLoss
from neuroreg.alignment.harmonization import harmonization_loss
from neuroreg.cli.main import main as neuroreg_main
from neuroreg.data import ClickMeDataModule, SalientPatternsDataModule
from neuroreg.errors import ShapeError
from neuroreg.training import BrainRegularizedModule

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SIZE = 24


def _batch(n: int = 8, seed: int = 0) -> dict:
    dm = SalientPatternsDataModule(n_train=n, n_val=n, batch_size=n, image_size=SIZE, map_fraction=0.5,
                                   normalize=False, seed=seed)
    return next(iter(dm.train_dataloader()))


def _module(net, weight: float = 1.0, **kw) -> BrainRegularizedModule:
    harm = None if weight is None else HarmonizationLoss(weight=weight, **kw)
    module = BrainRegularizedModule(net, harmonization=harm, label_smoothing=0.1)
    module.log = lambda *a, **k: None          # no trainer attached: logging is not under test here
    module.log_dict = lambda *a, **k: None
    return module.train()


def test_one_forward_pass_feeds_cross_entropy_and_saliency_and_batchnorm_updates_once():
    net = make_tiny_net()
    reference = copy.deepcopy(net).train()
    batch = _batch()
    calls = []
    net.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    _module(net).training_step(batch, 0).backward()
    assert calls == [8]
    bn, ref_bn = net.V1[1], reference.V1[1]
    reference(batch["image"])                  # one plain forward of the batch in training mode
    assert int(bn.num_batches_tracked) == 1
    assert torch.allclose(bn.running_mean, ref_bn.running_mean) and torch.allclose(bn.running_var, ref_bn.running_var)


def test_gradients_equal_the_released_loss_written_out():
    net = make_tiny_net()
    reference = copy.deepcopy(net).train()
    batch = _batch()
    _module(net, weight=0.7).training_step(batch, 0).backward()
    x = batch["image"].clone().requires_grad_(True)
    logits = reference(x)
    loss = F.cross_entropy(logits, batch["label"], label_smoothing=0.1) + \
        0.7 * harmonization_loss(logits, x, batch["label"], batch["heatmap"], batch["token"])
    loss.backward()
    for (name, p), q in zip(net.named_parameters(), reference.parameters()):
        assert torch.allclose(p.grad, q.grad, rtol=1e-5, atol=1e-7), name


def test_weight_zero_is_the_run_without_the_term():
    net, plain = make_tiny_net(), make_tiny_net()
    batch = _batch()
    calls = []
    net.register_forward_hook(lambda m, i, o: calls.append(i[0].requires_grad))
    with_zero = _module(net, weight=0.0).training_step(batch, 0)
    without = _module(plain, weight=None).training_step(batch, 0)
    assert calls == [False]                    # no saliency: the images need no gradient
    assert torch.equal(with_zero, without)


def test_release_tuple_order_and_one_hot_labels_equal_the_dict_batch():
    batch = _batch()
    as_dict = _module(make_tiny_net()).training_step(batch, 0)
    one_hot = F.one_hot(batch["label"], 4).float()
    as_tuple = _module(make_tiny_net()).training_step((batch["image"], batch["heatmap"], batch["token"], one_hot), 0)
    assert torch.allclose(as_dict, as_tuple)
    soft = one_hot * 0.9 + 0.025
    with pytest.raises(ValueError, match="not one-hot"):
        _module(make_tiny_net()).training_step((batch["image"], batch["heatmap"], batch["token"], soft), 0)
    with pytest.raises(TypeError, match="a batch must be"):
        _module(make_tiny_net()).training_step(tuple(batch.values()) + (batch["label"],), 0)


def test_batches_without_maps_or_with_maps_of_another_size_are_refused():
    batch = _batch()
    with pytest.raises(ValueError, match="needs human importance maps.*'image', 'label'"):
        _module(make_tiny_net()).training_step({"image": batch["image"], "label": batch["label"]}, 0)
    small = dict(batch, heatmap=batch["heatmap"][:, :12, :12])
    with pytest.raises(ShapeError, match=r"heatmap must be \(B, H, W\).*\(24, 24\)"):
        _module(make_tiny_net()).training_step(small, 0)


def test_noise_draws_repeat_the_batch_in_the_one_forward():
    batch = _batch()
    calls = []
    net = make_tiny_net()
    net.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    three = _module(net, noise_draws=3).training_step(batch, 0)
    one = _module(make_tiny_net()).training_step(batch, 0)
    assert calls == [24]
    # a deterministic network: three identical copies give the same loss (batch statistics included)
    assert torch.allclose(three, one, rtol=1e-5)


def test_weight_decay_exclude_norm_is_the_release_rule():
    net = make_tiny_net()
    net.pos_embed = torch.nn.Parameter(torch.zeros(1, 4))   # the release spares embeddings by name
    groups = {}
    for rule in ("bias_and_norm", "norm"):
        module = BrainRegularizedModule(net, weight_decay=1e-5, weight_decay_exclude=rule, scheduler="none")
        opt = module.configure_optimizers()
        names = {id(p): n for n, p in net.named_parameters()}
        groups[rule] = [sorted(names[id(p)] for p in g["params"]) for g in opt.param_groups]
        assert [g["weight_decay"] for g in opt.param_groups] == [1e-5, 0.0]
    assert groups["bias_and_norm"] == [["IT.0.weight", "V1.0.weight", "head.2.weight", "pos_embed"],
                                       ["IT.0.bias", "V1.0.bias", "V1.1.bias", "V1.1.weight", "head.2.bias"]]
    assert groups["norm"] == [["IT.0.bias", "IT.0.weight", "V1.0.bias", "V1.0.weight", "head.2.bias",
                               "head.2.weight"], ["V1.1.bias", "V1.1.weight", "pos_embed"]]
    with pytest.raises(ValueError, match="weight_decay_exclude must be one of"):
        BrainRegularizedModule(net, weight_decay_exclude="biases")


def test_sgd_weight_decay_is_the_release_l2_penalty():
    """SGD's weight_decay w equals adding w * sum(p**2) / 2 to the loss (tf.nn.l2_loss)."""
    torch.manual_seed(0)
    a, b = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    b.load_state_dict(a.state_dict())
    x = torch.randn(5, 3)
    opt_a = torch.optim.SGD(a.parameters(), lr=0.5, weight_decay=1e-2)
    opt_b = torch.optim.SGD(b.parameters(), lr=0.5)
    a(x).square().mean().backward()
    (b(x).square().mean() + 1e-2 * sum(p.square().sum() / 2 for p in b.parameters())).backward()
    opt_a.step(), opt_b.step()
    assert all(torch.allclose(p, q, atol=1e-7) for p, q in zip(a.parameters(), b.parameters()))


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed", "16-mixed"])
def test_fit_and_validate_on_cpu_log_the_term(tmp_path, precision):
    """16-mixed on CPU runs as bfloat16 autocast (Lightning's CPU mixed precision); CUDA float16 is a GPU test."""
    torch.manual_seed(0)
    net = make_tiny_net()
    before = copy.deepcopy(net.state_dict())
    module = BrainRegularizedModule(net, harmonization=HarmonizationLoss(), lr=0.05, scheduler="none")
    dm = SalientPatternsDataModule(n_train=32, n_val=16, batch_size=16, image_size=SIZE, map_fraction=0.5)
    trainer = L.Trainer(max_steps=2, accelerator="cpu", precision=precision, default_root_dir=str(tmp_path),
                        enable_progress_bar=False, enable_model_summary=False, logger=False,
                        enable_checkpointing=False, num_sanity_val_steps=0, val_check_interval=2)
    trainer.fit(module, datamodule=dm)
    metrics = trainer.callback_metrics
    for key in ("train/harmonization", "val/harmonization", "val/acc1"):
        assert key in metrics and torch.isfinite(metrics[key]), key
    assert float(metrics["train/harmonization_weight"]) == 1.0
    assert any(not torch.equal(before[k], v) for k, v in net.state_dict().items() if v.is_floating_point())


def test_stochastic_network_averages_noise_draws_under_mixed_precision(tmp_path):
    """A noisy front end (like the VOneBlock: global RNG, on in training and evaluation) with 3 draws, bf16."""
    torch.manual_seed(0)
    net = make_tiny_net(noise=0.5)
    calls = []
    net.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    module = BrainRegularizedModule(net, harmonization=HarmonizationLoss(noise_draws=3), lr=0.05, scheduler="none")
    dm = SalientPatternsDataModule(n_train=32, n_val=16, batch_size=16, image_size=SIZE)
    trainer = L.Trainer(max_steps=2, accelerator="cpu", precision="bf16-mixed", default_root_dir=str(tmp_path),
                        enable_progress_bar=False, enable_model_summary=False, logger=False,
                        enable_checkpointing=False, num_sanity_val_steps=0, val_check_interval=2)
    trainer.fit(module, datamodule=dm)
    # two training steps of 16 images x 3 draws; validation: the accuracy pass, then the saliency with 3 draws
    assert calls == [48, 48, 16, 48]
    metrics = trainer.callback_metrics
    assert torch.isfinite(metrics["train/harmonization"]) and torch.isfinite(metrics["val/harmonization"])


def test_fit_on_clickme_shards_in_the_release_format(tmp_path):
    """ClickMeDataModule's tuple batches (images, heatmaps, tokens, labels) train and validate the term."""
    write_clickme_shard(tmp_path / "train-0.tfrecords", [0, 1, 2, 3, 0, 1, 2, 3], seed=3)
    write_clickme_shard(tmp_path / "val-0.tfrecords", [2, 1, 0, 3], seed=4)
    dm = ClickMeDataModule(str(tmp_path), batch_size=4, image_size=SIZE, num_workers=0, num_classes=4, seed=0)
    torch.manual_seed(0)
    module = BrainRegularizedModule(make_tiny_net(), harmonization=HarmonizationLoss(), lr=0.05, scheduler="none")
    trainer = L.Trainer(max_steps=2, accelerator="cpu", default_root_dir=str(tmp_path), enable_progress_bar=False,
                        enable_model_summary=False, logger=False, enable_checkpointing=False,
                        num_sanity_val_steps=0, val_check_interval=2)
    trainer.fit(module, datamodule=dm)
    metrics = trainer.callback_metrics
    assert torch.isfinite(metrics["train/harmonization"]) and torch.isfinite(metrics["val/harmonization"])
    assert "val/acc1" in metrics


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fit_under_float16_mixed_precision_on_gpu(tmp_path):
    torch.manual_seed(0)
    module = BrainRegularizedModule(make_tiny_net(), harmonization=HarmonizationLoss(), lr=0.05, scheduler="none")
    dm = SalientPatternsDataModule(n_train=64, n_val=32, batch_size=16, image_size=32, map_fraction=0.5)
    trainer = L.Trainer(max_steps=4, accelerator="gpu", devices=1, precision="16-mixed",
                        default_root_dir=str(tmp_path), enable_progress_bar=False, logger=False,
                        enable_checkpointing=False, num_sanity_val_steps=0, val_check_interval=4)
    trainer.fit(module, datamodule=dm)
    metrics = trainer.callback_metrics
    assert torch.isfinite(metrics["train/harmonization"]) and torch.isfinite(metrics["val/harmonization"])
    assert all(torch.isfinite(p).all() for p in module.parameters())


def test_configs_load_and_name_the_term():
    for name in ("train_harmonizer_tiny.yaml", "train_harmonizer_imagenet.yaml"):
        cfg = yaml.safe_load((CONFIGS / name).read_text())
        harm = cfg["model"]["harmonization"]
        assert harm["class_path"] == "neuroreg.alignment.HarmonizationLoss"
        assert harm["init_args"]["weight"] == 1.0 and cfg["model"]["label_smoothing"] == 0.1
        assert cfg["model"]["weight_decay"] == 1e-5 and cfg["model"]["weight_decay_exclude"] == "norm"


@pytest.mark.slow
def test_tiny_config_trains_end_to_end_through_neuroreg_train(tmp_path):
    root = tmp_path / "run"
    args = ["train", "--config", str(CONFIGS / "train_harmonizer_tiny.yaml"), "--trainer.max_steps", "3",
            "--trainer.default_root_dir", str(root), "--trainer.enable_progress_bar", "false",
            "--trainer.check_val_every_n_epoch", "1", "--data.init_args.n_train", "96", "--data.init_args.n_val", "32"]
    assert neuroreg_main(args) == 0
    ckpt = torch.load(root / "checkpoints" / "last.ckpt", weights_only=False, map_location="cpu")
    assert ckpt["global_step"] == 3
    assert ckpt["hyper_parameters"]["weight_decay_exclude"] == "norm"
