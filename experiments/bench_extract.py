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


def interleaved_best(fns: dict, repeats: int) -> dict:
    """Minimum time of each function, the functions run in turn in every round (fair under load)."""
    best = {k: float("inf") for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=5)
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
    best = interleaved_best({"plain": run_plain, "avg": lambda: run_extract("avg"),
                             "full": lambda: run_extract(None)}, args.repeats)
    t_plain, t_pooled, t_full = best["plain"], best["avg"], best["full"]
    print(f"resnet18, {args.n} images {args.size}px, batch {args.batch_size}, device {args.device}")
    print(f"plain forward            : {t_plain:.3f} s")
    print(f"extract 5 layers (avg)   : {t_pooled:.3f} s   ratio {t_pooled / t_plain:.3f}x")
    print(f"extract 5 layers (full)  : {t_full:.3f} s   ratio {t_full / t_plain:.3f}x")


if __name__ == "__main__":
    main()
