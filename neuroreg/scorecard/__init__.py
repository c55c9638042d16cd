"""One scorecard for every model: ``nr.evaluate``, :class:`Scorecard` and its report."""

from typing import TYPE_CHECKING as _TYPE_CHECKING

from neuroreg._utils.lazy import lazy_exports as _lazy_exports

if _TYPE_CHECKING:  # what the lazy names resolve to, for type checkers (never run)
    from neuroreg.scorecard.card import Scorecard as Scorecard
    from neuroreg.scorecard.summary import (summarize_brain as summarize_brain, SECTIONS as SECTIONS,
                                            summary_table as summary_table)
    from neuroreg.scorecard.evaluation import (evaluate as evaluate, accuracy as accuracy, brain_scores as brain_scores,
                                               factortopy_scores as factortopy_scores,
                                               resolve_brain_set as resolve_brain_set)
    from neuroreg.scorecard.report import (plot_comparison as plot_comparison, plot_depth_profile as plot_depth_profile,
                                           plot_rdm_pair as plot_rdm_pair, write_scorecard as write_scorecard)

# public name -> the module that defines it (imported on first use)
_EXPORTS = {
    "Scorecard": "neuroreg.scorecard.card",
    "summarize_brain": "neuroreg.scorecard.summary",
    "SECTIONS": "neuroreg.scorecard.summary",
    "summary_table": "neuroreg.scorecard.summary",
    "evaluate": "neuroreg.scorecard.evaluation",
    "accuracy": "neuroreg.scorecard.evaluation",
    "brain_scores": "neuroreg.scorecard.evaluation",
    "factortopy_scores": "neuroreg.scorecard.evaluation",
    "resolve_brain_set": "neuroreg.scorecard.evaluation",
    "plot_comparison": "neuroreg.scorecard.report",
    "plot_depth_profile": "neuroreg.scorecard.report",
    "plot_rdm_pair": "neuroreg.scorecard.report",
    "write_scorecard": "neuroreg.scorecard.report",
}
__getattr__, __dir__, __all__ = _lazy_exports(__name__, _EXPORTS)
