"""Cost of the forgetting report against one fine-tuning epoch on the same data, and what the network forgot.

The genuinely trained ImageNet network ``efficientnet_lite0_imagenet`` is
fine-tuned (full strategy, AdamW, weight decay 0.01) on the generated pattern
domain; each epoch is timed, then one forgetting report (task accuracy before
as a probe on the frozen start / after, retention on the 92 bundled images,
CKA drift at every block, cRSA on both bundled sets) is timed in the same
process on the same data. Prints wall clock and process CPU time (user + sys)
of both and the ratio report / one epoch (target <= 0.25); "one epoch" is the
fastest epoch of the run. A second report follows with the start side stored
by the first (``start_cache``): what every later run from the same start pays;
its rows must equal the first report's. ``--json`` writes the measurements.

    python experiments/bench_finetune.py                       # default size: 840 training images at 96 px
    python experiments/bench_finetune.py --n-images 716 --image-size 224 --epochs 1   # the seed's budget: 500 training images at the model's input size
    python experiments/bench_finetune.py --epochs 3 --image-size 128 --out results/bench_finetune
    python experiments/bench_finetune.py --model vone_cornet_s --device cuda --amp --image-size 224   # GPU images/s
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-images", type=int, default=1200, help="generated images (70/10/20 train/val/test)")
    ap.add_argument("--image-size", type=int, default=96)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=2, help="the fastest epoch is the unit of the ratio")
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--strategy", default="full")
    ap.add_argument("--model", default="efficientnet_lite0_imagenet",
                    help="start network (e.g. vone_cornet_s with --device cuda --amp for GPU images/s)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--amp", action="store_true", help="bf16/fp16 autocast (GPU)")
    ap.add_argument("--out", default=None, help="folder for forgetting.csv/.md and figures")
    ap.add_argument("--json", default=None, help="write the measured numbers to this JSON file")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    import lightning as L

    from neuroreg.finetune import FinetuneModule
    from neuroreg.data import PatternDataModule
    from neuroreg.finetune.forgetting import forgetting_report
    from neuroreg.finetune.forgetting_output import forgetting_markdown, write_forgetting

    L.seed_everything(args.seed, verbose=False)
    name = args.model
    dm = PatternDataModule(n_images=args.n_images, batch_size=args.batch_size, image_size=args.image_size,
                           model_name=name, num_workers=0, seed=args.seed)
    module = FinetuneModule(name, num_classes=dm.num_classes, strategy=args.strategy, lr=args.lr,
                            head_lr=1e-3, scheduler="none")
    epoch_s: list[float] = []
    epoch_cpu_s: list[float] = []

    def cpu_s() -> float:
        """User + system CPU time of this process (all its threads), seconds."""
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    class Timer(L.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            self.t, self.cpu = time.perf_counter(), cpu_s()

        def on_train_epoch_end(self, trainer, pl_module):
            if args.device == "cuda":
                torch.cuda.synchronize()
            epoch_s.append(time.perf_counter() - self.t)
            epoch_cpu_s.append(cpu_s() - self.cpu)

    run_dir = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench_finetune_"))
    trainer = L.Trainer(max_epochs=args.epochs, default_root_dir=str(run_dir), accelerator="gpu" if args.device == "cuda" else "cpu", devices=1,
                        precision="bf16-mixed" if args.amp else "32-true", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        limit_val_batches=0, callbacks=[Timer()])
    trainer.fit(module, datamodule=dm)
    n_train = len(dm.eval_dataset("train"))
    n_test = len(dm.eval_dataset("test"))
    layers = ({f"blocks.{i}": f"blocks.{i}" for i in range(7)} if name.startswith("efficientnet")
              else None)                                   # None: the V1/V2/V4/IT areas
    start = module.start_model()
    cache = Path(tempfile.mkdtemp(prefix="bench_finetune_start_"))

    def timed_report():
        """(table, wall s, CPU s) of one report with the start cache in ``cache``."""
        t0, c0 = time.perf_counter(), cpu_s()
        out = forgetting_report(start, module.backbone, task_data=dm, dataset="patterns", layers=layers,
                                image_size=args.image_size, device=args.device, batch_size=64, seed=args.seed,
                                model=name, start_cache=cache)
        if args.device == "cuda":
            torch.cuda.synchronize()
        return out, time.perf_counter() - t0, cpu_s() - c0

    table, report_s, report_cpu_s = timed_report()            # first run from this start: computes its side
    warm, warm_s, warm_cpu_s = timed_report()                 # a later run from the same start: reads it
    shutil.rmtree(cache, ignore_errors=True)
    cold_scores, warm_scores = table.to_pandas()["score"].to_numpy(), warm.to_pandas()["score"].to_numpy()
    # exact on CPU; a GPU may pick other kernels between the two runs, so a last-bit tolerance there
    same = (np.array_equal(cold_scores, warm_scores, equal_nan=True) if args.device == "cpu"
            else np.allclose(cold_scores, warm_scores, rtol=0.0, atol=1e-5, equal_nan=True))
    if not same:
        diff = np.nanmax(np.abs(cold_scores - warm_scores))
        raise RuntimeError(f"the report with the stored start side differs from the full report (max {diff:.3g})")
    fastest = min(range(len(epoch_s)), key=epoch_s.__getitem__)
    one_epoch, one_epoch_cpu = epoch_s[fastest], epoch_cpu_s[fastest]
    print(f"device {args.device} ({torch.get_num_threads()} threads), image size {args.image_size}, "
          f"{n_train} training images, {n_test} test images, batch {args.batch_size}, strategy {args.strategy}")
    print("fine-tuning epochs, wall (s): " + ", ".join(f"{s:.1f}" for s in epoch_s)
          + "; CPU (s): " + ", ".join(f"{s:.1f}" for s in epoch_cpu_s)
          + f"  -> {n_train / one_epoch:.1f} images/s")
    print(f"forgetting report: wall {report_s:.1f} s, CPU {report_cpu_s:.1f} s")
    print(f"ratio report / one epoch on these {n_train} images: wall {report_s / one_epoch:.3f}, "
          f"CPU {report_cpu_s / one_epoch_cpu:.3f}  (target <= 0.25)")
    print(f"a later run from the same start (stored start side, same rows): wall {warm_s:.1f} s, CPU {warm_cpu_s:.1f} s"
          f" -> ratio wall {warm_s / one_epoch:.3f}, CPU {warm_cpu_s / one_epoch_cpu:.3f}")
    if args.json:
        from neuroreg._utils.io import atomic_write_text
        record = {"device": args.device, "threads": torch.get_num_threads(), "model": name,
                  "image_size": args.image_size, "n_train": n_train, "n_test": n_test,
                  "batch_size": args.batch_size, "strategy": args.strategy, "epoch_wall_s": epoch_s,
                  "epoch_cpu_s": epoch_cpu_s, "report_wall_s": report_s, "report_cpu_s": report_cpu_s,
                  "ratio_wall": report_s / one_epoch, "ratio_cpu": report_cpu_s / one_epoch_cpu,
                  "warm_report_wall_s": warm_s, "warm_report_cpu_s": warm_cpu_s,
                  "warm_ratio_wall": warm_s / one_epoch, "warm_ratio_cpu": warm_cpu_s / one_epoch_cpu}
        atomic_write_text(args.json, json.dumps(record, indent=1))
    print()
    print(forgetting_markdown(table))
    if args.out:
        paths = write_forgetting(table, Path(args.out))
        print(f"written: {', '.join(str(p) for p in paths.values())}")


if __name__ == "__main__":
    main()
