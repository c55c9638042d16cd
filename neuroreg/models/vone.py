"""VOneBlock: a fixed V1 front end (Gabor filter bank, simple/complex cells, stochastic spiking noise).

Dapello, Marques, et al. (2020), "Simulating a Primary Visual Cortex at the
Front of CNNs Improves Robustness to Image Perturbations", NeurIPS.

Parameters per channel follow the published recipes: orientation from the
De Valois et al. (1982a) histogram, spatial frequency from De Valois et al.
(1982b), envelope sizes ``nx``/``ny`` (in cycles) from the Ringach (2002) joint
histogram, ``nx`` tied to spatial frequency by a Gaussian copula (corr 0.75),
phase uniform. Each filter reads one input colour channel, drawn at random; the
quadrature filter of a complex cell draws its own (as the original does).
Kernels use the official axes (see :func:`gabor_kernel`).

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
           "RINGACH_NXNY_COUNTS", "NOISE_MODES", "RNGS", "OFFICIAL_FLAGS"]

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


RNGS = ("default", "official")


def _interp_cdf(u: np.ndarray, probs: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Inverse CDF of a piecewise-uniform histogram (``probs`` sum to 1, ``values`` = bin edges)."""
    return np.interp(u, np.hstack(([0], probs.cumsum())), values)


def _sample_official(n: int, seed: int, sf_corr: float, sf_max: float, sf_min: float) -> dict[str, np.ndarray]:
    """The official vonenet draw (``generate_gabor_param``), number for number.

    Same generator (legacy ``np.random.seed(seed)``, here a private
    ``RandomState(seed)`` so no global state is touched), same order of draws
    (phase, orientation, the copula pair, ny) and the same arithmetic, so the
    float64 results are identical. Angles come back in radians as the official
    ``VOneNet`` converts them (``deg / 180 * pi``).
    """
    state = np.random.RandomState(seed)
    ori_probs = ORIENTATION_COUNTS / ORIENTATION_COUNTS.sum()
    joint = RINGACH_NXNY_COUNTS / RINGACH_NXNY_COUNTS.sum()
    nx_probs = joint.sum(axis=1)
    nx_probs = nx_probs / nx_probs.sum()
    with np.errstate(invalid="ignore", divide="ignore"):     # the empty last nx row is never used
        ny_probs = joint / joint.sum(axis=1, keepdims=True)
    hi = np.where(SF_EDGES_CPD <= sf_max)[0][-1]
    lo = np.where(SF_EDGES_CPD >= sf_min)[0][0]
    sf_edges = SF_EDGES_CPD[lo:hi + 1]
    sf_probs = SF_COUNTS[lo:hi] / SF_COUNTS[lo:hi].sum()

    phase = _interp_cdf(state.rand(n), np.array([1]), np.array([0, 360]))
    ori = _interp_cdf(state.rand(n), ori_probs, ORIENTATION_EDGES_DEG)
    ori[ori < 0] = ori[ori < 0] + 180
    u = norm.cdf(state.multivariate_normal([0, 0], np.array([[1, sf_corr], [sf_corr, 1]]), n))
    nx = 10 ** _interp_cdf(u[:, 0], nx_probs, np.log10(ENVELOPE_EDGES))
    u_ny = state.rand(n)
    ny = np.zeros(n)
    for i in range(n):
        row = np.argwhere(ENVELOPE_EDGES < nx[i])[-1, 0]
        ny[i] = _interp_cdf(u_ny[i], ny_probs[row], np.log10(ENVELOPE_EDGES))
    ny = 10 ** ny
    sf = 2 ** _interp_cdf(u[:, 1], sf_probs, np.log2(sf_edges))
    return {"sf": sf, "theta": ori / 180 * np.pi, "phase": phase / 180 * np.pi, "nx": nx, "ny": ny}


