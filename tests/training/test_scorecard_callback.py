import json
import logging
import random
import re

import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from neuroreg.scorecard.card import Scorecard
from neuroreg.training import BrainRegularizedModule, ScorecardCallback
from neuroreg.data import GratingsDataModule
from neuroreg.training.callbacks import preserve_training_state, read_curves

from conftest import make_tiny_net


def test_preserve_training_state_restores_rng_and_modes():
    net = make_tiny_net(noise=0.1)
    net.train()
    net.V1[1].eval()                         # a mixed state must come back per submodule
    torch.manual_seed(3), np.random.seed(3), random.seed(3)
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(3), np.random.seed(3), random.seed(3)
    with preserve_training_state(net):
        net.eval()
        torch.rand(100), np.random.rand(100), random.random()
        assert not any(p.requires_grad for p in net.parameters())
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(got[0], expected[0]) and np.array_equal(got[1], expected[1]) and got[2] == expected[2]
    assert net.training and net.IT.training and not net.V1[1].training and net.V1[0].training
    assert all(p.requires_grad for p in net.parameters())


def _fit(tmp_path, with_callback: bool):
    L.seed_everything(0, verbose=False)
    net = make_tiny_net(noise=0.2)          # stochastic: draws from the global RNG in train and eval
    dm = GratingsDataModule(num_classes=4, n_train=48, n_val=16, batch_size=16, image_size=16, normalize=True,
                            model_name=None, seed=0)
    dm.use_model(net)
    cb = ScorecardCallback(every_n_steps=2, every_n_epochs=1, brain_sets=[], attacks=["pgd"],
                           eps=[4 / 255], periodic_steps=2, periodic_max_images=8, max_images=8, batch_size=8,
                           model_name="tiny", final=False)   # the final card runs after the last step
    trainer = L.Trainer(max_steps=6, accelerator="cpu", deterministic=True, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0, default_root_dir=str(tmp_path),
                        callbacks=[cb] if with_callback else [])
    module = BrainRegularizedModule(net, lr=0.05, scheduler="none")
    trainer.fit(module, datamodule=dm)
    return {k: v.clone() for k, v in net.state_dict().items()}, cb


def test_callback_does_not_change_training(tmp_path):
    plain, _ = _fit(tmp_path / "a", with_callback=False)
    scored, cb = _fit(tmp_path / "b", with_callback=True)
    steps = sorted({r["step"] for r in cb.curves_})
    assert steps == [2, 3, 4, 6]            # every 2 steps and after each 3-batch epoch: it really ran
    assert any(r["tag"] == "robust/pgd_eps4" for r in cb.curves_)
    assert (tmp_path / "b" / "scorecard" / "curves.csv").is_file()
    for k in plain:
        assert torch.equal(plain[k], scored[k]), k


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_end_of_run_card_says_each_stage_and_its_cost(tmp_path):
    net = make_tiny_net(noise=0.0)
    dm = GratingsDataModule(num_classes=4, n_train=32, n_val=8, batch_size=16, image_size=16, normalize=True,
                            model_name=None, seed=0)
    dm.use_model(net)
    cb = ScorecardCallback(every_n_epochs=0, every_n_steps=0, brain_sets=[], attacks=["pgd"], eps=[4 / 255],
                           max_images=8, batch_size=8, model_name="tiny",
                           final_attack_kwargs={"pgd_steps": 2, "sanity": False})
    trainer = L.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        default_root_dir=str(tmp_path), callbacks=[cb])
    lines = _Lines()
    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")   # where rank_zero_info writes
    logger.addHandler(lines)
    try:
        trainer.fit(BrainRegularizedModule(net, lr=0.05, scheduler="none"), datamodule=dm)
    finally:
        logger.removeHandler(lines)
    said = [line for line in lines.lines if line.startswith("scorecard:")]
    expected = [r"scorecard: brain sets at the model's input size \.\.\.$",
                r"scorecard: brain sets at the model's input size done in \d+\.\d s$",
                r"scorecard: \[1/2\] tiny: accuracy \.\.\.$",
                r"scorecard: \[1/2\] tiny: accuracy done in \d+\.\d s",
                r"scorecard: \[2/2\] tiny: attacks \(pgd\) \.\.\.$",
                r"scorecard: \[2/2\] tiny: attacks done in \d+\.\d s",
                r"scorecard: report written to .*scorecard \.\.\.$",
                r"scorecard: report written to .*scorecard done in \d+\.\d s$",
                r"scorecard: written to .*; the end-of-run scorecard took \d+\.\d s, [\d.e+]+ x the \d+\.\d s "
                r"of training \(periodic evaluations inside it: 0\.0 s\)"]
    assert len(said) == len(expected), said
    for line, pattern in zip(said, expected):
        assert re.match(pattern, line), (pattern, line)
    assert cb.cost_["scorecard_s"] > 0 and cb.cost_["training_s"] > 0 and cb.cost_["periodic_s"] == 0.0
    # the evaluation logger is as it was: nothing forwarded after the run, propagation back on
    assert not logging.getLogger("neuroreg.scorecard.evaluation").handlers
    assert logging.getLogger("neuroreg.scorecard.evaluation").propagate
    saved = json.loads((tmp_path / "scorecard" / "scorecard_meta.json").read_text())
    assert saved["sections"] == ["accuracy", "attacks"]
    assert saved["ran_on"]["attacks"]["tiny"].endswith("; no sanity checks")   # it says what it left out


