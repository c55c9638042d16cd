"""Hook-based extraction time relative to a plain forward of the same model (goal: overhead <= 5%).

    python experiments/bench_extract.py [--n 256] [--batch-size 32] [--size 224] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import torch
import torchvision

from neuroreg import extract


def plain_forward(model, images, batch_size):
    with torch.no_grad():
        for i in range(0, images.shape[0], batch_size):
            model(images[i:i + batch_size])


def best_of(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval().to(args.device)
    images = torch.rand(args.n, 3, args.size, args.size)
    layers = ["layer1", "layer2", "layer3", "layer4", "avgpool"]
    dev_images = images.to(args.device)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)

    def run_plain():
        plain_forward(model, dev_images, args.batch_size)
        sync()

    def run_extract(pool):
        extract(model, dev_images, layers, batch_size=args.batch_size, pool=pool, progress=False)
        sync()

    run_plain()  # warm-up
    t_plain = best_of(run_plain, args.repeats)
    t_pooled = best_of(lambda: run_extract("avg"), args.repeats)
    t_full = best_of(lambda: run_extract(None), args.repeats)
    print(f"resnet18, {args.n} images {args.size}px, batch {args.batch_size}, device {args.device}")
    print(f"plain forward            : {t_plain:.3f} s")
    print(f"extract 5 layers (avg)   : {t_pooled:.3f} s   ratio {t_pooled / t_plain:.3f}x")
    print(f"extract 5 layers (full)  : {t_full:.3f} s   ratio {t_full / t_plain:.3f}x")


if __name__ == "__main__":
    main()
