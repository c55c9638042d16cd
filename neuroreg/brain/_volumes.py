"""Reading 3-D volumes (ROI masks, ncsnr maps) from NIfTI (nibabel, optional) or .npy files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from neuroreg._io import reading
from neuroreg.errors import DataFormatError, NotAvailableError

#: Suffixes tried, in order, for a volume named without suffix.
VOLUME_SUFFIXES = (".nii.gz", ".nii", ".npy")


def find_volume(folder: Path, stem: str) -> Path | None:
    """``folder/stem`` + the first suffix of :data:`VOLUME_SUFFIXES` that exists, else None."""
    for suffix in VOLUME_SUFFIXES:
        path = folder / f"{stem}{suffix}"
        if path.is_file():
            return path
    return None


def read_volume(path: Path) -> np.ndarray:
    """A 3-D volume in NIfTI voxel order ``(X, Y, Z)``: NIfTI through nibabel, or a plain .npy array."""
    if path.suffix == ".npy":
        with reading(path, "the volume"):
            vol = np.load(path, allow_pickle=False)
    else:
        try:
            import nibabel  # optional: the neuroimaging extra
            from nibabel.dataobj_images import DataobjImage
        except ImportError:
            raise NotAvailableError(
                f"reading {path.name} needs nibabel; install the neuroimaging extra "
                "(pip install 'neuroreg[neuroimaging]') or provide the volume as .npy") from None
        with reading(path, "the volume"):
            img = nibabel.load(str(path))
            if not isinstance(img, DataobjImage):
                raise DataFormatError(f"{path} must be an image with voxel data; nibabel read a {type(img).__name__}")
            vol = np.asarray(np.asanyarray(img.dataobj))
    vol = np.asarray(vol)
    if vol.ndim == 4 and vol.shape[3] == 1:
        vol = vol[..., 0]
    if vol.ndim != 3:
        raise DataFormatError(f"{path} must hold a 3-D volume (X, Y, Z); got shape {vol.shape}")
    return vol
