"""Classification metrics, one home for training, fine-tuning, evaluation and the forgetting report.

Top-k accuracy and confusion matrices come from torchmetrics (installed with
Lightning); balanced accuracy is the mean recall over the classes that occur,
scikit-learn's ``balanced_accuracy_score`` (and ISIC's metric).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torchmetrics.functional.classification import multiclass_accuracy, multiclass_confusion_matrix

__all__ = ["topk_accuracy", "confusion_matrix", "balanced_accuracy_from_confusion", "balanced_accuracy"]


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


def balanced_accuracy(pred, labels) -> float:
    """Balanced accuracy of predicted labels ``pred`` ``(n,)`` against ``labels`` ``(n,)`` (any hashable labels).

    The mean recall over the classes that occur in ``labels``, as :func:`balanced_accuracy_from_confusion`.
    """
    pred, labels = np.asarray(pred).ravel(), np.asarray(labels).ravel()
    if pred.shape != labels.shape:
        raise ValueError(f"pred and labels must have one entry per sample; got {pred.shape} and {labels.shape}")
    _, codes = np.unique(np.concatenate([labels, pred]), return_inverse=True)
    n_classes = int(codes.max()) + 1 if codes.size else 1
    true, guess = torch.from_numpy(codes[:labels.size]), torch.from_numpy(codes[labels.size:])
    confusion = torch.bincount(true * n_classes + guess, minlength=n_classes ** 2).reshape(n_classes, n_classes)
    return float(balanced_accuracy_from_confusion(confusion))
