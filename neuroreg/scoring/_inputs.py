"""Turning the scorers' ``features`` and ``brain`` arguments into aligned arrays, and splits (private).

Where splits come from: every train/test split, cross-validation fold and
bootstrap resample is a function of the *sorted stimulus ids* (or of an explicit
split given as ids), never of row order, so the same data in another order give
the same score. Numeric ids sort by value; text ids sort naturally: runs of
digits compare as numbers (``s2 < s10``), the rest as text. Features are aligned to the brain
data by id; duplicate ids are refused.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from neuroreg._utils.ids import rows_of
from neuroreg.brain.data import BrainData, RDMSet
from neuroreg.errors import ShapeError, StimulusMismatchError
from neuroreg.scoring.rdm import rdm


def layer_names(features) -> list[str]:
    if not isinstance(features, Mapping):
        raise TypeError(f"features must be a Features or a mapping layer -> (n_stimuli, ...) array; "
                        f"got {type(features).__name__}")
    names = list(features)
    if not names:
        raise ValueError("features holds no layers")
    return names


# Minimum data per split (cRSA, veRSA) and per cross-validation fold (predictivity): below MIN the
# scorer refuses, below WARN it warns with the number.
MIN_STIMULI_PER_SPLIT = 4     # an RDM of 3 stimuli has 3 dissimilarities: no meaningful correlation
WARN_STIMULI_PER_SPLIT = 10   # RDM correlations over < 10 stimuli have a standard error of about 0.3
MIN_TEST_PER_FOLD = 3         # a Pearson r over 1 or 2 test stimuli is 0 or +-1 whatever the model
WARN_TEST_PER_FOLD = 10
MIN_TRAIN_PER_FOLD = 3        # leave-one-out ridge needs 3 samples


def _natural_key(v) -> tuple:
    s = str(v)
    parts = re.split(r"(\d+)", s)
    return tuple(int(p) if i % 2 else p for i, p in enumerate(parts)), s


def sorted_positions(ids) -> np.ndarray:
    """Row indices that put ``ids`` in sorted order: numeric ids by value, others naturally."""
    arr = np.asarray(ids)
    if arr.dtype.kind in "iuf":
        return np.argsort(arr, kind="stable").astype(np.int64)
    ids = arr.tolist()
    return np.array(sorted(range(len(ids)), key=lambda i: _natural_key(ids[i])), dtype=np.int64)


def check_unique_ids(name: str, ids) -> None:
    """Raise unless every id is unique (compared as text, as ids are matched across file formats)."""
    keys = [str(v) for v in np.asarray(ids).tolist()]
    if len(set(keys)) == len(keys):
        return
    seen, dup = set(), []
    for k in keys:
        if k in seen and k not in dup:
            dup.append(k)
        seen.add(k)
    raise ValueError(f"{name} has duplicate ids ({len(keys) - len(set(keys))} rows repeat an id; first: "
                     f"{dup[:5]}): each stimulus must appear once, else one would silently stand for another")


def feature_ids(features) -> np.ndarray | None:
    ids = getattr(features, "stimulus_ids", None)
    if ids is None:
        return None
    ids = np.asarray(ids)
    check_unique_ids("features.stimulus_ids", ids)
    return ids


def layer_matrix(features, layer: str, n_expected: int | None = None):
    """One layer as ``(n, d)`` (numpy array or torch tensor, not copied when possible)."""
    x = features[layer]
    if not isinstance(x, torch.Tensor):
        x = np.asarray(x)
    if x.ndim < 2:
        raise ShapeError(f"features[{layer!r}] must be (n_stimuli, ...); got shape {tuple(x.shape)}")
    if n_expected is not None and x.shape[0] != n_expected:
        raise StimulusMismatchError(
            f"features[{layer!r}] has {x.shape[0]} stimuli but brain has {n_expected}")
    return x.reshape(x.shape[0], -1)


def check_features_vary(layer: str, x, rows: np.ndarray, scorer: str) -> None:
    """Refuse a layer whose features are all constant over the (train) ``rows``: nothing can be predicted
    from it, and its predictions would be identical for every stimulus."""
    part = x[torch.as_tensor(rows, device=x.device)] if isinstance(x, torch.Tensor) else np.asarray(x)[rows]
    varies = bool((part != part[:1]).any())
    if not varies:
        raise ValueError(f"features[{layer!r}] is constant: all {part.shape[1]} features take the same value on "
                         f"each of the {part.shape[0]} train stimuli, so {scorer} has nothing to fit (is the "
                         f"layer dead or the wrong one?)")


def _order(brain_ids, wanted_ids, what: str) -> np.ndarray | None:
    """Index putting ``brain_ids`` in the order of ``wanted_ids``; None if already equal or unknown."""
    if brain_ids is None or wanted_ids is None:
        return None
    brain_ids = np.asarray(brain_ids)
    wanted_ids = np.asarray(wanted_ids)
    if brain_ids.shape == wanted_ids.shape and (brain_ids.astype(str) == wanted_ids.astype(str)).all():
        return None
    if len(wanted_ids) != len(brain_ids):
        raise StimulusMismatchError(
            f"features and {what} describe different stimuli: {len(wanted_ids)} feature ids, "
            f"{len(brain_ids)} brain ids")
    return rows_of(wanted_ids, brain_ids, what="feature stimulus ids", where=what, key=str)


@dataclass
class BrainRDM:
    region: Any
    subject: Any
    source: str | None
    rdm: np.ndarray
    name: str | None = None   # the RDM's own name within its set (one per subject and session)


def _rdm_sets(brain) -> list[tuple[str | None, RDMSet]]:
    if isinstance(brain, RDMSet):
        return [(None, brain)]
    rdms = getattr(brain, "rdms", None)  # NeuralStimulusSet
    if isinstance(rdms, Mapping):
        brain = rdms
    if isinstance(brain, Mapping) and all(isinstance(v, RDMSet) for v in brain.values()):
        return list(brain.items())
    if isinstance(brain, (list, tuple)) and brain and all(isinstance(v, RDMSet) for v in brain):
        return [(None, v) for v in brain]
    return []


def brain_rdms(brain, feature_stim_ids, metric: str = "correlation") -> list[BrainRDM]:
    """Every brain RDM to score against, in the features' stimulus order."""
    sets = _rdm_sets(brain)
    out: list[BrainRDM] = []
    if sets:
        if feature_stim_ids is None:
            # features without ids follow the first set that has ids; the other sets are aligned to it
            feature_stim_ids = next((rs.stimulus_ids for _, rs in sets if rs.stimulus_ids is not None), None)
        for key, rs in sets:
            idx = _order(rs.stimulus_ids, feature_stim_ids, f"RDMSet {key or ''}".strip())
            mats = rs.rdms if idx is None else rs.rdms[:, idx][:, :, idx]
            if rs.names is None:
                raise ValueError(f"RDMSet {key or ''} has names=None: an RDMSet holds one name per RDM "
                                 f"from construction on, so it was overwritten afterwards")
            for i in range(rs.n_rdms):
                region = rs.region[i] if rs.region[i] is not None else key
                out.append(BrainRDM(region, rs.subject[i], key, mats[i], str(rs.names[i])))
        return out
    if isinstance(brain, BrainData):
        idx = _order(brain.stimulus_ids, feature_stim_ids, "brain")
        data = brain if idx is None else brain.take_stimuli(idx)
        for region, subject, units in unit_groups(data):
            try:
                mat = rdm(data.responses[:, units], metric)
            except ValueError as exc:
                raise ValueError(f"brain responses (region={region!r}, subject={subject!r}): {exc}") from exc
            out.append(BrainRDM(region, subject, None, mat))
        return out
    raise TypeError(f"brain must be a BrainData, an RDMSet, a mapping name -> RDMSet or a NeuralStimulusSet; "
                    f"got {type(brain).__name__}")


