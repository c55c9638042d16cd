"""Reference outputs of the human-alignment score from the released code (harmonization 0.0.9).

Runs the released ``harmonization.evaluation.evaluate_clickme`` and its metric
functions (files ``harmonization/evaluation/{metrics,clickme}.py`` and the
``harmonization/common`` package they import, read from the
``Harmonization-0.0.9-py3-none-any.whl`` wheel on PyPI; the package's top-level
``__init__`` is not run, as it imports the model zoo) on seeded inputs and writes
``tests/fixtures/harmonization/``:

- ``clickme_metrics.npz``: for each case (``random``: uniform maps of 24 x 28
  pixels; ``ties``: maps of 20 grey levels, so ranks and the top-10 % thresholds
  tie; ``blobs``: blurred-click-like maps against noisy copies; ``constant``: one
  constant model map and one constant human map), the model maps ``<case>/a``,
  the human maps ``<case>/b``, and the release's per-image ``<case>/spearman``,
  ``<case>/dice``, ``<case>/iou`` and ``<case>/alignment_score``, all from
  ``evaluate_clickme`` itself: the maps are fed as a ``tf.data`` set of
  ``(maps, human maps, one-hot labels)`` batches of 4 with an explainer that
  returns its input, so the release's own loop, list concatenation and
  normalisation by its human ceiling (0.65753) produce the numbers. The
  ``constant`` case shows the release's behaviour: scipy's Spearman of a constant
  map is NaN, and so is the alignment score.
- ``clickme_saliency.npz``: a tiny Keras network (``Conv2D(8, 3, padding="same")``,
  ReLU, ``Conv2D(8, 3, padding="same")``, ReLU, global average pool,
  ``Dense(5)``; stride 1, so "same" pads one pixel on every side as PyTorch's
  ``padding=1``), its weights, 7 images of 32 x 32 x 3 pixels, labels and human
  maps of shape (7, 32, 32, 1) as the release's data set yields them; the
  release's default explainer (Xplique's ``Saliency``: the absolute gradient of
  the true-class output, max over channels) on them; and ``evaluate_clickme`` with
  that default explainer on batches of 3 (per-image ``spearman``, ``dice``,
  ``iou`` and ``alignment_score``).
- ``clickme_meta.json``: the versions and the wheel's hash.

Run in a virtual environment outside the project (Python 3.11) with::

    pip install tensorflow-cpu==2.15.1 numpy==1.26.4 scipy==1.11.4 \\
        scikit-learn==1.3.2 scikit-image==0.22.0 matplotlib==3.8.4 "opencv-python-headless<4.9"
    pip install --no-deps xplique==1.0.0
    pip download --no-deps harmonization==0.0.9
    python experiments/make_clickme_metrics_references.py Harmonization-0.0.9-py3-none-any.whl

(Xplique's attribution package imports OpenCV, scikit-learn, scikit-image and
matplotlib; ``--no-deps`` keeps its TensorFlow requirement from pulling a second
TensorFlow.)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
from pathlib import Path

import numpy as np

from _harmonization_wheel import load_from_wheel

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "tests" / "fixtures" / "harmonization"
VERSION = "0.0.9"
#: Released files in load order (the top-level ``__init__`` skipped).
SOURCES = (
    "harmonization/common/blur.py",
    "harmonization/common/clickme_dataset.py",
    "harmonization/common/__init__.py",
    "harmonization/evaluation/metrics.py",
    "harmonization/evaluation/clickme.py",
)


def blobs(rng: np.random.Generator, n: int, h: int, w: int) -> np.ndarray:
    """Gaussian blobs on faint noise, as blurred click maps look. (n, h, w) float32."""
    yy, xx = np.mgrid[:h, :w]
    maps = 0.05 * rng.uniform(size=(n, h, w))
    for i in range(n):
        for _ in range(2):
            cy, cx = rng.uniform(2, h - 2), rng.uniform(2, w - 2)
            maps[i] += rng.uniform(0.5, 1) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * rng.uniform(2, 5) ** 2))
    return maps.astype(np.float32)


def metric_cases(rng: np.random.Generator) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(model maps, human maps) per case, each (n, H, W) float32."""
    cases = {"random": (rng.uniform(size=(6, 24, 28)), rng.uniform(size=(6, 24, 28))),
             "ties": (rng.integers(0, 20, size=(5, 20, 20)), rng.integers(0, 20, size=(5, 20, 20)))}
    human = blobs(rng, 6, 30, 26)
    cases["blobs"] = (human + rng.normal(scale=0.2, size=human.shape) * rng.uniform(0.1, 2, size=(6, 1, 1)), human)
    a, b = rng.uniform(size=(4, 16, 18)), blobs(rng, 4, 16, 18)
    a[1] = 0.0        # a constant model map (a network whose saliency vanishes)
    b[2] = 0.25       # a constant human map
    cases["constant"] = (a, b)
    return {k: (np.asarray(x, np.float32), np.asarray(y, np.float32)) for k, (x, y) in cases.items()}


