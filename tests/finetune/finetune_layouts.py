"""Tiny copies of the EuroSAT and ISIC 2019 on-disk layouts (generated images, the real names and CSV headers)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from neuroreg.data.eurosat import EUROSAT_CLASSES

ISIC_GT_HEADER = "image,MEL,NV,BCC,AK,BKL,DF,VASC,SCC,UNK"
ISIC_META_HEADER = "image,age_approx,anatom_site_general,lesion_id,sex"


def _image(path: Path, seed: int, size: int = 64) -> None:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=3)
    arr = np.clip(base + rng.normal(0, 30, size=(size, size, 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, quality=90)


def make_eurosat(root: Path, layout: str = "2750", per_class: int = 6, classes=EUROSAT_CLASSES) -> Path:
    """``root/2750/<class>/<class>_<n>.jpg`` (or ``root/eurosat/2750/...``, or ``root/<class>/...`` for layout "")."""
    folder = root / layout if layout else root
    for c, cname in enumerate(classes):
        for i in range(per_class):
            _image(folder / cname / f"{cname}_{i + 1}.jpg", seed=100 * c + i)
    return root


def make_isic(root: Path, n_lesions_per_class: int = 4, images_per_lesion: int = 2, singles_per_class: int = 2,
              size: int = 48) -> dict:
    """ISIC 2019 layout: 8 classes with images (UNK has none, as in the real training set).

    Each class has ``n_lesions_per_class`` lesions of ``images_per_lesion`` images
    (lesion ids BCN_/HAM_ style) plus ``singles_per_class`` images without a lesion id.
    Returns {"root", "images", "lesion_of", "label_of"}.
    """
    inp = root / "ISIC_2019_Training_Input"
    gt_lines, meta_lines = [ISIC_GT_HEADER], [ISIC_META_HEADER]
    n = 0
    lesion_of, label_of = {}, {}
    for c, cname in enumerate(["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC"]):
        entries = [(f"HAM_{c:02d}{k:05d}", images_per_lesion) for k in range(n_lesions_per_class)]
        entries += [("", 1)] * singles_per_class
        for lesion, count in entries:
            for _ in range(count):
                name = f"ISIC_{n:07d}" + ("_downsampled" if n % 7 == 3 else "")
                _image(inp / f"{name}.jpg", seed=n, size=size)
                onehot = ["1.0" if j == c else "0.0" for j in range(9)]
                gt_lines.append(",".join([name, *onehot]))
                meta_lines.append(f"{name},{35 + 5 * (n % 8)},anterior torso,{lesion},{'male' if n % 2 else 'female'}")
                lesion_of[name], label_of[name] = lesion, cname
                n += 1
    (root / "ISIC_2019_Training_GroundTruth.csv").write_text("\n".join(gt_lines) + "\n")
    (root / "ISIC_2019_Training_Metadata.csv").write_text("\n".join(meta_lines) + "\n")
    return {"root": root, "images": list(lesion_of), "lesion_of": lesion_of, "label_of": label_of}
