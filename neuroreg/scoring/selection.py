"""Best-layer selection: the one rule every scorer uses to pick a layer from its scores.

The layer with the largest score wins; the first of equal scores wins ties (as
``numpy.argmax`` and ``pandas.Series.idxmax``); NaN scores (an undefined score,
e.g. a constant prediction) never win.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["best_index"]


def best_index(scores: Sequence[float]) -> int | None:
    """Position of the first largest non-NaN value of ``scores``; None when every value is NaN or none is given."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    ok = ~np.isnan(s)
    if not ok.any():
        return None
    return int(np.argmax(np.where(ok, s, -np.inf)))