def released_scores(clickme, tf, model, images, heatmaps, labels, explainer, batch: int) -> dict:
    """``evaluate_clickme`` on ``(images, heatmaps, one-hot labels)`` batches of ``batch``."""
    data = tf.data.Dataset.from_tensor_slices((images, heatmaps, labels)).batch(batch)
    scores = clickme.evaluate_clickme(model, explainer=explainer, clickme_val_dataset=data)
    return {"spearman": np.asarray(scores["spearman"], np.float64), "dice": np.asarray(scores["dice"], np.float64),
            "iou": np.asarray(scores["iou"], np.float64), "alignment_score": np.float64(scores["alignment_score"])}


def metrics_fixture(clickme, tf, rng: np.random.Generator, out: Path) -> None:
    """The release's metrics on the fixed map pairs, through ``evaluate_clickme``."""
    arrays = {}
    for name, (a, b) in metric_cases(rng).items():
        labels = tf.one_hot(np.zeros(len(a), np.int64), 2)
        scores = released_scores(clickme, tf, None, a, b, labels, lambda images, _labels: images, batch=4)
        arrays.update({f"{name}/a": a, f"{name}/b": b, **{f"{name}/{k}": v for k, v in scores.items()}})
    np.savez_compressed(out / "clickme_metrics.npz", **arrays)


def tiny_network(tf):
    """The saliency fixture's Keras network, seeded."""
    tf.keras.utils.set_random_seed(0)
    return tf.keras.Sequential([
        tf.keras.layers.InputLayer(input_shape=(32, 32, 3)),
        tf.keras.layers.Conv2D(8, 3, padding="same", name="conv1"),
        tf.keras.layers.ReLU(),
        tf.keras.layers.Conv2D(8, 3, padding="same", name="conv2"),
        tf.keras.layers.ReLU(),
        tf.keras.layers.GlobalAveragePooling2D(),
        tf.keras.layers.Dense(5, name="dense"),
    ])


def saliency_fixture(clickme, tf, rng: np.random.Generator, out: Path) -> None:
    """Xplique's Saliency and ``evaluate_clickme``'s default run on the tiny network."""
    from xplique.attributions import Saliency

    model = tiny_network(tf)
    n, classes = 7, 5
    images = rng.uniform(size=(n, 32, 32, 3)).astype(np.float32)
    labels = rng.integers(0, classes, size=n)
    heatmaps = blobs(rng, n, 32, 32)[..., None]
    onehot = tf.one_hot(labels, classes)
    saliency = Saliency(model)(images, onehot).numpy()
    scores = released_scores(clickme, tf, model, images, heatmaps, onehot, None, batch=3)
    np.savez_compressed(out / "clickme_saliency.npz", images=images, labels=labels, heatmaps=heatmaps,
                        saliency=saliency, **{f"weight/{v.name}": v.numpy() for v in model.trainable_variables},
                        **scores)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", type=Path, help="Harmonization-0.0.9-py3-none-any.whl from PyPI")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    import keras
    import scipy
    import tensorflow as tf
    import xplique

    clickme = load_from_wheel(args.wheel, SOURCES)
    args.out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    metrics_fixture(clickme, tf, rng, args.out)
    saliency_fixture(clickme, tf, rng, args.out)
    meta = {"harmonization": VERSION, "wheel": args.wheel.name,
            "wheel_sha256": hashlib.sha256(args.wheel.read_bytes()).hexdigest(),
            "sources": list(SOURCES), "human_spearman_ceiling": clickme.HUMAN_SPEARMAN_CEILING,
            "tensorflow": tf.__version__, "keras": keras.__version__, "xplique": xplique.__version__,
            "scipy": scipy.__version__, "numpy": np.__version__, "python": platform.python_version(), "seed": 0}
    (args.out / "clickme_meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(json.dumps(meta, indent=2))


if __name__ == "__main__":
    main()
