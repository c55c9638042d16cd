"""The start network's side of a forgetting report, kept on disk and re-used by later runs from the same start.

A sweep over strategies, seeds or alignment weights fine-tunes one start network
many times. Half of each :func:`~neuroreg.finetune.forgetting.forgetting_report`
is about that start alone: its features on the new task's training and test
images (the probe before fine-tuning), its logits on the original task, and its
features, cRSA and retention scores on the probe images. With
``start_cache=FOLDER`` the first report stores those results (a few small
arrays and scores, not the feature maps: the drift uses the start's Gram
matrices) as ``FOLDER/<key>.pt``; every later report with the same key reads
them instead of running the start network again, and gives the same numbers.

The key hashes everything the start side depends on: the start network's class
and every parameter and buffer, the task data (image files with their sizes and
modification times, or a generated set's parameters; the rows, labels and
transform of each split), the probe sets, layers, preprocessing, caps, seed,
batch size, device type, the neuroreg and torch versions and
:data:`~neuroreg.features.extraction.EXTRACT_VERSION`. Data whose
identity cannot be established (a plain dataset without files or a
``fingerprint()`` method) are not cached: the report runs in full. Files are
written atomically and read with ``weights_only=True``; an unreadable or
foreign file is ignored with a warning and rewritten.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, Subset

from neuroreg import __version__
from neuroreg._utils.io import atomic_path
from neuroreg.errors import DataFormatError
from neuroreg.features.extraction import EXTRACT_VERSION

__all__ = ["model_fingerprint", "dataset_fingerprint", "stable_repr", "start_side_key", "load_start_side",
           "save_start_side", "check_cached_labels"]

log = logging.getLogger(__name__)

#: bumped whenever the payload's layout or meaning changes
FORMAT = 1


def _digest(*parts: Any) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p if isinstance(p, bytes) else json.dumps(p, sort_keys=True, default=str).encode())
        h.update(b"\x00")
    return h.hexdigest()


def model_fingerprint(model: nn.Module) -> str:
    """Hash of the network's class and of every parameter and buffer (names, dtypes, shapes and bytes)."""
    h = hashlib.sha256(f"{type(model).__module__}.{type(model).__qualname__}".encode())
    for name, t in model.state_dict().items():
        t = t.detach().to("cpu").contiguous().reshape(-1)
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def stable_repr(obj: Any) -> bool:
    """Whether ``repr(obj)`` names what ``obj`` does in a way that survives a restart (no memory addresses)."""
    text = repr(obj)
    return "<lambda>" not in text and " at 0x" not in text and "object at" not in text


def _files_fingerprint(paths: list[str]) -> str:
    stats = []
    for p in paths:
        st = os.stat(p)
        stats.append((str(p), st.st_size, st.st_mtime_ns))
    return _digest("files", stats)


def _loader_fingerprint(load: Any) -> str | None:
    own = getattr(load, "fingerprint", None)
    if callable(own):
        return own()
    paths = getattr(load, "paths", None)
    if paths is not None:
        return _files_fingerprint([str(p) for p in paths])
    return None


def dataset_fingerprint(dataset: Dataset) -> str | None:
    """Hash identifying the images and labels ``dataset`` serves, or None where that cannot be established.

    Understood: :class:`~torch.utils.data.Subset`, the fine-tuning data modules' splits
    (``TableImages`` over image files or a generated set), torchvision ``ImageFolder``
    / ``DatasetFolder`` and any dataset with a ``fingerprint()`` method.
    """
    if isinstance(dataset, Subset):
        inner = dataset_fingerprint(dataset.dataset)
        return None if inner is None else _digest("subset", inner, [int(i) for i in dataset.indices])
    own = getattr(dataset, "fingerprint", None)
    if callable(own):
        return own()
    transform = repr(getattr(dataset, "transform", None))
    if not stable_repr(getattr(dataset, "transform", None)):
        return None
    if hasattr(dataset, "rows") and hasattr(dataset, "labels") and hasattr(dataset, "load"):   # TableImages
        load = _loader_fingerprint(dataset.load)
        if load is None:
            return None
        return _digest("table", load, np.asarray(dataset.rows).tobytes(), np.asarray(dataset.labels).tobytes(),
                       transform)
    samples = getattr(dataset, "samples", None)                                                   # ImageFolder
    if isinstance(samples, list) and samples and isinstance(samples[0], tuple):
        return _digest("folder", _files_fingerprint([s[0] for s in samples]), [int(s[1]) for s in samples],
                       transform, repr(getattr(dataset, "target_transform", None)))
    return None


def start_side_key(before: nn.Module, **settings: Any) -> str:
    """Key of the start side: the network's fingerprint and every setting that changes its results."""
    return _digest(FORMAT, model_fingerprint(before), __version__, EXTRACT_VERSION, torch.__version__, settings)[:32]


def _path(folder: str | os.PathLike, key: str) -> Path:
    return Path(folder) / f"start_{key}.pt"


def load_start_side(folder: str | os.PathLike, key: str) -> dict | None:
    """The stored start side of ``key``, or None (absent, unreadable or not this key: a warning names the file)."""
    path = _path(folder, key)
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is recomputed, never trusted
        log.warning("forgetting start cache %s is unreadable (%s: %s); recomputing it", path, type(exc).__name__, exc)
        return None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT or payload.get("key") != key:
        log.warning("forgetting start cache %s is not a start side of this key; recomputing it", path)
        return None
    return payload


def save_start_side(folder: str | os.PathLike, key: str, payload: dict) -> Path:
    """Write ``payload`` (tensors, numbers, strings, lists and dicts of them) as the start side of ``key``."""
    path = _path(folder, key)
    with atomic_path(path) as tmp:
        torch.save({**payload, "format": FORMAT, "key": key}, tmp)
    return path


def check_cached_labels(cached: torch.Tensor, labels: np.ndarray, what: str, folder: str | os.PathLike | None) -> None:
    """Refuse a stored start side whose labels (n,) differ from the ``labels`` (n,) of the data read now."""
    if not np.array_equal(cached.numpy(), labels):
        raise DataFormatError(f"the forgetting start cache in {folder} has other labels for the {what} images than "
                              f"the data now read ({len(cached)} vs {len(labels)} images); delete the folder's "
                              f"start_*.pt files")
