"""Turning the scorers' ``features`` and ``brain`` arguments into aligned arrays (private)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch

from neuroreg._ids import rows_of
from neuroreg.brain.data import BrainData, RDMSet
from neuroreg.errors import ShapeError, StimulusMismatchError


def layer_names(features) -> list[str]:
    if not isinstance(features, Mapping):
        raise TypeError(f"features must be a Features or a mapping layer -> (n_stimuli, ...) array; "
                        f"got {type(features).__name__}")
    names = list(features)
    if not names:
        raise ValueError("features holds no layers")
    return names


def feature_ids(features) -> np.ndarray | None:
    ids = getattr(features, "stimulus_ids", None)
    return None if ids is None else np.asarray(ids)


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
    from neuroreg.scoring.rdm import rdm

    sets = _rdm_sets(brain)
    out: list[BrainRDM] = []
    if sets:
        for key, rs in sets:
            idx = _order(rs.stimulus_ids, feature_stim_ids, f"RDMSet {key or ''}".strip())
            mats = rs.rdms if idx is None else rs.rdms[:, idx][:, :, idx]
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
    seen = {}
    for i, key in enumerate(zip(roi.tolist(), subj.tolist())):
        seen.setdefault(key, []).append(i)
    for (r, s), units in seen.items():
        yield r, s, np.asarray(units)


def aligned_brain(brain: BrainData, feature_stim_ids) -> BrainData:
    if not isinstance(brain, BrainData):
        raise TypeError(f"brain must be a BrainData (n_stimuli x n_units responses); got {type(brain).__name__}")
    idx = _order(brain.stimulus_ids, feature_stim_ids, "brain")
    return brain if idx is None else brain.take_stimuli(idx)
