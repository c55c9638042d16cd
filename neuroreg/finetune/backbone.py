"""Build a backbone by name for configs: ``build_model("cornet_z", num_classes=10)``."""

from __future__ import annotations

import difflib
from typing import Any

import timm
from torch import nn

import neuroreg.models  # noqa: F401  (registers neuroreg's models in timm)
from neuroreg.errors import UnknownNameError

__all__ = ["build_model"]


def build_model(name: str, num_classes: int, pretrained: bool = False, areas: dict[str, str] | None = None,
                **kwargs: Any) -> nn.Module:
    """``timm.create_model(name, num_classes=..., pretrained=...)`` with neuroreg's models registered.

    ``areas`` maps area aliases (``"IT"``, ...) to module names for models that
    have no area map of their own (e.g. ``{"IT": "layer4"}`` for a ResNet); it
    is stored as ``model.areas``, where :func:`neuroreg.area_layers` reads it.
    Unknown names raise :class:`~neuroreg.errors.UnknownNameError` with close matches.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1; got {num_classes}")
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=5)
        raise UnknownNameError(f"unknown model {name!r}; close matches: {close or 'none'} "
                               f"(neuroreg models: {neuroreg.models.list_models() or 'none registered'})")
    model = timm.create_model(name, pretrained=pretrained, num_classes=num_classes, **kwargs)
    if areas:
        modules = dict(model.named_modules())
        unknown = {a: m for a, m in areas.items() if m not in modules or not m}
        if unknown:
            raise UnknownNameError(f"areas name modules that {name!r} does not have: {unknown}; top-level modules: "
                                   f"{[n for n in modules if n and '.' not in n]}")
        # read by neuroreg.area_layers; torch types Module.__setattr__ for Tensor/Module values only
        model.areas = dict(areas)  # type: ignore[assignment]
    return model
