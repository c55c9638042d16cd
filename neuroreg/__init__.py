"""neuroreg: brain-constrained vision models, brain-regularized training and one scoring core.

>>> import neuroreg as nr
>>> model = nr.create_model("vone_cornet_s", num_classes=10)   # also timm.create_model(...)
>>> feats = nr.extract(model, images, layers=["IT"])

Submodules and names are imported on first use, so ``import neuroreg`` (and
``neuroreg --version``) does not load torch. The models are registered in timm
all the same: at once if timm is already imported, else as soon as it is, so
``import timm, neuroreg`` then ``timm.create_model("vone_cornet_s")`` works in
either import order.
"""

import sys as _sys
from importlib import import_module as _import_module
from importlib.abc import MetaPathFinder as _MetaPathFinder
from importlib.metadata import PackageNotFoundError, version as _version
from importlib.util import find_spec as _find_spec
from typing import TYPE_CHECKING as _TYPE_CHECKING

try:
    __version__ = _version("neuroreg")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

# public name -> (module, attribute or None for the module itself)
_LAZY = {
    "brain": ("neuroreg.brain", None),
    "scoring": ("neuroreg.scoring", None),
    "behaviour": ("neuroreg.behaviour", None),
    "errors": ("neuroreg.errors", None),
    "Features": ("neuroreg.features.extraction", "Features"),
    "extract": ("neuroreg.features.extraction", "extract"),
    "area_layers": ("neuroreg.models", "area_layers"),
    "create_model": ("neuroreg.models", "create_model"),
    "list_models": ("neuroreg.models", "list_models"),
    "preprocessing_of": ("neuroreg.data.preprocessing", "preprocessing_of"),
    "Preprocessing": ("neuroreg.data.preprocessing", "Preprocessing"),
    "sweep_layers": ("neuroreg.features.layers", "sweep_layers"),
    "simulate_voxels": ("neuroreg.features.simulate", "simulate_voxels"),
    "Scorecard": ("neuroreg.scorecard.card", "Scorecard"),
    "evaluate": ("neuroreg.scorecard.evaluation", "evaluate"),
}


if _TYPE_CHECKING:  # what the lazy names below resolve to, for type checkers (never run)
    from neuroreg import behaviour as behaviour, brain as brain, errors as errors, scoring as scoring
    from neuroreg.scorecard.evaluation import evaluate as evaluate
    from neuroreg.features.extraction import Features as Features, extract as extract
    from neuroreg.features.layers import sweep_layers as sweep_layers
    from neuroreg.features.simulate import simulate_voxels as simulate_voxels
    from neuroreg.models import area_layers as area_layers, create_model as create_model, list_models as list_models
    from neuroreg.data.preprocessing import Preprocessing as Preprocessing, preprocessing_of as preprocessing_of
    from neuroreg.scorecard.card import Scorecard as Scorecard

__all__ = ["__version__", "create_model", "list_models", "area_layers", "extract", "Features",
           "preprocessing_of", "Preprocessing", "sweep_layers", "simulate_voxels", "evaluate", "Scorecard",
           "brain", "scoring", "behaviour", "errors"]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'neuroreg' has no attribute {name!r}")
    module_name, attr = _LAZY[name]
    value = _import_module(module_name)
    if attr is not None:
        value = getattr(value, attr)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


class _RegisterWhenTimmLoads(_MetaPathFinder):
    """Import hook, used once: after ``timm`` itself is imported, import ``neuroreg.models`` (timm registry)."""

    def find_spec(self, name, path=None, target=None):
        if name != "timm":
            return None
        _sys.meta_path.remove(self)
        spec = _find_spec("timm")
        if spec is None or spec.loader is None:
            return spec
        run_timm = spec.loader.exec_module

        def exec_module(module):
            run_timm(module)
            _import_module("neuroreg.models")

        spec.loader.exec_module = exec_module
        return spec


if "timm" in _sys.modules:
    _import_module("neuroreg.models")
elif not any(isinstance(f, _RegisterWhenTimmLoads) for f in _sys.meta_path):
    _sys.meta_path.insert(0, _RegisterWhenTimmLoads())
