"""Shared part of the fine-tuning data modules: an image table, a recorded train/val/test split, loaders.

Subclasses (:class:`~neuroreg.data.EuroSATDataModule`,
:class:`~neuroreg.data.ISIC2019DataModule`,
:class:`~neuroreg.data.PatternDataModule`) only read their on-disk format
into a table with one row per image (``image`` name, ``label`` class index,
``path`` or a generator, optional ``group``); this class splits it (seeded,
stratified, whole groups kept together), applies a per-class budget, balances
classes, serves train/val/test loaders and writes ``splits.csv``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import pandas as pd
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from neuroreg.brain import read_image
from neuroreg.errors import DataFormatError
from neuroreg.data.folders import AlignedDataModule, _collate_task
from neuroreg.data.splits import check_split_classes, read_splits, split_table, write_splits

__all__ = ["SplitImageDataModule", "TableImages", "PILLoader", "check_readable"]


def check_readable(paths: list[Path], what: str) -> None:
    """Open every image header with PIL; raise naming the first unreadable files (up to 5)."""
    bad = []
    for p in paths:
        try:
            with Image.open(p) as im:
                im.size  # noqa: B018  (forces the header parse)
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            bad.append(f"{p} ({type(exc).__name__})")
            if len(bad) >= 5:
                break
    if bad:
        raise DataFormatError(f"unreadable {what} image file(s), first: {bad}")


class PILLoader:
    """Row -> RGB PIL image of ``paths[row]``; a file that cannot be decoded raises naming it."""

    def __init__(self, paths: tuple[str, ...]) -> None:
        self.paths = paths

    def __call__(self, row: int):
        return read_image(self.paths[row])


class TableImages(Dataset):
    """Images of a table: ``(transform(image), label)`` per row; ``load(i)`` gives a PIL image or tensor."""

    def __init__(self, load: Callable[[int], Any], rows: np.ndarray, labels: np.ndarray,
                 transform: Callable | None) -> None:
        self.load, self.rows, self.labels, self.transform = load, np.asarray(rows), np.asarray(labels), transform

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        r = int(self.rows[i])
        image = self.load(r)
        return (self.transform(image) if self.transform is not None else image), int(self.labels[r])


class SplitImageDataModule(AlignedDataModule, ABC):
    """An image table split into train/val/test, with budgets, class balancing and ``splits.csv``.

    Parameters (besides the options of :class:`~neuroreg.data.AlignedDataModule` from
    ``neural`` on, passed through as keyword arguments; ``batch_size`` defaults to 32 here)
    ----------
    val_fraction, test_fraction: of the images (or of the groups' images), per class.
    n_per_class: keep at most this many training images per class (seeded); the
        rest are recorded as ``unused`` in ``splits.csv``. None keeps all.
    splits: path of a ``splits.csv`` from an earlier run to re-use exactly.
    balance: ``"none"``, ``"loss"`` (class weights ``n / (K n_c)`` from the
        training split, read by :class:`~neuroreg.finetune.FinetuneModule`) or
        ``"sampler"`` (training images drawn with replacement, probability
        proportional to those weights, seeded).
    augment: random resized crops and flips on training images.
    check_images: open every image header at setup so unreadable files fail early.
    """

    #: extra columns of the table written to splits.csv (e.g. ``lesion_id``)
    split_columns: tuple[str, ...] = ()

    def __init__(self, *, val_fraction: float = 0.1, test_fraction: float = 0.2, n_per_class: int | None = None,
                 splits: str | None = None, balance: Literal["none", "loss", "sampler"] = "none",
                 augment: bool = True, check_images: bool = True, batch_size: int = 32, **kwargs: Any) -> None:
        # the task is built from the table (_build_task), never served from given data sets
        super().__init__(train_dataset=None, val_dataset=None, classes=None, batch_size=batch_size, **kwargs)
        if balance not in ("none", "loss", "sampler"):
            raise ValueError(f"balance must be 'none', 'loss' or 'sampler'; got {balance!r}")
        if n_per_class is not None and n_per_class < 1:
            raise ValueError(f"n_per_class must be >= 1 or None; got {n_per_class}")
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.n_per_class, self.splits, self.balance = n_per_class, splits, balance
        self.augment, self.check_images = augment, check_images
        self.table: pd.DataFrame | None = None
        self._test: Dataset | None = None

    # -- to implement
    @abstractmethod
    def _scan(self) -> tuple[pd.DataFrame, list[str]]:
        """(table with columns ``image``, ``label`` and ``path`` [+ ``group``], class names)."""

    def _loader(self) -> Callable[[int], Any]:
        """A picklable ``row -> image`` callable for the table (DataLoader workers receive it, not the module)."""
        return PILLoader(tuple(self._built_table()["path"]))

    def _built_table(self) -> pd.DataFrame:
        """:attr:`table`, which :meth:`_build_task` sets (before it calls :meth:`_loader`)."""
        if self.table is None:
            raise RuntimeError(f"{type(self).__name__} has no image table yet; call setup() first")
        return self.table

    # -- transforms
    def _transforms(self) -> tuple[Callable, Callable]:
        """(training, evaluation) transforms from the model's contract (crop_pct, interpolation, mean/std).

        Training crops keep 60-100 % of the image: the fine-tuning sets are small and
        low-resolution (EuroSAT's 64 px), where timm's 8 % crops would leave little.
        """
        train, val = self._image_transforms(train_scale=(0.6, 1.0))
        return (train if self.augment else val), val

    # -- split
    def _assign_splits(self, table: pd.DataFrame, classes: list[str]) -> np.ndarray:
        images = table["image"].to_numpy(str)
        labels = table["label"].to_numpy()
        if self.splits is not None:
            split = read_splits(self.splits, images)
        else:
            groups = table["group"].to_numpy(str) if "group" in table else None
            split = split_table(images, labels, groups=groups, val_fraction=self.val_fraction,
                                test_fraction=self.test_fraction, seed=self.seed)
            if self.n_per_class is not None:
                split = self._budget(split, images, labels)
        required = [s for s, f in (("train", 1.0), ("val", self.val_fraction), ("test", self.test_fraction))
                    if f > 0 or (split == s).any()]
        check_split_classes(split, labels, classes, required)
        return split

    def _budget(self, split: np.ndarray, images: np.ndarray, labels: np.ndarray) -> np.ndarray:
        split = split.astype("<U6")           # room for "unused"
        rng = np.random.default_rng(self.seed + 7919)
        train = np.flatnonzero(split == "train")
        train = train[np.argsort(images[train], kind="stable")]
        for c in np.unique(labels[train]):
            idx = rng.permutation(train[labels[train] == c])
            split[idx[self.n_per_class:]] = "unused"
        return split

    # -- AlignedDataModule hook
    def _build_task(self) -> tuple[Dataset, Dataset, list[str]]:
        table, classes = self._scan()
        if len(table) == 0:
            raise DataFormatError(f"{type(self).__name__}: no images found")
        table = table.reset_index(drop=True)
        table["split"] = self._assign_splits(table, classes)
        self.table = table
        labels = table["label"].to_numpy()
        train_tf, val_tf = self._transforms()
        train_rows = np.flatnonzero(table["split"].to_numpy() == "train")
        counts = np.bincount(labels[train_rows], minlength=len(classes)).astype(np.float64)
        self.class_weights = torch.tensor(np.where(counts > 0, counts.sum() / (len(classes) * np.maximum(counts, 1)),
                                                   0.0), dtype=torch.float32)
        if self.balance == "sampler":
            p = self.class_weights.numpy()[labels[train_rows]].astype(np.float64)
            rng = np.random.default_rng(self.seed + 104_723)
            train_rows = np.sort(rng.choice(train_rows, size=len(train_rows), replace=True, p=p / p.sum()))
        val_rows = np.flatnonzero(table["split"].to_numpy() == "val")
        test_rows = np.flatnonzero(table["split"].to_numpy() == "test")
        load = self._loader()
        self._load_fn = load
        self._test = TableImages(load, test_rows, labels, val_tf)
        self._eval_rows = {"train": np.flatnonzero(table["split"].to_numpy() == "train"), "val": val_rows,
                           "test": test_rows}
        self._val_tf = val_tf
        return (TableImages(load, train_rows, labels, train_tf), TableImages(load, val_rows, labels, val_tf),
                list(classes))

    # -- public
    def loss_weights(self) -> Tensor | None:
        """Class weights for the cross-entropy when ``balance="loss"``, else None."""
        self._ensure_task()
        return self.class_weights if self.balance == "loss" else None

    def eval_dataset(self, split: str) -> Dataset:
        """Images of ``split`` (``train``/``val``/``test``) with the evaluation transform (no augmentation)."""
        self._ensure_task()
        if split not in self._eval_rows:
            raise ValueError(f"split must be one of {tuple(self._eval_rows)}; got {split!r}")
        return TableImages(self._load_fn, self._eval_rows[split], self._built_table()["label"].to_numpy(),
                           self._val_tf)

    def splits_frame(self) -> pd.DataFrame:
        """``image``, ``split``, ``label`` (class name) and the data set's extra columns, one row per image."""
        self._ensure_task()
        t = self._built_table()
        out = pd.DataFrame({"image": t["image"], "split": t["split"],
                            "label": [self.classes[i] for i in t["label"]]})
        for c in self.split_columns:
            out[c] = t[c].to_numpy()
        return out

    def write_splits(self, path: str | Path) -> Path:
        """Write ``splits.csv`` (see :meth:`splits_frame`) atomically; re-use it with ``splits=PATH``."""
        return write_splits(path, self.splits_frame())

    def test_dataloader(self) -> DataLoader:
        self.setup("test")
        if self._test is None:
            raise RuntimeError(f"{type(self).__name__} has no test split after setup()")
        return DataLoader(self._test, batch_size=self.batch_size, shuffle=False, collate_fn=_collate_task,
                          **self._loader_kwargs())

