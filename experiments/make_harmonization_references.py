"""Reference outputs of the Neural Harmonizer loss from the released code (harmonization 0.0.9).

Runs the released TensorFlow functions of ``harmonization.training`` (files
``harmonization/training/loss.py`` and ``harmonization/training/pyramid.py`` of
the ``Harmonization-0.0.9-py3-none-any.whl`` wheel on PyPI, sha256
``74b4f269778e1ca010718234ac8a108b2b5ed2da1bafeec89e0d11732bcd5698``; the
package's ``__init__`` is not run, as it imports the model zoo and Xplique) on
seeded random inputs and writes ``tests/fixtures/harmonization/``:

- ``standardize_cut.npz``: ``standardize_cut`` of 4 maps of 20 x 23 pixels;
- ``pyramid.npz``: ``pyramidal_representation`` (5 levels) of 3 maps of 37 x 50
  pixels (odd and even sides: TensorFlow's ``"SAME"`` padding);
- ``pyramidal_mse.npz``: ``pyramidal_mse_with_tokens`` of two sets of 4 maps of
  33 x 40 pixels, with tokens ``(1, 0, 1, 0.5)``, with all tokens 1, and with
  ``nb_levels=3``;
- ``network.npz``: a tiny Keras network (``Conv2D(6, 3, strides=2,
  padding="same", use_bias=False)``, ``BatchNormalization(epsilon=1e-3)``, ReLU,
  global average pool, ``Dense(5)``; no bias before BatchNorm, whose gradient
  would be rounding noise), its weights, 6 images of 32 x 32 pixels, labels, human
  maps (one of them empty, token 0) and tokens, and, from the released code: the
  gradients of ``harmonizer_loss`` with respect to every weight with its default
  recipe (cross-entropy with label smoothing 0.1, L2 weight decay 1e-5,
  ``lambda_harmonization=1``) and with the harmonization term alone (a zero
  cross-entropy, ``lambda_weights=0``). The saliency maps, the logits and the
  harmonization term's value are computed by the lines of ``harmonizer_loss``
  that produce them (copied below, as the released function returns only the
  gradients), calling the released ``standardize_cut`` and
  ``pyramidal_mse_with_tokens``;
- ``meta.json``: the versions, the wheel's hash and which weights the release's
  name filter puts under weight decay.

Run in a virtual environment outside the project with ``tensorflow-cpu==2.15.1``
(Keras 2.15: the release's ``tf.keras.losses.Reduction`` and variable names such
as ``batch_normalization/gamma:0`` are those of Keras 2) and numpy 1.26::

    pip download --no-deps harmonization==0.0.9
    python experiments/make_harmonization_references.py Harmonization-0.0.9-py3-none-any.whl
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import platform
import sys
from pathlib import Path

import numpy as np

from _harmonization_wheel import load_from_wheel

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "tests" / "fixtures" / "harmonization"
VERSION = "0.0.9"
SOURCES = ("harmonization/training/pyramid.py", "harmonization/training/loss.py")


def maps_fixtures(loss, tf, rng: np.random.Generator, out: Path) -> None:
    """standardize_cut, the pyramid and the pyramidal MSE on seeded random maps."""
    pyramid_mod = sys.modules["harmonization.training.pyramid"]
    maps = (rng.normal(size=(4, 20, 23)) * rng.uniform(0.5, 3, size=(4, 1, 1))).astype(np.float32)
    np.savez_compressed(out / "standardize_cut.npz", maps=maps,
                        expected=loss.standardize_cut(tf.constant(maps)).numpy())

    maps = rng.uniform(size=(3, 37, 50)).astype(np.float32)
    levels = pyramid_mod.pyramidal_representation(tf.constant(maps)[:, :, :, None], 5)
    np.savez_compressed(out / "pyramid.npz", maps=maps,
                        **{f"level_{k}": level.numpy()[..., 0] for k, level in enumerate(levels)})

    a = rng.uniform(size=(4, 33, 40)).astype(np.float32)
    b = rng.uniform(size=(4, 33, 40)).astype(np.float32)
    tokens = np.array([1.0, 0.0, 1.0, 0.5], dtype=np.float32)
    mse = loss.pyramidal_mse_with_tokens
    np.savez_compressed(out / "pyramidal_mse.npz", a=a, b=b, tokens=tokens,
                        loss_tokens=mse(tf.constant(a), tf.constant(b), tf.constant(tokens)).numpy(),
                        loss_ones=mse(tf.constant(a), tf.constant(b), tf.ones((4,))).numpy(),
                        loss_levels_3=mse(tf.constant(a), tf.constant(b), tf.constant(tokens), nb_levels=3).numpy())


def tiny_network(tf):
    """The Keras network of the fixture, seeded; BatchNorm's affine parameters and the dense bias randomised."""
    tf.keras.utils.set_random_seed(0)
    model = tf.keras.Sequential([
        tf.keras.layers.InputLayer(input_shape=(32, 32, 3)),
        tf.keras.layers.Conv2D(6, 3, strides=2, padding="same", use_bias=False, name="conv"),
        tf.keras.layers.BatchNormalization(epsilon=1e-3, name="batch_normalization"),
        tf.keras.layers.ReLU(),
        tf.keras.layers.GlobalAveragePooling2D(),
        tf.keras.layers.Dense(5, name="dense"),
    ])
    rng = np.random.default_rng(1)
    bn = model.get_layer("batch_normalization")
    bn.gamma.assign(rng.uniform(0.5, 1.5, size=6).astype(np.float32))
    bn.beta.assign(rng.normal(scale=0.3, size=6).astype(np.float32))
    dense = model.get_layer("dense")
    dense.bias.assign(rng.normal(scale=0.1, size=5).astype(np.float32))
    return model


