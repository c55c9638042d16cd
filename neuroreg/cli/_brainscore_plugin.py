"""The files of a Brain-Score model plugin (brainscore-vision 2.4's ``brainscore_vision/models/<plugin>/`` layout).

A plugin folder holds:

- ``__init__.py``: registers the model in ``brainscore_vision.model_registry`` under its identifier
  (Brain-Score finds a plugin by the line ``model_registry['<identifier>'] = ...``);
- ``model.py``: builds the network with ``neuroreg.create_model``, loads ``weights.pth`` with
  ``torch.load(weights_only=True)`` (checked against its SHA-256 first), wraps it in Brain-Score's
  ``PytorchWrapper`` with the model's own preprocessing (``neuroreg.preprocessing_of``: resize and
  mean/std, no crop) and commits it with ``ModelCommitment(layers, region_layer_map,
  behavioral_readout_layer, visual_degrees)``;
- ``region_layer_map/<identifier>.json``: the committed V1/V2/V4/IT layers (Brain-Score's own file
  name for them; ``model.py`` passes the map explicitly, so Brain-Score never runs its own layer
  selection, which would download its public benchmarks);
- ``weights.pth``: the network's state dict (tensors only);
- ``requirements.txt``: what Brain-Score installs before importing the plugin;
- ``test.py``: Brain-Score's plugin tests (identifier, committed layers, a recording and the
  probabilities task on a few generated images).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neuroreg.errors import OutputError

__all__ = ["PluginSpec", "REGIONS", "PLUGIN_FILES", "check_identifier", "plugin_package_name", "render_plugin",
           "file_sha256", "check_plugin_folder"]

#: The regions Brain-Score's standard benchmarks record from, in the order of the ventral stream.
REGIONS = ("V1", "V2", "V4", "IT")
#: Files an export writes (the folder may hold these from an earlier export and nothing else to be overwritten).
PLUGIN_FILES = ("__init__.py", "model.py", "test.py", "requirements.txt", "weights.pth", "region_layer_map")

_IDENTIFIER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def check_identifier(identifier: str) -> str:
    """Refuse a Brain-Score identifier that cannot name a registry entry and a JSON file.

    Allowed: 1-100 characters of letters, digits, ``.``, ``_`` and ``-``, starting with a
    letter or digit (as Brain-Score's own, e.g. ``CORnet-S``, ``resnet50_tutorial``).
    """
    if not isinstance(identifier, str) or not _IDENTIFIER.match(identifier):
        raise ValueError(f"--identifier must be 1-100 characters of letters, digits, '.', '_' or '-', starting "
                         f"with a letter or digit (e.g. 'neuroreg-cornet_s'); got {identifier!r}")
    return identifier


def plugin_package_name(identifier: str) -> str:
    """The folder name under ``brainscore_vision/models/``: the identifier with every character that is not a
    letter, digit or ``_`` replaced by ``_`` (the folder is imported as a Python package)."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", check_identifier(identifier))
    return name if not name[0].isdigit() else f"model_{name}"


@dataclass(frozen=True)
class PluginSpec:
    """What a plugin commits to.

    identifier: the Brain-Score model identifier; model_name: the neuroreg/timm registry name;
    model_kwargs: keywords of ``neuroreg.create_model`` (e.g. ``num_classes``); seed: the torch seed
    set before the network is built (as ``neuroreg`` does); region_layer_map: module name per
    region of :data:`REGIONS`; behavioral_readout_layer: the module whose output the
    probabilities read-out is fitted on; image_size: input side in pixels; visual_degrees: the
    field of view of that image in degrees; weights_sha256: hex digest of ``weights.pth``;
    provenance: lines for the plugin's docstring (where the weights and the map came from).
    """

    identifier: str
    model_name: str
    model_kwargs: dict[str, Any]
    seed: int
    region_layer_map: dict[str, str]
    behavioral_readout_layer: str
    image_size: int
    visual_degrees: float
    weights_sha256: str
    neuroreg_version: str
    provenance: tuple[str, ...] = field(default=())

    @property
    def layers(self) -> list[str]:
        """The committed layers: the regions' layers in ventral-stream order, then the behavioural read-out."""
        return list(dict.fromkeys([*(self.region_layer_map[r] for r in REGIONS), self.behavioral_readout_layer]))


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _init_py(spec: PluginSpec) -> str:
    return (f'"""Brain-Score model plugin {spec.identifier}: neuroreg\'s {spec.model_name} (see model.py)."""\n\n'
            "from brainscore_vision import model_registry\n\n"
            "from .model import get_model_commitment\n\n"
            f"model_registry[{spec.identifier!r}] = lambda: get_model_commitment({spec.identifier!r})\n")


