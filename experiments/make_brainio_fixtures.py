"""Tiny BrainIO files written by brainscore-core's own code, and what brainscore-core reads back from them.

Writes a cache folder ``tests/fixtures/brainio/`` in the layouts brainscore-core uses under
``$BRAINIO_HOME``:

- ``assy_test_Tiny2026_neural/assy_test_Tiny2026_neural.nc``: a ``NeuroidAssembly``
  (``presentation`` x ``neuroid`` x ``time_bin``; 8 stimuli x 3 repetitions in shuffled order,
  6 neuroids in V4 and IT, time bins 70-170 and 170-270 ms), in the folder layout of
  ``packaging.package_data_assembly`` (``<root>/assy_<identifier>/``);
- ``<sha1>/assy_test_Tiny2026_behaviour.nc``: a ``BehavioralAssembly`` (``presentation``: one
  trial each, ``image_id``, ``sample_obj``, ``dist_obj``, ``choice``, the chosen object as the
  values), in the layout of ``fetch.BotoFetcher`` (``<root>/<sha1 of the file>/``);
- ``<sha1>/stimulus_test_tiny.csv`` and ``<sha1>/stimulus_test_tiny.zip``: a stimulus set of 8
  tiny PNGs (one grayscale) with ``object_name``, written by ``packaging.create_stimulus_zip``
  and ``create_stimulus_csv``, in the ``BotoFetcher`` layout;
- ``readback.json``: what brainscore-core's ``AssemblyLoader``/``StimulusSetLoader`` read back
  (every coordinate of ``walk_coords``: dims and values; the data; attrs), the
  presentation coordinates with the stimulus set merged in (``StimulusMergeAssemblyLoader``, as
  Brain-Score loads a data set), the repetition average of the 70-170 ms bin by Brain-Score's own ``average_repetition``
  (``brainscore_vision.benchmark_helpers.neural_common`` at ``--commit``), and per image the
  mean pixel value of the file brainscore-core unzips, read with PIL as RGB.

The assemblies are written with ``packaging.write_netcdf`` (``NeuroidAssembly(...)`` /
``BehavioralAssembly(...)``, ``validate()``, then ``write_netcdf``: the MultiIndexes reset
into plain coordinates, zlib-compressed), the steps of ``package_data_assembly`` short of
the upload. Run in an environment with ``brainscore-core``, ``numpy<2``, ``pandas<3``,
``xarray<2022.6`` and ``netCDF4``::

    python experiments/make_brainio_fixtures.py path/to/vision.git --commit c642dbe4...

The fixtures committed were made with brainscore-core 2.5.0, xarray 2022.3.0, netCDF4 1.7.5.1.post1,
numpy 1.26.4, pandas 2.3.3 and pillow 13.0.0, from brain-score/vision commit
c642dbe42aae3ed064bc0b66f70a80b264021164.
"""

from __future__ import annotations

import argparse
import ast
import importlib.metadata
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "tests" / "fixtures" / "brainio"
NEURAL = "test.Tiny2026.neural"
BEHAVIOUR = "test.Tiny2026.behaviour"
STIMULI = "test.tiny"
OBJECTS = ["car", "dog"]
N_STIMULI, N_REPS = 8, 3
NEURAL_COMMON = "brainscore_vision/benchmark_helpers/neural_common.py"
#: The folder of the composite cache (experiments/make_brainio_composite.py).
COMPOSITE = "composite"


def _average_repetition(repo: Path, commit: str):
    """Brain-Score's ``average_repetition`` (and ``apply_keep_attrs``), compiled from the repository alone."""
    from brainscore_core.supported_data_standards.brainio.assemblies import array_is_element, walk_coords

    source = subprocess.run(["git", "-C", str(repo), "show", f"{commit}:{NEURAL_COMMON}"], capture_output=True,
                            text=True, check=True).stdout
    nodes = [n for n in ast.parse(source).body
             if isinstance(n, ast.FunctionDef) and n.name in ("average_repetition", "apply_keep_attrs")]
    namespace = {"walk_coords": walk_coords, "array_is_element": array_is_element}
    exec(compile(ast.Module(nodes, []), "<neural_common>", "exec"), namespace)
    return namespace["average_repetition"]


