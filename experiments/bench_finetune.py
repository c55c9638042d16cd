"""Cost of the forgetting report against one fine-tuning epoch on the same data, and what the network forgot.

The genuinely trained ImageNet network ``efficientnet_lite0_imagenet`` is
fine-tuned (full strategy, AdamW, weight decay 0.01) on the generated pattern
domain; each epoch is timed, then the forgetting report (task accuracy before
as a probe on the frozen start / after, retention on the 92 bundled images,
CKA drift at every block, cRSA on both bundled sets) is timed on the same
machine. Prints the measured numbers and the ratio report / epoch (target
<= 0.25).

    python experiments/bench_finetune.py                       # ~ minutes on 2 CPU cores
    python experiments/bench_finetune.py --epochs 3 --image-size 128 --out results/bench_finetune
    python experiments/bench_finetune.py --model vone_cornet_s --device cuda --amp --image-size 224   # GPU images/s
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-images", type=int, default=1200, help="generated images (70/10/20 train/val/test)")
    ap.add_argument("--image-size", type=int, default=96)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--strategy", default="full")
    ap.add_argument("--model", default="efficientnet_lite0_imagenet",
                    help="start network (e.g. vone_cornet_s with --device cuda --amp for GPU images/s)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--amp", action="store_true", help="bf16/fp16 autocast (GPU)")
    ap.add_argument("--out", default=None, help="folder for forgetting.csv/.md and figures")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import lightning as L

    from neuroreg.training import FinetuneModule, PatternDataModule
    from neuroreg.training.forgetting import forgetting_report
    from neuroreg.training.forgetting_output import forgetting_markdown, write_forgetting

    L.seed_everything(args.seed, verbose=False)
    name = args.model
    dm = PatternDataModule(n_images=args.n_images, batch_size=args.batch_size, image_size=args.image_size,
                           model_name=name, num_workers=0, seed=args.seed)
    module = FinetuneModule(name, num_classes=dm.num_classes, strategy=args.strategy, lr=args.lr,
                            head_lr=1e-3, scheduler="none")
    epoch_s: list[float] = []

    class Timer(L.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            self.t = time.perf_counter()

        def on_train_epoch_end(self, trainer, pl_module):
            if args.device == "cuda":
                torch.cuda.synchronize()
            epoch_s.append(time.perf_counter() - self.t)

    run_dir = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench_finetune_"))
    trainer = L.Trainer(max_epochs=args.epochs, default_root_dir=str(run_dir), accelerator="gpu" if args.device == "cuda" else "cpu", devices=1,
                        precision="bf16-mixed" if args.amp else "32-true", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        limit_val_batches=0, callbacks=[Timer()])
    trainer.fit(module, datamodule=dm)
    n_train = len(dm.eval_dataset("train"))
    layers = ({f"blocks.{i}": f"blocks.{i}" for i in range(7)} if name.startswith("efficientnet")
              else None)                                   # None: the V1/V2/V4/IT areas
    report_kw = dict(layers=layers, image_size=args.image_size, device=args.device, batch_size=64, seed=args.seed,
                     model=name)
    t0 = time.perf_counter()
    table = forgetting_report(module.start_model(), module.backbone, task_data=dm, dataset="patterns", **report_kw)
    report_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    forgetting_report(module.start_model(), module.backbone, task_data=None, **report_kw)
    fixed_s = time.perf_counter() - t0
    n_test = len(dm.eval_dataset("test"))
    n_task_images = min(n_train, 1000) + 2 * min(n_test, 2000)
    per_image_s = max(report_s - fixed_s, 0.0) / n_task_images
    one_epoch = min(epoch_s)
    train_image_s = one_epoch / n_train
    print(f"device {args.device} ({torch.get_num_threads()} threads), image size {args.image_size}, "
          f"{n_train} training images, {n_test} test images, batch {args.batch_size}, strategy {args.strategy}")
    print("fine-tuning epochs (s): " + ", ".join(f"{s:.1f}" for s in epoch_s)
          + f"  -> {n_train / one_epoch:.1f} images/s")
    print(f"forgetting report (s): {report_s:.1f}  (probe sets, retention, drift and cRSA alone: {fixed_s:.1f}; "
          f"new-task part {per_image_s * 1e3:.1f} ms per image forwarded)")
    print(f"ratio report / one epoch, measured on these {n_train} images: {report_s / one_epoch:.3f}  "
          "(target <= 0.25)")
    # The report's cost is a fixed part plus the capped new-task images (<= 1000 probe-training, <= 2000 test images
    # through both networks); an epoch grows with the data. Same measured unit costs, EuroSAT's split sizes:
    n_e_train, n_e_test = 18_900, 5_400
    est_report = fixed_s + per_image_s * (min(n_e_train, 1000) + 2 * min(n_e_test, 2000))
    est_epoch = train_image_s * n_e_train
    print(f"extrapolated from these unit costs to EuroSAT (70/10/20 of 27,000 images: {n_e_train} train, "
          f"{n_e_test} test): report {est_report:.0f} s / epoch {est_epoch:.0f} s = {est_report / est_epoch:.3f}")
    print()
    print(forgetting_markdown(table))
    if args.out:
        paths = write_forgetting(table, Path(args.out))
        print(f"written: {', '.join(str(p) for p in paths.values())}")


if __name__ == "__main__":
    main()