def test_final_sections_choose_the_sections_of_the_end_of_run_card(tmp_path):
    net = make_tiny_net(noise=0.0)
    dm = GratingsDataModule(num_classes=4, n_train=16, n_val=8, batch_size=16, image_size=16, normalize=True,
                            model_name=None, seed=0)
    dm.use_model(net)
    cb = ScorecardCallback(every_n_epochs=0, every_n_steps=0, brain_sets=[], attacks=["pgd"], max_images=8,
                           batch_size=8, final_sections=["accuracy"])
    trainer = L.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        default_root_dir=str(tmp_path), callbacks=[cb])
    trainer.fit(BrainRegularizedModule(net, lr=0.05, scheduler="none"), datamodule=dm)
    card = Scorecard.load(tmp_path)
    assert list(card.sections) == ["accuracy"]          # attacks were asked for, but not in the final card
    assert card.accuracy.filter(metric="top1")[0]["n_images"] == 8


def test_rejects_bad_options():
    with pytest.raises(ValueError, match="every_n_steps must be >= 0"):
        ScorecardCallback(every_n_steps=-1)
    with pytest.raises(ValueError, match="norm must be 'Linf' or 'L2'; got 'Linf2'"):
        ScorecardCallback(norm="Linf2")
    with pytest.raises(ValueError, match=r"final_sections must be among \['accuracy', .*\]; got \['acuracy'\]"):
        ScorecardCallback(final_sections=["accuracy", "acuracy"])


