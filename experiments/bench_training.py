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
   interval (derived by neuroreg.training.callbacks.scorecard_cost: every k epochs, the
   smallest k at which one periodic evaluation's pixel-passes are <= 5 % of the
   training's; each periodic evaluation is cRSA over 4 layers with the noise
   ceiling, clean accuracy and a 5-step PGD at 4/255). Wall and CPU (user + sys)
   seconds. (a) The tiny config (configs/train_tiny_cornet_z.yaml) run through
   ``neuroreg train``'s CLI: training time per step, the interval the callback
   chose, the periodic evaluations inside the run, one periodic evaluation of
   the trained model measured directly, and the one-off final scorecard.
   (b) The ImageNet config (configs/train_vone_cornet_s_imagenet.yaml:
   vone_cornet_s at 224 px, 256 + 32 neural images per step, 5,005 steps per
   epoch) on synthetic ImageNet-shaped tensors (1,000-class gratings at 224 px):
   training steps measured at ``--imagenet-batch`` (+ as many neural images) and
   scaled per image; one periodic evaluation with its brain part measured in full
   and its accuracy + PGD/EOT-PGD part measured on ``--imagenet-val-images``
   images and scaled to 128; the final scorecard's brain part measured, its
   attack suite counted in image passes on a stand-in no attack fools (an upper
   bound) and timed per pass as measured in the periodic attack.

    python experiments/bench_training.py
    python experiments/bench_training.py --size 96 --batch 128 --steps 20
    python experiments/bench_training.py --only-scorecard
    python experiments/bench_training.py --only-tiny-scorecard
    python experiments/bench_training.py --only-imagenet-scorecard --imagenet-val-images 2
"""

from __future__ import annotations

import argparse
import logging
import resource
import statistics
import time
import warnings

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

from neuroreg.alignment import CKALoss
from neuroreg.brain import BrainData, load_kriegeskorte92
from neuroreg.training import BrainRegularizedModule
from neuroreg.data import GratingsDataModule
from neuroreg.finetune import build_model


def _setup(model_name: str, aligned: bool, neural: BrainData, target, *, size: int, batch: int,
           neural_batch: int, n_batches: int, num_classes: int = 4):
    """A module, its optimizer and ``n_batches`` prepared training batches."""
    torch.manual_seed(0)
    module = BrainRegularizedModule(build_model(model_name, num_classes=num_classes),
                                    [CKALoss("IT", target, weight=1.0)] if aligned else [], lr=0.01,
                                    scheduler="none")
    dm = GratingsDataModule(num_classes=num_classes, n_train=batch * n_batches, n_val=batch,
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


def _cpu_s() -> float:
    """CPU seconds (user + sys) of this process and its finished children: every thread, not only the caller."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


class _Clock:
    """Wall and CPU seconds of a block, added to ``totals[label]``."""

    def __init__(self, totals: dict, label: str) -> None:
        self.totals, self.label = totals, label

    def __enter__(self):
        self.t0, self.c0 = time.perf_counter(), _cpu_s()
        return self

    def __exit__(self, *exc):
        wall, cpu = self.totals.get(self.label, (0.0, 0.0))
        self.wall, self.cpu = time.perf_counter() - self.t0, _cpu_s() - self.c0
        self.totals[self.label] = (wall + self.wall, cpu + self.cpu)
        return False


def _fmt(pair) -> str:
    return f"{pair[0]:.1f} s wall / {pair[1]:.1f} s CPU"


class _PassCounter:
    """Image forward passes through a module (a pass whose input needs a gradient counts 3, as in
    neuroreg.training.callbacks.scorecard_cost); brain features read through forward_intermediates are not counted."""

    def __init__(self, module) -> None:
        self.passes = 0
        self.handle = module.register_forward_hook(self._hook)

    def _hook(self, module, args, output) -> None:
        x = args[0]
        self.passes += x.shape[0] * (3 if torch.is_grad_enabled() and x.requires_grad else 1)


