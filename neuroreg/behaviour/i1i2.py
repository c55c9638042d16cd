"""Image-level behavioural consistency I1 / I2 (Rajalingham, Issa et al. 2018) as Brain-Score computes it.

Follows ``brainscore_vision.metrics.i1i2`` (``I1``, ``I1n``, ``I2``, ``I2n``) and the
``Rajalingham2018-i2n`` benchmark's ceiling:

- model false-alarm rate of image i for distractor c (c not i's object t):
  ``p_c / (p_c + p_t)`` from the model's choice probabilities (its 2-alternative
  probability of choosing c over t);
- primate false-alarm rate: the fraction of the trials of image i offering c in
  which c was chosen;
- d' = z(1 - FA[i, c]) - z(mean over the images j of object c of FA[j, t]), with
  z the standard normal quantile, clipped to [-5, 5];
- ``normalize`` (the "n" of I1n / I2n): per (object, distractor), the mean over
  that object's images is subtracted;
- I1 averages each image's d' over its distractors (NaN-skipping); I2 keeps them;
- the trials are cut in two halves by shuffling their order with
  ``numpy.random.RandomState(seed).shuffle`` (one stream over the repetitions,
  so the model score and the ceiling see the same halves): score = Pearson r
  between the model's d' and the first half's over the entries the half
  defines; split-half ceiling = Pearson r between the two halves' d';
- the benchmark's ceiled split score is ``score / sqrt(ceiling)``, and its value
  the mean over the repetitions.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Iterator

import numpy as np
from scipy.special import ndtri
from scipy.stats import pearsonr

from neuroreg.behaviour._tables import ProbabilityMatrix, Trials, probability_matrix, read_trials, same_images
from neuroreg.errors import DataFormatError
from neuroreg.results.table import ScoreTable

__all__ = ["i1", "i1n", "i2", "i2n", "o1", "o2", "behavioural_consistency", "DPRIME_CAP", "BRAINSCORE_I1I2"]

#: |d'| is clipped to this value (Brain-Score's ``cap``).
DPRIME_CAP = 5.0
#: The code whose formulas these are.
BRAINSCORE_I1I2 = "brainscore_vision.metrics.i1i2"


@contextlib.contextmanager
def _quiet_nanmean() -> Iterator[None]:
    """Silence numpy's 'Mean of empty slice': an all-NaN group gives NaN, as in Brain-Score."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def _model_false_alarms(model: ProbabilityMatrix, truth: np.ndarray) -> np.ndarray:
    """``(n_images, n_labels)``: p_c / (p_c + p_truth); NaN in each image's own object's column."""
    p = model.values
    p_truth = p[np.arange(p.shape[0]), truth][:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        fa = p / (p + p_truth)
    fa[np.arange(p.shape[0]), truth] = np.nan
    return fa


def _trial_false_alarms(trials: Trials, subset: np.ndarray) -> np.ndarray:
    """``(n_images, n_labels)``: fraction of an image's trials offering c in which c was chosen (NaN: none)."""
    shape = (trials.stimulus_ids.size, trials.labels.size)
    offered = np.zeros(shape)
    chosen = np.zeros(shape)
    image, dist = trials.image[subset], trials.distractor[subset]
    np.add.at(offered, (image, dist), 1.0)
    np.add.at(chosen, (image, dist), (trials.chosen[subset] == dist).astype(np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        fa = np.where(offered > 0, chosen / offered, np.nan)
    fa[np.arange(shape[0]), trials.truth] = np.nan
    return fa


def _dprimes(fa: np.ndarray, truth: np.ndarray, normalize: bool) -> np.ndarray:
    """d' per (image, distractor) from false-alarm rates ``fa (n_images, n_labels)``, clipped, optionally centred."""
    n_labels = fa.shape[1]
    # far_object[t, c]: mean false-alarm rate for label t over the images of object c
    far_object = np.full((n_labels, n_labels), np.nan)
    for c in range(n_labels):
        rows = fa[truth == c]
        with _quiet_nanmean():
            far_object[:, c] = np.nanmean(rows, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        d = ndtri(1.0 - fa) - ndtri(far_object[truth, :])
    d = np.clip(d, -DPRIME_CAP, DPRIME_CAP)
    if normalize:
        for c in np.unique(truth):
            rows = truth == c
            with _quiet_nanmean():
                d[rows] = d[rows] - np.nanmean(d[rows], axis=0)
    return d


def _object_dprimes(fa: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """O2 d' [a, b] = z(1 - FAR[b, a]) - z(FAR[a, b]), FAR[t, c] the mean over the images of t; clipped."""
    far = np.full((fa.shape[1], fa.shape[1]), np.nan)
    for t in range(fa.shape[1]):
        with _quiet_nanmean():
            far[t] = np.nanmean(fa[truth == t], axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        d = ndtri(1.0 - far.T) - ndtri(far)
    return np.clip(d, -DPRIME_CAP, DPRIME_CAP)


def _pattern(fa: np.ndarray, truth: np.ndarray, *, objects: bool, collapse: bool, normalize: bool) -> np.ndarray:
    """The d' pattern a metric correlates: per image (x distractor) or per object pair, optionally averaged."""
    d = _object_dprimes(fa, truth) if objects else _dprimes(fa, truth, normalize)
    if not collapse:
        return d
    with _quiet_nanmean():
        # I1 averages an image's distractors; O1 averages over the first object of each pair (task_left)
        return np.nanmean(d, axis=0 if objects else 1)


def _correlate(source: np.ndarray, target: np.ndarray, what: str) -> float:
    """Pearson r over the entries ``target`` defines; ``source`` must define them all (as Brain-Score asserts)."""
    keep = ~np.isnan(target)
    missing = keep & np.isnan(source)
    if missing.any():
        raise DataFormatError(f"{what}: d' is undefined for {int(missing.sum())} of the {int(keep.sum())} entries "
                              "the data define (an image-distractor pair never offered, or 0/0 probabilities); "
                              "Brain-Score's metric needs them all")
    if keep.sum() < 3:
        raise DataFormatError(f"{what}: only {int(keep.sum())} d' value(s) to correlate; need at least 3")
    x, y = source[keep], target[keep]
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        raise DataFormatError(f"{what}: the d' values are constant, so their correlation is undefined")
    return float(pearsonr(x, y)[0])


def _check_half(trials: Trials, half: np.ndarray, name: str) -> None:
    """Brain-Score builds a half's matrix over the images and choices the half contains: all must be there."""
    seen = np.zeros(trials.stimulus_ids.size, dtype=bool)
    seen[trials.image[half]] = True
    if not seen.all():
        raise DataFormatError(
            f"too few trials: {name} ({half.size} of {trials.n_trials} trials) has no trial of "
            f"{int((~seen).sum())} of the {seen.size} images, e.g. stimulus_id="
            f"{trials.stimulus_ids[~seen][0]!r}; each image needs trials in both halves")
    chosen = np.zeros(trials.labels.size, dtype=bool)
    chosen[trials.chosen[half]] = True
    if not chosen.all():
        raise DataFormatError(
            f"too few trials: in {name} ({half.size} of {trials.n_trials} trials) label(s) "
            f"{trials.labels[~chosen].tolist()} are never chosen; each label must be chosen in both halves")


def behavioural_consistency(probabilities, trials, *, collapse_distractors: bool, normalize: bool,
                            objects: bool = False, repetitions: int = 2, seed: int = 0,
                            metric: str | None = None) -> ScoreTable:
    """Brain-Score's I1 / I2 family; :func:`i1n`, :func:`i2n`, :func:`i1` and :func:`i2` name the variants.

    Inputs and rows as :func:`i2n`; ``metric`` names the rows (default from the two switches).
    """
    if isinstance(repetitions, bool) or not isinstance(repetitions, (int, np.integer)) or repetitions < 1:
        raise ValueError(f"repetitions must be a positive integer; got {repetitions!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2 ** 32:
        raise ValueError(f"seed must be an integer in [0, 2**32); got {seed!r}")
    if objects and normalize:
        raise ValueError("normalize applies to image-level metrics only (Brain-Score's O1 and O2 are not normalised)")
    metric = metric or (("o" if objects else "i") + ("1" if collapse_distractors else "2")
                        + ("n" if normalize else ""))
    switches = dict(objects=objects, collapse=collapse_distractors, normalize=normalize)
    model = probability_matrix(probabilities)
    data = read_trials(trials, model.labels)
    same_images(model, data)
    if data.n_trials < 2:
        raise DataFormatError(f"too few trials: {data.n_trials}; halving needs at least 2")
    source = _pattern(_model_false_alarms(model, data.truth), data.truth, **switches)
    rng = np.random.RandomState(int(seed))
    rows = []
    for split in range(int(repetitions)):
        order = list(range(data.n_trials))
        rng.shuffle(order)          # a list, as Brain-Score shuffles it: the same permutation for a given seed
        halves = (np.asarray(order[:data.n_trials // 2]), np.asarray(order[data.n_trials // 2:]))
        patterns = []
        for h, half in enumerate(halves):
            name = f"half {h} of repetition {split}"
            _check_half(data, half, name)
            patterns.append(_pattern(_trial_false_alarms(data, half), data.truth, **switches))
        score = _correlate(source, patterns[0], f"model vs half 0 of repetition {split}")
        ceiling = _correlate(patterns[0], patterns[1], f"half 0 vs half 1 of repetition {split}")
        ceiling_r = float(np.sqrt(ceiling)) if ceiling > 0 else None
        rows.append(dict(metric=metric, split=split, score=score, ceiling=ceiling, ceiling_r=ceiling_r,
                         brainscore_ceiled=(score / ceiling_r) if ceiling_r else None,
                         n_trials=data.n_trials, n_images=data.stimulus_ids.size, protocol="brainscore"))
    table = ScoreTable(rows)
    table.append(**_mean_row(rows))
    return table


def _mean_row(rows: list[dict]) -> dict:
    def mean(key):
        values = [r[key] for r in rows]
        return None if any(v is None for v in values) else float(np.mean(values))
    return dict(rows[0], split="mean", score=mean("score"), ceiling=mean("ceiling"), ceiling_r=mean("ceiling_r"),
                brainscore_ceiled=mean("brainscore_ceiled"),
                score_std=float(np.std([r["score"] for r in rows])))


def i2n(probabilities, trials, repetitions: int = 2, seed: int = 0) -> ScoreTable:
    """I2n: normalised image-by-distractor d' consistency (Rajalingham et al. 2018; Brain-Score's ``i2n``).

    probabilities: long table (pandas DataFrame or mapping of columns) with ``stimulus_id``,
        ``choice`` (an object label) and ``probability``: one row per image and label, each
        image's probabilities summing to 1 (e.g. :func:`neuroreg.behaviour.choice_probabilities`).
    trials: one row per trial, in the order given: ``stimulus_id``, ``sample_obj`` (the object
        shown), ``dist_obj`` (the other object offered), ``choice`` (the one chosen). The
        trials must cover the same images as ``probabilities``; every label must be the
        object of at least one image.
    repetitions: number of split halves (Brain-Score: 2).
    seed: seed of ``numpy.random.RandomState`` that shuffles the trial order (Brain-Score: 0).

    Returns a :class:`~neuroreg.results.table.ScoreTable`: one row per repetition
    (``split`` = 0, 1, ...) with ``score`` = Pearson r between the model's and the first
    half's d' pattern, ``ceiling`` = Pearson r between the two halves (Brain-Score's
    split-half ceiling), ``ceiling_r`` = its square root (None if it is not positive) and
    ``brainscore_ceiled`` = score / ceiling_r (the benchmark's ceiled split score); then
    one ``split="mean"`` row with the means (its ``brainscore_ceiled`` is the benchmark's
    score) and ``score_std`` (Brain-Score's error over splits, ddof 0). Rows carry
    ``protocol="brainscore"``.

    Raises ``DataFormatError`` / ``StimulusMismatchError`` on missing columns, unknown
    stimulus ids, probabilities that do not sum to 1, or too few trials for every image
    and label to appear in both halves (the message gives the number of trials).
    """
    return behavioural_consistency(probabilities, trials, collapse_distractors=False, normalize=True,
                                   repetitions=repetitions, seed=seed)


def i1n(probabilities, trials, repetitions: int = 2, seed: int = 0) -> ScoreTable:
    """I1n: as :func:`i2n`, with each image's normalised d' averaged over its distractors (Brain-Score's ``I1n``)."""
    return behavioural_consistency(probabilities, trials, collapse_distractors=True, normalize=True,
                                   repetitions=repetitions, seed=seed)


def i2(probabilities, trials, repetitions: int = 2, seed: int = 0) -> ScoreTable:
    """I2: as :func:`i2n`, without the per-object mean removed (Brain-Score's ``I2``)."""
    return behavioural_consistency(probabilities, trials, collapse_distractors=False, normalize=False,
                                   repetitions=repetitions, seed=seed)


def o2(probabilities, trials, repetitions: int = 2, seed: int = 0) -> ScoreTable:
    """O2: as :func:`i2n`, on object-pair d' (false alarms averaged over each object's images; Brain-Score's ``O2``).

    The d' of the pair (a, b) is z(1 - FAR[b, a]) - z(FAR[a, b]), FAR[t, c] the mean over the
    images of t of the rate at which c was chosen over t; not normalised. Brain-Score states
    that of its i1i2 metrics only I2n has been verified against the paper; this reproduces
    its O1 / O2 as they are.
    """
    return behavioural_consistency(probabilities, trials, collapse_distractors=False, normalize=False,
                                   objects=True, repetitions=repetitions, seed=seed)


def o1(probabilities, trials, repetitions: int = 2, seed: int = 0) -> ScoreTable:
    """O1: as :func:`o2`, averaged over the first object of each pair (Brain-Score's ``O1``)."""
    return behavioural_consistency(probabilities, trials, collapse_distractors=True, normalize=False,
                                   objects=True, repetitions=repetitions, seed=seed)


def i1(probabilities, trials, repetitions: int = 2, seed: int = 0) -> ScoreTable:
    """I1: as :func:`i1n`, without the per-object mean removed (Brain-Score's ``i1``)."""
    return behavioural_consistency(probabilities, trials, collapse_distractors=True, normalize=False,
                                   repetitions=repetitions, seed=seed)
