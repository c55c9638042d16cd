"""Conwell et al. (2024) cRSA and veRSA exactly as their released code (DeepNSD) computes them.

Differences from neuroreg's own veRSA (each one's effect is in docs/protocols.md):

1. Every layer, also one narrower than the projection, goes through scikit-learn's
   ``SparseRandomProjection(johnson_lindenstrauss_min_dim(n, eps=0.1), random_state=seed)``.
2. Projected features are standardised with the train half's mean and SD (ddof 0).
3. The released ridge calls scikit-learn's private ``_preprocess_data`` with its
   ``copy_X`` argument in the position of ``normalize``, so every feature is
   scaled to unit norm over the train half: with standardised features that is the
   nominal alpha grid multiplied by the number of training stimuli.
4. Alpha per voxel is the one whose leave-one-out predictions correlate best
   (Pearson r) with the voxel, not the one with the lowest leave-one-out error;
   the first alpha of the grid wins ties and constant predictions.
5. The train-half scores use the leave-one-out predictions of the centred
   responses (the voxel's train mean is never added back); this changes the
   predicted RDM and so the train veRSA that picks the layer.
6. Encoding r is the mean over voxels (neuroreg's default reports the median).
7. A region x subject group of 10 voxels or fewer is not scored.

cRSA is the same computation as neuroreg's; the preset checks the settings and
applies 7.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from sklearn.exceptions import DataDimensionalityWarning
from sklearn.random_projection import SparseRandomProjection, johnson_lindenstrauss_min_dim
from tqdm.auto import tqdm

from neuroreg.brain.data import BrainData
from neuroreg.scoring._precision import scaled_by_pow2, unit_exponent
from neuroreg.scoring._inputs import (aligned_brain, check_features_vary, check_split_size, feature_ids, layer_matrix,
                                      layer_names, unit_groups)
from neuroreg.scoring.columnwise import pearson_per_column
from neuroreg.scoring.compare import compare_rdms
from neuroreg.scoring.rdm import rdm
from neuroreg.results.table import ScoreTable
from neuroreg.results.selection import flag_best_layers

__all__ = ["versa_conwell", "crsa_targets", "conwell_projection_dim", "MIN_VOXELS"]

#: The released code scores a region x subject only with more voxels than this.
MIN_VOXELS = 10


def conwell_projection_dim(n_stimuli: int, eps: float = 0.1) -> int:
    """scikit-learn's ``johnson_lindenstrauss_min_dim(n_stimuli, eps=eps)`` (5,920 for 1,000 stimuli)."""
    return int(johnson_lindenstrauss_min_dim(n_stimuli, eps=eps))


def _check_settings(split, **given) -> None:
    if not (isinstance(split, str) and split == "conwell"):
        raise ValueError(f"protocol='conwell' uses the published even/odd split of the sorted stimuli; "
                         f"got split={split!r}")
    expected = {"metric": "correlation", "method": "pearson"}
    for key, value in given.items():
        if value != expected[key]:
            raise ValueError(f"protocol='conwell' compares with {key}={expected[key]!r}; got {key}={value!r}")


def _scored_groups(brain: BrainData) -> list[tuple[Any, Any, np.ndarray]]:
    """``unit_groups`` of ``brain`` with more than :data:`MIN_VOXELS` units; warns about the others."""
    kept: list[tuple[Any, Any, np.ndarray]] = []
    dropped: list[tuple[Any, Any, np.ndarray]] = []
    for region, subject, units in unit_groups(brain):
        (kept if units.size > MIN_VOXELS else dropped).append((region, subject, units))
    if dropped:
        warnings.warn(f"protocol='conwell' leaves out {len(dropped)} region x subject group(s) with "
                      f"<= {MIN_VOXELS} voxels: {[(r, s, int(u.size)) for r, s, u in dropped][:5]}", stacklevel=3)
    if not kept:
        raise ValueError(f"protocol='conwell' needs a region x subject group with more than {MIN_VOXELS} voxels; "
                         f"the largest has {max(int(u.size) for _, _, u in dropped)}")
    return kept


