"""Model inspection: which modules of a network stand for the visual areas V1, V2, V4 and IT.

Separate from the registry (:mod:`neuroreg.models.zoo`) so that model classes
(e.g. :class:`~neuroreg.models.vonenet.VOneNet`, which composes its back end's map)
and the simulator can ask for areas without importing the registry.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn
from torchvision.models import VGG, AlexNet

from neuroreg.errors import UnknownNameError

__all__ = ["area_layers", "AREAS"]

#: The areas a map may name, shallow to deep.
AREAS = ("V1", "V2", "V4", "IT")


def _torchvision_areas(model: nn.Module) -> dict[str, str] | None:
    if isinstance(model, AlexNet):
        return {"V1": "features.2", "V2": "features.5", "V4": "features.9", "IT": "features.12"}
    if isinstance(model, VGG):
        pools = [f"features.{i}" for i, m in enumerate(model.features) if isinstance(m, nn.MaxPool2d)]
        if len(pools) == 5:
            return dict(zip(AREAS, pools[1:]))
    return None


def _feature_info_areas(model: nn.Module) -> dict[str, str] | None:
    info = getattr(model, "feature_info", None)
    if info is None:
        return None
    entries = [(f["module"], f["reduction"]) for f in (info.info if hasattr(info, "info") else info)]
    by_reduction: dict[int, str] = {}
    for module, reduction in entries:
        by_reduction[int(reduction)] = module          # last module at each reduction
    if all(r in by_reduction for r in (4, 8, 16, 32)):
        return dict(zip(AREAS, (by_reduction[r] for r in (4, 8, 16, 32))))
    if len(entries) >= 4:                               # isotropic nets (ViT): depth quartiles
        n = len(entries)
        return dict(zip(AREAS, (entries[round(n * (k + 1) / 4) - 1][0] for k in range(4))))
    return None


def _default_areas(model: nn.Module) -> dict[str, str] | None:
    areas = getattr(model, "areas", None)
    if isinstance(areas, Mapping):
        return dict(areas)
    found = _torchvision_areas(model) or _feature_info_areas(model)
    if found is not None:
        return found
    if all(hasattr(model, f"layer{i}") for i in range(1, 5)):    # torchvision ResNet family
        return {area: f"layer{i}" for area, i in zip(AREAS, range(1, 5))}
    return None


def area_layers(model: nn.Module, mapping: Mapping[str, str] | None = None) -> dict[str, str]:
    """Module names of the V1, V2, V4 and IT areas of ``model`` (valid ``named_modules()`` names).

    Order of precedence:

    1. ``mapping`` given by the user (any subset of the four areas), checked
       against the model's modules;
    2. the model's own ``areas`` attribute: CORnet-Z/R/S ``{"V1": "V1", ...}``;
       VOneNets use ``"vone_block"`` for V1 and their backbone's map for the
       rest (``"backbone.V2"`` ..., or ``"backbone.layer2"`` ... for ResNets);
    3. documented defaults: torchvision AlexNet ``features.2/5/9/12`` (pool1,
       pool2, conv4 ReLU, pool5); torchvision VGG the 2nd-5th max-pools;
       timm models the last module at stride 4, 8, 16, 32 of ``feature_info``
       (ResNet ``layer1..layer4``, EfficientNet ``blocks.1/2/4/6``, ConvNeXt
       ``stages.0..3``), or its depth quartiles when all strides are equal
       (ViT ``blocks.2/5/8/11`` for 12 blocks); torchvision ResNets
       ``layer1..layer4``.

    Raises :class:`UnknownNameError` when no map is known or a name is not a module.
    """
    if mapping is not None:
        areas = dict(mapping)
        bad_keys = [k for k in areas if k not in AREAS]
        if bad_keys:
            raise UnknownNameError(f"mapping keys must be among {list(AREAS)}; got {bad_keys}")
    else:
        found = _default_areas(model)
        if found is None:
            raise UnknownNameError(
                f"no V1/V2/V4/IT area map is known for {type(model).__name__}; pass "
                "area_layers(model, mapping={'V1': <module name>, ...}) or name the layers directly")
        areas = found
    modules = dict(model.named_modules())
    missing = {a: n for a, n in areas.items() if n not in modules or n == ""}
    if missing:
        raise UnknownNameError(f"area map of {type(model).__name__} names modules that do not exist: {missing}")
    return areas
