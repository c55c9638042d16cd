"""Matching stimulus ids between data sets (one lookup, one error message)."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from neuroreg.errors import StimulusMismatchError


def rows_of(wanted: Sequence[Any] | np.ndarray, available: Sequence[Any] | np.ndarray, *, what: str, where: str,
            key: Callable[[Any], Any] | None = None) -> np.ndarray:
    """Row of each id of ``wanted`` in ``available``: ``(len(wanted),)`` int64.

    ``what`` names the wanted ids and ``where`` the data holding ``available``
    in the error raised when some are missing. ``key`` maps ids before matching
    (``str`` lets ``3`` meet ``"3"`` across file formats).
    """
    k = key if key is not None else (lambda s: s)
    available = np.asarray(available).tolist()
    wanted = np.asarray(wanted).tolist()
    pos = {k(s): i for i, s in enumerate(available)}
    missing = [s for s in wanted if k(s) not in pos]
    if missing:
        raise StimulusMismatchError(
            f"{len(missing)} of {len(wanted)} {what} have no row in {where} "
            f"(first: {missing[:5]}; its ids start {available[:5]})")
    return np.array([pos[k(s)] for s in wanted], dtype=np.int64)
