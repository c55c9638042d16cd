"""Error consistency (Geirhos, Meding & Wichmann 2020) as Brain-Score computes it.

Follows ``brainscore_vision.metrics.error_consistency`` and the Geirhos2021
benchmarks: per subject and condition, Cohen's kappa between the model's and the
subject's trial-by-trial correctness on the same images,

    kappa = (c_obs - c_exp) / (1 - c_exp),
    c_exp = a_m a_s + (1 - a_m)(1 - a_s),

with c_obs the fraction of images both got right or both got wrong and a_m, a_s
the accuracies; the score is the absolute value of the mean over conditions, then
subjects. The ceiling is the same statistic over every pair of subjects, and the
benchmark's ceiled score is ``score / ceiling`` bounded to [0, 1].
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from neuroreg.behaviour._tables import checked_frame
from neuroreg.errors import DataFormatError, StimulusMismatchError
from neuroreg.results.table import ScoreTable

__all__ = ["error_consistency", "error_consistency_ceiling", "cohens_kappa"]

CHOICE_COLUMNS = ("stimulus_id", "choice")
SUBJECT_TRIAL_COLUMNS = ("stimulus_id", "subject", "choice", "truth")
_ALL = "all"


def cohens_kappa(correct_a, correct_b) -> float:
    """Error consistency of two observers' correctness ``(n,)`` booleans on the same n trials.

    Raises ``DataFormatError`` when both are always right (or always wrong): kappa is 0/0 then.
    """
    a = np.asarray(correct_a, dtype=bool)
    b = np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"correct_a and correct_b must be non-empty 1-D arrays of one length; got shapes "
                         f"{a.shape} and {b.shape}")
    acc_a, acc_b = a.mean(), b.mean()
    expected = acc_a * acc_b + (1 - acc_a) * (1 - acc_b)
    observed = float((a == b).sum()) / b.size
    if expected == 1.0:
        raise DataFormatError(f"error consistency is undefined when both observers are always right or both "
                              f"always wrong (accuracies {acc_a:.3g} and {acc_b:.3g})")
    return float((observed - expected) / (1.0 - expected))


def _subject_trials(trials) -> pd.DataFrame:
    df = checked_frame(trials, "trials", SUBJECT_TRIAL_COLUMNS).copy()
    if "condition" not in df.columns:
        df["condition"] = _ALL
    elif df["condition"].isna().any():
        raise DataFormatError("trials column 'condition' has a missing value")
    truths = df.groupby("stimulus_id")["truth"].nunique()
    if (truths > 1).any():
        raise DataFormatError(f"trials give stimulus_id={truths.index[truths > 1][0]!r} more than one truth")
    conditions = df.groupby("stimulus_id")["condition"].nunique()
    if (conditions > 1).any():
        raise DataFormatError(f"trials put stimulus_id={conditions.index[conditions > 1][0]!r} in more than one "
                              "condition; an image belongs to one condition")
    dup = df.duplicated(["subject", "stimulus_id"])
    if dup.any():
        row = df[dup].iloc[0]
        raise DataFormatError(f"trials have more than one trial of subject {row['subject']!r} on stimulus_id="
                              f"{row['stimulus_id']!r}; error consistency takes one trial per subject and image")
    images = df.groupby("condition")["stimulus_id"].nunique()
    seen = df.groupby(["subject", "condition"])["stimulus_id"].nunique()
    for subject in sorted(df["subject"].unique(), key=str):
        for condition, n in images.items():
            got = int(seen.get((subject, condition), 0))
            if got != n:
                raise DataFormatError(f"subject {subject!r} has trials on {got} of the {n} images of condition "
                                      f"{condition!r}; every subject must see every image of every condition once")
    return df.sort_values("stimulus_id", kind="stable")


def _correct(df: pd.DataFrame) -> np.ndarray:
    return (df["choice"] == df["truth"]).to_numpy()


def _aggregate(values: np.ndarray) -> float:
    """Brain-Score's aggregate of a (subject, condition) grid: |mean over conditions, then subjects|."""
    return float(abs(values.mean(axis=1).mean(axis=0)))


