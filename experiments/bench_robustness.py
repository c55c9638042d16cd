"""Attack cost relative to the same number of plain forward+backward passes (goal <= 1.2x).

PGD-10 on a ResNet-18 and EOT-PGD (10 steps x eot_iter draws) on a VOne-ResNet-18
(stochastic VOneBlock front end), both through ``make_attack`` on the
``RobustClassifier`` wrapper (normalization inside, range check on). The peer
is a loop of the same number of input-gradient passes on the same wrapped model:
forward, cross-entropy, ``torch.autograd.grad`` w.r.t. the images. Runs are
interleaved and the median of ``--repeats`` is reported.

    python experiments/bench_robustness.py                      # CPU (and CUDA when present)
    python experiments/bench_robustness.py --size 64 --batch-size 8 --repeats 3 --threads 1   # quick
"""

from __future__ import annotations

import argparse
import statistics

import torch
import torchvision
from torch import nn

from neuroreg.models import VOneBlock
from neuroreg.robustness import RobustClassifier, make_attack

from _timing import timed


def resnet18(n_classes: int) -> nn.Module:
    return torchvision.models.resnet18(weights=None, num_classes=n_classes)


def vone_resnet18(size: int, n_classes: int) -> nn.Module:
    r = torchvision.models.resnet18(weights=None, num_classes=n_classes)
    block = VOneBlock(image_size=size, simple_channels=64, complex_channels=64, seed=0)
    return nn.Sequential(block, nn.Conv2d(block.out_channels, 64, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
                         r.layer1, r.layer2, r.layer3, r.layer4, r.avgpool, nn.Flatten(), r.fc)


def plain_passes(model: nn.Module, x: torch.Tensor, y: torch.Tensor, n: int) -> None:
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(n):
        xi = x.detach().requires_grad_(True)
        torch.autograd.grad(loss_fn(model(xi), y), xi)


def bench(device: torch.device, size: int, batch_size: int, repeats: int, steps: int, eot_iter: int) -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(batch_size, 3, size, size, generator=gen).to(device)
    y = torch.randint(0, 10, (batch_size,), generator=gen).to(device)
    eps = 4 / 255
    cases = [
        ("PGD-%d, ResNet-18" % steps,
         RobustClassifier(resnet18(10), num_classes=10).to(device).eval(), "pgd", 1),
        ("EOT-PGD-%d x %d, VOne-ResNet-18" % (steps, eot_iter),
         RobustClassifier(vone_resnet18(size, 10), (0.5,) * 3, (0.5,) * 3, num_classes=10).to(device).eval(),
         "eotpgd", eot_iter),
    ]
    print(f"\ndevice {device} | batch {batch_size} x 3 x {size} x {size} | eps 4/255 | median of {repeats}")
    for label, model, name, draws in cases:
        attack = make_attack(name, model, eps, steps=steps, eot_iter=draws)
        n_passes = steps * draws
        attack(x, y)  # warm-up (allocator, cuDNN autotuning)
        plain_passes(model, x, y, 1)
        t_attack, t_plain = [], []
        for _ in range(repeats):
            t_plain.append(timed(lambda: plain_passes(model, x, y, n_passes), device))
            t_attack.append(timed(lambda: attack(x, y), device))
        a, p = statistics.median(t_attack), statistics.median(t_plain)
        print(f"{label:36s} attack {a:8.3f} s | {n_passes:3d} plain fwd+bwd {p:8.3f} s | ratio {a / p:5.2f}x "
              f"(goal <= 1.20x)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--eot-iter", type=int, default=4)
    ap.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's choice)")
    args = ap.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    devices = [torch.device("cpu")]
    if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()):
        devices = [torch.device("cuda")] if args.device == "cuda" else devices + [torch.device("cuda")]
    for device in devices:
        bench(device, args.size, args.batch_size, args.repeats, args.steps, args.eot_iter)


if __name__ == "__main__":
    main()
