"""Training step cost of brain alignment and of the VOneBlock front end.

Prints ratios measured in the same process, with the two sides' steps
interleaved (A, B, A, B, ...) so that load on a shared machine hits both alike;
each figure is the median over the timed steps. A step is the module's
``training_step`` (forward with hooks, task loss, alignment terms) plus
backward and the optimizer step; batches are prepared beforehand, so data
loading is not timed.

1. CPU: CORnet-Z with the CKA IT-alignment term vs without it (same task
   batch; the aligned step adds ``--neural-batch`` neural images of the
   92-image set and the debiased CKA to the monkey IT RDM). Goal: <= 1.15x.
2. CPU: VOne-CORnet-S vs CORnet-S (task loss only).
3. GPU (when CUDA is available): training images/s of vone_cornet_s at 224 px
   with AMP (16-mixed) and the alignment term on, through a Lightning Trainer.
4. The scorecard callback's cost as a fraction of training time at its default
   interval (every epoch: cRSA on the 92-image set over 4 layers, 5-step PGD
   at 4/255 on 128 validation images). (a) The tiny config
   (configs/train_tiny_cornet_z.yaml) run through ``neuroreg train``'s CLI: the
   seconds spent inside the callback over the seconds of training in the same
   run, and the one-off final scorecard. (b) The ImageNet config's settings
   (vone_cornet_s, 224 px, CKA-aligned): one periodic evaluation timed on CPU
   (the attack part on ``--imagenet-val-images`` images, scaled to 128), over
   one ImageNet epoch (1,281,167 images at batch 256 = 5,005 steps) of the
   training step timed here at ``--imagenet-batch`` and scaled per image.

    python experiments/bench_training.py
    python experiments/bench_training.py --size 96 --batch 128 --steps 20
    python experiments/bench_training.py --only-scorecard
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


def _setup(model_name: str, aligned: bool, neural: BrainData, target, *, size: int, batch: int,
           neural_batch: int, n_batches: int):
    """A module, its optimizer and ``n_batches`` prepared training batches."""
    torch.manual_seed(0)
    module = BrainRegularizedModule(build_model(model_name, num_classes=4),
                                    [CKALoss("IT", target, weight=1.0)] if aligned else [], lr=0.01,
                                    scheduler="none")
    dm = GratingsDataModule(num_classes=4, n_train=batch * n_batches, n_val=batch,
                            neural=neural if aligned else None, neural_batch_size=neural_batch, neural_holdout=0.0,
                            batch_size=batch, image_size=size, normalize=True, model_name=model_name, num_workers=0)
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    opt = torch.optim.SGD(module.parameters(), lr=0.01, momentum=0.9)
    module.train()
    return module, opt, batches


def _step(module, opt, batch) -> float:
    t0 = time.perf_counter()
    loss = module.training_step(batch, 0)
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return time.perf_counter() - t0


def _interleaved(label: str, a, b, steps: int, warmup: int) -> float:
    ta, tb = [], []
    for i in range(warmup + steps):
        da = _step(a[0], a[1], a[2][i % len(a[2])])
        db = _step(b[0], b[1], b[2][i % len(b[2])])
        if i >= warmup:
            ta.append(da)
            tb.append(db)
    ma, mb = statistics.median(ta), statistics.median(tb)
    print(f"{label}: {ma * 1e3:8.1f} ms vs {mb * 1e3:8.1f} ms per step  ratio {ma / mb:.3f}x", flush=True)
    return ma / mb


class _StepTimer(Callback):
    def __init__(self) -> None:
        self.times: list[float] = []
        self._t0 = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        torch.cuda.synchronize()
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        torch.cuda.synchronize()
        self.times.append(time.perf_counter() - self._t0)


def _gpu_throughput(neural: BrainData, target, batch: int, neural_batch: int, steps: int = 20,
                    warmup: int = 5) -> None:
    L.seed_everything(0, verbose=False)
    module = BrainRegularizedModule(build_model("vone_cornet_s", num_classes=1000),
                                    [CKALoss("IT", target, weight=1.0)], lr=0.01, scheduler="none")
    dm = GratingsDataModule(num_classes=1000, n_train=batch * (steps + warmup), n_val=batch, neural=neural,
                            neural_batch_size=neural_batch, neural_holdout=0.0, batch_size=batch, image_size=224,
                            normalize=True, model_name="vone_cornet_s", num_workers=4)
    timer = _StepTimer()
    trainer = L.Trainer(max_steps=steps + warmup, accelerator="gpu", devices=1, precision="16-mixed",
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0, callbacks=[timer])
    trainer.fit(module, dm)
    med = statistics.median(timer.times[warmup:])
    print(f"GPU {torch.cuda.get_device_name(0)}: vone_cornet_s 224 px, AMP 16-mixed, CKA-aligned "
          f"(+{neural_batch} neural images), batch {batch}: {batch / med:.0f} task images/s ({med * 1e3:.1f} ms/step)")


def _scorecard_tiny() -> None:
    import tempfile
    from pathlib import Path

    from neuroreg.training.cli import build_cli

    config = Path(__file__).resolve().parents[1] / "configs" / "train_tiny_cornet_z.yaml"
    with tempfile.TemporaryDirectory() as tmp:
        cli = build_cli(["--config", str(config), "--trainer.default_root_dir", tmp,
                         "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"])
        cb = next(c for c in cli.trainer.callbacks if type(c).__name__ == "ScorecardCallback")
        spent = {"periodic": [], "final": 0.0}
        periodic, final = cb._periodic, cb.on_fit_end

        def timed_periodic(trainer, pl_module):
            t0 = time.perf_counter()
            periodic(trainer, pl_module)
            spent["periodic"].append(time.perf_counter() - t0)

        def timed_final(trainer, pl_module):
            t0 = time.perf_counter()
            final(trainer, pl_module)
            spent["final"] = time.perf_counter() - t0

        cb._periodic, cb.on_fit_end = timed_periodic, timed_final
        t0 = time.perf_counter()
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
        total = time.perf_counter() - t0
    train = total - sum(spent["periodic"]) - spent["final"]
    n = len(spent["periodic"])
    print(f"scorecard, tiny config ({cli.trainer.global_step} steps, {cli.trainer.current_epoch} epochs of "
          f"{cli.trainer.num_training_batches} steps): training {train:.1f} s; {n} periodic evaluations "
          f"{sum(spent['periodic']):.1f} s ({statistics.median(spent['periodic']) if n else 0:.2f} s each) = "
          f"{sum(spent['periodic']) / train:.1%} of training time at every_n_epochs=1; final scorecard "
          f"{spent['final']:.1f} s once", flush=True)


def _scorecard_imagenet(neural: BrainData, target, *, batch: int, val_images: int, steps: int, warmup: int) -> None:
    import tempfile
    from types import SimpleNamespace

    from neuroreg.training import ScorecardCallback

    module, opt, batches = _setup("vone_cornet_s", True, neural, target, size=224, batch=batch,
                                  neural_batch=min(8, batch), n_batches=2)  # CKA needs >= 4
    times = [_step(module, opt, batches[i % len(batches)]) for i in range(warmup + steps)][warmup:]
    per_image = statistics.median(times) / batch
    epoch_s = per_image * 1_281_167
    cb = ScorecardCallback()
    dm = GratingsDataModule(num_classes=1000, n_train=val_images, n_val=val_images, batch_size=batch, image_size=224,
                            normalize=True, model_name="vone_cornet_s", num_workers=0)
    dm.setup("fit")
    with tempfile.TemporaryDirectory() as tmp:
        trainer = SimpleNamespace(datamodule=dm, default_root_dir=tmp)
        cb.periodic_max_images = val_images
        brain_only, attack = cb.brain_sets, cb.periodic_attack
        t0 = time.perf_counter()
        cb.brain_sets, cb.periodic_attack, dm_saved = brain_only, None, trainer.datamodule
        trainer.datamodule = None
        cb._evaluate(trainer, module, periodic=True)
        t_brain = time.perf_counter() - t0
        trainer.datamodule, cb.brain_sets, cb.periodic_attack = dm_saved, [], attack
        t0 = time.perf_counter()
        cb._evaluate(trainer, module, periodic=True)
        t_task = (time.perf_counter() - t0) * 128 / val_images
    periodic_s = t_brain + t_task
    print(f"scorecard, ImageNet config settings (vone_cornet_s 224 px, CKA-aligned), CPU: training "
          f"{per_image * 1e3:.0f} ms/image (batch {batch}) -> one ImageNet epoch {epoch_s / 3600:.1f} h; one periodic "
          f"evaluation {periodic_s:.0f} s (brain {t_brain:.0f} s + accuracy and 5-step EOT-PGD on 128 images "
          f"{t_task:.0f} s, timed on {val_images}) = {periodic_s / epoch_s:.3%} of an epoch at every_n_epochs=1",
          flush=True)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=64, help="image side in pixels (CPU runs)")
    p.add_argument("--batch", type=int, default=64, help="task images per step (alignment comparison)")
    p.add_argument("--neural-batch", type=int, default=8, help="neural images per step (aligned side)")
    p.add_argument("--vone-batch", type=int, default=16, help="task images per step (VOneBlock comparison)")
    p.add_argument("--steps", type=int, default=10, help="timed steps per side")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per side")
    p.add_argument("--skip-vone", action="store_true", help="skip the VOneBlock comparison")
    p.add_argument("--gpu-batch", type=int, default=128, help="task batch for the GPU throughput run")
    p.add_argument("--only-scorecard", action="store_true", help="run only the scorecard callback's cost")
    p.add_argument("--skip-scorecard", action="store_true", help="skip the scorecard callback's cost")
    p.add_argument("--imagenet-batch", type=int, default=4,
                   help="CPU batch of the ImageNet-settings step timing (>= 4: debiased CKA needs 4 neural images)")
    p.add_argument("--imagenet-val-images", type=int, default=16,
                   help="validation images the ImageNet-settings attack is timed on (scaled to 128)")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)

    k92 = load_kriegeskorte92()
    # The data module needs the images (a BrainData with stimuli); the loss reads the monkey IT RDM.
    neural = BrainData(np.zeros((k92.n_stimuli, 1)), k92.stimulus_ids, stimuli=k92.images, name="kriegeskorte92")
    target = k92.rdms["monkey_IT"]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads; {args.size} px; "
          f"{args.steps} timed steps per side after {args.warmup} warm-up steps", flush=True)
    if not args.skip_scorecard:
        _scorecard_tiny()
        _scorecard_imagenet(neural, target, batch=args.imagenet_batch, val_images=args.imagenet_val_images,
                            steps=3, warmup=1)
    if args.only_scorecard:
        return
    n = min(args.steps + args.warmup, 4)
    kw = dict(size=args.size, neural_batch=args.neural_batch, n_batches=n)
    _interleaved(f"CPU cornet_z with vs without CKA IT alignment, batch {args.batch} (+{args.neural_batch} neural), "
                 "goal <= 1.15x",
                 _setup("cornet_z", True, neural, target, batch=args.batch, **kw),
                 _setup("cornet_z", False, neural, target, batch=args.batch, **kw), args.steps, args.warmup)
    if not args.skip_vone:
        _interleaved(f"CPU vone_cornet_s vs cornet_s (task loss only), batch {args.vone_batch}",
                     _setup("vone_cornet_s", False, neural, target, batch=args.vone_batch, **kw),
                     _setup("cornet_s", False, neural, target, batch=args.vone_batch, **kw), args.steps, args.warmup)
    if torch.cuda.is_available():
        _gpu_throughput(neural, target, args.gpu_batch, 2 * args.neural_batch)
    else:
        print("GPU: no CUDA device here (vone_cornet_s 224 px AMP images/s is measured only on a GPU)")


if __name__ == "__main__":
    main()
