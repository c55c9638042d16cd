"""Brain-Score data as users have them on disk: BrainIO assemblies and stimulus sets.

:func:`load_brainio` reads the files Brain-Score downloads into its cache (``$BRAINIO_HOME``,
default ``~/.brainio``; the folder layouts are in :mod:`neuroreg.brain._brainio_files`) with
xarray and h5netcdf, without brainio or Brain-Score:

- a neural assembly (``NeuroidAssembly``, dims ``presentation`` x ``neuroid`` [x ``time_bin``],
  e.g. ``dicarlo.MajajHong2015.public``) -> :class:`BrainIONeural`: a :class:`BrainData` of the
  repetition-averaged responses of one time bin (Brain-Score's ``average_repetition``), the
  repetitions as ``trials`` for the split-half ceiling, the object label of every stimulus;
- a behavioural assembly (``BehavioralAssembly``, dim ``presentation``: one trial each, e.g.
  ``dicarlo.Rajalingham2018.public``) -> :class:`BrainIOBehaviour`: the ``trials`` table that
  :func:`neuroreg.behaviour.i2n` takes;
- a stimulus set (``stimulus_<id>.csv`` or ``image_<id>.csv`` and its ``.zip``) ->
  :class:`~neuroreg.brain.data.NeuralStimulusSet` (images, ids, the csv as ``labels``).

Nothing is downloaded: a missing file names the folder searched and the file names expected.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from neuroreg.brain._brainio_files import (ASSEMBLY_PREFIX, STIMULUS_PREFIXES, RawAssembly, brainio_home,
                                           find_stimulus_csv, locate, read_assembly, read_stimulus_set)
from neuroreg.brain.data import BrainData, NeuralStimulusSet
from neuroreg.errors import DataFormatError

__all__ = ["load_brainio", "brainio_home", "BrainIONeural", "BrainIOBehaviour"]

#: Brain-Score's time bin for MajajHong2015 and most static-image benchmarks (ms after onset).
DEFAULT_TIME_BIN = (70, 170)


@dataclass(frozen=True)
class BrainIONeural:
    """A BrainIO neural assembly read for neuroreg.

    brain: responses ``(n_stimuli, n_neuroids)`` averaged over repetitions (NaN skipped, as
    Brain-Score), stimuli in order of first presentation; ``brain.trials`` ``(n_repetitions,
    n_stimuli, n_neuroids)``; ``brain.unit_info`` every neuroid coordinate, ``roi`` = ``region``;
    ``brain.stimuli`` the images where the stimulus set was found.
    labels: ``(n_stimuli,)`` object label (``object_name``) per row of ``brain``, or None.
    stimulus_meta: one row per stimulus of ``brain``: the presentation coordinates constant per
    stimulus, then the stimulus set's columns. time_bin: ``(start, end)`` in ms.
    """

    identifier: str
    brain: BrainData
    labels: np.ndarray | None
    stimulus_meta: pd.DataFrame
    time_bin: tuple[float, float] | None
    stimulus_set_identifier: str | None
    stimulus_set: NeuralStimulusSet | None
    path: Path


@dataclass(frozen=True)
class BrainIOBehaviour:
    """A BrainIO behavioural assembly read for neuroreg.

    trials: one row per trial in file order: ``stimulus_id``, ``sample_obj``, ``dist_obj``,
    ``choice``, then the other presentation coordinates (the table :func:`neuroreg.behaviour.i2n`
    takes). stimulus_set: the images where found, else None.
    """

    identifier: str
    trials: pd.DataFrame
    stimulus_set_identifier: str | None
    stimulus_set: NeuralStimulusSet | None
    path: Path


def _stimulus_ids(raw: RawAssembly) -> np.ndarray:
    along = raw.along("presentation")
    for name in ("stimulus_id", "image_id"):        # brainio copies a legacy image_id to stimulus_id
        if name in along:
            return along[name]
    raise DataFormatError(f"{raw.path}: the presentation dimension has no stimulus_id (or image_id) coordinate; "
                          f"its coordinates are {sorted(along)}")


def _check_dims(raw: RawAssembly, required: tuple[str, ...], allowed: tuple[str, ...], kind: str) -> None:
    if not set(required) <= set(raw.dims) or not set(raw.dims) <= set(allowed):
        optional = sorted(set(allowed) - set(required))
        raise DataFormatError(f"{raw.path}: a {kind} assembly has dims {list(required)}"
                              f"{' [+ ' + ', '.join(optional) + ']' if optional else ''}; this one has "
                              f"{list(raw.dims)} (shape {raw.values.shape})")


def _time_bins(raw: RawAssembly) -> list[tuple[float, float]]:
    along = raw.along("time_bin")
    if "time_bin_start" not in along or "time_bin_end" not in along:
        raise DataFormatError(f"{raw.path}: the time_bin dimension needs time_bin_start and time_bin_end "
                              f"coordinates; it has {sorted(along)}")
    return [(float(s), float(e)) for s, e in zip(along["time_bin_start"], along["time_bin_end"])]


def _one_time_bin(raw: RawAssembly, time_bin) -> tuple[np.ndarray, tuple[float, float] | None]:
    """``(presentation, neuroid)`` values of the chosen time bin, and that bin."""
    order = [raw.dims.index("presentation"), raw.dims.index("neuroid")]
    if "time_bin" not in raw.dims:
        if time_bin is not None:
            raise ValueError(f"time_bin={time_bin!r}: {raw.path} has no time_bin dimension (one response per "
                             "presentation and neuroid); leave time_bin=None")
        return np.transpose(raw.values, order), None
    values = np.transpose(raw.values, order + [raw.dims.index("time_bin")])
    bins = _time_bins(raw)
    if time_bin is None:
        wanted = bins[0] if len(bins) == 1 else tuple(map(float, DEFAULT_TIME_BIN))
    else:
        if np.ndim(time_bin) != 1 or len(time_bin) != 2:
            raise ValueError(f"time_bin must be (start_ms, end_ms); got {time_bin!r}")
        wanted = (float(time_bin[0]), float(time_bin[1]))
    if wanted not in bins:
        raise ValueError(f"time_bin={time_bin!r}: {raw.path} has the time bins {bins} (start, end ms); pick one"
                         + ("" if time_bin is not None else f" (the default {DEFAULT_TIME_BIN} is not among them)"))
    return values[:, :, bins.index(wanted)], wanted


def _repetitions(raw: RawAssembly, order: np.ndarray, n: int) -> np.ndarray:
    """Repetition index per presentation: the ``repetition`` coordinate, else the count so far per stimulus."""
    along = raw.along("presentation")
    if "repetition" in along:
        reps = along["repetition"]
        _, rep_index = np.unique(reps, return_inverse=True)
        pairs = order.astype(np.int64) * (rep_index.max() + 1) + rep_index
        if np.unique(pairs).size != pairs.size:
            raise DataFormatError(f"{raw.path}: a stimulus is presented twice with the same repetition value; "
                                  "(stimulus_id, repetition) must identify a presentation")
        return rep_index
    counts = np.zeros(n, dtype=np.int64)
    out = np.empty(order.size, dtype=np.int64)
    for i, k in enumerate(order):
        out[i] = counts[k]
        counts[k] += 1
    return out


def _trials(values: np.ndarray, order: np.ndarray, reps: np.ndarray, n: int, path: Path) -> np.ndarray | None:
    """``(n_repetitions, n_stimuli, n_units)`` with the repetitions every stimulus has, or None below 2."""
    full = np.full((int(reps.max()) + 1, n, values.shape[1]), np.nan)
    full[reps, order] = values
    complete = np.isfinite(full).all(axis=(1, 2))
    if not complete.all():
        warnings.warn(f"{path}: {int((~complete).sum())} of {complete.size} repetitions lack a response for some "
                      f"stimulus or neuroid; trials keep the {int(complete.sum())} complete ones (the responses "
                      "average all)", stacklevel=4)
    if complete.sum() < 2:
        return None
    return full[complete]


def _per_stimulus(raw: RawAssembly, order: np.ndarray, first: np.ndarray) -> pd.DataFrame:
    """Presentation coordinates with one value per stimulus (``repetition`` and varying ones left out)."""
    columns = {}
    for name, vals in raw.along("presentation").items():
        if name in ("repetition", "presentation"):
            continue
        frame = pd.DataFrame({"k": order, "v": vals})
        if (frame.groupby("k")["v"].nunique(dropna=False) <= 1).all():
            columns[name] = vals[first]
    return pd.DataFrame(columns)


def _with_stimulus_set(meta: pd.DataFrame, stimulus_set: NeuralStimulusSet | None) -> pd.DataFrame:
    if stimulus_set is None or stimulus_set.labels is None:
        return meta
    extra = stimulus_set.labels.drop(columns=[c for c in stimulus_set.labels.columns
                                              if c in meta.columns and c != "stimulus_id"])
    return meta.merge(extra, on="stimulus_id", how="left")   # the assembly's own coordinates win, as brainio


def _unit_info(raw: RawAssembly) -> dict[str, np.ndarray]:
    info: dict[str, np.ndarray] = {}
    for name, vals in raw.along("neuroid").items():
        if vals.dtype.kind in "fc" and not np.isfinite(vals).all():
            warnings.warn(f"{raw.path}: neuroid coordinate {name!r} has NaN; left out of unit_info", stacklevel=4)
            continue
        info[name] = vals
    if "region" in info:
        info["roi"] = info["region"]
    return info


def _neural(raw: RawAssembly, identifier: str, stimulus_set: NeuralStimulusSet | None, time_bin) -> BrainIONeural:
    _check_dims(raw, ("presentation", "neuroid"), ("presentation", "neuroid", "time_bin"), "neural")
    values, chosen = _one_time_bin(raw, time_bin)
    stim = _stimulus_ids(raw)
    ids, first, order = np.unique(stim, return_index=True, return_inverse=True)
    by_appearance = np.argsort(first, kind="stable")          # rows in order of first presentation
    rank = np.empty_like(by_appearance)
    rank[by_appearance] = np.arange(by_appearance.size)
    order = rank[order]
    ids, first = ids[by_appearance], first[by_appearance]
    n = ids.size
    by_stimulus = np.argsort(order, kind="stable")
    starts = np.r_[0, np.flatnonzero(np.diff(order[by_stimulus])) + 1]
    grouped = values[by_stimulus]
    sums = np.add.reduceat(np.nan_to_num(grouped), starts, axis=0)
    counts = np.add.reduceat(np.isfinite(grouped).astype(np.int64), starts, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        responses = sums / counts                          # the mean over repetitions, NaN skipped
    if not np.isfinite(responses).all():
        i, j = np.argwhere(~np.isfinite(responses))[0]
        raise DataFormatError(f"{raw.path}: stimulus {ids[i]!r} has no finite response for neuroid {j} in any "
                              "repetition")
    trials = _trials(values, order, _repetitions(raw, order, n), n, raw.path)
    meta = _with_stimulus_set(_per_stimulus(raw, order, first), stimulus_set)
    images = None
    if stimulus_set is not None:
        pos = {k: i for i, k in enumerate(stimulus_set.stimulus_ids.tolist())}
        absent = [k for k in ids.tolist() if k not in pos]
        if absent:
            raise DataFormatError(f"{raw.path}: {len(absent)} stimulus id(s) of the assembly are not in the stimulus "
                                  f"set {stimulus_set.meta.get('csv')}, e.g. {absent[:3]}")
        images = stimulus_set.images[[pos[k] for k in ids.tolist()]]
    brain = BrainData(responses, ids, _unit_info(raw), trials=trials, stimuli=images, name=identifier)
    labels = meta["object_name"].to_numpy() if "object_name" in meta.columns else None
    return BrainIONeural(identifier=identifier, brain=brain, labels=labels, stimulus_meta=meta, time_bin=chosen,
                         stimulus_set_identifier=_attr(raw, "stimulus_set_identifier"), stimulus_set=stimulus_set,
                         path=raw.path)


def _behaviour(raw: RawAssembly, identifier: str, stimulus_set: NeuralStimulusSet | None) -> BrainIOBehaviour:
    extra = [d for d, s in zip(raw.dims, raw.values.shape) if d != "presentation" and s != 1]
    if "presentation" not in raw.dims or extra:
        raise DataFormatError(f"{raw.path}: a behavioural assembly has the dim presentation (one value per trial; "
                              f"other dims of size 1); this one has dims {list(raw.dims)} (shape {raw.values.shape})")
    along = raw.along("presentation")
    table = {"stimulus_id": _stimulus_ids(raw)}
    sample = along.get("sample_obj", along.get("truth"))
    if sample is None or "dist_obj" not in along:
        raise DataFormatError(f"{raw.path}: a behavioural assembly of binary choices has presentation coordinates "
                              f"sample_obj (or truth) and dist_obj; it has {sorted(along)}")
    table["sample_obj"], table["dist_obj"] = sample, along["dist_obj"]
    values = raw.values.reshape(-1)
    if "choice" in along:
        table["choice"] = along["choice"]
    elif values.dtype.kind in "OUS":
        table["choice"] = values                     # the values are the chosen objects
    else:
        raise DataFormatError(f"{raw.path}: no choice coordinate and the values are {values.dtype} numbers, not the "
                              "chosen objects")
    for name, vals in along.items():
        if name not in table and name not in ("image_id", "truth", "presentation"):
            table[name] = vals
    return BrainIOBehaviour(identifier=identifier, trials=pd.DataFrame(table),
                            stimulus_set_identifier=_attr(raw, "stimulus_set_identifier"),
                            stimulus_set=stimulus_set, path=raw.path)


def _attr(raw: RawAssembly, name: str) -> str | None:
    value = raw.attrs.get(name)
    return None if value is None else str(value)


def _is_path(given: str | Path) -> bool:
    """A Path, or a str ending in .nc/.csv or holding a slash; else an identifier (dots, no slashes)."""
    return isinstance(given, Path) or str(given).endswith((".nc", ".csv")) or "/" in str(given)


def _resolve(path_or_identifier, root) -> tuple[Path, list[Path]]:
    """The file to read and the cache roots to search for its stimulus set."""
    if not isinstance(path_or_identifier, (str, Path)):
        raise TypeError(f"path_or_identifier must be a path or a BrainIO identifier (str); got "
                        f"{type(path_or_identifier).__name__}")
    text = str(path_or_identifier)
    if _is_path(path_or_identifier):
        path = Path(text).expanduser()
        if path.is_dir():
            raise DataFormatError(f"path_or_identifier: {path} is a folder; pass root={str(path)!r} and an "
                                  "identifier, or the path of an assy_<id>.nc or stimulus csv file")
        if not path.is_file():
            raise FileNotFoundError(f"path_or_identifier: {path} does not exist (expected an assy_<id>.nc assembly "
                                    "or a stimulus set csv)")
        if path.suffix not in (".nc", ".csv"):
            raise DataFormatError(f"path_or_identifier: {path} is neither a .nc assembly nor a .csv stimulus set")
        roots = [Path(root).expanduser()] if root is not None else []
        return path, roots + [path.parent, path.parent.parent]
    base = Path(root).expanduser() if root is not None else brainio_home()
    return locate(text, base), [base]


def load_brainio(path_or_identifier: str | Path, root: str | Path | None = None, *, time_bin=None,
                 image_size: int | None = None, images: bool = True
                 ) -> BrainIONeural | BrainIOBehaviour | NeuralStimulusSet:
    """Read a BrainIO assembly or stimulus set from a Brain-Score cache folder.

    path_or_identifier: a file (``assy_<id>.nc``, ``stimulus_<id>.csv`` / ``image_<id>.csv``) or an
    identifier (``"dicarlo.MajajHong2015.public"``, ``"hvm-public"``) looked up one folder below
    ``root`` (default ``$BRAINIO_HOME``, else ``~/.brainio``).
    time_bin: ``(start_ms, end_ms)`` of a neural assembly; default its only bin, else
    ``(70, 170)`` as Brain-Score's static benchmarks.
    image_size: resize stimulus images to ``image_size`` x ``image_size`` (needed when sizes differ).
    images: find the assembly's stimulus set (``stimulus_set_identifier``) and load its images.

    Returns :class:`BrainIONeural` (a ``presentation`` x ``neuroid`` [x ``time_bin``] assembly),
    :class:`BrainIOBehaviour` (a ``presentation`` assembly of choices) or a
    :class:`~neuroreg.brain.data.NeuralStimulusSet` (a csv). A missing file raises
    ``FileNotFoundError`` naming the path or the identifier and the folder searched.
    """
    path, roots = _resolve(path_or_identifier, root)
    if path.suffix == ".csv":
        return read_stimulus_set(path, _identifier_of(path, path_or_identifier), roots, image_size)
    raw = read_assembly(path)
    identifier = _attr(raw, "identifier") or _identifier_of(path, path_or_identifier)
    stimulus_set = None
    set_id = _attr(raw, "stimulus_set_identifier")
    if images and set_id:
        csv = find_stimulus_csv(set_id, roots)
        if csv is None:
            warnings.warn(f"{path}: its stimulus set {set_id!r} is not under {[str(r) for r in roots]}; read without "
                          "images or stimulus metadata", stacklevel=2)
        else:
            stimulus_set = read_stimulus_set(csv, set_id, roots, image_size)
    if "neuroid" in raw.dims:
        return _neural(raw, identifier, stimulus_set, time_bin)
    if time_bin is not None:
        raise ValueError(f"time_bin={time_bin!r} applies to neural assemblies; {path} has dims {list(raw.dims)}")
    return _behaviour(raw, identifier, stimulus_set)


def _identifier_of(path: Path, given: str | Path) -> str:
    """The identifier given, else the file's stem without its ``assy_`` / ``stimulus_`` / ``image_`` prefix."""
    if not _is_path(given):
        return str(given)
    for prefix in (ASSEMBLY_PREFIX, *STIMULUS_PREFIXES):
        if path.stem.startswith(prefix):
            return path.stem[len(prefix):]
    return path.stem
