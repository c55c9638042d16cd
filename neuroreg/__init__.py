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

from neuroreg._utils.lazy import exports_from_stub as _exports_from_stub, lazy_exports as _lazy_exports

try:
    __version__ = _version("neuroreg")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

# public name -> the module that defines it, or the subpackage itself: written once in __init__.pyi;
# imported on first use
_EXPORTS = _exports_from_stub(__name__, __file__)
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
