"""The start network of a fine-tuning run: a run whose start needed ``model_kwargs`` (a head that is not 1000-way)
can itself be the start of the next run."""

from pathlib import Path

import pytest
import torch

import neuroreg as nr
from neuroreg.cli.finetune import cli_main
from neuroreg.finetune.start_model import load_start_model

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
CONFIG = ["--config", str(CONFIGS / "finetune_tiny.yaml")]
FAST = ["--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false", "--trainer.num_sanity_val_steps", "0", "--trainer.max_steps", "1",
        "--data.init_args.n_images", "36", "--data.init_args.image_size", "32", "--data.init_args.batch_size", "8",
        "--forgetting.probe_sets", "[]", "--forgetting.reference", "null", "--scorecard.enabled", "false"]


@pytest.fixture
def four_class_start(tmp_path):
    """A CORnet-Z state dict with a 4-way head: building it needs ``model_kwargs={num_classes: 4}``."""
    torch.manual_seed(0)
    path = tmp_path / "start4.pth"
    torch.save(nr.create_model("cornet_z", num_classes=4).state_dict(), path)
    return path


def test_a_run_started_with_num_classes_in_model_kwargs_can_start_the_next_run(tmp_path, monkeypatch,
                                                                                four_class_start):
    monkeypatch.chdir(tmp_path)
    first = [*CONFIG, "--trainer.default_root_dir", "a", "--model.weights", str(four_class_start),
             "--model.model_kwargs", "{num_classes: 4}", *FAST]
    assert cli_main(first) == 0
    ckpt = Path("a") / "checkpoints" / "last.ckpt"
    # the checkpoint's head is the first run's new 6-way head, not the 4-way head of its start
    start = load_start_model(str(ckpt))
    assert start["num_classes"] == 6 and start["model"].get_classifier().out_features == 6
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    for name, value in start["model"].state_dict().items():
        assert torch.equal(value, state[f"backbone.{name}"]), name
    # the second run of the chain (it was: TypeError, build_model() got multiple values for 'num_classes'; exit 1)
    assert cli_main([*CONFIG, "--trainer.default_root_dir", "b", "--model.start_from", str(ckpt), *FAST]) == 0
    assert (Path("b") / "forgetting.csv").is_file()


def test_a_checkpoint_start_takes_its_head_size_from_the_checkpoint_whatever_model_kwargs_say(tmp_path):
    from neuroreg.finetune import FinetuneModule

    module = FinetuneModule("cornet_z", num_classes=3)
    ckpt = tmp_path / "run.ckpt"
    torch.save({"state_dict": {f"backbone.{k}": v for k, v in module.backbone.state_dict().items()},
                "hyper_parameters": {"arch": "cornet_z", "model_kwargs": {"num_classes": 1000}}}, ckpt)
    start = load_start_model(str(ckpt), model_kwargs={"num_classes": 3})
    assert start["num_classes"] == 3 and "num_classes" not in start["model_kwargs"]
    with pytest.raises(ValueError, match="model_kwargs num_classes=5 .* 3 outputs"):
        load_start_model(str(ckpt), model_kwargs={"num_classes": 5})


def test_a_pretrained_start_with_another_num_classes_is_a_clear_error():
    with pytest.raises(ValueError, match="efficientnet_lite0_imagenet.*1000 ImageNet classes.*num_classes=4"):
        load_start_model("efficientnet_lite0_imagenet", model_kwargs={"num_classes": 4})


class _Payload:
    """A pickle that would create a folder when unpickled without weights_only."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        import os
        return os.makedirs, (self.target,)


@pytest.mark.parametrize("kind", ["truncated", "malicious", "not_lightning"])
def test_a_bad_checkpoint_start_is_a_checkpoint_error_and_never_runs_its_pickle(tmp_path, kind):
    from neuroreg.errors import CheckpointError

    pwned = tmp_path / "pwned"
    path = tmp_path / f"{kind}.ckpt"
    if kind == "truncated":
        torch.save({"state_dict": {"backbone.w": torch.zeros(1000)}}, path)
        path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])
        pattern = r"cannot read checkpoint .*truncated\.ckpt as a weights-only torch file"
    elif kind == "malicious":
        torch.save({"state_dict": {}, "hyper_parameters": _Payload(pwned)}, path)
        pattern = r"cannot read checkpoint .*malicious\.ckpt as a weights-only torch file"
    else:
        torch.save({"backbone.w": torch.zeros(2)}, path)
        pattern = r"not_lightning\.ckpt is not a Lightning checkpoint \(no 'state_dict'\)"
    with pytest.raises(CheckpointError, match=pattern):
        load_start_model(str(path), arch="cornet_z")
    assert not pwned.exists()
