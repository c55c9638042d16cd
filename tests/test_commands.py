"""CLI model loading: local checkpoints load strictly; corrupted or mismatched files give clear errors."""

import argparse

import pytest
import torch
import timm

from neuroreg.cli._model_args import add_model_arguments, build_model
from neuroreg.errors import CheckpointError


def _args(tmp_path, *extra):
    parser = argparse.ArgumentParser()
    add_model_arguments(parser)
    return parser.parse_args(["--model", "resnet18", "--num-classes", "7", "--device", "cpu", *extra])


def test_loads_lightning_style_checkpoint(tmp_path):
    torch.manual_seed(1)
    ref = timm.create_model("resnet18", num_classes=7)
    ckpt = tmp_path / "run.ckpt"
    torch.save({"state_dict": {f"backbone.{k}": v for k, v in ref.state_dict().items()}, "epoch": 3}, ckpt)
    model = build_model(_args(tmp_path, "--checkpoint", str(ckpt)))
    for (k, a), b in zip(model.state_dict().items(), ref.state_dict().values()):
        torch.testing.assert_close(a, b, msg=k)


def test_corrupted_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="cannot read checkpoint .*broken.pt"):
        build_model(_args(tmp_path, "--checkpoint", str(bad)))


def test_mismatched_checkpoint_lists_keys(tmp_path):
    path = tmp_path / "other.pt"
    torch.save(timm.create_model("resnet18", num_classes=7).state_dict() | {"extra.weight": torch.zeros(1)}, path)
    with pytest.raises(CheckpointError, match="1 unexpected keys.*extra.weight"):
        build_model(_args(tmp_path, "--checkpoint", str(path)))


def test_missing_checkpoint_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        build_model(_args(tmp_path, "--checkpoint", str(tmp_path / "nope.pt")))


def test_wrong_class_count_is_a_clear_error(tmp_path):
    path = tmp_path / "ten.pt"
    torch.save(timm.create_model("resnet18", num_classes=10).state_dict(), path)
    with pytest.raises(CheckpointError, match="(?s)does not fit resnet18.*size mismatch for fc.weight"):
        build_model(_args(tmp_path, "--checkpoint", str(path)))
