"""Image data: the one preprocessing contract, image-folder DataModules, patterns, EuroSAT, ISIC 2019, splits, sampling."""

from neuroreg._utils.lazy import exports_from_stub as _exports_from_stub, lazy_exports as _lazy_exports

# public name -> the module that defines it, written once in __init__.pyi; imported on first use
_EXPORTS = _exports_from_stub(__name__, __file__)
__getattr__, __dir__, __all__ = _lazy_exports(__name__, _EXPORTS)
