"""Voxels with known ground truth: noisy read-outs of a reference network on a 2-D cortical sheet.

The simulation follows the generative model that FactorTopy (Yang et al.,
"Brain Decodes Deep Nets") inverts: every voxel reads one layer of a network
at one spatial position and receptive-field scale, with its own channel
weights. Around that read-out it adds what real fMRI data have: ROIs in
contiguous patches of cortex, retinotopy (positions vary smoothly along the
sheet, mirror-reversed at ROI borders as between V1 and V2), receptive fields
that grow with depth and eccentricity, a depth hierarchy across ROIs
(V1 -> shallow layers, EBA -> deep) and trial-to-trial noise at a known SNR,
hence a known noise ceiling.

>>> brain, truth = simulate_voxels(model, images, layers=["layer1", "layer2", "layer3", "layer4"])
>>> brain.trials.shape            # (repeats, n_stimuli, n_voxels)
>>> truth["layer"][:5], truth["ceiling"][:5]
"""

from __future__ import annotations

import math
import os
from collections.abc import Sized
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset, Subset
from tqdm.auto import tqdm

from neuroreg._utils.images import list_images, resize_images
from neuroreg.brain.data import BrainData
from neuroreg.errors import ShapeError, UnknownNameError
from neuroreg.features.extraction import extract
from neuroreg.models.areas import area_layers

__all__ = ["simulate_voxels", "expected_split_half_ceiling", "gaussian_windows", "DEFAULT_ROIS"]

#: Default ROIs, shallow to deep, as in FactorTopy's hierarchy slope (V1, V2/V3, OPA, EBA).
DEFAULT_ROIS = ("V1", "V2V3", "OPA", "EBA")

_WEIGHT_DISTS = ("normal", "positive")


def expected_split_half_ceiling(snr, repeats: int) -> np.ndarray:
    """Expected Spearman-Brown split-half reliability of an average of ``repeats`` trials.

    With a single-trial response ``y_t = s + e_t``, ``var(s) / var(e) = snr``,
    the mean of ``R`` trials has reliability (correlation between two
    independent ``R``-trial means, equal to the Spearman-Brown-corrected
    correlation between two halves of ``R/2`` trials)::

        ceiling = R * snr / (R * snr + 1)

    The best possible correlation of a noise-free model with the ``R``-trial mean
    is ``sqrt(ceiling)``.
    """
    snr = np.asarray(snr, dtype=np.float64)
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1; got {repeats}")
    if (snr <= 0).any() or not np.isfinite(snr).all():
        raise ValueError(f"snr must be positive and finite; got min {snr.min()}")
    return repeats * snr / (repeats * snr + 1.0)


# ----------------------------------------------------------------------------- arguments
def _default_layers(model: nn.Module) -> list[str]:
    try:
        areas = area_layers(model)
    except KeyError as err:
        raise ValueError(
            f"layers=None but no area map is known for {type(model).__name__} ({err}); pass layers= as "
            "module names of the model, shallow to deep, e.g. ['layer1', 'layer2', 'layer3', 'layer4']") from None
    ordered = [areas[a] for a in ("V1", "V2", "V4", "IT") if a in areas]
    return ordered or list(areas.values())


def _roi_layer_table(rois, layers: Sequence[str] | None, model: nn.Module) -> tuple[list[str], list[str], list[list[int]]]:
    """(roi names, layer names, layer indices per ROI, shallow to deep)."""
    if isinstance(rois, Mapping):
        if not rois:
            raise ValueError("rois must name at least one ROI")
        per_roi = {str(r): ([v] if isinstance(v, str) else list(v)) for r, v in rois.items()}
        for r, names in per_roi.items():
            if not names or not all(isinstance(n, str) for n in names):
                raise ValueError(f"rois[{r!r}] must be a layer name or a non-empty list of names; got {rois[r]!r}")
        if layers is None:
            layers = []
            for names in per_roi.values():
                layers += [n for n in names if n not in layers]
        layers = list(layers)
        table = []
        for r, names in per_roi.items():
            missing = [n for n in names if n not in layers]
            if missing:
                raise UnknownNameError(f"rois[{r!r}] names layers {missing} that are not in layers={layers}")
            table.append(sorted(layers.index(n) for n in names))
        return list(per_roi), layers, table
    if isinstance(rois, str):
        rois = [rois]
    roi_names = [str(r) for r in rois]
    if not roi_names:
        raise ValueError("rois must name at least one ROI")
    if len(set(roi_names)) != len(roi_names):
        raise ValueError(f"rois must be unique; got {roi_names}")
    layers = list(layers) if layers is not None else _default_layers(model)
    if not layers:
        raise ValueError("layers must name at least one module")
    n_l, n_r = len(layers), len(roi_names)
    if n_l >= n_r:
        table = [list(map(int, chunk)) for chunk in np.array_split(np.arange(n_l), n_r)]
    else:
        table = [[int(round(k * (n_l - 1) / max(n_r - 1, 1)))] for k in range(n_r)]
    return roi_names, layers, table


