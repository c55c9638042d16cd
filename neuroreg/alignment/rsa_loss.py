"""Similarity-matrix regularizer (Li et al. 2019, "Learning from brains how to regularize machines").

L_sim = mean over stimulus pairs i < j of (arctanh S^model_ij - arctanh S^neural_ij)^2,

where S is the stimulus-by-stimulus similarity of the representation: the
cosine similarity of responses centred over the stimuli (Li et al.'s choice),
or Pearson r between stimulus patterns (``similarity="correlation"``, the
1 - RDM of the bundled correlation-distance RDMs). The matrices come from
:func:`neuroreg.scoring.rdm` (S = 1 - RDM), the same code the scores use.
The Fisher z (arctanh) spreads similarities near +-1 apart before comparing.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor

from neuroreg.alignment.base import AlignmentLoss, _no_autocast
from neuroreg.alignment.schedule import WeightSchedule
from neuroreg.alignment.targets import TargetLike
from neuroreg.errors import ShapeError
from neuroreg.scoring.rdm import rdm

__all__ = ["similarity_matrix", "rsa_loss", "RSALoss", "SIMILARITIES"]

SIMILARITIES = ("centered_cosine", "correlation")
# arctanh(+-1) is infinite; the diagonal is excluded but near-duplicate stimuli can reach 1 numerically.
_Z_CAP = 1.0 - 1e-4


def similarity_matrix(x: Tensor, similarity: str = "centered_cosine") -> Tensor:
    """Stimulus similarity ``(n, n)`` of ``x (n, ...)``: 1 - :func:`~neuroreg.scoring.rdm`.

    ``"centered_cosine"``: cosine after subtracting each unit's mean over the n
    stimuli (Li et al. 2019). ``"correlation"``: Pearson r between patterns.
    """
    if similarity not in SIMILARITIES:
        raise ValueError(f"similarity must be one of {SIMILARITIES}; got {similarity!r}")
    x = x.flatten(1)
    if similarity == "centered_cosine":
        return 1.0 - rdm(x - x.mean(0, keepdim=True), "cosine")
    return 1.0 - rdm(x, "correlation")


def rsa_loss(model_similarity: Tensor, neural_similarity: Tensor, *, fisher_z: bool = True) -> Tensor:
    """Mean squared difference of two ``(n, n)`` similarity matrices over the pairs ``i < j``.

    With ``fisher_z`` both are mapped through arctanh first (values clamped to
    +-(1 - 1e-4)). Returns a 0-d tensor, differentiable in both inputs.
    """
    if model_similarity.shape != neural_similarity.shape or model_similarity.ndim != 2 \
            or model_similarity.shape[0] != model_similarity.shape[1]:
        raise ShapeError(f"similarity matrices must be the same (n, n) shape; got {tuple(model_similarity.shape)} "
                         f"and {tuple(neural_similarity.shape)}")
    n = model_similarity.shape[0]
    if n < 3:
        raise ValueError(f"the similarity regularizer needs at least 3 stimuli; got n = {n}")
    iu = torch.triu_indices(n, n, 1, device=model_similarity.device)
    a = model_similarity[iu[0], iu[1]]
    b = neural_similarity.to(a)[iu[0], iu[1]]
    if fisher_z:
        a = torch.atanh(a.clamp(-_Z_CAP, _Z_CAP))
        b = torch.atanh(b.clamp(-_Z_CAP, _Z_CAP))
    return (a - b).square().mean()


class RSALoss(AlignmentLoss):
    """Similarity regularizer term: ``weight * L_sim(area activations, target)``.

    Parameters (besides :class:`AlignmentLoss`'s)
    ----------
    similarity: ``"centered_cosine"`` (Li et al. 2019) or ``"correlation"``. A
        response target is converted with the same similarity on the batch's
        stimuli; an RDM target is used as ``1 - RDM`` (so it should be a
        correlation- or cosine-distance RDM, like the bundled ones).
    fisher_z: compare arctanh-transformed similarities.
    neural_units: optional indices of the target's units to use (response targets),
        e.g. the reliable neurons only.
    model_units: optional number of model units to use, a fixed random subset
        drawn with ``seed`` (the same subset on every step).
    """

    kind = "rsa"
    min_stimuli = 3

    def __init__(self, area: str, target: TargetLike, similarity: str = "centered_cosine", fisher_z: bool = True,
                 neural_units: Sequence[int] | None = None, model_units: int | None = None, seed: int = 0,
                 weight: float = 1.0, schedule: WeightSchedule | Callable[[int], float] | None = None,
                 name: str | None = None) -> None:
        if similarity not in SIMILARITIES:
            raise ValueError(f"similarity must be one of {SIMILARITIES}; got {similarity!r}")
        if model_units is not None and model_units < 2:
            raise ValueError(f"model_units must be >= 2 or None; got {model_units}")
        super().__init__(area, target, weight, schedule, name)
        if neural_units is not None:
            if self.target.kind != "responses":
                raise ValueError("neural_units selects target units, so the target must be responses, not an RDM")
            idx = torch.as_tensor(list(neural_units), dtype=torch.long)
            n_units = self.target.data.shape[1]
            if idx.numel() < 1 or int(idx.min()) < 0 or int(idx.max()) >= n_units:
                raise ValueError(f"neural_units must index the target's {n_units} units; got {idx.tolist()[:10]}")
            self.target_data = self.target_data[:, idx]
        self.similarity = similarity
        self.fisher_z = bool(fisher_z)
        self.model_units = model_units
        self.seed = seed

    def _unit_subset(self, x: Tensor) -> Tensor:
        if self.model_units is None:
            return x
        d = x.shape[1]
        if self.model_units > d:
            raise ShapeError(f"model_units={self.model_units} but area {self.area!r} has only {d} units")
        g = torch.Generator().manual_seed(self.seed)
        return x[:, torch.randperm(d, generator=g)[:self.model_units].to(x.device)]

    def neural_similarity(self, rows: Tensor) -> Tensor:
        """Target similarity ``(b, b)`` on ``rows``."""
        sub = self.target_rows(rows)
        if self.target.kind == "rdm":
            return 1.0 - sub
        return similarity_matrix(sub, self.similarity)

    def forward(self, acts: Tensor, rows: Tensor) -> Tensor:
        x = self._unit_subset(self._activations(acts, rows))
        with _no_autocast(x.device):
            return rsa_loss(similarity_matrix(x, self.similarity), self.neural_similarity(rows),
                            fisher_z=self.fisher_z)

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, similarity={self.similarity!r}, fisher_z={self.fisher_z}, "
                f"model_units={self.model_units}")
