"""Public names of ``neuroreg.training`` (read by type checkers, and by the package face for its lazy exports)."""

from neuroreg.training.module import BrainRegularizedModule as BrainRegularizedModule
from neuroreg.training.module import capture_outputs as capture_outputs, topk_accuracy as topk_accuracy
from neuroreg.training.callbacks.scorecard import ScorecardCallback as ScorecardCallback
