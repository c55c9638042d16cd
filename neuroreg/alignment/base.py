"""Common shell of the alignment terms: area, neural target, weight and schedule."""

from __future__ import annotations

import warnings
from typing import Callable

import torch
from torch import Tensor, nn

from neuroreg.alignment.schedule import WeightSchedule
from neuroreg.alignment.targets import NeuralTarget, TargetLike, as_target
from neuroreg.errors import ShapeError
from neuroreg.scoring.cka import cka, cka_from_grams, gram, gram_from_rdm

__all__ = ["AlignmentLoss", "target_cka"]


def target_cka(acts: Tensor, target: Tensor, *, kind: str = "responses", debiased: bool = True) -> Tensor:
    """Linear CKA between activations ``(b, ...)`` and a neural target on the same ``b`` stimuli.

    ``kind="responses"``: ``target`` is ``(b, units)``. ``kind="rdm"``: ``target``
    is a ``(b, b)`` dissimilarity matrix, entering through its centred Gram
    ``-H D H / 2`` (1 - Pearson r is, up to a constant, the squared distance of
    standardized patterns). Returns a 0-d tensor, differentiable in ``acts``.
    """
    if kind == "responses":
        return cka(acts, target, debiased=debiased)
    if kind == "rdm":
        return cka_from_grams(gram(acts), gram_from_rdm(target), debiased=debiased)
    raise ValueError(f"kind must be 'responses' or 'rdm'; got {kind!r}")


class AlignmentLoss(nn.Module):
    """Base of :class:`~neuroreg.alignment.CKALoss` and :class:`~neuroreg.alignment.RSALoss`.

    Parameters
    ----------
    area: the model area (``"V1"``, ``"V2"``, ``"V4"``, ``"IT"``) or a module name.
    target: neural responses or RDM (see :func:`~neuroreg.alignment.as_target`).
    weight: multiplier of the term in the total loss.
    schedule: ``None`` (constant), a :class:`WeightSchedule`, or any callable
        ``step -> factor``; the effective weight is ``weight * schedule(step)``.
    name: tag in logs; defaults to ``"<kind>_<area>"``.

    ``forward(acts, rows)`` takes the area's activations ``(b, ...)`` for ``b``
    neural stimuli and their target rows ``(b,)`` and returns the unweighted
    0-d loss; :meth:`alignment` returns the CKA between the activations and the
    target on those rows (the held-out metric).
    """

    kind = "align"
    min_stimuli = 3
    target_data: Tensor   # a non-persistent buffer, registered in __init__

    def __init__(self, area: str, target: TargetLike, weight: float = 1.0,
                 schedule: WeightSchedule | Callable[[int], float] | None = None, name: str | None = None) -> None:
        super().__init__()
        if not isinstance(area, str) or not area:
            raise ValueError(f"area must be an area alias or module name; got {area!r}")
        if not weight >= 0:
            raise ValueError(f"weight must be >= 0; got {weight}")
        self.area = area
        self.target = as_target(target)
        self.weight = float(weight)
        self.schedule = schedule
        self._name = name
        # Not persistent: the target belongs to the data, not to the checkpointed weights.
        self.register_buffer("target_data", self.target.data.clone(), persistent=False)

    @property
    def name(self) -> str:
        return self._name or f"{self.kind}_{self.area}"

    def weight_at(self, step: int) -> float:
        """Effective weight at optimizer step ``step``."""
        return self.weight * (1.0 if self.schedule is None else float(self.schedule(step)))

    def check_batch(self, n: int, what: str = "neural batch") -> None:
        """Raise when ``n`` stimuli are too few for this term's estimator."""
        if n < self.min_stimuli:
            raise ValueError(f"{type(self).__name__}({self.name!r}) needs at least {self.min_stimuli} neural "
                             f"stimuli per batch; the {what} has {n}")

    def target_rows(self, rows: Tensor) -> Tensor:
        """The target restricted to ``rows``: ``(b, units)`` responses or the ``(b, b)`` sub-RDM."""
        data = self.target_data
        if rows.ndim != 1:
            raise ShapeError(f"rows must be 1-D target indices; got shape {tuple(rows.shape)}")
        rows = rows.to(data.device)
        sub = data.index_select(0, rows)
        return sub if self.target.kind == "responses" else sub.index_select(1, rows)

    def alignment(self, acts: Tensor, rows: Tensor, debiased: bool = True) -> Tensor:
        """CKA between ``acts (b, ...)`` and the target on ``rows``: the held-out alignment metric."""
        x = self._activations(acts, rows)
        target = self.target_rows(rows)
        with _no_autocast(x.device):
            try:
                return target_cka(x, target, kind=self.target.kind, debiased=debiased)
            except ValueError as exc:
                if not (debiased and "no variance" in str(exc)):
                    raise
                warnings.warn(f"{self.name}: debiased CKA is undefined on these {x.shape[0]} stimuli ({exc}); "
                              "reporting the biased estimate", RuntimeWarning, stacklevel=2)
                return target_cka(x, target, kind=self.target.kind, debiased=False)

    def _activations(self, acts: Tensor, rows: Tensor) -> Tensor:
        if acts.shape[0] != rows.shape[0]:
            raise ShapeError(f"acts has {acts.shape[0]} stimuli but rows has {rows.shape[0]}")
        self.check_batch(acts.shape[0])
        # Alignment statistics are computed in float32 even under mixed precision.
        return acts.flatten(1).float()

    def extra_repr(self) -> str:
        return (f"area={self.area!r}, target={self.target.name!r} ({self.target.kind}, n={self.target.n_stimuli}), "
                f"weight={self.weight}")


def _no_autocast(device: torch.device):
    return torch.autocast(device_type=device.type, enabled=False)
