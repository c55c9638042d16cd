"""BrainIO files on disk: where a Brain-Score cache keeps them, and reading them without brainio.

The cache root is ``$BRAINIO_HOME`` (default ``~/.brainio``). Inside it each file sits one folder
deep, in one of the layouts brainio and brainscore-core write:

- ``<root>/assy_<identifier>/assy_<identifier>.nc`` and ``<root>/image_<identifier>/`` or
  ``<root>/stimulus_<identifier>/`` with the ``.csv`` and ``.zip`` (brainio's fetcher and the
  packaging functions: one folder named after the file);
- ``<root>/<sha1>/assy_<identifier>.nc``, ``<root>/<sha1>/stimulus_<identifier>.csv`` and
  ``<root>/<sha1'>/stimulus_<identifier>.zip`` (brainscore-core's fetcher: one folder per file,
  named after the file's SHA-1; the zip unpacked to ``<root>/<sha1'>/stimulus_<identifier>/``).

``<identifier>`` is the data set's identifier with dots replaced by underscores
(``dicarlo.MajajHong2015.public`` -> ``assy_dicarlo_MajajHong2015_public.nc``).
"""

from __future__ import annotations

import io
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from neuroreg.brain.data import NeuralStimulusSet
from neuroreg.brain.generic import resize_uint8
from neuroreg.errors import DataFormatError, ShapeError

__all__ = ["brainio_home", "locate", "find_stimulus_csv", "RawAssembly", "read_assembly", "read_stimulus_set"]

ASSEMBLY_PREFIX = "assy_"
STIMULUS_PREFIXES = ("stimulus_", "image_")


def brainio_home() -> Path:
    """The BrainIO cache root: ``$BRAINIO_HOME``, else ``~/.brainio`` (as brainio's ``get_local_data_path``)."""
    return Path(os.path.expanduser(os.getenv("BRAINIO_HOME", "~/.brainio")))


def _store_name(identifier: str) -> str:
    return identifier.replace(".", "_")


def _candidates(root: Path) -> list[Path]:
    """Every ``.nc`` and ``.csv`` at most one folder below ``root``, sorted."""
    found = [p for p in root.glob("*") if p.is_file()] + [p for p in root.glob("*/*") if p.is_file()]
    return sorted(p for p in found if p.suffix in (".nc", ".csv"))


def _file_names(identifier: str) -> set[str]:
    stem = _store_name(identifier)
    return {f"{ASSEMBLY_PREFIX}{stem}.nc"} | {f"{prefix}{stem}.csv" for prefix in STIMULUS_PREFIXES}


def _known_identifiers(files: list[Path]) -> list[str]:
    names = []
    for p in files:
        for prefix in (ASSEMBLY_PREFIX, *STIMULUS_PREFIXES):
            if p.name.startswith(prefix):
                names.append(p.stem[len(prefix):])
    return sorted(set(names))


def _matches(files: list[Path], identifier: str) -> list[Path]:
    """Files named for ``identifier`` exactly, else with a lab prefix (``image_dicarlo_<identifier>.csv``)."""
    exact = [p for p in files if p.name in _file_names(identifier)]
    if exact:
        return exact
    stem = _store_name(identifier)
    return [p for p in files if p.stem.endswith("_" + stem)
            and p.name.startswith((ASSEMBLY_PREFIX, *STIMULUS_PREFIXES))]


def locate(identifier: str, root: Path) -> Path:
    """The one ``.nc`` or ``.csv`` file of ``identifier`` in the cache ``root``.

    Raises ``FileNotFoundError`` naming the root, the file names expected and the identifiers
    the root holds; ``DataFormatError`` when several files match (pass a path instead).
    """
    if not root.is_dir():
        raise FileNotFoundError(f"root: the BrainIO cache folder {root} does not exist (looking for identifier "
                                f"{identifier!r}); pass root= or set $BRAINIO_HOME to the folder Brain-Score "
                                "downloaded into. neuroreg reads the files, it does not download them")
    files = _candidates(root)
    found = _matches(files, identifier)
    if not found:
        known = _known_identifiers(files)
        raise FileNotFoundError(
            f"no BrainIO file for identifier {identifier!r} under {root}: expected one of "
            f"{sorted(_file_names(identifier))} in a folder of it (e.g. {root / 'assy_<id>' / 'assy_<id>.nc'} or "
            f"{root / '<sha1>' / 'stimulus_<id>.csv'}); the folder holds "
            f"{known[:20] if known else 'no BrainIO files'}. neuroreg does not download: let Brain-Score fetch "
            "the data set first (brainscore_vision.load_dataset / load_stimulus_set)")
    if len(found) > 1:
        raise DataFormatError(f"identifier {identifier!r} matches {len(found)} files under {root}: "
                              f"{[str(p) for p in found]}; pass the path of the one to read")
    return found[0]


def find_stimulus_csv(identifier: str, roots: list[Path]) -> Path | None:
    """The stimulus set csv of ``identifier`` in the first of ``roots`` that holds one, else None."""
    for root in roots:
        if root.is_dir():
            found = [p for p in _matches(_candidates(root), identifier) if p.suffix == ".csv"]
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise DataFormatError(f"stimulus set {identifier!r} matches {len(found)} csv files under {root}: "
                                      f"{[str(p) for p in found]}")
    return None


