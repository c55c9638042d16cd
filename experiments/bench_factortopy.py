"""FactorTopy at scale: fit time against voxels and stimuli, time per epoch and peak memory.

Every size in ``--voxels`` x ``--images`` is fitted once (``--epochs`` epochs, then the ridge layer
choice) and the fit time is split into feature statistics, position initialisation, training
and layer choice. Full size: 10,000 voxels x 8 layers x 1,000 images, feature maps shaped like
ResNet-18's eight residual blocks at 112 px ((64, 28, 28) ... (512, 4, 4)),
on CPU and on CUDA when a device is available. The peer, timed in the same
run on the same data, is a plain linear encoder (one read-out per voxel on the
globally pooled features of all layers, same optimiser and batches); the
ratio printed is FactorTopy epoch time / plain encoder epoch time.

    python experiments/bench_factortopy.py --threads 1 --voxels 200 800 --images 300 1000 --layers 4
    python experiments/bench_factortopy.py --threads 1 --voxels 10000 --images 1000   # full size, one core
    python experiments/bench_factortopy.py --voxels 15000 --images 10000 --epochs 10  # NSD size, on a GPU
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

import numpy as np
import torch

from neuroreg.brain import BrainData
from neuroreg.scoring.factortopy import FactorTopy

RESNET18_BLOCKS_112 = [(64, 28, 28), (64, 28, 28), (128, 14, 14), (128, 14, 14),
                       (256, 7, 7), (256, 7, 7), (512, 4, 4), (512, 4, 4)]


def _peak_rss_gib() -> float:
    scale = 1024 ** 2 if sys.platform != "darwin" else 1024 ** 3  # ru_maxrss: KiB on Linux, bytes on macOS
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def _data(n_images: int, n_voxels: int, n_layers: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    shapes = [RESNET18_BLOCKS_112[round(i * (len(RESNET18_BLOCKS_112) - 1) / max(n_layers - 1, 1))]
              for i in range(n_layers)]
    feats = {f"block{i}": torch.randn(n_images, *s, generator=g) for i, s in enumerate(shapes)}
    rng = np.random.default_rng(seed)
    roi = np.array(["V1", "V2V3", "OPA", "EBA"])[np.arange(n_voxels) * 4 // n_voxels]
    brain = BrainData(rng.normal(size=(n_images, n_voxels)).astype(np.float32), np.arange(n_images),
                      {"coords": rng.uniform(-1, 1, size=(n_voxels, 2)), "roi": roi})
    return feats, brain


def _plain_epoch(feats, brain, train_idx, batch_size: int, device: torch.device) -> float:
    """One epoch of a linear encoder on pooled features (the peer): same data, optimiser, batches."""
    pooled = torch.cat([x.mean(dim=(2, 3)) for x in feats.values()], dim=1)
    y = torch.as_tensor(brain.responses, dtype=torch.float32)
    lin = torch.nn.Linear(pooled.shape[1], y.shape[1]).to(device)
    opt = torch.optim.AdamW(lin.parameters(), lr=1e-3)
    order = np.random.default_rng(0).permutation(train_idx)
    tic = time.perf_counter()
    for start in range(0, len(order), batch_size):
        idx = torch.as_tensor(order[start:start + batch_size])
        opt.zero_grad()
        loss = torch.nn.functional.smooth_l1_loss(lin(pooled[idx].to(device)), y[idx].to(device), beta=0.1)
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - tic


def run(device: str, args) -> dict:
    dev = torch.device(device)
    feats, brain = _data(args.images, args.voxels, args.layers, args.seed)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    ft = FactorTopy(list(feats), random_state=args.seed, max_epochs=args.epochs, warmup_epochs=0, anneal_epochs=0,
                    batch_size=args.batch_size, voxel_batch_size=args.voxel_batch_size, device=dev,
                    progress=args.progress)
    tic = time.perf_counter()
    ft.fit(feats, brain)
    total = time.perf_counter() - tic
    seconds = [h["seconds"] for h in ft.history_]
    epoch = float(np.mean(seconds))
    plain = _plain_epoch(feats, brain, ft.train_index_, args.batch_size, dev)
    mem = (f"peak CUDA memory {torch.cuda.max_memory_allocated() / 1024 ** 3:.2f} GiB, "
           if dev.type == "cuda" else "")
    times = ft.timings_
    print(f"[{device}] {args.voxels} voxels x {args.layers} layers x {args.images} images, D={ft.d}, "
          f"batch {args.batch_size}, voxel chunk {args.voxel_batch_size}, threads {torch.get_num_threads()}")
    print(f"[{device}] FactorTopy epoch {epoch:.2f} s (measured, mean of {len(seconds)}: "
          f"{', '.join(f'{t:.1f}' for t in seconds)}; incl. validation); plain linear encoder epoch "
          f"{plain:.3f} s; ratio {epoch / plain:.1f}x")
    print(f"[{device}] fit total {total:.1f} s: feature statistics {times['statistics']:.1f} s, position init "
          f"{times.get('position_init', 0.0):.1f} s, {ft.n_epochs_} epochs {times['training']:.1f} s, ridge layer "
          f"choice {times.get('layer_choice', 0.0):.1f} s (once per fit)")
    full = 10_000 * 1_000
    if args.voxels * args.images < full:
        factor = full / (args.voxels * args.images)
        print(f"[{device}] EXTRAPOLATED (not measured), epoch cost ~ voxels x images: 10,000 voxels x "
              f"1,000 images -> about {epoch * factor:.0f} s per epoch ({factor:.0f}x the measured size)")
    print(f"[{device}] {mem}peak process RSS {_peak_rss_gib():.2f} GiB (features "
          f"{sum(x.numel() for x in feats.values()) * 4 / 1024 ** 3:.2f} GiB)")
    return {"device": device, "voxels": args.voxels, "images": args.images, "fit": total, "epoch": epoch,
            "epochs": ft.n_epochs_, **times}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--voxels", type=int, nargs="+", default=[10_000])
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--images", type=int, nargs="+", default=[1_000])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--voxel-batch-size", type=int, default=2048)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--no-gpu", action="store_true")
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() and not args.no_gpu else [])
    if len(devices) == 1:
        print("[cuda] no CUDA device available: GPU timing skipped")
    rows = []
    for device in devices:
        for n_vox in args.voxels:
            for n_img in args.images:
                rows.append(run(device, argparse.Namespace(**{**vars(args), "voxels": n_vox, "images": n_img})))
    print("\ndevice | voxels | images | fit s | per epoch s | epochs | statistics | position init | training | "
          "layer choice")
    for r in rows:
        print(f"{r['device']} | {r['voxels']} | {r['images']} | {r['fit']:.1f} | {r['epoch']:.2f} | {r['epochs']} | "
              f"{r['statistics']:.1f} | {r.get('position_init', 0.0):.1f} | {r['training']:.1f} | "
              f"{r.get('layer_choice', 0.0):.1f}")


if __name__ == "__main__":
    main()
