"""Best-layer selection: the one rule every scorer uses to pick a layer from its scores.

The layer with the largest score wins; the first of equal scores wins ties (as
``numpy.argmax`` and ``pandas.Series.idxmax``); NaN scores (an undefined score,
e.g. a constant prediction) never win.
"""

from __future__ import annotations

from typing import Callable, Hashable, Iterable, Sequence

import numpy as np

__all__ = ["best_index", "flag_best_layers", "check_chosen_layers"]


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


def check_chosen_layers(chosen: Iterable[str], available: Iterable[str], *, chosen_on: str, scored: str) -> None:
    """Refuse layers that can be chosen on one data set (``chosen_on``) but that the ``scored`` one does not
    have: no row could be marked best, and the table would silently carry no chosen layer."""
    have = list(dict.fromkeys(available))
    missing = sorted({str(layer) for layer in chosen} - {str(layer) for layer in have})
    if missing:
        raise ValueError(f"{chosen_on} can choose layer(s) {missing}, absent from {scored} (which has {have}); "
                         f"score the same layers on both")
