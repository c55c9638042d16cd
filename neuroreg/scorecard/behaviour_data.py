"""The Brain-Score data the behaviour section runs on: a BrainIO cache folder, searched for its assemblies.

``brainio:DIR`` names a Brain-Score cache folder (the ``$BRAINIO_HOME`` layout,
:mod:`neuroreg.brain.brainio`). :func:`load_brainscore_cache` finds in it a neural assembly
with V4 and IT neuroids (MajajHong2015 public when there are several), a behavioural
assembly of binary choices (Rajalingham 2018 when there are several), their stimulus sets,
and the read-out's fitting images:

1. the stimulus set named by ``fitting`` (an identifier in the folder), else
2. ``objectome.public`` when the folder has it and the trials are on other images
   (Brain-Score's Rajalingham 2018 benchmark fits on it and scores the private assembly), else
3. the images of the behavioural assembly's stimulus set that no trial shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from neuroreg.brain import BrainIOBehaviour, BrainIONeural, load_brainio
from neuroreg.brain.data import NeuralStimulusSet
from neuroreg.errors import DataFormatError

__all__ = ["BRAINIO_PREFIX", "BrainScoreCache", "is_brainio_entry", "load_brainscore_cache"]

#: How ``brain_sets`` / ``--brain`` name a Brain-Score cache folder.
BRAINIO_PREFIX = "brainio:"
#: Brain-Score's fitting stimulus set for Rajalingham 2018.
BRAINSCORE_FITTING = "objectome.public"
_REGIONS = ("V4", "IT")


def is_brainio_entry(item: Any) -> bool:
    """Whether a ``brain_sets`` entry names a Brain-Score cache (``"brainio:DIR"``)."""
    return isinstance(item, str) and item.startswith(BRAINIO_PREFIX)


@dataclass(frozen=True)
class BrainScoreCache:
    """What the behaviour section reads from one Brain-Score cache folder.

    neural: V4 + IT responses (repetition-averaged, one time bin) with their images and object
    labels; behaviour: the trials and their images; fitting: the read-out's fitting images with
    ``fitting_labels`` (object label per image); fitting_note: where they came from.
    """

    root: Path
    neural: BrainIONeural
    behaviour: BrainIOBehaviour
    fitting: NeuralStimulusSet
    fitting_labels: np.ndarray
    fitting_note: str

    def describe(self) -> str:
        """One sentence on the data: identifiers, sizes, time bin, trials, fitting images."""
        brain = self.neural.brain
        regions = brain.unit_info["region"]
        counts = ", ".join(f"{r} {int((regions == r).sum())}" for r in _REGIONS)
        reps = brain.trials.shape[0] if brain.trials is not None else 1
        trials = self.behaviour.trials
        groups = (f"; {', '.join(f'{k} {v}' for k, v in trials['species'].value_counts(sort=False).items())} trials"
                  if "species" in trials.columns else "")
        bin_text = f", time bin {self.neural.time_bin[0]:g}-{self.neural.time_bin[1]:g} ms" if self.neural.time_bin \
            else ""
        return (f"Brain-Score cache {self.root}: neural {self.neural.identifier} ({brain.n_stimuli} stimuli x "
                f"neuroids {counts}{bin_text}, {reps} repetitions averaged), behaviour {self.behaviour.identifier} "
                f"({len(trials)} trials on {trials['stimulus_id'].nunique()} images{groups}); read-out fitted on "
                f"{self.fitting_note}")


def _assembly_dims(path: Path) -> tuple[str, ...]:
    """The dims of an assembly's data variable, read lazily (no values loaded)."""
    import xarray as xr

    try:
        with xr.open_dataset(path, engine="h5netcdf") as ds:
            names = list(ds.data_vars)
            return tuple(str(d) for d in ds[names[0]].dims) if len(names) == 1 else ()
    except (OSError, ValueError) as err:
        raise DataFormatError(f"{path}: cannot read it as a BrainIO netCDF assembly: {err}") from err


def _pick(paths: list[Path], kind: str, preferred: tuple[str, ...], named: str | None, root: Path) -> Path:
    if named is not None:
        stem = "assy_" + named.replace(".", "_") + ".nc"
        found = [p for p in paths if p.name == stem]
        if not found:
            raise FileNotFoundError(f"no {kind} assembly {named!r} ({stem}) under {root}; it holds "
                                    f"{sorted(p.name for p in paths) or 'none'}")
        return found[0]
    if not paths:
        raise FileNotFoundError(f"brainio:{root}: no {kind} assembly (assy_<id>.nc) in the folder or one folder "
                                "below it; neuroreg reads a Brain-Score cache, it does not download one")
    if len(paths) == 1:
        return paths[0]
    best = [p for p in paths if all(word in p.name for word in preferred)]
    if len(best) == 1:
        return best[0]
    raise DataFormatError(f"brainio:{root} holds {len(paths)} {kind} assemblies ({sorted(p.name for p in paths)}); "
                          f"name the one to use (the {kind} option)")