def sample_gabor_params(n: int, *, seed: int = 0, sf_corr: float = 0.75, sf_max: float = 9.0,
                        sf_min: float = 0.0, rng: str = "default") -> dict[str, Tensor]:
    """Draw ``n`` V1 Gabor parameter sets from the published distributions.

    Returns float64 1-D tensors ``sf`` (cycles/degree), ``theta`` and ``phase``
    (radians), ``nx``, ``ny`` (envelope standard deviations in cycles of the
    carrier). Spatial-frequency bins are kept while their edges lie in
    ``[sf_min, sf_max]`` (the original keeps all 8 bins with ``sf_max = 9``).
    ``nx`` and ``sf`` are coupled through a Gaussian copula with correlation
    ``sf_corr`` (Schiller et al. 1976 via Dapello et al. 2020); ``ny`` is drawn
    from the Ringach (2002) histogram conditional on ``nx``'s bin.

    rng: ``"default"`` draws with numpy's ``default_rng(seed)`` (PCG64);
    ``"official"`` reproduces the official vonenet sampler draw for draw
    (legacy ``np.random.seed(seed)`` stream, the official order of draws):
    angles are identical, ``sf``, ``nx``, ``ny`` equal to float64 rounding
    (numpy's vectorised ``**``, the copula's SVD and ``norm.cdf`` may round
    the last bit differently across numpy/scipy builds and CPUs).
    Both follow the same distributions; the numbers differ.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive int; got {n!r}")
    if not -1.0 < sf_corr < 1.0:
        raise ValueError(f"sf_corr must lie in (-1, 1); got {sf_corr}")
    if rng not in RNGS:
        raise ValueError(f"rng must be one of {RNGS}; got {rng!r}")
    keep = np.nonzero((SF_EDGES_CPD <= sf_max + 1e-12) & (SF_EDGES_CPD >= sf_min - 1e-12))[0]
    if len(keep) < 2:
        raise ValueError(f"no spatial-frequency bin of {SF_EDGES_CPD.tolist()} c/deg lies in "
                         f"[sf_min={sf_min}, sf_max={sf_max}]")
    as_t = lambda a: torch.as_tensor(a, dtype=torch.float64)  # noqa: E731
    if rng == "official":
        return {k: as_t(v) for k, v in _sample_official(int(n), int(seed), sf_corr, sf_max, sf_min).items()}
    sf_edges = SF_EDGES_CPD[keep[0]:keep[-1] + 1]
    sf_counts = SF_COUNTS[keep[0]:keep[-1]]
    gen = np.random.default_rng(seed)
    phase = gen.uniform(0.0, 2.0 * np.pi, n)
    ori_bin = gen.choice(len(ORIENTATION_COUNTS), size=n, p=ORIENTATION_COUNTS / ORIENTATION_COUNTS.sum())
    ori = gen.uniform(ORIENTATION_EDGES_DEG[ori_bin], ORIENTATION_EDGES_DEG[ori_bin + 1])
    ori = np.where(ori < 0, ori + 180.0, ori)
    z = gen.multivariate_normal([0.0, 0.0], [[1.0, sf_corr], [sf_corr, 1.0]], size=n)
    u = norm.cdf(z)
    nx_counts = RINGACH_NXNY_COUNTS.sum(axis=1)
    log_edges = np.log10(ENVELOPE_EDGES)
    nx = 10 ** _histogram_quantile(u[:, 0], nx_counts, log_edges)
    sf = 2 ** _histogram_quantile(u[:, 1], sf_counts, np.log2(sf_edges))
    nx_bin = np.clip(np.searchsorted(ENVELOPE_EDGES, nx, side="right") - 1, 0, len(nx_counts) - 1)
    u_ny = gen.uniform(size=n)
    ny = np.empty(n)
    for b in np.unique(nx_bin):
        rows = nx_bin == b
        ny[rows] = 10 ** _histogram_quantile(u_ny[rows], RINGACH_NXNY_COUNTS[b], log_edges)
    return {"sf": as_t(sf), "theta": as_t(np.deg2rad(ori)), "phase": as_t(phase), "nx": as_t(nx), "ny": as_t(ny)}


def gabor_kernel(sf: Tensor, theta: Tensor, phase: Tensor, sigma_x: Tensor, sigma_y: Tensor, ksize: int) -> Tensor:
    """Gabor kernels ``(n, ksize, ksize)`` from 1-D tensors of length ``n`` (pixel units).

    ``g(x, y) = exp(-(rx^2/sx^2 + ry^2/sy^2) / 2) / (2 pi sx sy) * cos(2 pi f rx + phase)``
    with ``rx = x cos(theta) + y sin(theta)``, ``ry = -x sin(theta) + y cos(theta)``,
    ``f = sf`` in cycles/pixel. The axes are those of the official vonenet code
    (``x, y = meshgrid(grid, grid)`` with "ij" indexing): ``x`` runs down the
    rows and ``y`` along the columns from the kernel centre. The grating that
    drives a kernel best is ``cos(2 pi f (row cos(theta) + col sin(theta)))``:
    ``theta = 0`` prefers horizontal stripes (luminance changing from row to
    row), ``theta = pi/2`` vertical stripes.
    """
    coords = torch.arange(ksize, dtype=torch.float64) - (ksize - 1) / 2
    x, y = torch.meshgrid(coords, coords, indexing="ij")
    th, f, ph = theta[:, None, None], sf[:, None, None], phase[:, None, None]
    sx, sy = sigma_x[:, None, None], sigma_y[:, None, None]
    rx = x * torch.cos(th) + y * torch.sin(th)
    ry = -x * torch.sin(th) + y * torch.cos(th)
    envelope = torch.exp(-0.5 * (rx ** 2 / sx ** 2 + ry ** 2 / sy ** 2)) / (2 * math.pi * sx * sy)
    return envelope * torch.cos(2 * math.pi * f * rx + ph)


def vone_noise(x: Tensor, mode: str | None = "neuronal", noise_scale: float = 0.35, noise_level: float = 0.07,
               generator: torch.Generator | None = None, noise: Tensor | None = None) -> Tensor:
    """Stochastic spiking noise of VOneBlock, followed by ReLU; active in train and eval alike.

    ``"neuronal"``: responses are mapped to spike counts ``c = noise_scale * x + noise_level``,
    Gaussian noise of variance ``c`` (Poisson-like: variance = mean) is added and
    the map is inverted, so ``Var[out] = (noise_scale * x + noise_level) / noise_scale^2``
    (before the ReLU). ``"gaussian"``: additive noise of standard deviation
    ``noise_scale``. ``None`` or ``"none"``: ReLU only. ``noise``: a given
    standard-normal draw of ``x``'s shape (frozen noise) instead of a fresh one.
    """
    if mode is None or mode == "none":
        return F.relu(x)
    if mode not in NOISE_MODES:
        raise ValueError(f"noise mode must be one of {NOISE_MODES}; got {mode!r}")
    if noise is not None:
        if noise.shape != x.shape:
            raise ShapeError(f"frozen noise has shape {tuple(noise.shape)} but the responses are {tuple(x.shape)}; "
                             "call fix_noise(batch_size) with this batch size (or unfix_noise())")
        eps = noise.to(device=x.device, dtype=x.dtype, copy=True)
    else:
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


def _channels(value, n: int, in_channels: int, name: str) -> Tensor:
    out = torch.as_tensor(value, dtype=torch.long).flatten()
    if out.shape != (n,) or bool((out < 0).any()) or bool((out >= in_channels).any()):
        raise ValueError(f"{name} must hold {n} channel indices in [0, {in_channels}); got shape "
                         f"{tuple(out.shape)}, values {out.unique().tolist()[:8]}")
    return out


#: Official checkpoint ``flags`` that describe the block, with the constructor argument each one sets.
OFFICIAL_FLAGS = {"simple_channels": "simple_channels", "complex_channels": "complex_channels", "k_exc": "k_exc",
                  "noise_mode": "noise_mode", "noise_scale": "noise_scale", "noise_level": "noise_level",
                  "stride": "stride", "ksize": "ksize", "visual_degrees": "visual_degrees",
                  "gabor_seed": "seed", "sf_corr": "sf_corr", "sf_max": "sf_max", "sf_min": "sf_min"}


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
        rng: ``"default"`` (numpy ``default_rng(seed)`` for the parameters) or
            ``"official"``: the official vonenet draw from ``seed``, draw for draw
            (equal to float64 rounding; legacy ``np.random.seed(seed)`` stream; no Nyquist cap, as the
            original). Colours come from a torch generator seeded with ``seed``
            in both cases, drawn as the original does (all q0 colours, then all
            q1 colours), so ``rng="official"`` equals the official untrained
            block built after ``torch.manual_seed(seed)``.
        sf_corr, sf_max, sf_min: copula correlation and spatial-frequency range
            (c/deg); with ``rng="default"`` frequencies are also capped at the
            Nyquist limit ``ppd / 2`` so that small images (32/64 px) get no
            aliased filters.
        in_channels: input channels (3 for RGB).
        params: explicit parameters instead of sampling (see :meth:`from_params`).
        channel, channel_q1: explicit input channel of each q0 filter ``(n,)``
            and of each complex cell's quadrature filter (``(complex,)``, or
            ``(n,)`` in the official layout whose simple entries are unused);
            missing ones are drawn from ``seed``.

    ``block.params`` holds 1-D tensors ``sf`` (c/deg), ``theta``, ``phase`` (rad),
    ``nx``, ``ny`` (cycles), one entry per channel, simple channels first
    (after loading weights, only while they still describe the loaded kernels).
    The filters are buffers (never trained); the output ``(B, simple + complex,
    H/stride, W/stride)`` lists simple then complex channels.
    """

    # buffers registered in __init__ (declared here for static typing)
    weight: Tensor            # (n + complex, 1, k, k) single-colour kernels, q0 then q1
    colour: Tensor            # (n + complex,) input channel of each kernel
    _grouped_weight: Tensor   # colour-grouped, gain-folded bank (see _grouped_layout)
    _gather: Tensor           # (n + complex,) grouped output -> filter order
    fixed_noise: Tensor | None   # (B, n, h, w) frozen standard-normal draw, or None
    sf: Tensor                # (n,) float32 copies of the Gabor parameters
    theta: Tensor
    phase: Tensor
    nx: Tensor
    ny: Tensor

    def __init__(self, image_size: int = 224, visual_degrees: float = 8, simple_channels: int = 256,
                 complex_channels: int = 256, ksize: int = 25, stride: int = 4, noise_mode: str | None = "neuronal",
                 noise_scale: float = 0.35, noise_level: float = 0.07, k_exc: float = 25.0, seed: int = 0, *,
                 rng: str = "default", sf_corr: float = 0.75, sf_max: float = 9.0, sf_min: float = 0.0,
                 in_channels: int = 3, params: Mapping[str, Tensor] | None = None, channel=None,
                 channel_q1=None) -> None:
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
        if rng not in RNGS:
            raise ValueError(f"rng must be one of {RNGS}; got {rng!r}")
        self.image_size, self.visual_degrees = image_size, visual_degrees
        self.ppd = image_size / visual_degrees
        self.ksize, self.stride, self.in_channels = ksize, stride, _check_count("in_channels", in_channels)
        self.noise_mode, self.noise_scale, self.noise_level = noise_mode, noise_scale, noise_level
        self._k_exc = float(k_exc)
        self.seed, self.rng = seed, rng
        self.sf_corr, self.sf_max, self.sf_min = sf_corr, sf_max, sf_min
        if params is None:
            cap = sf_max if rng == "official" else min(sf_max, self.ppd / 2)
            params = sample_gabor_params(n, seed=seed, sf_corr=sf_corr, sf_max=cap, sf_min=sf_min, rng=rng)
        params = self._check_params(params, n)
        gen = torch.Generator().manual_seed(int(seed))
        drawn_q0 = torch.randint(0, self.in_channels, (n,), generator=gen)
        drawn_q1 = torch.randint(0, self.in_channels, (n,), generator=gen)[self.simple_channels:]
        channel = drawn_q0 if channel is None else _channels(channel, n, self.in_channels, "channel")
        if channel_q1 is None:
            channel_q1 = drawn_q1
        else:
            q1 = torch.as_tensor(channel_q1).flatten()
            q1 = q1[self.simple_channels:] if q1.numel() == n and self.simple_channels else q1
            channel_q1 = _channels(q1, self.complex_channels, self.in_channels, "channel_q1")
        for key, value in params.items():
            self.register_buffer(key, value.float(), persistent=False)
        self._params64 = params
        self._params_describe_weight = True
        self.register_buffer("weight", self._kernels(params).float())
        self.register_buffer("colour", torch.cat([channel, channel_q1]))
        self.register_buffer("_grouped_weight", torch.empty(0), persistent=False)
        self.register_buffer("_gather", torch.empty(0, dtype=torch.long), persistent=False)
        self.register_buffer("fixed_noise", None, persistent=False)
        self._rebuild_layout()
        self.register_load_state_dict_post_hook(lambda module, _: module._after_load())

    def _kernels(self, params: Mapping[str, Tensor]) -> Tensor:
        """``(n + complex, 1, k, k)`` float64: q0 kernels of every channel, then the q1 (phase + pi/2) ones."""
        n = self.out_channels
        sf_cpp = params["sf"] / self.ppd
        q0 = gabor_kernel(sf_cpp, params["theta"], params["phase"], params["nx"] / sf_cpp, params["ny"] / sf_cpp,
                          self.ksize)
        cx = slice(self.simple_channels, n)
        q1 = gabor_kernel(sf_cpp[cx], params["theta"][cx], params["phase"][cx] + math.pi / 2,
                          params["nx"][cx] / sf_cpp[cx], params["ny"][cx] / sf_cpp[cx], self.ksize)
        return torch.cat([q0, q1]).unsqueeze(1)

    def kernel_mismatch(self, params: Mapping[str, Tensor]) -> float:
        """Largest difference between the kernels ``params`` give and the current ones, relative to the
        largest kernel value (0 when they describe this bank)."""
        params = self._check_params(params, self.out_channels)
        expected = self._kernels(params).to(self.weight.device)
        return float((expected - self.weight.double()).abs().max() / expected.abs().max())

    def describe_with(self, params: Mapping[str, Tensor], *, rtol: float = 1e-4) -> None:
        """Adopt ``params`` as :attr:`params` after checking that they give the current kernels
        (e.g. after loading an official checkpoint); raises ``ValueError`` with the mismatch otherwise."""
        mismatch = self.kernel_mismatch(params)
        if mismatch > rtol:
            raise ValueError(f"these parameters do not describe the block's kernels (largest difference "
                             f"{mismatch:.3g} of the kernel range, tolerance {rtol:g})")
        params = self._check_params(params, self.out_channels)
        for key, value in params.items():
            setattr(self, key, value.float().to(self.weight.device))
        self._params64 = params
        self._params_describe_weight = True

    def _after_load(self) -> None:
        self._rebuild_layout()
        self._params_describe_weight = self.kernel_mismatch(self._params64) <= 1e-4

    @staticmethod
    def _check_params(params: Mapping[str, Tensor], n: int) -> dict[str, Tensor]:
        names = ("sf", "theta", "phase", "nx", "ny")
        missing = [k for k in names if k not in params]
        if missing:
            raise ValueError(f"params is missing {missing}; expected keys {list(names)}")
        out = {}
        for k in names:
            v = torch.as_tensor(params[k], dtype=torch.float64).detach().cpu().flatten()
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
                    complex_channels: int | None = None, channel=None, channel_q1=None, **kwargs) -> VOneBlock:
        """Block with explicit Gabor parameters: 1-D ``sf`` (cycles/degree), ``theta``, ``phase``
        (radians), ``nx``, ``ny`` (cycles); the first ``simple_channels`` are simple cells,
        the remaining ``complex_channels`` complex. ``channel`` ``(n,)``: the input channel
        of every q0 filter; ``channel_q1``: that of every complex cell's quadrature filter
        (``(complex,)`` or, official layout, ``(n,)``). Other keywords as the constructor."""
        n = int(torch.as_tensor(sf).numel())
        if simple_channels is None:
            simple_channels = n if complex_channels is None else n - complex_channels
        if complex_channels is None:
            complex_channels = n - simple_channels
        if simple_channels + complex_channels != n:
            raise ValueError(f"simple_channels + complex_channels ({simple_channels} + {complex_channels}) must "
                             f"equal the number of parameter sets ({n})")
        params = {"sf": sf, "theta": theta, "phase": phase, "nx": nx, "ny": ny}
        return cls(simple_channels=simple_channels, complex_channels=complex_channels, params=params,
                   channel=channel, channel_q1=channel_q1, **kwargs)

    @property
    def params(self) -> dict[str, Tensor]:
        if not self._params_describe_weight:
            raise RuntimeError("the loaded kernels are not the ones these Gabor parameters give (weights loaded "
                               "from another bank); call describe_with(params) with the parameters of the loaded "
                               "bank, or load the official checkpoint through nr.create_model(..., pretrained=True)")
        return {k: getattr(self, k) for k in ("sf", "theta", "phase", "nx", "ny")}

    @property
    def k_exc(self) -> float:
        """Gain from filter response to firing rate (folded into the filters; fixed at construction)."""
        return self._k_exc

    @property
    def out_channels(self) -> int:
        return self.simple_channels + self.complex_channels

    @property
    def channel(self) -> Tensor:
        """Input channel read by each q0 filter ``(simple + complex,)``."""
        return self.colour[:self.out_channels]

    @property
    def channel_q1(self) -> Tensor:
        """Input channel read by each complex cell's quadrature filter ``(complex,)``."""
        return self.colour[self.out_channels:]

    def output_size(self, size: int) -> int:
        """Output height (or width) for an input of ``size`` pixels."""
        return (size + 2 * (self.ksize // 2) - self.ksize) // self.stride + 1

    def fix_noise(self, batch_size: int = 256, seed: int | None = None) -> VOneBlock:
        """Freeze one standard-normal noise draw ``(batch_size, out, h, w)`` for inputs of ``image_size``
        pixels, used by every forward until :meth:`unfix_noise` (deterministic evaluation, gradient checks).

        With an int ``seed`` the draw equals the official ``fix_noise(batch_size, seed)`` (which seeds
        torch's global generator; here a private generator is used, so global state is untouched, and
        ``seed=0`` seeds too). ``seed=None`` draws from torch's global generator.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int; got {batch_size!r}")
        h = self.output_size(self.image_size)
        shape = (batch_size, self.out_channels, h, h)
        gen = None if seed is None else torch.Generator().manual_seed(int(seed))
        self.fixed_noise = torch.randn(shape, generator=gen).to(self.weight.device)
        return self

    def unfix_noise(self) -> VOneBlock:
        """Back to a fresh noise draw at every forward."""
        self.fixed_noise = None
        return self

    def official_flags(self) -> dict:
        """The block's settings under the names of the official checkpoints' ``flags``."""
        return {flag: getattr(self, attr) if attr != "k_exc" else self.k_exc for flag, attr in OFFICIAL_FLAGS.items()}

    def _rebuild_layout(self) -> None:
        grouped, gather = _grouped_layout(self.weight, self.colour, self.in_channels, self.simple_channels,
                                          self._k_exc)
        self._grouped_weight, self._gather = grouped, gather

    def forward(self, x: Tensor) -> Tensor:
        """Images ``(B, in_channels, H, W)`` -> responses ``(B, simple + complex, H', W')``."""
        if not isinstance(x, Tensor) or x.ndim != 4 or x.shape[1] != self.in_channels:
            seen = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            hint = (" (one unbatched image? add the batch dimension: x.unsqueeze(0))"
                    if isinstance(x, Tensor) and x.ndim == 3 and x.shape[0] == self.in_channels else "")
            raise ShapeError(f"VOneBlock expects a batch of images x of shape (B, {self.in_channels}, H, W); "
                             f"got shape {seen}{hint}")
        q = F.conv2d(x, self._grouped_weight, None, self.stride, self.ksize // 2, 1, self.in_channels)
        r = _cells(q, self._gather, self.simple_channels, self.out_channels)
        return vone_noise(r, self.noise_mode, self.noise_scale, self.noise_level, noise=self.fixed_noise)

    def extra_repr(self) -> str:
        return (f"simple={self.simple_channels}, complex={self.complex_channels}, ppd={self.ppd:g}, "
                f"ksize={self.ksize}, stride={self.stride}, noise_mode={self.noise_mode!r}, rng={self.rng!r}")
