"""Best-layer selection: the one rule every scorer uses to pick a layer from its scores.

The layer with the largest score wins; the first of equal scores wins ties (as
``numpy.argmax`` and ``pandas.Series.idxmax``); NaN scores (an undefined score,
e.g. a constant prediction) never win.
"""

from __future__ import annotations

from typing import Callable, Hashable, Sequence

import numpy as np

__all__ = ["best_index", "flag_best_layers"]


def best_index(scores: Sequence[float]) -> int | None:
    """Position of the first largest non-NaN value of ``scores``; None when every value is NaN or none is given."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    ok = ~np.isnan(s)
    if not ok.any():
        return None
    return int(np.argmax(np.where(ok, s, -np.inf)))


def flag_best_layers(rows: list[dict], key: Callable[[dict], Hashable], *, split: str = "train",
                     metric: str | None = None) -> None:
    """Set ``row["is_best"]`` on every row: True for the rows of the layer with the highest score on ``split``
    (and ``metric``, when given) among the rows that share ``key(row)``; the first such layer wins ties.
    Scores are finite here (score rows are; a :class:`ScoreTable` refuses anything else)."""
    best: dict = {}
    for r in rows:
        if r["split"] == split and (metric is None or r["metric"] == metric):
            k = key(r)
            if k not in best or r["score"] > best[k][0]:
                best[k] = (r["score"], r["layer"])
    for r in rows:
        r["is_best"] = best[key(r)][1] == r["layer"]
