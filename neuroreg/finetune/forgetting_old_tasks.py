"""The old tasks of a forgetting report: the original task and the earlier tasks of a chain, under their heads.

Each old task is scored with the network that owns it (``before``: the network
at the end of that task) and with the fine-tuned backbone under that task's head
(:func:`~neuroreg.finetune.forgetting_passes.with_head_of`); ``backward_transfer``
is the change (Lopez-Paz & Ranzato 2017).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, Subset

from neuroreg.results.table import ScoreTable
from neuroreg.finetune.forgetting_cache import check_cached_labels
from neuroreg.finetune.forgetting_passes import embed_models, labels_of, stratified_subset, with_head_of
from neuroreg.finetune.forgetting_probes import accuracies
from neuroreg.finetune.forgetting_rows import PreviousTask, ReportSettings, stage_rows

__all__ = ["original_rows", "sequence_rows"]


def original_rows(after: nn.Module, original_network: nn.Module, data: Dataset, start: dict[str, Any],
                  stored: bool, s: ReportSettings) -> ScoreTable:
    """``original_accuracy`` before and after and the two-task ``backward_transfer`` on ``data``.

    start: the start side, whose ``"original"`` entry (accuracy, labels) is read with ``stored`` and
    written otherwise."""
    head_a = with_head_of(after, original_network)
    if stored:
        (_, (logits_a,)), y = embed_models([head_a], data, s.batch_size, s.device, s.seed)
        check_cached_labels(start["original"]["labels"], y, "original task's", s.start_cache)
        acc_b = float(start["original"]["accuracy"])
    else:
        (_, (logits_b, logits_a)), y = embed_models([original_network, head_a], data, s.batch_size, s.device,
                                                    s.seed)
        acc_b = float((logits_b.argmax(1) == y).mean())
        start["original"] = {"accuracy": acc_b, "labels": torch.as_tensor(y)}
    acc_a = float((logits_a.argmax(1) == y).mean())
    table = ScoreTable()
    common = dict(s.base, dataset="original", split="test", layer="head", n_images=len(y))
    stage_rows(table, acc_b, acc_a, metric="original_accuracy", **common)
    table.append(metric="backward_transfer", stage="after", score=acc_a - acc_b, **common)
    return table


def sequence_rows(after: nn.Module, tasks: Sequence[PreviousTask], table: ScoreTable,
                  s: ReportSettings) -> ScoreTable:
    """Accuracy on each earlier task's test split at the end of that task and now (under its head), and the
    chain's backward transfer: mean change over those tasks and the original task when ``table`` has it."""
    out = ScoreTable()
    changes: list[float] = []
    for i, task in enumerate(tasks):
        labels = labels_of(task.test_data)
        sub = Subset(task.test_data, stratified_subset(labels, s.max_eval_images, s.seed + 3 + i).tolist())
        (_, (logits_b, logits_a)), y = embed_models([task.network, with_head_of(after, task.network)], sub,
                                                    s.batch_size, s.device, s.seed)
        acc_b, bal_b = accuracies(logits_b.argmax(1), y)
        acc_a, bal_a = accuracies(logits_a.argmax(1), y)
        common = dict(s.base, dataset=task.name, split="test", layer="head", n_images=len(sub), task_index=i)
        stage_rows(out, acc_b, acc_a, metric="previous_task_accuracy", **common)
        stage_rows(out, bal_b, bal_a, metric="previous_task_balanced_accuracy", **common)
        changes.append(acc_a - acc_b)
    if not changes:
        return out
    changes += [float(r["score"]) for r in table.filter(metric="original_accuracy", stage="change")]
    out.append(metric="backward_transfer", stage="after", score=float(np.mean(changes)), dataset="sequence",
               split="test", layer="head", n_tasks=len(changes), **s.base)
    return out
