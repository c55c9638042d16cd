"""Before/after comparison of two FactorTopy fits (e.g. around fine-tuning)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from sklearn.utils.validation import check_is_fitted

from neuroreg.errors import ShapeError
from neuroreg.scoring.factortopy.estimator import FactorTopy
from neuroreg.results.table import ScoreTable


def compare_factortopy(before: FactorTopy, after: FactorTopy, *, levels: Mapping[str, float] | None = None,
                       model: str | None = None) -> ScoreTable:
    """Before/after fine-tuning: hierarchy slope, mean confidence and median R^2, and their change.

    Both estimators must be fitted on the same voxels (same brain data). Rows carry a
    ``stage`` column: ``before``, ``after`` or ``change`` (after - before).
    """
    for name, ft in (("before", before), ("after", after)):
        if not isinstance(ft, FactorTopy):
            raise TypeError(f"{name} must be a fitted FactorTopy; got {type(ft).__name__}")
        check_is_fitted(ft)
    if before.layer_.shape != after.layer_.shape:
        raise ShapeError(f"before and after were fitted on different voxels: {before.layer_.shape[0]} vs "
                         f"{after.layer_.shape[0]}")
    if before.roi_ is not None and after.roi_ is not None and not np.array_equal(before.roi_, after.roi_):
        raise ValueError("before and after were fitted on voxels with different ROI labels")

    def numbers(ft: FactorTopy) -> dict[str, float]:
        out = {"factortopy_confidence": float(ft.confidence_.mean()),
               "factortopy_r2": float(np.median(ft.r2_)),
               "factortopy_depth": float(ft.layer_.mean())}
        if ft.roi_ is not None:
            out["hierarchy_slope"] = ft.hierarchy_slope(levels)
        return out

    nb, na = numbers(before), numbers(after)
    table = ScoreTable()
    for metric in nb:
        for stage, value in (("before", nb[metric]), ("after", na[metric]), ("change", na[metric] - nb[metric])):
            table.append(model=model, region="all", split="val", metric=metric, score=value, stage=stage)
    return table
