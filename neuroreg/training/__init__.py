"""Training with brain regularizers (``neuroreg train``): the LightningModule, checkpointing, the LightningCLI core
and the callbacks (the run's scorecard)."""

from typing import TYPE_CHECKING as _TYPE_CHECKING

from neuroreg._utils.lazy import lazy_exports as _lazy_exports

if _TYPE_CHECKING:  # what the lazy names resolve to, for type checkers (never run)
    from neuroreg.training.module import BrainRegularizedModule as BrainRegularizedModule
    from neuroreg.training.module import capture_outputs as capture_outputs, topk_accuracy as topk_accuracy
    from neuroreg.training.callbacks.scorecard import ScorecardCallback as ScorecardCallback

# public name -> the module that defines it (imported on first use)
_EXPORTS = {
    "BrainRegularizedModule": "neuroreg.training.module",
    "capture_outputs": "neuroreg.training.module",
    "topk_accuracy": "neuroreg.training.module",
    "ScorecardCallback": "neuroreg.training.callbacks.scorecard",
}
__getattr__, __dir__, __all__ = _lazy_exports(__name__, _EXPORTS)
