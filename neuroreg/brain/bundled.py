"""The real neural data sets that ship inside the package (see ``_data/PROVENANCE.md``).

- :func:`load_kriegeskorte92`: 92 object images, monkey IT and human IT RDMs
  (Kriegeskorte et al. 2008; MIT licence).
- :func:`load_algonauts2019_78`: 78 natural images, EVC and IT fMRI RDMs of 15
  subjects (Algonauts 2019 / Cichy et al.; BSD-3-Clause licence).
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.io

from neuroreg.brain.data import NeuralStimulusSet, RDMSet
from neuroreg.brain.generic import read_image, resize_uint8
from neuroreg.errors import DataFormatError, UnknownNameError

__all__ = ["load_kriegeskorte92", "load_algonauts2019_78", "load_bundled", "bundled_sets", "bundled_data_dir"]


def bundled_data_dir() -> Path:
    """Folder holding the vendored data files (read-only package data)."""
    return Path(str(resources.files("neuroreg.brain") / "_data"))


def _struct_str(value) -> str:
    return str(np.asarray(value).ravel()[0])


def load_kriegeskorte92(root: str | Path | None = None) -> NeuralStimulusSet:
    """The 92-image set of Kriegeskorte et al. (2008).

    RDMs (``rdms``): ``"monkey_IT"`` (674 neurons) and ``"human_IT"`` (316
    voxels), each k = 1, from the paper's figure-1 struct; ``"human_IT_sessions"``
    (k = 8: 4 subjects x 2 sessions, ``subject`` = initials, ``meta["session"]``).
    ``labels`` has columns ``category``, ``human``, ``face``, ``animal``,
    ``natural`` and the 12 ``categoryVectors`` columns (``animate``, ``inanim``, ...).
    ``root`` overrides the folder holding the two ``.mat`` files.
    """
    folder = Path(root) if root is not None else bundled_data_dir() / "kriegeskorte92"
    supp_path = folder / "Kriegeskorte_Neuron2008_supplementalData.mat"
    brain_path = folder / "92_brainRDMs.mat"
    for p in (supp_path, brain_path):
        if not p.is_file():
            raise FileNotFoundError(f"missing file of the 92-image set: {p}")
    supp = scipy.io.loadmat(supp_path)
    try:
        stim = supp["stimuli_92objs"][0]
        images = np.stack([s["image"] for s in stim]).astype(np.uint8)
        flags = {f: np.array([int(np.asarray(s[f]).ravel()[0]) for s in stim]) for f in ("human", "face", "animal", "natural")}
        category = [_struct_str(s["category"]) for s in stim]
        cat_names = [_struct_str(c) for c in supp["categoryLabels"].ravel()]
        cat_vectors = np.asarray(supp["categoryVectors"])
        fig1 = supp["RDMs_mIT_hIT_fig1"][0]
    except (KeyError, IndexError, ValueError) as exc:
        raise DataFormatError(f"{supp_path} does not have the expected Kriegeskorte 2008 structure: {exc}") from exc
    n = len(stim)
    ids = np.array([f"obj{i + 1:03d}" for i in range(n)])
    labels = pd.DataFrame({"stimulus_id": ids, "category": category, **flags})
    for j, cname in enumerate(cat_names):
        labels[cname] = cat_vectors[:, j].astype(int)

    rdms: dict[str, RDMSet] = {}
    for entry, key, subject in ((fig1[0], "monkey_IT", "monkey"), (fig1[1], "human_IT", "human")):
        name = _struct_str(entry["name"])
        rdms[key] = RDMSet.from_condensed(np.asarray(entry["RDM"], dtype=np.float64).ravel(),
                                          names=[name], region="IT", subject=subject,
                                          stimulus_ids=ids, metric="correlation")

    brain = scipy.io.loadmat(brain_path)["RDMs"]  # 1 x 4 x 2 struct
    mats, names, subjects, sessions = [], [], [], []
    for s in range(brain.shape[1]):
        for sess in range(brain.shape[2]):
            entry = brain[0, s, sess]
            name = _struct_str(entry["name"])
            match = re.match(r"\s*hIT\s*\|\s*(\w+)\s*\|\s*Session:\s*(\d+)", name)
            mats.append(np.asarray(entry["RDM"], dtype=np.float64))
            names.append(name)
            subjects.append(match.group(1) if match else f"subject{s + 1}")
            sessions.append(int(match.group(2)) if match else sess + 1)
    rdms["human_IT_sessions"] = RDMSet(np.stack(mats), names=names, region="IT", subject=subjects,
                                       stimulus_ids=ids, metric="unknown", meta={"session": sessions})
    return NeuralStimulusSet(
        name="kriegeskorte92", images=images, stimulus_ids=ids, rdms=rdms, labels=labels,
        licence="MIT (rsatoolbox demo data)",
        citation="Kriegeskorte et al. (2008) Neuron 60(6):1126-1141")


def load_algonauts2019_78(root: str | Path | None = None, image_size: int = 400) -> NeuralStimulusSet:
    """The 78-image Algonauts 2019 set: EVC and IT fMRI RDMs of 15 subjects.

    ``rdms["EVC"]`` and ``rdms["IT"]`` are RDMSets with k = 15 (subjects 1..15),
    rows in image file-name order. Images are returned as ``image_size`` squared
    RGB (the files are 400 x 400 except 17 that are 399 or 402 wide; those are
    resized (bicubic, antialiased: :func:`neuroreg.brain.generic.resize_uint8`) and listed in ``meta["resized"]``).
    """
    folder = Path(root) if root is not None else bundled_data_dir() / "algonauts2019_78"
    image_paths = sorted((folder / "images").glob("image_*.jpg"))
    if not image_paths:
        raise FileNotFoundError(f"no images/image_*.jpg under {folder}")
    # 17 of the 78 JPEGs are 399 or 402 pixels wide; bring all to one size so they stack.
    resized = []
    frames = []
    for p in image_paths:
        frame = np.asarray(read_image(p))
        if frame.shape[:2] != (image_size, image_size):
            resized.append(p.name)
            frame = resize_uint8(frame, image_size)
        frames.append(frame)
    images = np.stack(frames)
    ids = np.array([p.stem for p in image_paths])
    rdms = {}
    for region in ("EVC", "IT"):
        path = folder / f"fmri_{region}_RDMs.npz"
        with np.load(path) as npz:
            if "arr_0" not in npz:
                raise DataFormatError(f"{path} has no 'arr_0' array (keys: {list(npz.keys())})")
            stack = np.asarray(npz["arr_0"], dtype=np.float64)
        if stack.ndim != 3 or stack.shape[1:] != (len(ids), len(ids)):
            raise DataFormatError(f"{path}: expected (subjects, {len(ids)}, {len(ids)}); got {stack.shape}")
        subjects = list(range(1, stack.shape[0] + 1))
        rdms[region] = RDMSet(stack, names=[f"{region} subject {s}" for s in subjects], region=region,
                              subject=subjects, stimulus_ids=ids, metric="unknown")
    return NeuralStimulusSet(
        name="algonauts2019_78", images=images, stimulus_ids=ids, rdms=rdms, labels=None,
        licence="BSD-3-Clause (Net2Brain test data)",
        citation="Cichy, Roig & Oliva (2019) The Algonauts Project, arXiv:1905.05675",
        meta={"resized": resized, "image_files": [p.name for p in image_paths]})


def bundled_sets() -> dict[str, str]:
    """Names of the bundled data sets with a one-line description."""
    return {
        "kriegeskorte92": "92 object images; monkey IT (674 neurons), human IT (316 voxels; 4 subjects x 2 sessions)",
        "algonauts2019_78": "78 natural images; EVC and IT fMRI RDMs of 15 subjects",
    }


def load_bundled(name: str, **kwargs) -> NeuralStimulusSet:
    """Load a bundled set by name (see :func:`bundled_sets`); ``kwargs`` go to its loader."""
    loaders = {"kriegeskorte92": load_kriegeskorte92, "algonauts2019_78": load_algonauts2019_78}
    if name not in loaders:
        raise UnknownNameError(f"unknown bundled data set {name!r}; bundled sets: {sorted(loaders)}")
    return loaders[name](**kwargs)
