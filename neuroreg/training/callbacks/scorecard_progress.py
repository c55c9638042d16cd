"""Where the run's scorecard is, and what it cost: one line per stage with its seconds, and the cost against training.

The scorecard of a run is evaluated in stages (brain sets prepared, then the sections of
:func:`neuroreg.scorecard.evaluation.evaluate`: accuracy, attacks, corruptions, brain scores per
data set, FactorTopy; then the report written). Each stage says when it starts and how many
seconds it took, through ``say`` (the callback passes Lightning's ``rank_zero_info``, so the
lines appear where Lightning's own lines do, once per run under DDP). At the end of a run one
line states the scorecard's seconds against the training's.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Callable, Iterator

__all__ = ["EVALUATION_LOGGER", "stage", "stages_of_evaluate", "cost_line"]

#: the logger on which :func:`neuroreg.scorecard.evaluation.evaluate` logs its steps (start, end, seconds)
EVALUATION_LOGGER = "neuroreg.scorecard.evaluation"


@contextlib.contextmanager
def stage(say: Callable[[str], None], label: str) -> Iterator[None]:
    """Say ``"<label> ..."`` before the block and ``"<label> done in <s> s"`` after it."""
    say(f"{label} ...")
    tic = time.perf_counter()
    yield
    say(f"{label} done in {time.perf_counter() - tic:.1f} s")


class _Forward(logging.Handler):
    def __init__(self, say: Callable[[str], None], prefix: str) -> None:
        super().__init__(level=logging.INFO)
        self.say, self.prefix = say, prefix

    def emit(self, record: logging.LogRecord) -> None:
        self.say(f"{self.prefix}{record.getMessage()}")


@contextlib.contextmanager
def stages_of_evaluate(say: Callable[[str], None], prefix: str) -> Iterator[None]:
    """Within the block, every step :func:`~neuroreg.scorecard.evaluation.evaluate` logs (``[i/n] model:
    section ...`` and ``... done in <s> s``) is said with ``prefix``; the logger's level, handlers and
    propagation are restored afterwards (nothing reaches the root logger twice meanwhile)."""
    logger = logging.getLogger(EVALUATION_LOGGER)
    handler = _Forward(say, prefix)
    level, propagate = logger.level, logger.propagate
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


def cost_line(scorecard_seconds: float, training_seconds: float | None, periodic_seconds: float) -> str:
    """One line: the end-of-run scorecard's seconds against the training's (seconds of wall clock; the
    periodic evaluations are part of the training's time and are named separately)."""
    text = f"the end-of-run scorecard took {scorecard_seconds:.1f} s"
    if training_seconds is not None and training_seconds > 0:
        text += (f", {scorecard_seconds / training_seconds:.2g} x the {training_seconds:.1f} s of training "
                 f"(periodic evaluations inside it: {periodic_seconds:.1f} s)")
    return text