def error_consistency_ceiling(trials) -> ScoreTable:
    """Brain-Score's ceiling of error consistency: kappa between every pair of subjects, per condition.

    trials: one row per trial: ``stimulus_id``, ``subject``, ``choice``, ``truth`` (the correct
    label) and optionally ``condition``; every subject sees every image once.
    Returns one row per (subject pair, condition) (columns ``subject_left``, ``subject_right``,
    ``condition``; ``score`` = kappa) and a ``split="mean"`` row with Brain-Score's ceiling
    (the absolute value of the mean over conditions, then pairs).
    """
    df = _subject_trials(trials)
    subjects = sorted(df["subject"].unique(), key=str)
    if len(subjects) < 2:
        raise DataFormatError(f"the ceiling compares subjects with each other; trials have {len(subjects)} subject")
    conditions = sorted(df["condition"].unique(), key=str)
    table = ScoreTable()
    grid = np.empty((len(subjects) * (len(subjects) - 1) // 2, len(conditions)))
    by = {key: grp for key, grp in df.groupby(["subject", "condition"])}
    for p, (left, right) in enumerate(itertools.combinations(subjects, 2)):
        for k, condition in enumerate(conditions):
            grid[p, k] = cohens_kappa(_correct(by[(left, condition)]), _correct(by[(right, condition)]))
            table.append(metric="error_consistency_ceiling", subject_left=left, subject_right=right,
                         condition=condition, score=grid[p, k], protocol="brainscore")
    table.append(metric="error_consistency_ceiling", split="mean", subject="mean", condition="mean",
                 score=_aggregate(grid), protocol="brainscore")
    return table


def error_consistency(choices, trials) -> ScoreTable:
    """Error consistency of a model with each subject (Geirhos et al. 2020; Brain-Score's ``error_consistency``).

    choices: the model's answer per image: ``stimulus_id``, ``choice`` (one row per image of
        ``trials``; e.g. the label of highest probability).
    trials: as in :func:`error_consistency_ceiling`.

    Returns one row per (subject, condition) with ``score`` = Cohen's kappa, and a
    ``split="mean"`` row with ``score`` = |mean over conditions, then subjects|,
    ``ceiling`` = ``ceiling_r`` = Brain-Score's subject-pair ceiling (on kappa's own
    scale, which the benchmark divides by) and ``brainscore_ceiled`` = score / ceiling
    bounded to [0, 1]. Rows carry ``protocol="brainscore"``.
    """
    df = _subject_trials(trials)
    model = checked_frame(choices, "choices", CHOICE_COLUMNS)
    if model["stimulus_id"].duplicated().any():
        raise DataFormatError(f"choices has more than one row for stimulus_id="
                              f"{model.loc[model['stimulus_id'].duplicated(), 'stimulus_id'].iloc[0]!r}")
    answer = model.set_index("stimulus_id")["choice"]
    unknown = np.setdiff1d(df["stimulus_id"].unique(), answer.index.to_numpy())
    if unknown.size:
        raise StimulusMismatchError(f"choices lack {unknown.size} image(s) of trials, e.g. {unknown[:3].tolist()}")
    extra = np.setdiff1d(answer.index.to_numpy(), df["stimulus_id"].unique())
    if extra.size:
        raise StimulusMismatchError(f"choices name {extra.size} stimulus id(s) with no trial, e.g. "
                                    f"{extra[:3].tolist()}")
    subjects = sorted(df["subject"].unique(), key=str)
    conditions = sorted(df["condition"].unique(), key=str)
    grid = np.empty((len(subjects), len(conditions)))
    table = ScoreTable()
    by = {key: grp for key, grp in df.groupby(["subject", "condition"])}
    for s, subject in enumerate(subjects):
        for k, condition in enumerate(conditions):
            grp = by[(subject, condition)]
            model_correct = (answer.loc[grp["stimulus_id"]].to_numpy() == grp["truth"].to_numpy())
            grid[s, k] = cohens_kappa(model_correct, _correct(grp))
            table.append(metric="error_consistency", subject=subject, condition=condition, score=grid[s, k],
                         protocol="brainscore")
    score = _aggregate(grid)
    ceiling = error_consistency_ceiling(df).filter(split="mean")[0]["score"] if len(subjects) > 1 else None
    ceiled = float(np.clip(score / ceiling, 0.0, 1.0)) if ceiling else None
    table.append(metric="error_consistency", split="mean", subject="mean", condition="mean", score=score,
                 score_std=float(grid.std()), ceiling=ceiling, ceiling_r=ceiling,
                 brainscore_ceiled=ceiled, protocol="brainscore")
    return table
