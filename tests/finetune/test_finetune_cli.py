import json
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from finetune_layouts import make_isic

from neuroreg.cli.main import main as neuroreg_main
from neuroreg.cli.finetune import cli_main

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
TINY = str(CONFIGS / "finetune_tiny.yaml")
FAST = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--trainer.num_sanity_val_steps", "0", "--data.init_args.n_images", "48", "--data.init_args.image_size", "32",
        "--data.init_args.batch_size", "8", "--forgetting.probe_sets", "[kriegeskorte92]", "--scorecard.enabled", "false"]


@pytest.mark.slow
def test_tiny_config_finetunes_writes_report_and_resumes(tmp_path):
    root = tmp_path / "run"
    args = ["--config", TINY, "--trainer.max_steps", "2", "--trainer.default_root_dir", str(root), *FAST]
    assert neuroreg_main(["finetune", *args]) == 0
    for name in ("splits.csv", "forgetting.csv", "forgetting.json", "forgetting.md", "forgetting_cka_drift.png",
                 "forgetting_accuracy.png", "forgetting_brain.png", "checkpoints/last.ckpt"):
        assert (root / name).is_file(), name
    rows = json.loads((root / "forgetting.json").read_text())
    metrics = {r["metric"] for r in rows}
    assert {"task_accuracy", "balanced_accuracy", "retention_accuracy", "cka_to_start", "crsa"} <= metrics
    assert {r["stage"] for r in rows} == {"before", "after", "change"}
    splits = pd.read_csv(root / "splits.csv")
    assert len(splits) == 48 and set(splits["split"]) == {"train", "val", "test"}
    assert list((root / "lightning_logs").rglob("events.out.tfevents*"))
    assert cli_main(["--config", TINY, "--trainer.max_steps", "4", "--trainer.default_root_dir", str(root),
                     "--ckpt_path", "last", "--forgetting.enabled", "false", *FAST]) == 0
    assert torch.load(root / "checkpoints" / "last.ckpt", weights_only=False, map_location="cpu")["global_step"] == 4


def test_isic_config_rejects_bad_csv_before_training(tmp_path, capsys):
    info = make_isic(tmp_path / "isic")
    gt = info["root"] / "ISIC_2019_Training_GroundTruth.csv"
    gt.write_text(gt.read_text().replace(",MEL,", ",MELANOMA,", 1))
    rc = cli_main(["--config", str(CONFIGS / "finetune_isic.yaml"), "--data.init_args.root", str(info["root"]),
                   "--trainer.default_root_dir", str(tmp_path / "run"), "--trainer.max_steps", "1",
                   "--model.start_from", "test_resnet", "--data.init_args.model_name", "test_resnet"])
    assert rc == 4  # input error (a file's content), as `neuroreg --help` documents
    assert "missing column(s) ['MEL']" in capsys.readouterr().err
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_configs_parse_and_help_explains_the_workflow(capsys):
    for name in ("finetune_tiny.yaml", "finetune_eurosat.yaml", "finetune_isic.yaml"):
        cfg = yaml.safe_load((CONFIGS / name).read_text())
        assert {"trainer", "model", "data", "forgetting"} <= set(cfg), name
        assert cfg["model"]["optimizer"] == "adamw" and cfg["model"]["weight_decay"] == 0.01
    with pytest.raises(SystemExit) as exc:
        cli_main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for needle in ("--model.start_from", "splits.csv", "forgetting.csv", "--ckpt_path", "--forgetting.original_data",
                   "linear_probe"):
        assert needle in out, needle


@pytest.mark.slow
def test_readme_forgetting_example_runs(capsys):
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = text[text.index("### Fine-tuning and forgetting"):]
    code = section[section.index("```python") + len("```python"):]
    code = code[:code.index("```")]
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out
    lines = [ln.split() for ln in out.strip().splitlines()[1:]]
    scores = {ln[1]: float(ln[2]) for ln in lines}
    assert scores["V1"] == scores["V2"] == scores["V4"] == 1.0 and scores["IT"] < 1.0