def _scorecard_tiny() -> None:
    import tempfile
    from pathlib import Path

    from neuroreg.training.lightning_cli import build_cli

    config = Path(__file__).resolve().parents[1] / "configs" / "train_tiny_cornet_z.yaml"
    spent: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        cli = build_cli(["--config", str(config), "--trainer.default_root_dir", tmp,
                         "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"])
        cb = next(c for c in cli.trainer.callbacks if type(c).__name__ == "ScorecardCallback")
        hooks = {"interval": "on_train_batch_start", "periodic": "_periodic", "final": "on_fit_end"}
        for label, name in hooks.items():
            def timed(*args, _f=getattr(cb, name), _label=label):
                with _Clock(spent, _label):
                    _f(*args)
            setattr(cb, name, timed)
        with _Clock(spent, "run"):
            cli.trainer.fit(cli.model, datamodule=cli.datamodule)
        trainer = cli.trainer
        # one periodic evaluation of the trained model, measured directly: the first reads the validation images
        # into the run's cache (the brain stimuli were prepared for the interval estimate), the second is steady
        with _Clock(spent, "eval_first"):
            cb._evaluate(trainer, cli.model, periodic=True)
        with _Clock(spent, "eval"):
            cb._evaluate(trainer, cli.model, periodic=True)
    zero = (0.0, 0.0)
    callback = [sum(spent.get(k, zero)[i] for k in hooks) for i in (0, 1)]
    train = [spent["run"][i] - callback[i] for i in (0, 1)]
    steps, per_epoch = trainer.global_step, trainer.num_training_batches
    step = [t / steps for t in train]
    every_epochs, every_steps = cb.interval_
    interval_steps = every_epochs * per_epoch if every_epochs else every_steps
    frac = [spent["eval"][i] / (interval_steps * step[i]) for i in (0, 1)]
    n_periodic = len({r["step"] for r in cb.curves_})
    print(f"scorecard, tiny config ({steps} steps = {trainer.current_epoch} epochs of {per_epoch} steps, 32 px, "
          f"cornet_z, CKA-aligned):\n"
          f"  training {_fmt(train)} ({step[0]:.2f} s wall / {step[1]:.2f} s CPU per step, validation and "
          f"checkpoints included)\n"
          f"  default interval: every {every_epochs} epochs = {interval_steps} steps (rule of "
          f"neuroreg.training.callbacks.scorecard_cost, budget {cb.periodic_budget:.0%}); fixing it at the first batch took "
          f"{_fmt(spent.get('interval', zero))}; periodic evaluations inside this run: {n_periodic} "
          f"({_fmt(spent.get('periodic', zero))})\n"
          f"  one periodic evaluation (cRSA on the 92 images at 224 px over 4 layers with the noise ceiling, "
          f"clean accuracy, 5-step PGD on {cb.periodic_max_images} images), measured on the trained model: "
          f"{_fmt(spent['eval'])} ({_fmt(spent['eval_first'])} the first time, reading the validation images)\n"
          f"  -> cost at the default interval: {frac[0]:.1%} of training wall time, {frac[1]:.1%} of CPU time "
          f"(one evaluation per {interval_steps} measured training steps)\n"
          f"  final scorecard, once: {_fmt(spent.get('final', zero))} "
          f"({spent.get('final', zero)[0] / train[0]:.0%} of this run's training wall time)", flush=True)


def _imagenet_scorecard_options() -> dict:
    from pathlib import Path

    import yaml

    config = Path(__file__).resolve().parents[1] / "configs" / "train_vone_cornet_s_imagenet.yaml"
    return dict(yaml.safe_load(config.read_text())["scorecard"])