_MODEL_BODY = '''
PLUGIN_DIR = Path(__file__).resolve().parent
REGIONS = ("V1", "V2", "V4", "IT")


def region_layer_map() -> dict:
    """Region -> committed module name, read from region_layer_map/<identifier>.json."""
    with (PLUGIN_DIR / "region_layer_map" / f"{IDENTIFIER}.json").open(encoding="utf-8") as f:
        mapping = json.load(f)
    missing = [region for region in REGIONS if region not in mapping]
    if missing:
        raise ValueError(f"region_layer_map/{IDENTIFIER}.json has no layer for {missing}; it has {mapping}")
    return mapping


def get_layers(identifier: str = IDENTIFIER) -> list:
    """The committed layers: each region's, in ventral-stream order, then the behavioural read-out layer."""
    mapping = region_layer_map()
    return list(dict.fromkeys([*(mapping[region] for region in REGIONS), BEHAVIORAL_READOUT_LAYER]))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build_network() -> torch.nn.Module:
    """The network with the exported weights, in eval mode (weights read with weights_only=True)."""
    path = PLUGIN_DIR / WEIGHTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{IDENTIFIER}: weights file {path} is missing; export the plugin again")
    digest = _sha256(path)
    if digest != WEIGHTS_SHA256:
        raise RuntimeError(f"{IDENTIFIER}: {path} has SHA-256 {digest}, the export wrote {WEIGHTS_SHA256}")
    torch.manual_seed(SEED)
    network = neuroreg.create_model(MODEL_NAME, **MODEL_KWARGS)
    state = torch.load(path, map_location="cpu", weights_only=True)
    network.load_state_dict(state, strict=True)
    return network.eval()


def load_preprocess_images(image_filepaths, preprocessing) -> np.ndarray:
    """Image files -> (n, 3, IMAGE_SIZE, IMAGE_SIZE) float32: RGB pixels in [0, 1], then the model's own
    resize and mean/std (neuroreg.preprocessing_of; the whole image, no crop, as Brain-Score places stimuli)."""
    batch = []
    for image_filepath in image_filepaths:
        with Image.open(image_filepath) as image:
            pixels = to_tensor(image.convert("RGB"))
        batch.append(preprocessing(pixels).numpy())
    return np.stack(batch).astype(np.float32)


def get_model(identifier: str = IDENTIFIER, batch_size: int = 64) -> PytorchWrapper:
    """Brain-Score's activations model: the network in a PytorchWrapper with its preprocessing.

    batch_size: images per forward pass (Brain-Score pads the last batch to this size; 64 is its default).
    """
    network = build_network()
    preprocessing = neuroreg.preprocessing_of(network, image_size=IMAGE_SIZE)
    wrapper = PytorchWrapper(identifier=identifier, model=network, batch_size=batch_size,
                             preprocessing=functools.partial(load_preprocess_images, preprocessing=preprocessing))
    wrapper.image_size = IMAGE_SIZE
    return wrapper


def get_model_commitment(identifier: str = IDENTIFIER, batch_size: int = 64) -> ModelCommitment:
    """The brain model: the committed region-to-layer map, read-out layer and visual degrees."""
    return ModelCommitment(identifier=identifier, activations_model=get_model(identifier, batch_size),
                           layers=get_layers(identifier), region_layer_map=region_layer_map(),
                           behavioral_readout_layer=BEHAVIORAL_READOUT_LAYER, visual_degrees=VISUAL_DEGREES)


def get_bibtex(model_identifier: str) -> str:
    return BIBTEX


if __name__ == "__main__":
    from brainscore_vision.model_helpers.check_submission import check_models

    check_models.check_base_models(__name__)
'''


def _model_py(spec: PluginSpec) -> str:
    about = "\n".join(spec.provenance)
    bibtex = ("@misc{neuroreg, title = {neuroreg: brain-constrained vision models}, "
              f"note = {{model {spec.model_name}, neuroreg {spec.neuroreg_version}}}}}")
    head = (f'"""Brain-Score model {spec.identifier}: neuroreg\'s ``{spec.model_name}``, exported by neuroreg '
            f"{spec.neuroreg_version}.\n\n{about}\n\nNeeds ``neuroreg`` installed (requirements.txt); the weights are "
            'read with ``torch.load(weights_only=True)``.\n"""\n\n'
            "import functools\nimport hashlib\nimport json\nfrom pathlib import Path\n\n"
            "import numpy as np\nimport torch\nfrom PIL import Image\n"
            "from torchvision.transforms.functional import to_tensor\n\n"
            "import neuroreg\n"
            "from brainscore_vision.model_helpers.activations.pytorch import PytorchWrapper\n"
            "from brainscore_vision.model_helpers.brain_transformation import ModelCommitment\n\n"
            f"IDENTIFIER = {spec.identifier!r}\n"
            f"MODEL_NAME = {spec.model_name!r}\n"
            f"MODEL_KWARGS = {dict(spec.model_kwargs)!r}\n"
            f"SEED = {int(spec.seed)!r}\n"
            f"IMAGE_SIZE = {int(spec.image_size)!r}\n"
            f"VISUAL_DEGREES = {spec.visual_degrees!r}\n"
            f"BEHAVIORAL_READOUT_LAYER = {spec.behavioral_readout_layer!r}\n"
            "WEIGHTS_FILE = 'weights.pth'\n"
            f"WEIGHTS_SHA256 = {spec.weights_sha256!r}\n"
            f"BIBTEX = {bibtex!r}\n")
    return head + _MODEL_BODY