def _fitting(root: Path, behaviour: BrainIOBehaviour, fitting: str | None) -> tuple[NeuralStimulusSet, str]:
    tested = set(behaviour.trials["stimulus_id"].tolist())
    for name in ([fitting] if fitting else [BRAINSCORE_FITTING]):
        try:
            found = load_brainio(name, root=root)
        except FileNotFoundError:
            if fitting:
                raise
            continue
        if not isinstance(found, NeuralStimulusSet):
            raise DataFormatError(f"fitting {name!r} under {root} is an assembly, not a stimulus set")
        overlap = tested & set(found.stimulus_ids.tolist())
        if fitting or not overlap:
            note = f"stimulus set {name} ({found.n_stimuli} images" + (
                f"; {len(overlap)} of them also in the trials)" if overlap else ")")
            return found, note
    stim = behaviour.stimulus_set
    if stim is None:
        raise FileNotFoundError(f"brainio:{root}: the stimulus set {behaviour.stimulus_set_identifier!r} of "
                                f"{behaviour.identifier} is not in the folder, so there are no images to show the model")
    keep = np.array([k not in tested for k in stim.stimulus_ids.tolist()])
    if keep.sum() == 0:
        raise ValueError(f"brainio:{root}: every image of {stim.name} is in the trials of {behaviour.identifier}, so "
                         "none is left to fit the read-out on; name a fitting stimulus set (fitting_stimuli, e.g. "
                         f"{BRAINSCORE_FITTING!r} as Brain-Score uses)")
    labels = stim.labels.iloc[np.flatnonzero(keep)].reset_index(drop=True) if stim.labels is not None else None
    part = NeuralStimulusSet(name=f"{stim.name} (fitting split)", images=stim.images[keep],
                             stimulus_ids=stim.stimulus_ids[keep], labels=labels, meta=dict(stim.meta))
    return part, (f"the {int(keep.sum())} images of {stim.name} that no trial shows (the fitting split; the "
                  f"{len(tested)} tested images are scored)")


def _object_labels(stim: NeuralStimulusSet, where: str) -> np.ndarray:
    if stim.labels is None or "object_name" not in stim.labels.columns:
        columns = [] if stim.labels is None else list(stim.labels.columns)
        raise DataFormatError(f"{where}: the read-out's fitting images need an object_name column; the stimulus set "
                              f"has {columns}")
    return stim.labels["object_name"].to_numpy()


def load_brainscore_cache(root: str | Path, *, neural: str | None = None, behaviour: str | None = None,
                          fitting: str | None = None, time_bin=None) -> BrainScoreCache:
    """Find and read the neural and behavioural assemblies, their images and the fitting set in ``root``.

    root: a Brain-Score cache folder (a ``"brainio:"`` prefix is dropped). neural / behaviour:
    identifiers to pick when the folder holds several assemblies of a kind. fitting: the
    identifier of the read-out's fitting stimulus set (module docstring for the default).
    time_bin: the neural time bin ``(start_ms, end_ms)`` (default 70-170 ms, as Brain-Score).
    """
    text = str(root)
    folder = Path(text[len(BRAINIO_PREFIX):] if text.startswith(BRAINIO_PREFIX) else text).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"brainio:{folder}: the Brain-Score cache folder does not exist")
    files = sorted({*folder.glob("assy_*.nc"), *folder.glob("*/assy_*.nc")})
    dims = {p: _assembly_dims(p) for p in files}
    neural_path = _pick([p for p in files if "neuroid" in dims[p]], "neural", ("MajajHong2015", "public"), neural,
                        folder)
    behaviour_path = _pick([p for p in files if dims[p] and "neuroid" not in dims[p]], "behaviour",
                           ("Rajalingham2018",), behaviour, folder)
    neural_data = load_brainio(neural_path, root=folder, time_bin=time_bin)
    behaviour_data = load_brainio(behaviour_path, root=folder)
    assert isinstance(neural_data, BrainIONeural) and isinstance(behaviour_data, BrainIOBehaviour)
    regions = set(neural_data.brain.unit_info.get("region", np.array([])).tolist())
    if not set(_REGIONS) <= regions:
        raise DataFormatError(f"{neural_path}: Brain-Score's composite needs V4 and IT neuroids (coordinate region); "
                              f"this assembly has regions {sorted(map(str, regions))}")
    if neural_data.brain.stimuli is None or neural_data.labels is None:
        raise FileNotFoundError(f"{neural_path}: its stimulus set {neural_data.stimulus_set_identifier!r} (images "
                                "and object_name) is not in the folder")
    fit, note = _fitting(folder, behaviour_data, fitting)
    return BrainScoreCache(root=folder, neural=neural_data, behaviour=behaviour_data, fitting=fit,
                           fitting_labels=_object_labels(fit, f"fitting set {fit.name}"), fitting_note=note)
