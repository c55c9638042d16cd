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

from neuroreg._utils.lazy import lazy_exports as _lazy_exports

try:
    __version__ = _version("neuroreg")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

# public name -> the module that defines it, or the subpackage itself (imported on first use)
_EXPORTS = {
    "create_model": "neuroreg.models",
    "list_models": "neuroreg.models",
    "area_layers": "neuroreg.models",
    "extract": "neuroreg.features.extraction",
    "Features": "neuroreg.features.extraction",
    "preprocessing_of": "neuroreg.data.preprocessing",
    "Preprocessing": "neuroreg.data.preprocessing",
    "sweep_layers": "neuroreg.features.layers",
    "simulate_voxels": "neuroreg.features.simulate",
    "evaluate": "neuroreg.scorecard.evaluation",
    "Scorecard": "neuroreg.scorecard.card",
    "brain": "neuroreg.brain",
    "scoring": "neuroreg.scoring",
    "behaviour": "neuroreg.behaviour",
    "errors": "neuroreg.errors",
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

__getattr__, __dir__, _names = _lazy_exports(__name__, _EXPORTS)
__all__ = ["__version__", *_names]


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
