"""Reading 3-D volumes (ROI masks, ncsnr maps) from NIfTI (nibabel, optional) or .npy files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from neuroreg._utils.io import reading
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


def load_nifti(path: Path, what: str, **kwargs: Any) -> Any:
    """``nibabel.load(path)``; a file nibabel cannot identify (truncated, not NIfTI) raises ``DataFormatError``.

    nibabel reports a damaged gzip header or a foreign file as ``ImageFileError``,
    which subclasses no builtin error type; it is turned into the same one-line
    ``DataFormatError: <path>: cannot read <what>: ...`` as every other loader.
    """
    import nibabel  # optional: the neuroimaging extra; callers check it is installed

    with reading(path, what):
        try:
            return nibabel.load(str(path), **kwargs)
        except nibabel.filebasedimages.ImageFileError as exc:
            raise DataFormatError(f"{path}: cannot read {what}: it is corrupt, truncated or not a NIfTI file "
                                  f"(nibabel: {' '.join(str(exc).split())[:300]})") from exc


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
        img = load_nifti(path, "the volume")
        with reading(path, "the volume"):
            if not isinstance(img, DataobjImage):
                raise DataFormatError(f"{path} must be an image with voxel data; nibabel read a {type(img).__name__}")
            vol = np.asarray(np.asanyarray(img.dataobj))
    vol = np.asarray(vol)
    if vol.ndim == 4 and vol.shape[3] == 1:
        vol = vol[..., 0]
    if vol.ndim != 3:
        raise DataFormatError(f"{path} must hold a 3-D volume (X, Y, Z); got shape {vol.shape}")
    return vol
