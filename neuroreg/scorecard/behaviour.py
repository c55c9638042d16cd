"""The scorecard's behaviour section: I2n and Brain-Score's composite on a Brain-Score cache.

For one model and one :class:`~neuroreg.scorecard.behaviour_data.BrainScoreCache`:

- neural predictivity on V4 and IT, ``predictivity(protocol="brainscore")`` (PLS, stratified
  splits on the object labels, split-half ceiling, the layer committed per region over the
  layer sweep), on the features of the assembly's images;
- the behavioural read-out (:func:`neuroreg.behaviour.choice_probabilities`: logistic
  regression on the spatially averaged "behaviour" layer, default the penultimate layer / IT,
  fitted on the fitting images, ``number_of_trials`` passes averaged as Brain-Score asks);
- I2n against the trials, one set of rows per primate group (the ``species`` column of the
  trials where there is one: human and monkey, each with its own split-half ceiling);
- the composite (:func:`neuroreg.behaviour.brainscore_composite`) on the human trials (all
  trials when the assembly names no species), as Brain-Score scores Rajalingham 2018;
- per image, the model's and the primates' normalised d' (metric ``image_dprime``) for the
  report's scatter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from neuroreg.behaviour import brainscore_composite, choice_probabilities, i2n, image_dprimes
from neuroreg.data.preprocessing import preprocessing_of
from neuroreg.features.extraction import Features, extract
from neuroreg.features.layers import sweep_layers
from neuroreg.results.table import ScoreTable
from neuroreg.scorecard.behaviour_data import BrainScoreCache
from neuroreg.scoring import predictivity

__all__ = ["BehaviourOptions", "behaviour_scores", "row_space_coordinates", "COMPOSITE_GROUP"]

#: The primate group the composite scores against (Rajalingham 2018's trials are human).
COMPOSITE_GROUP = "human"


@dataclass(frozen=True)
class BehaviourOptions:
    """Settings of the behaviour section.

    readout_layer: module name or area alias of the read-out (averaged over space).
    number_of_trials: forward passes averaged for the read-out (Brain-Score: 2 for Rajalingham 2018).
    neural_trials: passes averaged for the neural features (Brain-Score asks 50 of MajajHong2015;
        a deterministic model gives the same features on every pass).
    brainscore_version: the predictivity normalisation (``"2018"``, ``"2019"``, ``"2026"``).
    repetitions, seed: I2n's split halves and the seed of their shuffle (Brain-Score: 2 and 0).
    """

    readout_layer: str = "IT"
    number_of_trials: int = 2
    neural_trials: int = 1
    brainscore_version: str = "2026"
    repetitions: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("number_of_trials", "neural_trials", "repetitions"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer; got {value!r}")


def row_space_coordinates(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """``(n, r)`` coordinates of the centred rows of ``x (n, ...)`` in an orthonormal basis of their span.

    PLS regression with ``scale=False`` centres on the training rows and depends on the
    features only through inner products of centred rows, which a change of orthonormal basis
    keeps: Brain-Score's predictions from these coordinates equal those from the full maps
    (``r <= n - 1`` columns instead of the layer's ``C x H x W``), at a fraction of the cost.
    From the eigendecomposition of the ``(n, n)`` Gram matrix; eigenvalues below 1e-10 of the
    largest are dropped (float64).
    """
    arr = x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float64)
    arr = arr.reshape(arr.shape[0], -1)
    centred = arr - arr.mean(axis=0)
    values, vectors = np.linalg.eigh(centred @ centred.T)
    keep = values > 1e-10 * max(float(values.max()), np.finfo(np.float64).tiny)
    return vectors[:, keep] * np.sqrt(values[keep])


def _neural_features(model: nn.Module, images: torch.Tensor, layers: dict[str, str], ids: np.ndarray, *, prep,
                     passes: int, batch_size: int, device, seed: int, progress) -> Features:
    """Every sweep layer's maps, the mean over ``passes`` forward passes (seeds seed + t), as
    :func:`row_space_coordinates` (the same PLS predictions as the full maps)."""
    runs = [extract(model, images, layers, batch_size=batch_size, device=device, transform=prep, stimulus_ids=ids,
                    seed=seed + t, progress=progress) for t in range(passes)]
    return Features({k: torch.from_numpy(row_space_coordinates(torch.stack([r[k] for r in runs]).double().mean(0)))
                     for k in runs[0]}, stimulus_ids=ids)


def _groups(trials: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    if "species" not in trials.columns:
        return [("all", trials)]
    return [(str(s), trials[trials["species"] == s].reset_index(drop=True))
            for s in dict.fromkeys(trials["species"].tolist())]


def _tested_probabilities(model: nn.Module, cache: BrainScoreCache, opts: BehaviourOptions, *, prep, batch_size: int,
                          device, seed: int) -> pd.DataFrame:
    stim = cache.behaviour.stimulus_set
    tested = pd.unique(cache.behaviour.trials["stimulus_id"])
    pos = {k: i for i, k in enumerate(stim.stimulus_ids.tolist())} if stim is not None else {}
    missing = [k for k in tested.tolist() if k not in pos]
    if stim is None or missing:
        raise FileNotFoundError(f"{cache.behaviour.path}: {len(missing) if stim is not None else 'all'} tested "
                                f"image(s) have no image in the cache (e.g. {missing[:3] if missing else tested[:3]})")
    images = stim.images_tensor()[[pos[k] for k in tested.tolist()]]
    return choice_probabilities(model, cache.fitting.images_tensor(), cache.fitting_labels.tolist(), images,
                                tested.tolist(),
                                layer=opts.readout_layer, number_of_trials=opts.number_of_trials, transform=prep,
                                batch_size=batch_size, device=device, seed=seed)


def behaviour_scores(model: nn.Module, cache: BrainScoreCache, *, options: BehaviourOptions | None = None,
                     layers: Any = "all", max_layers: int | None = None, image_size: int | None = None,
                     batch_size: int = 32, device=None, model_name: str = "model",
                     progress: bool | None = None) -> tuple[ScoreTable, str]:
    """The behaviour section of one model on one Brain-Score cache (module docstring).

    Returns the rows and one sentence saying what was run. Rows carry ``model``, ``dataset``
    and ``metric``: ``"predictivity"`` (V4 / IT, every layer of the sweep, ``is_best`` on the
    committed one), ``"i2n"`` (``primates`` = the group; split rows and a ``"mean"`` row with
    ``ceiling``, ``ceiling_r`` and ``brainscore_ceiled``), the composite's four rows
    (``component`` V4 / IT / behaviour / composite, ``protocol``), and ``"image_dprime"`` (one row
    per image and group: ``stimulus_id``, ``score`` = the model's d', ``primate_dprime``).
    """
    opts = options or BehaviourOptions()
    prep = preprocessing_of(model, image_size)
    sweep = sweep_layers(model, layers, max_layers=max_layers)
    neural = cache.neural
    brain = neural.brain
    feats = _neural_features(model, brain.images_tensor(), sweep.layers, brain.stimulus_ids, prep=prep,
                             passes=opts.neural_trials, batch_size=batch_size, device=device, seed=opts.seed,
                             progress=progress)
    pred = predictivity(feats, brain, protocol="brainscore", labels=neural.labels, model=model_name,
                        brainscore_version=opts.brainscore_version, progress=progress)
    table = ScoreTable()
    for row in pred:
        table.append(**{**row, "dataset": neural.identifier, "depth": sweep.depth.get(row["layer"])})
    probs = _tested_probabilities(model, cache, opts, prep=prep, batch_size=batch_size, device=device,
                                  seed=opts.seed)
    groups = _groups(cache.behaviour.trials)
    composite_of = next((g for g in groups if g[0] == COMPOSITE_GROUP), ("all", cache.behaviour.trials))
    if composite_of[0] == "all" and len(groups) == 1:
        groups = [composite_of]
    elif composite_of[0] == "all":
        groups.append(composite_of)
    behaviour_rows: dict[str, ScoreTable] = {}
    for name, trials in groups:
        ids = set(trials["stimulus_id"].tolist())
        mine = probs[probs["stimulus_id"].isin(ids)]
        rows = i2n(mine, trials, repetitions=opts.repetitions, seed=opts.seed)
        behaviour_rows[name] = rows
        for row in rows:
            table.append(**{**row, "model": model_name, "dataset": cache.behaviour.identifier, "primates": name,
                            "layer": opts.readout_layer, "number_of_trials": opts.number_of_trials})
        for d in image_dprimes(mine, trials).itertuples(index=False):
            table.append(model=model_name, dataset=cache.behaviour.identifier, metric="image_dprime",
                         primates=name, stimulus_id=d.stimulus_id, object=d.object, split="all",
                         score=float(d.model_dprime), primate_dprime=float(d.primate_dprime), n_trials=int(d.n_trials))
    for row in brainscore_composite(pred, behaviour_rows[composite_of[0]], model=model_name):
        table.append(**{**row, "dataset": "brainscore", "primates": composite_of[0] if row["component"] in
                        ("behaviour", "composite") else None})
    committed = {r["region"]: r["layer"] for r in pred if r.get("is_best")}
    note = (f"{cache.describe()}. Neural: predictivity(protocol='brainscore', version {opts.brainscore_version}) "
            f"over {len(sweep)} layers ({sweep.source}) at {prep.image_size} px, {opts.neural_trials} pass(es), "
            f"committed V4 {committed.get('V4')}, IT {committed.get('IT')}. Behaviour: read-out on "
            f"{opts.readout_layer} (averaged over space), {opts.number_of_trials} passes averaged; I2n with "
            f"{opts.repetitions} split halves (seed {opts.seed}) per primate group ({', '.join(g for g, _ in groups)}); "
            f"composite = mean of the ceiled V4, IT and I2n ({composite_of[0]} trials).")
    return table, note
