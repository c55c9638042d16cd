"""Public names of ``neuroreg.scorecard`` (read by type checkers, and by the package face for its lazy exports)."""

from neuroreg.scorecard.card import Scorecard as Scorecard
from neuroreg.scorecard.summary import summarize_brain as summarize_brain, SECTIONS as SECTIONS
from neuroreg.scorecard.summary import summary_table as summary_table
from neuroreg.scorecard.evaluation import evaluate as evaluate, accuracy as accuracy, brain_scores as brain_scores
from neuroreg.scorecard.evaluation import factortopy_scores as factortopy_scores, resolve_brain_set as resolve_brain_set
from neuroreg.scorecard.report import plot_comparison as plot_comparison, plot_depth_profile as plot_depth_profile
from neuroreg.scorecard.report import plot_rdm_pair as plot_rdm_pair, write_scorecard as write_scorecard
