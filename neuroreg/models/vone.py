"""VOneBlock: a fixed V1 front end (Gabor filter bank, simple/complex cells, stochastic spiking noise).

Dapello, Marques, et al. (2020), "Simulating a Primary Visual Cortex at the
Front of CNNs Improves Robustness to Image Perturbations", NeurIPS.

Parameters per channel follow the published recipes: orientation from the
De Valois et al. (1982a) histogram, spatial frequency from De Valois et al.
(1982b), envelope sizes ``nx``/``ny`` (in cycles) from the Ringach (2002) joint
histogram, ``nx`` tied to spatial frequency by a Gaussian copula (corr 0.75),
phase uniform. Each filter reads one input colour channel.

>>> block = VOneBlock(image_size=64, visual_degrees=8, simple_channels=32, complex_channels=32)
>>> block(torch.rand(2, 3, 64, 64)).shape          # (B, 64, 16, 16), simple then complex channels
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import norm
from torch import Tensor, nn

from neuroreg.errors import ShapeError

__all__ = ["VOneBlock", "vone_block", "gabor_kernel", "sample_gabor_params", "vone_noise",
           "ORIENTATION_EDGES_DEG", "ORIENTATION_COUNTS", "SF_EDGES_CPD", "SF_COUNTS", "ENVELOPE_EDGES",
           "RINGACH_NXNY_COUNTS", "NOISE_MODES"]

#: De Valois, Yund & Hepler (1982a): preferred orientation, bins centred on 0/45/90/135 deg.
ORIENTATION_EDGES_DEG = np.array([-22.5, 22.5, 67.5, 112.5, 157.5])
ORIENTATION_COUNTS = np.array([66, 49, 77, 54])
#: De Valois, Albrecht & Thorell (1982b): peak spatial frequency (cycles/degree), foveal cells.
SF_EDGES_CPD = np.array([0.5, 0.7, 1.0, 1.4, 2.0, 2.8, 4.0, 5.6, 8.0])
SF_COUNTS = np.array([4, 4, 8, 25, 32, 26, 28, 12])
#: Ringach (2002): envelope size in cycles, log-spaced bin edges 10**-1 .. 10**0.2 shared by nx and ny.
ENVELOPE_EDGES = np.logspace(-1, 0.2, 6)
#: Ringach (2002) joint counts; rows = nx bins, columns = ny bins.
RINGACH_NXNY_COUNTS = np.array([[2, 0, 1, 0, 0],
                                [8, 9, 4, 1, 0],
                                [1, 2, 19, 17, 3],
                                [0, 0, 1, 7, 4],
                                [0, 0, 0, 0, 0]], dtype=float)
NOISE_MODES = ("neuronal", "gaussian", "none", None)
_SQRT2 = math.sqrt(2.0)
_SQRT_EPS = 1e-8        # keeps the complex-cell gradient finite where q0 = q1 = 0
_NOISE_EPS = 1e-4       # the original's floor under the Poisson standard deviation


def _histogram_quantile(u: np.ndarray, counts: np.ndarray, log_edges: np.ndarray) -> np.ndarray:
    """Inverse CDF of a histogram that is uniform in log space within each bin (returns log values)."""
    cdf = np.concatenate([[0.0], np.cumsum(counts / counts.sum())])
    return np.interp(u, cdf, log_edges)


def sample_gabor_params(n: int, *, seed: int = 0, sf_corr: float = 0.75, sf_max: float = 9.0,
                        sf_min: float = 0.0) -> dict[str, Tensor]:
    """Draw ``n`` V1 Gabor parameter sets from the published distributions.

    Returns float64 1-D tensors ``sf`` (cycles/degree), ``theta`` and ``phase``
    (radians), ``nx``, ``ny`` (envelope standard deviations in cycles of the
    carrier). Spatial-frequency bins are kept while their edges lie in
    ``[sf_min, sf_max]`` (the original keeps all 8 bins with ``sf_max = 9``).
    ``nx`` and ``sf`` are coupled through a Gaussian copula with correlation
    ``sf_corr`` (Schiller et al. 1976 via Dapello et al. 2020); ``ny`` is drawn
    from the Ringach (2002) histogram conditional on ``nx``'s bin.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive int; got {n!r}")
    if not -1.0 < sf_corr < 1.0:
        raise ValueError(f"sf_corr must lie in (-1, 1); got {sf_corr}")
    keep = np.nonzero((SF_EDGES_CPD <= sf_max + 1e-12) & (SF_EDGES_CPD >= sf_min - 1e-12))[0]
    if len(keep) < 2:
        raise ValueError(f"no spatial-frequency bin of {SF_EDGES_CPD.tolist()} c/deg lies in "
                         f"[sf_min={sf_min}, sf_max={sf_max}]")
    sf_edges = SF_EDGES_CPD[keep[0]:keep[-1] + 1]
    sf_counts = SF_COUNTS[keep[0]:keep[-1]]
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0.0, 2.0 * np.pi, n)
    ori_bin = rng.choice(len(ORIENTATION_COUNTS), size=n, p=ORIENTATION_COUNTS / ORIENTATION_COUNTS.sum())
    ori = rng.uniform(ORIENTATION_EDGES_DEG[ori_bin], ORIENTATION_EDGES_DEG[ori_bin + 1])
    ori = np.where(ori < 0, ori + 180.0, ori)
    z = rng.multivariate_normal([0.0, 0.0], [[1.0, sf_corr], [sf_corr, 1.0]], size=n)
    u = norm.cdf(z)
    nx_counts = RINGACH_NXNY_COUNTS.sum(axis=1)
    log_edges = np.log10(ENVELOPE_EDGES)
    nx = 10 ** _histogram_quantile(u[:, 0], nx_counts, log_edges)
    sf = 2 ** _histogram_quantile(u[:, 1], sf_counts, np.log2(sf_edges))
    nx_bin = np.clip(np.searchsorted(ENVELOPE_EDGES, nx, side="right") - 1, 0, len(nx_counts) - 1)
    u_ny = rng.uniform(size=n)
    ny = np.empty(n)
    for b in np.unique(nx_bin):
        rows = nx_bin == b
        ny[rows] = 10 ** _histogram_quantile(u_ny[rows], RINGACH_NXNY_COUNTS[b], log_edges)
    as_t = lambda a: torch.as_tensor(a, dtype=torch.float64)  # noqa: E731
    return {"sf": as_t(sf), "theta": as_t(np.deg2rad(ori)), "phase": as_t(phase), "nx": as_t(nx), "ny": as_t(ny)}


