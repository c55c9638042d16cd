"""Neural targets for alignment losses: responses or an RDM over a fixed, ordered set of stimuli.

A target is built once from a :class:`~neuroreg.brain.BrainData` (``n_stimuli x
n_units`` responses), an :class:`~neuroreg.brain.RDMSet` (several RDMs are
averaged), a tensor/array, or a string naming data on disk or in the package:

- ``"kriegeskorte92:monkey_IT"``, ``"kriegeskorte92:human_IT"``,
  ``"algonauts2019_78:IT"``, ``"algonauts2019_78:EVC"`` (bundled RDMs; a
  multi-subject set is averaged over subjects);
- ``"path/to/set.npz"`` with ``responses`` (``n x units``) or ``rdm``
  (``n x n``, or ``k x n x n`` averaged) and optional ``stimulus_ids``
  (and ``images``, read by the neural-stimulus data module).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from neuroreg._utils.checks import check_finite
from neuroreg._utils.ids import rows_of
from neuroreg._utils.io import reading
from neuroreg.brain.bundled import load_bundled
from neuroreg.brain.data import BrainData, RDMSet
from neuroreg.errors import DataFormatError, ShapeError, StimulusMismatchError, UnknownNameError

__all__ = ["NeuralTarget", "TargetLike", "as_target", "BUNDLED_TARGETS"]

#: Bundled neural RDMs that a target string may name, ``"<set>:<rdm>"``.
BUNDLED_TARGETS = ("kriegeskorte92:monkey_IT", "kriegeskorte92:human_IT", "kriegeskorte92:human_IT_sessions",
                   "algonauts2019_78:IT", "algonauts2019_78:EVC")

TargetLike = Union["NeuralTarget", BrainData, RDMSet, Tensor, np.ndarray, str]


@dataclass(frozen=True)
class NeuralTarget:
    """What an area is aligned to.

    kind: ``"responses"`` (``data`` is ``(n_stimuli, n_units)``) or ``"rdm"``
        (``data`` is a symmetric ``(n_stimuli, n_stimuli)`` dissimilarity matrix).
    data: float32 CPU tensor.
    stimulus_ids: ``(n_stimuli,)`` ids in row order, or None (rows follow the
        neural stimulus set's order).
    name: where the target came from (used in log tags and errors).
    """

    kind: str
    data: Tensor
    stimulus_ids: np.ndarray | None = None
    name: str = ""

    @property
    def n_stimuli(self) -> int:
        return int(self.data.shape[0])

    def rows_for(self, stimulus_ids: Sequence[Any]) -> Tensor:
        """Target row of each of ``stimulus_ids`` (``(len(ids),)`` long tensor).

        Raises StimulusMismatchError when an id has no row. A target without ids
        is matched by position and must have exactly ``len(stimulus_ids)`` rows.
        """
        ids = list(np.asarray(stimulus_ids).tolist())
        if self.stimulus_ids is None:
            if len(ids) != self.n_stimuli:
                raise StimulusMismatchError(
                    f"target {self.name!r} has no stimulus ids and {self.n_stimuli} rows, so it is matched by "
                    f"position; the neural stimulus set has {len(ids)} stimuli")
            return torch.arange(len(ids))
        return torch.from_numpy(rows_of(ids, self.stimulus_ids, what="neural stimuli",
                                        where=f"target {self.name!r}"))


def _from_rdmset(rdms: RDMSet, name: str) -> NeuralTarget:
    mean = rdms.rdms.mean(0)
    ids = None if rdms.stimulus_ids is None else np.asarray(rdms.stimulus_ids)   # already an array: not copied
    return NeuralTarget("rdm", torch.from_numpy(mean).float(), ids, name)


def _from_npz(path: Path) -> NeuralTarget:
    with reading(path, "the neural target"), np.load(path, allow_pickle=False) as npz:
        keys = set(npz.keys())
        ids = np.asarray(npz["stimulus_ids"]) if "stimulus_ids" in keys else None
        if "responses" in keys:
            data = BrainData(npz["responses"], ids if ids is not None else np.arange(len(npz["responses"])))
            return NeuralTarget("responses", torch.from_numpy(data.responses).float(),
                                ids if ids is None else data.stimulus_ids, str(path))
        for key in ("rdm", "rdms"):
            if key in keys:
                rdms = RDMSet(np.asarray(npz[key]), stimulus_ids=ids)
                return _from_rdmset(rdms, str(path))
    raise DataFormatError(f"{path} must hold 'responses' (n x units) or 'rdm' (n x n); found keys {sorted(keys)}")


def _from_string(spec: str) -> NeuralTarget:
    if spec.endswith(".npz"):
        path = Path(spec).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"target file {spec!r} does not exist")
        return _from_npz(path)
    set_name, _, rdm_name = spec.partition(":")
    if set_name in ("kriegeskorte92", "algonauts2019_78") and rdm_name:
        data = load_bundled(set_name) if set_name == "kriegeskorte92" else load_bundled(set_name, image_size=64)
        if rdm_name not in data.rdms:
            raise UnknownNameError(f"target {spec!r}: the {set_name} set has RDMs {sorted(data.rdms)}, "
                                   f"not {rdm_name!r}")
        return _from_rdmset(data.rdms[rdm_name], spec)
    raise UnknownNameError(f"target {spec!r} is neither a .npz file nor a bundled RDM; bundled: {BUNDLED_TARGETS}")


def as_target(target: TargetLike, *, kind: str | None = None) -> NeuralTarget:
    """Convert ``target`` to a :class:`NeuralTarget` (see the module docstring for accepted forms).

    A plain tensor/array is ``kind="responses"`` (``n x units``) unless ``kind="rdm"``.
    """
    if isinstance(target, NeuralTarget):
        return target
    if isinstance(target, str):
        return _from_string(target)
    if isinstance(target, BrainData):
        return NeuralTarget("responses", torch.from_numpy(target.responses).float(), target.stimulus_ids,
                            target.name or "BrainData")
    if isinstance(target, RDMSet):
        return _from_rdmset(target, str(target.region[0]) if target.region[0] is not None else "RDMSet")
    if isinstance(target, (Tensor, np.ndarray)):
        arr = target.detach().cpu().numpy() if isinstance(target, Tensor) else np.asarray(target)
        kind = kind or "responses"
        if kind == "rdm":
            return _from_rdmset(RDMSet(arr), "rdm")
        if kind != "responses":
            raise ValueError(f"kind must be 'responses' or 'rdm'; got {kind!r}")
        if arr.ndim != 2:
            raise ShapeError(f"a response target must be (n_stimuli, n_units); got shape {arr.shape}")
        check_finite("target", arr)
        return NeuralTarget("responses", torch.as_tensor(arr, dtype=torch.float32), None, "responses")
    raise TypeError(f"target must be a BrainData, RDMSet, tensor, array or string; got {type(target).__name__}")
