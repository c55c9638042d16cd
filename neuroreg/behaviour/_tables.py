"""Checked conversion of the behavioural long tables into arrays.

Two tables feed the metrics:

- ``probabilities``: one row per (image, object label): ``stimulus_id``, ``choice``,
  ``probability`` (a model's choice probabilities; every image has every label, and
  an image's probabilities sum to 1);
- ``trials``: one row per behavioural trial, in the order they were given:
  ``stimulus_id``, ``sample_obj`` (the object shown, the correct answer),
  ``dist_obj`` (the distractor offered with it) and ``choice`` (the one chosen).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from neuroreg.errors import DataFormatError, NonFiniteError, StimulusMismatchError

PROBABILITY_COLUMNS = ("stimulus_id", "choice", "probability")
TRIAL_COLUMNS = ("stimulus_id", "sample_obj", "dist_obj", "choice")
#: How far an image's probabilities may sum from 1 (float32 soft-max outputs sum to 1 within ~1e-6).
SUM_TOLERANCE = 1e-4


def checked_frame(table, name: str, columns: tuple[str, ...]) -> pd.DataFrame:
    if not isinstance(table, pd.DataFrame):
        try:
            table = pd.DataFrame(table)
        except (TypeError, ValueError) as err:
            raise DataFormatError(f"{name} must be a table (a pandas DataFrame or a mapping of columns) with "
                                  f"columns {list(columns)}; got {type(table).__name__}") from err
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise DataFormatError(f"{name} lacks the column(s) {missing}; it has {list(table.columns)}, "
                              f"expected {list(columns)}")
    if len(table) == 0:
        raise DataFormatError(f"{name} has no rows")
    for c in columns:
        if table[c].isna().any():
            first = int(np.flatnonzero(table[c].isna().to_numpy())[0])
            raise DataFormatError(f"{name} column {c!r} has a missing value (first at row {first})")
    return table


@dataclass(frozen=True)
class ProbabilityMatrix:
    """A model's choice probabilities as a matrix.

    stimulus_ids: ``(n_images,)`` sorted; labels: ``(n_labels,)`` sorted;
    values: ``(n_images, n_labels)``, each row sums to 1.
    """

    stimulus_ids: np.ndarray
    labels: np.ndarray
    values: np.ndarray


def probability_matrix(probabilities) -> ProbabilityMatrix:
    """Check the long ``probabilities`` table and pivot it to images x labels (both sorted)."""
    df = checked_frame(probabilities, "probabilities", PROBABILITY_COLUMNS)
    p = pd.to_numeric(df["probability"], errors="coerce").to_numpy(dtype=np.float64)
    if not np.isfinite(p).all():
        first = int(np.flatnonzero(~np.isfinite(p))[0])
        raise NonFiniteError(f"probabilities column 'probability' must hold finite numbers; row {first} has "
                             f"{df['probability'].iloc[first]!r}")
    if (p < 0).any() or (p > 1).any():
        first = int(np.flatnonzero((p < 0) | (p > 1))[0])
        raise DataFormatError(f"probabilities must lie in [0, 1]; row {first} has {p[first]!r}")
    dup = df.duplicated(["stimulus_id", "choice"])
    if dup.any():
        row = df[dup].iloc[0]
        raise DataFormatError(f"probabilities has more than one row for stimulus_id={row['stimulus_id']!r}, "
                              f"choice={row['choice']!r}; expected one row per image and label")
    ids = np.sort(df["stimulus_id"].unique())
    labels = np.sort(df["choice"].unique())
    if len(df) != ids.size * labels.size:
        counts = df.groupby("stimulus_id")["choice"].nunique()
        short = counts[counts < labels.size]
        raise DataFormatError(f"probabilities must give every image a probability for every one of the "
                              f"{labels.size} labels {labels.tolist()}; {short.size} image(s) lack some, e.g. "
                              f"stimulus_id={short.index[0]!r} has {int(short.iloc[0])}")
    wide = pd.Series(p, index=pd.MultiIndex.from_arrays([df["stimulus_id"], df["choice"]])).unstack()
    values = wide.loc[ids, labels].to_numpy(dtype=np.float64)
    sums = values.sum(axis=1)
    off = np.abs(sums - 1.0) > SUM_TOLERANCE
    if off.any():
        i = int(np.flatnonzero(off)[0])
        raise DataFormatError(f"probabilities of an image must sum to 1 over the labels; {int(off.sum())} image(s) "
                              f"do not, e.g. stimulus_id={ids[i]!r} sums to {sums[i]:.6g}")
    return ProbabilityMatrix(ids, labels, values)


@dataclass(frozen=True)
class Trials:
    """Behavioural trials in their given order, with every image and label as an index.

    stimulus_ids: ``(n_images,)`` sorted; labels: ``(n_labels,)`` sorted;
    truth: ``(n_images,)`` the label index of each image's object;
    image, distractor, chosen: ``(n_trials,)`` indices of each trial's image, distractor
    label and chosen label.
    """

    stimulus_ids: np.ndarray
    labels: np.ndarray
    truth: np.ndarray
    image: np.ndarray
    distractor: np.ndarray
    chosen: np.ndarray

    @property
    def n_trials(self) -> int:
        return int(self.image.size)


def read_trials(trials, labels: np.ndarray) -> Trials:
    """Check the ``trials`` table against the model's ``labels`` and index it.

    Each image must have one ``sample_obj`` (its object), ``dist_obj`` must differ from
    it, ``choice`` must be one of the two, and every object must be a label of the
    model and the object of at least one image (Brain-Score's d' averages each
    distractor's false alarms over the images of that object).
    """
    df = checked_frame(trials, "trials", TRIAL_COLUMNS)
    per_image = df.groupby("stimulus_id")["sample_obj"].nunique()
    if (per_image > 1).any():
        bad = per_image.index[per_image > 1][0]
        raise DataFormatError(f"trials give stimulus_id={bad!r} more than one sample_obj "
                              f"({sorted(df.loc[df['stimulus_id'] == bad, 'sample_obj'].unique().tolist())}); "
                              "an image shows one object")
    same = (df["dist_obj"] == df["sample_obj"]).to_numpy()
    if same.any():
        i = int(np.flatnonzero(same)[0])
        raise DataFormatError(f"trials row {i}: dist_obj equals sample_obj ({df['sample_obj'].iloc[i]!r}); "
                              "a trial offers two different objects")
    odd = ~((df["choice"] == df["sample_obj"]) | (df["choice"] == df["dist_obj"])).to_numpy()
    if odd.any():
        i = int(np.flatnonzero(odd)[0])
        raise DataFormatError(f"trials row {i}: choice {df['choice'].iloc[i]!r} is neither sample_obj "
                              f"{df['sample_obj'].iloc[i]!r} nor dist_obj {df['dist_obj'].iloc[i]!r}")
    objects = set(df["sample_obj"]) | set(df["dist_obj"])
    unknown = sorted(objects - set(labels.tolist()), key=str)
    if unknown:
        raise StimulusMismatchError(f"trials name object(s) {unknown} that are not labels of probabilities "
                                    f"(labels: {labels.tolist()})")
    no_image = sorted(set(labels.tolist()) - set(df["sample_obj"]), key=str)
    if no_image:
        raise DataFormatError(f"label(s) {no_image} are the sample_obj of no image in trials; every label must be "
                              "the object of at least one image")
    ids = np.sort(df["stimulus_id"].unique())
    truth_of = df.drop_duplicates("stimulus_id").set_index("stimulus_id")["sample_obj"]
    label_index = {label: k for k, label in enumerate(labels.tolist())}
    image_index = {sid: k for k, sid in enumerate(ids.tolist())}
    return Trials(stimulus_ids=ids, labels=labels,
                  truth=np.array([label_index[truth_of[s]] for s in ids], dtype=np.int64),
                  image=np.array([image_index[s] for s in df["stimulus_id"]], dtype=np.int64),
                  distractor=np.array([label_index[o] for o in df["dist_obj"]], dtype=np.int64),
                  chosen=np.array([label_index[o] for o in df["choice"]], dtype=np.int64))


def same_images(model: ProbabilityMatrix, trials: Trials) -> None:
    """Raise unless the model and the trials cover exactly the same images."""
    unknown = np.setdiff1d(trials.stimulus_ids, model.stimulus_ids)
    if unknown.size:
        raise StimulusMismatchError(f"trials name {unknown.size} stimulus id(s) absent from probabilities, e.g. "
                                    f"{unknown[:3].tolist()}")
    extra = np.setdiff1d(model.stimulus_ids, trials.stimulus_ids)
    if extra.size:
        raise StimulusMismatchError(f"probabilities name {extra.size} stimulus id(s) with no trial, e.g. "
                                    f"{extra[:3].tolist()}; give probabilities for the trials' images only")
