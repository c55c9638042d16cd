"""ClickMeDataModule: ClickMe images with human maps, optionally mixed with plain images (token 0)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Iterator, Literal, Sequence

import lightning as L
import torch
from torch import Tensor, nn
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Sampler
from torchvision.datasets import ImageFolder

from neuroreg.brain.generic import read_image
from neuroreg.data.clickme import IMAGE_SIZE, Decoder, clickme_dataset, iter_clickme
from neuroreg.data.preprocessing import Preprocessing, preprocessing_of
from neuroreg.errors import DataFormatError

__all__ = ["ClickMeDataModule", "MapImageDataset"]

Split = Literal["train", "val"]


class MapImageDataset(Dataset):
    """Images without human maps as ``(image, zero map (S, S), token 0.0, label)``.

    ``base``: a dataset of ``(PIL image or tensor, label)`` (e.g. torchvision's
    ``ImageFolder``); ``transform`` turns the image into float ``(3, S, S)`` in [0, 1].
    """

    def __init__(self, base: Dataset, transform: Any, image_size: int) -> None:
        self.base, self.transform, self.image_size = base, transform, image_size

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor, float, int]:
        image, label = self.base[i]
        return self.transform(image), torch.zeros(self.image_size, self.image_size), 0.0, int(label)


class _SeededItems(Dataset):
    """Items of ``base`` keyed by ``(index, seed)``: torch's RNG seeded per item (random crops), then restored."""

    def __init__(self, base: Dataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, seed = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.base[index]


class _SeededShuffle(Sampler):
    """``(index, augmentation seed)`` keys: a new permutation each epoch, all drawn from ``(seed, epoch)``."""

    def __init__(self, n: int, seed: int, shuffle: bool) -> None:
        self.n, self.seed, self.shuffle, self.epoch = n, seed, shuffle, 0

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[tuple[int, int]]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        self.epoch += 1
        order = torch.randperm(self.n, generator=g) if self.shuffle else torch.arange(self.n)
        seeds = torch.randint(0, 2 ** 31 - 1, (self.n,), generator=g)
        return iter(zip(order.tolist(), seeds.tolist()))


class _Collate:
    """Stack items into ``(images, heatmaps, tokens, labels)``; images normalised with ``mean``/``std`` if given."""

    def __init__(self, mean: Sequence[float] | None, std: Sequence[float] | None) -> None:
        self.mean, self.std = mean, std

    def __call__(self, items: list) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        images = torch.stack([it[0] for it in items])
        if self.mean is not None and self.std is not None:
            images = (images - torch.tensor(self.mean).view(-1, 1, 1)) / torch.tensor(self.std).view(-1, 1, 1)
        return (images, torch.stack([it[1] for it in items]),
                torch.tensor([float(it[2]) for it in items], dtype=torch.float32),
                torch.tensor([int(it[3]) for it in items], dtype=torch.long))


class ClickMeDataModule(L.LightningDataModule):
    """ClickMe (released TFRecord shards or the plain folder layout, see :mod:`neuroreg.data.clickme`) for training
    with the harmonization loss, optionally mixed with images that have no human map.

    Every batch (training and validation) is a tuple ``(images, heatmaps, tokens, labels)``:

    - ``images``: float32 ``(B, 3, S, S)``, normalised with the model's preprocessing
      mean/std (``normalize=False``: pixels in [0, 1]);
    - ``heatmaps``: float32 ``(B, S, S)``, the release's prepared ClickMe maps
      (JPEG levels, resized to 64, blurred, resized to ``S``), zeros where ``tokens`` is 0;
    - ``tokens``: float32 ``(B,)``, 1 where the image has a human map, else 0;
    - ``labels``: long ``(B,)``, ImageNet class indices (0 to ``num_classes - 1``).

    ``S = image_size`` (default the release's 224). ClickMe images are resized as
    the release resizes them, without augmentation.

    Parameters
    ----------
    root: ClickMe folder: ``train-*.tfrecords`` / ``val-*.tfrecords`` (in it or in
        ``train/``, ``val/``), or ``train/`` and ``val/`` folder layouts.
    images: optional folder of plain images to mix in (token 0), as the release
        mixes ImageNet: ``images/train/<class>/...`` and ``images/val/<class>/...``.
        Its sorted class folders must be the ``num_classes`` classes in ClickMe's
        label order (the ImageNet wnids, sorted, for ImageNet). Training images get
        the model's RandomResizedCrop + flip, validation images Resize + CenterCrop.
    batch_size: images per batch; training drops the last incomplete batch.
    image_size: side in pixels; None takes the input size of ``model_name`` (224 without one).
    num_workers: DataLoader workers; None picks ``min(8, cpus - 1)``.
    normalize: apply the model's mean/std (from ``model_name``, :meth:`use_model` or
        the trained backbone at setup; else timm's ImageNet defaults, with a warning).
    model_name: timm/neuroreg model whose preprocessing contract to use.
    seed: the training order (a new permutation each epoch) and augmentations.
    check_crc: verify every TFRecord's data CRC when read.
    prepare_maps: apply the ClickMe preparation to folder-layout maps too.
    num_classes: label range, 1000 for ImageNet.
    decoder: JPEG decoder of the shards (see :func:`neuroreg.data.clickme.decode_jpeg`).
    """

    def __init__(self, root: str, images: str | None = None, batch_size: int = 64,
                 image_size: int | None = IMAGE_SIZE, num_workers: int | None = None, normalize: bool = True,
                 model_name: str | None = None, seed: int = 0, check_crc: bool = True, prepare_maps: bool = False,
                 num_classes: int = 1000, decoder: Decoder = "auto") -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size}")
        if num_workers is not None and num_workers < 0:
            raise ValueError(f"num_workers must be >= 0 or None; got {num_workers}")
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2; got {num_classes}")
        self.root, self.images, self.batch_size, self.num_workers = root, images, batch_size, num_workers
        self.normalize, self.model_name, self.seed, self.check_crc = normalize, model_name, seed, check_crc
        self.prepare_maps, self._num_classes, self.decoder = prepare_maps, num_classes, decoder
        self._prep: Preprocessing | None = preprocessing_of(model_name) if model_name is not None else None
        self.image_size = int(image_size or (self._prep.image_size if self._prep is not None else IMAGE_SIZE))
        self._data: dict[str, Dataset] = {}
        self._train_sampler: _SeededShuffle | None = None

    # -- preprocessing contract
    def use_model(self, model: nn.Module | str) -> "ClickMeDataModule":
        """Take mean/std (and crop/interpolation of plain images) from ``model``'s contract. Returns self."""
        self._prep = preprocessing_of(model)
        return self

    @property
    def preprocessing(self) -> Preprocessing:
        """The contract in use at ``image_size``: the model's, else timm's ImageNet defaults (with a warning)."""
        if self._prep is None:
            backbone = getattr(getattr(self.trainer, "lightning_module", None), "backbone", None)
            if backbone is not None:
                self._prep = preprocessing_of(backbone)
        if self._prep is None:
            if self.normalize:
                warnings.warn("ClickMeDataModule does not know the model it feeds (no model_name, no use_model(), "
                              "no trainer): normalising with timm's ImageNet defaults", stacklevel=2)
            return preprocessing_of(nn.Identity()).with_size(self.image_size)
        return self._prep.with_size(self.image_size)

    @property
    def num_classes(self) -> int:
        return self._num_classes

    # -- data sets
    def dataset(self, split: Split) -> Dataset:
        """The ``split``'s items ``(image in [0, 1], heatmap, token, label)``: ClickMe, then the plain images."""
        if split not in self._data:
            parts = [clickme_dataset(self.root, split, self.image_size, self.decoder, self.check_crc,
                                     self.prepare_maps, self._num_classes)]
            if self.images is not None:
                parts.append(self._plain(split))
            self._data[split] = parts[0] if len(parts) == 1 else ConcatDataset(parts)
        return self._data[split]

    def _plain(self, split: Split) -> Dataset:
        folder = Path(self.images).expanduser() / split  # type: ignore[arg-type]
        if not folder.is_dir():
            raise FileNotFoundError(f"plain image folder {str(folder)!r} does not exist (images= needs train/ and "
                                    "val/ with one sub-folder per class)")
        try:
            base = ImageFolder(str(folder), loader=read_image)
        except FileNotFoundError as exc:
            raise DataFormatError(f"{folder} must hold one sub-folder of images per class: {exc}") from exc
        if len(base.classes) != self._num_classes:
            raise DataFormatError(f"{folder} has {len(base.classes)} class folders but ClickMe labels index "
                                  f"num_classes={self._num_classes} classes; the sorted class folders must be "
                                  "those classes in ClickMe's label order")
        prep = self.preprocessing if self.normalize else (self._prep or preprocessing_of(nn.Identity()))
        prep = prep.with_size(self.image_size)
        transform = prep.train_transform(normalize=False) if split == "train" else prep.eval_transform()
        return MapImageDataset(base, transform, self.image_size)

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit"):
            self.dataset("train")
        if stage in (None, "fit", "validate"):
            self.dataset("val")

    # -- loaders
    def _workers(self) -> int:
        if self.num_workers is not None:
            return self.num_workers
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        return max(0, min(8, cpus - 1))

    def _loader(self, split: Split) -> DataLoader:
        data = self.dataset(split)
        n = len(data)  # type: ignore[arg-type]
        train = split == "train"
        if train and n < self.batch_size:
            raise ValueError(f"the ClickMe training set has {n} images, fewer than batch_size={self.batch_size}")
        sampler = _SeededShuffle(n, self.seed if train else self.seed + 1, shuffle=train)
        if train:
            self._train_sampler = sampler
        prep = self.preprocessing if self.normalize else None
        workers = self._workers()
        return DataLoader(_SeededItems(data), batch_size=self.batch_size, sampler=sampler, drop_last=train,
                          collate_fn=_Collate(prep.mean if prep else None, prep.std if prep else None),
                          num_workers=workers, persistent_workers=workers > 0,
                          pin_memory=torch.cuda.is_available())

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def iter_val(self, batch_size: int | None = None, limit: int | None = None,
                 drop_last: bool = False) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        """Validation ``(images in [0, 1] (B, 3, S, S), heatmaps (B, S, S), labels (B,))`` of the images with a
        human map, in file order (see :func:`neuroreg.data.clickme.iter_clickme`)."""
        return iter_clickme(self.dataset("val"), batch_size=batch_size or self.batch_size, limit=limit,
                            drop_last=drop_last)
