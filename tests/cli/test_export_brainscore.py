"""`neuroreg export brainscore`: the plugin's files, its committed layers, its weights and its errors.

brainscore-vision itself does not install beside neuroreg (it pins numpy < 2, xarray < 2022.6);
here its two classes the plugin calls (``PytorchWrapper``, ``ModelCommitment``) are stand-ins
that record their arguments, so ``model.py`` runs as written. The slow test
(test_export_brainscore_env.py) runs the plugin under brainscore-vision 2.4.2 itself.
"""

import ast
import hashlib
import importlib.util
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import neuroreg as nr
from neuroreg.cli._exit import EXIT_INPUT, EXIT_OUTPUT, EXIT_USAGE
from neuroreg.cli.export import classifier_input_layer, scorecard_layers
from neuroreg.cli.main import main
from neuroreg.errors import UnknownNameError
from neuroreg.results import ScoreTable

CORNET_AREAS = {"V1": "V1", "V2": "V2", "V4": "V4", "IT": "IT"}


def _export(tmp_path, *extra, model="cornet_z", out="plugin"):
    code = main(["export", "brainscore", "--model", model, "--out", str(tmp_path / out), *extra])
    return code, tmp_path / out


def _constants(path: Path) -> dict:
    """Module-level NAME = <literal> assignments of a generated file, read without running it."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {node.targets[0].id: ast.literal_eval(node.value) for node in tree.body
            if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
            and isinstance(node.value, (ast.Constant, ast.Dict, ast.List))}


def _error(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("neuroreg export: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def cornet_z_plugin(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export")
    code, out = _export(tmp)
    assert code == 0
    return out


def test_plugin_has_brainscore_layout(cornet_z_plugin):
    names = sorted(p.relative_to(cornet_z_plugin).as_posix() for p in cornet_z_plugin.rglob("*") if p.is_file())
    assert names == ["__init__.py", "model.py", "region_layer_map/neuroreg-cornet_z.json", "requirements.txt",
                     "test.py", "weights.pth"]
    init = (cornet_z_plugin / "__init__.py").read_text()
    # Brain-Score finds a plugin by this line (brainscore_core ImportPlugin.locate_plugin)
    assert "model_registry['neuroreg-cornet_z']" in init
    for name in ("__init__.py", "model.py", "test.py"):
        compile((cornet_z_plugin / name).read_text(), name, "exec")
    requirements = (cornet_z_plugin / "requirements.txt").read_text().split()
    assert f"neuroreg=={nr.__version__}" in requirements and "torch" in requirements


def test_region_layer_map_is_the_cornet_areas(cornet_z_plugin):
    mapping = json.loads((cornet_z_plugin / "region_layer_map" / "neuroreg-cornet_z.json").read_text())
    assert mapping == CORNET_AREAS == nr.area_layers(nr.create_model("cornet_z"))
    assert list(mapping) == ["V1", "V2", "V4", "IT"]
    consts = _constants(cornet_z_plugin / "model.py")
    assert consts["IDENTIFIER"] == "neuroreg-cornet_z" and consts["MODEL_NAME"] == "cornet_z"
    assert consts["BEHAVIORAL_READOUT_LAYER"] == "decoder.avgpool"
    assert consts["IMAGE_SIZE"] == 224 and consts["VISUAL_DEGREES"] == 8.0
    tests = _constants(cornet_z_plugin / "test.py")
    assert tests["COMMITTED"] == CORNET_AREAS
    assert tests["LAYERS"] == ["V1", "V2", "V4", "IT", "decoder.avgpool"]


def test_weights_are_the_model_and_load_weights_only(cornet_z_plugin):
    path = cornet_z_plugin / "weights.pth"
    assert _constants(cornet_z_plugin / "model.py")["WEIGHTS_SHA256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    state = torch.load(path, map_location="cpu", weights_only=True)
    torch.manual_seed(0)                                   # --seed 0: the weights neuroreg builds
    reference = nr.create_model("cornet_z").state_dict()
    assert list(state) == list(reference)
    assert all(torch.equal(state[k], reference[k]) for k in reference)


@pytest.fixture
def fake_brainscore(monkeypatch):
    """Stand-ins for the brainscore_vision classes model.py calls; each records its keyword arguments."""
    class Recorder:
        def __init__(self, *args, **kwargs):
            self.args, self.kwargs = args, kwargs

    modules = {}
    for name in ("brainscore_vision", "brainscore_vision.model_helpers",
                 "brainscore_vision.model_helpers.activations", "brainscore_vision.model_helpers.activations.pytorch",
                 "brainscore_vision.model_helpers.brain_transformation"):
        modules[name] = types.ModuleType(name)
        monkeypatch.setitem(sys.modules, name, modules[name])
    pytorch = modules["brainscore_vision.model_helpers.activations.pytorch"]
    pytorch.PytorchWrapper = type("PytorchWrapper", (Recorder,), {})
    transformation = modules["brainscore_vision.model_helpers.brain_transformation"]
    transformation.ModelCommitment = type("ModelCommitment", (Recorder,), {})
    return modules


def _load_model_py(plugin: Path):
    spec = importlib.util.spec_from_file_location("exported_plugin_model", plugin / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_model_py_commits_the_map_and_preprocesses_like_neuroreg(cornet_z_plugin, fake_brainscore, tmp_path):
    module = _load_model_py(cornet_z_plugin)
    commitment = module.get_model_commitment()
    kw = commitment.kwargs
    assert kw["identifier"] == "neuroreg-cornet_z"
    assert kw["region_layer_map"] == CORNET_AREAS
    assert kw["layers"] == ["V1", "V2", "V4", "IT", "decoder.avgpool"]
    assert kw["behavioral_readout_layer"] == "decoder.avgpool" and kw["visual_degrees"] == 8.0
    wrapper = kw["activations_model"]
    assert wrapper.image_size == 224 and wrapper.kwargs["batch_size"] == 64
    # the preprocessing Brain-Score calls: image files -> (n, 3, 224, 224), as neuroreg's own contract
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (2, 40, 56, 3), dtype=np.uint8)
    paths = []
    for i, image in enumerate(pixels):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(image).save(paths[-1])
    got = wrapper.kwargs["preprocessing"](paths)
    assert got.shape == (2, 3, 224, 224) and got.dtype == np.float32
    expected = nr.preprocessing_of("cornet_z")(torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255)
    np.testing.assert_allclose(got, expected.numpy(), atol=1e-6)
    # the network model.py builds is the exported one, in eval mode
    network = wrapper.kwargs["model"]
    assert not network.training
    reference = torch.load(cornet_z_plugin / "weights.pth", weights_only=True)
    assert all(torch.equal(v, reference[k]) for k, v in network.state_dict().items())


def test_model_py_refuses_altered_weights(tmp_path, fake_brainscore):
    code, out = _export(tmp_path)
    assert code == 0
    state = torch.load(out / "weights.pth", weights_only=True)
    state["decoder.linear.bias"] += 1
    torch.save(state, out / "weights.pth")
    with pytest.raises(RuntimeError, match="SHA-256"):
        _load_model_py(out).build_network()


def test_checkpoint_weights_and_identifier(tmp_path):
    torch.manual_seed(5)
    trained = nr.create_model("cornet_z", num_classes=7)
    # a Lightning-style checkpoint: keys under "state_dict" with the module's "model." prefix
    ckpt = tmp_path / "epoch=2-step=30.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in trained.state_dict().items()}, "epoch": 2}, ckpt)
    code, out = _export(tmp_path, "--checkpoint", str(ckpt), "--num-classes", "7")
    assert code == 0
    consts = _constants(out / "model.py")
    assert consts["IDENTIFIER"] == "neuroreg-cornet_z-epoch_2-step_30"
    assert consts["MODEL_KWARGS"] == {"num_classes": 7}
    assert (out / "region_layer_map" / "neuroreg-cornet_z-epoch_2-step_30.json").is_file()
    state = torch.load(out / "weights.pth", weights_only=True)
    assert all(torch.equal(state[k], v) for k, v in trained.state_dict().items())
    assert "epoch=2-step=30.ckpt" in (out / "model.py").read_text()


def test_layer_option_and_identifier(tmp_path):
    code, out = _export(tmp_path, "--layer", "IT=V4", "--layer", "V1=V1.conv", "--identifier", "my.model-1")
    assert code == 0
    mapping = json.loads((out / "region_layer_map" / "my.model-1.json").read_text())
    assert mapping == {"V1": "V1.conv", "V2": "V2", "V4": "V4", "IT": "V4"}
    assert "model_registry['my.model-1']" in (out / "__init__.py").read_text()


def _brain_rows():
    """cRSA rows of two subjects: on train, V4 is best for 'IT' on average (0.5, 0.3 vs 0.2, 0.5); on test IT wins."""
    rows = []
    for subject, (v4, it) in {"s1": (0.5, 0.2), "s2": (0.3, 0.5)}.items():
        for layer, train in (("V4", v4), ("IT", it), ("V2", 0.1)):
            for split, score in (("train", train), ("test", 1.0 if layer == "IT" else 0.0)):
                rows.append(dict(model="cornet_z", layer=layer, region="IT", subject=subject, metric="crsa",
                                 split=split, score=score, dataset="kriegeskorte92"))
    rows.append(dict(model="cornet_z", layer="V2", region="EVC", subject="s1", metric="crsa", split="train",
                     score=0.9, dataset="algonauts2019_78"))
    return rows


def test_scorecard_layers_choose_on_train_mean_over_subjects():
    chosen = scorecard_layers(ScoreTable(_brain_rows()), "cornet_z")
    assert list(chosen) == ["IT"]                       # EVC is no Brain-Score region
    assert chosen["IT"][0] == "V4"                      # mean train 0.4 over 0.35; the test split never chooses
    assert "crsa" in chosen["IT"][1] and "train" in chosen["IT"][1]
    with pytest.raises(UnknownNameError, match="cornet_s"):
        scorecard_layers(ScoreTable(_brain_rows()), "cornet_s")


def test_scorecard_layers_of_predictivity_choose_on_the_selection_set():
    parts = (("scored", {"V2": 0.9, "V4": 0.1}), ("select_on", {"V2": 0.2, "V4": 0.6}))
    rows = [dict(model="m", layer=layer, region="V4", subject=None, metric="predictivity", split="cv", score=score,
                 data=data) for data, scores in parts for layer, score in scores.items()]
    assert scorecard_layers(ScoreTable(rows), "m")["V4"][0] == "V4"
    assert scorecard_layers(ScoreTable([r for r in rows if r["data"] == "scored"]), "m")["V4"][0] == "V2"


def test_scorecard_option_reads_a_saved_scorecard(tmp_path):
    folder = tmp_path / "card"
    folder.mkdir()
    (folder / "scorecard.json").write_text(json.dumps([{**r, "section": "brain"} for r in _brain_rows()]))
    (folder / "scorecard_meta.json").write_text(json.dumps({"models": ["cornet_z"], "ran_on": {}}))
    code, out = _export(tmp_path, "--scorecard", str(folder))
    assert code == 0
    mapping = json.loads((out / "region_layer_map" / "neuroreg-cornet_z.json").read_text())
    assert mapping == {"V1": "V1", "V2": "V2", "V4": "V4", "IT": "V4"}
    assert "chosen in the scorecard" in (out / "model.py").read_text()


def test_classifier_input_layer_of_timm_and_neuroreg_models():
    assert classifier_input_layer(nr.create_model("cornet_z"), 64) == "decoder.avgpool"
    assert classifier_input_layer(nr.create_model("resnet18", num_classes=3), 64) == "global_pool.pool"
    with pytest.raises(UnknownNameError, match="--behaviour-layer"):
        classifier_input_layer(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()), 32)


@pytest.mark.parametrize("extra, status, words", [
    (("--model", "no_such_net"), EXIT_USAGE, "no_such_net"),
    (("--checkpoint", "missing.ckpt"), EXIT_INPUT, "missing.ckpt"),
    (("--identifier", "bad id!"), EXIT_USAGE, "--identifier"),
    (("--layer", "MT=V1"), EXIT_USAGE, "REGION=MODULE"),
    (("--layer", "IT=decoder.nothing"), EXIT_USAGE, "decoder.nothing"),
    (("--behaviour-layer", "nowhere"), EXIT_USAGE, "nowhere"),
    (("--scorecard", "no_card_here"), EXIT_INPUT, "no_card_here"),
])
def test_bad_arguments_are_one_line_errors(tmp_path, capsys, monkeypatch, extra, status, words):
    monkeypatch.chdir(tmp_path)
    args = ["export", "brainscore", "--model", "cornet_z", "--out", str(tmp_path / "plugin")]
    if extra[0] == "--model":
        args[3] = extra[1]
    else:
        args += list(extra)
    assert main(args) == status
    assert words in _error(capsys)
    assert not (tmp_path / "plugin" / "weights.pth").exists()


def test_output_folder_errors(tmp_path, capsys):
    (tmp_path / "a_file").write_text("x")
    assert _export(tmp_path, out="a_file")[0] == EXIT_OUTPUT
    assert "a_file" in _error(capsys)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    assert _export(tmp_path, out="busy")[0] == EXIT_OUTPUT
    assert "notes.txt" in _error(capsys)
    assert _export(tmp_path, out="again")[0] == 0
    assert _export(tmp_path, out="again")[0] == EXIT_OUTPUT
    assert "--overwrite" in _error(capsys)
    assert _export(tmp_path, "--overwrite", "--identifier", "second", out="again")[0] == 0
    assert sorted(p.name for p in (tmp_path / "again" / "region_layer_map").iterdir()) == ["second.json"]
