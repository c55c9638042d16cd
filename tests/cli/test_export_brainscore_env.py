"""The exported cornet_s plugin runs under brainscore-vision 2.4.2 itself (slow: builds or reuses an environment).

brainscore-vision pins numpy < 2, scikit-learn < 1.6 and xarray < 2022.6, so it gets its own
virtual environment, outside the repository: ``$NEUROREG_BRAINSCORE_VENV``, default
``~/.cache/neuroreg/brainscore-vision-2.4.2-py<version>``, built once and reused while its
pins are unchanged. Only brainscore-vision's pinned and imported packages are installed in it;
torch, torchvision and timm come from neuroreg's own environment (its site-packages appended
after the new environment's by a ``.pth`` file, so the pinned versions win), and ``neuroreg``
from this checkout (a link in a folder the same ``.pth`` names first). To build it by hand::

    python -m venv ENV
    ENV/bin/pip install --no-deps brainscore-vision==2.4.2 brainscore-core==2.5.0 result-caching==0.5
    ENV/bin/pip install "numpy<2" "pandas<3" "scikit-learn<1.6" "xarray<2022.6" ...   # BASE_PACKAGES below

The test exports cornet_s, copies the plugin into the environment's
``brainscore_vision/models/``, loads it with ``brainscore_vision.load_model``, records each
region on a few generated images (``look_at``), runs ``start_task(probabilities, fitting_set)``,
and checks the shapes, the committed layers and that Brain-Score's IT activations equal
neuroreg's own extraction from the exported weights; then it runs the plugin's own test.py.
Skipped, with pip's message, only where the environment cannot be built (no package registry).
"""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import neuroreg as nr
from neuroreg.cli.main import main

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
PACKAGE_DIR = Path(nr.__file__).resolve().parent
#: Installed without dependencies (their own pins would pull the whole of Brain-Score's tool chain).
NO_DEPS_PACKAGES = ["brainscore-vision==2.4.2", "brainscore-core==2.5.0", "result-caching==0.5"]
#: What brainscore_vision.model_helpers and brainscore_core import, with their pins.
BASE_PACKAGES = ["numpy<2", "pandas<3", "scikit-learn<1.6", "xarray<2022.6", "importlib-metadata<5",
                 "opencv-python-headless<4.12", "netCDF4", "boto3", "requests", "psutil", "pyyaml", "tqdm",
                 "pillow", "pytest"]
READY = ".neuroreg-ready"
CORNET_S_SHAPES = {"V1": 64 * 56 * 56, "V2": 128 * 28 * 28, "V4": 256 * 14 * 14, "IT": 512 * 7 * 7}


def _env_dir() -> Path:
    python = f"py{sys.version_info[0]}.{sys.version_info[1]}"
    default = Path.home() / ".cache" / "neuroreg" / f"brainscore-vision-2.4.2-{python}"
    return Path(os.environ.get("NEUROREG_BRAINSCORE_VENV", default))


