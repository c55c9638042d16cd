"""Brain-Score's neural predictivity (Schrimpf et al. 2018), as brain-score/vision computes it.

Per region x subject group of ``brain`` (Brain-Score fits one map per benchmark
region) and per layer:

- raw activations, no projection or standardisation;
- ``PLSRegression(n_components=25, scale=False)`` from all features to all the
  group's neuroids;
- ``StratifiedShuffleSplit(n_splits=10, train_size=0.9, random_state=1)`` on the
  object label of each stimulus, over the stimuli in sorted-id order;
- Pearson r per neuroid on the held-out stimuli, median over neuroids per split,
  mean over splits: the raw score r;
- ceiling c (``InternalConsistency``): ``ShuffleSplit(n_splits=10, train_size=0.5,
  random_state=1)`` over the repetitions, Pearson r per neuroid between the two
  halves' mean responses, Spearman-Brown corrected (``2 r / (1 + r)``), median over
  neuroids, mean over splits;
- the normalised score of the version the user names, from brain-score/vision's
  history: ``"2018"`` r / c (before commit 6506436, 2019-07-25); ``"2019"``
  (r / c)^2 (6506436 until e376e30; Brain-Score 2.0's ``explained_variance``);
  ``"2026"`` r^2 / c (since e376e306791cbf1e0f7f0fab7104f499e346415f, 2026-01-13).

The layer of a region is committed as Brain-Score's ``LayerSelection`` does: the
argmax of the normalised score over layers, on the ``select_on`` data set when
given (Brain-Score's public data) and on the scored data set otherwise.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Mapping

import numpy as np
import torch
from sklearn.cross_decomposition import PLSRegression
from sklearn.model_selection import ShuffleSplit, StratifiedShuffleSplit
from tqdm.auto import tqdm

from neuroreg.brain.data import BrainData
from neuroreg.errors import UnknownNameError
from neuroreg.scoring._precision import scaled_by_pow2, unit_exponent
from neuroreg.scoring._inputs import (MIN_TEST_PER_FOLD, aligned_brain, feature_ids, layer_matrix, layer_names,
                                      unit_groups, warn_few_test_stimuli)
from neuroreg.scoring.columnwise import pearson_per_column
from neuroreg.results.table import ScoreTable
from neuroreg.results.selection import best_index, check_chosen_layers

__all__ = ["predictivity_brainscore", "brainscore_ceiling", "brainscore_normalize", "BRAINSCORE_VERSIONS"]

#: version -> (formula, the brain-score/vision commit that introduced it)
BRAINSCORE_VERSIONS = {
    "2018": ("r / c", "before 6506436697c8e206de24d0e6b7aeaf08fefe1d92"),
    "2019": ("(r / c)^2", "6506436697c8e206de24d0e6b7aeaf08fefe1d92"),
    "2026": ("r^2 / c", "e376e306791cbf1e0f7f0fab7104f499e346415f"),
}
_RANDOM_STATE = 1


def brainscore_normalize(r, c, version: str = "2026"):
    """Brain-Score's ceiled score of raw score ``r`` with ceiling ``c`` (see :data:`BRAINSCORE_VERSIONS`)."""
    if version not in BRAINSCORE_VERSIONS:
        raise UnknownNameError(f"brainscore_version must be one of {list(BRAINSCORE_VERSIONS)}; got {version!r}")
    r = np.asarray(r, dtype=np.float64)
    c = np.asarray(c, dtype=np.float64)
    if version == "2018":
        return r / c
    if version == "2019":
        return (r / c) ** 2
    return r ** 2 / c


def brainscore_ceiling(trials, *, n_splits: int = 10) -> float:
    """Brain-Score's ``InternalConsistency`` of ``trials (n_repeats, n_stimuli, n_units)``.

    Repetitions are split in halves by ``ShuffleSplit(train_size=0.5, random_state=1)``;
    per split the median over units of the Spearman-Brown-corrected Pearson r
    between the halves' means; the mean over splits.
    """
    tr = np.asarray(trials, dtype=np.float64)
    if tr.ndim != 3 or tr.shape[0] < 2:
        raise ValueError(f"trials must be (n_repeats >= 2, n_stimuli, n_units); got shape {tr.shape}")
    tr = scaled_by_pow2(tr, unit_exponent(tr))     # exact; the split-half r does not depend on the scale
    halves = ShuffleSplit(n_splits=n_splits, train_size=0.5, random_state=_RANDOM_STATE).split(np.zeros(tr.shape[0]))
    per_split = []
    for a, b in halves:
        r = pearson_per_column(tr[a].mean(0), tr[b].mean(0), constant="nan")
        if np.isnan(r).any():
            raise ValueError(f"{int(np.isnan(r).sum())} unit(s) have constant half-means: no split-half ceiling")
        per_split.append(np.median(2 * r / (1 + r)))
    return float(np.mean(per_split))