def gabor_kernel(sf: Tensor, theta: Tensor, phase: Tensor, sigma_x: Tensor, sigma_y: Tensor, ksize: int) -> Tensor:
    """Gabor kernels ``(n, ksize, ksize)`` from 1-D tensors of length ``n`` (pixel units).

    ``g(x, y) = exp(-(rx^2/sx^2 + ry^2/sy^2) / 2) / (2 pi sx sy) * cos(2 pi f rx + phase)``
    with ``rx = x cos(theta) + y sin(theta)``, ``ry = -x sin(theta) + y cos(theta)``,
    ``x`` to the right and ``y`` down from the kernel centre, ``f = sf`` in
    cycles/pixel. A grating ``cos(2 pi f (x cos theta + y sin theta))`` drives it best.
    """
    coords = torch.arange(ksize, dtype=torch.float64) - (ksize - 1) / 2
    y, x = torch.meshgrid(coords, coords, indexing="ij")
    th, f, ph = theta[:, None, None], sf[:, None, None], phase[:, None, None]
    sx, sy = sigma_x[:, None, None], sigma_y[:, None, None]
    rx = x * torch.cos(th) + y * torch.sin(th)
    ry = -x * torch.sin(th) + y * torch.cos(th)
    envelope = torch.exp(-0.5 * (rx ** 2 / sx ** 2 + ry ** 2 / sy ** 2)) / (2 * math.pi * sx * sy)
    return envelope * torch.cos(2 * math.pi * f * rx + ph)


