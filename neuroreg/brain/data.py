"""Containers for neural data: :class:`BrainData` (responses), :class:`RDMSet` (RDMs) and
:class:`NeuralStimulusSet` (stimulus images with their RDMs); :class:`StimulusSource` is what the
containers of images share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np
import pandas as pd
import torch

from neuroreg._utils.checks import check_finite
from neuroreg._utils.condensed import condense, n_from_condensed, square
from neuroreg._utils.ids import rows_of
from neuroreg._utils.images import images_to_tensor
from neuroreg.errors import ShapeError, StimulusMismatchError

__all__ = ["BrainData", "RDMSet", "NeuralStimulusSet", "StimulusSource", "conwell_split"]


def conwell_split(n_stimuli: int) -> tuple[np.ndarray, np.ndarray]:
    """Train/test stimulus indices split by index parity (Conwell et al. 2024).

    Returns ``(train, test)``: even indices (0, 2, ...) train, odd indices test.
    For NSD's 1,000 shared images this is the published 500/500 split.
    """
    if n_stimuli < 2:
        raise ValueError(f"n_stimuli must be >= 2 to split into halves; got {n_stimuli}")
    idx = np.arange(n_stimuli)
    return idx[0::2], idx[1::2]


def _as_id_array(name: str, ids: Iterable[Any], expected: int) -> np.ndarray:
    arr = np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids)
    if arr.ndim != 1:
        raise ShapeError(f"{name} must be 1-D (one id per stimulus); got shape {arr.shape}")
    if len(arr) != expected:
        raise StimulusMismatchError(
            f"{name} has {len(arr)} entries but there are {expected} stimuli")
    if arr.dtype.kind in "fc" and not np.isfinite(arr).all():
        i = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise ValueError(f"{name}[{i}] is {arr[i]}: a stimulus id must be a str or a number that can be "
                         "matched (not NaN or inf)")
    if arr.dtype.kind == "O":
        for i, v in enumerate(arr):
            if v is None or (isinstance(v, (float, np.floating)) and not np.isfinite(v)):
                raise ValueError(f"{name}[{i}] is {v}: every stimulus needs an id (a str or an int); pass "
                                 f"range({expected}) to use row numbers")
            if not isinstance(v, (str, bytes, int, float, np.integer, np.floating, np.str_, np.bytes_)):
                raise TypeError(f"{name}[{i}] is a {type(v).__name__} ({v!r}); stimulus ids must be str or int")
        if len({isinstance(v, (str, bytes)) for v in arr}) > 1:  # str and int ids mixed cannot be sorted: as text
            arr = np.asarray([str(v) for v in arr])
    uniq, counts = np.unique(arr, return_counts=True)
    if (counts > 1).any():
        dup = uniq[counts > 1][:5].tolist()
        raise ValueError(f"{name} must be unique; duplicated ids: {dup}")
    return arr


def _matching(n: int, values: Mapping[str, Any], criteria: Mapping[str, Any], *, elementwise: bool = False) -> np.ndarray:
    """``(n,)`` mask of the entries whose ``values[key]`` is accepted by every criterion.

    A criterion is a scalar or a list/tuple/set/array of accepted values. ``elementwise``
    compares with ``in`` (entries may be None or of mixed types) instead of ``np.isin``.
    """
    mask = np.ones(n, dtype=bool)
    for key, wanted in criteria.items():
        accepted = list(wanted) if isinstance(wanted, (list, tuple, set, np.ndarray)) else [wanted]
        if elementwise:
            mask &= np.array([v in accepted for v in values[key]], dtype=bool)
        else:
            mask &= np.isin(values[key], accepted)
    return mask


def _check_images(name: str, images, n: int) -> None:
    """Refuse images that are not 4-D with one image per stimulus (``n``)."""
    shape = tuple(images.shape) if isinstance(images, torch.Tensor) else np.shape(images)
    if len(shape) != 4 or shape[0] != n:
        raise ShapeError(f"{name} must be 4-D with one image per stimulus ({n}): uint8 (n, H, W, 3) or float "
                         f"(n, 3, H, W); got shape {shape}")


@runtime_checkable
class StimulusSource(Protocol):
    """What every container of stimuli with neural data offers, whatever the data are.

    :class:`BrainData` (responses to the stimuli) and :class:`NeuralStimulusSet` (the stimulus
    images, with the RDMs measured for them where there are some) both have a ``name``, the
    ``stimulus_ids`` in row order, ``n_stimuli`` and ``images_tensor(size=None)`` (float32
    ``(n, 3, H, W)`` in [0, 1]), so callers need no type branches to get images and ids.
    """

    name: str

    @property
    def stimulus_ids(self) -> np.ndarray: ...

    @property
    def n_stimuli(self) -> int: ...

    def images_tensor(self, size: int | None = None) -> torch.Tensor: ...


class BrainData:
    """Neural responses to a set of stimuli.

    Parameters
    ----------
    responses:
        ``(n_stimuli, n_units)`` array or tensor (voxels, neurons, electrodes).
        Stored as float64 numpy.
    stimulus_ids:
        ``n_stimuli`` unique ids (str or int), in the row order of ``responses``.
    unit_info:
        Optional per-unit metadata, a mapping name -> array whose first dimension
        is ``n_units``. Conventional keys: ``roi`` (str), ``subject``,
        ``hemisphere`` (``"lh"``/``"rh"``), ``coords`` (``(n_units, 2 or 3)``,
        cortical sheet or x/y/z), ``ncsnr`` (NSD noise-ceiling SNR).
    trials:
        Optional single-trial responses ``(n_repeats, n_stimuli, n_units)``;
        when given, ``responses`` is usually their mean. Used by noise ceilings.
    stimuli:
        Optional images for the stimuli: uint8 ``(n, H, W, 3)`` or float
        ``(n, 3, H, W)`` in [0, 1].
    name:
        Free-text name of the data set.
    """

    def __init__(self, responses, stimulus_ids, unit_info: Mapping[str, Any] | None = None,
                 *, trials=None, stimuli=None, name: str = "") -> None:
        resp = responses.detach().cpu().numpy() if isinstance(responses, torch.Tensor) else np.asarray(responses)
        if resp.ndim != 2:
            raise ShapeError(
                f"responses must be 2-D (n_stimuli x n_units); got shape {resp.shape}")
        if resp.shape[0] == 0 or resp.shape[1] == 0:
            raise ShapeError(f"responses must have at least one stimulus and one unit; got shape {resp.shape}")
        if resp.dtype.kind not in "fiu":
            raise TypeError(f"responses must be numeric; got dtype {resp.dtype}")
        resp = resp.astype(np.float64, copy=False)
        check_finite("responses", resp)
        n_stim, n_units = resp.shape
        self.responses = resp
        self.stimulus_ids = _as_id_array("stimulus_ids", stimulus_ids, n_stim)

        info: dict[str, np.ndarray] = {}
        for key, value in (unit_info or {}).items():
            arr = np.asarray(value)
            if arr.ndim == 0 or arr.shape[0] != n_units:
                raise ShapeError(
                    f"unit_info[{key!r}] must have one entry per unit ({n_units}); "
                    f"got shape {arr.shape}")
            if arr.dtype.kind in "fc":
                check_finite(f"unit_info[{key!r}]", arr)
            info[str(key)] = arr
        self.unit_info = info

        self.trials: np.ndarray | None
        if trials is not None:
            tr = trials.detach().cpu().numpy() if isinstance(trials, torch.Tensor) else np.asarray(trials)
            if tr.ndim != 3 or tr.shape[1:] != resp.shape:
                raise ShapeError(
                    f"trials must be (n_repeats, n_stimuli, n_units) = (r, {n_stim}, {n_units}); "
                    f"got shape {tr.shape}")
            tr = tr.astype(np.float64, copy=False)
            check_finite("trials", tr)
            self.trials = tr
        else:
            self.trials = None

        if stimuli is not None:
            _check_images("stimuli", stimuli, n_stim)
        self.stimuli = stimuli
        self.name = name

    # ------------------------------------------------------------------ basics
    @property
    def n_stimuli(self) -> int:
        """Number of stimuli: the rows of ``responses``."""
        return self.responses.shape[0]

    @property
    def n_units(self) -> int:
        """Number of units (voxels, neurons, electrodes): the columns of ``responses``."""
        return self.responses.shape[1]

    def __len__(self) -> int:
        return self.n_stimuli

    def __repr__(self) -> str:
        keys = ", ".join(sorted(self.unit_info)) or "-"
        return (f"BrainData(name={self.name!r}, n_stimuli={self.n_stimuli}, n_units={self.n_units}, "
                f"unit_info=[{keys}], trials={'yes' if self.trials is not None else 'no'})")

    # --------------------------------------------------------------- selection
    def select(self, **criteria) -> "BrainData":
        """Units whose ``unit_info`` matches every criterion, e.g. ``select(roi="V1", subject=1)``.

        A criterion value may be a scalar or a list of accepted values.
        Raises ``KeyError`` for unknown keys and ``ValueError`` when no unit matches.
        """
        unknown = [key for key in criteria if key not in self.unit_info]
        if unknown:
            raise KeyError(f"cannot select on {unknown[0]!r}: unit_info has {sorted(self.unit_info) or 'no keys'}")
        mask = _matching(self.n_units, {key: self.unit_info[key] for key in criteria}, criteria)
        if not mask.any():
            raise ValueError(f"no unit matches {criteria}; available: "
                             + ", ".join(f"{k}={np.unique(self.unit_info[k])[:10].tolist()}" for k in criteria))
        return self.take_units(np.flatnonzero(mask))

    def take_units(self, index) -> "BrainData":
        """A new BrainData with the units at ``index`` (int array or boolean mask)."""
        index = np.asarray(index)
        return BrainData(
            self.responses[:, index], self.stimulus_ids,
            {k: v[index] for k, v in self.unit_info.items()},
            trials=None if self.trials is None else self.trials[:, :, index],
            stimuli=self.stimuli, name=self.name)

    def take_stimuli(self, index) -> "BrainData":
        """A new BrainData with the stimuli (rows) at ``index``, in that order."""
        index = np.asarray(index)
        stimuli = None
        if self.stimuli is not None:
            stimuli = self.stimuli[torch.as_tensor(index)] if isinstance(self.stimuli, torch.Tensor) else self.stimuli[index]
        return BrainData(
            self.responses[index], self.stimulus_ids[index], self.unit_info,
            trials=None if self.trials is None else self.trials[:, index],
            stimuli=stimuli, name=self.name)

    def align_to(self, stimulus_ids: Sequence[Any] | np.ndarray) -> "BrainData":
        """Reorder stimuli to follow ``stimulus_ids``; every id must be present."""
        return self.take_stimuli(rows_of(stimulus_ids, self.stimulus_ids, what="requested stimulus ids",
                                         where=f"BrainData {self.name!r}"))

    def conwell_split(self) -> tuple["BrainData", "BrainData"]:
        """(train, test) halves by stimulus index parity; see :func:`conwell_split`."""
        train, test = conwell_split(self.n_stimuli)
        return self.take_stimuli(train), self.take_stimuli(test)

    def images_tensor(self, size: int | None = None) -> torch.Tensor:
        """Stimulus images as float32 ``(n, 3, H, W)`` in [0, 1]; ``size`` resizes (bilinear, antialiased).

        The same call as :meth:`NeuralStimulusSet.images_tensor` (see :class:`StimulusSource`).
        """
        if self.stimuli is None:
            raise ValueError(f"BrainData {self.name!r} has no stimulus images; pass stimuli=images when building it")
        return images_to_tensor(self.stimuli, size)


@dataclass
class NeuralStimulusSet:
    """Stimulus images with their ids, and the neural RDMs measured for them where there are some.

    Attributes
    ----------
    name: short name (``"kriegeskorte92"``, ``"algonauts2019_78"``, a file's stem).
    images: uint8 ``(n, H, W, 3)`` array or float ``(n, 3, H, W)`` in [0, 1] (array or tensor).
    stimulus_ids: ``(n,)`` unique ids, in image (and RDM) order; stored as a 1-D numpy array.
    rdms: mapping name -> :class:`RDMSet` over the same ``n`` stimuli (empty for images alone).
    labels: per-stimulus table (category and flags) or None.
    licence, citation: where the data come from and under which terms.
    """

    name: str
    images: Any
    stimulus_ids: Any
    rdms: dict[str, "RDMSet"] = field(default_factory=dict)
    labels: pd.DataFrame | None = None
    licence: str = ""
    citation: str = ""
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.images)
        _check_images("images", self.images, n)
        self.stimulus_ids = _as_id_array("stimulus_ids", self.stimulus_ids, n)
        for key, rdm in self.rdms.items():
            if rdm.n_stimuli != n:
                raise StimulusMismatchError(f"rdms[{key!r}] is over {rdm.n_stimuli} stimuli; there are {n} images")

    @property
    def n_stimuli(self) -> int:
        return len(self.stimulus_ids)

    def __len__(self) -> int:
        return self.n_stimuli

    def images_tensor(self, size: int | None = None) -> torch.Tensor:
        """Images as float32 ``(n, 3, H, W)`` in [0, 1]; ``size`` resizes (bilinear, antialiased) to size x size."""
        return images_to_tensor(self.images, size)

    def __repr__(self) -> str:
        rd = ", ".join(f"{k}: {v.n_rdms}" for k, v in self.rdms.items())
        return (f"NeuralStimulusSet({self.name!r}, n_stimuli={self.n_stimuli}, "
                f"image_shape={tuple(self.images.shape[1:])}, rdms={{{rd}}})")


@dataclass
class RDMSet:
    """A stack of representational dissimilarity matrices over the same stimuli.

    ``rdms`` is ``(k, n, n)`` float64 (an ``(n, n)`` input becomes ``k = 1``);
    each RDM must be square, symmetric, finite, with a zero diagonal.
    ``names``, ``region`` and ``subject`` hold one entry per RDM (a scalar is
    repeated). ``stimulus_ids`` names the ``n`` conditions in order.
    """

    rdms: np.ndarray
    names: Sequence[str] | None = None
    region: Any = None
    subject: Any = None
    stimulus_ids: Sequence[Any] | np.ndarray | None = None   # stored as a 1-D numpy array
    metric: str = "unknown"
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        r = self.rdms.detach().cpu().numpy() if isinstance(self.rdms, torch.Tensor) else np.asarray(self.rdms)
        if r.ndim == 2:
            r = r[None]
        if r.ndim != 3 or r.shape[1] != r.shape[2]:
            raise ShapeError(f"rdms must be (k, n, n) or (n, n) square matrices; got shape {r.shape}")
        if r.shape[1] < 3:
            raise ShapeError(f"an RDM needs at least 3 stimuli; got shape {r.shape}")
        r = r.astype(np.float64, copy=False)
        check_finite("rdms", r)
        k, n, _ = r.shape
        scale = max(float(np.abs(r).max()), 1.0)
        asym = np.abs(r - r.transpose(0, 2, 1)).max()
        if asym > 1e-8 * scale:
            i = int(np.argmax(np.abs(r - r.transpose(0, 2, 1)).reshape(k, -1).max(1)))
            raise ValueError(f"rdms must be symmetric; RDM {i} differs from its transpose by up to {asym:.3g}")
        diag = np.abs(r[:, np.arange(n), np.arange(n)]).max()
        if diag > 1e-8 * scale:
            raise ValueError(f"rdms must have a zero diagonal; found |diagonal| up to {diag:.3g}")
        self.rdms = r
        self.names = self._per_rdm("names", self.names, [f"rdm{i}" for i in range(k)])
        self.region = self._per_rdm("region", self.region, [None] * k)
        self.subject = self._per_rdm("subject", self.subject, [None] * k)
        if self.stimulus_ids is not None:
            self.stimulus_ids = _as_id_array("stimulus_ids", self.stimulus_ids, n)

    def _per_rdm(self, name: str, value, default: list) -> list:
        k = self.rdms.shape[0]
        if value is None:
            return default
        if isinstance(value, (str, int, float, np.integer)) or np.ndim(value) == 0:
            return [value] * k
        values = list(value)
        if len(values) != k:
            raise ShapeError(f"{name} must have one entry per RDM ({k}); got {len(values)}")
        return values

    @classmethod
    def from_condensed(cls, vectors, **kw) -> "RDMSet":
        """Build from ``(k, n*(n-1)/2)`` upper triangles in scipy ``squareform`` order."""
        v = np.atleast_2d(np.asarray(vectors, dtype=np.float64))
        if n_from_condensed(v.shape[1]) is None:
            raise ShapeError(f"condensed RDMs must have n*(n-1)/2 entries; {v.shape[1]} is not such a number")
        return cls(square(v), **kw)

    @property
    def n_rdms(self) -> int:
        return len(self.rdms)

    @property
    def n_stimuli(self) -> int:
        return self.rdms.shape[1]

    def __len__(self) -> int:
        return self.n_rdms

    def condensed(self) -> np.ndarray:
        """``(k, n*(n-1)/2)`` upper triangles, row-major (scipy ``squareform`` order)."""
        return condense(self.rdms)

    def __getitem__(self, index) -> "RDMSet":
        idx = np.atleast_1d(np.arange(self.n_rdms)[index])
        if self.names is None:
            raise ValueError("RDMSet.names is None: it holds one name per RDM from construction on, "
                             "so it was overwritten afterwards")
        return RDMSet(self.rdms[idx], [self.names[i] for i in idx], [self.region[i] for i in idx],
                      [self.subject[i] for i in idx], self.stimulus_ids, self.metric, dict(self.meta))

    def select(self, **criteria) -> "RDMSet":
        """RDMs whose ``region``/``subject``/``names`` match, e.g. ``select(region="IT")``."""
        unknown = [key for key in criteria if key not in ("region", "subject", "names")]
        if unknown:
            raise KeyError(f"cannot select RDMs on {unknown[0]!r}; use region, subject or names")
        # compared one by one (not np.isin): region and subject may hold None or mixed types
        keep = _matching(self.n_rdms, {key: getattr(self, key) for key in criteria}, criteria, elementwise=True)
        if not keep.any():
            raise ValueError(f"no RDM matches {criteria}")
        return self[np.flatnonzero(keep)]

    def mean(self) -> "RDMSet":
        """The average RDM (k = 1)."""
        return RDMSet(self.rdms.mean(0), ["mean"], self.region[0] if len(set(map(str, self.region))) == 1 else None,
                      "mean", self.stimulus_ids, self.metric, dict(self.meta))

    def __repr__(self) -> str:
        return (f"RDMSet(k={self.n_rdms}, n={self.n_stimuli}, regions={sorted(set(map(str, self.region)))}, "
                f"subjects={len(set(map(str, self.subject)))}, metric={self.metric!r})")