def released_term(loss, tf, model, images, tokens, labels, true_heatmaps):
    """The logits, saliency maps and harmonization term, by the lines of the released ``harmonizer_loss``."""
    with tf.GradientTape() as tape_metapred:
        tape_metapred.watch(images)
        y_pred = model(images, training=True)
        loss_metapred = tf.reduce_sum(y_pred * labels, -1)
    sa_maps = tf.cast(tape_metapred.gradient(loss_metapred, images), tf.float32)
    sa_maps = tf.reduce_mean(sa_maps, -1)
    sa_maps_preprocess = loss.standardize_cut(sa_maps)
    heatmaps_preprocess = loss.standardize_cut(true_heatmaps)
    _hm_max = tf.math.reduce_max(heatmaps_preprocess, (1, 2), keepdims=True) + 1e-6
    _sa_max = tf.stop_gradient(tf.math.reduce_max(sa_maps_preprocess, (1, 2), keepdims=True)) + 1e-6
    heatmaps_preprocess = heatmaps_preprocess / _hm_max * _sa_max
    value = loss.pyramidal_mse_with_tokens(sa_maps_preprocess, heatmaps_preprocess, tokens)
    return y_pred.numpy(), sa_maps.numpy(), float(value.numpy())


def human_maps(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """Blobs on noise, as blurred click maps look; the last map is empty (an image without a human map)."""
    yy, xx = np.mgrid[:size, :size]
    maps = 0.1 * rng.uniform(size=(n, size, size))
    for i in range(n):
        cy, cx = rng.uniform(4, size - 4, size=2)
        maps[i] += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * rng.uniform(2, 6) ** 2))
    maps[-1] = 0.0
    return maps.astype(np.float32)


def network_fixture(loss, tf, rng: np.random.Generator, out: Path) -> dict:
    """The tiny network's weights, inputs, released gradients and harmonization term."""
    model = tiny_network(tf)
    n, classes = 6, 5
    images = rng.uniform(size=(n, 32, 32, 3)).astype(np.float32)
    labels = rng.integers(0, classes, size=n)
    heatmaps = human_maps(rng, n, 32)
    tokens = np.array([1, 1, 0, 1, 1, 0], dtype=np.float32)
    args = (tf.constant(images), tf.constant(tokens), tf.one_hot(labels, classes), tf.constant(heatmaps))
    weights = {v.name: v.numpy() for v in model.trainable_variables}

    full = loss.harmonizer_loss(model, *args)
    alone = loss.harmonizer_loss(model, *args, cross_entropy=lambda y, p: tf.zeros_like(p[:, 0]), lambda_weights=0.0)
    logits, saliency, term = released_term(loss, tf, model, args[0], args[1], args[2], args[3])
    names = [v.name for v in model.trainable_variables]
    grads = {f"grad_full/{k}": g.numpy() for k, g in zip(names, full)}
    grads.update({f"grad_harmonization/{k}": (np.zeros_like(weights[k]) if g is None else g.numpy())
                  for k, g in zip(names, alone)})
    np.savez_compressed(out / "network.npz", images=images, labels=labels, human_maps=heatmaps, tokens=tokens,
                        logits=logits, saliency=saliency, harmonization_term=np.float32(term),
                        **{f"weight/{k}": w for k, w in weights.items()}, **grads)
    # The release's weight-decay filter on variable names (harmonizer_loss).
    decayed = [k for k in names if not any(s in k for s in ("bn/", "normalization", "embed", "Norm", "norm",
                                                            "class_token"))]
    return {"variables": names, "weight_decayed": decayed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", type=Path, help="Harmonization-0.0.9-py3-none-any.whl from PyPI")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    import keras
    import tensorflow as tf

    loss = load_from_wheel(args.wheel, SOURCES)
    args.out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    maps_fixtures(loss, tf, rng, args.out)
    network = network_fixture(loss, tf, rng, args.out)
    meta = {"harmonization": VERSION, "wheel": args.wheel.name,
            "wheel_sha256": hashlib.sha256(args.wheel.read_bytes()).hexdigest(),
            "sources": list(SOURCES), "tensorflow": tf.__version__, "keras": keras.__version__,
            "numpy": np.__version__, "python": platform.python_version(), "seed": 0,
            "recipe": {"label_smoothing": 0.1, "lambda_weights": 1e-5, "lambda_harmonization": 1.0,
                       "nb_levels": 5, "batchnorm_epsilon": 1e-3},
            **network}
    (args.out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(json.dumps(meta, indent=2))


if __name__ == "__main__":
    main()