def _stimulus_set(rng: np.random.Generator, images: Path):
    """A proto StimulusSet of 8 PNGs (8x6 pixels; s3 grayscale) with object labels and metadata."""
    from brainscore_core.supported_data_standards.brainio.stimuli import StimulusSet

    ids = [f"s{k}" for k in range(N_STIMULI)]
    paths = {}
    for k, sid in enumerate(ids):
        pixels = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        img = Image.fromarray(pixels[:, :, 0], mode="L") if sid == "s3" else Image.fromarray(pixels, mode="RGB")
        paths[sid] = images / f"{sid}.png"
        img.save(paths[sid])
    proto = StimulusSet(pd.DataFrame({"stimulus_id": ids, "object_name": np.repeat(OBJECTS, N_STIMULI // 2),
                                      "ty": rng.normal(0, 1, N_STIMULI).round(3),
                                      "variation": np.tile([0, 3], N_STIMULI // 2)}))
    proto.stimulus_paths = paths
    proto.get_stimulus = lambda sid: str(paths[sid])
    return proto


def _neural(rng: np.random.Generator):
    from brainscore_core.supported_data_standards.brainio.assemblies import NeuroidAssembly

    order = rng.permutation(N_STIMULI * N_REPS)
    stim = np.repeat([f"s{k}" for k in range(N_STIMULI)], N_REPS)[order]
    rep = np.tile(np.arange(N_REPS), N_STIMULI)[order]
    values = rng.normal(5.0, 2.0, (N_STIMULI * N_REPS, 6, 2)).round(4)
    assembly = NeuroidAssembly(values, coords={
        "stimulus_id": ("presentation", stim), "repetition": ("presentation", rep),
        "neuroid_id": ("neuroid", [f"n{k}" for k in range(6)]),
        "region": ("neuroid", ["V4", "V4", "V4", "IT", "IT", "IT"]),
        "animal": ("neuroid", ["m1", "m1", "m2", "m1", "m2", "m2"]),
        "arr": ("neuroid", ["A", "A", "B", "C", "C", "C"]),
        "x": ("neuroid", rng.normal(0, 1, 6).round(3)),
        "time_bin_start": ("time_bin", [70, 170]), "time_bin_end": ("time_bin", [170, 270])},
        dims=["presentation", "neuroid", "time_bin"])
    assembly.attrs["stimulus_set_identifier"] = STIMULI
    assembly.validate()
    return assembly


def _behaviour(rng: np.random.Generator):
    from brainscore_core.supported_data_standards.brainio.assemblies import BehavioralAssembly

    rows = []
    for k in range(N_STIMULI):
        sample = OBJECTS[k // (N_STIMULI // 2)]
        dist = OBJECTS[1 - k // (N_STIMULI // 2)]
        for _ in range(3):
            rows.append((f"s{k}", sample, dist, sample if rng.random() < 0.7 else dist, int(rng.integers(1, 4))))
    rows = [rows[i] for i in rng.permutation(len(rows))]
    df = pd.DataFrame(rows, columns=["image_id", "sample_obj", "dist_obj", "choice", "worker_id"])
    assembly = BehavioralAssembly(df["choice"].to_numpy(), coords={
        "image_id": ("presentation", df["image_id"].to_numpy()),
        "sample_obj": ("presentation", df["sample_obj"].to_numpy()),
        "dist_obj": ("presentation", df["dist_obj"].to_numpy()),
        "choice": ("presentation", df["choice"].to_numpy()),
        "worker_id": ("presentation", df["worker_id"].to_numpy())}, dims=["presentation"])
    assembly.attrs["stimulus_set_identifier"] = STIMULI
    assembly.validate()
    return assembly


def _jsonable(values) -> list:
    return np.asarray(values).tolist()


def _scalar(value):
    """A numpy scalar (object arrays keep them in ``tolist()``) as the Python number."""
    return value.item()


def _coords(assembly) -> dict:
    from brainscore_core.supported_data_standards.brainio.assemblies import walk_coords

    return {name: {"dims": list(dims), "values": _jsonable(values)} for name, dims, values in walk_coords(assembly)}


def _write_assembly(assembly, path: Path) -> Path:
    from brainscore_core.supported_data_standards.brainio.packaging import write_netcdf

    write_netcdf(assembly, path)
    return path


def _in_sha1_folder(path: Path) -> Path:
    """Move ``path`` into ``<root>/<sha1 of the file>/`` as ``BotoFetcher`` stores a download."""
    from brainscore_core.supported_data_standards.brainio.s3 import sha1_hash

    target = OUT / sha1_hash(path) / path.name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(path), target)
    return target


# -- the composite cache: enough data for Brain-Score's composite (V4, IT, behaviour) ---------------------------

COMPOSITE_STIMULI = "test.objects4"
COMPOSITE_NEURAL = "test.Objects2026.neural"
COMPOSITE_BEHAVIOUR = "test.Objects2026.behaviour"
COMPOSITE_OBJECTS = ["disk", "square", "triangle", "cross"]
PER_OBJECT, TESTED_PER_OBJECT, SIDE = 24, 6, 32
#: Trials per tested image and distractor: both halves of Brain-Score's split must see every pair.
TRIALS_PER_PAIR = 14
N_V4, N_IT, COMPOSITE_REPS = 8, 8, 4


def _draw(obj: str, rng: np.random.Generator) -> tuple[Image.Image, dict]:
    """One ``SIDE`` x ``SIDE`` RGB image of ``obj`` at a random position, size, colour and background."""
    from PIL import ImageDraw

    size = float(rng.uniform(0.3, 0.7))
    cx, cy = rng.uniform(0.3, 0.7, 2)
    colour = tuple(int(v) for v in rng.integers(60, 256, 3))
    background = int(rng.integers(0, 90))
    img = Image.new("RGB", (SIDE, SIDE), (background,) * 3)
    draw = ImageDraw.Draw(img)
    r = size * SIDE / 2
    x, y = cx * SIDE, cy * SIDE
    if obj == "disk":
        draw.ellipse([x - r, y - r, x + r, y + r], fill=colour)
    elif obj == "square":
        draw.rectangle([x - r, y - r, x + r, y + r], fill=colour)
    elif obj == "triangle":
        draw.polygon([(x, y - r), (x - r, y + r), (x + r, y + r)], fill=colour)
    else:
        w = r / 3
        draw.rectangle([x - r, y - w, x + r, y + w], fill=colour)
        draw.rectangle([x - w, y - r, x + w, y + r], fill=colour)
    meta = {"size": round(size, 4), "tx": round(float(cx), 4), "ty": round(float(cy), 4),
            "contrast": round((np.mean(colour) - background) / 255, 4)}
    return img, meta


def _composite_stimuli(rng: np.random.Generator, images: Path):
    """A proto StimulusSet: ``PER_OBJECT`` images of each of 4 objects, the first ``TESTED_PER_OBJECT`` in trials."""
    from brainscore_core.supported_data_standards.brainio.stimuli import StimulusSet

    rows, paths, pixels = [], {}, {}
    for obj in COMPOSITE_OBJECTS:
        for k in range(PER_OBJECT):
            sid = f"{obj}{k:02d}"
            img, meta = _draw(obj, rng)
            paths[sid] = images / f"{sid}.png"
            img.save(paths[sid], optimize=True)
            pixels[sid] = np.asarray(img, dtype=np.float64) / 255
            rows.append({"stimulus_id": sid, "object_name": obj, **meta,
                         "split": "behaviour" if k < TESTED_PER_OBJECT else "fitting"})
    proto = StimulusSet(pd.DataFrame(rows))
    proto.stimulus_paths = paths
    proto.get_stimulus = lambda sid: str(paths[sid])
    return proto, pixels


def _composite_neural(rng: np.random.Generator, proto, pixels: dict):
    """V4 neuroids linear in the 8 x 8 grey image, IT neuroids in the object and the image's size; noisy repeats."""
    from brainscore_core.supported_data_standards.brainio.assemblies import NeuroidAssembly

    ids = proto["stimulus_id"].tolist()
    grey = np.stack([pixels[s].mean(2).reshape(8, SIDE // 8, 8, SIDE // 8).mean((1, 3)).ravel() for s in ids])
    onehot = (proto["object_name"].to_numpy()[:, None] == np.array(COMPOSITE_OBJECTS)[None]).astype(float)
    v4 = grey @ rng.normal(0, 1, (grey.shape[1], N_V4))
    it = onehot @ rng.normal(0, 1, (4, N_IT)) + proto["size"].to_numpy()[:, None] * rng.normal(0, 2, (1, N_IT))
    clean = np.concatenate([(v4 - v4.mean(0)) / v4.std(0), (it - it.mean(0)) / it.std(0)], axis=1)
    n_units = N_V4 + N_IT
    order = rng.permutation(len(ids) * COMPOSITE_REPS)
    stim = np.repeat(np.arange(len(ids)), COMPOSITE_REPS)[order]
    rep = np.tile(np.arange(COMPOSITE_REPS), len(ids))[order]
    late = 0.5 * clean + rng.normal(0, 0.8, clean.shape)          # the 170-270 ms bin: weaker, other noise
    values = np.stack([clean[stim] + rng.normal(0, 0.6, (stim.size, n_units)),
                       late[stim] + rng.normal(0, 0.6, (stim.size, n_units))], axis=2)
    assembly = NeuroidAssembly((5.0 + values).astype(np.float32), coords={
        "stimulus_id": ("presentation", np.asarray(ids)[stim]), "repetition": ("presentation", rep),
        "neuroid_id": ("neuroid", [f"n{k:02d}" for k in range(n_units)]),
        "region": ("neuroid", ["V4"] * N_V4 + ["IT"] * N_IT),
        "animal": ("neuroid", ["m1", "m2"] * (n_units // 2)),
        "time_bin_start": ("time_bin", [70, 170]), "time_bin_end": ("time_bin", [170, 270])},
        dims=["presentation", "neuroid", "time_bin"])
    assembly.attrs["stimulus_set_identifier"] = COMPOSITE_STIMULI
    assembly.validate()
    return assembly


def _composite_behaviour(rng: np.random.Generator, proto):
    """Binary choices on the tested images, ``TRIALS_PER_PAIR`` per image and distractor, in shuffled order.

    A simulated observer whose d' falls with the image's size and contrast and depends on the
    object pair; the coordinates of Rajalingham 2018 (``stimulus_id``, ``sample_obj``,
    ``dist_obj``, ``worker_id``; the chosen object as the values).
    """
    from brainscore_core.supported_data_standards.brainio.assemblies import BehavioralAssembly

    tested = proto[proto["split"] == "behaviour"]
    confusion = rng.normal(0, 0.5, (4, 4))
    rows = []
    for sid, obj, size, contrast in tested[["stimulus_id", "object_name", "size", "contrast"]].itertuples(index=False):
        t = COMPOSITE_OBJECTS.index(obj)
        for c, dist in enumerate(COMPOSITE_OBJECTS):
            if c == t:
                continue
            d = 1.0 + 8 * (size - 0.5) + 3 * (contrast - 0.4) + confusion[t, c]   # small, dim images are hard
            for _ in range(TRIALS_PER_PAIR):
                correct = rng.random() < 1 / (1 + np.exp(-d))
                rows.append((sid, obj, dist, obj if correct else dist, int(rng.integers(0, 5))))
    rows = [rows[i] for i in rng.permutation(len(rows))]
    df = pd.DataFrame(rows, columns=["stimulus_id", "sample_obj", "dist_obj", "choice", "worker_id"])
    assembly = BehavioralAssembly(df["choice"].to_numpy().astype(str), coords={
        name: ("presentation", df[name].to_numpy()) for name in df.columns if name != "choice"},
        dims=["presentation"])                       # the values are the chosen objects, as Rajalingham 2018
    assembly.attrs["stimulus_set_identifier"] = COMPOSITE_STIMULI
    assembly.validate()
    return assembly


def write_composite_cache(root: Path) -> None:
    """A Brain-Score cache folder with a stimulus set, a V4 + IT neural assembly and a behavioural assembly.

    Layouts as :func:`main`'s fixtures: the neural assembly in ``assy_<id>/``, the behavioural
    assembly and the stimulus csv and zip each in a ``<sha1>/`` folder.
    """
    from brainscore_core.supported_data_standards.brainio.packaging import create_stimulus_csv, create_stimulus_zip
    from brainscore_core.supported_data_standards.brainio.s3 import sha1_hash

    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    rng = np.random.default_rng(2027)

    def in_sha1_folder(path: Path) -> None:
        target = root / sha1_hash(path) / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(path), target)

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        (tmp_path / "images").mkdir()
        proto, pixels = _composite_stimuli(rng, tmp_path / "images")
        store = "stimulus_" + COMPOSITE_STIMULI.replace(".", "_")
        _, arcnames = create_stimulus_zip(proto, str(tmp_path / f"{store}.zip"))
        table = proto.copy()
        table["filename"] = arcnames
        create_stimulus_csv(table, str(tmp_path / f"{store}.csv"))
        in_sha1_folder(tmp_path / f"{store}.csv")
        in_sha1_folder(tmp_path / f"{store}.zip")
        neural_store = "assy_" + COMPOSITE_NEURAL.replace(".", "_")
        _write_assembly(_composite_neural(rng, proto, pixels), root / neural_store / f"{neural_store}.nc")
        behaviour_store = "assy_" + COMPOSITE_BEHAVIOUR.replace(".", "_")
        in_sha1_folder(_write_assembly(_composite_behaviour(rng, proto), tmp_path / f"{behaviour_store}.nc"))



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("vision_repo", type=Path, nargs="?", default=None,
                        help="a clone (or bare repository) of brain-score/vision (needed for --part tiny/all)")
    parser.add_argument("--commit", default="c642dbe42aae3ed064bc0b66f70a80b264021164")
    parser.add_argument("--part", choices=["tiny", "composite", "all"], default="all",
                        help="tiny: the format fixtures and readback.json; composite: the cache in composite/")
    args = parser.parse_args()
    if args.part in ("composite", "all"):
        write_composite_cache(OUT / COMPOSITE)
        print(f"wrote {OUT / COMPOSITE}")
    if args.part in ("tiny", "all"):
        if args.vision_repo is None:
            parser.error("--part tiny/all needs vision_repo (for Brain-Score's average_repetition)")
        _tiny(args)


def _tiny(args) -> None:
    from brainscore_core.supported_data_standards.brainio.assemblies import (AssemblyLoader, BehavioralAssembly,
                                                                              NeuroidAssembly,
                                                                              StimulusMergeAssemblyLoader)
    from brainscore_core.supported_data_standards.brainio.fetch import unzip
    from brainscore_core.supported_data_standards.brainio.packaging import create_stimulus_csv, create_stimulus_zip
    from brainscore_core.supported_data_standards.brainio.stimuli import StimulusSet, StimulusSetLoader

    average_repetition = _average_repetition(args.vision_repo, args.commit)
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.iterdir():        # everything but the composite cache, which --part composite writes
        if old.name != COMPOSITE:
            shutil.rmtree(old) if old.is_dir() else old.unlink()
    rng = np.random.default_rng(2026)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        (tmp_path / "images").mkdir()
        proto = _stimulus_set(rng, tmp_path / "images")
        store = "stimulus_" + STIMULI.replace(".", "_")
        _, arcnames = create_stimulus_zip(proto, str(tmp_path / f"{store}.zip"))
        proto["filename"] = arcnames
        create_stimulus_csv(proto, str(tmp_path / f"{store}.csv"))
        csv_path = _in_sha1_folder(tmp_path / f"{store}.csv")
        zip_path = _in_sha1_folder(tmp_path / f"{store}.zip")

        neural_store = "assy_" + NEURAL.replace(".", "_")
        neural_path = _write_assembly(_neural(rng), OUT / neural_store / f"{neural_store}.nc")
        behaviour_store = "assy_" + BEHAVIOUR.replace(".", "_")
        behaviour_path = _in_sha1_folder(_write_assembly(_behaviour(rng), tmp_path / f"{behaviour_store}.nc"))

        # read back as brainscore-core does, from a copy (unzip writes beside the zip)
        copy = tmp_path / "read" / zip_path.name
        copy.parent.mkdir()
        shutil.copy(zip_path, copy)
        stimulus_set = StimulusSetLoader(cls=StimulusSet, csv_path=str(csv_path),
                                         stimuli_directory=unzip(str(copy))).load()
        pixels = {sid: float(np.asarray(Image.open(p).convert("RGB"), dtype=np.float64).mean())
                  for sid, p in stimulus_set.stimulus_paths.items()}
        sizes = {sid: list(Image.open(p).size) for sid, p in stimulus_set.stimulus_paths.items()}
        neural = AssemblyLoader(cls=NeuroidAssembly, file_path=str(neural_path)).load()
        behaviour = AssemblyLoader(cls=BehavioralAssembly, file_path=str(behaviour_path)).load()
        merged = StimulusMergeAssemblyLoader(cls=NeuroidAssembly, file_path=str(neural_path),
                                             stimulus_set_identifier=STIMULI, stimulus_set=stimulus_set).load()
        bin_70 = neural.isel(time_bin=np.flatnonzero((neural["time_bin_start"].values == 70)
                                                     & (neural["time_bin_end"].values == 170)))
        averaged = average_repetition(bin_70.squeeze("time_bin").transpose("presentation", "neuroid"))
    readback = {
        "versions": {pkg: importlib.metadata.version(pkg) for pkg in
                     ("brainscore-core", "xarray", "netCDF4", "numpy", "pandas", "pillow")},
        "vision_commit": args.commit,
        "neural": {"identifier": NEURAL, "path": str(neural_path.relative_to(OUT)), "dims": list(neural.dims),
                   "shape": list(neural.shape), "coords": _coords(neural), "values": _jsonable(neural.values),
                   "attrs": {k: str(v) for k, v in neural.attrs.items()}},
        "neural_merged_presentation": {name: c for name, c in _coords(merged).items()
                                       if c["dims"] == ["presentation"]},
        "neural_averaged_70_170": {"dims": list(averaged.dims), "coords": _coords(averaged),
                                   "values": _jsonable(averaged.values)},
        "behaviour": {"identifier": BEHAVIOUR, "path": str(behaviour_path.relative_to(OUT)),
                      "dims": list(behaviour.dims), "coords": _coords(behaviour), "values": _jsonable(behaviour.values),
                      "attrs": {k: str(v) for k, v in behaviour.attrs.items()}},
        "stimuli": {"identifier": STIMULI, "csv": str(csv_path.relative_to(OUT)), "zip": str(zip_path.relative_to(OUT)),
                    "columns": list(stimulus_set.columns),
                    "table": json.loads(stimulus_set.to_json(orient="records")),
                    "mean_pixel": pixels, "size_wh": sizes},
    }
    (OUT / "readback.json").write_text(json.dumps(readback, indent=1, default=_scalar) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
