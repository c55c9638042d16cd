"""Training with brain regularizers (``neuroreg train``): the LightningModule, checkpointing and the scorecard callback."""

from neuroreg.training.module import BrainRegularizedModule, capture_outputs, topk_accuracy
from neuroreg.training.scorecard_callback import ScorecardCallback

__all__ = [
    "BrainRegularizedModule", "ScorecardCallback", "capture_outputs", "topk_accuracy",
]