def _voxel_counts(n_voxels, roi_names: list[str]) -> list[int]:
    if isinstance(n_voxels, Mapping):
        unknown = set(map(str, n_voxels)) - set(roi_names)
        if unknown:
            raise UnknownNameError(f"n_voxels names unknown ROIs {sorted(unknown)}; ROIs are {roi_names}")
        counts = [int(n_voxels.get(r, 0)) for r in roi_names]
    else:
        if isinstance(n_voxels, bool) or not isinstance(n_voxels, (int, np.integer)):
            raise TypeError(f"n_voxels must be an int (total) or a dict roi -> count; got {n_voxels!r}")
        if n_voxels < len(roi_names):
            raise ValueError(f"n_voxels={n_voxels} is fewer than the {len(roi_names)} ROIs {roi_names}")
        base, extra = divmod(int(n_voxels), len(roi_names))
        counts = [base + (k < extra) for k in range(len(roi_names))]
    if any(c < 1 for c in counts):
        raise ValueError(f"every ROI needs at least one voxel; got counts {dict(zip(roi_names, counts))}")
    return counts


def _sample_snr(snr, n: int, rng: np.random.Generator) -> np.ndarray:
    if np.ndim(snr) == 0:
        value = float(snr)
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"snr must be a positive finite number; got {snr!r}")
        return np.full(n, value)
    pair = np.asarray(snr, dtype=np.float64)
    if pair.shape != (2,) or not np.isfinite(pair).all() or pair.min() <= 0 or pair[0] > pair[1]:
        raise ValueError(f"snr must be a positive number or a (low, high) pair with 0 < low <= high; got {snr!r}")
    return np.exp(rng.uniform(np.log(pair[0]), np.log(pair[1]), size=n))


# ----------------------------------------------------------------------------- geometry
def _sheet_geometry(counts: list[int], table: list[list[int]], n_layers: int, rng: np.random.Generator):
    """Cortical coordinates, ROI index, layer, visual-field position and RF scale of every voxel."""
    n_r = len(counts)
    coords, roi_idx, layer, position, scale = [], [], [], [], []
    for k, (count, roi_layers) in enumerate(zip(counts, table)):
        lo = -1.0 + 2.0 * k / n_r
        x = rng.uniform(lo, lo + 2.0 / n_r, size=count)
        y = rng.uniform(-1.0, 1.0, size=count)
        u = np.clip((x - lo) * n_r - 1.0, -1.0, 1.0)  # position across the band, in [-1, 1]
        # Mirror-reversed map in every other band keeps the field map continuous at the borders.
        px = 0.9 * (u if k % 2 == 0 else -u)
        py = 0.9 * y
        sub = np.minimum(((u + 1.0) / 2.0 * len(roi_layers)).astype(int), len(roi_layers) - 1)
        lay = np.asarray(roi_layers)[sub]
        depth = lay / max(n_layers - 1, 1)
        ecc = np.sqrt(px ** 2 + py ** 2) / math.sqrt(2.0)
        sc = (0.08 + 0.22 * depth) * (1.0 + 0.5 * ecc) * np.exp(rng.normal(0.0, 0.15, size=count))
        coords.append(np.stack([x, y], 1))
        roi_idx.append(np.full(count, k))
        layer.append(lay)
        position.append(np.stack([px, py], 1))
        scale.append(np.clip(sc, 0.02, 1.0))
    return (np.concatenate(coords), np.concatenate(roi_idx), np.concatenate(layer).astype(np.int64),
            np.concatenate(position), np.concatenate(scale))