@pytest.mark.slow
def test_tiny_cli_run_leaves_scorecard_and_tensorboard_curves(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from neuroreg.cli.main import main as neuroreg_main
    from test_cli import TINY

    def train(name):
        root = tmp_path / name
        args = ["train", "--config", TINY, "--trainer.max_steps", "4", "--trainer.default_root_dir", str(root),
                "--trainer.enable_progress_bar", "false", "--trainer.num_sanity_val_steps", "0",
                "--data.init_args.n_train", "32", "--data.init_args.n_val", "16",
                "--data.init_args.neural_batch_size", "8", "--data.init_args.batch_size", "16",
                "--scorecard.every_n_epochs", "0", "--scorecard.every_n_steps", "2",
                "--scorecard.periodic_max_images", "16", "--scorecard.periodic_steps", "2",
                "--scorecard.periodic_max_layers", "2", "--scorecard.max_layers", "3", "--scorecard.max_images", "16",
                "--scorecard.eps", "[0.0156862745]"]
        assert neuroreg_main(args) == 0
        return root

    root = train("w1")
    rows = json.loads((root / "scorecard" / "scorecard.json").read_text())
    sections = {r["section"] for r in rows}
    assert {"accuracy", "attacks", "brain", "curves"} <= sections
    assert any(r["section"] == "brain" and r["metric"] == "crsa" and r.get("rdm_set") == "monkey_IT" for r in rows)
    events = EventAccumulator(str(next((root / "lightning_logs").glob("version_*"))))
    events.Reload()
    tags = events.Tags()["scalars"]
    for tag in ("brain/kriegeskorte92/monkey_IT/crsa", "robust/pgd_eps4", "clean/top1"):
        assert [e.step for e in events.Scalars(tag)] == [2, 4], tag
        assert all(np.isfinite(e.value) for e in events.Scalars(tag))
    assert "final/brain/kriegeskorte92/monkey_IT/crsa" in tags
    curves = read_curves(root)
    assert {(r["step"], r["tag"]) for r in curves} >= {(2, "robust/pgd_eps4"), (4, "robust/pgd_eps4")}
    card = Scorecard.load(root)
    assert card.models == ["w1"] and len(card.sections["curves"]) == len(curves)


def test_evaluate_run_compares_run_folders(tmp_path, capsys):
    from neuroreg.cli.main import main as neuroreg_main

    for name, lr in (("w0", 0.05), ("w1", 0.2)):
        L.seed_everything(0, verbose=False)
        net = make_tiny_net()
        dm = GratingsDataModule(num_classes=4, n_train=32, n_val=16, batch_size=16, image_size=16, seed=0).use_model(net)
        cb = ScorecardCallback(every_n_steps=1, every_n_epochs=0, brain_sets=[], attacks=[], periodic_attack=None,
                               batch_size=16)
        L.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                  enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                  limit_val_batches=0, default_root_dir=str(tmp_path / name), callbacks=[cb]).fit(
            BrainRegularizedModule(net, lr=lr, scheduler="none"), datamodule=dm)
    out = tmp_path / "cmp"
    assert neuroreg_main(["evaluate", "--run", str(tmp_path / "w0"), str(tmp_path / "w1"), "--out", str(out)]) == 0
    summary = __import__("pandas").read_csv(out / "summary.csv")
    assert summary["model"].tolist() == ["w0", "w1"]
    assert (out / "curves.png").is_file()
    card = Scorecard.load(out)
    for name in ("w0", "w1"):
        own = read_curves(tmp_path / name)
        assert [r["step"] for r in own if r["tag"] == "clean/top1"] == [1, 2]
        got = card.sections["curves"].filter(model=name)
        assert sorted((r["step"], r["metric"], r["score"]) for r in got) == \
            sorted((r["step"], r["tag"], r["value"]) for r in own)
        final = Scorecard.load(tmp_path / name).sections["accuracy"].filter(metric="top1")[0]["score"]
        assert summary.set_index("model").loc[name, "clean_top1"] == pytest.approx(final)
    assert neuroreg_main(["evaluate"]) == 2
    assert "give --model NAME" in capsys.readouterr().err


def test_validation_images_reach_the_scorecard_in_zero_one(tmp_path):
    # the data module normalises with the model's mean/std; the scorecard must see the raw [0, 1] images
    from types import SimpleNamespace

    from neuroreg.data import GratingsDataModule, GratingsDataset

    dm = GratingsDataModule(num_classes=4, n_train=8, n_val=8, batch_size=4, image_size=32, model_name="cornet_z",
                            seed=0)
    dm.setup("fit")
    assert dm.mean_std is not None
    images = ScorecardCallback(seed=0)._task_data(SimpleNamespace(datamodule=dm), None)
    raw = GratingsDataset(8, 4, 32, seed=1)
    for i in (0, 5):
        x, y = images[i]
        ref, ref_y = raw[i]
        assert y == ref_y and float(x.min()) >= 0.0 and float(x.max()) <= 1.0
        torch.testing.assert_close(x, ref.clamp(0, 1), atol=1e-5, rtol=0)


