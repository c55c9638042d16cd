"""The FactorTopy read-out network: position encoding, selectors, channel alignment, voxel weights."""

from __future__ import annotations

import math
from typing import Sequence, cast

import torch
from torch import Tensor, nn

from neuroreg.scoring.factortopy.pooling import _POOLINGS, _layer_terms, _prepare_layers


def sinusoidal_encoding(coords: Tensor, n_freqs: int = 6) -> Tensor:
    """NeRF-style position encoding of voxel coordinates.

    coords: ``(n, k)`` scaled to about [-1, 1]. Returns ``(n, k + 2 k n_freqs)``:
    the coordinates, then ``sin(2^j pi c)`` and ``cos(2^j pi c)`` for ``j < n_freqs``.
    """
    freqs = (2.0 ** torch.arange(n_freqs, dtype=coords.dtype, device=coords.device)) * math.pi
    angles = coords[:, :, None] * freqs  # (n, k, f)
    return torch.cat([coords, angles.sin().flatten(1), angles.cos().flatten(1)], dim=1)


def factorized_readout(maps: Sequence[Tensor], align: Sequence[Tensor], layer_probs: Tensor, space: Tensor,
                       scale: Tensor, weights: Tensor, bias: Tensor, *, per_layer: bool = False,
                       pooling: str = "token", level_std: Sequence[Tensor] | None = None) -> Tensor:
    """Voxel predictions from feature maps (Yang et al. eq. 1, with per-layer read-out weights).

    maps: ``L`` tensors ``(b, C_l, H_l, W_l)``; align: ``L`` channel-alignment matrices
    ``B_l`` ``(D, C_l)``; layer_probs ``(n, L)``; space ``(n, 2)`` x, y in [-1, 1]
    (``grid_sample`` convention, ``align_corners=False``, border padding); scale ``(n,)``
    in [0, 1]; weights ``(n, L, D)``; bias ``(n,)``. Returns ``(b, n)``::

        y_i = b_i + sum_l p_il (B_l v_il) . w_il

    The pooled feature ``v_il`` depends on ``pooling``:

    * ``"token"`` (the paper): ``(1 - a_i) v_l(u_i) + a_i mean_p v_l(p)``, the local
      feature bilinearly sampled at ``u_i`` mixed with the map's global mean by ``a_i = scale``.
    * ``"gaussian"``: the average of the map under a normalised Gaussian window centred at
      ``u_i`` with SD :func:`scale_to_sd` ``(scale)`` as a fraction of the map side, the same
      receptive-field model as :func:`neuroreg.features.simulate.gaussian_windows`. It is read
      from a pyramid of ``K`` blurred copies of the map, interpolated trilinearly in x, y and
      log-SD (8 rows of a table per voxel, gathered with ``embedding_bag``), so the cost does
      not grow with the window size.

    space and scale may also be given per layer, ``(n, L, 2)`` and ``(n, L)``: layer ``l`` is
    then pooled at ``space[:, l]`` with ``scale[:, l]``.

    level_std: optional ``L`` tensors ``(C_l, K)``, the SD of every channel at every blur
    level (over stimuli and positions); each level is divided by it, so pooled features
    have unit variance at every layer and scale and no layer learns faster for having
    more spatially correlated channels. ``K`` is :data:`N_LEVELS`.

    With ``per_layer=True`` the result is ``(b, n, L)``: each layer's prediction alone
    (``b_i + (B_l v_il) . w_il``), whose ``p``-weighted sum is the prediction above.

    Interpolation, blur and the spatial mean are linear, so for layers with ``C_l <= D`` the
    alignment is folded into the read-out (``w_il B_l``) and applied after pooling:
    the same numbers as aligning the full maps first, at a fraction of the cost.
    """
    terms = _layer_terms(_prepare_layers(maps, align, pooling, level_std), align, space, scale, weights)
    return _combine(terms, layer_probs, bias, per_layer)