class _AlwaysRight(torch.nn.Module):
    """A stand-in classifier that always answers class 0 with a wide margin, with a little noise (stochastic, as
    VOne is): no attack ever succeeds, so every attack of the final suite runs its full budget (Square included,
    which stops early on images it has fooled). Used only to count the suite's passes per image."""

    pretrained_cfg = {"input_size": (3, 32, 32), "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.full((num_classes,), 1e-3))
        self.num_classes = num_classes

    def forward(self, x):
        logits = x.mean((1, 2, 3))[:, None] * self.w + 0.1 * torch.randn(x.shape[0], self.num_classes)
        return logits + torch.nn.functional.one_hot(torch.zeros(x.shape[0], dtype=torch.long),
                                                    self.num_classes).float() * 100.0


def _scorecard_imagenet(neural: BrainData, target, *, batch: int, val_images: int, steps: int, warmup: int) -> None:
    import math
    import tempfile
    from types import SimpleNamespace

    from neuroreg.training import ScorecardCallback
    from neuroreg.training.callbacks.scorecard_cost import default_interval, training_batch_cost

    full_batch, full_neural, epoch_steps = 256, 32, 5005            # configs/train_vone_cornet_s_imagenet.yaml
    final_images = 5000
    options = _imagenet_scorecard_options()
    spent: dict = {}
    # 1. training steps, measured at a small batch, scaled per input image to 256 task + 32 neural images
    module, opt, batches = _setup("vone_cornet_s", True, neural, target, size=224, batch=batch,
                                  neural_batch=batch, n_batches=2, num_classes=1000)  # CKA needs >= 4 neural
    walls, cpus = [], []
    for i in range(warmup + steps):
        c0 = _cpu_s()
        wall = _step(module, opt, batches[i % len(batches)])
        if i >= warmup:
            walls.append(wall)
            cpus.append(_cpu_s() - c0)
    per_image = [statistics.median(walls) / (2 * batch), statistics.median(cpus) / (2 * batch)]
    epoch = [p * (full_batch + full_neural) * epoch_steps for p in per_image]
    module.eval()
    backbone = module.backbone

    cb = ScorecardCallback(**options)
    val = GratingsDataModule(num_classes=1000, n_train=8, n_val=max(val_images, 128), batch_size=batch,
                             image_size=224, normalize=True, model_name="vone_cornet_s", num_workers=0)
    val.setup("fit")
    with tempfile.TemporaryDirectory() as tmp:
        trainer = SimpleNamespace(datamodule=val, default_root_dir=tmp)
        # 2. the default interval, by the callback's own rule, for the config's batch and epoch
        with _Clock(spent, "prepare"):
            cost = cb.periodic_cost(trainer, module)        # loads the brain sets, resizes their stimuli once
        meta = {"image": torch.empty(full_batch, 3, 224, 224, device="meta"),
                "neural_image": torch.empty(full_neural, 3, 224, 224, device="meta")}
        every_epochs, every_steps = default_interval(cost, training_batch_cost(meta), batches_per_epoch=epoch_steps,
                                                     budget=cb.periodic_budget)
        interval_epochs = every_epochs if every_epochs else every_steps / epoch_steps
        # 3. one periodic evaluation: the brain part in full, the accuracy and attack part on val_images images
        no_task = SimpleNamespace(datamodule=None, default_root_dir=tmp)
        with _Clock(spent, "brain"):
            cb._evaluate(no_task, module, periodic=True)
        brain_sets, cb.brain_sets, cb._brain_cache = cb.brain_sets, [], []
        cb.periodic_max_images = val_images
        counter = _PassCounter(backbone)
        with _Clock(spent, "task"):
            cb._evaluate(trainer, module, periodic=True)
        counter.handle.remove()
        task_passes = counter.passes / val_images
        per_pass = [t / counter.passes for t in spent["task"]]      # seconds per image forward-equivalent
        task = [t * options.get("periodic_max_images", 128) / val_images for t in spent["task"]]
        periodic = [spent["brain"][i] + task[i] for i in (0, 1)]
        frac = [periodic[i] / (interval_epochs * epoch[i]) for i in (0, 1)]
        # 4. the final scorecard: brain part in full (whole layer sweep); accuracy and attack suite (eps grid
        # with sanity checks) on max_images images, counted on a stand-in that no attack fools, timed per pass
        cb.brain_sets, cb._brain_cache = brain_sets, None
        with _Clock(spent, "final_brain"):
            cb._evaluate(no_task, module, periodic=False)
        stand_in = _AlwaysRight()
        counter = _PassCounter(stand_in)
        # passes per image do not depend on the image size: count on 2 images of 32 px (fast)
        probe = SimpleNamespace(datamodule=SimpleNamespace(_val=[(torch.rand(3, 32, 32), 0)] * 2, mean_std=None),
                                default_root_dir=tmp)
        cb.brain_sets, cb._brain_cache, cb.max_images = [], None, None
        cb._evaluate(probe, stand_in, periodic=False)
        final_passes = counter.passes / 2
        n_final = options.get("max_images", final_images)
        final_task = [final_passes * n_final * p for p in per_pass]
        final = [spent["final_brain"][i] + final_task[i] for i in (0, 1)]
    print(f"scorecard, ImageNet config (vone_cornet_s, 224 px, CKA-aligned, brain sets {', '.join(brain_sets)}), "
          f"on this CPU:\n"
          f"  training step, measured at batch {batch} + {batch} neural images: {statistics.median(walls):.2f} s wall "
          f"/ {statistics.median(cpus):.2f} s CPU -> {per_image[0] * 1e3:.0f} ms wall / {per_image[1] * 1e3:.0f} ms "
          f"CPU per image; scaled to {full_batch} + {full_neural} images x {epoch_steps} steps: one epoch "
          f"{epoch[0] / 3600:.1f} h wall / {epoch[1] / 3600:.1f} h CPU\n"
          f"  default interval: every {every_epochs} epochs" + (f" ({every_steps} steps)" if every_steps else "")
          + f" (estimate {cost:,} pixel-passes per evaluation; preparing the brain stimuli once: "
          f"{_fmt(spent['prepare'])})\n"
          f"  one periodic evaluation: brain part (cRSA over 4 layers on {', '.join(brain_sets)}) measured in full "
          f"{_fmt(spent['brain'])}; accuracy + 5-step PGD and EOT-PGD measured on {val_images} images "
          f"{_fmt(spent['task'])} ({task_passes:.0f} image passes each), scaled to "
          f"{options.get('periodic_max_images', 128)}: {_fmt(task)}; total {_fmt(periodic)}\n"
          f"  -> cost at the default interval: {frac[0]:.3%} of training wall time, {frac[1]:.3%} of CPU time "
          f"(one evaluation per {interval_epochs:g} scaled epochs)\n"
          f"  final scorecard: brain part (whole layer sweep) measured {_fmt(spent['final_brain'])}; accuracy and "
          f"attack suite with sanity checks counted at {final_passes:.0f} image passes per image (upper bound: "
          f"no attack stops early) x {n_final} images x {per_pass[0] * 1e3:.0f} ms wall / {per_pass[1] * 1e3:.0f} "
          f"ms CPU per pass (measured in the periodic attack) = {final_task[0] / 3600:.1f} h wall; total "
          f"{final[0] / 3600:.1f} h wall / {final[1] / 3600:.1f} h CPU once, "
          f"{final[0] / (70 * epoch[0]):.2%} of the config's 70 epochs", flush=True)
    if not math.isfinite(frac[0]):
        raise RuntimeError("the ImageNet-config fraction is not finite")


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
    p.add_argument("--imagenet-val-images", type=int, default=8,
                   help="validation images the ImageNet-settings attack is timed on (scaled to 128)")
    p.add_argument("--only-imagenet-scorecard", action="store_true",
                   help="run only the ImageNet-config part of the scorecard cost")
    p.add_argument("--only-tiny-scorecard", action="store_true",
                   help="run only the tiny-config part of the scorecard cost")
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
        if not args.only_imagenet_scorecard:
            _scorecard_tiny()
        if not args.only_tiny_scorecard:
            _scorecard_imagenet(neural, target, batch=args.imagenet_batch, val_images=args.imagenet_val_images,
                                steps=3, warmup=1)
    if args.only_scorecard or args.only_imagenet_scorecard or args.only_tiny_scorecard:
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
