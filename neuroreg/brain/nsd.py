"""The Natural Scenes Dataset (Allen et al. 2022) from its public directory layout, in bounded memory.

Files read, relative to ``root`` (``XX`` = subject, ``NN`` = session, both
zero-padded; ``<space>`` = ``func1pt8mm`` or ``func1mm``; ``<betas>`` =
``betas_fithrf_GLMdenoise_RR`` by default):

- ``nsddata/experiments/nsd/nsd_expdesign.mat``: ``masterordering``
  (1 x 30,000, 1-based indices into a subject's 10,000 images, one per trial in
  presentation order), ``subjectim`` (8 x 10,000, 1-based 73k ids), ``sharedix``
  (1 x 1,000, 1-based 73k ids of the shared images).
- ``nsddata_betas/ppdata/subjXX/<space>/<betas>/betas_sessionNN.hdf5``: dataset
  ``betas`` int16, percent signal change x 300, 750 trials per session. MATLAB
  wrote these files, so h5py sees the axes reversed relative to the NIfTI
  volumes: ``(n_trials, Z, Y, X)`` where the NIfTI betas are ``(X, Y, Z, n_trials)``.
  The public files are chunked ``(750, 1, 1, 1)`` (every trial of one voxel per
  chunk); they are read in that geometry, each chunk once.
- or, where only those were downloaded, ``betas_sessionNN.nii.gz`` (``(X, Y, Z,
  n_trials)`` int16, the same x 300 values; needs nibabel). A session with both
  is read from the HDF5 file.
- ``nsddata/ppdata/subjXX/<space>/roi/<roi>.nii.gz`` (or ``.nii``/``.npy``): ROI
  volume in NIfTI order ``(X, Y, Z)``; values > 0 are in the ROI (nsdgeneral:
  1 in, 0 out, -1 outside the brain; atlases use one integer per label).
  Optional ``lh.<roi>``/``rh.<roi>`` volumes give the hemisphere.
- ``nsddata/freesurfer/subjXX/label/<roi>.mgz.ctab``, else
  ``nsddata/freesurfer/fsaverage/label/<roi>.mgz.ctab`` (optional): label names
  (the subject-drawn ROIs keep their tables in the subject's folder).
- ``nsddata_betas/ppdata/subjXX/<space>/<betas>/ncsnr.nii.gz`` (optional):
  noise-ceiling SNR per voxel.
- ``nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5``: ``imgBrick``
  (73,000 x 425 x 425 x 3 uint8), read row by row only when images are asked for.

Stimulus ids are 0-based 73k ids (``nsdId`` in NSD's stimulus table, the row
of ``imgBrick``, the number in Algonauts 2023 file names): 73k id - 1.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence

import h5py
import numpy as np
import scipy.io
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from neuroreg._utils.images import resize_images
from neuroreg._utils.io import reading
from neuroreg.brain._nsd_sessions import (NSD_TRIALS_PER_SESSION, read_session, sessions_to_read,
                                          zscore_rows_inplace)
from neuroreg.brain._volumes import find_volume, read_volume
from neuroreg.brain.data import BrainData
from neuroreg.errors import DataFormatError, StimulusMismatchError

__all__ = ["load_nsd", "read_nsd_design", "NSDDesign", "NSDImages", "NSD_TRIALS_PER_SESSION"]

_SPACES = ("func1pt8mm", "func1mm")


class NSDDesign:
    """The experimental design of one subject, from ``nsd_expdesign.mat``.

    Attributes
    ----------
    trial_image: ``(30000,)`` 0-based 73k id shown on each trial, in presentation order.
    trial_session: ``(30000,)`` 1-based session of each trial (750 per session).
    shared: ``(1000,)`` 0-based 73k ids of the shared images, in ``sharedix`` order.
    subject_images: ``(10000,)`` 0-based 73k ids of the subject's images.
    """

    def __init__(self, masterordering, subjectim, sharedix, subject: int) -> None:
        order = np.asarray(masterordering).ravel().astype(np.int64)
        subjectim = np.asarray(subjectim)
        shared = np.asarray(sharedix).ravel().astype(np.int64)
        if subjectim.ndim != 2:
            raise DataFormatError(f"subjectim must be 2-D (subjects x images); got shape {subjectim.shape}")
        if not 1 <= subject <= subjectim.shape[0]:
            raise ValueError(f"subject must be in 1..{subjectim.shape[0]}; got {subject}")
        row = subjectim[subject - 1].astype(np.int64)
        if order.min() < 1 or order.max() > len(row):
            raise DataFormatError(
                f"masterordering must hold 1-based indices in 1..{len(row)}; found {order.min()}..{order.max()}")
        if row.min() < 1 or shared.min() < 1:
            raise DataFormatError("subjectim and sharedix must hold 1-based 73k ids (>= 1)")
        self.subject = subject
        self.subject_images = row - 1
        self.trial_image = self.subject_images[order - 1]
        self.trial_session = np.arange(len(order)) // NSD_TRIALS_PER_SESSION + 1
        self.shared = shared - 1

    def __repr__(self) -> str:
        return (f"NSDDesign(subject={self.subject}, n_trials={len(self.trial_image)}, "
                f"n_images={len(self.subject_images)}, n_shared={len(self.shared)})")


def read_nsd_design(root: str | Path, subject: int = 1) -> NSDDesign:
    """Read ``nsddata/experiments/nsd/nsd_expdesign.mat`` for one subject (1-based)."""
    path = Path(root) / "nsddata" / "experiments" / "nsd" / "nsd_expdesign.mat"
    if not path.is_file():
        raise FileNotFoundError(f"NSD design file not found: {path}")
    with reading(path, "the NSD design"):
        mat = scipy.io.loadmat(str(path), variable_names=["masterordering", "subjectim", "sharedix"])
    missing = [k for k in ("masterordering", "subjectim", "sharedix") if k not in mat]
    if missing:
        raise DataFormatError(f"{path} lacks the variables {missing}")
    return NSDDesign(mat["masterordering"], mat["subjectim"], mat["sharedix"], subject)


# ----------------------------------------------------------------------------- images
class NSDImages(Dataset):
    """NSD images read lazily from ``imgBrick`` in ``nsd_stimuli.hdf5``: one row per item.

    Items are float32 ``(3, H, W)`` tensors in [0, 1] (425 x 425 unless ``size``
    resizes them, bilinear and antialiased), in the order of ``stimulus_ids``
    (0-based 73k ids). The file is opened on first access in each worker.
    """

    def __init__(self, root: str | Path, stimulus_ids: Sequence[int], size: int | None = None) -> None:
        self.path = Path(root) / "nsddata_stimuli" / "stimuli" / "nsd" / "nsd_stimuli.hdf5"
        if not self.path.is_file():
            raise FileNotFoundError(f"NSD stimulus file not found: {self.path}")
        self.ids = np.asarray(stimulus_ids, dtype=np.int64)
        with reading(self.path, "the NSD stimuli"), h5py.File(self.path, "r") as f:
            if "imgBrick" not in f:
                raise DataFormatError(f"{self.path} has no dataset 'imgBrick'")
            shape = f["imgBrick"].shape
        if len(shape) != 4 or shape[3] != 3:
            raise DataFormatError(f"imgBrick must be (n, H, W, 3); got {shape}")
        if len(self.ids) and (self.ids.min() < 0 or self.ids.max() >= shape[0]):
            raise ValueError(f"stimulus_ids must be 0-based ids in 0..{shape[0] - 1}")
        self.size = size
        self._file: h5py.File | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> torch.Tensor:
        if self._file is None:
            self._file = h5py.File(self.path, "r")
        img = torch.from_numpy(self._file["imgBrick"][int(self.ids[i])]).permute(2, 0, 1).float().div_(255.0)
        return img if self.size is None else resize_images(img, self.size)

    def read_uint8(self) -> np.ndarray:
        """All images as one uint8 ``(n, H, W, 3)`` array (rows read in increasing order, then reordered)."""
        uniq, inverse = np.unique(self.ids, return_inverse=True)
        with h5py.File(self.path, "r") as f:
            rows = f["imgBrick"][uniq]
        return rows[inverse]

    def __getstate__(self):  # h5py handles cannot be pickled into DataLoader workers
        state = dict(self.__dict__)
        state["_file"] = None
        return state


# ----------------------------------------------------------------------------- ROI
def _read_ctab(path: Path) -> dict[int, str]:
    names = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2 and re.fullmatch(r"-?\d+", parts[0]):
            names[int(parts[0])] = parts[1]
    return names


def _label_names(root: Path, subject: int, roi: str) -> dict[int, str]:
    """Label value -> name for an ROI volume, from its FreeSurfer colour table (``<roi>.mgz.ctab``).

    NSD keeps the tables of the subject-drawn ROIs (``prf-visualrois``,
    ``prf-eccrois``, ``floc-*``) only in the subject's label folder and those of
    the fsaverage atlases (``nsdgeneral``, ``streams``, ...) in fsaverage's, so
    the subject's folder is searched first. Without a table: no names.
    """
    for folder in (f"subj{subject:02d}", "fsaverage"):
        ctab = root / "nsddata" / "freesurfer" / folder / "label" / f"{roi}.mgz.ctab"
        if ctab.is_file():
            return _read_ctab(ctab)
    return {}


def _roi_voxels(root: Path, subject: int, space: str, rois: list[str], roi_values) -> dict[str, np.ndarray]:
    """Voxel (x, y, z) indices, labels and hemispheres of the requested ROIs, in NIfTI C order."""
    folder = root / "nsddata" / "ppdata" / f"subj{subject:02d}" / space / "roi"
    masks: list[tuple[str, np.ndarray]] = []
    shape: tuple[int, ...] | None = None
    first: Path | None = None
    for roi in rois:
        path = find_volume(folder, roi)
        if path is None:
            raise FileNotFoundError(f"ROI volume {roi!r} not found: tried {folder / roi}.nii.gz/.nii/.npy")
        vol = read_volume(path)
        if shape is not None and vol.shape != shape:
            raise DataFormatError(f"{path}: the ROI volume has shape {vol.shape}; {first} has {shape} (one of them "
                                  f"is from another space or subject)")
        shape, first = vol.shape, first or path
        masks.append((roi, vol))
    if shape is None:
        raise ValueError(f"rois must name at least one ROI volume; got {rois!r}")
    label = np.zeros(shape, dtype=np.int64)
    name_id = np.zeros(shape, dtype=np.int32)  # index into label_names; 0 = not selected
    label_names = [""]
    for roi, vol in masks:
        values = np.rint(vol).astype(np.int64)
        keep = values > 0
        if roi_values is not None:
            keep &= np.isin(values, np.atleast_1d(roi_values))
        names = _label_names(root, subject, roi)
        n_labels = len(np.unique(values[keep]))
        for v in np.unique(values[keep]):
            sel = keep & (values == v)
            overlap = sel & (label > 0)
            if overlap.any():
                raise ValueError(f"ROIs overlap: {int(overlap.sum())} voxels of {roi!r} are already in another ROI")
            label[sel] = v
            label_names.append(names.get(int(v), roi if n_labels == 1 else f"{roi}_{int(v)}"))
            name_id[sel] = len(label_names) - 1
    xyz = np.argwhere(label > 0)
    if len(xyz) == 0:
        raise ValueError(f"the ROI selection {rois} (values {roi_values}) holds no voxel for subject {subject}")
    hemi = np.full(len(xyz), "", dtype=object)
    for side in ("lh", "rh"):
        hpaths = [find_volume(folder, f"{side}.{roi}") for roi in rois]
        found = [p for p in hpaths if p is not None]
        if len(found) == len(hpaths):
            inside = np.zeros(shape, dtype=bool)
            for p in found:
                side_vol = read_volume(p)
                if side_vol.shape != shape:
                    raise DataFormatError(f"{p}: the hemisphere volume has shape {side_vol.shape}; {first} has "
                                          f"{shape} (one of them is from another space or subject)")
                inside |= side_vol > 0
            hemi[inside[tuple(xyz.T)]] = side
    out = {"xyz": xyz, "label": label[tuple(xyz.T)], "roi": np.asarray(label_names)[name_id[tuple(xyz.T)]], "shape": shape}
    if (hemi != "").all():
        out["hemisphere"] = hemi.astype(str)
    return out


# ----------------------------------------------------------------------------- selection
def _select_images(design: NSDDesign, images, sessions: np.ndarray, min_repeats: int):
    """(stimulus ids, {trial index -> (row, repeat)}, repeats per image) for the loaded sessions."""
    in_sessions = np.isin(design.trial_session, sessions)
    if isinstance(images, str):
        if images == "shared1000":
            wanted = design.shared
        elif images == "all":
            wanted = np.unique(design.trial_image[in_sessions])
        else:
            raise ValueError(f"images must be 'shared1000', 'all' or a sequence of 0-based 73k ids; got {images!r}")
        explicit = False
    else:
        wanted = np.asarray(images, dtype=np.int64).ravel()
        if len(np.unique(wanted)) != len(wanted):
            raise ValueError("images must not repeat an id")
        explicit = True
    trials = np.flatnonzero(in_sessions & np.isin(design.trial_image, wanted))
    shown = design.trial_image[trials]
    counts = {int(i): int(c) for i, c in zip(*np.unique(shown, return_counts=True))}
    if explicit:
        missing = [int(i) for i in wanted if counts.get(int(i), 0) < min_repeats]
        if missing:
            raise StimulusMismatchError(
                f"{len(missing)} requested images were shown fewer than min_repeats={min_repeats} times in "
                f"sessions {sessions.tolist()} (first 0-based 73k ids: {missing[:5]})")
        ids = wanted
    else:
        ids = np.array([i for i in wanted if counts.get(int(i), 0) >= min_repeats], dtype=np.int64)
    if len(ids) == 0:
        raise ValueError(f"no image of {images!r} was shown at least {min_repeats} times in sessions "
                         f"{sessions.tolist()}")
    row_of = {int(i): r for r, i in enumerate(ids)}
    seen = np.zeros(len(ids), dtype=np.int64)
    plan: dict[int, tuple[int, int]] = {}
    for t in trials:
        r = row_of.get(int(design.trial_image[t]))
        if r is not None:
            plan[int(t)] = (r, int(seen[r]))
            seen[r] += 1
    return ids, plan, seen


def load_nsd(root: str | Path, subject: int = 1, roi: str | Sequence[str] = "nsdgeneral",
             images: str | Sequence[int] = "shared1000", sessions: Sequence[int] | None = None,
             space: str = "func1pt8mm", *, betas: str = "betas_fithrf_GLMdenoise_RR", zscore: bool = True,
             roi_values: int | Sequence[int] | None = None, min_repeats: int = 1,
             keep_trials: bool | str = "auto", ncsnr_threshold: float | None = None,
             load_images: bool = False, chunk_trials: int = 75, progress: bool | None = None,
             missing_sessions: str = "error") -> BrainData:
    """Single-trial NSD betas of one subject and ROI, z-scored per session and averaged over repeats.

    Reads only the sessions that show a requested image (all their trials when
    z-scoring, else only the requested trials), the bounding box of the ROI, in
    blocks of about ``chunk_trials`` trials x the ROI box (HDF5 files chunked by
    voxel, as the public ones are, are read whole chunks at a time and cut into
    slabs of the box instead); memory stays near the size of the returned arrays
    (one session of ROI voxels as float32 on top).

    Parameters
    ----------
    root: NSD root folder (holding ``nsddata``, ``nsddata_betas``, ``nsddata_stimuli``).
    subject: 1..8.
    roi: ROI volume name(s) in ``nsddata/ppdata/subjXX/<space>/roi/`` (``"nsdgeneral"``,
        ``"prf-visualrois"``, ``"streams"``, ...). Voxels with value > 0 are kept.
    images: ``"shared1000"`` (the 1,000 shared images, ``sharedix`` order),
        ``"all"`` (every image shown in the loaded sessions, ascending id) or
        0-based 73k ids (kept in the given order; each must have been shown).
    sessions: 1-based sessions to read; default sessions 1 to the last ``betas_sessionNN.hdf5``
        (or ``.nii.gz``) present, so a partial download of the first sessions works.
    space: ``"func1pt8mm"`` or ``"func1mm"``.
    zscore: z-score every voxel within each session over all its trials (NSD's
        recommendation), else keep percent signal change (int16 / 300). A voxel
        with no variance in a session (invalid there) gets 0 for that session.
    roi_values: keep only these label values of the ROI volume(s).
    min_repeats: drop images shown fewer times in the loaded sessions.
    keep_trials: ``"auto"`` keeps ``trials`` ``(repeats, n, V)`` when every image
        has the same number (>= 2) of repeats; ``True`` requires it; ``False``
        keeps only the averages.
    ncsnr_threshold: keep voxels whose ``ncsnr`` is at least this (Conwell et
        al. 2024 use 0.2); needs ``ncsnr.nii.gz`` (or ``.npy``).
    load_images: also read the images (uint8 ``(n, 425, 425, 3)``) into ``stimuli``;
        for large sets prefer the lazy :class:`NSDImages`.
    missing_sessions: ``"error"`` (default): a session to read (see ``sessions``)
        whose beta file is missing, a dangling symbolic link, a folder or unreadable
        is an error naming the file; ``"skip"`` leaves such sessions out with a
        warning naming them.

    Returns
    -------
    :class:`BrainData` ``(n_images, n_voxels)``, ``stimulus_ids`` 0-based 73k ids;
    ``unit_info``: ``roi`` (label name), ``roi_value``, ``coords`` ``(V, 3)``
    voxel indices (x, y, z) in NIfTI order, ``subject``, ``hemisphere`` when
    lh./rh. volumes exist, ``ncsnr`` when the ncsnr volume exists.
    """
    root = Path(root)
    rois = _check_nsd_arguments(subject, roi, space, min_repeats, keep_trials, chunk_trials)
    design = read_nsd_design(root, subject)
    beta_dir = root / "nsddata_betas" / "ppdata" / f"subj{subject:02d}" / space / betas
    session_arr, session_files = sessions_to_read(beta_dir, sessions, missing_sessions)
    vox, ncsnr = _voxels_and_ncsnr(root, subject, space, rois, roi_values, beta_dir, ncsnr_threshold)

    ids, plan, repeats = _select_images(design, images, session_arr, min_repeats)
    equal = bool((repeats == repeats[0]).all())
    if keep_trials is True and not (equal and repeats[0] >= 2):
        raise ValueError(f"keep_trials=True needs every image shown equally often (>= 2 times); repeats range "
                         f"{repeats.min()}..{repeats.max()}; raise min_repeats or load more sessions")
    with_trials = keep_trials is not False and equal and repeats[0] >= 2
    n_vox = len(vox["xyz"])
    out = np.zeros((int(repeats[0]) if with_trials else 1, len(ids), n_vox))
    by_session: dict[int, list[tuple[int, int, int]]] = {}
    for t, (row, rep) in plan.items():
        by_session.setdefault(int(design.trial_session[t]), []).append((t % NSD_TRIALS_PER_SESSION, row, rep))
    for session in tqdm(sorted(by_session), desc="nsd sessions", unit="session", leave=False,
                        disable=None if progress is None else not progress):
        _add_session(out, session_files[session], by_session[session], vox, zscore=zscore,
                     with_trials=with_trials, chunk_trials=chunk_trials)
    if with_trials:
        responses, trials = out.mean(0), out
    else:
        out[0] /= repeats[:, None]
        responses, trials = out[0], None
    info: dict[str, Any] = {"roi": vox["roi"], "roi_value": vox["label"], "coords": vox["xyz"],
                            "subject": np.full(n_vox, subject)}
    if "hemisphere" in vox:
        info["hemisphere"] = vox["hemisphere"]
    if ncsnr is not None:
        info["ncsnr"] = ncsnr
    stimuli = NSDImages(root, ids).read_uint8() if load_images else None
    label = images if isinstance(images, str) else "custom"
    return BrainData(responses, ids, info, trials=trials, stimuli=stimuli,
                     name=f"NSD subj{subject:02d} {'+'.join(rois)} {label}")


def _check_nsd_arguments(subject: int, roi: str | Sequence[str], space: str, min_repeats: int,
                         keep_trials: bool | str, chunk_trials: int) -> list[str]:
    """Refuse bad arguments of :func:`load_nsd` before any file is read; returns the ROI names as a list."""
    if space not in _SPACES:
        raise ValueError(f"space must be one of {_SPACES}; got {space!r}")
    if isinstance(subject, bool) or not isinstance(subject, (int, np.integer)) or not 1 <= subject <= 8:
        raise ValueError(f"subject must be an int in 1..8; got {subject!r}")
    if min_repeats < 1:
        raise ValueError(f"min_repeats must be >= 1; got {min_repeats}")
    if keep_trials not in ("auto", True, False):
        raise ValueError(f"keep_trials must be 'auto', True or False; got {keep_trials!r}")
    if chunk_trials < 1:
        raise ValueError(f"chunk_trials must be >= 1; got {chunk_trials}")
    rois = [roi] if isinstance(roi, str) else list(roi)
    if not rois:
        raise ValueError("roi must name at least one ROI volume")
    return rois


def _voxels_and_ncsnr(root: Path, subject: int, space: str, rois: list[str], roi_values, beta_dir: Path,
                      ncsnr_threshold: float | None) -> tuple[dict, np.ndarray | None]:
    """(the ROI voxels of :func:`_roi_voxels`, their float64 ``(V,)`` ncsnr or None), cut to ``ncsnr_threshold``."""
    vox = _roi_voxels(root, subject, space, rois, roi_values)
    ncsnr_path = find_volume(beta_dir, "ncsnr")
    ncsnr = None
    if ncsnr_path is not None:
        ncsnr_vol = read_volume(ncsnr_path)
        if ncsnr_vol.shape != vox["shape"]:
            raise DataFormatError(f"{ncsnr_path}: the ncsnr volume has shape {ncsnr_vol.shape}; the ROI volume "
                                  f"has {vox['shape']}")
        ncsnr = ncsnr_vol[tuple(vox["xyz"].T)].astype(np.float64)
    if ncsnr_threshold is not None:
        if ncsnr is None:
            raise FileNotFoundError(f"ncsnr_threshold needs {beta_dir / 'ncsnr.nii.gz'} (or .npy)")
        keep = ncsnr >= ncsnr_threshold
        if not keep.any():
            raise ValueError(f"no voxel of {rois} has ncsnr >= {ncsnr_threshold} (max {ncsnr.max():.3f})")
        vox = {k: (v[keep] if isinstance(v, np.ndarray) else v) for k, v in vox.items()}
        ncsnr = ncsnr[keep]
    return vox, ncsnr


def _add_session(out: np.ndarray, path: Path, entries: list[tuple[int, int, int]], vox: dict, *, zscore: bool,
                 with_trials: bool, chunk_trials: int) -> None:
    """Read one session file and put its trials into ``out`` in place.

    ``entries``: (trial within the session, output row, repeat) of each selected trial.
    ``out``: ``(repeats, n, V)`` where trials are kept (each trial written to its repeat),
    else ``(1, n, V)`` summing every repeat of a row.
    """
    # z-scoring needs every trial of the session; without it only the selected trials are read.
    wanted = None if zscore else np.unique([e[0] for e in entries])
    data, read = read_session(path, vox, wanted, max(e[0] for e in entries), chunk_trials)
    if zscore:
        zscore_rows_inplace(data, chunk_trials)
    within = np.searchsorted(read, [e[0] for e in entries])  # position of each trial in `data`
    rows = np.array([e[1] for e in entries])
    reps = np.array([e[2] for e in entries])
    # (row, repeat) pairs are unique, so rows are unique within one repeat and fancy += is exact.
    for rep in np.unique(reps):
        sel = np.flatnonzero(reps == rep)
        for a in range(0, len(sel), chunk_trials):  # small temporaries, not one (n_selected, V) copy
            part = sel[a:a + chunk_trials]
            if with_trials:
                out[rep, rows[part]] = data[within[part]]
            else:
                out[0, rows[part]] += data[within[part]]