def crsa_targets(targets: list, brain, *, metric: str, method: str, split) -> list:
    """The brain RDMs the released cRSA scores: BrainData groups of more than 10 voxels."""
    _check_settings(split, metric=metric, method=method)
    if not isinstance(brain, BrainData):
        return targets
    keep = {(r, s) for r, s, _ in _scored_groups(brain)}
    return [t for t in targets if (t.region, t.subject) in keep]


def _srp(x: np.ndarray, n_components: int, seed: int) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataDimensionalityWarning)   # narrower layers are projected up: the protocol
        return np.asarray(SparseRandomProjection(n_components, random_state=seed).fit_transform(x), dtype=np.float64)


def _ridge_by_loo_r(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, alphas: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ridge with an unpenalised intercept, per voxel the alpha with the best leave-one-out Pearson r.

    Kernel form on the ``n x n`` Gram of the centred train features ``K = Q diag(lam) Q^T``:
    hat matrix ``H = Q diag(lam / (lam + alpha)) Q^T + 1 1^T / n``, leave-one-out
    residual ``(y - H y) / (1 - H_ii)`` (the same arithmetic as :class:`RidgeGCV`,
    which chooses by the error instead). Returns the centred leave-one-out
    predictions ``(n_train, v)``, the test predictions ``(n_test, v)`` and the
    chosen alphas ``(v,)``.
    """
    n = x_train.shape[0]
    mu = x_train.mean(0)
    xc = x_train - mu
    lam, q = np.linalg.eigh(xc @ xc.T)
    lam = np.clip(lam, 0.0, None)
    k_test = (x_test - mu) @ xc.T                                # (n_test, n)
    y_mean = y_train.mean(0)
    yc = y_train - y_mean
    proj = q.T @ yc                                               # (n, v)
    best_r: np.ndarray | None = None
    best_loo: np.ndarray | None = None
    best_test: np.ndarray | None = None
    best_alpha: np.ndarray | None = None
    for a in alphas:
        f = lam / (lam + a)
        h_diag = (q ** 2) @ f + 1.0 / n
        resid = yc - q @ (f[:, None] * proj)
        loo = yc - resid / (1.0 - h_diag)[:, None]               # centred: the train mean is not added back
        r = pearson_per_column(loo, y_train, constant="nan")
        test = k_test @ (q @ (proj / (lam + a)[:, None])) + y_mean
        if best_r is None or best_loo is None or best_test is None or best_alpha is None:
            best_r, best_loo, best_test = r, loo, test
            best_alpha = np.full(y_train.shape[1], float(a))
            continue
        better = r > best_r          # NaN never wins, so the first alpha keeps ties and constant predictions
        best_r[better] = r[better]
        best_loo[:, better] = loo[:, better]
        best_test[:, better] = test[:, better]
        best_alpha[better] = float(a)
    if best_loo is None or best_test is None or best_alpha is None:
        raise ValueError(f"alphas must hold at least one penalty; got an empty grid of shape {np.shape(alphas)}")
    return best_loo, best_test, best_alpha


def _rdm_score(pred: np.ndarray, target: np.ndarray) -> float:
    try:
        pred_rdm = rdm(pred)
    except ValueError:
        return 0.0       # a stimulus predicted identically across voxels: its pattern carries no information
    return float(compare_rdms(pred_rdm, target, "pearson"))


def versa_conwell(features, brain, *, alphas: Sequence[float], split="conwell", method: str = "pearson",
                  model: str | None = None, seed: int = 0, device: str | torch.device | None = None,
                  progress: bool | None = None) -> ScoreTable:
    """veRSA as the released code computes it (module docstring); called by ``versa(protocol="conwell")``.

    ``alphas``: the nominal grid (the published ``logspace(-1, 5, 7)``); the
    effective penalties are ``alphas * n_train``. Rows: metric ``"versa"``
    (splits ``train`` from the centred leave-one-out predictions, ``test``) and
    ``"encoding_r"`` (splits ``train`` and ``test``; score = mean over voxels,
    ``median`` column), with ``is_best`` (best train veRSA per region x subject),
    ``n_units``, ``projection_dim`` and ``protocol="conwell"``.
    """
    _check_settings(split, method=method)
    grid = np.asarray(alphas, dtype=np.float64)
    if grid.ndim != 1 or grid.size == 0 or not np.isfinite(grid).all() or (grid <= 0).any():
        raise ValueError(f"alphas must be a non-empty 1-D grid of finite values > 0; got {grid.tolist()}")
    data = aligned_brain(brain, feature_ids(features))
    n = data.n_stimuli
    # NSD index order is the sorted order of the ids: halves by parity there, never by row order
    order = np.argsort(data.stimulus_ids, kind="stable")
    train, test = order[0::2], order[1::2]
    for name, half in (("train", train), ("test", test)):   # as every veRSA: refuse below 4, warn below 10
        check_split_size("versa (protocol='conwell')", name, half.size)
    groups = _scored_groups(data)
    units_all = np.concatenate([u for _, _, u in groups])
    # far from magnitude 1, responses and features are scaled by a power of two (exact): the predictions
    # scale with the responses, every score is blind to it, and no square overflows or underflows
    y = scaled_by_pow2(data.responses[:, units_all], unit_exponent(data.responses))
    cols, start = {}, 0
    for region, subject, units in groups:
        cols[(region, subject)] = np.arange(start, start + units.size)
        start += units.size
    brain_rdms = {}
    for region, subject, units in groups:
        full = rdm(data.responses[:, units])
        brain_rdms[(region, subject)] = (full[np.ix_(train, train)], full[np.ix_(test, test)])

    dim = conwell_projection_dim(n)
    layers = layer_names(features)
    show = sys.stderr.isatty() if progress is None else progress
    rows = []
    for li, layer in enumerate(tqdm(layers, desc="veRSA (conwell) layers", disable=not show, leave=False)):
        x = layer_matrix(features, layer, n)
        x = (x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor)
             else np.asarray(x, dtype=np.float64))
        if not np.isfinite(x).all():
            raise ValueError(f"features[{layer!r}] contains NaN or inf")
        check_features_vary(layer, x, train, "versa (protocol='conwell')")
        x = _srp(scaled_by_pow2(x, unit_exponent(x)), dim, seed)
        mu = x[train].mean(0)
        sd = x[train].std(0)
        sd[sd == 0] = 1.0                  # as StandardScaler: constant features stay zero
        x = (x - mu) / sd
        loo, pred_test, _ = _ridge_by_loo_r(x[train], y[train], x[test], grid * train.size)
        for region, subject, _units in groups:
            c = cols[(region, subject)]
            base = dict(model=model, layer=layer, region=region, subject=subject, n_units=int(c.size),
                        layer_index=li, method="pearson", projection_dim=dim, protocol="conwell")
            rdm_train, rdm_test = brain_rdms[(region, subject)]
            rows.append(dict(base, metric="versa", split="train", score=_rdm_score(loo[:, c], rdm_train)))
            rows.append(dict(base, metric="versa", split="test", score=_rdm_score(pred_test[:, c], rdm_test)))
            for s, pred, idx in (("train", loo[:, c], train), ("test", pred_test[:, c], test)):
                r = pearson_per_column(pred, y[idx][:, c], constant="nan")
                r = np.where(np.isfinite(r), r, 0.0)
                rows.append(dict(base, metric="encoding_r", split=s, score=float(r.mean()),
                                 median=float(np.median(r))))
    flag_best_layers(rows, lambda r: (r["region"], r["subject"]), metric="versa")
    return ScoreTable(rows)
