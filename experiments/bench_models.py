"""VOneBlock time relative to one plain Conv2d of the same shape (goal <= 1.3x), and CORnet-S
throughput relative to timm's resnet50 at 224 px; on CPU and, when present, on CUDA.

    python experiments/bench_models.py [--batch-size 16] [--repeats 5] [--devices cpu cuda]

The peer runs in the same process, interleaved round by round; the best round counts.
"""

from __future__ import annotations

import argparse

import timm
import torch
from torch import nn

import neuroreg  # noqa: F401  (registers the models)
from neuroreg.models import VOneBlock

from _timing import interleaved_times


def interleaved_best(fns: dict, repeats: int, device: str) -> dict:
    """Minimum time of each function; the functions run in turn in every round (fair under load)."""
    return {name: min(times) for name, times in interleaved_times(fns, repeats, device).items()}


@torch.no_grad()
def bench_vone(device: str, batch_size: int, repeats: int) -> None:
    block = VOneBlock().to(device).eval()             # 256 simple + 256 complex, 25x25, stride 4, neuronal noise
    conv = nn.Conv2d(3, block.out_channels, block.ksize, stride=block.stride, padding=block.ksize // 2,
                     bias=False).to(device).eval()
    x = torch.rand(batch_size, 3, 224, 224, device=device)
    t = interleaved_best({"vone": lambda: block(x), "conv": lambda: conv(x)}, repeats, device)
    print(f"[{device}] VOneBlock {t['vone'] * 1e3:.1f} ms, Conv2d(3, 512, 25, stride 4) {t['conv'] * 1e3:.1f} ms "
          f"(batch {batch_size}, 224 px): ratio {t['vone'] / t['conv']:.2f}x (goal <= 1.3x)")


@torch.no_grad()
def bench_cornet(device: str, batch_size: int, repeats: int) -> None:
    cornet = timm.create_model("cornet_s").to(device).eval()
    resnet = timm.create_model("resnet50").to(device).eval()
    x = torch.rand(batch_size, 3, 224, 224, device=device)
    t = interleaved_best({"cornet": lambda: cornet(x), "resnet": lambda: resnet(x)}, repeats, device)
    ips_c, ips_r = batch_size / t["cornet"], batch_size / t["resnet"]
    print(f"[{device}] CORnet-S {ips_c:.1f} img/s, timm resnet50 {ips_r:.1f} img/s (batch {batch_size}, 224 px): "
          f"throughput ratio {ips_c / ips_r:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--devices", nargs="+", default=["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    args = parser.parse_args()
    for device in args.devices:
        bench_vone(device, args.batch_size, args.repeats)
        bench_cornet(device, args.batch_size, args.repeats)


if __name__ == "__main__":
    main()
