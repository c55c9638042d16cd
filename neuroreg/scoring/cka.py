"""Centered kernel alignment (Kornblith et al. 2019), biased and debiased, differentiable in torch.

CKA(K, L) = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)) for Gram matrices K, L of
the same n stimuli. The biased estimator uses centred Grams; it is strongly
inflated at small n (about 0.67 for independent random data at n = 128 with
wide features), so the debiased estimator, built on the unbiased HSIC
U-statistic of Song et al. (2012), is what training and scoring default to in
Dapello et al. (2023). An RDM target works too: the centred Gram of a
squared-distance matrix D is -H D H / 2 (:func:`gram_from_rdm`).

Precision: float16 and bfloat16 inputs (AMP activations) are promoted to
float32 before any product, float32 stays float32, float64 and numpy inputs
compute in float64; linear-kernel features and every Gram are rescaled (CKA is
invariant to it) so that no product overflows. The result has the working dtype.
CKA is invariant to the order of the stimuli (the same permutation of the rows
of x and y). Minimums: 2 stimuli (biased), 4 (debiased).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from neuroreg._utils.checks import check_finite
from neuroreg.errors import ShapeError, StimulusMismatchError, UnknownNameError
from neuroreg.scoring._precision import promote, rdm_problem

__all__ = ["cka", "cka_from_grams", "gram", "gram_from_rdm", "CKA"]

_KERNELS = ("linear", "rbf")


def _as_tensor(name: str, x) -> Tensor:
    if isinstance(x, Tensor):
        t = x
    else:
        arr = np.asarray(x)
        if arr.dtype.kind not in "fiub":
            raise TypeError(f"{name} must be numeric; got dtype {arr.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float64))
    if not torch.is_floating_point(t):
        t = t.double()
    return promote(t)


def _check_pair(x: Tensor, y: Tensor, debiased: bool, what: str) -> int:
    if x.shape[0] != y.shape[0]:
        raise StimulusMismatchError(
            f"x and y must describe the same stimuli: x has {x.shape[0]} rows, y has {y.shape[0]}")
    n = x.shape[0]
    if debiased and n < 4:
        raise ValueError(f"debiased CKA needs at least 4 stimuli (its U-statistic divides by n - 3); "
                         f"got n = {n} {what}")
    if n < 2:
        raise ValueError(f"CKA needs at least 2 stimuli; got n = {n} {what}")
    return n


def _flatten(name: str, x) -> Tensor:
    t = _as_tensor(name, x)
    if t.ndim < 2:
        raise ShapeError(f"{name} must be (n_stimuli, n_features) (trailing dims are flattened); "
                         f"got shape {tuple(t.shape)}")
    t = t.flatten(1)
    if t.shape[1] == 0:
        raise ShapeError(f"{name} has no features; got shape {tuple(t.shape)}")
    check_finite(name, t)
    return t


def _check_kernel(kernel: str) -> None:
    if kernel not in _KERNELS:
        raise UnknownNameError(f"kernel must be one of {_KERNELS}; got {kernel!r}")


def gram(x, kernel: str = "linear", *, sigma: float | None = None, sigma_scale: float = 1.0) -> Tensor:
    """Gram matrix ``(n, n)`` of ``x (n, ...)`` (trailing dims are flattened).

    ``kernel="linear"``: ``x x^T``. ``kernel="rbf"``: ``exp(-|xi - xj|^2 / (2 sigma^2))``
    with ``sigma`` (feature units) or, when None, ``sigma_scale`` times the median
    off-diagonal Euclidean distance (Kornblith et al. 2019's median heuristic).
    """
    _check_kernel(kernel)
    x = _flatten("x", x)
    return _gram(x, kernel, sigma, sigma_scale)


def _gram(x: Tensor, kernel: str, sigma: float | None, sigma_scale: float) -> Tensor:
    x = x - x.mean(0, keepdim=True)  # no effect on CKA; keeps x x^T well conditioned
    k = x @ x.T
    if kernel == "linear":
        return k
    sq = k.diagonal()
    d2 = (sq[:, None] + sq[None, :] - 2 * k).clamp_min(0)
    bw2: Tensor | float
    if sigma is None:
        n = x.shape[0]
        off = d2[~torch.eye(n, dtype=torch.bool, device=x.device)]
        med = off.median()
        if not bool(med > 0):
            raise ValueError("x has (almost) identical rows: the median pairwise distance is 0, "
                             "so the RBF bandwidth is undefined; pass sigma explicitly")
        bw2 = (sigma_scale ** 2) * med
    else:
        if not sigma > 0:
            raise ValueError(f"sigma must be > 0; got {sigma}")
        bw2 = sigma ** 2
    return torch.exp(-d2 / (2 * bw2))


def gram_from_rdm(d) -> Tensor:
    """Centred Gram ``-H D H / 2`` of a dissimilarity matrix ``D (..., n, n)``.

    For squared Euclidean distances this is exactly the centred linear Gram of
    the underlying patterns (classical MDS); for other RDMs (1 - Pearson r) it
    is the Gram of the stimuli's embedding that the RDM implies.
    """
    given = d.dtype if isinstance(d, (Tensor, np.ndarray)) else None
    d = _as_tensor("d", d)
    if d.ndim < 2 or d.shape[-1] != d.shape[-2]:
        raise ShapeError(f"d must be square (..., n, n); got shape {tuple(d.shape)}")
    check_finite("d", d)
    problem = rdm_problem(d, dtype=given)
    if problem is not None:
        raise ValueError(f"d of shape {tuple(d.shape)} is not a dissimilarity matrix: {problem}")
    row = d.mean(-1, keepdim=True)
    col = d.mean(-2, keepdim=True)
    tot = d.mean((-2, -1), keepdim=True)
    return -0.5 * (d - row - col + tot)


def _hsic_biased(k: Tensor, l: Tensor) -> Tensor:
    """tr(Kc Lc) up to the constant 1 / (n - 1)^2 that cancels in CKA."""
    kc = k - k.mean(-1, keepdim=True) - k.mean(-2, keepdim=True) + k.mean((-2, -1), keepdim=True)
    return (kc * l).sum((-2, -1))  # tr(H K H L) = <H K H, L> with L symmetric


def _hsic_unbiased(k: Tensor, l: Tensor) -> Tensor:
    """Unbiased HSIC (Song et al. 2012, eq. 5) times n (n - 3), the factor that cancels in CKA."""
    n = k.shape[-1]
    eye = torch.eye(n, dtype=torch.bool, device=k.device)
    kt = k.masked_fill(eye, 0)
    lt = l.masked_fill(eye, 0)
    k1 = kt.sum(-1)
    l1 = lt.sum(-1)
    return ((kt * lt).sum((-2, -1))
            + k1.sum(-1) * l1.sum(-1) / ((n - 1) * (n - 2))
            - 2.0 / (n - 2) * (k1 * l1).sum(-1))


def _ratio(xy: Tensor, xx: Tensor, yy: Tensor) -> Tensor:
    for name, v in (("x", xx), ("y", yy)):
        if not bool((v > 0).all()):
            raise ValueError(
                f"{name} carries no variance across stimuli (its self-HSIC is {float(v.min()):.3g} <= 0): "
                f"CKA is undefined for a constant representation")
    return xy / torch.sqrt(xx * yy)


def cka_from_grams(kx, ky, *, debiased: bool = False) -> Tensor:
    """CKA between Gram matrices ``kx, ky (..., n, n)`` (leading dims broadcast).

    The Grams need not be centred (centring is part of the estimator). Returns a
    tensor of the broadcast leading shape (0-d for plain matrices).
    """
    given = [k.dtype if isinstance(k, (Tensor, np.ndarray)) else None for k in (kx, ky)]
    kx = _as_tensor("kx", kx)
    ky = _as_tensor("ky", ky)
    for (name, k), dt in zip((("kx", kx), ("ky", ky)), given):
        if k.ndim < 2 or k.shape[-1] != k.shape[-2]:
            raise ShapeError(f"{name} must be square (..., n, n); got shape {tuple(k.shape)}")
        check_finite(name, k)
        problem = rdm_problem(k, zero_diagonal=False, dtype=dt)
        if problem is not None:
            raise ValueError(f"{name} of shape {tuple(k.shape)} is not a Gram matrix: {problem}")
    if kx.shape[-1] != ky.shape[-1]:
        raise StimulusMismatchError(
            f"kx and ky must describe the same stimuli: kx is {kx.shape[-1]} x {kx.shape[-1]}, "
            f"ky is {ky.shape[-1]} x {ky.shape[-1]}")
    n = kx.shape[-1]
    if debiased and n < 4:
        raise ValueError(f"debiased CKA needs at least 4 stimuli; got Gram matrices of size {n}")
    kx, ky = _promote(kx, ky)
    kx, ky = _unit_scale(kx, (-2, -1)), _unit_scale(ky, (-2, -1))
    h = _hsic_unbiased if debiased else _hsic_biased
    return _ratio(h(kx, ky), h(kx, kx), h(ky, ky))


def _unit_scale(t: Tensor, dims) -> Tensor:
    """``t`` divided by its largest magnitude over ``dims`` (CKA is scale invariant; products stay in range)."""
    m = t.detach().abs().amax(dim=dims, keepdim=True)
    return t / m.clamp_min(torch.finfo(t.dtype).tiny)


def _promote(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    dtype = torch.promote_types(a.dtype, b.dtype)
    return a.to(dtype), b.to(device=a.device, dtype=dtype)


def _linear_feature_space(x: Tensor, y: Tensor, debiased: bool) -> Tensor:
    """Linear CKA from (n, p), (n, q) without forming n x n Grams (cheaper when p, q < n)."""
    x = _unit_scale(x - x.mean(0, keepdim=True), (0, 1))
    y = _unit_scale(y - y.mean(0, keepdim=True), (0, 1))
    xy = (x.T @ y).square().sum()
    xx = (x.T @ x).square().sum()
    yy = (y.T @ y).square().sum()
    if not debiased:
        return _ratio(xy, xx, yy)
    n = x.shape[0]
    # With centred features, K 1 = 0, so the zero-diagonal Gram K~ has K~ 1 = -diag(K).
    dx = x.square().sum(1)
    dy = y.square().sum(1)

    def hsic(t_kl, dk, dl):
        tr = t_kl - (dk * dl).sum()
        return tr + dk.sum() * dl.sum() / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * (dk * dl).sum()

    return _ratio(hsic(xy, dx, dy), hsic(xx, dx, dx), hsic(yy, dy, dy))


def cka(x, y, *, kernel: str = "linear", debiased: bool = False, sigma: float | None = None,
        sigma_scale: float = 1.0) -> Tensor:
    """Centered kernel alignment between two representations of the same stimuli.

    Parameters
    ----------
    x, y: ``(n, ...)`` tensors or arrays (trailing dims are flattened), the same
        ``n`` stimuli in the same order. numpy inputs are computed in float64;
        float16/bfloat16 tensors in float32 (the result is float32 then).
    kernel: ``"linear"`` or ``"rbf"`` (see :func:`gram` for the bandwidth).
    debiased: use the unbiased HSIC estimator (needs ``n >= 4``).

    Returns a 0-d tensor, differentiable with respect to ``x`` and ``y``: in
    [0, 1] for the biased estimator; the debiased one can dip slightly below 0.
    Kornblith et al. (2019), "Similarity of neural network representations revisited".
    """
    _check_kernel(kernel)
    x = _flatten("x", x)
    y = _flatten("y", y)
    _check_pair(x, y, debiased, "")
    x, y = _promote(x, y)
    n, p, q = x.shape[0], x.shape[1], y.shape[1]
    if kernel == "linear" and p * q + p * p + q * q <= n * (p + q):
        return _linear_feature_space(x, y, debiased)
    if kernel == "linear":
        # scale only the linear kernel: the RBF bandwidth sigma is in the features' units
        x, y = _unit_scale(x, (0, 1)), _unit_scale(y, (0, 1))
    kx = _gram(x, kernel, sigma, sigma_scale)
    ky = _gram(y, kernel, sigma, sigma_scale)
    h = _hsic_unbiased if debiased else _hsic_biased
    return _ratio(h(kx, ky), h(kx, kx), h(ky, ky))


class CKA(nn.Module):
    """Module twin of :func:`cka`: ``CKA(kernel="linear", debiased=True)(x, y)`` -> 0-d tensor."""

    def __init__(self, kernel: str = "linear", *, debiased: bool = False, sigma: float | None = None,
                 sigma_scale: float = 1.0) -> None:
        super().__init__()
        _check_kernel(kernel)
        self.kernel = kernel
        self.debiased = debiased
        self.sigma = sigma
        self.sigma_scale = sigma_scale

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return cka(x, y, kernel=self.kernel, debiased=self.debiased, sigma=self.sigma,
                   sigma_scale=self.sigma_scale)

    def extra_repr(self) -> str:
        return f"kernel={self.kernel!r}, debiased={self.debiased}"
