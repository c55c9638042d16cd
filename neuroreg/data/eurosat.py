"""EuroSAT (Helber et al. 2019): Sentinel-2 RGB patches, 64 x 64 px, 10 land-use classes.

On-disk layouts accepted (the public archive and torchvision produce the first):

    <root>/2750/<class>/<class>_<n>.jpg
    <root>/eurosat/2750/<class>/*.jpg
    <root>/<class>/*.jpg

The ten classes are AnnualCrop, Forest, HerbaceousVegetation, Highway,
Industrial, Pasture, PermanentCrop, Residential, River, SeaLake (27,000
images). Nothing is downloaded; give the folder you unpacked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import pandas as pd

from neuroreg._utils.images import IMAGE_EXTENSIONS
from neuroreg.errors import DataFormatError
from neuroreg.data.split_data import SplitImageDataModule, check_readable

__all__ = ["EuroSATDataModule", "EUROSAT_CLASSES", "find_eurosat_folder"]

EUROSAT_CLASSES = ("AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial", "Pasture",
                   "PermanentCrop", "Residential", "River", "SeaLake")


def find_eurosat_folder(root: str | Path, *, any_class_names: bool = False) -> Path:
    """The folder holding the class folders: ``root/2750``, ``root/eurosat/2750`` or ``root`` itself.

    With ``any_class_names`` (``classes="folders"``) a candidate needs sub-folders
    with images, whatever their names; otherwise at least one EuroSAT class folder.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"EuroSAT root {str(root)!r} does not exist")
    for cand in (root / "2750", root / "eurosat" / "2750", root / "EuroSAT" / "2750", root):
        if not cand.is_dir():
            continue
        if any_class_names:
            if any(_has_images(sub) for sub in cand.iterdir() if sub.is_dir()):
                return cand
        elif any((cand / c).is_dir() for c in EUROSAT_CLASSES):
            return cand
    subdirs = sorted(p.name for p in root.iterdir() if p.is_dir())[:10]
    if any_class_names:
        raise DataFormatError(
            f"no class folders with images under {root}: expected <root>/2750/<class>/*.jpg, <root>/eurosat/2750/"
            f"<class>/*.jpg or <root>/<class>/*.jpg ({'/'.join(IMAGE_EXTENSIONS)}); sub-folders found: {subdirs}")
    raise DataFormatError(
        f"no EuroSAT class folders under {root}: expected <root>/2750/<class>/*.jpg, <root>/eurosat/2750/<class>/"
        f"*.jpg or <root>/<class>/*.jpg with classes {list(EUROSAT_CLASSES)}; sub-folders found: {subdirs} (set "
        "classes='folders' to use folders of other names)")


def _has_images(folder: Path) -> bool:
    return any(p.suffix.lower() in IMAGE_EXTENSIONS for p in folder.iterdir())


def _text_name(name: str) -> str:
    """A file name as text that can be written to ``splits.csv``: bytes that are not UTF-8 become ``\\xNN``.

    Python keeps such bytes as lone surrogates, which no UTF-8 file can hold.
    """
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


class EuroSATDataModule(SplitImageDataModule):
    """EuroSAT RGB as a fine-tuning domain: stratified, seeded train/val/test split, optional per-class budget.

    ``root``: see the module docstring for the accepted layouts. ``classes``:
    ``"eurosat"`` requires exactly the ten EuroSAT class folders; ``"folders"``
    takes every sub-folder as a class, whatever its name (a subset, a relabelled
    copy, another data set in the same layout); at least two.
    ``n_per_class=50`` is the budget of Yang et al. ("Brain Decodes Deep Nets").
    Images are resized to ``image_size`` (default: the model's input size).
    All other options: :class:`~neuroreg.data.split_data.SplitImageDataModule`.
    """

    def __init__(self, root: str, classes: Literal["eurosat", "folders"] = "eurosat", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if classes not in ("eurosat", "folders"):
            raise ValueError(f"classes must be 'eurosat' or 'folders'; got {classes!r}")
        self.root, self.class_mode = root, classes

    def _scan(self) -> tuple[pd.DataFrame, list[str]]:
        folder = find_eurosat_folder(self.root, any_class_names=self.class_mode == "folders")
        found = sorted(p.name for p in folder.iterdir() if p.is_dir())
        if self.class_mode == "eurosat":
            missing = [c for c in EUROSAT_CLASSES if c not in found]
            extra = [c for c in found if c not in EUROSAT_CLASSES]
            if missing or extra:
                raise DataFormatError(f"{folder}: EuroSAT needs the folders {list(EUROSAT_CLASSES)}; missing "
                                      f"{missing}, unexpected {extra} (set classes='folders' to use the folders "
                                      "as they are)")
            classes = list(EUROSAT_CLASSES)
        else:
            classes = found
        rows: list[tuple[str, int, str]] = []
        empty: list[str] = []
        for label, cname in enumerate(classes):
            files = sorted(p for p in (folder / cname).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
            if not files:
                empty.append(str(folder / cname))
            rows.extend((_text_name(f"{cname}/{p.name}"), label, str(p)) for p in files)
        if empty:
            raise DataFormatError(f"empty class folder(s) (no {'/'.join(IMAGE_EXTENSIONS)} files): {empty[:5]}")
        table = pd.DataFrame({"image": [r[0] for r in rows], "label": [r[1] for r in rows],
                              # object, not a string dtype: a path may hold bytes that are not UTF-8 (Python's
                              # surrogates), which Arrow-backed strings refuse; PIL opens the path as it is
                              "path": pd.Series([r[2] for r in rows], dtype=object)})
        if self.check_images:
            check_readable([Path(p) for p in table["path"]], "EuroSAT")
        return table, classes
