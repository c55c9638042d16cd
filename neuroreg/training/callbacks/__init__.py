"""Callbacks of a training run: its scorecard along the way and at the end, the cost rule of the periodic
evaluation, and the curves of scores along training (``curves.csv``, ``curves.png``)."""

from typing import TYPE_CHECKING as _TYPE_CHECKING

from neuroreg._utils.lazy import lazy_exports as _lazy_exports

if _TYPE_CHECKING:  # what the lazy names resolve to, for type checkers (never run)
    from neuroreg.training.callbacks.scorecard import ScorecardCallback as ScorecardCallback
    from neuroreg.training.callbacks.training_state import preserve_training_state as preserve_training_state
    from neuroreg.training.callbacks.curves import (curve_tags as curve_tags, read_curves as read_curves,
                                                    write_curves as write_curves)
    from neuroreg.training.callbacks.curves_figure import (plot_curves as plot_curves,
                                                           write_curves_figure as write_curves_figure)

# public name -> the module that defines it (imported on first use)
_EXPORTS = {
    "ScorecardCallback": "neuroreg.training.callbacks.scorecard",
    "preserve_training_state": "neuroreg.training.callbacks.training_state",
    "curve_tags": "neuroreg.training.callbacks.curves",
    "read_curves": "neuroreg.training.callbacks.curves",
    "write_curves": "neuroreg.training.callbacks.curves",
    "plot_curves": "neuroreg.training.callbacks.curves_figure",
    "write_curves_figure": "neuroreg.training.callbacks.curves_figure",
}
__getattr__, __dir__, __all__ = _lazy_exports(__name__, _EXPORTS)
