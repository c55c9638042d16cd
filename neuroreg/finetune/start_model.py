"""The network a fine-tuning run starts from: a registered model with its weights, or a training checkpoint.

``start_from`` is one of

- a registered model name: ``"efficientnet_lite0_imagenet"`` (ImageNet weights
  from its package), ``"cornet_s"`` with ``weights="cornet_s-1d3f7974.pth"``
  (an official weight file, read through the model's key map), any timm/neuroreg
  name with ``weights`` = a state dict saved from that model, or a name alone
  (random initialisation, seeded by the run's seed);
- a Lightning checkpoint (``*.ckpt``) written by ``neuroreg train`` or
  ``neuroreg finetune``: the architecture comes from ``arch``, else from the
  fine-tuning checkpoint's hyper-parameters, else from the ``config.yaml`` that
  LightningCLI saved in the training run's folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Protocol, runtime_checkable

import timm
import yaml
from torch import Tensor, nn

from neuroreg.errors import CheckpointError, UnknownNameError
from neuroreg.models import create_model
from neuroreg.models.pretrained import load_mapped_state_dict, read_weights_file
from neuroreg.finetune.backbone import build_model

__all__ = ["StartModel", "load_start_model", "classifier_name", "run_configs", "start_is_random",
           "is_checkpoint_path", "PRETRAINED_STARTS"]


#: start names whose trained weights load without a weights file
PRETRAINED_STARTS = frozenset({"efficientnet_lite0_imagenet"})


def is_checkpoint_path(start_from: str) -> bool:
    """Whether ``start_from`` names a checkpoint file (``*.ckpt``, or a path that is not a registered model)."""
    return Path(start_from).suffix == ".ckpt" or (os.sep in start_from and not timm.is_model(start_from))


def start_is_random(start_from: str, weights: str | None = None) -> bool:
    """Whether :func:`load_start_model` initialises this start at random (a model name without weights), so
    that rebuilding it later gives another network."""
    return not is_checkpoint_path(start_from) and weights is None and start_from not in PRETRAINED_STARTS


class StartModel(dict):
    """``model`` (with its original head), ``arch``, ``num_classes``, ``areas`` and ``source`` of a start."""


@runtime_checkable
class _TimmClassifier(Protocol):
    """The part of timm's model API that fine-tuning uses: the classification head."""

    def get_classifier(self) -> nn.Module: ...

    def reset_classifier(self, num_classes: int) -> None: ...


def _timm_classifier(model: nn.Module, what: str) -> _TimmClassifier:
    """``model`` as a timm classifier (``get_classifier``/``reset_classifier``); TypeError naming ``what`` if not."""
    if not isinstance(model, _TimmClassifier):
        raise TypeError(f"{what} must have timm's get_classifier() and reset_classifier(); got "
                        f"{type(model).__name__}")
    return model