_TEST_BODY = '''

@pytest.fixture(scope="module")
def model():
    """The registered model with small batches (Brain-Score pads every batch to its size)."""
    brainscore_vision.load_model(IDENTIFIER)            # registers it, as Brain-Score does
    return get_model_commitment(IDENTIFIER, batch_size=4)


def test_registered():
    assert brainscore_vision.load_model(IDENTIFIER).identifier == IDENTIFIER


def _stimuli(folder, n_per_label: int, labels, name: str) -> StimulusSet:
    """Seeded noise images (64 x 64 PNG), n_per_label per label, in a StimulusSet with image_label."""
    rng = np.random.default_rng(0 if name == "fit" else 1)
    rows, paths = [], {}
    for label in labels:
        for k in range(n_per_label):
            stimulus_id = f"{name}-{label}-{k}"
            path = folder / f"{stimulus_id}.png"
            Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path)
            rows.append({"stimulus_id": stimulus_id, "image_label": label})
            paths[stimulus_id] = str(path)
    stimuli = StimulusSet(pd.DataFrame(rows))
    stimuli.stimulus_paths = paths
    stimuli.identifier = f"{IDENTIFIER}-plugin-test-{name}"
    return stimuli


def test_has_identifier(model):
    assert model.identifier == IDENTIFIER


def test_committed_layers():
    assert region_layer_map() == COMMITTED
    assert get_layers() == LAYERS


@pytest.mark.parametrize("region", ["V1", "V2", "V4", "IT"])
def test_records_committed_layer(model, region, tmp_path):
    stimuli = _stimuli(tmp_path, 2, ["a"], f"record-{region}")
    model.start_task(BrainModel.Task.passive)
    model.start_recording(region, [(70, 170)])
    recording = model.look_at(stimuli)
    assert recording.sizes["presentation"] == 2
    assert set(recording["layer"].values) == {COMMITTED[region]}
    assert set(recording["region"].values) == {region}


def test_probabilities(model, tmp_path):
    fitting = _stimuli(tmp_path, 3, ["a", "b"], "fit")
    test = _stimuli(tmp_path, 2, ["a", "b"], "test")
    model.start_task(BrainModel.Task.probabilities, fitting)
    probabilities = model.look_at(test)
    assert probabilities.dims == ("presentation", "choice")
    assert probabilities.shape == (4, 2)
    assert np.allclose(probabilities.values.sum(axis=1), 1.0)
'''


def _test_py(spec: PluginSpec) -> str:
    return (f'"""Plugin tests of {spec.identifier} (run by Brain-Score, or with pytest in its environment)."""\n\n'
            "import numpy as np\nimport pandas as pd\nimport pytest\nfrom PIL import Image\n\n"
            "import brainscore_vision\n"
            "from brainscore_core.supported_data_standards.brainio.stimuli import StimulusSet\n"
            "from brainscore_vision.model_interface import BrainModel\n\n"
            "from .model import IDENTIFIER, get_layers, get_model_commitment, region_layer_map\n\n"
            f"COMMITTED = {dict(spec.region_layer_map)!r}\n"
            f"LAYERS = {spec.layers!r}\n" + _TEST_BODY)


def _requirements(spec: PluginSpec) -> str:
    return "\n".join([f"neuroreg=={spec.neuroreg_version}", "torch", "torchvision", "numpy", "pillow"]) + "\n"


def render_plugin(spec: PluginSpec) -> dict[str, str]:
    """Relative path -> text of every plugin file except ``weights.pth`` (see the module docstring)."""
    missing = [r for r in REGIONS if r not in spec.region_layer_map]
    if missing:
        raise ValueError(f"region_layer_map must name a layer for each of {list(REGIONS)}; missing {missing}")
    check_identifier(spec.identifier)
    return {
        "__init__.py": _init_py(spec),
        "model.py": _model_py(spec),
        "test.py": _test_py(spec),
        "requirements.txt": _requirements(spec),
        f"region_layer_map/{spec.identifier}.json":
            json.dumps({r: spec.region_layer_map[r] for r in REGIONS}, indent=2) + "\n",
    }


def check_plugin_folder(out: Path, *, overwrite: bool) -> None:
    """Refuse an ``--out`` folder that holds anything but an earlier export (which ``overwrite`` allows)."""
    if not out.exists():
        return
    entries = sorted(p.name for p in out.iterdir() if p.name != "__pycache__")
    if not entries:
        return
    foreign = [e for e in entries if e not in PLUGIN_FILES]
    if foreign:
        raise OutputError(f"--out {str(out)!r} holds files that are not a Brain-Score plugin's ({foreign[:5]}); "
                          "give an empty or new folder")
    if not overwrite:
        raise OutputError(f"--out {str(out)!r} holds an earlier export ({entries}); pass --overwrite to replace it")

