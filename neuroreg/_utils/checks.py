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


def check_class_weights(name: str, weights) -> torch.Tensor:
    """Per-class loss weights as a float32 tensor; refuse NaN/inf, negative weights or all zeros, naming ``name``.

    A negative weight turns the cross-entropy of that class into a reward for
    getting it wrong; all zeros leave no loss to train on.
    """
    w = torch.as_tensor(weights, dtype=torch.float64).detach().cpu()
    if w.ndim != 1 or len(w) == 0:
        raise ShapeError(f"{name} must be a list of one weight per class; got shape {tuple(w.shape)}")
    check_finite(name, w)
    if bool((w < 0).any()):
        i = int(torch.nonzero(w < 0)[0])
        raise ValueError(f"{name} must be >= 0 (one weight per class); {name}[{i}] is {float(w[i]):g}")
    if not bool((w > 0).any()):
        raise ValueError(f"{name} must have at least one weight > 0; got all zeros ({len(w)} classes)")
    return w.to(torch.float32)
