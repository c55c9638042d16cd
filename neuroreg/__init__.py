"""neuroreg: brain-constrained vision models, brain-regularized training and one scoring core.

>>> import neuroreg as nr
>>> model = nr.create_model("vone_cornet_s", num_classes=10)   # also timm.create_model(...)
>>> feats = nr.extract(model, images, layers=["IT"])

Submodules and names are imported on first use, so ``import neuroreg`` (and
``neuroreg --version``) does not load torch.
"""

from importlib import import_module as _import_module
from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("neuroreg")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

# public name -> (module, attribute or None for the module itself)
_LAZY = {
    "brain": ("neuroreg.brain", None),
    "scoring": ("neuroreg.scoring", None),
    "errors": ("neuroreg.errors", None),
    "Features": ("neuroreg.features", "Features"),
    "extract": ("neuroreg.features", "extract"),
    "area_layers": ("neuroreg.models", "area_layers"),
    "create_model": ("neuroreg.models", "create_model"),
    "list_models": ("neuroreg.models", "list_models"),
}

__all__ = ["__version__", "create_model", "list_models", "area_layers", "extract", "Features",
           "brain", "scoring", "errors"]


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