def _pip(python: Path, *args: str) -> None:
    done = subprocess.run([str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", *args],
                          capture_output=True, text=True)
    if done.returncode != 0:
        tail = " ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        pytest.skip(f"cannot build the brainscore-vision environment: pip install {' '.join(args)} failed: {tail}")


def _venv_python(env: Path) -> Path:
    return env / "bin" / "python"


def _site_packages(python: Path) -> Path:
    out = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


@pytest.fixture(scope="module")
def brainscore_env():
    """(python of the environment, its site-packages); built when missing or built with other pins."""
    env = _env_dir()
    python = _venv_python(env)
    stamp = "\n".join([*NO_DEPS_PACKAGES, *BASE_PACKAGES])
    if not (python.is_file() and (env / READY).is_file() and (env / READY).read_text() == stamp):
        start = time.perf_counter()
        shutil.rmtree(env, ignore_errors=True)
        env.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
        _pip(python, "--no-deps", *NO_DEPS_PACKAGES)
        _pip(python, *BASE_PACKAGES)
        (env / READY).write_text(stamp)
        print(f"built {env} in {time.perf_counter() - start:.0f} s")
    site = _site_packages(python)
    # neuroreg from this checkout first, then neuroreg's environment (torch, torchvision, timm) after the pins
    links = env / "neuroreg-checkout"
    links.mkdir(exist_ok=True)
    link = links / "neuroreg"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(PACKAGE_DIR, target_is_directory=True)
    paths = dict.fromkeys([str(links), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (site / "neuroreg_main_env.pth").write_text("\n".join(paths) + "\n")
    return python, site


def _write_images(folder: Path) -> dict:
    """8 seeded noise images (96 x 80 PNG): 2 to record, 2 labels x 2 to fit, 2 labels x 1 to test."""
    rng = np.random.default_rng(0)
    folder.mkdir()
    sets: dict = {"record": [], "fit": [], "test": []}
    pixels = {}
    for name, labels, n in (("record", [None], 2), ("fit", ["a", "b"], 2), ("test", ["a", "b"], 1)):
        for label in labels:
            for k in range(n):
                sid = f"{name}-{label or 'x'}-{k}"
                pixels[sid] = rng.integers(0, 256, (80, 96, 3), dtype=np.uint8)
                path = folder / f"{sid}.png"
                Image.fromarray(pixels[sid]).save(path)
                sets[name].append([sid, str(path)] + ([label] if label else []))
    sets["pixels"] = pixels
    return sets


def test_cornet_s_plugin_runs_under_brainscore_vision(brainscore_env, tmp_path):
    python, site = brainscore_env
    assert main(["export", "brainscore", "--model", "cornet_s", "--out", str(tmp_path / "plugin")]) == 0
    identifier, package = "neuroreg-cornet_s", "neuroreg_cornet_s"
    installed = site / "brainscore_vision" / "models" / package
    shutil.rmtree(installed, ignore_errors=True)
    shutil.copytree(tmp_path / "plugin", installed)
    images = _write_images(tmp_path / "images")
    pixels = images.pop("pixels")
    (tmp_path / "images.json").write_text(json.dumps(images))
    env = {**os.environ, "BS_INSTALL_DEPENDENCIES": "no", "RESULTCACHING_HOME": str(tmp_path / "result_caching"),
           "PYTHONNOUSERSITE": "1"}
    env.pop("PYTHONPATH", None)
    try:
        done = subprocess.run([str(python), str(HERE / "brainscore_plugin_driver.py"), identifier, package,
                               str(tmp_path / "images.json"), str(tmp_path)], capture_output=True, text=True, env=env)
        assert done.returncode == 0, done.stderr[-4000:]
        own = subprocess.run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", str(installed / "test.py")],
                             capture_output=True, text=True, env=env, cwd=tmp_path)
        assert own.returncode == 0, own.stdout[-4000:]
    finally:
        shutil.rmtree(installed, ignore_errors=True)

    result = json.loads((tmp_path / "result.json").read_text())
    areas = nr.area_layers(nr.create_model("cornet_s"))
    assert result["identifier"] == identifier
    assert result["layers"] == [areas[r] for r in ("V1", "V2", "V4", "IT")] + ["decoder.avgpool"]
    for region, n_units in CORNET_S_SHAPES.items():
        got = result["regions"][region]
        assert {k: v for k, v in got["sizes"].items() if k != "time_bin"} == {"presentation": 2, "neuroid": n_units}
        assert got["sizes"].get("time_bin", 1) == 1
        assert got["layers"] == [areas[region]] and got["region"] == [region]
    probabilities = result["probabilities"]
    assert probabilities["dims"] == ["presentation", "choice"] and probabilities["shape"] == [2, 2]
    assert sorted(probabilities["choices"]) == ["a", "b"]
    np.testing.assert_allclose(probabilities["row_sums"], 1.0, atol=1e-9)

    # Brain-Score's IT recording is neuroreg's own IT extraction from the exported weights
    torch.manual_seed(0)
    network = nr.create_model("cornet_s")
    network.load_state_dict(torch.load(tmp_path / "plugin" / "weights.pth", weights_only=True))
    record = torch.from_numpy(np.stack([pixels[sid] for sid, _ in images["record"]])).permute(0, 3, 1, 2) / 255
    ours = nr.extract(network.eval(), record.float(), {"IT": "IT"}, transform="model", progress=False)["IT"]
    np.testing.assert_allclose(np.load(tmp_path / "IT.npy"), ours.reshape(2, -1).numpy(), rtol=1e-4, atol=1e-5)
