"""Run an installed neuroreg Brain-Score plugin under brainscore-vision; write what it recorded.

Runs inside the brainscore-vision environment (not neuroreg's); called by
test_export_brainscore_env.py as

    python brainscore_plugin_driver.py IDENTIFIER PACKAGE IMAGES_JSON OUT_DIR

IMAGES_JSON: {"record": [[stimulus_id, path], ...], "fit": [[id, path, label], ...],
"test": [[id, path, label], ...]}. Writes OUT_DIR/result.json (identifier, per region the recorded
sizes per dimension, layers and regions; the probabilities' dims, shape, choices and row sums) and
OUT_DIR/<region>.npy (the recording, presentation x neuroid, in the record order).
"""

import importlib
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

import brainscore_vision
from brainscore_core.supported_data_standards.brainio.stimuli import StimulusSet
from brainscore_vision.model_interface import BrainModel


def stimulus_set(rows, name: str) -> StimulusSet:
    frame = pd.DataFrame([{"stimulus_id": r[0], **({"image_label": r[2]} if len(r) > 2 else {})} for r in rows])
    stimuli = StimulusSet(frame)
    stimuli.stimulus_paths = {r[0]: r[1] for r in rows}
    stimuli.identifier = f"neuroreg-export-test-{name}"
    return stimuli


def main(identifier: str, package: str, images_json: str, out_dir: str) -> None:
    out = Path(out_dir)
    images = json.loads(Path(images_json).read_text())
    registered = brainscore_vision.load_model(identifier)
    plugin = importlib.import_module(f"brainscore_vision.models.{package}.model")
    model = plugin.get_model_commitment(identifier, batch_size=4)
    result = {"identifier": registered.identifier, "layers": plugin.get_layers(), "regions": {}}
    for region in ("V1", "V2", "V4", "IT"):
        model.start_task(BrainModel.Task.passive)
        model.start_recording(region, [(70, 170)])
        recording = model.look_at(stimulus_set(images["record"], f"record-{region}"))
        sizes = {dim: int(n) for dim, n in recording.sizes.items()}
        if "time_bin" in recording.dims:        # one time bin asked: Brain-Score may keep or squeeze the dim
            recording = recording.isel(time_bin=0)
        recording = recording.transpose("presentation", "neuroid")
        order = [list(recording["stimulus_id"].values).index(r[0]) for r in images["record"]]
        np.save(out / f"{region}.npy", recording.values[order])
        result["regions"][region] = {"sizes": sizes,
                                     "layers": sorted(set(recording["layer"].values.tolist())),
                                     "region": sorted(set(recording["region"].values.tolist()))}
    model.start_task(BrainModel.Task.probabilities, stimulus_set(images["fit"], "fit"))
    probabilities = model.look_at(stimulus_set(images["test"], "test"))
    result["probabilities"] = {"dims": list(probabilities.dims), "shape": list(probabilities.shape),
                               "choices": [str(c) for c in probabilities["choice"].values],
                               "row_sums": probabilities.values.sum(axis=1).tolist()}
    (out / "result.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main(*sys.argv[1:5])
