"""Input checks shared by the public functions (raise named, explicit errors)."""

from __future__ import annotations

import numpy as np
import torch

from neuroreg.errors import NonFiniteError, ShapeError


def check_finite(name: str, x) -> None:
    """Raise NonFiniteError naming ``name`` and the first bad index if ``x`` has NaN/inf."""
    if isinstance(x, torch.Tensor):
        # A NaN or inf anywhere makes the sum non-finite: one reduction instead of a mask for clean input.
        if not torch.is_floating_point(x) and not torch.is_complex(x):
            return
        if bool(torch.isfinite(x.sum())):
            return
        bad = ~torch.isfinite(x)
        if bool(bad.any()):
            first = tuple(int(i) for i in bad.nonzero()[0].tolist())
            n_bad = int(bad.sum())
            raise NonFiniteError(
                f"{name} contains non-finite values (NaN or inf): {n_bad} of {x.numel()} "
                f"entries, first at index {first}")
        return
    arr = np.asarray(x)
    if arr.dtype.kind in "fc":
        with np.errstate(over="ignore", invalid="ignore"):
            if np.isfinite(arr.sum()):
                return
        bad = ~np.isfinite(arr)
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            raise NonFiniteError(
                f"{name} contains non-finite values (NaN or inf): {int(bad.sum())} of "
                f"{arr.size} entries, first at index {first}")


def check_ndim(name: str, x, ndim: int, what: str) -> None:
    """Raise ShapeError unless ``x`` has ``ndim`` dimensions (``what`` describes them)."""
    if x.ndim != ndim:
        raise ShapeError(f"{name} must be {ndim}-D ({what}); got shape {tuple(x.shape)}")
