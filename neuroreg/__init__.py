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
from neuroreg.preprocessing import Preprocessing, preprocessing_of  # noqa: E402
from neuroreg.layer_sweep import sweep_layers  # noqa: E402
from neuroreg.scorecard import Scorecard  # noqa: E402
# `nr.evaluate` is the function; its helpers stay importable from the module
# (`from neuroreg.evaluate import brain_scores`), which import machinery finds in sys.modules.
from neuroreg.evaluate import evaluate  # noqa: E402

__all__ = ["__version__", "create_model", "list_models", "area_layers", "extract", "Features",
           "preprocessing_of", "Preprocessing", "sweep_layers", "evaluate", "Scorecard",
           "brain", "scoring", "errors"]