def _combine(terms: Sequence[Tensor], layer_probs: Tensor, bias: Tensor, per_layer: bool) -> Tensor:
    if per_layer:
        return torch.stack(list(terms), dim=-1) + bias[:, None]
    out = bias[None, :]
    for layer, term in enumerate(terms):
        out = out + layer_probs[:, layer] * term
    return out


def _orthogonal(d: int, c: int) -> Tensor:
    """A ``(d, c)`` matrix with orthonormal rows or columns (all singular values 1), from the current RNG.

    The channel alignment ``B_l`` must start well conditioned: the voxel weights of a layer with
    ``C_l <= D`` act through ``w_il B_l``, and a square Gaussian ``B_l`` (``C_l = D``) has
    singular values down to about ``1 / D``, which leaves that layer's read-out (and with it its
    position and scale) under-trained by gradient descent.
    """
    q, r = torch.linalg.qr(torch.randn(max(d, c), min(d, c)))
    q = q * torch.sign(torch.diagonal(r))[None, :]
    return q if d >= c else q.T


def _mlp(n_in: int, hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                         nn.Linear(hidden, n_out))


class FactorTopyNet(nn.Module):
    """Selectors, channel alignment and voxel read-outs; :func:`factorized_readout` does the prediction.

    in_channels: channels of each layer (shallow -> deep); n_voxels; n_coord: width of
    the coordinate encoding; d: shared channel dimension D (128 in the paper).
    ``forward(maps, encoding, temperature)`` takes normalised maps ``(b, C_l, H_l, W_l)``
    and returns ``(b, n_voxels)``. per_layer_space: one position and scale per voxel and
    layer (selectors output ``(n, L, 2)`` and ``(n, L)``) instead of one per voxel.
    """

    def __init__(self, in_channels: Sequence[int], n_voxels: int, n_coord: int, d: int = 128,
                 hidden: int = 128, pooling: str = "token", per_layer_space: bool = False) -> None:
        super().__init__()
        if pooling not in _POOLINGS:
            raise ValueError(f"pooling must be one of {_POOLINGS}; got {pooling!r}")
        self.pooling = pooling
        self.per_layer_space = bool(per_layer_space)
        n_layers = len(in_channels)
        n_pos = n_layers if self.per_layer_space else 1
        self.layer_selector = _mlp(n_coord, hidden, n_layers)
        self.space_selector = _mlp(n_coord, hidden, 2 * n_pos)
        self.scale_selector = _mlp(n_coord, hidden, n_pos)
        # B_l of the paper: one (D, C_l) channel alignment per layer, shared by all voxels
        self.align = nn.ParameterList(nn.Parameter(_orthogonal(d, c)) for c in in_channels)
        self.weights = nn.Parameter(torch.zeros(n_voxels, n_layers, d))
        self.bias = nn.Parameter(torch.zeros(n_voxels))
        with torch.no_grad():  # start every voxel at the image centre, half local / half global
            for sel in (self.layer_selector, self.space_selector, self.scale_selector):
                head = cast(nn.Linear, sel[-1])  # _mlp ends in a Linear
                head.weight.mul_(0.1)
                head.bias.zero_()

    def selectors(self, encoding: Tensor, temperature: float = 1.0) -> tuple[Tensor, Tensor, Tensor]:
        """``(n, L)`` layer probabilities, ``(n, 2)`` positions in [-1, 1], ``(n,)`` scales in [0, 1]
        (``(n, L, 2)`` and ``(n, L)`` with ``per_layer_space``)."""
        probs = torch.softmax(self.layer_selector(encoding) / temperature, dim=-1)
        space = torch.tanh(self.space_selector(encoding))
        scale = torch.sigmoid(self.scale_selector(encoding))
        if self.per_layer_space:
            return probs, space.view(len(space), -1, 2), scale
        return probs, space, scale[:, 0]

    def forward(self, maps: Sequence[Tensor], encoding: Tensor, temperature: float = 1.0) -> Tensor:
        probs, space, scale = self.selectors(encoding, temperature)
        return factorized_readout(maps, list(self.align), probs, space, scale, self.weights, self.bias,
                                  pooling=self.pooling)
