"""Reference degradation statistics of the ImageNet-C corruptions, from the ``imagecorruptions`` package.

``imagecorruptions`` (PyPI, the maintained port of Hendrycks & Dietterich's
ImageNet-C code) is the reference neuroreg's corruptions are calibrated to.
Its fog and glass blur only run on the library versions it was written for,
so this script runs in a separate environment, never in neuroreg's own
(neuroreg is not imported here). The environment the committed fixture was
made with (Python 3.10; scikit-image 0.19 has no Python 3.11 wheels, and
0.20+ dropped the ``multichannel`` argument glass blur passes):

    python3.10 -m venv ref_env
    ref_env/bin/pip install imagecorruptions==1.1.2 numpy==1.26.4 scipy==1.11.4 \\
        scikit-image==0.19.3 opencv-python==4.8.1.78 Pillow==10.4.0 "setuptools<70"
    ref_env/bin/python experiments/make_corruption_reference.py

It writes, under tests/fixtures/corruption_reference/:

- ``images.npz``: ``images`` (N, 224, 224, 3) uint8, the exact inputs (every
  4th of the 78 bundled Algonauts 2019 photographs, PIL bilinear resize to
  224 px) and ``names`` (their file stems);
- ``reference.csv``: per image, corruption and severity the mean absolute
  change |corrupted - clean| (images in [0, 1], mean over pixels and
  channels) and SSIM to the clean image (skimage ``structural_similarity``,
  7 x 7 window, data_range 1, averaged over channels), each averaged over
  seeded draws of the corruption's randomness (3; frost 10; glass blur 1). The package's
  public ``corrupt`` is called, which returns uint8 images.

The package's code and frost photographs are not copied into neuroreg.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
IMAGE_DIR = ROOT / "neuroreg" / "brain" / "_data" / "algonauts2019_78" / "images"
OUT_DIR = ROOT / "tests" / "fixtures" / "corruption_reference"
SIZE = 224
EXPECTED = {"imagecorruptions": "1.1.2", "numpy": "1.26.4", "scipy": "1.11.4", "scikit-image": "0.19.3",
            "opencv-python": "4.8.1.78", "Pillow": "10.4.0"}


def load_images(step: int) -> tuple[np.ndarray, list[str]]:
    paths = sorted(IMAGE_DIR.glob("image_*.jpg"))[::step]
    if not paths:
        raise FileNotFoundError(f"no image_*.jpg under {IMAGE_DIR}")
    images = [np.asarray(Image.open(p).convert("RGB").resize((SIZE, SIZE), Image.BILINEAR)) for p in paths]
    return np.stack(images).astype(np.uint8), [p.stem for p in paths]


def statistics(clean: np.ndarray, corrupted: np.ndarray) -> tuple[float, float]:
    from skimage.metrics import structural_similarity
    a = clean.astype(np.float64) / 255
    b = corrupted.astype(np.float64) / 255
    mae = float(np.abs(b - a).mean())
    ssim = float(structural_similarity(a, b, channel_axis=2, data_range=1.0))
    return mae, ssim


def atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=path.suffix)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--step", type=int, default=4, help="take every step-th bundled image (default 4: 20 images)")
    parser.add_argument("--draws", type=int, default=3, help="seeded draws averaged per image (default 3)")
    parser.add_argument("--frost-draws", type=int, default=10,
                        help="draws for frost, whose photograph and crop vary most (default 10)")
    parser.add_argument("--glass-draws", type=int, default=1,
                        help="draws for glass blur, slow and nearly draw-independent (default 1)")
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    args = parser.parse_args()

    from imagecorruptions import corrupt, get_corruption_names

    versions = {name: version(name) for name in EXPECTED}
    for name, want in EXPECTED.items():
        if versions[name] != want:
            print(f"warning: {name} {versions[name]} (the committed fixture used {want})", file=sys.stderr)

    images, names = load_images(args.step)
    atomic_write(args.out / "images.npz", lambda p: np.savez_compressed(p, images=images, names=np.array(names)))

    header = [f"# imagecorruptions reference statistics, made by experiments/make_corruption_reference.py",
              f"# python {platform.python_version()}; " + "; ".join(f"{k} {v}" for k, v in versions.items()),
              f"# {len(names)} images of {SIZE} px (images.npz); draws per image: frost {args.frost_draws}, "
              f"glass_blur {args.glass_draws}, others {args.draws}; "
              "mae: mean |corrupted - clean| in [0, 1] units; ssim: skimage structural_similarity"]
    rows = []
    start = time.perf_counter()
    order = list(enumerate(get_corruption_names("common")))
    order.sort(key=lambda item: item[1] == "glass_blur")  # the slowest last
    for c, corruption in order:
        draws = {"frost": args.frost_draws, "glass_blur": args.glass_draws}.get(corruption, args.draws)
        for severity in range(1, 6):
            for i, image in enumerate(images):
                stats = []
                for d in range(draws):
                    np.random.seed(100_000 * c + 1_000 * severity + 10 * i + d)
                    stats.append(statistics(image, corrupt(image, corruption_name=corruption, severity=severity)))
                mae, ssim = np.mean(stats, axis=0)
                rows.append((names[i], corruption, severity, f"{mae:.6f}", f"{ssim:.6f}"))
        print(f"{corruption:>18s} done ({time.perf_counter() - start:.0f} s)", flush=True)
        write_csv(args.out / "reference.csv", header, rows)  # after each corruption, so a stopped run keeps its rows
    print(f"wrote {args.out / 'reference.csv'} ({len(rows)} rows) and images.npz")


def write_csv(path: Path, header: list[str], rows: list[tuple]) -> None:
    def write(path):
        with open(path, "w", newline="") as f:
            for line in header:
                f.write(line + "\n")
            w = csv.writer(f)
            w.writerow(["image", "corruption", "severity", "mae", "ssim"])
            w.writerows(rows)

    atomic_write(path, write)


if __name__ == "__main__":
    main()
