"""Feature cache of a sweep: a network's activations on a stimulus set, extracted once, shared by scorers.

Features are keyed by everything that changes them (model name, keyword
arguments and weights hash, the stimulus set, layers, pooling, image size and
preprocessing, seed, and :data:`~neuroreg.features.extraction.EXTRACT_VERSION`) and stored as ``<store>/features/<key>.h5`` with
:func:`neuroreg.extract` (``out=``), which writes a temporary file and renames
it: concurrent jobs on a shared file system never see a half-written file. While
one process writes a feature file it holds ``<key>.h5.lock``; another job that
needs the same features (another scorer, another sweep on the store) waits for
it and reads the file, or extracts them itself if the writer died (same host).
A lock left by a dead process on another host must be removed by hand.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any, Mapping

import h5py

from neuroreg._utils.io import PathLock, holder_gone
from neuroreg.errors import RunLockedError
from neuroreg.features.extraction import EXTRACT_VERSION, Features, extract

__all__ = ["feature_key", "cached_extract"]


def feature_key(model_spec: Mapping[str, Any], dataset_spec: Mapping[str, Any], **settings: Any) -> str:
    """Hash of what determines a feature file (the model's label is not part of it)."""
    model = {k: v for k, v in model_spec.items() if k not in ("label", "checkpoint")}
    data = {k: v for k, v in dataset_spec.items() if k != "label"}
    text = json.dumps({"model": model, "data": data, "extract_version": EXTRACT_VERSION, **settings}, sort_keys=True,
                      default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _read(path: Path, stimulus_ids) -> Features:
    with h5py.File(path, "r") as f:
        names = [str(n) for n in f.attrs["layers"]]
        modules = {n: str(f["features"][n].attrs.get("module", n)) for n in names}
    return Features(stimulus_ids=stimulus_ids, path=path, layers=names, module_names=modules)


def cached_extract(folder: str | Path, key: str, model, stimuli, layers, *, stimulus_ids, poll_seconds: float = 1.0,
                   **extract_kwargs) -> tuple[Features, bool]:
    """(features, hit): read ``folder/key.h5`` if it exists, else extract into it.

    ``hit`` tells whether the network was run. When another live process is writing the same
    file (another sweep's job on the same model and data), this waits for it and reads its result.
    """
    path = Path(folder) / f"{key}.h5"
    lock = PathLock(path.with_name(path.name + ".lock"))
    while True:
        if path.is_file():
            return _read(path, stimulus_ids), True
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            feats = extract(model, stimuli, layers, out=path, stimulus_ids=stimulus_ids, **extract_kwargs)
        except RunLockedError:
            while lock.holder() is not None and not holder_gone(lock.holder()):
                time.sleep(poll_seconds)
            continue   # written by the other process (read it), or given up by it (extract here)
        return feats, False
