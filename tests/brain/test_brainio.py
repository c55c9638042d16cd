"""load_brainio against files written by brainscore-core and what brainscore-core reads back from them.

The fixtures (``tests/fixtures/brainio/``) and ``readback.json`` are made by
``experiments/make_brainio_fixtures.py`` with brainscore-core's own writing and loading code.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from neuroreg.behaviour._tables import read_trials
from neuroreg.brain import BrainIOBehaviour, BrainIONeural, NeuralStimulusSet, load_brainio
from neuroreg.brain._brainio_files import read_assembly
from neuroreg.errors import DataFormatError

ROOT = Path(__file__).resolve().parents[1] / "fixtures" / "brainio"
READBACK = json.loads((ROOT / "readback.json").read_text())


def _values_equal(ours: np.ndarray, theirs: list) -> None:
    ours = np.asarray(ours)
    if ours.dtype.kind in "fc":
        np.testing.assert_allclose(ours.astype(np.float64), np.asarray(theirs, dtype=np.float64), rtol=0, atol=1e-12)
    else:
        assert ours.tolist() == theirs


@pytest.mark.parametrize("part", ["neural", "behaviour"])
def test_every_coordinate_as_brainscore_core_reads_it(part):
    ref = READBACK[part]
    raw = read_assembly(ROOT / ref["path"])
    assert list(raw.dims) == ref["dims"]
    _values_equal(raw.values, ref["values"])
    theirs = dict(ref["coords"])
    if "image_id" in theirs:      # brainio's loader copies a legacy image_id to stimulus_id: so does load_brainio
        assert theirs.pop("stimulus_id")["values"] == theirs["image_id"]["values"]
    assert set(raw.coords) == set(theirs)
    for name, coord in theirs.items():
        dim, values = raw.coords[name]
        assert [dim] == coord["dims"], name
        _values_equal(values, coord["values"])
    assert raw.attrs["stimulus_set_identifier"] == ref["attrs"]["stimulus_set_identifier"]


def test_neural_responses_are_brainscores_repetition_average():
    out = load_brainio("test.Tiny2026.neural", root=ROOT)
    assert isinstance(out, BrainIONeural)
    ref = READBACK["neural_averaged_70_170"]
    assert ref["dims"] == ["stimulus_id", "neuroid"]
    their_ids = ref["coords"]["stimulus_id"]["values"]
    rows = [their_ids.index(s) for s in out.brain.stimulus_ids.tolist()]
    np.testing.assert_allclose(out.brain.responses, np.asarray(ref["values"])[rows], rtol=0, atol=1e-12)
    assert sorted(out.brain.stimulus_ids.tolist()) == their_ids
    assert out.time_bin == (70.0, 170.0)
    for name in ("neuroid_id", "region", "animal", "arr", "x"):
        _values_equal(out.brain.unit_info[name], ref["coords"][name]["values"])
    assert out.brain.unit_info["roi"].tolist() == ref["coords"]["region"]["values"]
    assert out.brain.select(roi="IT").n_units == 3


def _presentations(time_index: int) -> tuple[list, list, np.ndarray]:
    ref = READBACK["neural"]
    values = np.asarray(ref["values"])[:, :, time_index]
    return ref["coords"]["stimulus_id"]["values"], ref["coords"]["repetition"]["values"], values


def test_trials_hold_each_repetition_as_stored():
    out = load_brainio(ROOT / READBACK["neural"]["path"])
    stim, reps, values = _presentations(0)
    assert out.brain.trials is not None and out.brain.trials.shape == (3, 8, 6)
    for p, (s, r) in enumerate(zip(stim, reps)):
        i = out.brain.stimulus_ids.tolist().index(s)
        np.testing.assert_array_equal(out.brain.trials[r, i], values[p])
    np.testing.assert_allclose(out.brain.trials.mean(0), out.brain.responses, rtol=0, atol=1e-12)


def test_other_time_bin():
    out = load_brainio("test.Tiny2026.neural", root=ROOT, time_bin=(170, 270))
    stim, _, values = _presentations(1)
    for i, s in enumerate(out.brain.stimulus_ids.tolist()):
        rows = [p for p, t in enumerate(stim) if t == s]
        np.testing.assert_allclose(out.brain.responses[i], values[rows].mean(0), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match=r"time bins \[\(70.0, 170.0\), \(170.0, 270.0\)\]"):
        load_brainio("test.Tiny2026.neural", root=ROOT, time_bin=(50, 200))


def test_labels_and_images_from_the_stimulus_set():
    out = load_brainio("test.Tiny2026.neural", root=ROOT)
    table = {row["stimulus_id"]: row for row in READBACK["stimuli"]["table"]}
    assert out.labels is not None
    assert out.labels.tolist() == [table[s]["object_name"] for s in out.brain.stimulus_ids.tolist()]
    assert out.stimulus_set_identifier == "test.tiny"
    assert out.brain.stimuli is not None
    for i, s in enumerate(out.brain.stimulus_ids.tolist()):
        assert out.brain.stimuli[i].mean() == pytest.approx(READBACK["stimuli"]["mean_pixel"][s], abs=1e-9)
        assert list(out.brain.stimuli[i].shape[1::-1]) == READBACK["stimuli"]["size_wh"][s]
    assert out.stimulus_meta["ty"].tolist() == [table[s]["ty"] for s in out.brain.stimulus_ids.tolist()]


def test_stimulus_meta_is_brainscores_merge_of_the_stimulus_set():
    """Per stimulus, the presentation coordinates of ``StimulusMergeAssemblyLoader`` (repetition aside)."""
    merged = dict(READBACK["neural_merged_presentation"])
    merged.pop("repetition")
    out = load_brainio("test.Tiny2026.neural", root=ROOT)
    assert set(out.stimulus_meta.columns) == set(merged)
    rows = {s: i for i, s in enumerate(out.stimulus_meta["stimulus_id"].tolist())}
    assert list(rows) == out.brain.stimulus_ids.tolist()
    for name, coord in merged.items():
        ours = [out.stimulus_meta[name].iloc[rows[s]] for s in merged["stimulus_id"]["values"]]
        _values_equal(np.asarray(ours), coord["values"])


def test_stimulus_set_as_brainscore_core_reads_it():
    ref = READBACK["stimuli"]
    out = load_brainio("test.tiny", root=ROOT)
    assert isinstance(out, NeuralStimulusSet)
    theirs = pd.DataFrame(ref["table"])
    assert out.stimulus_ids.tolist() == theirs["stimulus_id"].tolist()
    assert out.labels is not None and set(out.labels.columns) == set(ref["columns"])
    for column in ref["columns"]:
        _values_equal(out.labels[column].to_numpy(), theirs[column].tolist())
    means = out.images.reshape(out.n_stimuli, -1).astype(np.float64).mean(1)
    np.testing.assert_allclose(means, [ref["mean_pixel"][s] for s in out.stimulus_ids.tolist()], atol=1e-9)
    assert out.images_tensor(4).shape == (8, 3, 4, 4)


def test_behaviour_becomes_the_trials_table():
    ref = READBACK["behaviour"]
    out = load_brainio("test.Tiny2026.behaviour", root=ROOT)
    assert isinstance(out, BrainIOBehaviour)
    assert list(out.trials.columns) == ["stimulus_id", "sample_obj", "dist_obj", "choice", "worker_id"]
    for column in out.trials.columns:
        _values_equal(out.trials[column].to_numpy(), ref["coords"][column]["values"])
    assert out.trials["choice"].tolist() == ref["values"]       # the stored values are the choices
    assert out.stimulus_set is not None and out.stimulus_set.n_stimuli == 8
    indexed = read_trials(out.trials, np.array(["car", "dog"]))
    assert indexed.n_trials == len(ref["values"])


def test_brainio_home_and_the_old_brainio_layout(tmp_path, monkeypatch):
    """``$BRAINIO_HOME`` as the default root; ``<root>/image_<id>/image_<id>.csv`` found by a shorter identifier."""
    csv = next(ROOT.glob("*/stimulus_test_tiny.csv"))
    archive = next(ROOT.glob("*/stimulus_test_tiny.zip"))
    (tmp_path / "image_lab_test_tiny").mkdir()
    shutil.copy(csv, tmp_path / "image_lab_test_tiny" / "image_lab_test_tiny.csv")
    shutil.copy(archive, tmp_path / "image_lab_test_tiny" / "image_lab_test_tiny.zip")
    monkeypatch.setenv("BRAINIO_HOME", str(tmp_path))
    out = load_brainio("test.tiny")
    assert isinstance(out, NeuralStimulusSet) and out.n_stimuli == 8


def test_missing_files_name_the_path_and_identifier(tmp_path):
    with pytest.raises(FileNotFoundError, match="no BrainIO file for identifier 'dicarlo.MajajHong2015.public'.*"
                                                "assy_dicarlo_MajajHong2015_public.nc.*test_Tiny2026_neural"):
        load_brainio("dicarlo.MajajHong2015.public", root=ROOT)
    with pytest.raises(FileNotFoundError, match=f"root: the BrainIO cache folder {tmp_path / 'none'} does not exist "
                                                r"\(looking for identifier 'x.y'\)"):
        load_brainio("x.y", root=tmp_path / "none")
    with pytest.raises(FileNotFoundError, match="assy_gone.nc does not exist"):
        load_brainio(tmp_path / "assy_gone.nc")
    with pytest.raises(TypeError, match="path_or_identifier must be a path or a BrainIO identifier"):
        load_brainio(3)  # type: ignore[arg-type]


def test_stimulus_set_without_its_zip(tmp_path):
    csv = next(ROOT.glob("*/stimulus_test_tiny.csv"))
    (tmp_path / "a").mkdir()
    shutil.copy(csv, tmp_path / "a" / csv.name)
    with pytest.raises(FileNotFoundError, match="no stimulus_test_tiny.zip"):
        load_brainio(tmp_path / "a" / csv.name)


def _rewrite(tmp_path: Path, edit) -> Path:
    """The fixture neural assembly changed by ``edit`` (xarray Dataset -> Dataset) in a cache folder of its own."""
    with xr.open_dataset(ROOT / READBACK["neural"]["path"], engine="h5netcdf") as ds:
        ds = edit(ds.load())
    out = tmp_path / "assy_test_edit" / "assy_test_edit.nc"
    out.parent.mkdir(parents=True)
    ds.to_netcdf(out, engine="h5netcdf")
    return out


def test_assembly_without_the_expected_dimensions(tmp_path):
    path = _rewrite(tmp_path, lambda ds: ds.rename_dims({"neuroid": "channel"}))
    with pytest.raises(DataFormatError, match=r"has dims \['presentation', 'channel', 'time_bin'\]"):
        load_brainio(path, images=False)
    path = _rewrite(tmp_path / "b", lambda ds: ds.drop_vars("stimulus_id"))
    with pytest.raises(DataFormatError, match="no stimulus_id \\(or image_id\\) coordinate"):
        load_brainio(path, images=False)
    path = _rewrite(tmp_path / "c", lambda ds: ds.drop_vars("time_bin_end"))
    with pytest.raises(DataFormatError, match="needs time_bin_start and time_bin_end"):
        load_brainio(path, images=False)


def test_incomplete_repetitions_keep_the_complete_ones(tmp_path):
    stim, reps, _ = _presentations(0)
    drop = next(p for p, (s, r) in enumerate(zip(stim, reps)) if s == "s2" and r == 1)
    path = _rewrite(tmp_path, lambda ds: ds.isel(presentation=[p for p in range(len(stim)) if p != drop]))
    with pytest.warns(UserWarning, match="1 of 3 repetitions lack a response"):
        out = load_brainio(path, images=False)
    assert out.brain.trials.shape == (2, 8, 6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        full = load_brainio(ROOT / READBACK["neural"]["path"], images=False)
    assert full.brain.stimuli is None and full.labels is None


def test_unreadable_or_ambiguous_files(tmp_path):
    bad = tmp_path / "assy_bad" / "assy_bad.nc"
    bad.parent.mkdir()
    bad.write_bytes(b"not a netCDF file")
    with pytest.raises(DataFormatError, match="assy_bad.nc: cannot read it as a BrainIO netCDF assembly"):
        load_brainio("bad", root=tmp_path)
    for folder in ("one", "two"):
        (tmp_path / folder).mkdir()
        shutil.copy(next(ROOT.glob("*/stimulus_test_tiny.csv")), tmp_path / folder / "stimulus_test_tiny.csv")
    with pytest.raises(DataFormatError, match="identifier 'test.tiny' matches 2 files"):
        load_brainio("test.tiny", root=tmp_path)
    with pytest.raises(DataFormatError, match="is a folder; pass root="):
        load_brainio(tmp_path / "one")


def test_behaviour_without_the_choice_coordinates(tmp_path):
    source = ROOT / READBACK["behaviour"]["path"]
    with xr.open_dataset(source, engine="h5netcdf") as ds:
        ds = ds.load()
    cases = {"no_dist": (ds.drop_vars("dist_obj"), "sample_obj \\(or truth\\) and dist_obj; it has"),
             "no_id": (ds.drop_vars("image_id"), "no stimulus_id \\(or image_id\\) coordinate"),
             "two_d": (ds.expand_dims(subject=2), r"has dims \['subject', 'presentation'\]")}
    for name, (edited, message) in cases.items():
        path = tmp_path / f"assy_{name}.nc"
        edited.to_netcdf(path, engine="h5netcdf")
        with pytest.raises(DataFormatError, match=message):
            load_brainio(path, images=False)
    numbers = ds.drop_vars("choice").assign(data=("presentation", np.zeros(ds.sizes["presentation"])))
    numbers.to_netcdf(tmp_path / "assy_numbers.nc", engine="h5netcdf")
    with pytest.raises(DataFormatError, match="no choice coordinate and the values are float64 numbers"):
        load_brainio(tmp_path / "assy_numbers.nc", images=False)
