"""What the scorecard callback feeds the scorecard: validation images in [0, 1], brain stimuli at the model's
input size, and the classifier on [0, 1] images as the attack suite sees it."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, Sequence

import torch
from torch import nn
from torch.utils.data import Dataset

from neuroreg.brain import BrainData, NeuralStimulusSet
from neuroreg.data.folders import _dataset_len
from neuroreg.data.preprocessing import Preprocessing

__all__ = ["ZeroOneImages", "Normalized", "at_input_size", "validation_images"]


class ZeroOneImages(Dataset):
    """A validation set seen as ``(image (3, H, W) in [0, 1], label)``: undoes the data module's mean/std.

    mean_std: ``(mean, std)`` per channel the data module normalised with, or None (images already in [0, 1]).
    indices: the subset of ``base`` to show, in order (None: all of it).
    """

    def __init__(self, base: Dataset, mean_std, indices: Sequence[int] | None = None) -> None:
        self.base, self.indices = base, None if indices is None else list(indices)
        if mean_std is None:
            self.mean = self.std = None
        else:
            self.mean = torch.tensor(mean_std[0], dtype=torch.float32).view(-1, 1, 1)
            self.std = torch.tensor(mean_std[1], dtype=torch.float32).view(-1, 1, 1)

    def __len__(self) -> int:
        return _dataset_len(self.base, "base") if self.indices is None else len(self.indices)

    def __getitem__(self, i: int):
        x, y = self.base[i if self.indices is None else self.indices[i]]
        x = torch.as_tensor(x, dtype=torch.float32)
        if self.mean is not None and self.std is not None:     # both set, or neither
            x = x * self.std + self.mean
        return x.clamp(0.0, 1.0), int(y)


def validation_images(datamodule: Any, max_images: int | None, seed: int) -> ZeroOneImages | None:
    """The data module's validation set as :class:`ZeroOneImages`, ``max_images`` of them picked with ``seed``
    (sorted, so the pick does not depend on the order of draws); None when the module has no validation set."""
    if datamodule is None:
        return None
    base = getattr(datamodule, "_val", None) or getattr(datamodule, "val_dataset", None)
    if base is None:
        return None
    mean_std = getattr(datamodule, "mean_std", None)  # (mean, std) the module normalised with, or None
    if callable(mean_std):
        mean_std = mean_std()
    indices = None
    if max_images is not None and max_images < len(base):
        gen = torch.Generator().manual_seed(seed)
        indices = sorted(torch.randperm(len(base), generator=gen)[:max_images].tolist())
    return ZeroOneImages(base, mean_std, indices)


class Normalized(nn.Module):
    """``model(prep.normalize(x))``: the classifier on [0, 1] images, as the attack suite sees it."""

    def __init__(self, model: nn.Module, prep: Preprocessing) -> None:
        super().__init__()
        self.model, self.prep = model, prep

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.prep.normalize(x))


def at_input_size(data, prep: Preprocessing):
    """A copy of a brain set whose stimulus images are float ``(n, 3, S, S)`` at the model's input size,
    each resized as the scoring path resizes it (:meth:`Preprocessing.resize`, one image at a time).

    On a stimulus already at that size the scoring path's resize is a no-op, so the scores are those of
    the original images, bit for bit. Other inputs are returned unchanged.
    """
    if isinstance(data, NeuralStimulusSet):
        images = data.images_tensor()
        return dataclasses.replace(data, images=torch.stack([prep.resize(x) for x in images]).numpy())
    if isinstance(data, BrainData) and data.stimuli is not None:
        out = copy.copy(data)
        out.stimuli = torch.stack([prep.resize(x) for x in data.images_tensor()])
        return out
    return data