@dataclass(frozen=True)
class RawAssembly:
    """A BrainIO netCDF assembly as stored: the data and its flattened coordinates.

    values: ``dims``-shaped array; coords: name -> ``(dim or None, 1-D values)`` (None for a
    scalar coordinate, its value as a 0-D array); attrs: the file's global attributes.
    """

    path: Path
    dims: tuple[str, ...]
    values: np.ndarray
    coords: dict[str, tuple[str | None, np.ndarray]]
    attrs: dict[str, Any] = field(default_factory=dict)

    def along(self, dim: str) -> dict[str, np.ndarray]:
        """Coordinates along ``dim``, by name, in file order."""
        return {name: vals for name, (d, vals) in self.coords.items() if d == dim}


def read_assembly(path: Path) -> RawAssembly:
    """Read an ``assy_*.nc`` file (one data variable; coordinates one-dimensional or scalar)."""
    import xarray as xr

    try:
        with xr.open_dataset(path, engine="h5netcdf") as ds:
            ds = ds.load()
    except (OSError, ValueError) as err:
        raise DataFormatError(f"{path}: cannot read it as a BrainIO netCDF assembly: {err}") from err
    data_vars = list(ds.data_vars)
    if len(data_vars) != 1:
        raise DataFormatError(f"{path}: a BrainIO assembly holds exactly one data variable; found {data_vars}")
    data = ds[data_vars[0]]
    coords: dict[str, tuple[str | None, np.ndarray]] = {}
    for name, var in ds.coords.items():
        if var.ndim > 1:
            raise DataFormatError(f"{path}: coordinate {name!r} has dims {var.dims}; BrainIO coordinates lie along "
                                  "one dimension")
        coords[str(name)] = (str(var.dims[0]) if var.ndim else None, np.asarray(var.values))
    return RawAssembly(path=path, dims=tuple(str(d) for d in data.dims), values=np.asarray(data.values),
                       coords=coords, attrs=dict(ds.attrs))


def _image_source(csv_path: Path, roots: list[Path]):
    """Where the images of ``csv_path`` are: the ``.zip`` (a ZipFile) or its unpacked folder (a Path)."""
    zip_name = csv_path.with_suffix(".zip").name
    places = [csv_path.parent] + [p for root in roots if root.is_dir() for p in sorted(root.glob("*")) if p.is_dir()]
    for place in places:
        if (place / zip_name).is_file():
            return zipfile.ZipFile(place / zip_name)
    for place in places:
        unpacked = place / csv_path.stem
        if unpacked.is_dir():
            return unpacked
    raise FileNotFoundError(f"stimulus set {csv_path.name}: no {zip_name} (nor its unpacked folder {csv_path.stem}/) "
                            f"beside {csv_path} or one folder below {[str(r) for r in roots]}")


def _read_one(source, filename: str, csv_path: Path) -> np.ndarray:
    try:
        if isinstance(source, zipfile.ZipFile):
            raw = source.read(filename)
        else:
            raw = (source / filename).read_bytes()
    except (KeyError, FileNotFoundError) as err:
        where = source.filename if isinstance(source, zipfile.ZipFile) else source
        raise FileNotFoundError(f"{csv_path}: filename {filename!r} is not in {where}") from err
    with Image.open(io.BytesIO(raw)) as img:
        return np.asarray(img.convert("RGB"), dtype=np.uint8)


def read_stimulus_set(csv_path: Path, identifier: str, roots: list[Path],
                      image_size: int | None = None) -> NeuralStimulusSet:
    """The stimulus set of ``csv_path`` with its images (uint8 ``(n, H, W, 3)``, RGB) from the zip.

    ``labels`` is the csv as a table (``stimulus_id`` first; a legacy ``image_id`` column copied
    to ``stimulus_id`` as brainio does); ``meta`` names the files. Images of different sizes
    need ``image_size`` (each resized to ``image_size`` x ``image_size``, bicubic).
    """
    table = pd.read_csv(csv_path)
    if "stimulus_id" not in table.columns and "image_id" in table.columns:
        table["stimulus_id"] = table["image_id"]
    missing = [c for c in ("stimulus_id", "filename") if c not in table.columns]
    if missing:
        raise DataFormatError(f"{csv_path}: a BrainIO stimulus set csv has the columns stimulus_id and filename; "
                              f"it lacks {missing} (columns: {list(table.columns)})")
    source = _image_source(csv_path, roots)
    try:
        images = [_read_one(source, str(name), csv_path) for name in table["filename"]]
    finally:
        if isinstance(source, zipfile.ZipFile):
            source.close()
    if image_size is not None:
        images = [resize_uint8(img, int(image_size)) for img in images]
    shapes = sorted({img.shape for img in images})
    if len(shapes) > 1:
        raise ShapeError(f"{csv_path}: the images have {len(shapes)} sizes ({shapes[:4]}); pass image_size= to "
                         "resize them to one")
    where = source.filename if isinstance(source, zipfile.ZipFile) else str(source)
    columns = ["stimulus_id"] + [c for c in table.columns if c != "stimulus_id"]
    return NeuralStimulusSet(name=identifier, images=np.stack(images), stimulus_ids=table["stimulus_id"].to_numpy(),
                             labels=table[columns].reset_index(drop=True),
                             meta={"identifier": identifier, "csv": str(csv_path), "images": where})
