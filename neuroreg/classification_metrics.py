"""Classification metrics, one home for training, fine-tuning, evaluation and the forgetting report.

Top-k accuracy and confusion matrices come from torchmetrics (installed with
Lightning); balanced accuracy is the mean recall over the classes that occur,
scikit-learn's ``balanced_accuracy_score`` (and ISIC's metric).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics.functional.classification import multiclass_accuracy, multiclass_confusion_matrix

__all__ = ["topk_accuracy", "confusion_matrix", "balanced_accuracy_from_confusion"]


def topk_accuracy(logits: Tensor, labels: Tensor, k: int) -> Tensor:
    """Fraction of rows of ``logits`` ``(n, num_classes)`` whose label ``(n,)`` is among the ``k`` largest logits.

    ``k`` is capped at the class count. Computed in float32 whatever the logits' dtype.
    """
    num_classes = int(logits.shape[1])
    return multiclass_accuracy(logits.float(), labels, num_classes=num_classes, top_k=min(int(k), num_classes),
                               average="micro", validate_args=False)


def confusion_matrix(logits: Tensor, labels: Tensor) -> Tensor:
    """``(num_classes, num_classes)`` int64 counts: rows = true class, columns = top-1 prediction of ``logits``."""
    return multiclass_confusion_matrix(logits.float(), labels, num_classes=int(logits.shape[1]),
                                       validate_args=False).long()


def balanced_accuracy_from_confusion(confusion: Tensor) -> Tensor:
    """Mean recall over the classes that occur (rows = true class, columns = predicted); ISIC's metric.

    Classes that never occur as a true label do not count (scikit-learn's
    ``balanced_accuracy_score``); NaN when no class occurs. float64.
    """
    support = confusion.sum(1)
    seen = support > 0
    recall = confusion.diagonal()[seen].double() / support[seen].double()
    return recall.mean() if seen.any() else torch.tensor(float("nan"), dtype=torch.float64)
