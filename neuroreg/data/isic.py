"""ISIC 2019 skin-lesion classification (Codella et al. 2018; Tschandl et al. 2018; Combalia et al. 2019).

On-disk layout of the challenge's training archive (names as published)::

    <root>/ISIC_2019_Training_Input/ISIC_0000000.jpg ...          (also nested once more, as some copies are)
    <root>/ISIC_2019_Training_GroundTruth.csv    image,MEL,NV,BCC,AK,BKL,DF,VASC,SCC,UNK   (one-hot, 1.0/0.0)
    <root>/ISIC_2019_Training_Metadata.csv       image,age_approx,anatom_site_general,lesion_id,sex

Several images show the same lesion, so splits are grouped by ``lesion_id``
(never by image); images without a lesion id form their own group. Classes
with no image (``UNK`` in the training set) are left out of the model's
outputs. The challenge metric is balanced accuracy (mean per-class recall).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from neuroreg._utils.io import read_text, reading
from neuroreg.errors import DataFormatError
from neuroreg.data.split_data import SplitImageDataModule, check_readable

__all__ = ["ISIC2019DataModule", "ISIC2019_CLASSES", "read_isic2019_table"]

ISIC2019_CLASSES = ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK")
GROUND_TRUTH = "ISIC_2019_Training_GroundTruth.csv"
METADATA = "ISIC_2019_Training_Metadata.csv"
INPUT = "ISIC_2019_Training_Input"
_META_COLUMNS = ("image", "age_approx", "anatom_site_general", "lesion_id", "sex")


def _rows(df: pd.DataFrame, mask: np.ndarray, cols: list[str] | None = None) -> list:
    """First 5 offending rows as (CSV line number, image[, values])."""
    out = []
    for i in np.flatnonzero(mask)[:5]:
        row = df.iloc[i]
        out.append((int(i) + 2, str(row["image"]), *(_plain(row[c]) for c in (cols or []))))
    return out


def _plain(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def _read_csv(path: Path, **kwargs: Any) -> pd.DataFrame:
    """A challenge CSV as a table: UTF-8 (with or without a byte-order mark), UTF-16 or UTF-32 with a byte-order
    mark, else Latin-1 with a warning naming the file; a file pandas cannot parse raises naming it."""
    text = read_text(path)
    with reading(path, "the CSV table"):
        try:
            return pd.read_csv(io.StringIO(text), **kwargs)
        except pd.errors.EmptyDataError:
            raise DataFormatError(f"{path}: the file is empty (no header line)") from None


def _input_folder(root: Path) -> Path:
    folder = root / INPUT
    if (folder / INPUT).is_dir():
        folder = folder / INPUT
    if not folder.is_dir():
        raise FileNotFoundError(f"ISIC 2019 image folder {str(root / INPUT)!r} does not exist")
    return folder


def read_isic2019_table(root: str | Path, *, metadata: bool = True) -> tuple[pd.DataFrame, list[str]]:
    """The ISIC 2019 training table: ``image``, ``label``, ``path``, ``lesion_id``, ``group`` + the class names.

    Raises :class:`~neuroreg.errors.DataFormatError` naming the first offending
    rows or files for missing columns, rows that are not one-hot, duplicate
    images, images listed but missing from the image folder.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"ISIC 2019 root {str(root)!r} does not exist")
    gt_path = root / GROUND_TRUTH
    if not gt_path.is_file():
        raise FileNotFoundError(f"ISIC 2019 ground truth {str(gt_path)!r} does not exist")
    gt = _read_csv(gt_path, dtype={"image": str})
    missing = [c for c in ("image", *ISIC2019_CLASSES) if c not in gt.columns]
    if missing:
        raise DataFormatError(f"{gt_path}: missing column(s) {missing}; columns are {list(gt.columns)} "
                              f"(expected image,{','.join(ISIC2019_CLASSES)})")
    if len(gt) == 0:
        raise DataFormatError(f"{gt_path}: lists no image (only the header line); the ground truth has one row "
                              "per training image")
    dup = gt["image"].duplicated().to_numpy()
    if dup.any():
        raise DataFormatError(f"{gt_path}: images listed twice (line, image): {_rows(gt, dup)}")
    onehot = gt[list(ISIC2019_CLASSES)].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
    valid = np.isfinite(onehot).all(1) & np.isin(onehot, (0.0, 1.0)).all(1) & (np.nan_to_num(onehot).sum(1) == 1)
    if not valid.all():
        raise DataFormatError(f"{gt_path}: {int((~valid).sum())} row(s) are not one-hot over "
                              f"{list(ISIC2019_CLASSES)} (exactly one 1, the rest 0); first (line, image, values): "
                              f"{_rows(gt, ~valid, list(ISIC2019_CLASSES))}")
    full_label = onehot.argmax(1)
    present = sorted(set(full_label.tolist()))
    classes = [ISIC2019_CLASSES[c] for c in present]
    remap = {c: i for i, c in enumerate(present)}

    folder = _input_folder(root)
    paths = [folder / f"{im}.jpg" for im in gt["image"]]
    absent = np.array([not p.is_file() for p in paths])
    if absent.any():
        raise DataFormatError(f"{int(absent.sum())} image(s) listed in {gt_path.name} are missing from {folder}, "
                              f"first: {[str(paths[i].name) for i in np.flatnonzero(absent)[:5]]}")
    table = pd.DataFrame({"image": gt["image"].to_numpy(str), "label": [remap[c] for c in full_label],
                          "path": [str(p) for p in paths]})
    table["lesion_id"] = ""
    if metadata:
        meta_path = root / METADATA
        if not meta_path.is_file():
            raise FileNotFoundError(f"ISIC 2019 metadata {str(meta_path)!r} does not exist (it holds lesion_id, "
                                    "needed to keep images of one lesion in one split; metadata=False splits by "
                                    "image and is not recommended)")
        meta = _read_csv(meta_path, dtype=str, keep_default_na=False)
        missing = [c for c in ("image", "lesion_id") if c not in meta.columns]
        if missing:
            raise DataFormatError(f"{meta_path}: missing column(s) {missing}; columns are {list(meta.columns)} "
                                  f"(expected {','.join(_META_COLUMNS)})")
        if meta["image"].duplicated().any():
            raise DataFormatError(f"{meta_path}: images listed twice (line, image): "
                                  f"{_rows(meta, meta['image'].duplicated().to_numpy())}")
        lesion = dict(zip(meta["image"], meta["lesion_id"].str.strip()))
        table["lesion_id"] = [lesion.get(im, "") for im in table["image"]]
    # an image without a lesion id is its own group
    table["group"] = np.where(table["lesion_id"] != "", "lesion:" + table["lesion_id"], "image:" + table["image"])
    return table, classes