def gaussian_windows(position: np.ndarray, scale: np.ndarray, height: int, width: int) -> Tensor:
    """Normalised Gaussian pooling windows ``(n_voxels, height * width)`` over a feature map.

    ``position`` ``(n, 2)`` is (x, y) in grid_sample coordinates (``-1`` = left/top
    edge, ``+1`` = right/bottom edge; pixel centres at ``(2j + 1) / W - 1``).
    ``scale`` ``(n,)`` is the window's standard deviation as a fraction of the
    map side, so its SD in grid units is ``2 * scale``. Each row sums to 1.
    """
    xs = (2 * torch.arange(width, dtype=torch.float64) + 1) / width - 1
    ys = (2 * torch.arange(height, dtype=torch.float64) + 1) / height - 1
    pos = torch.as_tensor(position, dtype=torch.float64)
    sd = 2.0 * torch.as_tensor(scale, dtype=torch.float64)
    dx = (xs[None, :] - pos[:, :1]) ** 2                                 # (n, W)
    dy = (ys[None, :] - pos[:, 1:]) ** 2                                 # (n, H)
    logw = -(dy[:, :, None] + dx[:, None, :]) / (2 * sd[:, None, None] ** 2)
    return torch.softmax(logw.reshape(len(pos), -1), dim=1)             # stable even for tiny SDs


# ----------------------------------------------------------------------------- stimuli
def _stimulus_chunks(stimuli, chunk: int) -> tuple[int, Any, Iterator]:
    """(n, default ids, iterator over stimulus chunks that :func:`neuroreg.extract` accepts)."""
    if isinstance(stimuli, (str, os.PathLike)):
        folder = Path(stimuli)
        paths = list_images(folder)
        ids = np.array([str(p.relative_to(folder)) for p in paths])
        return len(paths), ids, (paths[i:i + chunk] for i in range(0, len(paths), chunk))
    if isinstance(stimuli, Dataset):
        if not isinstance(stimuli, Sized):
            raise TypeError(f"stimuli must be a map-style Dataset with a length; got a {type(stimuli).__name__} "
                            "without __len__")
        n = len(stimuli)
        return n, None, (Subset(stimuli, range(i, min(i + chunk, n))) for i in range(0, n, chunk))
    if isinstance(stimuli, (list, tuple)):
        return len(stimuli), None, (list(stimuli[i:i + chunk]) for i in range(0, len(stimuli), chunk))
    if isinstance(stimuli, (np.ndarray, Tensor)):
        if stimuli.ndim != 4:
            raise ShapeError(f"stimuli must be 4-D images (n, 3, H, W) float or (n, H, W, 3) uint8; "
                             f"got shape {tuple(stimuli.shape)}")
        n = stimuli.shape[0]
        return n, None, (stimuli[i:i + chunk] for i in range(0, n, chunk))
    raise TypeError(f"stimuli must be a tensor, a uint8 array, a list of image paths, a folder or a "
                    f"torch Dataset; got {type(stimuli).__name__}")


def _resize_transform(image_size):
    if image_size is None:
        return None
    size = (int(image_size), int(image_size)) if np.ndim(image_size) == 0 else tuple(int(s) for s in image_size)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"image_size must be an int or (height, width) of positive ints; got {image_size!r}")

    def resize(x: Tensor) -> Tensor:
        return resize_images(x, size, clamp=False)   # images already normalised may lie outside [0, 1]
    return resize


def _as_maps(x: Tensor, layer: str) -> Tensor:
    if x.ndim == 4:
        return x
    if x.ndim == 2:
        return x[:, :, None, None]  # a vector layer: one "pixel", position has no effect
    raise ShapeError(f"layer {layer!r} gives activations of shape {tuple(x.shape)}; the simulator reads "
                     "(n, C, H, W) feature maps or (n, C) vectors")


