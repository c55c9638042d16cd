"""neuroreg: brain-constrained vision models, brain-regularized training and one scoring core.

>>> import neuroreg as nr
>>> model = nr.create_model("vone_cornet_s", num_classes=10)   # also timm.create_model(...)
>>> feats = nr.extract(model, images, layers=["IT"])
"""

from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("neuroreg")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

from neuroreg import brain, errors, scoring  # noqa: E402
from neuroreg.features import Features, extract  # noqa: E402
from neuroreg.models import area_layers, create_model, list_models  # noqa: E402

__all__ = ["__version__", "create_model", "list_models", "area_layers", "extract", "Features",
           "brain", "scoring", "errors"]
