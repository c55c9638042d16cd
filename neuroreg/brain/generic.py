"""Neural data in common file formats: responses (npz, HDF5, CSV) and RDMs (.mat, rsatoolbox HDF5, Net2Brain .npz).

Response files
--------------
- ``.npz``: ``responses`` ``(n_stimuli, n_units)``; optional ``stimulus_ids``
  ``(n,)``, ``trials`` ``(n_repeats, n, n_units)`` and per-unit arrays named
  ``unit_<key>`` (``unit_roi``, ``unit_coords``, ...) that become ``unit_info[key]``.
- ``.h5``/``.hdf5``: the same names as datasets, per-unit arrays in a group
  ``unit_info``; ``units=`` reads only those columns.
- ``.csv``: one row per stimulus, a ``stimulus_id`` column (``id_column=``) and
  one column per unit (the header gives ``unit_info["name"]``).

RDM files
---------
- ``.mat``: the MATLAB RSA toolbox layout (Nili et al. 2014): a struct array
  with fields ``RDM`` (square matrix or upper-triangle vector) and ``name``,
  entries taken in row-major order of the struct array; or a plain numeric
  ``(n, n)`` / ``(k, n, n)`` variable.
- ``.h5``/``.hdf5``: ``rsatoolbox.rdm.RDMs.save(..., file_type="hdf5")``:
  ``dissimilarities`` ``(k, n(n-1)/2)``, groups ``rdm_descriptors`` and
  ``pattern_descriptors``, attribute ``dissimilarity_measure``.
- ``.npz`` (Net2Brain): ``arr_0`` (or ``key=``) holding ``(k, n, n)`` or ``(n, n)``.
- ``.npy``: a plain ``(n, n)`` or ``(k, n, n)`` array.
"""

from __future__ import annotations

import contextlib
import csv
import io
from pathlib import Path
from typing import Any, Iterator, Sequence

import h5py
import numpy as np
import scipy.io
import torch
from PIL import Image

from neuroreg._utils.condensed import n_from_condensed, square
from neuroreg._utils.images import list_images, resize_images
from neuroreg._utils.io import read_text, reading
from neuroreg.brain.data import BrainData, RDMSet
from neuroreg.errors import DataFormatError, NeuroregError, ShapeError, StimulusMismatchError

__all__ = ["load_responses", "load_rdms", "load_stimulus_folder", "read_image"]


def _strings(values) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype.kind == "S":
        return arr.astype(str)
    if arr.dtype.kind == "O":
        return np.array([v.decode() if isinstance(v, bytes) else str(v) for v in arr.ravel()]).reshape(arr.shape)
    return arr


@contextlib.contextmanager
def _naming(path: Path) -> Iterator[None]:
    """Re-raise a container's refusal of what a file holds (NaN, duplicate ids, asymmetric RDMs) naming the file."""
    try:
        yield
    except (ValueError, TypeError) as exc:
        if str(exc).startswith(str(path)):
            raise
        # neuroreg's own types (NonFiniteError, ShapeError, ...) are kept; a plain refusal is a format error
        kind = type(exc) if isinstance(exc, NeuroregError) else DataFormatError
        raise kind(f"{path}: {exc}") from exc


# ----------------------------------------------------------------------------- stimuli
def read_image(path: str | Path) -> Image.Image:
    """The image file at ``path`` as a decoded RGB PIL image.

    A corrupt, truncated or foreign file raises ``DataFormatError: <path>: cannot
    read the image: ...`` (PIL's own errors name neither the file nor, for a
    truncated JPEG, the problem); a missing file stays ``FileNotFoundError``.
    Picklable (a module-level function), so it serves as torchvision's
    ``ImageFolder(loader=read_image)`` in DataLoader workers.
    """
    with reading(path, "the image"), Image.open(path) as img:
        return img.convert("RGB")


def resize_uint8(image: np.ndarray, size: int) -> np.ndarray:
    """uint8 ``(H, W, 3)`` image -> uint8 ``(size, size, 3)``: the one resize (bicubic, antialiased), rounded.

    The image as it is when already ``size x size``.
    """
    x = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).float().div_(255.0)
    out = resize_images(x, size, interpolation="bicubic")   # clamped to [0, 1]: bicubic overshoots
    return out.mul_(255.0).round_().to(torch.uint8).permute(1, 2, 0).numpy()


