"""Representation drift of a forgetting report: CKA between the start's and the fine-tuned network's features.

One ``cka_to_start`` row per layer, on every probe image at once; 1.0 means the
layer's representation is unchanged (up to rotation and isotropic scaling). The
start's side is kept as Gram matrices, so a stored start side needs no feature maps.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import Tensor

from neuroreg.results.table import ScoreTable
from neuroreg.scoring import cka_from_grams, gram
from neuroreg.finetune.forgetting_passes import ProbeSet
from neuroreg.finetune.forgetting_rows import ReportSettings

__all__ = ["cka_rows"]


def _stacked(feats: list[dict[str, Tensor]], layer: str) -> Tensor:
    """One layer's features of every probe set, flattened and stacked: ``(n images, features)`` in float64."""
    return torch.cat([f[layer].flatten(1) for f in feats]).double()


def cka_rows(probes: list[ProbeSet], feats: Mapping[str, list[dict[str, Tensor]]], start: dict[str, Any],
             stored: bool, s: ReportSettings) -> ScoreTable:
    """``cka_to_start`` per layer (stage ``after``), debiased or not as ``s.debiased`` says.

    feats: stage -> per probe set, layer -> features ``(n, ...)``; start: the start side, whose ``"grams"``
    (layer -> ``(n, n)`` Gram matrix of the start's features) are read with ``stored`` and written otherwise."""
    out = ScoreTable()
    if not probes:
        return out
    if not stored:
        start["grams"] = {layer: gram(_stacked(feats["before"], layer)) for layer in feats["before"][0]}
    names = "+".join(p[0] for p in probes)
    n_total = sum(len(p[3]) for p in probes)
    for li, layer in enumerate(feats["after"][0]):
        score = float(cka_from_grams(start["grams"][layer], gram(_stacked(feats["after"], layer)),
                                     debiased=s.debiased))
        out.append(metric="cka_to_start", stage="after", score=score, layer=layer, layer_index=li, dataset=names,
                   split="all", n_stimuli=n_total, debiased=s.debiased, **s.base)
    return out