def vone_noise(x: Tensor, mode: str | None = "neuronal", noise_scale: float = 0.35, noise_level: float = 0.07,
               generator: torch.Generator | None = None) -> Tensor:
    """Stochastic spiking noise of VOneBlock, followed by ReLU; active in train and eval alike.

    ``"neuronal"``: responses are mapped to spike counts ``c = noise_scale * x + noise_level``,
    Gaussian noise of variance ``c`` (Poisson-like: variance = mean) is added and
    the map is inverted, so ``Var[out] = (noise_scale * x + noise_level) / noise_scale^2``
    (before the ReLU). ``"gaussian"``: additive noise of standard deviation
    ``noise_scale``. ``None`` or ``"none"``: ReLU only.
    """
    if mode is None or mode == "none":
        return F.relu(x)
    if mode not in NOISE_MODES:
        raise ValueError(f"noise mode must be one of {NOISE_MODES}; got {mode!r}")
    eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    in_place = not (torch.is_grad_enabled() and x.requires_grad)   # same maths, fewer allocations
    if mode == "gaussian":
        return eps.mul_(noise_scale).add_(x).relu_() if in_place else F.relu(x + eps * noise_scale)
    # ((c + eps * sqrt(relu(c))) - level) / scale with c = scale * x + level, simplified:
    if in_place:
        sd = x.mul(noise_scale).add_(noise_level).clamp_(min=0).add_(_NOISE_EPS).sqrt_().div_(noise_scale)
        return eps.mul_(sd).add_(x).relu_()
    sd = torch.sqrt(F.relu(x * noise_scale + noise_level) + _NOISE_EPS) / noise_scale
    return F.relu(x + eps * sd)


def _grouped_layout(weight: Tensor, colour: Tensor, in_channels: int, simple_channels: int,
                    k_exc: float) -> tuple[Tensor, Tensor]:
    """Rearrange single-colour kernels ``(n + m, 1, k, k)`` for one grouped convolution over the colours.

    Returns the padded bank ``(in_channels * g, 1, k, k)`` (group c = kernels
    reading colour c, zero-padded to the largest group size g) and the index
    putting grouped outputs back in filter order. The gain is folded into the
    kernels: ``k_exc`` for simple cells, ``k_exc / sqrt(2)`` for the quadrature
    pairs of complex cells (``k sqrt(a^2 + b^2) / sqrt(2) = sqrt((ka/sqrt2)^2 + (kb/sqrt2)^2)``).
    """
    gain = torch.full((weight.shape[0], 1, 1, 1), k_exc / _SQRT2, dtype=weight.dtype, device=weight.device)
    gain[:simple_channels] = k_exc
    weight = weight * gain
    counts = torch.bincount(colour, minlength=in_channels)
    g = int(counts.max())
    grouped = weight.new_zeros(in_channels * g, *weight.shape[1:])
    gather = torch.empty_like(colour)
    for c in range(in_channels):
        idx = (colour == c).nonzero().flatten()
        slots = c * g + torch.arange(len(idx), device=colour.device)
        grouped[slots] = weight[idx]
        gather[idx] = slots
    return grouped, gather


def _cells(q: Tensor, gather: Tensor, simple_channels: int, n_channels: int) -> Tensor:
    """Grouped filter outputs -> [ReLU(q0) of simple cells, sqrt(q0^2 + q1^2) of complex cells]."""
    q_s = q.index_select(1, gather[:simple_channels])
    q0 = q.index_select(1, gather[simple_channels:n_channels])
    q1 = q.index_select(1, gather[n_channels:])
    if not (torch.is_grad_enabled() and q.requires_grad):
        return torch.cat([q_s.relu_(), q0.square_().add_(q1.square_()).add_(_SQRT_EPS).sqrt_()], dim=1)
    return torch.cat([F.relu(q_s), torch.sqrt(q0.square() + q1.square() + _SQRT_EPS)], dim=1)