def unit_groups(brain: BrainData) -> Iterator[tuple[Any, Any, np.ndarray]]:
    """(region, subject, unit indices) for every roi x subject present in ``unit_info``."""
    n = brain.n_units
    roi = brain.unit_info.get("roi", np.full(n, None, dtype=object))
    subj = brain.unit_info.get("subject", np.full(n, None, dtype=object))
    seen: dict[tuple[Any, Any], list[int]] = {}
    for i, key in enumerate(zip(roi.tolist(), subj.tolist())):
        seen.setdefault(key, []).append(i)
    for (r, s), units in seen.items():
        yield r, s, np.asarray(units)


def aligned_brain(brain: BrainData, feature_stim_ids) -> BrainData:
    if not isinstance(brain, BrainData):
        raise TypeError(f"brain must be a BrainData (n_stimuli x n_units responses); got {type(brain).__name__}")
    idx = _order(brain.stimulus_ids, feature_stim_ids, "brain")
    return brain if idx is None else brain.take_stimuli(idx)


def row_ids(features, brain, n: int) -> np.ndarray:
    """The stimulus id of each row the scorers compute on (the features' order after alignment):
    the features' ids, else the brain data's, else the row positions 0..n-1."""
    ids: np.ndarray | Sequence[Any] | None = feature_ids(features)
    if ids is None:
        if isinstance(brain, BrainData):
            ids = brain.stimulus_ids
        else:
            ids = next((rs.stimulus_ids for _, rs in _rdm_sets(brain) if rs.stimulus_ids is not None), None)
    return np.arange(n) if ids is None else np.asarray(ids)


def _split_rows(name: str, wanted, ids: np.ndarray, order_rank: np.ndarray) -> np.ndarray:
    wanted = np.atleast_1d(np.asarray(wanted))
    if wanted.ndim != 1:
        raise ValueError(f"split {name} must be a 1-D list of stimulus ids; got shape {wanted.shape}")
    check_unique_ids(f"split {name}", wanted)
    rows = rows_of(wanted, ids, what=f"split {name} stimulus ids", where="the scored stimuli", key=str)
    return rows[np.argsort(order_rank[rows], kind="stable")]  # in sorted-id order


