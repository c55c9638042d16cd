"""The FactorTopy estimator: fit, predict, summaries and score tables."""

from __future__ import annotations

import contextlib
import copy
import time
import warnings
from collections.abc import Mapping
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy.spatial import cKDTree
from sklearn.base import BaseEstimator
from torch import Tensor, nn
from tqdm.auto import tqdm

from neuroreg._utils.checks import check_finite
from neuroreg._utils.modes import eval_mode
from neuroreg.brain.data import BrainData
from neuroreg.errors import ShapeError
from neuroreg.scoring._inputs import sorted_positions
from neuroreg.scoring.columnwise import pearson_per_column
from neuroreg.scoring.factortopy.diagnostics import choice_margin, weak_layers
from neuroreg.scoring.factortopy.initialization import correlation_peaks
from neuroreg.scoring.factortopy.network import FactorTopyNet, _combine, sinusoidal_encoding
from neuroreg.scoring.factortopy.pooling import (_POOLINGS, N_LEVELS, _gaussian_tables, _layer_args, _layer_terms,
                                                 _pool, _prepare_layers, _Tables)
from neuroreg.scoring.factortopy.ridge import _RIDGE_BLOCK, RIDGE_MEMORY, _plan_passes, _RidgeStats
from neuroreg.scoring.factortopy.sources import _DictSource, _ModelSource
from neuroreg.scoring.factortopy.summary import expected_depth, hierarchy_fit, layer_confidence
from neuroreg.results.table import ScoreTable