def vone_block(x: Tensor, weight: Tensor, colour: Tensor, simple_channels: int, *, stride: int = 4,
               noise_mode: str | None = "neuronal", noise_scale: float = 0.35, noise_level: float = 0.07,
               k_exc: float = 25.0, generator: torch.Generator | None = None) -> Tensor:
    """Functional VOneBlock.

    x: ``(B, C, H, W)`` images (normalized with mean = std = 0.5 in the original).
    weight: ``(n + m, 1, k, k)`` single-colour kernels: the q0 filters of all
    ``n`` channels (simple first), then the q1 (phase + pi/2) filters of the
    ``m = n - simple_channels`` complex channels; colour: ``(n + m,)`` input
    channel each kernel reads. Returns ``(B, n, H', W')``: ``k_exc * ReLU(q0)``
    for the simple channels, ``k_exc * sqrt(q0^2 + q1^2) / sqrt(2)`` for the
    complex ones, through :func:`vone_noise`. All filters run in one
    (colour-grouped) convolution.
    """
    n_channels = (weight.shape[0] + simple_channels) // 2
    grouped, gather = _grouped_layout(weight, colour, x.shape[1], simple_channels, k_exc)
    q = F.conv2d(x, grouped, None, stride, weight.shape[-1] // 2, 1, x.shape[1])
    return vone_noise(_cells(q, gather, simple_channels, n_channels), noise_mode, noise_scale, noise_level, generator)


def _check_count(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be a non-negative int; got {value!r}")
    return int(value)


class VOneBlock(nn.Module):
    """Fixed V1 front end: Gabor bank -> simple/complex cells -> noise (Dapello et al. 2020).

    Args:
        image_size: input size in pixels; with ``visual_degrees`` it sets the
            pixels per degree ``ppd = image_size / visual_degrees`` (224/8 = 28).
        visual_degrees: field of view of the image in degrees.
        simple_channels, complex_channels: number of cells of each type.
        ksize, stride: Gabor kernel size and stride in pixels (25, 4).
        noise_mode: ``"neuronal"`` (default; on in eval too), ``"gaussian"``, or ``None`` /
            ``"none"`` for no noise (``timm.create_model`` drops keywords set to
            ``None``, so pass ``noise_mode="none"`` there).
        noise_scale, noise_level: noise parameters (see :func:`vone_noise`).
        k_exc: gain from filter response to firing rate.
        seed: seeds the Gabor parameters and the colour channel of each filter.
        sf_corr, sf_max: copula correlation and highest spatial frequency
            (c/deg); frequencies are also capped at the Nyquist limit ``ppd / 2``
            so that small images (32/64 px) get no aliased filters.
        in_channels: input channels (3 for RGB).
        params: explicit parameters instead of sampling (see :meth:`from_params`).
        colour: explicit input channel per cell instead of sampling.

    ``block.params`` holds 1-D tensors ``sf`` (c/deg), ``theta``, ``phase`` (rad),
    ``nx``, ``ny`` (cycles), one entry per channel, simple channels first. The
    filters are buffers (never trained); the output ``(B, simple + complex,
    H/stride, W/stride)`` lists simple then complex channels.
    """

    def __init__(self, image_size: int = 224, visual_degrees: float = 8, simple_channels: int = 256,
                 complex_channels: int = 256, ksize: int = 25, stride: int = 4, noise_mode: str | None = "neuronal",
                 noise_scale: float = 0.35, noise_level: float = 0.07, k_exc: float = 25.0, seed: int = 0, *,
                 sf_corr: float = 0.75, sf_max: float = 9.0, in_channels: int = 3,
                 params: Mapping[str, Tensor] | None = None, colour: Tensor | None = None) -> None:
        super().__init__()
        self.simple_channels = _check_count("simple_channels", simple_channels)
        self.complex_channels = _check_count("complex_channels", complex_channels)
        n = self.simple_channels + self.complex_channels
        if n == 0:
            raise ValueError("simple_channels + complex_channels must be at least 1")
        if image_size <= 0 or visual_degrees <= 0:
            raise ValueError(f"image_size and visual_degrees must be positive; got {image_size}, {visual_degrees}")
        if _check_count("ksize", ksize) < 1 or _check_count("stride", stride) < 1:
            raise ValueError(f"ksize and stride must be positive; got {ksize}, {stride}")
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}; got {noise_mode!r}")
        self.image_size, self.visual_degrees = image_size, visual_degrees
        self.ppd = image_size / visual_degrees
        self.ksize, self.stride, self.in_channels = ksize, stride, _check_count("in_channels", in_channels)
        self.noise_mode, self.noise_scale, self.noise_level = noise_mode, noise_scale, noise_level
        self._k_exc = float(k_exc)
        self.seed = seed
        rng = torch.Generator().manual_seed(int(seed))
        if params is None:
            params = sample_gabor_params(n, seed=seed, sf_corr=sf_corr, sf_max=min(sf_max, self.ppd / 2))
        params = self._check_params(params, n)
        if colour is None:
            colour = torch.randint(0, self.in_channels, (n,), generator=rng)
        colour = torch.as_tensor(colour, dtype=torch.long).flatten()
        if colour.shape != (n,) or bool((colour < 0).any()) or bool((colour >= self.in_channels).any()):
            raise ValueError(f"colour must hold {n} channel indices in [0, {self.in_channels}); got shape "
                             f"{tuple(colour.shape)}, values {colour.unique().tolist()[:8]}")
        for key, value in params.items():
            self.register_buffer(key, value.float(), persistent=False)
        sf_cpp = params["sf"] / self.ppd
        q0 = gabor_kernel(sf_cpp, params["theta"], params["phase"], params["nx"] / sf_cpp, params["ny"] / sf_cpp, ksize)
        cx = slice(self.simple_channels, n)
        q1 = gabor_kernel(sf_cpp[cx], params["theta"][cx], params["phase"][cx] + math.pi / 2,
                          params["nx"][cx] / sf_cpp[cx], params["ny"][cx] / sf_cpp[cx], ksize)
        self.register_buffer("weight", torch.cat([q0, q1]).unsqueeze(1).float())
        self.register_buffer("colour", torch.cat([colour, colour[cx]]))
        self.register_buffer("_grouped_weight", torch.empty(0), persistent=False)
        self.register_buffer("_gather", torch.empty(0, dtype=torch.long), persistent=False)
        self._rebuild_layout()
        self.register_load_state_dict_post_hook(lambda module, _: module._rebuild_layout())

    @staticmethod
    def _check_params(params: Mapping[str, Tensor], n: int) -> dict[str, Tensor]:
        names = ("sf", "theta", "phase", "nx", "ny")
        missing = [k for k in names if k not in params]
        if missing:
            raise ValueError(f"params is missing {missing}; expected keys {list(names)}")
        out = {}
        for k in names:
            v = torch.as_tensor(params[k], dtype=torch.float64).flatten()
            if v.shape != (n,):
                raise ShapeError(f"params[{k!r}] must hold one value per channel ({n}); got shape {tuple(v.shape)}")
            if not bool(torch.isfinite(v).all()):
                raise ValueError(f"params[{k!r}] contains NaN or inf")
            out[k] = v
        for k in ("sf", "nx", "ny"):
            if bool((out[k] <= 0).any()):
                raise ValueError(f"params[{k!r}] must be positive; smallest value {float(out[k].min())}")
        return out

    @classmethod
    def from_params(cls, sf, theta, phase, nx, ny, *, simple_channels: int | None = None,
                    complex_channels: int | None = None, **kwargs) -> VOneBlock:
        """Block with explicit Gabor parameters: 1-D ``sf`` (cycles/degree), ``theta``, ``phase``
        (radians), ``nx``, ``ny`` (cycles); the first ``simple_channels`` are simple cells,
        the remaining ``complex_channels`` complex. Other keywords as the constructor."""
        n = int(torch.as_tensor(sf).numel())
        if simple_channels is None and complex_channels is None:
            simple_channels, complex_channels = n, 0
        elif simple_channels is None:
            simple_channels = n - complex_channels
        elif complex_channels is None:
            complex_channels = n - simple_channels
        if simple_channels + complex_channels != n:
            raise ValueError(f"simple_channels + complex_channels ({simple_channels} + {complex_channels}) must "
                             f"equal the number of parameter sets ({n})")
        params = {"sf": sf, "theta": theta, "phase": phase, "nx": nx, "ny": ny}
        return cls(simple_channels=simple_channels, complex_channels=complex_channels, params=params, **kwargs)

    @property
    def params(self) -> dict[str, Tensor]:
        return {k: getattr(self, k) for k in ("sf", "theta", "phase", "nx", "ny")}

    @property
    def k_exc(self) -> float:
        """Gain from filter response to firing rate (folded into the filters; fixed at construction)."""
        return self._k_exc

    @property
    def out_channels(self) -> int:
        return self.simple_channels + self.complex_channels

    def _rebuild_layout(self) -> None:
        grouped, gather = _grouped_layout(self.weight, self.colour, self.in_channels, self.simple_channels,
                                          self._k_exc)
        self._grouped_weight, self._gather = grouped, gather

    def forward(self, x: Tensor) -> Tensor:
        """Images ``(B, in_channels, H, W)`` -> responses ``(B, simple + complex, H', W')``."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ShapeError(f"VOneBlock input must be (B, {self.in_channels}, H, W); got {tuple(x.shape)}")
        q = F.conv2d(x, self._grouped_weight, None, self.stride, self.ksize // 2, 1, self.in_channels)
        r = _cells(q, self._gather, self.simple_channels, self.out_channels)
        return vone_noise(r, self.noise_mode, self.noise_scale, self.noise_level)

    def extra_repr(self) -> str:
        return (f"simple={self.simple_channels}, complex={self.complex_channels}, ppd={self.ppd:g}, "
                f"ksize={self.ksize}, stride={self.stride}, noise_mode={self.noise_mode!r}")
