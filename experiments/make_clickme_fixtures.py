"""Reference fixtures of the ClickMe data pipeline from the released code (harmonization 0.0.9).

Writes ``tests/fixtures/clickme/``:

- ``val-0.tfrecords``: a small shard in the release's format, written by
  TensorFlow (``tf.io.TFRecordWriter`` of ``tf.train.Example`` records with the
  features ``image`` (JPEG bytes of a 256 x 256 x 3 image, ``tf.io.encode_jpeg``
  at quality 95 with TensorFlow's default 4:2:0 chroma subsampling),
  ``heatmap`` (JPEG bytes of a 256 x 256 x 1 map) and ``label`` (int64)). The
  images are seeded synthetic scenes (flat background, solid shapes, a colour
  ramp, a noisy patch) and the maps sums of Gaussian "clicks", so the fixture
  stays small while exercising the JPEG decoder on edges, ramps and noise;
- ``parsed.npz``: what the released loader makes of that shard, read back with
  the release's own ``load_clickme([shard], batch_size)``
  (``harmonization/common/clickme_dataset.py``: ``tf.io.decode_jpeg``, bilinear
  resize of the image to 224, the heatmap resized to 64, blurred with the
  release's ``gaussian_kernel()`` (size 10, sigma 10, ``"SAME"`` convolution)
  and resized to 224): ``image`` (n, 224, 224, 3) float32 in [0, 255],
  ``heatmap`` (n, 224, 224, 1) float32, ``label`` (n,) int64 (the argmax of the
  release's one-hot), and TensorFlow's decoded JPEGs ``image_decoded`` (n, 256,
  256, 3) uint8 and ``heatmap_decoded`` (n, 256, 256, 1) uint8 (to compare the
  decoders and to feed the same pixels to both preparations), and ``kernel``
  (10, 10) float32, the release's Gaussian kernel;
- ``meta.json``: versions, the wheel's hash, the seed and the JPEG settings.

The release's modules are read from the wheel (``harmonization/common/blur.py``
and ``harmonization/common/clickme_dataset.py`` of
``Harmonization-0.0.9-py3-none-any.whl`` on PyPI; the package's ``__init__`` is
not run, as it imports the model zoo and Xplique).

Run in a virtual environment outside the project with ``tensorflow-cpu==2.15.1``
and ``numpy==1.26.4``::

    python -m venv harm-venv && harm-venv/bin/pip install tensorflow-cpu==2.15.1 numpy==1.26.4
    pip download --no-deps harmonization==0.0.9
    harm-venv/bin/python experiments/make_clickme_fixtures.py Harmonization-0.0.9-py3-none-any.whl
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import types
from pathlib import Path

import numpy as np

from _harmonization_wheel import load_from_wheel

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "tests" / "fixtures" / "clickme"
VERSION = "0.0.9"
SOURCES = ("harmonization/common/blur.py", "harmonization/common/clickme_dataset.py")
SEED = 0
N_RECORDS = 2
LABELS = (7, 999)
JPEG_QUALITY = 95


def scene(rng: np.random.Generator, size: int = 256) -> np.ndarray:
    """uint8 (size, size, 3): flat background, 3 solid ellipses or boxes, a colour ramp and a noisy patch."""
    img = np.empty((size, size, 3), np.float64)
    img[:] = rng.integers(0, 256, 3)
    yy, xx = np.mgrid[0:size, 0:size]
    for _ in range(3):
        cy, cx = rng.integers(20, size - 20, 2)
        ry, rx = rng.integers(10, 60, 2)
        if rng.random() < 0.5:
            mask = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        else:
            mask = (np.abs(yy - cy) <= ry) & (np.abs(xx - cx) <= rx)
        img[mask] = rng.integers(0, 256, 3)
    y0, x0 = rng.integers(0, size - 64, 2)
    ramp = np.linspace(0, 1, 64)
    img[y0:y0 + 64, x0:x0 + 64] = (ramp[:, None, None] * rng.integers(0, 256, 3)
                                   + ramp[None, :, None] * (255 - rng.integers(0, 256, 3))) / 2 + 60
    y1, x1 = rng.integers(0, size - 24, 2)
    img[y1:y1 + 24, x1:x1 + 24] += rng.normal(0, 40, (24, 24, 3))
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def click_map(rng: np.random.Generator, size: int = 256) -> np.ndarray:
    """uint8 (size, size, 1): a sum of 2 to 6 Gaussian "clicks" scaled to a peak of 255."""
    yy, xx = np.mgrid[0:size, 0:size]
    out = np.zeros((size, size))
    for _ in range(int(rng.integers(2, 7))):
        cy, cx = rng.uniform(0, size, 2)
        s = rng.uniform(6, 30)
        out += rng.uniform(0.3, 1.0) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
    return np.round(255 * out / out.max()).astype(np.uint8)[..., None]


def write_shard(tf, path: Path, rng: np.random.Generator) -> None:
    """``N_RECORDS`` ClickMe records (image JPEG, heatmap JPEG, int64 label) written by TensorFlow."""
    def feature_bytes(value: bytes):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    with tf.io.TFRecordWriter(str(path)) as writer:
        for label in LABELS[:N_RECORDS]:
            image = tf.io.encode_jpeg(scene(rng), quality=JPEG_QUALITY).numpy()
            heatmap = tf.io.encode_jpeg(click_map(rng), quality=JPEG_QUALITY).numpy()
            example = tf.train.Example(features=tf.train.Features(feature={
                "image": feature_bytes(image), "heatmap": feature_bytes(heatmap),
                "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label]))}))
            writer.write(example.SerializeToString())


def released_outputs(tf, released: types.ModuleType, shard: Path) -> dict[str, np.ndarray]:
    """The release's ``load_clickme`` of the shard, and TensorFlow's decoded JPEGs of each record."""
    (images, heatmaps, onehot), = list(released.load_clickme([str(shard)], batch_size=N_RECORDS))
    decoded_images, decoded_maps = [], []
    for record in tf.data.TFRecordDataset([str(shard)]):
        data = tf.io.parse_single_example(record, released.FEATURE_DESCRIPTION)
        decoded_images.append(tf.io.decode_jpeg(data["image"]).numpy())
        decoded_maps.append(tf.io.decode_jpeg(data["heatmap"]).numpy())
    return {"image": images.numpy().astype(np.float32), "heatmap": heatmaps.numpy().astype(np.float32),
            "label": np.argmax(onehot.numpy(), axis=1).astype(np.int64),
            "image_decoded": np.stack(decoded_images), "heatmap_decoded": np.stack(decoded_maps),
            "kernel": released.gaussian_kernel().numpy()[:, :, 0, 0].astype(np.float32)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", type=Path, help="Harmonization-0.0.9-py3-none-any.whl from PyPI")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    import tensorflow as tf

    released = load_from_wheel(args.wheel, SOURCES)
    args.out.mkdir(parents=True, exist_ok=True)
    shard = args.out / "val-0.tfrecords"
    write_shard(tf, shard, np.random.default_rng(SEED))
    arrays = released_outputs(tf, released, shard)
    if arrays["label"].tolist() != list(LABELS[:N_RECORDS]):
        raise SystemExit(f"the release read labels {arrays['label'].tolist()}, written {LABELS[:N_RECORDS]}")
    np.savez_compressed(args.out / "parsed.npz", **arrays)
    meta = {"harmonization": VERSION, "wheel": args.wheel.name,
            "wheel_sha256": hashlib.sha256(args.wheel.read_bytes()).hexdigest(), "sources": list(SOURCES),
            "tensorflow": tf.__version__, "numpy": np.__version__, "python": platform.python_version(),
            "seed": SEED, "records": N_RECORDS, "labels": list(LABELS[:N_RECORDS]),
            "jpeg": {"encoder": "tf.io.encode_jpeg", "quality": JPEG_QUALITY, "chroma_downsampling": True},
            "image_size": 224, "heatmap": {"low_resolution": 64, "blur_kernel_size": 10, "blur_sigma": 10}}
    (args.out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(json.dumps(meta, indent=2))
    for path in sorted(args.out.iterdir()):
        print(f"{path.name}: {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
