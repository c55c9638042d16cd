"""`neuroreg evaluate/score/demo --config`: the example configs parse; several models give one comparison."""

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from neuroreg.cli._config import parse_command
from neuroreg.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_example_configs_parse_and_command_line_overrides_them():
    import neuroreg.cli.evaluate as evaluate_cmd
    import neuroreg.cli.score as score_cmd
    import neuroreg.cli.demo as demo_cmd

    args = parse_command("evaluate", evaluate_cmd, ["--config", str(CONFIGS / "evaluate.yaml"), "--image-size", "48"])
    assert args.model == ["cornet_z", "vone_cornet_s"] and args.brain == ["kriegeskorte92"]
    assert args.image_size == 48 and args.layers == ["all"]
    args = parse_command("score", score_cmd, ["--config", str(CONFIGS / "score.yaml")])
    assert args.model == "efficientnet_lite0_imagenet" and args.pretrained is True
    args = parse_command("demo", demo_cmd, ["--config", str(CONFIGS / "demo.yaml"), "--quick"])
    assert args.quick is True and args.seed == 0


def test_unknown_config_key_is_an_error(tmp_path):
    import neuroreg.cli.evaluate as evaluate_cmd
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [cornet_z]\nbrian: [kriegeskorte92]\n")
    with pytest.raises(ConfigError, match=r"--config .*bad\.yaml: unknown option 'brian'"):
        parse_command("evaluate", evaluate_cmd, ["--config", str(bad)])


def test_checkpoints_must_match_models():
    import argparse

    from neuroreg.cli._model_args import build_models
    args = argparse.Namespace(model=["cornet_z", "cornet_z"], checkpoint=["a.pt"], pretrained=False,
                              num_classes=None, device="cpu", seed=0)
    with pytest.raises(ValueError, match="one entry per --model"):
        build_models(args)


@pytest.mark.slow
def test_two_models_one_comparison(tmp_path):
    out = tmp_path / "cmp"
    proc = subprocess.run([sys.executable, "-m", "neuroreg.cli.main", "evaluate", "--model", "cornet_z", "vone_cornet_s",
                           "--brain", "kriegeskorte92", "--image-size", "64", "--device", "cpu", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary["model"]) == ["cornet_z", "vone_cornet_s"]
    assert summary["crsa:kriegeskorte92:monkey_IT"].notna().all()
    assert (out / "comparison.png").read_bytes()[:4] == b"\x89PNG"
    page = (out / "report.html").read_text()
    assert "cornet_z" in page and "vone_cornet_s" in page and "cRSA on kriegeskorte92" in page
