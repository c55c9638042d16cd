"""Reading NSD beta sessions in bounded memory: which session files exist, ROI voxels of one session, z-scoring.

A session's betas are ``betas_sessionNN.hdf5`` (``(trials, Z, Y, X)`` int16, x 300,
read in the file's own chunk geometry) or ``betas_sessionNN.nii.gz``/``.nii``
(``(X, Y, Z, trials)``, read front to back; needs nibabel). See :mod:`neuroreg.brain.nsd`
for the layout of the whole data set.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Sequence

import h5py
import numpy as np

from neuroreg._utils.io import reading
from neuroreg.brain._volumes import load_nifti
from neuroreg.errors import DataFormatError, NotAvailableError

#: Trials in one NSD core session (12 runs of 62.5 trials).
NSD_TRIALS_PER_SESSION = 750

_SESSION_FILE = re.compile(r"betas_session(\d+)\.(hdf5|nii\.gz|nii)")
_FORMAT_RANK = {"hdf5": 0, "nii.gz": 1, "nii": 2}  # HDF5 first: it can be read by ROI box


def _session_files(beta_dir: Path) -> tuple[dict[int, Path], dict[int, str]]:
    """(1-based session -> its readable beta file, session -> why its file cannot be read).

    A session's file is ``betas_sessionNN.hdf5``, else ``.nii.gz``, else ``.nii``,
    among those that are readable files. A session whose only entries are a
    symbolic link to a missing file, a folder or a file without read permission
    is reported in the second mapping, with the reason and the file's path.
    """
    best: dict[int, tuple[int, Path]] = {}
    problems: dict[int, str] = {}
    for path in sorted(beta_dir.glob("betas_session*")):
        m = _SESSION_FILE.fullmatch(path.name)
        if not m:
            continue
        session, rank = int(m.group(1)), _FORMAT_RANK[m.group(2)]
        if path.is_file() and os.access(path, os.R_OK):
            if session not in best or rank < best[session][0]:
                best[session] = (rank, path)
        elif path.is_symlink() and not path.exists():
            problems.setdefault(session, f"{path} is a symbolic link to {os.readlink(path)}, which does not exist")
        elif path.is_dir():
            problems.setdefault(session, f"{path} is a folder, not a beta file")
        else:
            problems.setdefault(session, f"{path} is not readable (no read permission)")
    files = {s: p for s, (_, p) in best.items()}
    return files, {s: why for s, why in problems.items() if s not in files}


def sessions_to_read(beta_dir: Path, sessions: Sequence[int] | None,
                      missing_sessions: str) -> tuple[np.ndarray, dict[int, Path]]:
    """(1-based sessions to read, session -> beta file): ``sessions``, or every session up to the last on disk.

    A requested session (or, with ``sessions=None``, a session before the last one
    on disk) without a readable beta file is an error naming the file, unless
    ``missing_sessions="skip"``: then it is left out with a warning naming it.
    """
    if missing_sessions not in ("error", "skip"):
        raise ValueError(f"missing_sessions must be 'error' or 'skip'; got {missing_sessions!r}")
    files, problems = _session_files(beta_dir)
    if sessions is None:
        on_disk = sorted(set(files) | set(problems))
        if not on_disk:
            raise FileNotFoundError(f"no betas_sessionNN.hdf5 or betas_sessionNN.nii.gz files in {beta_dir}")
        wanted = list(range(1, on_disk[-1] + 1))  # NSD numbers its sessions 1, 2, ... without gaps
    else:
        wanted = [int(v) for v in np.asarray(list(sessions), dtype=np.int64).ravel()]
        if not wanted:
            raise ValueError("sessions must name at least one 1-based session; got an empty list")
        if min(wanted) < 1:
            raise ValueError(f"sessions must be 1-based session numbers (>= 1); got {wanted}")
    absent = [s for s in wanted if s not in files]
    if not absent:
        return np.asarray(wanted, dtype=np.int64), files
    reasons = [problems.get(s, f"{beta_dir / f'betas_session{s:02d}.hdf5'} (or .nii.gz) does not exist")
               for s in absent]
    if missing_sessions == "error":
        what = ("requested" if sessions is not None else
                f"of 1..{wanted[-1]} (by default every session up to the last one on disk is read)")
        exc = PermissionError if all("permission" in r for r in reasons) else FileNotFoundError
        raise exc(f"{len(absent)} NSD session(s) {what} cannot be read: {'; '.join(reasons[:3])}"
                  f"{' ...' if len(reasons) > 3 else ''}; pass sessions=[...] with the sessions to read or "
                  f"missing_sessions='skip' to read only the sessions that can be read")
    kept = [s for s in wanted if s in files]
    if not kept:
        raise FileNotFoundError(f"none of the NSD sessions {wanted} can be read: {'; '.join(reasons[:3])}")
    warnings.warn(f"NSD sessions {absent} skipped (missing_sessions='skip'): {'; '.join(reasons[:3])}"
                  f"{' ...' if len(reasons) > 3 else ''}", stacklevel=3)
    return np.asarray(kept, dtype=np.int64), files


def _trial_blocks(wanted: np.ndarray, chunk_len: int, block: int) -> list[tuple[int, int]]:
    """Contiguous trial ranges ``[a, b)`` covering the sorted ``wanted`` trials.

    Ranges are aligned to the file's chunk length along trials and hold about
    ``block`` trials (at least one chunk), so every stored chunk is read once.
    """
    step = chunk_len * max(1, block // chunk_len)
    starts = np.unique(wanted // step) * step
    return [(int(a), int(a + step)) for a in starts]


def _read_hdf5_session(path: Path, vox: dict, wanted: np.ndarray | None, last_needed: int,
                       chunk_trials: int) -> tuple[np.ndarray, np.ndarray]:
    """(float32 ``(len(wanted), V)`` betas (x300) of the ROI voxels, ``wanted``), in the file's own chunk geometry.

    ``wanted``: sorted trial indices, or None for every trial of the session.

    The public NSD files are chunked ``(750, 1, 1, 1)``: one chunk holds every
    trial of one voxel. Reading ``chunk_trials`` trials of the whole ROI box at a
    time would decompress each chunk ``750 / chunk_trials`` times, so instead
    whole chunks are read along trials and the box is cut into slabs along Z
    small enough that one read holds at most ``chunk_trials`` x box voxels
    (the memory bound of reading ``chunk_trials`` trials of the whole box).
    """
    zyx = vox["xyz"][:, ::-1]  # HDF5 betas are (trials, Z, Y, X): the NIfTI (x, y, z) reversed
    spatial = tuple(int(v) for v in vox["shape"][::-1])
    with h5py.File(path, "r") as f:
        if "betas" not in f:
            raise DataFormatError(f"{path} has no dataset 'betas'")
        ds = f["betas"]
        if ds.ndim != 4 or tuple(ds.shape[1:]) != spatial:
            raise DataFormatError(
                f"{path.name}: betas must be (trials, Z, Y, X) = (n, {', '.join(map(str, spatial))}) to match "
                f"the (X, Y, Z) = {vox['shape']} ROI volume; got {ds.shape}")
        wanted = _check_trials(path, wanted, last_needed, int(ds.shape[0]))
        chunks = ds.chunks or (1,) + spatial  # contiguous storage reads like one-trial chunks
        lo, hi = zyx.min(0), zyx.max(0) + 1
        box_voxels = int(np.prod(hi - lo))
        data = np.empty((len(wanted), len(zyx)), dtype=np.float32)
        if chunks[0] == 1:  # trial-major chunks: read the wanted trials of the box, chunk_trials at a time
            box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
            local = tuple((zyx - lo).T)
            for start in range(0, len(wanted), chunk_trials):
                idx = wanted[start:start + chunk_trials]
                contiguous = idx[-1] - idx[0] + 1 == len(idx)
                sel = slice(int(idx[0]), int(idx[-1]) + 1) if contiguous else idx  # h5py: increasing indices
                data[start:start + len(idx)] = ds[(sel,) + box][(slice(None),) + local]
            return data, wanted
        blocks = _trial_blocks(wanted, chunks[0], chunk_trials)
        block_len = min(blocks[0][1] - blocks[0][0], ds.shape[0])
        plane = int(np.prod(hi[1:] - lo[1:]))
        slab = max(1, (chunk_trials * box_voxels) // max(block_len * plane, 1))
        slab = max(chunks[1], slab // chunks[1] * chunks[1])
        for z0 in range(int(lo[0]), int(hi[0]), slab):
            in_slab = np.flatnonzero((zyx[:, 0] >= z0) & (zyx[:, 0] < z0 + slab))
            if len(in_slab) == 0:
                continue
            sub = zyx[in_slab]
            slo, shi = sub.min(0), sub.max(0) + 1
            box = tuple(slice(int(a), int(b)) for a, b in zip(slo, shi))
            local = tuple((sub - slo).T)
            for a, b in blocks:
                b = min(b, ds.shape[0])
                rows = np.flatnonzero((wanted >= a) & (wanted < b))
                block = ds[(slice(a, b),) + box]
                data[np.ix_(rows, in_slab)] = block[wanted[rows] - a][(slice(None),) + local]
        return data, wanted


def _read_nifti_session(path: Path, vox: dict, wanted: np.ndarray | None, last_needed: int,
                        chunk_trials: int) -> tuple[np.ndarray, np.ndarray]:
    """(float32 ``(len(wanted), V)`` betas (x300), ``wanted``) from ``betas_sessionNN.nii.gz`` (``(X, Y, Z, trials)``).

    The volume is never held whole: trials are read in order, ``chunk_trials``
    at a time, each block cut to the ROI box and the ROI voxels kept (a gzip
    stream can only be read forward, so the blocks go front to back with the
    file kept open).
    """
    try:
        import nibabel  # optional: the neuroimaging extra
        from nibabel.dataobj_images import DataobjImage
    except ImportError:
        raise NotAvailableError(
            f"reading {path.name} needs nibabel; install the neuroimaging extra "
            "(pip install 'neuroreg[neuroimaging]') or use the betas_sessionNN.hdf5 files") from None
    img = load_nifti(path, "the NSD betas", keep_file_open=path.suffix == ".gz")
    if not isinstance(img, DataobjImage):
        raise DataFormatError(f"{path.name}: betas must be an image with voxel data; "
                              f"nibabel read a {type(img).__name__}")
    shape = tuple(int(v) for v in img.shape)
    if len(shape) != 4 or shape[:3] != tuple(int(v) for v in vox["shape"]):
        raise DataFormatError(
            f"{path.name}: betas must be (X, Y, Z, trials) = ({', '.join(map(str, vox['shape']))}, n) to match "
            f"the ROI volume; got {shape}")
    wanted = _check_trials(path, wanted, last_needed, shape[3])
    xyz = vox["xyz"]
    lo, hi = xyz.min(0), xyz.max(0) + 1
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    local = tuple((xyz - lo).T)
    data = np.empty((len(wanted), len(xyz)), dtype=np.float32)
    proxy = img.dataobj
    slope, inter = float(getattr(proxy, "slope", 1.0)), float(getattr(proxy, "inter", 0.0))
    if (slope, inter) != (1.0, 0.0):  # NSD stores the x300 integers unscaled, as in its HDF5 files
        raise DataFormatError(f"{path.name}: expected unscaled int16 betas (x300) as NSD writes them; the header "
                              f"scales them by slope {slope}, intercept {inter}")
    for a, b in _trial_blocks(wanted, 1, chunk_trials):
        b = min(b, shape[3])
        rows = np.flatnonzero((wanted >= a) & (wanted < b))
        if len(rows) == 0:
            continue
        block = np.asarray(proxy[box + (slice(a, b),)])  # (X, Y, Z, trials) of the ROI box
        data[rows] = block[local].T[wanted[rows] - a]
    if hasattr(img, "uncache"):
        img.uncache()
    return data, wanted


def _check_trials(path: Path, wanted: np.ndarray | None, last_needed: int, n_trials: int) -> np.ndarray:
    # The design numbers trials 750 per session, and z-scoring is over the whole session: a file with
    # other than 750 trials is incomplete or not one NSD session, and its trials cannot be matched.
    if n_trials != NSD_TRIALS_PER_SESSION:
        raise DataFormatError(f"{path}: holds {n_trials} trials; an NSD session has {NSD_TRIALS_PER_SESSION}: "
                              "the file is incomplete or not one NSD session")
    return np.arange(n_trials) if wanted is None else np.asarray(wanted, dtype=np.int64)


def read_session(path: Path, vox: dict, wanted: np.ndarray | None, last_needed: int,
                  chunk_trials: int) -> tuple[np.ndarray, np.ndarray]:
    """(float32 ``(len(read), V)`` percent signal change, the sorted trial indices read) of one session file.

    ``wanted`` None reads every trial of the session (for z-scoring).
    """
    reader = _read_hdf5_session if path.suffix == ".hdf5" else _read_nifti_session
    with reading(path, "the NSD betas"):
        data, read = reader(path, vox, wanted, last_needed, chunk_trials)
    data /= 300.0
    return data, read


def zscore_rows_inplace(data: np.ndarray, chunk: int) -> None:
    """z-score every column of float32 ``data`` over its rows, in place (population SD, as scipy.stats.zscore).

    Sums are accumulated in float64 over row blocks so no full-size temporary is
    made. Columns without variance (voxels invalid in a session) become 0.
    """
    n = data.shape[0]
    total = np.zeros(data.shape[1])
    for a in range(0, n, chunk):
        total += data[a:a + chunk].sum(0, dtype=np.float64)
    mean = total / n
    sq = np.zeros(data.shape[1])
    mean32 = mean.astype(np.float32)
    for a in range(0, n, chunk):
        block = data[a:a + chunk] - mean32
        sq += np.einsum("ij,ij->j", block, block, dtype=np.float64)
    sd = np.sqrt(sq / n)
    valid = sd > 1e-12 * np.maximum(np.abs(mean), 1.0)
    inv = np.where(valid, 1.0 / np.where(valid, sd, 1.0), 0.0).astype(np.float32)
    data -= mean32
    data *= inv