def _auto_fit(tmp_path, budget: float, max_steps: int):
    L.seed_everything(0, verbose=False)
    net = make_tiny_net()
    dm = GratingsDataModule(num_classes=4, n_train=48, n_val=16, batch_size=16, image_size=16, normalize=True,
                            model_name=None, seed=0).use_model(net)
    cb = ScorecardCallback(brain_sets=[], attacks=[], periodic_max_images=8, periodic_steps=5,
                           periodic_budget=budget, batch_size=8, final=False)
    L.Trainer(max_steps=max_steps, accelerator="cpu", logger=False, enable_checkpointing=False,
              enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
              default_root_dir=str(tmp_path), callbacks=[cb]).fit(BrainRegularizedModule(net, lr=0.05,
                                                                                        scheduler="none"), dm)
    return cb


@pytest.mark.parametrize("budget, epochs", [(0.5, 2), (0.25, 4)])
def test_default_interval_from_the_cost_estimate(tmp_path, budget, epochs):
    # By hand: one periodic evaluation = 8 images x 16 x 16 px x (accuracy + clean + 5-step PGD: 2 + 16 passes)
    # = 36,864 pixel-passes (no brain set); a training batch = 3 x 16 x 256 = 12,288; 3 batches per epoch.
    # Budget 0.5: 36,864 / (0.5 x 12,288) = 6 batches = 2 epochs; budget 0.25: 12 batches = 4 epochs.
    cb = _auto_fit(tmp_path, budget, max_steps=12)
    assert cb.auto_interval and cb.interval_ == (epochs, 0)
    assert sorted({r["step"] for r in cb.curves_}) == list(range(3 * epochs, 13, 3 * epochs))


def test_explicit_interval_overrides_the_rule():
    cb = ScorecardCallback(every_n_epochs=0)
    assert not cb.auto_interval
    with pytest.raises(ValueError, match=r"periodic_budget must be a fraction in \(0, 1\]; got 1.5"):
        ScorecardCallback(periodic_budget=1.5)


def test_prepared_inputs_give_the_scores_of_the_raw_inputs(tmp_path):
    # The periodic evaluation reads brain stimuli resized once and validation images read once; its numbers
    # must be those of neuroreg.scorecard.evaluation on the bundled set and the validation data set as they are.
    from types import SimpleNamespace

    from neuroreg.scorecard.evaluation import evaluate
    from neuroreg.training.callbacks.scorecard_inputs import ZeroOneImages

    net = make_tiny_net()
    net.pretrained_cfg = {"input_size": (3, 64, 64)}    # the 175 px stimuli are resized to the model's 64 px
    dm = GratingsDataModule(num_classes=4, n_train=8, n_val=12, batch_size=4, image_size=16, seed=0).use_model(net)
    dm.setup("fit")
    cb = ScorecardCallback(periodic_max_images=None, periodic_max_layers=2, batch_size=8, model_name="m")
    trainer = SimpleNamespace(datamodule=dm, default_root_dir=str(tmp_path))
    module = BrainRegularizedModule(net, lr=0.05, scheduler="none")
    cards = [cb._evaluate(trainer, module, periodic=True) for _ in range(2)]   # the second reuses the inputs
    assert isinstance(cb._task_cache, tuple) and cb._brain_cache[0].images.shape == (92, 3, 64, 64)
    ref = evaluate({"m": net}, ZeroOneImages(dm._val, dm.mean_std), brain_sets=["kriegeskorte92"],
                   sections=["accuracy", "brain", "attacks"], attacks=["pgd"], eps=[4 / 255], max_layers=2,
                   attack_kwargs={"pgd_steps": 5, "sanity": False, "progress": False, "n_draws": 1, "eot_iter": 2},
                   batch_size=8, seed=0, progress=False)
    for card in cards:
        for section in ("accuracy", "brain", "attacks"):
            got = sorted((r["metric"], str(r.get("layer")), str(r.get("rdm")), r["split"], r["score"])
                         for r in card.sections[section])
            want = sorted((r["metric"], str(r.get("layer")), str(r.get("rdm")), r["split"], r["score"])
                          for r in ref.sections[section])
            assert got == want, section