class FactorTopy(BaseEstimator):
    """Fit a FactorTopy brain-to-network mapping (Yang, Gee & Shi 2024) for one network and one brain.

    Parameters
    ----------
    layers: layer (module) names, shallow -> deep; at least two.
    d: shared channel dimension after alignment (paper: 128).
    seed: seeds the initialisation, the validation split and the batch order.
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
    random_state: scikit-learn's name for ``seed``; when given it overrides ``seed``.
    device: torch device (default: CUDA when available, else CPU).
    progress: show a progress bar over epochs (default: only on a terminal).

    A scikit-learn ``BaseEstimator``: ``get_params``/``set_params`` and
    ``sklearn.base.clone`` work (a clone is unfitted, with the same parameters).

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

    def __init__(self, layers: Sequence[str], d: int = 128, seed: int = 0, *, hidden: int = 128,
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
                 random_state: int | None = None, device: str | torch.device | None = None,
                 progress: bool | None = None) -> None:
        self.layers = layers
        self.random_state = random_state
        self.per_layer_space = per_layer_space
        self.position_init = position_init
        self.init_steps = init_steps
        self.peak_alpha = peak_alpha
        self.d = d
        self.seed = seed
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

    # ------------------------------------------------------------------ checks
    def _check_params(self) -> list[str]:
        layers = [self.layers] if isinstance(self.layers, str) else list(self.layers)
        if len(layers) < 2:
            raise ValueError(f"layers must name at least 2 layers (shallow -> deep); got {layers}")
        if len(set(layers)) != len(layers):
            raise ValueError(f"layers must be unique; got {layers}")
        for name in ("d", "hidden", "batch_size", "voxel_batch_size", "max_epochs", "smooth_k"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer; got {value!r}")
        if self.layer_choice not in ("ridge_cv", "selector"):
            raise ValueError(f"layer_choice must be 'ridge_cv' or 'selector'; got {self.layer_choice!r}")
        if isinstance(self.cv_folds, bool) or not isinstance(self.cv_folds, (int, np.integer)) or self.cv_folds < 2:
            raise ValueError(f"cv_folds must be an integer >= 2; got {self.cv_folds!r}")
        alphas = np.atleast_1d(np.asarray(self.ridge_alpha, dtype=np.float64))
        if alphas.ndim != 1 or alphas.size == 0 or not (np.isfinite(alphas) & (alphas > 0)).all():
            raise ValueError(f"ridge_alpha must be a positive number or a sequence of them; got {self.ridge_alpha!r}")
        if isinstance(self.ridge_var_floor, bool) or not (
                isinstance(self.ridge_var_floor, (int, float, np.floating)) and self.ridge_var_floor >= 0):
            raise ValueError(f"ridge_var_floor must be a number >= 0; got {self.ridge_var_floor!r}")
        if not self.choice_temperature > 0:
            raise ValueError(f"choice_temperature must be > 0; got {self.choice_temperature}")
        if self.pooling not in _POOLINGS:
            raise ValueError(f"pooling must be one of {_POOLINGS}; got {self.pooling!r}")
        if self.position_init not in ("correlation", "centre"):
            raise ValueError(f"position_init must be 'correlation' or 'centre'; got {self.position_init!r}")
        if isinstance(self.init_steps, bool) or not isinstance(self.init_steps, (int, np.integer)) or self.init_steps < 0:
            raise ValueError(f"init_steps must be an integer >= 0; got {self.init_steps!r}")
        if self.peak_alpha is not None and (isinstance(self.peak_alpha, bool) or not self.peak_alpha > 0):
            raise ValueError(f"peak_alpha must be a number > 0 or None; got {self.peak_alpha!r}")
        if not 0.0 < self.select_fraction < 1.0:
            raise ValueError(f"select_fraction must be in (0, 1); got {self.select_fraction}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1); got {self.val_fraction}")
        t0, t1 = self.temperature
        if not (t0 > 0 and t1 > 0):
            raise ValueError(f"temperature must be two positive numbers (start, end); got {self.temperature}")
        for name in ("lr", "beta"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0; got {getattr(self, name)}")
        for name in ("entropy_weight", "smooth_weight", "expert_weight", "weight_decay", "warmup_epochs", "anneal_epochs",
                     "patience"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0; got {getattr(self, name)}")
        return layers

    @property
    def _seed(self) -> int:
        return int(self.seed if self.random_state is None else self.random_state)

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
        """Fit the selectors and read-outs.

        features_or_model: mapping layer -> ``(n_stimuli, C, H, W)`` (or ``(n_stimuli, C)``)
            tensors in ``brain``'s stimulus order, or a frozen ``nn.Module`` run on
            ``stimuli`` (default ``brain.stimuli``) batch by batch.
        brain: BrainData ``(n_stimuli, n_voxels)`` with ``unit_info['coords']``.
        val_index: optional stimulus indices for validation (default: a seeded
            ``val_fraction`` of the stimuli).
        """
        layers = self._check_params()
        coords = self._coords(brain)
        self.layers_ = layers
        device = self._device()
        n_stim, n_vox = brain.responses.shape
        # every random choice over stimuli (validation split, read-out/selection split, batch
        # order, ridge folds) is made on ranks in sorted stimulus-id order, so the same data in
        # another row order gives the same fit
        rank_order = sorted_positions(brain.stimulus_ids)
        train_idx, val_idx = self._split(n_stim, val_index, rank_order)

        y_all = brain.responses
        mean = y_all[train_idx].mean(0)
        std = y_all[train_idx].std(0)
        flat = np.flatnonzero(std <= 1e-12 * np.maximum(1.0, np.abs(mean)))
        if flat.size:
            raise ValueError(f"{flat.size} voxels have constant responses over the training stimuli "
                             f"(first: {flat[:5].tolist()}); remove them before fitting")
        self.y_mean_, self.y_std_ = mean, std
        y = torch.as_tensor((y_all - mean) / std, dtype=torch.float32)

        lo, hi = coords.min(0), coords.max(0)
        span = np.where(hi - lo > 0, hi - lo, 1.0)
        self.coords_ = coords
        self.coords_center_, self.coords_scale_ = (hi + lo) / 2, span / 2
        enc = sinusoidal_encoding(torch.as_tensor((coords - self.coords_center_) / self.coords_scale_,
                                                  dtype=torch.float32), self.n_freqs).to(device)
        neighbours = self._neighbours(coords, device) if self.smooth_weight > 0 else None

        is_model = isinstance(features_or_model, nn.Module)
        if is_model and stimuli is None:
            stimuli = brain.stimuli
        with eval_mode(features_or_model, device) if is_model else contextlib.nullcontext():
            source = self._source(features_or_model, n_stim, stimuli, device)
            shapes = source.shapes()
            self.layer_shapes_ = shapes
            tic = time.perf_counter()
            self.feature_mean_, self.feature_std_ = self._feature_stats(source, train_idx, device)
            self.level_std_ = self._level_stats(source, train_idx, device) if self.pooling == "gaussian" else None
            self.timings_ = {"statistics": time.perf_counter() - tic}
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self._seed)
                net = FactorTopyNet([shapes[k][0] for k in layers], n_vox, enc.shape[1], self.d, self.hidden,
                                   self.pooling, self.per_layer_space)
            net.to(device)
            if self.position_init == "correlation":
                tic = time.perf_counter()
                self._init_positions(net, source, y, enc, train_idx, device)
                self.timings_["position_init"] = time.perf_counter() - tic
            self._train(net, source, y, enc, train_idx, val_idx, neighbours, device)
        self.roi_ = np.asarray(brain.unit_info["roi"]) if "roi" in brain.unit_info else None
        return self

    def _init_positions(self, net: FactorTopyNet, source, y: Tensor, enc: Tensor, train_idx, device) -> None:
        """Start the space selector at each voxel's ridge-fit peak (:func:`correlation_peaks`).

        The selector MLP is fitted to the peaks (pre-tanh values, least squares) before training,
        so the positions stay a smooth function of cortical coordinates wherever the data allow.
        """
        target_y = y.to(device)
        peaks, height = correlation_peaks(
            lambda: ((idx, self._normalise(maps)) for idx, maps in source.batches(train_idx, self.batch_size * 4,
                                                                                  device)),
            target_y, y.shape[1], alpha=self.peak_alpha)
        self.init_space_ = peaks.double().cpu().numpy()
        if not net.per_layer_space:  # one position per voxel: the layer whose peak is highest
            peaks = peaks[torch.arange(len(peaks)), height.argmax(1)]
        goal = torch.atanh(peaks.clamp(-0.95, 0.95)).reshape(len(peaks), -1).to(device)
        sel = net.space_selector
        opt = torch.optim.Adam(sel.parameters(), lr=3e-3)
        for _ in range(self.init_steps):
            opt.zero_grad(set_to_none=True)
            loss = (sel(enc) - goal).square().mean()
            loss.backward()
            opt.step()
        self.init_loss_ = float(loss.detach())

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
            is_val[rank_order[np.random.default_rng(self._seed).permutation(n_stim)[:n_val]]] = True
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

    def _feature_stats(self, source, train_idx, device) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Per-channel mean and std of each layer over training stimuli and positions."""
        sums: dict[str, Tensor] = {}
        sq: dict[str, Tensor] = {}
        count: dict[str, int] = {}
        for _, maps in source.batches(train_idx, self.batch_size * 4, device):
            for name, x in maps.items():
                x64 = x.double()
                sums[name] = sums.get(name, 0) + x64.sum(dim=(0, 2, 3))
                sq[name] = sq.get(name, 0) + (x64 ** 2).sum(dim=(0, 2, 3))
                count[name] = count.get(name, 0) + x.shape[0] * x.shape[2] * x.shape[3]
        means, stds = {}, {}
        for name in sums:
            m = sums[name] / count[name]
            var = (sq[name] / count[name] - m ** 2).clamp_min(0.0)
            s = var.sqrt()
            # dead channels (constant everywhere) become zeros instead of dividing by 0
            s = torch.where(s > 1e-6 * s.max().clamp_min(1e-12), s, torch.full_like(s, float("inf")))
            means[name], stds[name] = m.float(), s.float()
        return means, stds

    def _level_stats(self, source, train_idx, device) -> dict[str, Tensor]:
        """``(C_l, K)`` SD of every normalised channel at every blur level, over training stimuli and positions."""
        sums: dict[str, Tensor] = {}
        sq: dict[str, Tensor] = {}
        count = 0
        for _, maps in source.batches(train_idx, self.batch_size, device):
            for name, x in zip(self.layers_, self._normalise(maps)):
                for rows in _gaussian_tables(x).rows:
                    pyr = rows.view(N_LEVELS, -1, x.shape[1])  # (K, positions x images, C)
                    sums[name] = sums.get(name, 0) + pyr.sum(dim=1, dtype=torch.float64).T
                    sq[name] = sq.get(name, 0) + pyr.square().sum(dim=1, dtype=torch.float64).T
            count += len(_)
        out = {}
        for name in self.layers_:
            h, w = self.layer_shapes_[name][1:]
            n = count * h * w
            var = (sq[name] / n - (sums[name] / n) ** 2).clamp_min(0.0)
            s = var.sqrt()
            # dead channels (normalised to zeros) stay zero: divide by 1
            out[name] = torch.where(s > 1e-6, s, torch.ones_like(s)).float()
        return out

    @property
    def _readout_kw(self) -> dict[str, Any]:
        level_std = getattr(self, "level_std_", None)
        return {"pooling": self.pooling,
                "level_std": None if level_std is None else [level_std[k] for k in self.layers_]}

    def _prepare(self, normed: Sequence[Tensor], align: Sequence[Tensor]) -> list:
        """What every voxel pools from, per layer, for one batch of normalised maps."""
        return _prepare_layers(normed, align, **self._readout_kw)

    def _normalise(self, maps: Mapping[str, Tensor]) -> list[Tensor]:
        return [(maps[k] - self.feature_mean_[k][:, None, None]) / self.feature_std_[k][:, None, None]
                for k in self.layers_]

    def _temperature(self, epoch: int) -> float:
        t0, t1 = self.temperature
        frac = 1.0 if self.anneal_epochs == 0 else min(epoch / self.anneal_epochs, 1.0)
        return float(t0 * (t1 / t0) ** frac)

    def _train(self, net: FactorTopyNet, source, y: Tensor, enc: Tensor, train_idx, val_idx, neighbours,
               device) -> None:
        n_vox = y.shape[1]
        opt = torch.optim.AdamW(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        rng = np.random.default_rng(self._seed)
        train_idx_all = train_idx
        select_idx = None
        if self.expert_weight > 0:
            # stimuli the read-outs never train on: the layer choice is made on out-of-sample fit,
            # otherwise the layer with the most read-out capacity wins
            n_sel = max(1, int(round(self.select_fraction * len(train_idx))))
            is_sel = np.zeros(len(train_idx), dtype=bool)
            is_sel[rng.permutation(len(train_idx))[:n_sel]] = True  # positions in sorted-id order
            select_idx, train_idx = train_idx[is_sel], train_idx[~is_sel]
        chunks = [slice(s, min(s + self.voxel_batch_size, n_vox)) for s in range(0, n_vox, self.voxel_batch_size)]
        start_checking = self.warmup_epochs + self.anneal_epochs
        best_r, best_state, best_epoch, waited = -np.inf, None, -1, 0
        history: list[dict[str, float]] = []
        bar = tqdm(range(self.max_epochs), desc="FactorTopy", unit="epoch", leave=False,
                   disable=None if self.progress is None else not self.progress)
        for epoch in bar:
            tic = time.perf_counter()
            tau = self._temperature(epoch)
            ent_w = 0.0 if epoch < self.warmup_epochs else \
                self.entropy_weight * self.entropy_decay ** (epoch - self.warmup_epochs)
            net.train()
            order = rng.permutation(train_idx)
            total, steps = 0.0, 0
            sel_batches = None
            if select_idx is not None:
                n_steps = -(-len(order) // self.batch_size)
                sel_size = max(1, -(-len(select_idx) // n_steps))
                sel_batches = source.batches(rng.permutation(select_idx), sel_size, device)
            for idx, maps in source.batches(order, self.batch_size, device):
                opt.zero_grad(set_to_none=True)
                target = y[torch.as_tensor(idx)].to(device)
                select = None
                if sel_batches is not None:
                    sel = next(sel_batches, None)
                    if sel is not None:
                        select = (self._normalise(sel[1]), y[torch.as_tensor(sel[0])].to(device))
                total += self._step(net, self._normalise(maps), target, enc, tau, ent_w, neighbours, chunks,
                                    select)
                opt.step()
                steps += 1
            val_r = self._val_r(net, source, y, enc, val_idx, tau, device)
            mean_r = float(np.mean(val_r))
            history.append({"epoch": epoch, "loss": total / max(steps, 1), "val_r": mean_r,
                            "temperature": tau, "entropy_weight": ent_w,
                            "seconds": time.perf_counter() - tic})
            bar.set_postfix(loss=f"{total / max(steps, 1):.4f}", val_r=f"{mean_r:.3f}")
            if epoch + 1 < start_checking and epoch + 1 < self.max_epochs:
                continue
            if mean_r > best_r:
                best_r, best_epoch, waited = mean_r, epoch, 0
                best_state = (copy.deepcopy(net.state_dict()), tau)
            else:
                waited += 1
                if waited > self.patience:
                    break
        bar.close()
        if best_state is None:
            raise RuntimeError(f"FactorTopy training gave no finite validation r in {len(history)} epochs (last mean r "
                               f"{history[-1]['val_r'] if history else 'none'}); check the responses and features "
                               f"for constant or non-finite columns")
        self.timings_["training"] = sum(h["seconds"] for h in history)
        net.load_state_dict(best_state[0])
        self.temperature_ = best_state[1]
        self.history_, self.best_epoch_, self.n_epochs_ = history, best_epoch, len(history)
        net.eval()
        self.net_ = net
        self._fixed_probs = None
        if self.layer_choice == "ridge_cv":
            tic = time.perf_counter()
            # ridge is cross-validated by itself: it uses the validation stimuli too (train, then
            # validation rows, each in sorted stimulus-id order, so the folds do not depend on row order)
            choice_idx = np.concatenate([train_idx_all, val_idx])
            self.cv_r_ = self._ridge_layer_scores(net, source, y, enc, choice_idx, device)
            self.timings_["layer_choice"] = time.perf_counter() - tic
            self._fixed_probs = torch.softmax(torch.as_tensor(self.cv_r_, dtype=torch.float32) / self.choice_temperature,
                                              dim=1).to(device)
            self.choice_margin_ = choice_margin(self.cv_r_)
            self.weak_layers_ = weak_layers(self.cv_r_, self.layers_)
            for item in self.weak_layers_:
                warnings.warn(
                    f"FactorTopy: layer {item['layer']!r} has a lower cross-validated r than its neighbours for "
                    f"{item['fraction_below']:.0%} of voxels (median r {item['median_r']:.3f} vs "
                    f"{', '.join(f'{v:.3f}' for v in item['median_r_neighbours'])}); its read-out, not the brain, "
                    "is the likely cause, and voxels reading it will be assigned to its neighbours. Check the "
                    "layer's features (dead or constant channels, map size) before trusting the map.",
                    RuntimeWarning, stacklevel=3)
        self._set_fitted(net, enc, source, y, val_idx, device)

    @torch.no_grad()
    def _ridge_layer_scores(self, net, source, y, enc, train_idx, device) -> np.ndarray:
        """``(n_voxels, L)`` cross-validated r of a closed-form ridge read-out of every layer.

        Gradient descent leaves the read-outs of layers with ill-conditioned pooled features
        under-fitted, which biases a choice made from them; ridge solves them exactly, at the
        best of a few windows per layer (see below), with at most ``D`` dimensions per layer. The features are
        never stored: each pass over the training stimuli accumulates per-fold sufficient
        statistics (:class:`_RidgeStats`) for as many (layer, voxel block) pairs as fit in
        :data:`RIDGE_MEMORY` bytes.
        """
        _, space, scale = net.selectors(enc, 1.0)
        # Gradient training settles on a window that is about right but often a pixel off or too
        # wide for a layer (on a 12 x 12 map a one-pixel blur halves a point read-out's r), which
        # loses that layer the choice. Ridge also judges each layer at its learned position with
        # the narrowest window and at its ridge-fit peak with the narrowest window, and each
        # voxel and layer keeps its best window (``window_candidate_``: 0 learned, 1 learned
        # position with the narrowest window, 2 ridge-fit peak with the narrowest window).
        candidates = [(space, scale), (space, torch.zeros_like(scale))]
        if self.position_init == "correlation" and space.ndim == 3:
            candidates.append((torch.as_tensor(self.init_space_, dtype=space.dtype, device=space.device),
                               torch.zeros_like(scale)))
        # the narrowest candidates are read as what they stand for, a bilinear point sample of the
        # (aligned) map: the narrowest blur level (SD 0.02 of the map side, half a pixel of a 24 x 24
        # map) mixes in the neighbours and cost layer2 its voxels (docs/factortopy.md, third pass)
        per = np.stack([self._ridge_scores_at(net, source, y, train_idx, device, sp, sc, point=i > 0)
                        for i, (sp, sc) in enumerate(candidates)])
        best = per.argmax(0)                                    # (n_voxels, L)
        self.window_candidate_ = best
        if space.ndim == 3:  # the windows the layer choice judged, per voxel and layer
            pick = torch.as_tensor(best, device=space.device)
            spaces = torch.stack([sp for sp, _ in candidates])   # (n_candidates, n, L, 2)
            scales = torch.stack([sc for _, sc in candidates])   # (n_candidates, n, L)
            self.choice_space_layers_ = spaces.gather(0, pick[None, :, :, None].expand(1, -1, -1, 2))[0] \
                .double().cpu().numpy()
            self.choice_scale_layers_ = scales.gather(0, pick[None])[0].double().cpu().numpy()
        return per.max(0)

    @torch.no_grad()
    def _ridge_scores_at(self, net, source, y, train_idx, device, space, scale, point: bool = False) -> np.ndarray:
        """``(n_voxels, L)`` cross-validated ridge r of every layer at the windows ``space``, ``scale``.

        point: read every layer by bilinear sampling of its normalised (``C_l > D``: aligned) map at
        ``space`` (``scale`` ignored) instead of from the blur pyramid.
        """
        n_vox, n_layers = y.shape[1], len(self.layers_)
        folds = np.random.default_rng(self._seed + 1).permutation(len(train_idx)) % self.cv_folds
        align = list(net.align)
        level_std = self._readout_kw["level_std"]
        widths = [min(self.d, self.layer_shapes_[k][0]) for k in self.layers_]
        passes = _plan_passes([(n_vox, self.cv_folds * k * k * 4) for k in widths], RIDGE_MEMORY)
        target = y.to(device)
        scores = np.zeros((n_vox, n_layers))
        sizes = [[self.cv_folds * (sl.stop - sl.start) * widths[layer] ** 2 for layer, sl in items] for items in passes]
        storage = torch.empty(max(sum(s) for s in sizes), device=device)  # reused by every pass
        for items, size in zip(passes, sizes):
            offsets = np.cumsum([0] + size)
            stats = [_RidgeStats(sl.stop - sl.start, widths[layer], self.cv_folds, device,
                                 gram=storage[offsets[i]:offsets[i + 1]].view(self.cv_folds, -1, widths[layer],
                                                                                widths[layer]))
                     for i, (layer, sl) in enumerate(items)]
            needed = sorted({layer for layer, _ in items})
            for fold in range(self.cv_folds):
                for idx, maps in source.batches(train_idx[folds == fold], self.batch_size, device):
                    normed = self._normalise(maps)
                    prepared = {layer: _prepare_layers([normed[layer]], [align[layer]], "token")[0] if point else
                                _prepare_layers([normed[layer]], [align[layer]], self.pooling,
                                                None if level_std is None else [level_std[layer]])[0]
                                for layer in needed}
                    yb = target[torch.as_tensor(idx)]
                    for st, (layer, sl) in zip(stats, items):
                        # a few voxels at a time: the pooled features stay small (no fresh pages per batch)
                        for start in range(sl.start, sl.stop, _RIDGE_BLOCK):
                            sub = slice(start, min(start + _RIDGE_BLOCK, sl.stop))
                            sp, sc = _layer_args(space[sub], scale[sub], layer)
                            # the token pooling with scale 0 is the bilinear sample at sp
                            x = _pool(prepared[layer], sp, torch.zeros_like(sc) if point else sc)
                            st.add(fold, x, yb[:, sub], slice(sub.start - sl.start, sub.stop - sl.start))
            for st, (layer, sl) in zip(stats, items):
                # the penalty that suits a layer depends on its width and the stimulus count: keep
                # each voxel's best over a small grid (the same grid for every layer)
                scores[sl, layer] = torch.stack([st.cv_r(float(a), var_floor=float(self.ridge_var_floor))
                                                 for a in np.atleast_1d(self.ridge_alpha)]) \
                    .amax(0).cpu().numpy()
        return scores

    def _step(self, net, maps, target, enc, tau, ent_w, neighbours, chunks, select=None) -> float:
        """One optimisation step's gradients, accumulated over voxel chunks; returns the loss."""
        probs, space, scale = net.selectors(enc, tau)
        # the selectors run once; chunks backpropagate into detached copies, then into the MLPs
        leaves = [t.detach().requires_grad_(True) for t in (probs, space, scale)]
        align = list(net.align)
        # so do the pyramids shared by all chunks (aligned ones depend on B_l): built once per batch
        prepared: list[_Tables | Tensor] = []
        shared: list[Tensor] = []
        shared_leaves: list[Tensor] = []
        for prep in self._prepare(maps, align):
            parts = prep.rows if isinstance(prep, _Tables) else [prep]
            if not parts[0].requires_grad:
                prepared.append(prep)
                continue
            copies = [t.detach().requires_grad_(True) for t in parts]
            shared += parts
            shared_leaves += copies
            prepared.append(prep._replace(rows=copies) if isinstance(prep, _Tables) else copies[0])
        sel_prepared = None
        if select is not None:
            with torch.no_grad():
                sel_prepared = self._prepare(select[0], align)
        total = 0.0
        for sl in chunks:
            p, sp, sc = (leaf[sl] for leaf in leaves)
            per = _combine(_layer_terms(prepared, align, sp, sc, net.weights[sl]), p, net.bias[sl], True)  # (b, n, L)
            pred = (per * p).sum(-1)
            loss = F.smooth_l1_loss(pred, target[:, sl], beta=self.beta, reduction="sum")
            if self.expert_weight > 0:
                each = F.smooth_l1_loss(per, target[:, sl, None].expand_as(per), beta=self.beta, reduction="none")
                # Every layer's read-out learns to explain the voxel alone, whatever the current
                # choice (gating its gradient by p lets the first layer to fit win for good);
                # the choice moves towards the layer whose read-out fits best.
                loss = loss + self.expert_weight * each.mean(-1).sum()
            loss = loss / target.numel()
            if sel_prepared is not None:
                with torch.no_grad():
                    per_sel = _combine(_layer_terms(sel_prepared, align, sp.detach(), sc.detach(), net.weights[sl]),
                                       p, net.bias[sl], True)
                    each_sel = F.smooth_l1_loss(per_sel, select[1][:, sl, None].expand_as(per_sel), beta=self.beta,
                                                reduction="none").mean(0)  # (n, L)
                loss = loss + self.expert_weight * (each_sel * p).sum() / target.shape[1]
            loss.backward()
            total += float(loss.detach())
        reg = probs.new_zeros(())
        if ent_w > 0:
            ent = -(probs * torch.log(probs.clamp_min(1e-12))).sum(-1).mean()
            reg = reg + ent_w * ent
        if neighbours is not None:
            reg = reg + self.smooth_weight * ((probs[:, None, :] - probs[neighbours]) ** 2).sum(-1).mean()
        pairs = [(out, leaf.grad) for out, leaf in zip([probs, space, scale, *shared], [*leaves, *shared_leaves])
                 if leaf.grad is not None]
        if reg.requires_grad:
            pairs.append((reg, torch.ones_like(reg)))
        if pairs:
            torch.autograd.backward([o for o, _ in pairs], [g for _, g in pairs])
        return total + float(reg.detach())

    @torch.no_grad()
    def _predict_z(self, net, source, enc, index, tau, device) -> Tensor:
        probs, space, scale = net.selectors(enc, tau)
        fixed = getattr(self, "_fixed_probs", None)
        if fixed is not None:
            probs = fixed.to(probs.device)
        align = list(net.align)
        chunks = [slice(s, s + self.voxel_batch_size) for s in range(0, probs.shape[0], self.voxel_batch_size)]
        out = []
        for _, maps in source.batches(index, self.batch_size, device):
            prepared = self._prepare(self._normalise(maps), align)
            parts = [_combine(_layer_terms(prepared, align, space[sl], scale[sl], net.weights[sl]), probs[sl],
                              net.bias[sl], False) for sl in chunks]
            out.append(torch.cat(parts, dim=1).cpu())
        return torch.cat(out, dim=0)

    def _val_r(self, net, source, y, enc, val_idx, tau, device) -> np.ndarray:
        net.eval()
        pred = self._predict_z(net, source, enc, val_idx, tau, device).double().numpy()
        return pearson_per_column(pred, y[torch.as_tensor(val_idx)].double().numpy())

    def _set_fitted(self, net, enc, source, y, val_idx, device) -> None:
        with torch.no_grad():
            probs, space, scale = net.selectors(enc, self.temperature_)
        if self._fixed_probs is not None:
            probs = self._fixed_probs
        self.encoding_ = enc
        self.layer_probs_ = probs.double().cpu().numpy()
        space, scale = space.double().cpu().numpy(), scale.double().cpu().numpy()
        if space.ndim == 3:  # per layer: report the most probable layer's
            self.space_layers_, self.scale_layers_ = space, scale
            best = self.layer_probs_.argmax(1)
            space, scale = space[np.arange(len(best)), best], scale[np.arange(len(best)), best]
        self.space_, self.scale_ = space, scale
        self.layer_ = expected_depth(self.layer_probs_)
        self.confidence_ = layer_confidence(self.layer_probs_)
        pred = self._predict_z(net, source, enc, val_idx, self.temperature_, device).double().numpy()
        truth = y[torch.as_tensor(val_idx)].double().numpy()
        self.val_r_ = pearson_per_column(pred, truth)
        sst = ((truth - truth.mean(0)) ** 2).sum(0)
        self.r2_ = 1.0 - ((truth - pred) ** 2).sum(0) / np.where(sst > 0, sst, np.inf)

    # ------------------------------------------------------------------ use
    def _check_fitted(self) -> None:
        if not hasattr(self, "net_"):
            raise RuntimeError("this FactorTopy is not fitted yet; call fit(features_or_model, brain) first")

    @property
    def best_layer_(self) -> np.ndarray:
        """``(n_voxels,)`` index of the most probable layer per voxel."""
        self._check_fitted()
        return self.layer_probs_.argmax(1)

    def predict(self, features_or_model, *, stimuli=None) -> np.ndarray:
        """Predicted responses ``(n_stimuli, n_voxels)`` in the units of the fitted responses."""
        self._check_fitted()
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
            z = self._predict_z(self.net_, source, self.encoding_, np.arange(n), self.temperature_, device)
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
        self._check_fitted()
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
        self._check_fitted()
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