def classifier_name(model: nn.Module) -> str:
    """Module name of the classification head (timm ``pretrained_cfg["classifier"]``, else ``get_classifier()``)."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    name = cfg.get("classifier")
    modules = dict(model.named_modules())
    if isinstance(name, str) and name in modules:
        return name
    get_classifier = getattr(model, "get_classifier", None)
    if callable(get_classifier):
        head = get_classifier()
        for n, m in modules.items():
            if m is head and n:
                return n
    raise UnknownNameError(f"cannot find the classifier of {type(model).__name__}: no pretrained_cfg['classifier'] "
                           "and no get_classifier(); fine-tuning needs timm's reset_classifier/get_classifier")


def _read_lightning_state(path: Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The ``backbone.*`` weights (prefix dropped) and the hyper-parameters of a Lightning checkpoint."""
    ckpt = read_weights_file(path)
    if not isinstance(ckpt, Mapping) or "state_dict" not in ckpt:
        raise CheckpointError(f"{path} is not a Lightning checkpoint (no 'state_dict'); top-level keys: "
                              f"{list(ckpt)[:10] if isinstance(ckpt, Mapping) else type(ckpt).__name__}")
    state = {k[len("backbone."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("backbone.")}
    if not state:
        raise CheckpointError(f"{path}: no 'backbone.*' weights in its state_dict (keys: "
                              f"{list(ckpt['state_dict'])[:5]})")
    hparams = dict(ckpt.get("hyper_parameters") or {})
    return state, hparams


def run_configs(run: Path) -> list[dict[str, Any]]:
    """The LightningCLI configs saved in a run folder (``config.yaml``, ``lightning_logs/*/config.yaml``), newest
    first (a resumed run saves one per version)."""
    paths = [p for p in [run / "config.yaml", *run.glob("lightning_logs/*/config.yaml")] if p.is_file()]
    out = []
    for cfg_path in sorted(paths, key=lambda p: p.stat().st_mtime, reverse=True):
        with open(cfg_path, encoding="utf-8") as fh:
            cfg = yaml.safe_load(fh)
        if isinstance(cfg, dict):
            out.append(cfg)
    return out


def _training_config(ckpt: Path) -> dict[str, Any]:
    """``model.backbone.init_args`` of the LightningCLI config saved by the run that wrote ``ckpt``."""
    run = ckpt.resolve().parent.parent
    for cfg in run_configs(run):
        backbone = (cfg.get("model") or {}).get("backbone") or {}
        args = backbone.get("init_args") if isinstance(backbone, Mapping) else None
        if isinstance(args, Mapping) and "name" in args:
            return dict(args)
    raise CheckpointError(f"cannot tell the architecture of {ckpt}: no fine-tuning hyper-parameters and no "
                          f"config.yaml with model.backbone.init_args.name under {run}; pass arch=<model name>")


def load_start_model(start_from: str, *, arch: str | None = None, weights: str | None = None,
                     model_kwargs: Mapping[str, Any] | None = None) -> StartModel:
    """Build the starting network with its original head (see the module docstring for ``start_from``).

    Returns a :class:`StartModel` with ``model``, ``arch`` (registered name),
    ``num_classes`` (of the original head), ``areas`` (area map from the
    training config, if any), ``model_kwargs`` and ``source``.
    """
    kw = dict(model_kwargs or {})
    if not isinstance(start_from, str) or not start_from:
        raise ValueError(f"start_from must be a model name or a checkpoint path; got {start_from!r}")
    path = Path(start_from).expanduser()
    if is_checkpoint_path(start_from):
        if not path.is_file():
            raise CheckpointError(f"start_from checkpoint {str(path)!r} does not exist")
        state, hparams = _read_lightning_state(path)
        # a checkpoint's head size is read from its classifier weights and its weights from its state dict: the
        # run's own start may have needed num_classes (a 4-way start), but its checkpoint holds the run's new head
        given_classes = kw.pop("num_classes", None)
        kw.pop("pretrained", None)
        areas = hparams.get("areas") if isinstance(hparams.get("areas"), Mapping) else None
        if arch is None and hparams.get("arch"):
            arch = str(hparams["arch"])
            saved = {k: v for k, v in dict(hparams.get("model_kwargs") or {}).items()
                     if k not in ("num_classes", "pretrained")}
            kw = {**saved, **kw}
        elif arch is None:
            cfg = _training_config(path)
            arch = str(cfg.pop("name"))
            cfg.pop("num_classes", None)
            cfg.pop("pretrained", None)
            areas = areas or cfg.pop("areas", None)
            kw = {**cfg, **kw}
        model = build_model(arch, num_classes=1, **kw)
        head = classifier_name(model)
        w = state.get(f"{head}.weight")
        if w is None:
            raise CheckpointError(f"{path}: no weights for the classifier {head!r} of {arch}")
        if given_classes is not None and int(given_classes) != int(w.shape[0]):
            raise ValueError(f"model_kwargs num_classes={given_classes} does not fit the checkpoint {path}: its "
                             f"classifier {head!r} has {int(w.shape[0])} outputs (leave num_classes out for a "
                             "checkpoint start)")
        _timm_classifier(model, f"the {arch} network of {path}").reset_classifier(int(w.shape[0]))
        load_mapped_state_dict(model, state, source=str(path))
        if areas:
            # read by neuroreg.area_layers; torch types Module.__setattr__ for Tensor/Module values only
            model.areas = dict(areas)  # type: ignore[assignment]
        return StartModel(model=model, arch=arch, num_classes=int(w.shape[0]), areas=areas,
                          source=str(path), model_kwargs=kw)
    if arch is not None and arch != start_from:
        raise ValueError(f"arch={arch!r} is only used with a checkpoint; start_from={start_from!r} is a model name")
    if not timm.is_model(start_from):
        build_model(start_from, num_classes=1)          # raises UnknownNameError with close matches
    if weights is not None:
        try:    # a state dict saved from this model (our key names) ...
            model = create_model(start_from, pretrained=False, checkpoint_path=weights, **kw)
        except CheckpointError as own_error:   # ... or an official weight file read through the key map
            try:
                model = create_model(start_from, pretrained=True, checkpoint_path=weights, **kw)
            except Exception as exc:
                raise CheckpointError(f"weights {weights!r} fit {start_from} neither as its own state dict "
                                      f"({own_error}) nor as an official weight file ({exc})") from exc
    else:
        pretrained = start_from in PRETRAINED_STARTS
        if pretrained and int(kw.get("num_classes", 1000)) != 1000:
            raise ValueError(f"start_from={start_from!r} is the network trained on the 1000 ImageNet classes; "
                             f"model_kwargs num_classes={kw['num_classes']} would replace its trained head (leave "
                             "num_classes out: fine-tuning gives the network its new head)")
        model = build_model(start_from, num_classes=int(kw.pop("num_classes", 1000)), pretrained=pretrained, **kw)
    n = int(getattr(model, "num_classes", 0)
            or getattr(_timm_classifier(model, f"start_from={start_from!r}").get_classifier(), "out_features", 0))
    return StartModel(model=model, arch=start_from, num_classes=n, areas=None,
                      source=weights or start_from, model_kwargs=kw)
