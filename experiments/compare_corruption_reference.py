"""neuroreg's ImageNet-C corruptions against the ``imagecorruptions`` reference statistics.

Reads tests/fixtures/corruption_reference/ (images.npz, reference.csv; made by
experiments/make_corruption_reference.py) and prints, per corruption x
severity, the reference's and neuroreg's mean absolute change and SSIM to the
clean image, averaged over the images, as a Markdown table (the one in
docs/robustness.md).

    python experiments/compare_corruption_reference.py [--n-images 20] [--seeds 3]
        [--frost-images DIR]   # the original frost photographs instead of the procedural frost
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from neuroreg.robustness.corruptions_reference import compare_to_reference, read_corruption_reference

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "corruption_reference"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-images", type=int, default=None, help="first n reference images (default all)")
    parser.add_argument("--seeds", type=int, default=3, help="draws per image (seeds 0..n-1)")
    parser.add_argument("--corruptions", nargs="*", default=None)
    parser.add_argument("--frost-images", type=Path, default=None)
    args = parser.parse_args()

    with np.load(FIXTURE / "images.npz") as npz:
        images = torch.from_numpy(npz["images"]).permute(0, 3, 1, 2).float() / 255
        names = [str(n) for n in npz["names"]]
    if args.n_images:
        images, names = images[:args.n_images], names[:args.n_images]
    reference = read_corruption_reference(FIXTURE / "reference.csv")
    start = time.perf_counter()
    rows = compare_to_reference(images, names, reference, corruptions=args.corruptions,
                                seeds=tuple(range(args.seeds)), frost_images=args.frost_images)
    print(f"{len(names)} images, {args.seeds} draws each, {time.perf_counter() - start:.0f} s\n")
    print("| corruption | severity | MAE reference | MAE neuroreg | ratio | SSIM reference | SSIM neuroreg | diff |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['corruption']} | {r['severity']} | {r['ref_mae']:.4f} | {r['mae']:.4f} | "
              f"{r['mae'] / r['ref_mae']:.3f} | {r['ref_ssim']:.4f} | {r['ssim']:.4f} | "
              f"{r['ssim'] - r['ref_ssim']:+.4f} |")


if __name__ == "__main__":
    main()