def load_stimulus_folder(folder: str | Path, stimulus_ids: Sequence[Any], image_size: int | None = None) -> np.ndarray:
    """uint8 ``(n, H, W, 3)`` images for ``stimulus_ids``, matched to files by stem (``id.jpg``) or relative path.

    All images must share one size unless ``image_size`` resizes them to a square (:func:`resize_uint8`).
    """
    folder = Path(folder)
    files = list_images(folder)
    by_key: dict[str, Path] = {}
    for p in files:
        by_key.setdefault(p.stem, p)
        by_key[str(p.relative_to(folder))] = p
    missing = [str(s) for s in stimulus_ids if str(s) not in by_key]
    if missing:
        raise StimulusMismatchError(f"{len(missing)} stimulus ids have no image in {folder} (matched by file stem "
                                    f"or relative path; first: {missing[:5]})")
    frames = []
    for sid in stimulus_ids:
        frame = np.asarray(read_image(by_key[str(sid)]))
        frames.append(frame if image_size is None else resize_uint8(frame, image_size))
    sizes = {f.shape for f in frames}
    if len(sizes) > 1:
        raise ShapeError(f"images in {folder} differ in size {sorted(sizes)[:4]}; pass image_size= to resize them")
    return np.stack(frames)


# ----------------------------------------------------------------------------- responses
def _from_npz(path: Path) -> tuple[np.ndarray, Any, np.ndarray | None, dict]:
    with np.load(path, allow_pickle=False) as npz:
        if "responses" not in npz.files:
            raise DataFormatError(f"{path} has no 'responses' array (arrays: {npz.files})")
        responses = npz["responses"]
        ids = _strings(npz["stimulus_ids"]) if "stimulus_ids" in npz.files else None
        trials = npz["trials"] if "trials" in npz.files else None
        info = {k[len("unit_"):]: _strings(npz[k]) for k in npz.files if k.startswith("unit_")}
    return responses, ids, trials, info


def _from_hdf5(path: Path, units) -> tuple[np.ndarray, Any, np.ndarray | None, dict]:
    with h5py.File(path, "r") as f:
        if "responses" not in f:
            raise DataFormatError(f"{path} has no 'responses' dataset (keys: {list(f.keys())})")
        ds = f["responses"]
        if ds.ndim != 2:
            raise DataFormatError(f"{path}: 'responses' must be (n_stimuli, n_units); got {ds.shape}")
        cols: slice | np.ndarray
        if units is None:
            cols = slice(None)
            order = None
        else:
            idx = np.asarray(units, dtype=np.int64).ravel()
            if len(idx) == 0 or idx.min() < 0 or idx.max() >= ds.shape[1]:
                raise ShapeError(f"units must be indices in 0..{ds.shape[1] - 1} (the file has {ds.shape[1]} units); "
                                 f"got {idx[:5].tolist()}...")
            cols, order = np.unique(idx, return_inverse=True)  # h5py needs increasing indices
        responses = ds[:, cols]
        trials = f["trials"][:, :, cols] if "trials" in f else None
        ids = _strings(f["stimulus_ids"][()]) if "stimulus_ids" in f else None
        info = {}
        if "unit_info" in f:
            for k, v in f["unit_info"].items():
                arr = v[()]
                info[k] = _strings(arr[cols] if units is not None else arr)
    if order is not None:
        responses = responses[:, order]
        trials = trials[:, :, order] if trials is not None else None
        info = {k: v[order] for k, v in info.items()}
    return responses, ids, trials, info


def _from_csv(path: Path, id_column: str) -> tuple[np.ndarray, Any, None, dict]:
    rows = list(csv.reader(io.StringIO(read_text(path), newline="")))
    if len(rows) < 2:
        raise DataFormatError(f"{path}: needs a header and at least one row")
    header = rows[0]
    if id_column not in header:
        raise DataFormatError(f"{path} has no {id_column!r} column (columns: {header[:10]})")
    k = header.index(id_column)
    unit_names = [h for j, h in enumerate(header) if j != k]
    ids, values = [], []
    line_of: dict[str, int] = {}
    for line_no, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise DataFormatError(f"{path}: line {line_no} has {len(row)} fields; the header has {len(header)}")
        if row[k] in line_of:
            raise DataFormatError(f"{path}: {id_column} {row[k]!r} is on lines {line_of[row[k]]} and {line_no}; "
                                  "each stimulus must have one row")
        if not row[k].strip():
            raise DataFormatError(f"{path}: line {line_no} has an empty {id_column}")
        line_of[row[k]] = line_no
        ids.append(row[k])
        try:
            values.append([float(v) for j, v in enumerate(row) if j != k])
        except ValueError as err:
            raise DataFormatError(f"{path}: line {line_no}: {err}") from None
    return np.asarray(values), np.asarray(ids), None, {"name": np.asarray(unit_names)}


