"""Which layers a brain score sweeps: every block and stage output a model exposes, with its relative depth.

The Conwell et al. (2024) protocol picks the best layer of a network on the
train split among all of its layers; four area guesses are not enough (on
EfficientNet-Lite0 the best human-IT layer lies inside stage ``blocks.5``,
which no stride-based area map names). :func:`sweep_layers` lists

* every stage of timm's ``feature_info`` and every block inside each stage
  (a stage's output is the output of its last block, so the last block is
  listed under the stage's name), including the stages between the ones
  ``feature_info`` names (``blocks.3``, ``blocks.5`` of an EfficientNet);
* the named areas of brain models (``model.areas``: CORnet V1/V2/V4/IT,
  VOneNet's ``vone_block``), labelled by area, plus the blocks inside
  their stages (a VOne-ResNet's bottlenecks; a stage of single layers such
  as CORnet-S's V1 is not split);
* without ``feature_info``: the top-level children and the blocks of
  sequential containers, head (pooling, classifier) excluded.

>>> sweep = sweep_layers(timm.create_model("resnet18"))
>>> list(sweep.layers)[:4]        # ['act1', 'layer1.0', 'layer1', 'layer2.0']
>>> sweep.depth["layer4"]         # 1.0
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
from torch import nn

from neuroreg.features.extraction import resolve_layers

__all__ = ["LayerSweep", "sweep_layers"]

_HEAD_TYPES = (nn.Linear, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Flatten, nn.Dropout, nn.Identity)


@dataclass(frozen=True)
class LayerSweep:
    """Candidate layers in forward order: ``layers`` label -> module name, ``depth`` label -> [0, 1].

    ``depth`` is the position among all candidates of the model (0 = first,
    1 = last), kept when the list is capped, so depths compare across models.
    """

    layers: dict[str, str]
    depth: dict[str, float] = field(default_factory=dict)
    source: str = ""

    def __len__(self) -> int:
        return len(self.layers)


def _stage_blocks(modules: Mapping[str, nn.Module], stage: str) -> list[str]:
    """Blocks of a stage, the last listed as the stage itself (same output tensor)."""
    mod = modules[stage]

    def blocks_of(container: nn.Module) -> bool:
        # a stage of blocks (each a module with layers inside), not a run of single layers (conv, norm, ReLU)
        children = list(container.children())
        return isinstance(container, (nn.Sequential, nn.ModuleList)) and len(children) > 1 and \
            all(any(True for _ in c.children()) for c in children)

    if blocks_of(mod):
        return [f"{stage}.{name}" for name, _ in list(mod.named_children())[:-1]] + [stage]
    inner = getattr(mod, "blocks", None)        # timm stage classes (ConvNeXt, RegNet, ...) hold `blocks`
    if isinstance(inner, nn.Module) and blocks_of(inner):
        return [f"{stage}.blocks.{name}" for name, _ in list(inner.named_children())[:-1]] + [stage]
    return [stage]


def _feature_info_modules(model: nn.Module) -> list[str] | None:
    info = getattr(model, "feature_info", None)
    if info is None:
        return None
    entries = info.info if hasattr(info, "info") else info
    try:
        names = [str(e["module"]) for e in entries]
    except (TypeError, KeyError):
        return None
    return names or None


def _from_feature_info(model: nn.Module, names: Sequence[str]) -> list[str]:
    modules = dict(model.named_modules())
    stages: list[str] = []
    for name in names:
        parent, _, _ = name.rpartition(".")
        container = modules.get(parent) if parent else None
        if isinstance(container, (nn.Sequential, nn.ModuleList)):
            # every stage of the container, also those feature_info skips (same-stride stages)
            for child, _ in container.named_children():
                full = f"{parent}.{child}"
                if full not in stages:
                    stages.append(full)
        elif name in modules and name not in stages:
            stages.append(name)
    out: list[str] = []
    for stage in stages:
        for block in _stage_blocks(modules, stage):
            if block not in out:
                out.append(block)
    return out


def _from_children(model: nn.Module) -> list[str]:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    classifier = str(cfg.get("classifier") or "")
    head = {classifier.split(".")[0]} if "." in classifier else {classifier}
    modules = dict(model.named_modules())
    out: list[str] = []
    for name, child in model.named_children():
        if name in head or name in ("head", "fc", "classifier", "decoder", "global_pool", "pool", "avgpool"):
            continue
        if isinstance(child, _HEAD_TYPES) or not any(True for _ in child.parameters()) and \
                not isinstance(child, (nn.ReLU, nn.MaxPool2d)):
            continue
        blocks = _stage_blocks(modules, name)
        if blocks == [name] and isinstance(child, nn.Sequential) and len(child) > 1:
            # an old-style feature stack (torchvision AlexNet/VGG `features`): every layer in it
            blocks = [f"{name}.{k}" for k, _ in list(child.named_children())[:-1]] + [name]
        out.extend(blocks)
    return out


def _order(model: nn.Module, names: Sequence[str]) -> list[str]:
    """Sort module names by where their output is produced: the definition order of the last module
    inside each (forward order for timm and neuroreg models; a stage comes after its blocks)."""
    rank: dict[str, int] = {}
    for i, (name, _) in enumerate(model.named_modules()):
        parts = name.split(".") if name else []
        for k in range(len(parts) + 1):
            rank[".".join(parts[:k])] = i
    return sorted(dict.fromkeys(names), key=lambda n: rank.get(n, len(rank)))


def sweep_layers(model: nn.Module, layers: str | Sequence[str] | Mapping[str, str] | None = "all", *,
                 max_layers: int | None = None) -> LayerSweep:
    """Candidate layers of ``model`` for a brain-score sweep.

    layers: ``"all"`` (default; see the module docstring), ``"areas"`` (the
        V1/V2/V4/IT map of :func:`neuroreg.area_layers`), a list of module names
        or area aliases, or a dict label -> module name.
    max_layers: cap for very deep models: that many layers evenly spaced over
        the sweep (first and last always kept); depths stay those of the full sweep.
    """
    from neuroreg.models import area_layers  # local: loads timm; this module needs torch only

    if max_layers is not None and int(max_layers) < 1:
        raise ValueError(f"max_layers must be a positive integer or None; got {max_layers!r}")
    modules = dict(model.named_modules())
    areas: dict[str, str] = {}
    try:
        areas = dict(area_layers(model))
    except (KeyError, ValueError, TypeError, LookupError):
        areas = {}
    if layers is None:
        layers = "all"
    if isinstance(layers, str) and layers == "areas":
        if not areas:
            raise ValueError(f"layers='areas' but no V1/V2/V4/IT map is known for {type(model).__name__}; "
                             "name the layers or use layers='all'")
        labels = dict(areas)
        source = "areas"
    elif isinstance(layers, str) and layers == "all":
        own_areas = isinstance(getattr(model, "areas", None), Mapping)
        fi = _feature_info_modules(model)
        names = _from_feature_info(model, fi) if fi else _from_children(model)
        source = "feature_info stages and blocks" if fi else "top-level blocks"
        if own_areas:
            names = list(areas.values()) + (names if fi else [])
            source = "named areas" + (" + feature_info stages and blocks" if fi else "")
        names = _order(model, [n for n in names if n in modules and n])
        if not names:
            raise ValueError(f"found no candidate layers in {type(model).__name__}; pass layers=[...]")
        by_module = {m: a for a, m in areas.items()} if own_areas else {}
        labels = {by_module.get(n, n): n for n in names}
    else:
        labels = resolve_layers(model, layers)
        source = "given"
    ordered = _order(model, list(labels.values()))
    label_of = {m: lab for lab, m in labels.items()}
    labels = {label_of[m]: m for m in ordered}
    n = len(labels)
    depth = {lab: (i / (n - 1) if n > 1 else 1.0) for i, lab in enumerate(labels)}
    if max_layers is not None and n > int(max_layers):
        keep = np.unique(np.round(np.linspace(0, n - 1, int(max_layers))).astype(int))
        items = list(labels.items())
        labels = dict(items[i] for i in keep)
        depth = {lab: depth[lab] for lab in labels}
        source += f", capped at {int(max_layers)} evenly spaced"
    return LayerSweep(layers=labels, depth=depth, source=source)