def check_split_size(scorer: str, name: str, size: int, minimum: int = MIN_STIMULI_PER_SPLIT,
                     warn_below: int = WARN_STIMULI_PER_SPLIT) -> None:
    """Refuse a split below ``minimum`` stimuli; warn, with the number, below ``warn_below``."""
    if size < minimum:
        raise ValueError(f"{scorer} needs at least {minimum} stimuli per split; the {name} split has {size}")
    if size < warn_below:
        warnings.warn(f"{scorer}: the {name} split has only {size} stimuli (fewer than {warn_below}); "
                      f"scores from so few stimuli vary strongly from sample to sample",
                      UserWarning, stacklevel=3)


def resolve_split(split, ids, *, scorer: str = "score") -> dict[str, np.ndarray]:
    """Row indices of each split, every split listed in sorted-id order.

    ``split``: ``"conwell"`` -> stimuli at even positions of the sorted ids train,
    odd positions test (Conwell et al.'s NSD split); None or ``"all"`` -> all
    stimuli (split ``"all"``); ``(train_ids, test_ids)`` or ``{"train": ..., "test": ...}``
    -> those stimulus ids (disjoint). ``ids``: the id of each row (or an int ``n``
    for rows without ids, which are then their own ids 0..n-1).
    """
    ids = np.arange(ids) if isinstance(ids, (int, np.integer)) else np.asarray(ids)
    order = sorted_positions(ids)
    if split is None or (isinstance(split, str) and split == "all"):
        check_split_size(scorer, "all", order.size)
        return {"all": order}
    if isinstance(split, str):
        if split != "conwell":
            raise ValueError(f"split must be 'conwell', None or (train_ids, test_ids); got {split!r}")
        out = {"train": order[0::2], "test": order[1::2]}
    else:
        if isinstance(split, Mapping):
            if set(split) != {"train", "test"}:
                raise ValueError(f"a split mapping needs exactly the keys 'train' and 'test'; got {sorted(split)}")
            train, test = split["train"], split["test"]
        else:
            try:
                train, test = split
            except (TypeError, ValueError):
                raise ValueError(f"split must be 'conwell', None or (train_ids, test_ids); got {split!r}") from None
        rank = np.empty(order.size, dtype=np.int64)
        rank[order] = np.arange(order.size)
        out = {"train": _split_rows("train", train, ids, rank), "test": _split_rows("test", test, ids, rank)}
        both = np.intersect1d(out["train"], out["test"])
        if both.size:
            raise ValueError(f"split train and test must be disjoint; {both.size} stimuli are in both "
                             f"(first: {ids[both[:5]].tolist()})")
    for name, rows in out.items():
        check_split_size(scorer, name, rows.size)
    return out


def warn_few_test_stimuli(scorer: str, n_test: int, per: str, stacklevel: int) -> None:
    """Warn (``UserWarning``) when ``n_test`` test stimuli per ``per`` (``"fold"``, ``"split"``) are fewer than
    ``WARN_TEST_PER_FOLD``: a Pearson r over so few stimuli is very noisy. ``stacklevel``: as the caller's
    own ``warnings.warn`` would take it."""
    if n_test < WARN_TEST_PER_FOLD:
        warnings.warn(f"{scorer}: only {n_test} test stimuli per {per} (fewer than {WARN_TEST_PER_FOLD}); the "
                      f"per-{per} Pearson r is very noisy", UserWarning, stacklevel=stacklevel + 1)


def random_splits(ids, n_splits: int, test_fraction: float, seed: int, *, scorer: str = "predictivity"
                  ) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n_splits`` seeded random (train_rows, test_rows) splits, drawn over positions in sorted-id order.

    Refuses folds with fewer than ``MIN_TEST_PER_FOLD`` test or ``MIN_TRAIN_PER_FOLD`` train
    stimuli and warns below ``WARN_TEST_PER_FOLD`` test stimuli.
    """
    ids = np.arange(ids) if isinstance(ids, (int, np.integer)) else np.asarray(ids)
    order = sorted_positions(ids)
    n = order.size
    n_test = int(round(n * test_fraction))
    if n_test < MIN_TEST_PER_FOLD or n - n_test < MIN_TRAIN_PER_FOLD:
        raise ValueError(f"{scorer} needs at least {MIN_TEST_PER_FOLD} test stimuli per fold and "
                         f"{MIN_TRAIN_PER_FOLD} train stimuli; {n} stimuli with test_fraction={test_fraction} "
                         f"got {n_test} test and {n - n_test} train (use more stimuli or a larger test_fraction)")
    warn_few_test_stimuli(scorer, n_test, "fold", stacklevel=3)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_splits):
        perm = rng.permutation(n)
        out.append((order[np.sort(perm[n_test:])], order[np.sort(perm[:n_test])]))
    return out