def load_responses(path: str | Path, *, stimuli: str | Path | None = None, units: Sequence[int] | None = None,
                   id_column: str = "stimulus_id", image_size: int | None = None, name: str | None = None) -> BrainData:
    """Neural responses from an npz, HDF5 or CSV file (see the module docstring for the layouts).

    ``stimuli``: a folder whose images are matched to the stimulus ids by file
    stem or relative path and stored in ``BrainData.stimuli``. ``units``: column
    indices to read (HDF5 reads only those; other formats select after loading).
    Stimulus ids default to ``0..n-1`` when the file has none.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"response file not found: {path}")
    suffix = "".join(path.suffixes[-1:]).lower()
    if suffix not in (".npz", ".h5", ".hdf5", ".csv"):
        raise DataFormatError(f"unknown response file type {suffix!r} for {path}; use .npz, .h5/.hdf5 or .csv")
    with reading(path, "the responses"):
        if suffix == ".npz":
            responses, ids, trials, info = _from_npz(path)
        elif suffix in (".h5", ".hdf5"):
            responses, ids, trials, info = _from_hdf5(path, units)
            units = None
        else:
            responses, ids, trials, info = _from_csv(path, id_column)
    responses = np.asarray(responses)
    if responses.ndim != 2:
        raise DataFormatError(f"{path}: responses must be (n_stimuli, n_units); got shape {responses.shape}")
    if units is not None:
        idx = np.asarray(units, dtype=np.int64).ravel()
        if len(idx) == 0 or idx.min() < 0 or idx.max() >= responses.shape[1]:
            raise ValueError(f"units must be indices in 0..{responses.shape[1] - 1}")
        responses = responses[:, idx]
        trials = trials[:, :, idx] if trials is not None else None
        info = {k: v[idx] for k, v in info.items()}
    if ids is None:
        ids = np.arange(responses.shape[0])
    images = load_stimulus_folder(stimuli, ids, image_size) if stimuli is not None else None
    with _naming(path):
        return BrainData(responses, ids, info, trials=trials, stimuli=images, name=name or path.stem)


# ----------------------------------------------------------------------------- RDMs
def _square_stack(arr: np.ndarray, where: str) -> np.ndarray:
    arr = np.asarray(arr, dtype=np.float64)
    if arr.ndim == 2 and arr.shape[0] == arr.shape[1]:
        return arr[None]
    if arr.ndim == 3 and arr.shape[1] == arr.shape[2]:
        return arr
    raise DataFormatError(f"{where} must hold (n, n) or (k, n, n) RDMs; got shape {arr.shape}")


def _condensed_to_square(vec: np.ndarray, where: str) -> np.ndarray:
    if n_from_condensed(vec.size) is None:
        raise DataFormatError(f"{where}: an RDM vector of length {vec.size} is not n(n-1)/2 for any n")
    return square(np.asarray(vec, dtype=np.float64).ravel())


def _from_mat(path: Path, key: str | None) -> tuple[np.ndarray, list[str] | None]:
    with reading(path, "the MATLAB file"):
        mat = scipy.io.loadmat(str(path), squeeze_me=False)
    variables = {k: v for k, v in mat.items() if not k.startswith("__")}
    if key is not None:
        if key not in variables:
            raise DataFormatError(f"{path} has no variable {key!r} (variables: {sorted(variables)})")
        candidates = {key: variables[key]}
    else:
        candidates = {k: v for k, v in variables.items()
                      if isinstance(v, np.ndarray) and v.dtype.names is not None and "RDM" in v.dtype.names}
        if not candidates:
            candidates = {k: v for k, v in variables.items() if isinstance(v, np.ndarray) and v.dtype.kind in "fiu"}
        if len(candidates) != 1:
            raise DataFormatError(f"{path}: cannot tell which variable holds the RDMs ({sorted(candidates) or 'none'}); "
                                  "pass key=")
    var_name, value = next(iter(candidates.items()))
    if value.dtype.names is None:
        return _square_stack(value, f"{path}:{var_name}"), None
    if "RDM" not in value.dtype.names:
        raise DataFormatError(f"{path}:{var_name} is a struct without an 'RDM' field (fields: {value.dtype.names})")
    mats, names = [], []
    for entry in value.ravel(order="C"):
        rdm = np.asarray(entry["RDM"], dtype=np.float64)
        if rdm.ndim == 2 and rdm.shape[0] == rdm.shape[1] and rdm.shape[0] > 1:
            mats.append(rdm)
        else:
            mats.append(_condensed_to_square(rdm.ravel(), f"{path}:{var_name}"))
        if "name" in value.dtype.names and np.asarray(entry["name"]).size:
            names.append(str(np.asarray(entry["name"]).ravel()[0]))
        else:
            names.append(f"{var_name}[{len(names)}]")
    shapes = {m.shape for m in mats}
    if len(shapes) != 1:
        raise DataFormatError(f"{path}:{var_name} holds RDMs of different sizes {sorted(shapes)}")
    return np.stack(mats), names


def load_rdms(path: str | Path, *, key: str | None = None, region: Any = None, subject: Any = None,
              stimulus_ids: Sequence[Any] | None = None, metric: str | None = None) -> RDMSet:
    """An :class:`RDMSet` from a .mat, rsatoolbox HDF5, Net2Brain .npz or .npy file.

    ``key`` picks the variable/array when the file holds several. ``region``,
    ``subject``, ``stimulus_ids`` and ``metric`` override what the file says
    (rsatoolbox files carry rdm descriptors ``name``/``roi``/``subject``,
    pattern descriptors ``conds``/``stimulus`` and the dissimilarity measure).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"RDM file not found: {path}")
    suffix = path.suffix.lower()
    names, meta_region, meta_subject, meta_ids, meta_metric = None, None, None, None, "unknown"
    if suffix == ".mat":
        stack, names = _from_mat(path, key)
    elif suffix in (".h5", ".hdf5"):
        with reading(path, "the RDM file"), h5py.File(path, "r") as f:
            if "dissimilarities" not in f:
                raise DataFormatError(f"{path} is not an rsatoolbox RDMs file: no 'dissimilarities' (keys: {list(f)})")
            vecs = np.atleast_2d(np.asarray(f["dissimilarities"][()], dtype=np.float64))
            stack = np.stack([_condensed_to_square(v, str(path)) for v in vecs])
            desc = {k: _strings(v[()]) for k, v in f["rdm_descriptors"].items()} if "rdm_descriptors" in f else {}
            pdesc = {k: _strings(v[()]) for k, v in f["pattern_descriptors"].items()} if "pattern_descriptors" in f else {}
            if "dissimilarity_measure" in f.attrs:
                meta_metric = str(_strings(np.asarray(f.attrs["dissimilarity_measure"])).ravel()[0])
        k = stack.shape[0]
        if "name" in desc and len(desc["name"]) == k:
            names = [str(v) for v in desc["name"]]
        for field in ("roi", "region"):
            if field in desc and len(desc[field]) == k:
                meta_region = desc[field].tolist()
        if "subject" in desc and len(desc["subject"]) == k:
            meta_subject = desc["subject"].tolist()
        for field in ("conds", "stimulus", "stimulus_ids", "stimuli"):
            if field in pdesc and len(pdesc[field]) == stack.shape[1]:
                meta_ids = pdesc[field]
                break
    elif suffix == ".npz":
        with reading(path, "the RDM file"), np.load(path, allow_pickle=False) as npz:
            if key is None:
                key = "arr_0" if "arr_0" in npz.files else (npz.files[0] if len(npz.files) == 1 else None)
            if key is None or key not in npz.files:
                raise DataFormatError(f"{path}: pass key= to choose among arrays {npz.files}")
            stack = _square_stack(npz[key], f"{path}:{key}")
    elif suffix == ".npy":
        with reading(path, "the RDM file"):
            arr = np.load(path, allow_pickle=False)
        stack = _square_stack(arr, str(path))
    else:
        raise DataFormatError(f"unknown RDM file type {suffix!r} for {path}; use .mat, .h5/.hdf5, .npz or .npy")
    with _naming(path):
        return RDMSet(stack, names=names, region=region if region is not None else meta_region,
                      subject=subject if subject is not None else meta_subject,
                      stimulus_ids=stimulus_ids if stimulus_ids is not None else meta_ids,
                      metric=metric or meta_metric, meta={"source": str(path)})