# ----------------------------------------------------------------------------- main
def simulate_voxels(model: nn.Module, stimuli, rois: Sequence[str] | Mapping[str, Any] = DEFAULT_ROIS,
                    layers: Sequence[str] | None = None, n_voxels: int | Mapping[str, int] = 400,
                    snr: float | tuple[float, float] = 1.0, repeats: int = 3, seed: int = 0, *,
                    batch_size: int = 64, image_size: int | tuple[int, int] | None = None,
                    weights: str = "normal", stimulus_ids: Sequence[Any] | np.ndarray | None = None,
                    device: str | torch.device | None = None, progress: bool | None = None,
                    name: str = "simulated") -> tuple[BrainData, dict[str, Any]]:
    """Simulate fMRI voxels whose layer, position, scale, weights and noise ceiling are known.

    Generative model, per voxel ``v`` with layer ``l(v)``:
    ``s_v(i) = sum_c w_vc sum_p g_v(p) F_l(i)[c, p]`` for stimulus ``i``, where
    ``F_l`` is the ``(C, H, W)`` activation map of layer ``l``, ``g_v`` a
    normalised Gaussian window at ``position`` with SD ``scale`` (see
    :func:`gaussian_windows`) and ``w_v`` the channel weights. The signal is
    standardised over the stimuli (mean 0, variance 1) and each of ``repeats``
    trials adds independent Gaussian noise of variance ``1 / snr``.

    Cortical sheet: voxel coordinates ``(x, y)`` lie in ``[-1, 1]^2``; ROI ``k``
    of ``R`` occupies the band ``x in [-1 + 2k/R, -1 + 2(k+1)/R]``, listed shallow
    to deep. Within a band the visual-field position is ``0.9 * (+-u, y)`` with
    ``u`` the position across the band in ``[-1, 1]`` (mirror-reversed in every
    other band, so the map is continuous across borders). An ROI reading
    several layers splits its band into sub-bands of increasing depth along x.
    Scale (receptive-field SD as a fraction of the map side) grows with depth
    from 0.08 to 0.30, by up to 1.5x with eccentricity, times a log-normal
    jitter (SD 0.15), clipped to ``[0.02, 1]``.

    Parameters
    ----------
    model: the reference network (any ``nn.Module``); stimuli are streamed
        through :func:`neuroreg.extract` ``batch_size`` at a time, so the full
        feature maps never sit in memory together.
    stimuli: float ``(n, 3, H, W)`` in [0, 1], uint8 ``(n, H, W, 3)``, a folder,
        a list of image paths or a torch Dataset.
    rois: ROI names, shallow to deep (layers are shared out in order: with
        at least as many layers as ROIs each ROI gets a contiguous run of
        layers, otherwise ROI ``k`` gets layer ``round(k (L-1)/(R-1))``), or a
        dict ROI -> layer name or list of layer names.
    layers: module names of ``model``, shallow to deep. Default: the model's
        area map (:func:`neuroreg.area_layers`: V1, V2, V4, IT); for other
        models pass them explicitly.
    n_voxels: total number of voxels, shared evenly over the ROIs (the first
        ROIs get one more when it does not divide), or a dict ROI -> count.
    snr: single-trial signal variance / noise variance; a scalar, or a
        ``(low, high)`` range sampled log-uniformly per voxel.
    repeats: trials per stimulus (kept in ``BrainData.trials``).
    seed: seeds geometry, weights and noise (independent streams, so the
        numbers do not depend on ``batch_size``).
    image_size: resize stimuli to this size (bilinear, antialiased) before the model.
    weights: ``"normal"`` (``N(0, 1)`` channel weights) or ``"positive"`` (``|N(0, 1)|``).
    stimulus_ids: ids of the stimuli (default: relative paths for a folder, else ``0..n-1``).

    Returns
    -------
    brain: :class:`BrainData` with ``responses`` ``(n, V)`` (mean over trials),
        ``trials`` ``(repeats, n, V)`` and ``unit_info`` keys ``roi`` (str),
        ``coords`` ``(V, 2)`` cortical-sheet position in ``[-1, 1]`` and
        ``ncsnr`` (``sqrt(snr)``, the NSD noise-ceiling SNR: signal SD / noise SD).
    truth: dict of per-voxel numpy arrays (``V`` first): ``layer`` (int index
        into ``layers``), ``layer_name``, ``position`` ``(V, 2)`` (x then y,
        grid_sample convention, in [-1, 1]), ``scale`` (RF SD as a fraction of
        the map side, in [0, 1]), ``weights`` (list of ``V`` channel-weight
        vectors, length = channels of the voxel's layer), ``snr``, ``ceiling``
        (``R snr / (R snr + 1)``: the expected Spearman-Brown split-half
        reliability of the ``R``-trial mean, see :func:`expected_split_half_ceiling`),
        ``max_r`` (``sqrt(ceiling)``, the expected correlation of the noise-free
        signal with the trial mean), ``roi``, ``roi_index``, ``coords``; plus
        ``signal`` ``(n, V)`` (noise-free, standardised responses), ``layers``
        (the layer names), ``rois`` (ROI names, shallow to deep) and ``repeats``.
    """
    _check_simulate_arguments(repeats, batch_size, weights)
    roi_names, layer_names, table = _roi_layer_table(rois, layers, model)
    counts = _voxel_counts(n_voxels, roi_names)
    n_vox = sum(counts)
    geom_rng, weight_rng, noise_rng, snr_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4))
    coords, roi_idx, layer, position, scale = _sheet_geometry(counts, table, len(layer_names), geom_rng)
    snr_v = _sample_snr(snr, n_vox, snr_rng)

    n, ids, chunks = _stimuli_with_ids(stimuli, batch_size, stimulus_ids)
    readout = _Readout(layer, position, scale, weights, weight_rng)
    signal = readout.run(model, chunks, n, layer_names, batch_size=batch_size, image_size=image_size,
                         device=device, progress=progress)
    sig = _standardised(signal.numpy(), layer, layer_names)
    noise = noise_rng.standard_normal((repeats, n, n_vox)) / np.sqrt(snr_v)
    trials = sig[None] + noise
    roi = np.asarray(roi_names)[roi_idx]
    ceiling = expected_split_half_ceiling(snr_v, repeats)
    brain = BrainData(trials.mean(0), ids, {"roi": roi, "coords": coords, "ncsnr": np.sqrt(snr_v)},
                      trials=trials, name=name)
    truth = {
        "layer": layer, "layer_name": np.asarray(layer_names)[layer], "position": position, "scale": scale,
        "weights": readout.weight_list, "snr": snr_v, "ceiling": ceiling, "max_r": np.sqrt(ceiling), "roi": roi,
        "roi_index": roi_idx, "coords": coords, "signal": sig, "layers": list(layer_names),
        "rois": roi_names, "repeats": int(repeats),
    }
    return brain, truth


