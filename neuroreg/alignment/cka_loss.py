"""CKA alignment of a model area to neural data (Dapello et al. 2023).

L_align = log(1 - CKA) (``mode="log1m"``) or 1 - CKA (``mode="1m"``), on the
area's activations for the neural stimuli of the batch. CKA itself comes from
:mod:`neuroreg.scoring.cka`: the training loss and the scoring metric share one
implementation. An RDM target enters through its centred Gram ``-H D H / 2``.
"""

from __future__ import annotations

import warnings
from typing import Callable

import torch
from torch import Tensor

from neuroreg.alignment.base import AlignmentLoss, _no_autocast, target_cka
from neuroreg.alignment.schedule import WeightSchedule
from neuroreg.alignment.targets import TargetLike

__all__ = ["target_cka", "cka_loss", "CKALoss", "CKA_MODES"]

CKA_MODES = ("log1m", "1m")
# log(1 - CKA) diverges at CKA = 1; the debiased estimate can even exceed 1 slightly.
_CKA_CAP = 1.0 - 1e-6


def cka_loss(acts: Tensor, target: Tensor, *, kind: str = "responses", debiased: bool = True,
             mode: str = "log1m") -> Tensor:
    """``log(1 - CKA)`` or ``1 - CKA`` between ``acts (b, ...)`` and ``target`` (see :func:`target_cka`)."""
    if mode not in CKA_MODES:
        raise ValueError(f"mode must be one of {CKA_MODES}; got {mode!r}")
    value = target_cka(acts, target, kind=kind, debiased=debiased)
    if mode == "1m":
        return 1.0 - value
    return torch.log1p(-value.clamp(max=_CKA_CAP))


class CKALoss(AlignmentLoss):
    """CKA alignment term: ``weight * log(1 - CKA(area activations, target))``.

    >>> it = nr.brain.load_kriegeskorte92().rdms["monkey_IT"]
    >>> term = CKALoss("IT", it, weight=1.0)           # or target="kriegeskorte92:monkey_IT"
    >>> loss = term(acts_it, rows)                      # acts (b, ...) for neural rows (b,)

    ``debiased=True`` (default) uses the unbiased HSIC estimator: the biased
    one is inflated at the small neural batches used in training (needs b >= 4).
    """

    kind = "cka"

    def __init__(self, area: str, target: TargetLike, debiased: bool = True, mode: str = "log1m",
                 weight: float = 1.0, schedule: WeightSchedule | Callable[[int], float] | None = None,
                 name: str | None = None) -> None:
        if mode not in CKA_MODES:
            raise ValueError(f"mode must be one of {CKA_MODES}; got {mode!r}")
        super().__init__(area, target, weight, schedule, name)
        self.debiased = bool(debiased)
        self.mode = mode
        self.min_stimuli = 4 if self.debiased else 2

    def forward(self, acts: Tensor, rows: Tensor) -> Tensor:
        x = self._activations(acts, rows)
        target = self.target_rows(rows)
        with _no_autocast(x.device):
            try:
                return cka_loss(x, target, kind=self.target.kind, debiased=self.debiased, mode=self.mode)
            except ValueError as exc:
                # The unbiased self-HSIC of a small batch can reach <= 0 (e.g. nearly orthogonal, sparse
                # activations): debiased CKA is then undefined, and pushing it up would reward exactly that
                # degeneracy. Fall back to the biased estimator (bounded by 1) for this batch; a truly
                # constant representation still raises there.
                if not (self.debiased and "no variance" in str(exc)):
                    raise
                warnings.warn(f"{self.name}: debiased CKA is undefined on this neural batch of {x.shape[0]} "
                              f"({exc}); using the biased estimator for this batch", RuntimeWarning, stacklevel=2)
                return cka_loss(x, target, kind=self.target.kind, debiased=False, mode=self.mode)

    def alignment(self, acts: Tensor, rows: Tensor, debiased: bool | None = None) -> Tensor:
        """CKA between ``acts`` and the target on ``rows`` (the loss's estimator unless ``debiased`` is given)."""
        return super().alignment(acts, rows, self.debiased if debiased is None else debiased)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, debiased={self.debiased}, mode={self.mode!r}"
