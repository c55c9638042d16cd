"""Public names of ``neuroreg.training.callbacks`` (read by type checkers, and by the package face for its lazy exports)."""

from neuroreg.training.callbacks.scorecard import ScorecardCallback as ScorecardCallback
from neuroreg.training.callbacks.training_state import preserve_training_state as preserve_training_state
from neuroreg.training.callbacks.curves import curve_tags as curve_tags, read_curves as read_curves
from neuroreg.training.callbacks.curves import write_curves as write_curves
from neuroreg.training.callbacks.curves_figure import plot_curves as plot_curves
from neuroreg.training.callbacks.curves_figure import write_curves_figure as write_curves_figure
