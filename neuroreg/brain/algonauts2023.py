"""The Algonauts 2023 challenge data (NSD responses on the fsaverage surface), from its released layout.

Files read under ``root/subjXX/`` (``XX`` = 01..08):

- ``training_split/training_images/train-NNNN_nsd-NNNNN.png``: sorted by name,
  they are the rows of the fMRI arrays; ``nsd-NNNNN`` is the 0-based NSD 73k id.
- ``training_split/training_fmri/{lh,rh}_training_fmri.npy``: float
  ``(n_images, n_vertices_hemi)``; memory-mapped, only the requested vertices are copied.
- ``roi_masks/{lh,rh}.<family>_challenge_space.npy``: one integer label per
  challenge vertex (0 = none) and ``roi_masks/mapping_<family>.npy``: the dict
  label -> ROI name, for families ``prf-visualrois``, ``floc-bodies``,
  ``floc-faces``, ``floc-places``, ``floc-words``, ``streams``. The dicts are
  pickled inside the .npy files; they are read with an unpickler that only
  builds numpy arrays, dicts, strings and numbers.
- ``roi_masks/{lh,rh}.all-vertices_fsaverage_space.npy`` (optional): which of the
  163,842 fsaverage vertices are challenge vertices, in order; with a surface it
  gives each vertex its fsaverage coordinates.
- ``test_split/test_images/test-NNNN_nsd-NNNNN.png``: via :func:`algonauts2023_images`.
"""

from __future__ import annotations

import io
import pickle
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from neuroreg._utils.io import reading
from neuroreg.brain.data import BrainData
from neuroreg.brain.generic import read_image
from neuroreg.errors import DataFormatError, NonFiniteError, NotAvailableError, ShapeError, UnknownNameError

__all__ = ["load_algonauts2023", "algonauts2023_images", "read_roi_mapping", "ALGONAUTS2023_ROI_FAMILIES"]