def _labels(labels, brain: BrainData) -> np.ndarray:
    """Object label per stimulus of ``brain`` (rows order); ``labels`` maps ids to labels or lists them in order."""
    if labels is None:
        raise ValueError("protocol='brainscore' needs labels: the object label of every stimulus (Brain-Score "
                         "stratifies its splits on object_name)")
    if isinstance(labels, Mapping):
        missing = [i for i in brain.stimulus_ids.tolist() if i not in labels]
        if missing:
            raise ValueError(f"labels has no entry for {len(missing)} stimulus id(s), e.g. {missing[:3]}")
        arr = np.asarray([labels[i] for i in brain.stimulus_ids.tolist()])
    else:
        arr = np.asarray(labels)
        if arr.shape != (brain.n_stimuli,):
            raise ValueError(f"labels must have one entry per stimulus of brain ({brain.n_stimuli}), in its row "
                             f"order, or map stimulus ids to labels; got shape {arr.shape}")
    missing_rows = [i for i, v in enumerate(arr.tolist()) if v is None or (isinstance(v, float) and v != v)]
    if missing_rows:
        ids = brain.stimulus_ids[missing_rows[:3]].tolist()
        raise ValueError(f"labels must give the object label of every stimulus; {len(missing_rows)} of "
                         f"{arr.size} are None or NaN (stimulus ids {ids}{' ...' if len(missing_rows) > 3 else ''})")
    return arr


def _check_stratification(lab: np.ndarray) -> None:
    """Refuse labels and sizes that ``StratifiedShuffleSplit(train_size=0.9)`` cannot split, with the reason."""
    n = lab.size
    names, counts = np.unique(lab, return_counts=True)
    single = names[counts < 2]
    if single.size:
        hint = (" (every label is unique: pass the object name of each stimulus, not its id)"
                if single.size == names.size else "")
        raise ValueError(f"labels: protocol='brainscore' stratifies its splits on the object labels and needs at "
                         f"least 2 stimuli per label; {single.size} of {names.size} labels have 1 stimulus "
                         f"(e.g. {single[:3].tolist()}){hint}")
    n_test = n - int(np.floor(0.9 * n))      # scikit-learn's sizes for train_size=0.9
    n_train = n - n_test
    if n_test < MIN_TEST_PER_FOLD:
        need = next(m for m in range(n, 10 * n + 100) if m - int(np.floor(0.9 * m)) >= MIN_TEST_PER_FOLD)
        raise ValueError(f"protocol='brainscore' holds out 10% of the stimuli per split: {n} stimuli give {n_test} "
                         f"test stimulus per split, and a Pearson r needs at least {MIN_TEST_PER_FOLD} (use at "
                         f"least {need} stimuli)")
    if n_test < names.size or n_train < names.size:
        raise ValueError(f"labels: protocol='brainscore' stratifies on the object labels, so each split needs a "
                         f"test stimulus of every label; {n} stimuli give {n_test} test stimuli per split for "
                         f"{names.size} labels (use at least 10 stimuli per label)")
    warn_few_test_stimuli("predictivity (protocol='brainscore')", n_test, "split", stacklevel=4)


