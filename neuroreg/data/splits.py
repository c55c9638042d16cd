"""Seeded train/val/test splits of an image table, stratified by class and grouped (e.g. by lesion).

A split is a function of the table's sorted image names (never of row order),
the class labels, the groups and the seed. ``splits.csv`` (columns ``image``,
``split``, ``label`` and, for grouped data, ``group``/``lesion_id``) records
it so it can be audited and re-used.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from neuroreg._utils.io import atomic_path, read_text, reading
from neuroreg.errors import DataFormatError

__all__ = ["SPLITS", "SPLIT_VALUES", "split_table", "check_split_classes", "read_splits", "write_splits"]

SPLITS = ("train", "val", "test")
#: ``unused``: left out of training by a per-class budget (``n_per_class``).
SPLIT_VALUES = (*SPLITS, "unused")


def _check_fractions(val_fraction: float, test_fraction: float) -> None:
    for name, f in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= f < 1.0:
            raise ValueError(f"{name} must be in [0, 1); got {f}")
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(f"val_fraction + test_fraction must be < 1; got {val_fraction} + {test_fraction}")


def _stratified(labels: np.ndarray, fractions: Sequence[float], rng: np.random.Generator) -> np.ndarray:
    """Per class: shuffle, then cut into parts of rounded size; a part with a fraction > 0 gets at least one
    image when the class has enough images to give every such part one and keep one for training."""
    out = np.empty(len(labels), dtype=np.int64)
    wanted = [i for i, f in enumerate(fractions) if i > 0 and f > 0]
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n = len(idx)
        sizes = [int(round(f * n)) for f in fractions]
        if n > len(wanted):
            for i in wanted:
                sizes[i] = max(sizes[i], 1)
        sizes[0] = n - sum(sizes[1:])
        for part, chunk in enumerate(np.split(idx, np.cumsum(sizes)[:-1])):
            out[chunk] = part
    return out


def _grouped(labels: np.ndarray, groups: np.ndarray, fractions: Sequence[float],
             rng: np.random.Generator) -> np.ndarray:
    """Whole groups assigned greedily (largest first, seeded ties) to the part furthest below its class quota.

    Each group carries its images' class counts; a group goes to the part whose
    deficit, summed over the group's classes, is largest, so every class is
    spread over the parts by ``fractions`` as far as whole groups allow.
    """
    uniq_groups, g_index = np.unique(groups, return_inverse=True)
    uniq_labels, l_index = np.unique(labels, return_inverse=True)
    counts = np.zeros((len(uniq_groups), len(uniq_labels)))
    np.add.at(counts, (g_index, l_index), 1.0)
    target = np.asarray(fractions)[:, None] * counts.sum(0)[None, :]        # parts x classes
    have = np.zeros_like(target)
    order = rng.permutation(len(uniq_groups))
    order = order[np.argsort(-counts.sum(1)[order], kind="stable")]
    part_of_group = np.empty(len(uniq_groups), dtype=np.int64)
    for g in order:
        c = counts[g]
        # relative deficit of each part on this group's classes; ties go to the larger fraction
        deficit = ((target - have) / np.maximum(target, 1e-9) * (c > 0)).sum(1)
        deficit = np.where(np.asarray(fractions) > 0, deficit, -np.inf)
        p = int(np.argmax(deficit))
        part_of_group[g] = p
        have[p] += c
    return part_of_group[g_index]


def split_table(images: Sequence[str], labels: Sequence[int], *, groups: Sequence[str] | None = None,
                val_fraction: float = 0.1, test_fraction: float = 0.2, seed: int = 0) -> np.ndarray:
    """``"train"``/``"val"``/``"test"`` per image, stratified by ``labels``, whole ``groups`` kept together.

    images: unique image names; the split depends on their sorted order, not on
        the order given. labels: class index per image. groups: group per image
        (e.g. ISIC ``lesion_id``); images of one group always land in one split.
    Returns an array of split names in the order of ``images``.
    """
    _check_fractions(val_fraction, test_fraction)
    image_names = np.asarray(images, dtype=str)
    label_arr = np.asarray(labels)
    if len(np.unique(image_names)) != len(image_names):
        names, counts = np.unique(image_names, return_counts=True)
        raise DataFormatError(f"image names must be unique; repeated: {names[counts > 1][:5].tolist()}")
    order = np.argsort(image_names, kind="stable")
    fractions = (1.0 - val_fraction - test_fraction, val_fraction, test_fraction)
    rng = np.random.default_rng(seed)
    if groups is None:
        parts_sorted = _stratified(label_arr[order], fractions, rng)
    else:
        parts_sorted = _grouped(label_arr[order], np.asarray(groups, dtype=str)[order], fractions, rng)
    parts = np.empty(len(image_names), dtype=np.int64)
    parts[order] = parts_sorted
    return np.asarray(SPLITS, dtype=object)[parts].astype(str)


def check_split_classes(split: np.ndarray, labels: np.ndarray, classes: Sequence[str],
                        required: Sequence[str] = SPLITS) -> None:
    """Raise naming the split and the classes it lacks, if a class with images is absent from a required split."""
    present = set(np.unique(labels).tolist())
    for s in required:
        have = set(np.unique(labels[split == s]).tolist())
        missing = sorted(present - have)
        if missing:
            n_total = {classes[c]: int((labels == c).sum()) for c in missing[:5]}
            raise DataFormatError(
                f"the {s!r} split has no image of class(es) {[classes[c] for c in missing]} "
                f"(images of those classes in the whole set: {n_total}); use more images per class, other "
                f"val_fraction/test_fraction, or give an explicit split with splits=PATH")


def write_splits(path: str | Path, table: pd.DataFrame) -> Path:
    """Write ``table`` (``image``, ``split``, ... columns) as CSV, sorted by image name, atomically."""
    with atomic_path(path) as tmp:
        table.sort_values("image", kind="stable").to_csv(tmp, index=False)
    return Path(path)


def read_splits(path: str | Path, images: Sequence[str]) -> np.ndarray:
    """Split names for ``images`` from a ``splits.csv``; every image must be listed, every split valid."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"splits file {str(path)!r} does not exist")
    text = read_text(path)  # UTF-8, UTF-16/32 with a byte-order mark, else Latin-1 with a warning
    with reading(path, "the splits table"):
        try:
            df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
        except pd.errors.EmptyDataError:
            raise DataFormatError(f"{path}: the file is empty (no header line)") from None
    missing_cols = [c for c in ("image", "split") if c not in df.columns]
    if missing_cols:
        raise DataFormatError(f"{path}: missing column(s) {missing_cols}; columns are {list(df.columns)}")
    bad = df[~df["split"].isin(SPLIT_VALUES)]
    if len(bad):
        raise DataFormatError(f"{path}: split must be one of {SPLIT_VALUES}; first offending rows "
                              f"(line, image, split): "
                              f"{[(int(i) + 2, r.image, r.split) for i, r in bad.head(5).iterrows()]}")
    dup = df["image"][df["image"].duplicated()]
    if len(dup):
        raise DataFormatError(f"{path}: images listed twice: {dup.head(5).tolist()}")
    lookup = dict(zip(df["image"], df["split"]))
    absent = [im for im in images if im not in lookup]
    if absent:
        raise DataFormatError(f"{path} does not list {len(absent)} image(s) of the data set, first: {absent[:5]}")
    return np.asarray([lookup[im] for im in images], dtype=str)
