"""Model registry: neuroreg's models live in timm's registry; helpers to build and inspect them."""

from __future__ import annotations

import fnmatch

import timm
from torch import nn

__all__ = ["create_model", "list_models", "area_layers", "NEUROREG_MODELS"]

#: Names registered in timm by neuroreg (filled by the model modules on import).
NEUROREG_MODELS: list[str] = []


def create_model(name: str, pretrained: bool = False, **kwargs) -> nn.Module:
    """Build a model by name; identical to ``timm.create_model`` once neuroreg is imported."""
    return timm.create_model(name, pretrained=pretrained, **kwargs)


def list_models(pattern: str = "*", *, neuroreg_only: bool = True) -> list[str]:
    """Registered model names matching ``pattern`` (fnmatch); neuroreg's own by default."""
    names = NEUROREG_MODELS if neuroreg_only else timm.list_models()
    return sorted(n for n in names if fnmatch.fnmatch(n, pattern))


def area_layers(model: nn.Module) -> dict[str, str]:
    """Module names of the V1, V2, V4 and IT areas of ``model``."""
    areas = getattr(model, "areas", None)
    if isinstance(areas, dict):
        return dict(areas)
    raise KeyError(f"no area map known for {type(model).__name__}; pass layers by module name")
