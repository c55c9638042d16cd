"""Seeded sparse random projection (Achlioptas 2003; Li, Hastie & Church 2006) in torch.

The projection matrix has entries ``+-sqrt(1 / density) / sqrt(n_components)``
with probability ``density / 2`` each and 0 otherwise, ``density = 1 / sqrt(n_features)``
by default (scikit-learn's ``SparseRandomProjection`` convention). It is built in
fixed blocks of input features, each from its own seeded generator, so the same
``seed`` gives the same matrix whatever the batch size or device, and it is kept
sparse: ``n_features = 1,000,000`` to 5,920 dims holds about 5.9 M non-zeros.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from torch import Tensor, nn

from neuroreg._utils.checks import check_finite, check_ndim

__all__ = ["srp_matrix", "sparse_random_projection", "SparseRandomProjection", "jl_min_dim"]

_BLOCK = 1 << 16  # input features per seeded block


def jl_min_dim(n_samples: int, eps: float = 0.1) -> int:
    """Johnson-Lindenstrauss minimum dimension (as scikit-learn's ``johnson_lindenstrauss_min_dim``).

    ``jl_min_dim(1000, 0.1) == 5920``, the veRSA projection size of Conwell et al.
    """
    if not 0 < eps < 1:
        raise ValueError(f"eps must be in (0, 1); got {eps}")
    denom = eps ** 2 / 2 - eps ** 3 / 3
    return int(4 * np.log(n_samples) / denom)


def _block_entries(n_rows: int, n_components: int, density: float, seed: int, block: int):
    """Non-zero (row, col, sign) of one block: each entry is non-zero with probability ``density``."""
    rng = np.random.default_rng([seed, block])
    total = n_rows * n_components
    if density >= 1.0:
        flat = np.arange(total, dtype=np.int64)
    else:
        # Gaps between successes of a Bernoulli process are geometric: exact and O(nnz).
        expected = total * density
        n_draw = int(expected + 6 * math.sqrt(expected) + 16)
        pos = np.cumsum(rng.geometric(density, size=n_draw)) - 1
        while pos[-1] < total:
            more = np.cumsum(rng.geometric(density, size=n_draw)) + pos[-1]
            pos = np.concatenate([pos, more])
        flat = pos[pos < total]
    signs = rng.integers(0, 2, size=flat.size, dtype=np.int8) * 2 - 1
    return flat // n_components, flat % n_components, signs


def srp_matrix(n_features: int, n_components: int, *, density: float | None = None, seed: int = 0,
               dtype: torch.dtype = torch.float32, device=None) -> Tensor:
    """The transposed projection as a sparse CSR tensor ``(n_components, n_features)``.

    ``x @ P`` for ``x (n, n_features)`` is ``(P_T @ x.T).T`` with ``P_T`` returned here.
    """
    if n_features < 1 or n_components < 1:
        raise ValueError(f"n_features and n_components must be >= 1; got {n_features}, {n_components}")
    if density is None:
        density = 1.0 / math.sqrt(n_features)
    if not 0 < density <= 1:
        raise ValueError(f"density must be in (0, 1]; got {density}")
    value = math.sqrt(1.0 / density) / math.sqrt(n_components)
    rows, cols, vals = [], [], []
    for b, start in enumerate(range(0, n_features, _BLOCK)):
        n_rows = min(_BLOCK, n_features - start)
        r, c, s = _block_entries(n_rows, n_components, density, seed, b)
        rows.append(r + start)
        cols.append(c)
        vals.append(s)
    feat = torch.from_numpy(np.concatenate(rows))
    comp = torch.from_numpy(np.concatenate(cols))
    val = torch.from_numpy(np.concatenate(vals)).to(dtype) * value
    coo = torch.sparse_coo_tensor(torch.stack([comp, feat]), val, (n_components, n_features),
                                  check_invariants=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Ss]parse CSR tensor support is in beta.*")
        return coo.coalesce().to_sparse_csr().to(device)


def sparse_random_projection(x: Tensor, n_components: int, *, seed: int = 0,
                             density: float | None = None) -> Tensor:
    """Project ``x (n, d)`` (any trailing shape is flattened) to ``(n, n_components)``."""
    x = x.flatten(1) if x.ndim > 2 else x
    check_ndim("x", x, 2, "n_samples x n_features")
    check_finite("x", x)
    p_t = srp_matrix(x.shape[1], n_components, density=density, seed=seed, dtype=x.dtype, device=x.device)
    return torch.sparse.mm(p_t, x.T.contiguous()).T


class SparseRandomProjection(nn.Module):
    """Module twin of :func:`sparse_random_projection`; the matrix is built once per input width."""

    def __init__(self, n_components: int, *, seed: int = 0, density: float | None = None) -> None:
        super().__init__()
        self.n_components = n_components
        self.seed = seed
        self.density = density
        self._cache: dict[tuple, Tensor] = {}

    def matrix(self, n_features: int, dtype: torch.dtype, device) -> Tensor:
        key = (n_features, dtype, str(device))
        if key not in self._cache:
            self._cache[key] = srp_matrix(n_features, self.n_components, density=self.density,
                                          seed=self.seed, dtype=dtype, device=device)
        return self._cache[key]

    def forward(self, x: Tensor) -> Tensor:
        x = x.flatten(1)
        p_t = self.matrix(x.shape[1], x.dtype, x.device)
        return torch.sparse.mm(p_t, x.T.contiguous()).T

    def extra_repr(self) -> str:
        return f"n_components={self.n_components}, seed={self.seed}"