class ISIC2019DataModule(SplitImageDataModule):
    """ISIC 2019 as a fine-tuning domain: lesion-grouped, class-stratified splits; balanced accuracy.

    ``root`` holds the three entries of the module docstring. ``balance``:
    ``"loss"`` (default; inverse-frequency class weights in the cross-entropy),
    ``"sampler"`` (class-balanced resampling) or ``"none"``. ``metadata=False``
    ignores the metadata file and splits by image (not recommended: images of
    one lesion would leak across splits). ``image_size`` defaults to the
    model's input size; images are resized (shorter side to ``image_size /
    crop_pct``) and centre-cropped, with the model's interpolation.
    All other options: :class:`~neuroreg.data.split_data.SplitImageDataModule`.
    """

    split_columns = ("lesion_id",)

    def __init__(self, root: str, metadata: bool = True, balance: Literal["none", "loss", "sampler"] = "loss",
                 **kwargs: Any) -> None:
        super().__init__(balance=balance, **kwargs)
        self.root, self.metadata = root, metadata

    def _scan(self) -> tuple[pd.DataFrame, list[str]]:
        table, classes = read_isic2019_table(self.root, metadata=self.metadata)
        if self.check_images:
            check_readable([Path(p) for p in table["path"]], "ISIC 2019")
        return table, classes

    def _assign_splits(self, table: pd.DataFrame, classes: list[str]) -> np.ndarray:
        split = super()._assign_splits(table, classes)
        # a re-used splits file must keep lesions together too
        used = split != "unused"
        per_group = pd.Series(split[used]).groupby(table["group"].to_numpy()[used]).nunique()
        leaking = per_group[per_group > 1]
        if len(leaking):
            raise DataFormatError(f"lesions found in more than one split (first: {leaking.index[:5].tolist()}); "
                                  "splits must be grouped by lesion_id")
        return split
