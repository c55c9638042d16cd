"""The FactorTopy estimator: fit, predict, summaries and score tables.

The training loop is in :mod:`.training`, the ridge layer choice in :mod:`.layer_choice`, the feature
statistics in :mod:`.statistics` and the parameter checks in :mod:`.params`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from typing import Any, Sequence

import numpy as np
import torch
from scipy.spatial import cKDTree
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted
from torch import Tensor, nn

from neuroreg._utils.checks import check_finite
from neuroreg._utils.modes import eval_mode
from neuroreg.brain.data import BrainData
from neuroreg.errors import ShapeError
from neuroreg.results.table import ScoreTable
from neuroreg.scoring._inputs import sorted_positions
from neuroreg.scoring.columnwise import pearson_per_column, r2_per_column
from neuroreg.scoring.factortopy.diagnostics import choice_margin, weak_layers
from neuroreg.scoring.factortopy.layer_choice import ridge_layer_choice, warn_weak_layers
from neuroreg.scoring.factortopy.network import FactorTopyNet, _combine, sinusoidal_encoding
from neuroreg.scoring.factortopy.params import check_params
from neuroreg.scoring.factortopy.pooling import _layer_terms, _prepare_layers
from neuroreg.scoring.factortopy.sources import _DictSource, _ModelSource
from neuroreg.scoring.factortopy.statistics import feature_stats, level_stats
from neuroreg.scoring.factortopy.summary import expected_depth, hierarchy_fit, layer_confidence
from neuroreg.scoring.factortopy.training import init_positions, train


class FactorTopy(BaseEstimator):
    """Fit a FactorTopy brain-to-network mapping (Yang, Gee & Shi 2024) for one network and one brain.

    Parameters
    ----------
    layers: layer (module) names, shallow -> deep; at least two.
    d: shared channel dimension after alignment (paper: 128).
    hidden, n_freqs: selector MLP width and number of sinusoidal frequencies.
    lr, weight_decay: AdamW (paper: lr 1e-3).
    batch_size: stimuli per step; voxel_batch_size: voxels per forward chunk (bounds memory;
        gradients are accumulated over chunks, so the result does not depend on it).
    max_epochs, patience: early stopping on the mean validation Pearson r, checked from
        ``warmup_epochs + anneal_epochs`` on.
    val_fraction: share of stimuli held out for validation (ignored when ``val_index`` is
        given to :meth:`fit`).
    warmup_epochs: epochs without entropy pressure.
    entropy_weight, entropy_decay: weight of the mean layer-choice entropy after warm-up,
        multiplied by ``entropy_decay`` every further epoch.
    temperature: (start, end) of the layer-softmax temperature, annealed geometrically over
        ``anneal_epochs``.
    smooth_weight, smooth_k: optional penalty on the squared difference of layer choices
        between each voxel and its ``smooth_k`` nearest cortical neighbours.
    beta: SmoothL1 beta (paper: 0.1) on z-scored responses.
    expert_weight: weight of the per-layer terms: every layer's read-out ``y_il`` is also
        fitted to the voxel alone (``mean_l SmoothL1(y_i, y_il)``) and the layer choice pays
        ``sum_l p_il SmoothL1(y_i, y_il)`` with the read-outs held fixed, on a
        ``select_fraction`` of the training stimuli that the read-outs never train on, which
        moves it to the layer that predicts best out of sample. 0 gives the paper's loss alone.
    pooling: ``"gaussian"`` (scale = Gaussian window SD, :func:`scale_to_sd`) or ``"token"``
        (the paper's local/global mix); see :func:`factorized_readout`.
    layer_choice: ``"ridge_cv"`` (final layer probabilities ``softmax(cv_r_ / choice_temperature)``
        from ``cv_folds``-fold ridge with penalty ``ridge_alpha`` per stimulus (a number, or a
        sequence: each voxel and layer then keeps its best cross-validated r over them), see
        :func:`ridge_cv_r`) or ``"selector"`` (the layer-selector MLP, as in the paper).
    ridge_var_floor: the ridge layer choice raises each feature's training-fold variance to at
        least this fraction of the voxel's mean feature variance before standardising
        (``var_floor`` of :func:`ridge_cv_r`): a ReLU channel that is nearly constant at a narrow
        window would otherwise be scaled up by orders of magnitude and wreck that layer's
        held-out r. 0 standardises plainly.
    per_layer_space: give every layer its own position and scale per voxel (the selectors
        output ``(n, L, 2)`` and ``(n, L)``), so each layer's read-out is judged at its own
        best window; ``space_`` and ``scale_`` report the most probable layer's. False: one
        position and scale per voxel shared by all layers, as in the paper.
    position_init: ``"correlation"`` (default) starts every voxel's position for every layer at
        the peak of its per-pixel ridge fit (:func:`correlation_peaks`), by fitting the space
        selector to those peaks for ``init_steps`` Adam steps before training; the peaks are also
        a window the ridge layer choice judges. ``"centre"`` starts every voxel at the image
        centre (the paper).
    peak_alpha: ridge penalty of those peaks, on each pixel's channel correlation matrix (trace
        ``C``); ``None``: the channel-summed squared correlation (channels treated as independent,
        a broader map whose peak is several times further from the truth on deeper layers).
    pyramid_cache: bytes of blur pyramids (``pooling="gaussian"``) kept in memory during the fit: the
        pyramids of every stimulus are built once, in the pass that measures their level SDs, for the
        layers that fit (shallow first, :func:`~neuroreg.scoring.factortopy.statistics.plan_cache`;
        ``4 n_stimuli K H W C`` bytes a layer, e.g. 1.1 GB for a 64 x 24 x 24 layer and 600 stimuli),
        instead of once per batch and epoch; the others are built per batch. 0 keeps none. The same
        numbers either way (up to float rounding); freed when ``fit`` returns.
    random_state: an integer >= 0 that seeds the initialisation, the validation split, the batch order
        and the ridge folds (scikit-learn's name; a fit is deterministic for a given value).
    device: torch device (default: CUDA when available, else CPU).
    progress: show a progress bar over epochs (default: only on a terminal).

    A scikit-learn ``BaseEstimator``: ``get_params``/``set_params`` and
    ``sklearn.base.clone`` work (a clone is unfitted, with the same parameters); ``predict`` and the
    summaries before ``fit`` raise ``sklearn.exceptions.NotFittedError``.

    Fitted attributes
    -----------------
    layer_probs_ ``(n_voxels, L)``, layer_ ``(n_voxels,)`` expected depth in [0, 1],
    space_ ``(n_voxels, 2)`` x, y in [-1, 1], scale_ ``(n_voxels,)`` (with ``per_layer_space``
    those of the most probable layer; every layer's in space_layers_ ``(n_voxels, L, 2)`` and
    scale_layers_ ``(n_voxels, L)``), confidence_
    ``(n_voxels,)``, r2_ ``(n_voxels,)`` validation R^2, val_r_ ``(n_voxels,)``,
    history_ (per-epoch loss, validation r, temperature, seconds), best_epoch_, n_epochs_,
    roi_, coords_, temperature_ (layer-softmax temperature of the kept model), cv_r_
    ``(n_voxels, L)`` cross-validated ridge r per layer (``layer_choice="ridge_cv"``),
    level_std_ (per-layer ``(C, K)`` blur-level SDs, ``pooling="gaussian"``), timings_ (seconds
    spent on feature statistics, position initialisation, training epochs and the ridge layer choice),
    init_space_ ``(n_voxels, L, 2)`` ridge-fit peaks (``position_init="correlation"``).
    window_candidate_ ``(n_voxels, L)`` which window the ridge layer choice kept per voxel and layer
    (0 learned, 1 learned position read as a bilinear point sample, 2 ridge-fit peak (``init_space_``) read so) and
    choice_space_layers_ ``(n_voxels, L, 2)``, choice_scale_layers_ ``(n_voxels, L)`` those windows.

    Diagnostics (``layer_choice="ridge_cv"``): cv_r_ per voxel and layer; confidence_ (entropy
    of the layer choice); choice_margin_ ``(n_voxels,)`` best minus second-best cv r; weak_layers_,
    the layers whose cv r is below their neighbours' for nearly every voxel
    (:func:`neuroreg.scoring.factortopy.diagnostics.weak_layers`), each also raised as a
    ``RuntimeWarning``: such a layer usually points at its read-out, not at the brain.
    """

    def __init__(self, layers: Sequence[str], d: int = 128, *, hidden: int = 128,
                 n_freqs: int = 6, lr: float = 1e-3, weight_decay: float = 0.01, batch_size: int = 32,
                 voxel_batch_size: int = 4096, max_epochs: int = 30, patience: int = 3,
                 val_fraction: float = 0.1, warmup_epochs: int = 2, anneal_epochs: int = 6,
                 entropy_weight: float = 0.01, entropy_decay: float = 0.95,
                 temperature: tuple[float, float] = (1.0, 0.2), smooth_weight: float = 0.0,
                 smooth_k: int = 6, beta: float = 0.1, expert_weight: float = 1.0, select_fraction: float = 0.2,
                 pooling: str = "gaussian", layer_choice: str = "ridge_cv", cv_folds: int = 5,
                 ridge_alpha: float | Sequence[float] = (2e-3, 2e-2, 2e-1, 2.0), choice_temperature: float = 0.01,
                 ridge_var_floor: float = 1e-2, per_layer_space: bool = True,
                 position_init: str = "correlation", init_steps: int = 500, peak_alpha: float | None = 0.1,
                 pyramid_cache: int = 2 ** 31, random_state: int = 0, device: str | torch.device | None = None,
                 progress: bool | None = None) -> None:
        self.layers = layers
        self.random_state = random_state
        self.per_layer_space = per_layer_space
        self.position_init = position_init
        self.init_steps = init_steps
        self.peak_alpha = peak_alpha
        self.pyramid_cache = pyramid_cache
        self.d = d
        self.hidden = hidden
        self.n_freqs = n_freqs
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.voxel_batch_size = voxel_batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.val_fraction = val_fraction
        self.warmup_epochs = warmup_epochs
        self.anneal_epochs = anneal_epochs
        self.entropy_weight = entropy_weight
        self.entropy_decay = entropy_decay
        self.temperature = temperature
        self.smooth_weight = smooth_weight
        self.smooth_k = smooth_k
        self.beta = beta
        self.expert_weight = expert_weight
        self.select_fraction = select_fraction
        self.pooling = pooling
        self.layer_choice = layer_choice
        self.cv_folds = cv_folds
        self.ridge_alpha = ridge_alpha
        self.ridge_var_floor = ridge_var_floor
        self.choice_temperature = choice_temperature
        self.device = device
        self.progress = progress

    def __sklearn_is_fitted__(self) -> bool:
        # net_ is set last by fit: a fit that raised half-way leaves the estimator unfitted
        return hasattr(self, "net_")

    # ------------------------------------------------------------------ checks
    def _device(self) -> torch.device:
        if self.device is not None:
            return torch.device(self.device)
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")

    @staticmethod
    def _coords(brain: BrainData) -> np.ndarray:
        if not isinstance(brain, BrainData):
            raise TypeError(f"brain must be a neuroreg.brain.BrainData; got {type(brain).__name__}")
        if "coords" not in brain.unit_info:
            raise ValueError("brain.unit_info has no 'coords': FactorTopy needs cortical coordinates "
                             f"(n_voxels x 2 or 3) for every voxel; unit_info has {sorted(brain.unit_info) or 'no keys'}")
        coords = np.asarray(brain.unit_info["coords"], dtype=np.float64)
        if coords.ndim != 2 or coords.shape[1] not in (2, 3):
            raise ShapeError(f"brain.unit_info['coords'] must be (n_voxels, 2 or 3); got shape {coords.shape}")
        check_finite("brain.unit_info['coords']", coords)
        return coords

    def _source(self, features_or_model, n_stimuli: int, stimuli, device: torch.device):
        if isinstance(features_or_model, nn.Module):
            return _ModelSource(features_or_model, stimuli, self.layers_, n_stimuli, device)
        if isinstance(features_or_model, Mapping):
            return _DictSource(features_or_model, self.layers_, n_stimuli)
        raise TypeError("features_or_model must be a mapping layer -> (n, C, H, W) tensor or a torch "
                        f"nn.Module; got {type(features_or_model).__name__}")

    # ------------------------------------------------------------------ fit
    def fit(self, features_or_model, brain: BrainData, *, stimuli=None, val_index=None) -> "FactorTopy":
        """Fit the selectors and read-outs; returns self.

        features_or_model: mapping layer -> ``(n_stimuli, C, H, W)`` (or ``(n_stimuli, C)``)
            tensors in ``brain``'s stimulus order, or a frozen ``nn.Module`` run on
            ``stimuli`` (default ``brain.stimuli``) batch by batch.
        brain: BrainData ``(n_stimuli, n_voxels)`` with ``unit_info['coords']``.
        val_index: optional stimulus indices for validation (default: a seeded
            ``val_fraction`` of the stimuli).
        """
        layers = check_params(self.get_params())
        coords = self._coords(brain)
        for name in [k for k in vars(self) if k.endswith("_") and not k.startswith("__")]:
            delattr(self, name)  # a refit starts from nothing a previous fit left
        self.layers_ = layers
        device = self._device()
        n_stim = brain.responses.shape[0]
        # every random choice over stimuli (validation split, read-out/selection split, batch
        # order, ridge folds) is made on ranks in sorted stimulus-id order, so the same data in
        # another row order gives the same fit
        train_idx, val_idx = self._split(n_stim, val_index, sorted_positions(brain.stimulus_ids))
        y = self._standardise(brain.responses, train_idx)
        enc = self._encode(coords, device)
        neighbours = self._neighbours(coords, device) if self.smooth_weight > 0 else None
        is_model = isinstance(features_or_model, nn.Module)
        if is_model and stimuli is None:
            stimuli = brain.stimuli
        with eval_mode(features_or_model, device) if is_model else contextlib.nullcontext():
            source = self._source(features_or_model, n_stim, stimuli, device)
            net = self._fit_source(source, y, enc, train_idx, val_idx, neighbours, device)
        self.roi_ = np.asarray(brain.unit_info["roi"]) if "roi" in brain.unit_info else None
        self.net_ = net
        return self

    def _standardise(self, responses: np.ndarray, train_idx: np.ndarray) -> Tensor:
        """Responses ``(n_stimuli, n_voxels)`` z-scored with the training stimuli's mean and SD (float32)."""
        mean = responses[train_idx].mean(0)
        std = responses[train_idx].std(0)
        flat = np.flatnonzero(std <= 1e-12 * np.maximum(1.0, np.abs(mean)))
        if flat.size:
            raise ValueError(f"{flat.size} voxels have constant responses over the training stimuli "
                             f"(first: {flat[:5].tolist()}); remove them before fitting")
        self.y_mean_, self.y_std_ = mean, std
        return torch.as_tensor((responses - mean) / std, dtype=torch.float32)

    def _encode(self, coords: np.ndarray, device: torch.device) -> Tensor:
        """Sinusoidal encoding ``(n_voxels, n_coord)`` of the coordinates scaled to [-1, 1] per axis."""
        lo, hi = coords.min(0), coords.max(0)
        span = np.where(hi - lo > 0, hi - lo, 1.0)
        self.coords_ = coords
        self.coords_center_, self.coords_scale_ = (hi + lo) / 2, span / 2
        return sinusoidal_encoding(torch.as_tensor((coords - self.coords_center_) / self.coords_scale_,
                                                   dtype=torch.float32), self.n_freqs).to(device)

    def _fit_source(self, source, y: Tensor, enc: Tensor, train_idx: np.ndarray, val_idx: np.ndarray,
                    neighbours: Tensor | None, device: torch.device) -> FactorTopyNet:
        """Feature statistics, position start, training and layer choice on one feature source."""
        shapes = self.layer_shapes_ = source.shapes()
        tic = time.perf_counter()
        self.feature_mean_, self.feature_std_ = feature_stats(source, train_idx, self.batch_size * 4, device)
        self._cache: list[Tensor | None] | None = None
        self.level_std_ = None
        if self.pooling == "gaussian":
            rows = np.concatenate([train_idx, val_idx]) if self.pyramid_cache > 0 else None
            self.level_std_, self._cache = level_stats(source, train_idx, self.batch_size, device, self.layers_,
                                                       shapes, self._normalise, cache_index=rows,
                                                       cache_bytes=self.pyramid_cache)
        self.timings_ = {"statistics": time.perf_counter() - tic}
        try:
            return self._fit_net(source, y, enc, train_idx, val_idx, neighbours, device)
        finally:
            del self._cache  # the pyramids of the fit's stimuli: gigabytes, not needed by predict

    def _fit_net(self, source, y: Tensor, enc: Tensor, train_idx: np.ndarray, val_idx: np.ndarray,
                 neighbours: Tensor | None, device: torch.device) -> FactorTopyNet:
        """Position start, training and layer choice, after the feature statistics."""
        shapes = self.layer_shapes_
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.random_state)
            net = FactorTopyNet([shapes[k][0] for k in self.layers_], y.shape[1], enc.shape[1], self.d, self.hidden,
                                self.pooling, self.per_layer_space)
        net.to(device)
        if self.position_init == "correlation":
            tic = time.perf_counter()
            self.init_space_, self.init_loss_ = init_positions(self, net, source, y, enc, train_idx, device)
            self.timings_["position_init"] = time.perf_counter() - tic
        result = train(self, net, source, y, enc, train_idx, val_idx, neighbours, device)
        self.timings_["training"] = sum(h["seconds"] for h in result.history)
        self.temperature_ = result.temperature
        self.history_, self.best_epoch_, self.n_epochs_ = result.history, result.best_epoch, len(result.history)
        probs = None
        if self.layer_choice == "ridge_cv":
            # ridge is cross-validated by itself: it uses the validation stimuli too (train, then
            # validation rows, each in sorted stimulus-id order, so the folds do not depend on row order)
            probs = self._choose_layers(net, source, y, enc, np.concatenate([train_idx, val_idx]), device)
        self._set_fitted(net, enc, source, y, val_idx, device, probs)
        return net

    def _choose_layers(self, net: FactorTopyNet, source, y: Tensor, enc: Tensor, index: np.ndarray,
                       device: torch.device) -> Tensor:
        """The ridge layer choice; returns the layer probabilities ``(n_voxels, L)`` it fixes."""
        tic = time.perf_counter()
        choice = ridge_layer_choice(self, net, source, y, enc, index, device)
        self.timings_["layer_choice"] = time.perf_counter() - tic
        self.cv_r_, self.window_candidate_ = choice.cv_r, choice.window_candidate
        if choice.space_layers is not None:
            self.choice_space_layers_, self.choice_scale_layers_ = choice.space_layers, choice.scale_layers
        self.choice_margin_ = choice_margin(self.cv_r_)
        self.weak_layers_ = weak_layers(self.cv_r_, self.layers_)
        warn_weak_layers(self.weak_layers_, stacklevel=4)  # points at the caller of fit
        return torch.softmax(torch.as_tensor(self.cv_r_, dtype=torch.float32) / self.choice_temperature,
                             dim=1).to(device)

    def _split(self, n_stim: int, val_index, rank_order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Training and validation rows, each listed in sorted stimulus-id order."""
        is_val = np.zeros(n_stim, dtype=bool)
        if val_index is not None:
            val = np.unique(np.asarray(val_index, dtype=np.int64))
            if val.size and (val.min() < 0 or val.max() >= n_stim):
                raise ValueError(f"val_index must lie in [0, {n_stim}); got range [{val.min()}, {val.max()}]")
            is_val[val] = True
        else:
            n_val = int(round(self.val_fraction * n_stim))
            is_val[rank_order[np.random.default_rng(self.random_state).permutation(n_stim)[:n_val]]] = True
        val, train = rank_order[is_val[rank_order]], rank_order[~is_val[rank_order]]
        if val.size < 3 or train.size < 3:
            raise ValueError(f"need at least 3 training and 3 validation stimuli; got {train.size} and "
                             f"{val.size} of {n_stim} (val_fraction={self.val_fraction})")
        self.train_index_, self.val_index_ = train, val
        return train, val

    def _neighbours(self, coords: np.ndarray, device: torch.device) -> Tensor:
        k = min(self.smooth_k, coords.shape[0] - 1)
        if k < 1:
            raise ValueError("the smoothness penalty needs at least 2 voxels")
        _, idx = cKDTree(coords).query(coords, k=k + 1)
        return torch.as_tensor(idx[:, 1:], dtype=torch.long, device=device)

    @property
    def _readout_kw(self) -> dict[str, Any]:
        level_std = getattr(self, "level_std_", None)
        return {"pooling": self.pooling,
                "level_std": None if level_std is None else [level_std[k] for k in self.layers_]}

    def _prepare(self, idx: np.ndarray, normed: Sequence[Tensor], align: Sequence[Tensor],
                 n_voxels: int | None = None) -> list:
        """What ``n_voxels`` voxels pool from, per layer, for one batch of normalised maps of the stimulus rows
        ``idx`` (read from the fit's cached pyramids where there are some)."""
        cache = getattr(self, "_cache", None)
        index = None if cache is None else torch.as_tensor(idx)
        return _prepare_layers(normed, align, **self._readout_kw, cache=cache, index=index, n_voxels=n_voxels)

    def _normalise(self, maps: Mapping[str, Tensor]) -> list[Tensor]:
        """The maps ``{layer: (b, C_l, H_l, W_l)}`` minus the training mean over the training SD per
        channel, in ``layers_`` order."""
        return [(maps[k] - self.feature_mean_[k][:, None, None]) / self.feature_std_[k][:, None, None]
                for k in self.layers_]

    @torch.no_grad()
    def _predict_z(self, net: FactorTopyNet, source, enc: Tensor, index: np.ndarray, tau: float,
                   device: torch.device, probs: Tensor | None = None) -> Tensor:
        """Predicted z-scored responses ``(len(index), n_voxels)``; ``probs`` ``(n_voxels, L)`` replaces the
        layer selector's probabilities at temperature ``tau`` when given."""
        selected, space, scale = net.selectors(enc, tau)
        probs = selected if probs is None else probs.to(selected.device)
        align = list(net.align)
        chunks = [slice(s, s + self.voxel_batch_size) for s in range(0, probs.shape[0], self.voxel_batch_size)]
        out = []
        for idx, maps in source.batches(index, self.batch_size, device):
            prepared = self._prepare(idx, self._normalise(maps), align, min(self.voxel_batch_size, probs.shape[0]))
            parts = [_combine(_layer_terms(prepared, align, space[sl], scale[sl], net.weights[sl]), probs[sl],
                              net.bias[sl], False) for sl in chunks]
            out.append(torch.cat(parts, dim=1).cpu())
        return torch.cat(out, dim=0)

    def _set_fitted(self, net: FactorTopyNet, enc: Tensor, source, y: Tensor, val_idx: np.ndarray,
                    device: torch.device, fixed_probs: Tensor | None) -> None:
        with torch.no_grad():
            probs, space, scale = net.selectors(enc, self.temperature_)
        if fixed_probs is not None:
            probs = fixed_probs
        self.encoding_ = enc
        self.layer_probs_ = probs.double().cpu().numpy()
        spaces, scales = space.double().cpu().numpy(), scale.double().cpu().numpy()
        if spaces.ndim == 3:  # per layer: report the most probable layer's
            self.space_layers_, self.scale_layers_ = spaces, scales
            best = self.layer_probs_.argmax(1)
            spaces, scales = spaces[np.arange(len(best)), best], scales[np.arange(len(best)), best]
        self.space_, self.scale_ = spaces, scales
        self.layer_ = expected_depth(self.layer_probs_)
        self.confidence_ = layer_confidence(self.layer_probs_)
        pred = self._predict_z(net, source, enc, val_idx, self.temperature_, device, fixed_probs).double().numpy()
        truth = y[torch.as_tensor(val_idx)].double().numpy()
        self.val_r_ = pearson_per_column(pred, truth)
        self.r2_ = r2_per_column(truth, pred)

    # ------------------------------------------------------------------ use
    @property
    def best_layer_(self) -> np.ndarray:
        """``(n_voxels,)`` index of the most probable layer per voxel."""
        check_is_fitted(self)
        return self.layer_probs_.argmax(1)

    def predict(self, features_or_model, *, stimuli=None) -> np.ndarray:
        """Predicted responses ``(n_stimuli, n_voxels)`` in the units of the fitted responses."""
        check_is_fitted(self)
        device = next(self.net_.parameters()).device
        if isinstance(features_or_model, nn.Module):
            if stimuli is None:
                raise ValueError("predict with a model needs stimuli=... images (n, 3, H, W)")
            n = int(np.asarray(stimuli.shape)[0])
        elif isinstance(features_or_model, Mapping):
            missing = [k for k in self.layers_ if k not in features_or_model]
            if missing:
                raise ValueError(f"layers {missing} are missing from the features; have {list(features_or_model)}")
            n = int(features_or_model[self.layers_[0]].shape[0])
        else:
            raise TypeError("features_or_model must be a mapping layer -> tensor or a torch nn.Module; "
                            f"got {type(features_or_model).__name__}")
        is_model = isinstance(features_or_model, nn.Module)
        with eval_mode(features_or_model, device) if is_model else contextlib.nullcontext():
            source = self._source(features_or_model, n, stimuli, device)
            shapes = source.shapes()
            bad = {k: (shapes[k], self.layer_shapes_[k]) for k in self.layers_ if shapes[k][0] != self.layer_shapes_[k][0]}
            if bad:
                raise ShapeError(f"channel counts differ from the fitted features (seen, fitted): {bad}")
            # the fitted layer probabilities (float32 -> float64 -> float32 is exact)
            probs = torch.as_tensor(self.layer_probs_, dtype=torch.float32)
            z = self._predict_z(self.net_, source, self.encoding_, np.arange(n), self.temperature_, device, probs)
        return z.double().numpy() * self.y_std_ + self.y_mean_

    def _roi(self, roi) -> np.ndarray:
        if roi is not None:
            roi = np.asarray(roi)
            if roi.shape != (self.layer_.shape[0],):
                raise ShapeError(f"roi must have one label per voxel ({self.layer_.shape[0]}); got shape {roi.shape}")
            return roi
        if self.roi_ is None:
            raise ValueError("no ROI labels: the fitted brain had no unit_info['roi']; pass roi=...")
        return self.roi_

    def hierarchy_fit(self, levels: Mapping[str, float] | None = None, roi=None) -> dict[str, float]:
        """Slope, b0, b1 and n of depth regressed on ROI level; see :func:`hierarchy_fit`."""
        check_is_fitted(self)
        return hierarchy_fit(self.layer_, self._roi(roi), levels)

    def hierarchy_slope(self, levels: Mapping[str, float] | None = None, roi=None) -> float:
        """Hierarchy slope (Yang et al. section 4.3): steeper = more brain-like layer ordering.

        levels: ROI -> depth (default V1 0, V2V3 1/3, OPA 2/3, EBA 1); roi: optional labels
        overriding the fitted brain's ``unit_info['roi']`` (e.g. shuffled, as a null).
        """
        return self.hierarchy_fit(levels, roi)["slope"]

    def summary(self, model: str | None = None, levels: Mapping[str, float] | None = None) -> ScoreTable:
        """Score rows: per ROI (and ``all``) the mean depth, mean confidence and median validation R^2;
        with ROI labels also the hierarchy slope, b0 and b1."""
        check_is_fitted(self)
        table = ScoreTable()
        layer = "|".join(self.layers_)
        groups: list[tuple[str, np.ndarray]] = [("all", np.ones(self.layer_.shape[0], dtype=bool))]
        if self.roi_ is not None:
            groups += [(str(r), self.roi_ == r) for r in np.unique(self.roi_)]
        for region, mask in groups:
            common = dict(model=model, layer=layer, region=region, split="val", n_voxels=int(mask.sum()))
            table.append(metric="factortopy_depth", score=float(self.layer_[mask].mean()), **common)
            table.append(metric="factortopy_confidence", score=float(self.confidence_[mask].mean()), **common)
            table.append(metric="factortopy_r2", score=float(np.median(self.r2_[mask])), **common)
        if self.roi_ is not None:
            try:
                fit = self.hierarchy_fit(levels)
            except ValueError:
                fit = None
            if fit is not None:
                for key in ("slope", "b0", "b1"):
                    table.append(model=model, layer=layer, region="hierarchy", split="val",
                                 metric=f"hierarchy_{key}", score=fit[key], n_voxels=fit["n"])
        return table