def _stimuli_with_ids(stimuli, batch_size: int, stimulus_ids) -> tuple[int, np.ndarray, Iterator]:
    """(n, ``(n,)`` stimulus ids, iterator over chunks of ``batch_size`` stimuli); at least 2 stimuli."""
    n, default_ids, chunks = _stimulus_chunks(stimuli, batch_size)
    if n < 2:
        raise ValueError(f"stimuli must hold at least 2 images to define a signal variance; got {n}")
    ids = np.asarray(stimulus_ids) if stimulus_ids is not None else (default_ids if default_ids is not None else np.arange(n))
    if len(ids) != n:
        raise ValueError(f"stimulus_ids has {len(ids)} entries but there are {n} stimuli")
    return n, ids, chunks


def _check_simulate_arguments(repeats: int, batch_size: int, weights: str) -> None:
    """Refuse a bad ``repeats``, ``batch_size`` or ``weights`` of :func:`simulate_voxels` before any work."""
    if isinstance(repeats, bool) or not isinstance(repeats, (int, np.integer)) or repeats < 1:
        raise ValueError(f"repeats must be a positive int; got {repeats!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    if weights not in _WEIGHT_DISTS:
        raise ValueError(f"weights must be one of {_WEIGHT_DISTS}; got {weights!r}")


class _Readout:
    """The voxels' read-out of each layer: channel weights and Gaussian windows, drawn on the layer's first batch.

    ``layer`` ``(V,)``: layer index of each voxel; ``position`` ``(V, 2)`` and
    ``scale`` ``(V,)`` as in :func:`gaussian_windows`. Weights are drawn layer by
    layer in a fixed order from their own stream (``weight_rng``), so they do not
    depend on the batch size.
    """

    def __init__(self, layer: np.ndarray, position: np.ndarray, scale: np.ndarray, weights: str,
                 weight_rng: np.random.Generator) -> None:
        self.layer, self.position, self.scale = layer, position, scale
        self.weights, self.weight_rng = weights, weight_rng
        self.layers: dict[int, tuple[Tensor, Tensor, np.ndarray]] = {}   # layer -> (weights, windows, voxels)
        self.weight_list: list[np.ndarray | None] = [None] * len(layer)

    def _draw(self, li: int, vox: np.ndarray, c: int, h: int, w: int) -> None:
        wv = self.weight_rng.normal(size=(len(vox), c))
        if self.weights == "positive":
            wv = np.abs(wv)
        for j, v in enumerate(vox):
            self.weight_list[v] = wv[j]
        self.layers[li] = (torch.from_numpy(wv), gaussian_windows(self.position[vox], self.scale[vox], h, w), vox)

    def run(self, model: nn.Module, chunks: Iterator, n: int, layer_names: Sequence[str], *, batch_size: int,
            image_size, device, progress: bool | None) -> Tensor:
        """float64 ``(n, V)`` noise-free signal: every chunk of stimuli through :func:`neuroreg.extract`, read out."""
        signal = torch.zeros(n, len(self.layer), dtype=torch.float64)
        transform = _resize_transform(image_size)
        start = 0
        for chunk in tqdm(chunks, total=-(-n // batch_size), desc="simulate", unit="batch", leave=False,
                          disable=None if progress is None else not progress):
            feats = extract(model, chunk, list(layer_names), batch_size=batch_size, device=device,
                            transform=transform, progress=False)
            start += self.add(signal, start, feats, layer_names)
        for li in range(len(layer_names)):
            if (self.layer == li).any() and li not in self.layers:
                raise RuntimeError(f"layer {layer_names[li]!r} produced no activations")
        return signal

    def add(self, signal: Tensor, start: int, feats: Mapping[str, Tensor], layer_names: Sequence[str]) -> int:
        """Write the voxels' signal for one chunk of stimuli into ``signal[start:start + b]``; returns ``b``."""
        b = None
        for li, lname in enumerate(layer_names):
            vox = np.flatnonzero(self.layer == li)
            if len(vox) == 0:
                continue
            maps = _as_maps(feats[lname], lname).to(torch.float64)
            b, c, h, w = maps.shape
            if li not in self.layers:
                self._draw(li, vox, c, h, w)
            wv_t, win, vox = self.layers[li]
            if win.shape[1] != h * w or wv_t.shape[1] != c:
                raise ShapeError(f"layer {lname!r} changed shape between batches (now {(c, h, w)}); "
                                 "give stimuli of one size or set image_size")
            pooled = torch.einsum("bcp,vp->bvc", maps.reshape(b, c, h * w), win)   # (b, V_l, C)
            signal[start:start + b, torch.from_numpy(vox)] = (pooled * wv_t[None]).sum(-1)
        return b if b is not None else 0


def _standardised(sig: np.ndarray, layer: np.ndarray, layer_names: Sequence[str]) -> np.ndarray:
    """``(n, V)`` signal with mean 0 and variance 1 per voxel; a voxel without variance is an error naming it."""
    mean, sd = sig.mean(0), sig.std(0)
    flat = np.flatnonzero(~(sd > 1e-12 * np.maximum(np.abs(mean), 1.0)))
    if len(flat):
        first = int(flat[0])
        raise ValueError(f"{len(flat)} simulated voxels have no signal variance over the stimuli "
                         f"(first: voxel {first}, layer {layer_names[layer[first]]!r}); the layer's read-out is "
                         "constant for these stimuli")
    return (sig - mean) / sd
