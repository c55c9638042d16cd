"""Encoding-model scores: veRSA (Conwell et al. 2024) and Brain-Score predictivity.

veRSA, per layer: sparse random projection to 5,920 dims (the Johnson-Lindenstrauss
size for n = 1,000, eps = 0.1) when the layer is wider, standardisation with
train-half statistics, :class:`RidgeGCV` with ``alphas = logspace(-1, 5, 7)``
chosen per voxel by leave-one-out, prediction of the test-half voxels, and the
correlation-distance RDM of the predicted voxels compared with the brain RDM of
the same test stimuli. From the same fit: voxel-wise Pearson r and R^2 on the
test half. The train-half score uses the leave-one-out predictions, so the best
layer can be chosen without touching the test half.

Predictivity (Brain-Score): per neuroid, a linear map (ridge or PLS with 25
components) fitted on 90% of the stimuli and tested on 10%, 10 seeded splits;
the Pearson r per neuroid is averaged over splits, the median over neuroids is
the score; ``ceiling_r`` is the square root of the split-half Spearman-Brown
reliability when repeats exist.

``protocol="conwell"`` (veRSA) and ``protocol="brainscore"`` (predictivity)
reproduce the published protocols exactly (:mod:`neuroreg.scoring.protocols`).
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from sklearn.cross_decomposition import PLSRegression
from tqdm.auto import tqdm

from neuroreg._utils.checks import check_finite
from neuroreg.errors import UnknownNameError
from neuroreg.features.projection import jl_min_dim, sparse_random_projection
from neuroreg.scoring._precision import scaled_by_pow2, unit_exponent
from neuroreg.scoring._inputs import (aligned_brain, check_features_vary, feature_ids, layer_matrix, layer_names,
                                      random_splits, resolve_split, unit_groups)
from neuroreg.scoring.ceiling import ncsnr_ceiling, split_half_ceiling
from neuroreg.scoring.columnwise import pearson_per_column, r2_per_column
from neuroreg.scoring.compare import _method, compare_rdms
from neuroreg.scoring.protocols import check_protocol
from neuroreg.scoring.protocols.brainscore import predictivity_brainscore
from neuroreg.scoring.protocols.conwell import versa_conwell
from neuroreg.scoring.rdm import rdm
from neuroreg.results.table import ScoreTable
from neuroreg.scoring.ridge import RidgeGCV
from neuroreg.results.selection import flag_best_layers

__all__ = ["versa", "predictivity", "pearson_per_column", "CONWELL_ALPHAS", "CONWELL_SRP_DIM"]

CONWELL_ALPHAS = np.logspace(-1, 5, 7)
CONWELL_SRP_DIM = jl_min_dim(1000, 0.1)  # 5,920


def _reduced(features, layer: str, n: int, srp_dim: int | None, seed: int, device) -> torch.Tensor:
    """Layer as float64 ``(n, d')``, projected to ``srp_dim`` when wider (seeded); NaN/inf raise."""
    x = layer_matrix(features, layer, n)
    x = torch.as_tensor(x)
    if device is not None:
        x = x.to(device)
    x = x.to(torch.float64) if x.device.type == "cpu" else x.float()
    check_finite(f"features[{layer!r}]", x)
    # far from magnitude 1, scale by a power of two (exact; the standardisation that follows undoes any scale)
    x = scaled_by_pow2(x, unit_exponent(x))
    if srp_dim is not None and x.shape[1] > srp_dim:
        try:
            x = sparse_random_projection(x, srp_dim, seed=seed)
        except ValueError as exc:
            raise ValueError(f"features[{layer!r}]: {exc}") from exc
    return x.double()


def _layer_matrices(features, n: int, srp_dim: int | None, seed: int, device, desc: str, progress: bool | None):
    """Yield ``(layer_index, layer, x (n, d'))`` for every layer, with a progress bar."""
    layers = layer_names(features)
    show = sys.stderr.isatty() if progress is None else progress
    for li, layer in enumerate(tqdm(layers, desc=desc, disable=not show, leave=False)):
        yield li, layer, _reduced(features, layer, n, srp_dim, seed, device)


def _standardise(x: torch.Tensor, train: np.ndarray) -> torch.Tensor:
    mu = x[train].mean(0)
    sd = x[train].std(0)
    sd = torch.where(sd > 0, sd, torch.ones_like(sd))   # constant features stay zero, never NaN
    return (x - mu) / sd


def versa(features, brain, *, alphas=CONWELL_ALPHAS, srp_dim: int | None = CONWELL_SRP_DIM,
          split="conwell", method: str = "pearson", model: str | None = None, seed: int = 0,
          device: str | torch.device | None = None, dtype: torch.dtype = torch.float64,
          progress: bool | None = None, protocol: str | None = None) -> ScoreTable:
    """veRSA and voxel-wise encoding scores of every layer for every roi x subject of ``brain``.

    Parameters
    ----------
    features: :class:`~neuroreg.features.extraction.Features` or mapping layer -> ``(n, ...)``.
    brain: :class:`~neuroreg.brain.BrainData` with ``unit_info`` ``roi``/``subject``
        (missing keys form one group); responses ``(n_stimuli, n_voxels)``.
    srp_dim: projection size for wider layers (None: never project).
    split: ``"conwell"`` (even / odd positions of the sorted stimulus ids) or
        ``(train_ids, test_ids)``; each half needs at least 4 stimuli (warning below 10).
    method: comparison of predicted and measured test RDMs (default Pearson).
    dtype: precision of the ridge's per-alpha products (see :class:`RidgeGCV`).
    protocol: None (neuroreg's settings, above) or ``"conwell"``: the released
        code of Conwell et al. (:func:`~neuroreg.scoring.protocols.conwell.versa_conwell`;
        ``srp_dim`` and ``dtype`` do not apply, ``alphas`` is the nominal grid).

    Row order does not matter (alignment by id, splits from sorted ids); features of
    any dtype (float16, bfloat16) are promoted to float64 before standardisation.
    Features and responses of any magnitude (1e-200 .. 1e200) give the scores of the
    unscaled data (each is scaled by a power of two first where far from 1). A layer
    whose features are all constant on the train stimuli raises ``ValueError`` naming it.

    Returns a :class:`ScoreTable` with, per layer x region x subject, rows of
    metric ``"versa"`` (splits ``train`` from leave-one-out predictions and
    ``test``), ``"encoding_r"`` and ``"encoding_r2"`` (test split; score = median
    over voxels, ``mean`` column = mean). Columns ``n_units`` and ``is_best``
    (layer with the best train veRSA) are added.
    """
    if check_protocol(protocol, "versa") == "conwell":
        return versa_conwell(features, brain, alphas=alphas, split=split, method=method, model=model, seed=seed,
                             device=device, progress=progress)
    method = _method(method)
    data = aligned_brain(brain, feature_ids(features))
    n = data.n_stimuli
    if split is None or (isinstance(split, str) and split == "all"):
        raise ValueError("versa needs a train/test split (split='conwell' or (train_ids, test_ids))")
    splits = resolve_split(split, data.stimulus_ids, scorer="versa")
    if "train" not in splits:
        raise ValueError("versa needs a train/test split (split='conwell' or (train, test) indices)")
    train, test = splits["train"], splits["test"]
    groups = list(unit_groups(data))
    # responses far from magnitude 1 are scaled by a power of two (exact): ridge predictions scale with them
    # and every score below (RDM correlation, r, R^2) is blind to it, while squares stay in range
    y = scaled_by_pow2(data.responses, unit_exponent(data.responses))
    brain_test_rdms = {}
    brain_train_rdms = {}
    for region, subject, units in groups:
        try:
            brain_test_rdms[(region, subject)] = rdm(y[np.ix_(test, units)])
            brain_train_rdms[(region, subject)] = rdm(y[np.ix_(train, units)])
        except ValueError as exc:
            raise ValueError(f"brain responses (region={region!r}, subject={subject!r}): {exc}") from exc

    rows = []
    for li, layer, x in _layer_matrices(features, n, srp_dim, seed, device, "veRSA layers", progress):
        check_features_vary(layer, x, train, "versa")
        x = _standardise(x, train)
        ridge = RidgeGCV(alphas, alpha_per_target=True, device=x.device, dtype=dtype, store_loo=True)
        ridge.fit(x[train], y[train])
        pred_test = np.asarray(ridge.predict(x[test].cpu()), dtype=np.float64)
        loo = ridge.loo_predictions_
        for region, subject, units in groups:
            base = dict(model=model, layer=layer, region=region, subject=subject, n_units=int(units.size),
                        layer_index=li, method=method, protocol="neuroreg")
            for s, pred, target in (("train", loo[:, units], brain_train_rdms[(region, subject)]),
                                    ("test", pred_test[:, units], brain_test_rdms[(region, subject)])):
                try:
                    pred_rdm = rdm(pred)
                except ValueError:
                    # predictions identical for a stimulus across voxels: its pattern carries no information
                    score = 0.0
                else:
                    try:
                        score = compare_rdms(pred_rdm, target, method)
                    except ValueError as exc:
                        raise ValueError(f"features[{layer!r}] ({s} split, region={region!r}, "
                                         f"subject={subject!r}): {exc}") from exc
                rows.append(dict(base, metric="versa", split=s, score=score))
            y_test = y[np.ix_(test, units)]
            r = pearson_per_column(pred_test[:, units], y_test)
            r2 = r2_per_column(y_test, pred_test[:, units])
            rows.append(dict(base, metric="encoding_r", split="test", score=float(np.median(r)), mean=float(r.mean())))
            rows.append(dict(base, metric="encoding_r2", split="test", score=float(np.median(r2)),
                             mean=float(r2.mean())))
    flag_best_layers(rows, lambda r: (r["region"], r["subject"]), metric="versa")
    return ScoreTable(rows)


def _unit_ceiling_r(data, units) -> float | None:
    """Median over units of the bound on Pearson r: sqrt of a per-unit fraction of variance."""
    if data.trials is not None:
        per_unit = split_half_ceiling(data.trials[:, :, units]).per_unit
    elif "ncsnr" in data.unit_info:
        per_unit = ncsnr_ceiling(data.unit_info["ncsnr"][units], 3).per_unit
    else:
        return None
    if per_unit is None:
        raise ValueError("the unit-wise noise ceiling came back without per-unit values (per_unit is None)")
    # Spearman-Brown reliability and NSD's noise ceiling both bound r^2 (a negative
    # reliability means no reliable signal: bound 0)
    return float(np.median(np.sqrt(np.clip(per_unit, 0.0, None))))


def predictivity(features, brain, *, mapping: str = "ridge", splits: int = 10, test_fraction: float = 0.1,
                 n_components: int = 25, alphas=CONWELL_ALPHAS, srp_dim: int | None = CONWELL_SRP_DIM,
                 model: str | None = None, seed: int = 0, device: str | torch.device | None = None,
                 progress: bool | None = None, protocol: str | None = None, labels=None, select_on=None,
                 brainscore_version: str = "2026") -> ScoreTable:
    """Brain-Score-style neural predictivity of every layer for every roi x subject.

    ``mapping``: ``"ridge"`` (:class:`RidgeGCV`, alpha per neuroid) or ``"pls"``
    (``sklearn.cross_decomposition.PLSRegression(n_components, scale=False)``).
    ``splits`` seeded random train/test splits with ``test_fraction`` held out.
    Row score: median over neuroids of the split-averaged Pearson r (metric
    ``"predictivity"``, split ``"cv"``); ``ceiling_r``: median over neuroids of the
    square root of the split-half Spearman-Brown reliability when ``brain.trials``
    exist, else of the NSD ncsnr ceiling when ``unit_info["ncsnr"]`` exists, else None.

    The splits are drawn over positions in sorted stimulus-id order (seeded), so
    row order does not matter. Minimum: 3 test stimuli per fold (``round(n *
    test_fraction)``) and 3 train stimuli, refused below; a warning gives the
    number below 10 test stimuli per fold. Features of any dtype are promoted to
    float64.

    ``protocol="brainscore"``: Brain-Score's own computation
    (:func:`~neuroreg.scoring.protocols.brainscore.predictivity_brainscore`), with
    ``labels`` (object label per stimulus), ``select_on`` (``(features, brain,
    labels)`` of the data set the layer is committed on) and ``brainscore_version``
    (``"2018"``, ``"2019"`` or ``"2026"``: which normalisation).
    """
    if check_protocol(protocol, "predictivity") == "brainscore":
        return predictivity_brainscore(features, brain, labels=labels, splits=splits, n_components=n_components,
                                       select_on=select_on, version=brainscore_version, model=model,
                                       progress=progress)
    if labels is not None or select_on is not None:
        raise ValueError("labels and select_on apply to protocol='brainscore' only")
    if mapping not in ("ridge", "pls"):
        raise UnknownNameError(f"mapping must be 'ridge' or 'pls'; got {mapping!r}")
    if int(splits) < 1:
        raise ValueError(f"splits must be >= 1; got {splits}")
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1); got {test_fraction}")
    data = aligned_brain(brain, feature_ids(features))
    n = data.n_stimuli
    folds = random_splits(data.stimulus_ids, int(splits), test_fraction, seed)
    groups = list(unit_groups(data))
    y = scaled_by_pow2(data.responses, unit_exponent(data.responses))   # exact; r does not depend on it
    ceilings = {(r, s): _unit_ceiling_r(data, u) for r, s, u in groups}
    rows = []
    for li, layer, x in _layer_matrices(features, n, srp_dim, seed, device, "predictivity layers", progress):
        r_sum = np.zeros(data.n_units)
        for train, test in folds:
            xs = _standardise(x, train)
            if mapping == "ridge":
                fit = RidgeGCV(alphas, device=x.device).fit(xs[train], y[train])
                pred = np.asarray(fit.predict(xs[test].cpu()), dtype=np.float64)
            else:
                k = min(n_components, len(train) - 1, xs.shape[1])
                pls = PLSRegression(n_components=k, scale=False).fit(xs[train].cpu().numpy(), y[train])
                pred = pls.predict(xs[test].cpu().numpy())
            r_sum += pearson_per_column(pred, y[test])
        r = r_sum / len(folds)
        for region, subject, units in groups:
            rows.append(dict(model=model, layer=layer, region=region, subject=subject, metric="predictivity",
                             split="cv", score=float(np.median(r[units])), ceiling_r=ceilings[(region, subject)],
                             n_units=int(units.size), mapping=mapping, n_splits=len(folds), layer_index=li,
                             protocol="neuroreg"))
    return ScoreTable(rows)
