"""Training step cost of brain alignment and of the VOneBlock front end.

Prints, measured in the same run (alternating repeats, median step time after warm-up):

1. CPU: step time of CORnet-Z with the CKA IT-alignment term vs without it
   (same task batch; the aligned run adds ``--neural-batch`` neural images
   to the forward pass). Goal: <= 1.15x.
2. CPU: step time of VOne-CORnet-S vs CORnet-S (task loss only).
3. GPU (when CUDA is available): training images/s of vone_cornet_s at 224 px
   with AMP (16-mixed), with the alignment term on.

    python experiments/bench_training.py                 # defaults: 64 px, batch 64, neural batch 8
    python experiments/bench_training.py --size 96 --repeats 5 --steps 8
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
import warnings

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

from neuroreg.alignment import CKALoss
from neuroreg.brain import BrainData, load_kriegeskorte92
from neuroreg.training import BrainRegularizedModule, GratingsDataModule, build_model


class _StepTimer(Callback):
    """Wall time of each training step (batch start to batch end, including backward and optimizer)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._t0 = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.times.append(time.perf_counter() - self._t0)


def _run(model_name: str, aligned: bool, neural: BrainData, target, *, size: int, batch: int, neural_batch: int,
         steps: int, warmup: int, accelerator: str = "cpu", precision: str = "32-true") -> list[float]:
    """Per-step wall times (after ``warmup`` steps) of one short training run."""
    L.seed_everything(0, verbose=False)
    backbone = build_model(model_name, num_classes=4)
    terms = [CKALoss("IT", target, weight=1.0)] if aligned else []
    module = BrainRegularizedModule(backbone, terms, lr=0.01, scheduler="none")
    dm = GratingsDataModule(n_classes=4, n_train=batch * (steps + warmup), n_val=batch,
                            neural=neural if aligned else None, neural_batch_size=neural_batch, neural_holdout=0.0,
                            batch_size=batch, image_size=size, normalize=True, model_name=model_name, num_workers=0)
    timer = _StepTimer()
    trainer = L.Trainer(max_steps=steps + warmup, accelerator=accelerator, devices=1, precision=precision,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0, callbacks=[timer])
    trainer.fit(module, dm)
    return timer.times[warmup:]


def _compare(label: str, a: tuple, b: tuple, repeats: int, common: dict) -> float:
    ta, tb = [], []
    for _ in range(repeats):  # alternate, so that load on a shared machine hits both alike
        ta.append(statistics.median(_run(*a, **common)))
        tb.append(statistics.median(_run(*b, **common)))
    ma, mb = statistics.median(ta), statistics.median(tb)
    print(f"{label}: {ma * 1e3:8.1f} ms vs {mb * 1e3:8.1f} ms per step  ratio {ma / mb:.3f}x", flush=True)
    return ma / mb


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=64, help="image side in pixels (CPU runs)")
    p.add_argument("--batch", type=int, default=64, help="task images per step")
    p.add_argument("--neural-batch", type=int, default=8, help="neural images per step (aligned run)")
    p.add_argument("--steps", type=int, default=6, help="timed steps per run")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per run")
    p.add_argument("--repeats", type=int, default=3, help="alternating repeats of each comparison")
    p.add_argument("--vone-batch", type=int, default=16, help="task images per step in the VOneBlock comparison")
    p.add_argument("--skip-vone", action="store_true", help="skip the VOneBlock comparison")
    p.add_argument("--gpu-batch", type=int, default=128, help="task batch for the GPU throughput run")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)

    k92 = load_kriegeskorte92()
    # The data module needs the images (a BrainData with stimuli); the loss reads the monkey IT RDM.
    neural = BrainData(np.zeros((k92.n_stimuli, 1)), k92.stimulus_ids, stimuli=k92.images, name="kriegeskorte92")
    target = k92.rdms["monkey_IT"]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads; {args.size} px, batch {args.batch}, "
          f"neural batch {args.neural_batch}, {args.steps} timed steps, {args.repeats} alternating repeats",
          flush=True)
    common = dict(size=args.size, batch=args.batch, neural_batch=args.neural_batch, steps=args.steps,
                  warmup=args.warmup)
    _compare("CPU cornet_z with vs without CKA IT alignment (goal <= 1.15x)", ("cornet_z", True, neural, target),
             ("cornet_z", False, neural, target), args.repeats, common)
    if not args.skip_vone:
        _compare(f"CPU vone_cornet_s vs cornet_s (task loss only, batch {args.vone_batch})",
                 ("vone_cornet_s", False, neural, target), ("cornet_s", False, neural, target), args.repeats,
                 {**common, "batch": args.vone_batch})
    if torch.cuda.is_available():
        times = _run("vone_cornet_s", True, neural, target, size=224, batch=args.gpu_batch,
                     neural_batch=2 * args.neural_batch, steps=20, warmup=5, accelerator="gpu", precision="16-mixed")
        med = statistics.median(times)
        print(f"GPU {torch.cuda.get_device_name(0)}: vone_cornet_s 224 px, AMP 16-mixed, CKA-aligned, "
              f"batch {args.gpu_batch}: {args.gpu_batch / med:.0f} images/s ({med * 1e3:.1f} ms/step)")
    else:
        print("GPU: no CUDA device here (vone_cornet_s 224 px AMP images/s is measured only on a GPU)")


if __name__ == "__main__":
    main()
