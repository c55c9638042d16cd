"""The rows of a forgetting report: what each metric measures, the report's settings, before/after/change rows.

Every part of :func:`~neuroreg.finetune.forgetting.forgetting_report` (new task,
old tasks, drift, brain change) writes its rows through :func:`stage_rows` and
reads the same :class:`ReportSettings`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from neuroreg.results.table import ScoreTable

__all__ = ["PreviousTask", "ReportSettings", "metric_kind", "head_warning", "stage_rows", "KINDS", "HEAD_METRICS",
           "NEAR_CHANCE_MARGIN", "STAGES"]

#: the stages of a row: the start network, the fine-tuned one, after - before
STAGES = ("before", "after", "change")
#: what a row of the report measures (its ``kind`` column), in report order
KINDS = ("new_task", "old_task", "representation", "brain")
#: the fine-tuned network's own head on the new task (stage ``after`` only)
HEAD_METRICS = ("finetuned_head_accuracy", "finetuned_head_balanced_accuracy")
_METRIC_KINDS = {
    "task_accuracy": "new_task", "balanced_accuracy": "new_task", HEAD_METRICS[0]: "new_task",
    HEAD_METRICS[1]: "new_task",
    "original_accuracy": "old_task", "backward_transfer": "old_task", "previous_task_accuracy": "old_task",
    "previous_task_balanced_accuracy": "old_task", "retention_accuracy": "old_task",
    "cka_to_start": "representation",
    "crsa": "brain", "versa": "brain", "hierarchy_slope": "brain", "factortopy_confidence": "brain",
    "factortopy_r2": "brain", "factortopy_depth": "brain",
}
#: a fine-tuned head whose accuracy is at most chance + this margin is flagged as near chance
NEAR_CHANCE_MARGIN = 0.1


def metric_kind(metric: str) -> str:
    """The ``kind`` of a report metric: ``new_task``, ``old_task``, ``representation`` or ``brain`` (see
    :mod:`neuroreg.finetune.forgetting`)."""
    try:
        return _METRIC_KINDS[metric]
    except KeyError:
        raise ValueError(f"unknown forgetting-report metric {metric!r}; known: {sorted(_METRIC_KINDS)}") from None


def head_warning(head: float, probe_before: float, chance: float, margin: float) -> str | None:
    """Why the fine-tuned head's score on the new task does not show a network that learned it, or None.

    head: the fine-tuned head's (balanced) accuracy; probe_before: the same measure of the probe on the
    start's features; chance: the best constant answer's score on the same images."""
    reasons = []
    if head < probe_before:
        reasons.append(f"ends below a linear probe on its start's features ({head:.3f} < {probe_before:.3f})")
    if head <= chance + margin:
        reasons.append(f"is near chance ({head:.3f}; chance {chance:.3f}, margin {margin:.2f})")
    if not reasons:
        return None
    return ("the fine-tuned head " + " and ".join(reasons) + ": fine-tuning did not converge on the new task "
            "(more steps or a higher head learning rate)")


def stage_rows(table: ScoreTable, before: float, after: float, **row: Any) -> None:
    """Append the ``before``, ``after`` and ``change`` (= after - before) rows of one measure to ``table``."""
    for stage, value in zip(STAGES, (before, after, after - before)):
        table.append(stage=stage, score=value, **row)


@dataclass(frozen=True)
class PreviousTask:
    """An earlier task of a chain of fine-tuning runs (original -> EuroSAT -> ISIC).

    name: written to the ``dataset`` column. network: the network as it was at the end of that
    task, with that task's head. test_data: its test split, ``(image, label)`` items preprocessed
    for the network, labels in the order of that head's outputs.
    """

    name: str
    network: nn.Module
    test_data: Dataset


@dataclass(frozen=True)
class ReportSettings:
    """How a forgetting report is computed (the keyword arguments of ``forgetting_report``, checked once).

    device: where every forward pass runs; batch_size: images per pass; seed: the
    random stream of every pass, subset and probe. image_size, transform: the probe
    images' preprocessing (default: the model's own, :func:`preprocessing_of`).
    max_eval_images, max_probe_train: caps on the test and probe-training images.
    model, dataset: the ``model`` and ``dataset`` columns.
    """

    device: torch.device
    batch_size: int = 32
    seed: int = 0
    image_size: int | None = None
    transform: Callable[[Tensor], Tensor] | None = None
    max_eval_images: int | None = 2000
    max_probe_train: int | None = 1000
    debiased: bool = True
    reference: str | None = "kriegeskorte92"
    factortopy: bool | Mapping[str, Any] = True
    near_chance_margin: float = NEAR_CHANCE_MARGIN
    model: str | None = None
    dataset: str = "task"
    start_cache: str | os.PathLike | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.near_chance_margin < 1.0:
            raise ValueError(f"near_chance_margin must be in [0, 1); got {self.near_chance_margin}")
        if int(self.batch_size) < 1:
            raise ValueError(f"batch_size must be a positive number of images; got {self.batch_size}")

    @property
    def base(self) -> dict[str, Any]:
        """The columns every row carries."""
        return {"model": self.model}
