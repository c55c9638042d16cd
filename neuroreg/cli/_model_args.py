"""Shared CLI options for commands that build a model by name and optionally load local weights."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn

import neuroreg as nr
from neuroreg.models.pretrained import load_weights


def add_model_arguments(parser: argparse.ArgumentParser, multiple: bool = False, required: bool = True) -> None:
    if multiple:
        parser.add_argument("--model", nargs="+", required=required,
                            help="registered model names (neuroreg or timm), scored side by side, e.g. cornet_z vone_cornet_s")
        parser.add_argument("--checkpoint", nargs="*", default=None,
                            help="local weights, one per model in --model order ('none' for a model without): "
                                 "state dicts (.pt/.pth/.bin) or Lightning checkpoints (.ckpt)")
    else:
        parser.add_argument("--model", required=True, help="registered model name (neuroreg or timm), e.g. cornet_s")
        parser.add_argument("--checkpoint", type=Path, default=None,
                            help="local weights: a state dict (.pt/.pth/.bin) or a Lightning checkpoint (.ckpt)")
    parser.add_argument("--pretrained", action="store_true", help="load the model's pretrained weights from a local file")
    parser.add_argument("--num-classes", type=int, default=None, help="output classes (default: the model's)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps (default: cuda if available)")
    parser.add_argument("--seed", type=int, default=0)


def build_model(args: argparse.Namespace) -> nn.Module:
    """Create the model named in ``args`` and load ``--checkpoint`` strictly, with a clear error."""
    kwargs = {}
    if args.num_classes is not None:
        kwargs["num_classes"] = args.num_classes
    torch.manual_seed(args.seed)
    model = nr.create_model(args.model, pretrained=args.pretrained, **kwargs)
    if args.checkpoint is not None:
        load_weights(model, args.checkpoint, args.model)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    return model.to(device).eval()


def build_models(args: argparse.Namespace) -> dict[str, nn.Module]:
    """``--model A B C`` with ``--checkpoint`` per model -> {label: model}; labels are the names, with the
    checkpoint file's stem added when a name repeats (the same architecture with different weights)."""
    names = list(args.model)
    ckpts = list(args.checkpoint or [])
    if ckpts and len(ckpts) != len(names):
        raise ValueError(f"--checkpoint needs one entry per --model ({len(names)}: {names}), 'none' for a "
                         f"model without; got {len(ckpts)}: {ckpts}")
    models: dict[str, nn.Module] = {}
    for i, name in enumerate(names):
        ckpt = ckpts[i] if ckpts else None
        ckpt = None if ckpt in (None, "", "none", "None") else Path(ckpt)
        one = argparse.Namespace(**{**vars(args), "model": name, "checkpoint": ckpt})
        label = name if names.count(name) == 1 else f"{name} ({ckpt.stem if ckpt else 'no checkpoint'})"
        if label in models:
            label = f"{label} #{i + 1}"
        models[label] = build_model(one)
    return models