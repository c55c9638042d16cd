"""Turn the ``data`` argument of the suites into (images, labels) batches."""

from __future__ import annotations

from typing import Any, Iterator

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, TensorDataset

from neuroreg.errors import ShapeError
from neuroreg.robustness.wrapper import check_images


def as_loader(data: Any, batch_size: int) -> DataLoader:
    """A DataLoader over ``data``: a DataLoader (used as is), a Dataset of
    (image, label) pairs, or a tuple ``(images, labels)`` of tensors."""
    if isinstance(data, DataLoader):
        return data
    if isinstance(data, tuple) and len(data) == 2 and all(isinstance(t, Tensor) for t in data):
        images, labels = data
        if images.shape[0] != labels.shape[0]:
            raise ShapeError(f"data images and labels must have the same length; got "
                             f"{tuple(images.shape)} and {tuple(labels.shape)}")
        data = TensorDataset(images, labels)
    if isinstance(data, Dataset):
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size}")
        return DataLoader(data, batch_size=int(batch_size), shuffle=False)
    raise TypeError("data must be a torch Dataset or DataLoader yielding (image, label) pairs, "
                    f"or a tuple (images, labels); got {type(data).__name__}")


def batches(loader: DataLoader, device: torch.device, num_classes: int | None = None,
            max_batches: int | None = None) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield checked (images, labels) batches on ``device``."""
    for i, batch in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            return
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            raise TypeError("data must yield (images, labels) pairs; got a batch of type "
                            f"{type(batch).__name__}")
        images, labels = batch[0], batch[1]
        check_images("data images", images)
        labels = torch.as_tensor(labels)
        if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
            raise ShapeError(f"data labels must be 1-D class indices, one per image; got labels of shape "
                             f"{tuple(labels.shape)} for images of shape {tuple(images.shape)}")
        if labels.dtype.is_floating_point or labels.dtype == torch.bool:
            raise ValueError(f"data labels must be integer class indices; got dtype {labels.dtype}")
        if num_classes is not None and labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
            raise ValueError(f"data labels must lie in [0, {num_classes - 1}] for a model with {num_classes} "
                             f"logits; got labels in [{int(labels.min())}, {int(labels.max())}]")
        yield images.to(device), labels.long().to(device)
