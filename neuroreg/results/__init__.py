"""Results: ScoreTable, best-layer selection, the one figure writer, reports."""

from typing import TYPE_CHECKING as _TYPE_CHECKING

from neuroreg._utils.lazy import lazy_exports as _lazy_exports

if _TYPE_CHECKING:  # what the lazy names resolve to, for type checkers (never run)
    from neuroreg.results.figures import save_figure as save_figure
    from neuroreg.results.report import (markdown_table as markdown_table, write_table as write_table,
                                         plot_layer_profile as plot_layer_profile,
                                         round_for_reading as round_for_reading, Report as Report)
    from neuroreg.results.selection import (best_index as best_index, flag_best_layers as flag_best_layers,
                                            check_chosen_layers as check_chosen_layers)
    from neuroreg.results.table import ScoreTable as ScoreTable, SCORE_COLUMNS as SCORE_COLUMNS

# public name -> the module that defines it (imported on first use)
_EXPORTS = {
    "save_figure": "neuroreg.results.figures",
    "markdown_table": "neuroreg.results.report",
    "write_table": "neuroreg.results.report",
    "plot_layer_profile": "neuroreg.results.report",
    "round_for_reading": "neuroreg.results.report",
    "Report": "neuroreg.results.report",
    "best_index": "neuroreg.results.selection",
    "flag_best_layers": "neuroreg.results.selection",
    "check_chosen_layers": "neuroreg.results.selection",
    "ScoreTable": "neuroreg.results.table",
    "SCORE_COLUMNS": "neuroreg.results.table",
}
__getattr__, __dir__, __all__ = _lazy_exports(__name__, _EXPORTS)
