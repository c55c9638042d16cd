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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("vision_repo", type=Path, help="a clone (or bare repository) of brain-score/vision")
    parser.add_argument("--commit", default="c642dbe42aae3ed064bc0b66f70a80b264021164")
    args = parser.parse_args()

    from brainscore_core.supported_data_standards.brainio.assemblies import (AssemblyLoader, BehavioralAssembly,
                                                                              NeuroidAssembly,
                                                                              StimulusMergeAssemblyLoader)
    from brainscore_core.supported_data_standards.brainio.fetch import unzip
    from brainscore_core.supported_data_standards.brainio.packaging import create_stimulus_csv, create_stimulus_zip
    from brainscore_core.supported_data_standards.brainio.stimuli import StimulusSet, StimulusSetLoader

    average_repetition = _average_repetition(args.vision_repo, args.commit)
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
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