def _scores(features, brain, labels, *, splits: int, n_components: int, version: str, model, progress,
            part: str) -> list[dict]:
    if not isinstance(brain, BrainData):
        raise TypeError(f"brain must be a BrainData; got {type(brain).__name__}")
    lab = _labels(labels, brain)                       # in brain's row order
    data = aligned_brain(brain, feature_ids(features))
    if data is not brain:                              # brain reordered to the features: reorder labels too
        pos = {k: i for i, k in enumerate(brain.stimulus_ids.tolist())}
        lab = lab[[pos[k] for k in data.stimulus_ids.tolist()]]
    if data.trials is None:
        raise ValueError("protocol='brainscore' needs brain.trials (n_repeats, n_stimuli, n_units) for its "
                         "split-half ceiling")
    n = data.n_stimuli
    _check_stratification(lab)
    order = np.argsort(data.stimulus_ids, kind="stable")   # splits from sorted ids, never from row order
    sss = StratifiedShuffleSplit(n_splits=int(splits), train_size=0.9, test_size=None, random_state=_RANDOM_STATE)
    folds = [(order[tr], order[te]) for tr, te in sss.split(np.zeros(n), lab[order])]
    groups = list(unit_groups(data))
    # far from magnitude 1, scale by a power of two (exact): predictions scale with it, Pearson r does not
    responses = scaled_by_pow2(data.responses, unit_exponent(data.responses))
    ceilings = {(r, s): brainscore_ceiling(data.trials[:, :, u]) for r, s, u in groups}
    rows = []
    show = sys.stderr.isatty() if progress is None else progress
    for li, layer in enumerate(tqdm(layer_names(features), desc="predictivity (brainscore) layers",
                                    disable=not show, leave=False)):
        x = layer_matrix(features, layer, n)
        x = (x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor)
             else np.asarray(x, dtype=np.float64))
        if not np.isfinite(x).all():
            raise ValueError(f"features[{layer!r}] contains NaN or inf")
        x = scaled_by_pow2(x, unit_exponent(x))    # exact; PLS predictions do not depend on the features' scale
        for region, subject, units in groups:
            y = responses[:, units]
            per_split = []
            for train, test in folds:
                k = min(n_components, train.size, x.shape[1])
                pred = PLSRegression(n_components=k, scale=False).fit(x[train], y[train]).predict(x[test])
                per_split.append(np.nanmedian(pearson_per_column(pred, y[test], constant="nan")))
            r = float(np.mean(per_split))
            c = ceilings[(region, subject)]
            rows.append(dict(model=model, layer=layer, region=region, subject=subject, metric="predictivity",
                             split="cv", score=r, ceiling_r=float(np.sqrt(c)) if c > 0 else None, reliability=c,
                             brainscore_ceiled=float(brainscore_normalize(r, c, version)),
                             brainscore_version=version, n_units=int(units.size), mapping="pls",
                             n_splits=len(folds), layer_index=li, protocol="brainscore", data=part))
    return rows


def predictivity_brainscore(features, brain, *, labels, splits: int = 10, n_components: int = 25,
                            select_on=None, version: str = "2026", model: str | None = None,
                            progress: bool | None = None) -> ScoreTable:
    """Brain-Score neural predictivity of every layer (module docstring); ``predictivity(protocol="brainscore")``.

    brain: :class:`BrainData` with ``trials`` (the repetitions, for the ceiling);
        ``responses`` (their mean) are the targets.
    labels: object label of each stimulus, in ``brain``'s row order or as a mapping id -> label.
    select_on: ``(features, brain, labels)`` of the data set the layer is committed
        on (Brain-Score's public set); its rows are added with ``data="select_on"``.
    version: ``"2018"``, ``"2019"`` or ``"2026"``: the normalisation in ``brainscore_ceiled``.

    Rows (metric ``"predictivity"``, split ``"cv"``): ``score`` the raw r,
    ``reliability`` Brain-Score's ceiling c, ``ceiling_r = sqrt(c)`` (so
    ``normalized = r / sqrt(c)`` as for every neuroreg table), ``brainscore_ceiled``
    the named version's normalisation, ``is_best`` on the committed layer of each
    region x subject, ``selected_on`` (``"select_on"`` or ``"same data"``).
    """
    brainscore_normalize(0.0, 1.0, version)     # checks the version name
    if int(splits) < 1:
        raise ValueError(f"splits must be >= 1; got {splits}")
    scores = functools.partial(_scores, splits=splits, n_components=n_components, version=version, model=model,
                               progress=progress)
    if select_on is not None:
        if not (isinstance(select_on, (tuple, list)) and len(select_on) == 3):
            raise ValueError("select_on must be (features, brain, labels) of the layer-selection data set")
        check_chosen_layers(layer_names(select_on[0]), layer_names(features), chosen_on="select_on's features",
                            scored="the scored features")
    rows = scores(features, brain, labels, part="scored")
    chooser = rows
    if select_on is not None:
        chooser = scores(*select_on, part="select_on")
    by_key: dict[tuple, list[dict]] = {}
    for r in chooser:
        by_key.setdefault((r["region"], r["subject"]), []).append(r)
    committed: dict[tuple, tuple[float, str]] = {}
    for key, group in by_key.items():  # first layer wins ties, as numpy's argmax; an all-NaN region keeps its first
        i = best_index([r["brainscore_ceiled"] for r in group]) or 0
        committed[key] = (group[i]["brainscore_ceiled"], group[i]["layer"])
    where = "select_on" if select_on is not None else "same data"
    for r in rows + (chooser if select_on is not None else []):
        choice = committed.get((r["region"], r["subject"]))
        if choice is None:
            raise ValueError(f"select_on has no region {r['region']!r} (subject {r['subject']!r}) to commit a "
                             f"layer for; it has {sorted({str(k) for k in committed})}")
        r["is_best"] = choice[1] == r["layer"]
        r["selected_on"] = where
    return ScoreTable(rows + (chooser if select_on is not None else []))