#: ROI families of the challenge, in the order their labels fill ``unit_info["roi"]``.
ALGONAUTS2023_ROI_FAMILIES = ("prf-visualrois", "floc-bodies", "floc-faces", "floc-places", "floc-words", "streams")
_HEMIS = ("lh", "rh")
_NAME = re.compile(r"(?:train|test)-(\d+)_nsd-(\d+)\.png$")


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays, dtypes and scalars plus plain containers; nothing else."""

    _ALLOWED = {
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("builtins", "dict"), ("builtins", "list"), ("builtins", "tuple"), ("builtins", "set"),
        ("builtins", "str"), ("builtins", "int"), ("builtins", "float"), ("builtins", "bool"),
        ("collections", "OrderedDict"), ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a mapping file")
        return super().find_class(module, name)


def read_roi_mapping(path: str | Path) -> dict[int, str]:
    """The label -> ROI name dict stored (pickled) in an Algonauts ``mapping_<family>.npy`` file."""
    path = Path(path)
    with reading(path, "the ROI mapping"), open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            _, _, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            _, _, dtype = np.lib.format.read_array_header_2_0(f)
        if dtype.hasobject:
            try:
                obj = _RestrictedUnpickler(io.BytesIO(f.read())).load()
            except pickle.UnpicklingError as err:
                raise DataFormatError(f"{path}: {err}") from None
        else:
            f.seek(0)
            obj = np.load(f, allow_pickle=False)
    if isinstance(obj, np.ndarray) and obj.dtype.hasobject and obj.shape == ():
        obj = obj.item()
    if not isinstance(obj, Mapping):
        raise DataFormatError(f"{path} must hold a dict label -> ROI name; got {type(obj).__name__}")
    return {int(k): str(v) for k, v in obj.items()}


def _subject_dir(root: Path, subject: int) -> Path:
    if isinstance(subject, bool) or not isinstance(subject, (int, np.integer)) or not 1 <= subject <= 8:
        raise ValueError(f"subject must be an int in 1..8; got {subject!r}")
    folder = root / f"subj{subject:02d}"
    if not folder.is_dir():
        raise FileNotFoundError(f"Algonauts 2023 subject folder not found: {folder}")
    return folder


def algonauts2023_images(root: str | Path, subject: int = 1, split: str = "training") -> tuple[list[Path], np.ndarray]:
    """(sorted image paths, 0-based NSD ids) of the ``"training"`` or ``"test"`` split."""
    if split not in ("training", "test"):
        raise ValueError(f"split must be 'training' or 'test'; got {split!r}")
    folder = _subject_dir(Path(root), subject) / f"{split}_split" / f"{split}_images"
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".png")
    if not paths:
        raise FileNotFoundError(f"no .png images in {folder}")
    ids = []
    for p in paths:
        m = _NAME.search(p.name)
        if m is None:
            raise DataFormatError(f"image name {p.name!r} does not follow {split[:5]}-NNNN_nsd-NNNNN.png")
        ids.append(int(m.group(2)))
    return paths, np.asarray(ids, dtype=np.int64)


def _surface_coords(surface, hemi: str) -> np.ndarray:
    if isinstance(surface, str) and surface == "nilearn":
        try:
            from nilearn import datasets, surface as nl_surface  # optional: not a dependency
        except ImportError:
            raise NotAvailableError("surface='nilearn' needs nilearn (pip install nilearn)") from None
        fs = datasets.fetch_surf_fsaverage("fsaverage")
        return np.asarray(nl_surface.load_surf_mesh(fs[f"pial_{'left' if hemi == 'lh' else 'right'}"])[0])
    if not isinstance(surface, Mapping) or hemi not in surface:
        raise ValueError(f"surface must be 'nilearn' or a dict with 'lh' and 'rh' entries; got {type(surface).__name__}")
    value = surface[hemi]
    if isinstance(value, (str, Path)):
        try:
            from nibabel.freesurfer import read_geometry  # optional: the neuroimaging extra
        except ImportError:
            raise NotAvailableError("reading FreeSurfer surfaces needs nibabel; install the neuroimaging extra "
                                    "(pip install 'neuroreg[neuroimaging]')") from None
        return np.asarray(read_geometry(str(value))[0])
    coords = np.asarray(value, dtype=np.float64)
    if coords.ndim != 2 or coords.shape[1] != 3:
        raise ShapeError(f"surface[{hemi!r}] must be (n_vertices, 3) coordinates; got shape {coords.shape}")
    return coords


def load_algonauts2023(root: str | Path, subject: int = 1, rois: Sequence[str] | None = None, *,
                       hemispheres: Sequence[str] = _HEMIS, surface: Any = None,
                       load_images: bool = False) -> BrainData:
    """Training-split responses of one Algonauts 2023 subject, left then right hemisphere.

    Parameters
    ----------
    root: the challenge folder holding ``subj01`` .. ``subj08``.
    rois: ``None`` for every challenge vertex, or ROI names (``"V1v"``, ``"EBA"``,
        ``"FFA-1"`` ...) and/or family names (``"floc-bodies"``) to keep the
        vertices labelled with any of them.
    hemispheres: which of ``"lh"``, ``"rh"`` to read (always in lh, rh order).
    surface: fsaverage coordinates per vertex: a dict ``{"lh": ..., "rh": ...}``
        of ``(163842, 3)`` arrays or FreeSurfer surface files (nibabel), or
        ``"nilearn"`` (nilearn's fsaverage; nilearn may download it). Needs the
        ``*.all-vertices_fsaverage_space.npy`` masks.
    load_images: also read the training images into ``stimuli`` (uint8, PIL).

    Returns
    -------
    :class:`BrainData` ``(n_images, n_vertices)``: ``stimulus_ids`` are 0-based NSD
    73k ids from the file names; ``unit_info`` holds ``hemisphere``, ``vertex``
    (index within the hemisphere's challenge space), ``subject``, one
    ``roi_<family>`` column per family present (``-`` written ``_``; label name
    or ``""``) and ``roi``: the first requested ROI holding the vertex, or with
    ``rois=None`` the vertex's label in the first family (in
    :data:`ALGONAUTS2023_ROI_FAMILIES` order) that labels it, else ``"Unknown"``;
    ``coords`` ``(V, 3)`` when ``surface`` is given.
    """
    root = Path(root)
    sub = _subject_dir(root, subject)
    hemis = [h for h in _HEMIS if h in set(hemispheres)]
    bad = set(hemispheres) - set(_HEMIS)
    if bad or not hemis:
        raise ValueError(f"hemispheres must be a subset of {_HEMIS}; got {list(hemispheres)}")
    paths, ids = algonauts2023_images(root, subject, "training")
    roi_dir = sub / "roi_masks"
    mappings = {fam: read_roi_mapping(roi_dir / f"mapping_{fam}.npy") for fam in ALGONAUTS2023_ROI_FAMILIES
                if (roi_dir / f"mapping_{fam}.npy").is_file()}
    wanted = _wanted_rois(rois, roi_dir, mappings)

    blocks, info_parts = [], []
    for hemi in hemis:
        block, part = _read_hemisphere(sub, hemi, len(ids), mappings, wanted, surface)
        blocks.append(block)
        info_parts.append(part)
    if sum(b.shape[1] for b in blocks) == 0:
        raise ValueError(f"no vertex of subject {subject} is in the ROIs {wanted}")
    keys = [k for k in info_parts[0] if all(k in p for p in info_parts)]
    info = {k: np.concatenate([p[k] for p in info_parts]) for k in keys}
    n_units = len(info["vertex"])
    info["subject"] = np.full(n_units, subject)
    responses = np.concatenate(blocks, axis=1) if len(blocks) > 1 else blocks[0]
    stimuli = np.stack([np.asarray(read_image(p)) for p in paths]) if load_images else None
    return BrainData(responses, ids, info, stimuli=stimuli, name=f"Algonauts2023 subj{subject:02d}")


def _wanted_rois(rois: Sequence[str] | str | None, roi_dir: Path,
                 mappings: Mapping[str, Mapping[int, str]]) -> list[str] | None:
    """The requested ROI/family names as a list (None: every vertex), each checked against the mapping files."""
    if rois is None:
        return None
    wanted = [str(r) for r in ([rois] if isinstance(rois, str) else rois)]
    if not roi_dir.is_dir():
        raise FileNotFoundError(f"rois={wanted} needs the ROI folder {roi_dir}, which does not exist (it holds "
                                "mapping_<family>.npy and <hemi>.<family>_challenge_space.npy); rois=None "
                                "reads every vertex without it")
    if not mappings:
        raise FileNotFoundError(f"rois={wanted} needs the ROI names in {roi_dir}/mapping_<family>.npy; the "
                                f"folder holds none of {[f'mapping_{f}.npy' for f in ALGONAUTS2023_ROI_FAMILIES]}")
    known = set(mappings) | {n for m in mappings.values() for n in m.values()}
    unknown = [r for r in wanted if r not in known]
    if unknown:
        raise UnknownNameError(f"unknown ROI names {unknown}; known: {sorted(known - {'Unknown'})}")
    return wanted


def _family_labels(roi_dir: Path, hemi: str, mappings: Mapping[str, Mapping[int, str]],
                   n_v: int) -> dict[str, np.ndarray]:
    """family -> ``(n_v,)`` label name of every challenge vertex of ``hemi`` (``""`` where unlabelled)."""
    labels: dict[str, np.ndarray] = {}
    for fam, mapping in mappings.items():
        path = roi_dir / f"{hemi}.{fam}_challenge_space.npy"
        if not path.is_file():
            continue
        with reading(path, "the ROI labels"):
            lab = np.load(path, allow_pickle=False)
        if lab.shape != (n_v,):
            raise DataFormatError(f"{path.name} must have one label per vertex ({n_v}); got shape {lab.shape}")
        if n_v and (not np.isfinite(lab).all() or lab.min() < 0):
            raise DataFormatError(f"{path.name} must hold non-negative integer labels; found min {lab.min()}")
        names = np.array([mapping.get(int(v), f"{fam}_{int(v)}") if v != 0 else "" for v in range(int(lab.max()) + 1)])
        labels[fam] = names[np.rint(lab).astype(np.int64)]
    return labels


def _vertex_rois(labels: Mapping[str, np.ndarray], wanted: list[str] | None,
                 n_v: int) -> tuple[np.ndarray, np.ndarray]:
    """(``(n_v,)`` ROI name of each vertex, ``"Unknown"`` where none; boolean mask of the vertices to keep)."""
    roi = np.full(n_v, "", dtype=object)
    if wanted is None:
        keep = np.ones(n_v, dtype=bool)
        for fam in ALGONAUTS2023_ROI_FAMILIES:
            if fam in labels:
                empty = roi == ""
                roi[empty] = labels[fam][empty]
    else:
        for name in wanted:
            hit = np.zeros(n_v, dtype=bool)
            if name in labels:
                hit = labels[name] != ""
                value = labels[name]
            else:
                for lab in labels.values():
                    hit |= lab == name
                value = np.full(n_v, name, dtype=object)
            take = hit & (roi == "")
            roi[take] = value[take]
        keep = roi != ""
    roi[roi == ""] = "Unknown"
    return roi, keep


def _fsaverage_coords(roi_dir: Path, hemi: str, surface: Any, n_v: int, vertices: np.ndarray) -> np.ndarray:
    """``(len(vertices), 3)`` fsaverage coordinates of the kept challenge vertices of ``hemi``."""
    fs_path = roi_dir / f"{hemi}.all-vertices_fsaverage_space.npy"
    if not fs_path.is_file():
        raise FileNotFoundError(f"surface coordinates need {fs_path}")
    with reading(fs_path, "the vertex mask"):
        fs_vertices = np.flatnonzero(np.load(fs_path, allow_pickle=False))
    if len(fs_vertices) != n_v:
        raise DataFormatError(f"{fs_path.name} marks {len(fs_vertices)} vertices; the fMRI has {n_v}")
    coords = _surface_coords(surface, hemi)
    if coords.shape[0] <= fs_vertices.max():
        raise ShapeError(f"the {hemi} surface has {coords.shape[0]} vertices; the mask needs "
                         f"{fs_vertices.max() + 1}")
    return coords[fs_vertices[vertices]]


def _read_hemisphere(sub: Path, hemi: str, n_images: int, mappings: Mapping[str, Mapping[int, str]],
                     wanted: list[str] | None, surface: Any) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(float64 ``(n_images, V)`` responses of the kept vertices of ``hemi``, their per-vertex info)."""
    fmri_path = sub / "training_split" / "training_fmri" / f"{hemi}_training_fmri.npy"
    if not fmri_path.is_file():
        raise FileNotFoundError(f"fMRI file not found: {fmri_path}")
    with reading(fmri_path, "the fMRI array"):
        fmri = np.load(fmri_path, mmap_mode="r", allow_pickle=False)
    if fmri.ndim != 2 or fmri.shape[0] != n_images:
        raise DataFormatError(f"{fmri_path.name} must be (n_images={n_images}, n_vertices); got {fmri.shape}")
    n_v = fmri.shape[1]
    roi_dir = sub / "roi_masks"
    labels = _family_labels(roi_dir, hemi, mappings, n_v)
    roi, keep = _vertex_rois(labels, wanted, n_v)
    vertices = np.flatnonzero(keep)
    part: dict[str, np.ndarray] = {"hemisphere": np.full(len(vertices), hemi), "vertex": vertices,
                                   "roi": roi[vertices].astype(str)}
    for fam, lab in labels.items():
        part[f"roi_{fam.replace('-', '_')}"] = lab[vertices].astype(str)
    if surface is not None:
        part["coords"] = _fsaverage_coords(roi_dir, hemi, surface, n_v, vertices)
    block = np.asarray(fmri[:, vertices], dtype=np.float64)
    non_finite = ~np.isfinite(block)
    if non_finite.any():
        row, col = (int(v) for v in np.argwhere(non_finite)[0])
        raise NonFiniteError(f"{fmri_path}: the fMRI array holds {int(non_finite.sum())} NaN or inf values (first at "
                             f"image row {row}, vertex {int(vertices[col])}); the challenge arrays hold "
                             "finite values")
    return block, part
