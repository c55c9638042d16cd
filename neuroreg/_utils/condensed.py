"""Square RDMs ``(..., n, n)`` <-> condensed upper triangles ``(..., n (n - 1) / 2)``, in scipy's
``squareform`` order (row-major upper triangle). numpy arrays and torch tensors (any device,
differentiable). The one home of these conversions: the data containers, the loaders and the
scoring core all call it.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from neuroreg.errors import ShapeError

__all__ = ["condense", "square", "n_from_condensed"]


def n_from_condensed(m: int) -> int | None:
    """The n with ``n (n - 1) / 2 == m``, or None when ``m`` is no such number."""
    n = int(round((1 + np.sqrt(1 + 8 * m)) / 2))
    return n if n * (n - 1) // 2 == m else None


def condense(d):
    """Upper triangles of square RDMs ``(..., n, n)`` -> ``(..., n (n - 1) / 2)`` in scipy order."""
    if d.ndim < 2 or d.shape[-1] != d.shape[-2]:
        raise ShapeError(f"d must be square (..., n, n); got shape {tuple(d.shape)}")
    n = d.shape[-1]
    if isinstance(d, Tensor):
        iu = torch.triu_indices(n, n, 1, device=d.device)
        return d[..., iu[0], iu[1]]
    iu = np.triu_indices(n, 1)
    return np.asarray(d)[..., iu[0], iu[1]]


def square(v):
    """Condensed RDMs ``(..., m)`` -> square ``(..., n, n)`` with a zero diagonal (inverse of :func:`condense`).

    numpy input gives at least float64; a tensor keeps its dtype and device.
    """
    m = v.shape[-1]
    n = n_from_condensed(m)
    if n is None:
        raise ShapeError(f"a condensed RDM has n (n - 1) / 2 entries; {m} is not such a number")
    if isinstance(v, Tensor):
        iu = torch.triu_indices(n, n, 1, device=v.device)
        flat = v.new_zeros(*v.shape[:-1], n * n).index_copy(-1, iu[0] * n + iu[1], v)
        out = flat.reshape(*v.shape[:-1], n, n)
        return out + out.transpose(-1, -2)
    arr = np.asarray(v)
    out = np.zeros(arr.shape[:-1] + (n, n), dtype=np.result_type(arr.dtype, np.float64))
    iu = np.triu_indices(n, 1)
    out[..., iu[0], iu[1]] = arr
    return out + np.swapaxes(out, -1, -2)
