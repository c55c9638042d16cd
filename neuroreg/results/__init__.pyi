"""Public names of ``neuroreg.results`` (read by type checkers, and by the package face for its lazy exports)."""

from neuroreg.results.figures import save_figure as save_figure
from neuroreg.results.report import markdown_table as markdown_table, write_table as write_table
from neuroreg.results.report import plot_layer_profile as plot_layer_profile, round_for_reading as round_for_reading
from neuroreg.results.report import Report as Report
from neuroreg.results.selection import best_index as best_index, flag_best_layers as flag_best_layers
from neuroreg.results.selection import check_chosen_layers as check_chosen_layers
from neuroreg.results.table import ScoreTable as ScoreTable, SCORE_COLUMNS as SCORE_COLUMNS
