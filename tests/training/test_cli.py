from pathlib import Path

import pytest
import torch
import yaml

from neuroreg.cli.main import main as neuroreg_main
from neuroreg.cli.train import cli_main

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
TINY = str(CONFIGS / "train_tiny_cornet_z.yaml")
FAST = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--trainer.num_sanity_val_steps", "0", "--data.init_args.n_train", "64", "--data.init_args.n_val", "32",
        "--data.init_args.neural_batch_size", "8", "--data.init_args.batch_size", "16", "--scorecard.enabled", "false"]


def test_tiny_config_trains_checkpoints_and_resumes(tmp_path):
    root = tmp_path / "run"
    args = ["--config", TINY, "--trainer.max_steps", "2", "--trainer.default_root_dir", str(root), *FAST]
    assert neuroreg_main(["train", *args]) == 0
    last = root / "checkpoints" / "last.ckpt"
    assert last.is_file()
    assert torch.load(last, weights_only=False, map_location="cpu")["global_step"] == 2
    assert cli_main(["--config", TINY, "--trainer.max_steps", "4", "--trainer.default_root_dir", str(root),
                     "--ckpt_path", "last", *FAST]) == 0
    ckpt = torch.load(last, weights_only=False, map_location="cpu")
    assert ckpt["global_step"] == 4 and "neuroreg_rng" in ckpt
    assert any(k.startswith("backbone.IT.") for k in ckpt["state_dict"])
    events = list((root / "lightning_logs").rglob("events.out.tfevents*"))
    assert events


@pytest.mark.parametrize("override, message", [
    (["--model.backbone.init_args.name", "cornet_q"], "unknown model 'cornet_q'; close matches: ['cornet_z'"),
    (["--model.backbone.init_args.num_classes", "7"], "class-count mismatch: the model has 7 outputs but the "
                                                       "data module has 4 classes"),
    (["--data.init_args.neural_batch_size", "80", "--data.init_args.batch_size", "96",
      "--data.init_args.n_train", "96"], "neural_batch_size=80 but the neural set 'kriegeskorte92' has only 69"),
])
def test_bad_configs_fail_before_training(tmp_path, capsys, override, message):
    root = tmp_path / "bad"
    rc = cli_main(["--config", TINY, "--trainer.max_steps", "2", "--trainer.default_root_dir", str(root),
                   *FAST, *override])
    assert rc == 2
    assert message in capsys.readouterr().err
    assert not (root / "checkpoints" / "last.ckpt").exists()


def test_unknown_area_in_config_fails(tmp_path, capsys):
    cfg = yaml.safe_load(Path(TINY).read_text())
    cfg["model"]["alignment"][0]["init_args"]["area"] = "MT"
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert cli_main(["--config", str(path), "--trainer.default_root_dir", str(tmp_path), *FAST]) == 2
    assert "area 'MT' is not an area or module of CORnetZ" in capsys.readouterr().err


def test_configs_parse():
    for path in sorted(CONFIGS.glob("train_*.yaml")):
        cfg = yaml.safe_load(path.read_text())
        assert {"trainer", "model", "data"} <= set(cfg), path
    assert any("tiny" in p.name for p in CONFIGS.glob("train_*.yaml"))


def test_subcommand_protocol_delegates_to_lightning_cli(capsys):
    import argparse

    from neuroreg.cli import train as cli

    parser = argparse.ArgumentParser(prog="neuroreg train")
    cli.add_arguments(parser)
    assert parser.parse_args(["x", "--y"]).lightning_args == ["x", "--y"]
    with pytest.raises(SystemExit) as exc:
        cli.run(argparse.Namespace(lightning_args=["--config", TINY, "--print_config"]))
    assert exc.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["backbone"]["init_args"]["name"] == "cornet_z"
    assert printed["checkpoint"]["save_last"] is True and printed["checkpoint"]["monitor"] == "val/acc1"
