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

``--isic N [N ...]`` measures instead what ``neuroreg finetune`` itself does after
training with ``configs/finetune_isic.yaml`` (EfficientNet-Lite0, 224 px): for each N
it writes an ISIC-2019-layout folder of N generated images (seeded; lesions of two
images, 70/10/20 train/val/test grouped by lesion), runs the command with
``--trainer.max_steps`` (default 4), and reads the lines the run prints, each stamped
with wall clock and process CPU time: every stage of the end-of-run scorecard and of
the forgetting report (start and seconds), the end-of-run total (from "Trainer.fit
stopped" to the end) and the training steps (timed at each batch's end). One epoch is
``train images // 32`` steps at the mean seconds of steps 2.. of the run (the first
carries the start-up). ``--json`` keeps every stage.

    python experiments/bench_finetune.py --isic 100 1000                          # the stage table and ratios
    python experiments/bench_finetune.py --isic 100 --max-steps 4 --precision 32-true
"""

from __future__ import annotations

import argparse
import json
import logging
import re
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
    ap.add_argument("--isic", type=int, nargs="+", default=None,
                    help="measure `neuroreg finetune --config configs/finetune_isic.yaml` on N generated images")
    ap.add_argument("--max-steps", type=int, default=4, help="--isic: training steps of each run")
    ap.add_argument("--precision", default=None, help="--isic: --trainer.precision (default: the config's)")
    ap.add_argument("--isic-image-size", type=int, default=96, help="--isic: side of the generated JPEGs (px)")
    ap.add_argument("--extrapolate", nargs=2, metavar=("JSON", "N"), default=None,
                    help="project a measured --isic run (its --json) to N images by the stages' image counts")
    args = ap.parse_args(argv)
    if args.extrapolate:
        extrapolate_isic(json.loads(Path(args.extrapolate[0]).read_text())[0], int(args.extrapolate[1]))
        return
    if args.isic:
        bench_isic(args.isic, max_steps=args.max_steps, precision=args.precision, image_size=args.isic_image_size,
                   seed=args.seed, json_path=args.json)
        return

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


# ----------------------------------------------------------------------------- --isic: the command's end-of-run work
ISIC_CLASSES = ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC"]


def make_isic_folder(root: Path, n_images: int, image_size: int, seed: int) -> None:
    """ISIC 2019 layout with ``n_images`` generated JPEGs: classes in turn, lesions of two images (ids HAM_...),
    one image in five without a lesion id; each image a seeded colour with noise (``image_size`` px)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    inp = root / "ISIC_2019_Training_Input"
    inp.mkdir(parents=True, exist_ok=True)
    gt = ["image," + ",".join(ISIC_CLASSES) + ",UNK"]
    meta = ["image,age_approx,anatom_site_general,lesion_id,sex"]
    for n in range(n_images):
        c = (n // 2) % len(ISIC_CLASSES)
        name = f"ISIC_{n:07d}"
        base = rng.integers(0, 256, size=3)
        arr = np.clip(base + rng.normal(0, 30, size=(image_size, image_size, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(inp / f"{name}.jpg", quality=90)
        gt.append(",".join([name, *("1.0" if j == c else "0.0" for j in range(9))]))
        lesion = "" if n % 5 == 4 else f"HAM_{n // 2:07d}"
        meta.append(f"{name},{35 + 5 * (n % 8)},anterior torso,{lesion},{'male' if n % 2 else 'female'}")
    (root / "ISIC_2019_Training_GroundTruth.csv").write_text("\n".join(gt) + "\n")
    (root / "ISIC_2019_Training_Metadata.csv").write_text("\n".join(meta) + "\n")


class _Stamped(logging.Handler):
    """Keeps every line Lightning's rank-zero logger says, with wall clock and process CPU time (s)."""

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.lines: list[tuple[float, float, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((time.perf_counter(), _cpu_s(), record.getMessage()))


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _stages(lines: list[tuple[float, float, str]]) -> list[dict]:
    """Each ``<label> ...`` line paired with its ``<label> done in <s> s``: label, wall and CPU seconds."""
    out, open_ = [], {}
    for wall, cpu, text in lines:
        if text.endswith(" ..."):
            open_[text[:-4]] = (wall, cpu)
            continue
        m = re.match(r"(.*) done in [\d.]+ s", text)
        if m:
            label = re.sub(r"^(scorecard: )\[\d+/\d+\] ", r"\1", m.group(1))
            key = m.group(1) if m.group(1) in open_ else next((k for k in open_ if k.startswith(m.group(1))), None)
            if key is not None:
                w0, c0 = open_.pop(key)
                out.append({"stage": label, "wall_s": wall - w0, "cpu_s": cpu - c0})
    return out


def run_isic(n_images: int, *, max_steps: int, precision: str | None, image_size: int, seed: int) -> dict:
    """One ``neuroreg finetune --config configs/finetune_isic.yaml`` run on ``n_images`` generated images."""
    from neuroreg.cli.finetune import cli_main
    from neuroreg.finetune import FinetuneModule

    work = Path(tempfile.mkdtemp(prefix="bench_isic_"))
    try:
        make_isic_folder(work / "data", n_images, image_size, seed)
        argv = ["--config", str(Path(__file__).resolve().parents[1] / "configs" / "finetune_isic.yaml"),
                "--data.root", str(work / "data"), "--trainer.max_steps", str(max_steps),
                "--trainer.default_root_dir", str(work / "run"), "--data.init_args.num_workers", "0",
                "--trainer.enable_progress_bar", "false", "--seed_everything", str(seed)]
        if precision:
            argv += ["--trainer.precision", precision]
        handler = _Stamped()
        logger = logging.getLogger("lightning.pytorch")
        logger.addHandler(handler)
        step_ends: list[tuple[float, float]] = []
        # each training batch's end, stamped: the module's own hook (a no-op in LightningModule) for this process
        FinetuneModule.on_train_batch_end = lambda self, *a, **k: step_ends.append((time.perf_counter(), _cpu_s()))
        try:
            status = cli_main(argv)
        finally:
            logger.removeHandler(handler)
            del FinetuneModule.on_train_batch_end
        end_wall, end_cpu = time.perf_counter(), _cpu_s()
        if status != 0:
            raise RuntimeError(f"neuroreg finetune exited with status {status}")
        split_of = [row.split(",")[1] for row in (work / "run" / "splits.csv").read_text().splitlines()[1:]]
        n_train, n_val, n_test = (split_of.count(k) for k in ("train", "val", "test"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    lines = handler.lines
    stop = next(i for i, ln in enumerate(lines) if "Trainer.fit` stopped" in ln[2])
    if len(step_ends) < 2:
        raise ValueError(f"--max-steps must be >= 2 to time a step; got {max_steps}")
    steps = len(step_ends) - 1
    step_wall = (step_ends[-1][0] - step_ends[0][0]) / steps
    step_cpu = (step_ends[-1][1] - step_ends[0][1]) / steps
    per_epoch = max(1, n_train // 32)             # the training loader drops the last incomplete batch
    return {"n_images": n_images, "n_train": n_train, "n_val": n_val, "n_test": n_test, "max_steps": max_steps,
            "steps_per_epoch": per_epoch,
            "step_wall_s": step_wall, "step_cpu_s": step_cpu, "epoch_wall_s": per_epoch * step_wall,
            "epoch_cpu_s": per_epoch * step_cpu, "end_wall_s": end_wall - lines[stop][0],
            "end_cpu_s": end_cpu - lines[stop][1], "stages": _stages(lines[stop:]), "steps_timed": steps,
            "threads": torch.get_num_threads()}


def bench_isic(sizes: list[int], *, max_steps: int, precision: str | None, image_size: int, seed: int,
               json_path: str | None) -> list[dict]:
    """:func:`run_isic` per size; prints the stage table and the end-of-run work against one epoch."""
    records = [run_isic(n, max_steps=max_steps, precision=precision, image_size=image_size, seed=seed)
               for n in sizes]
    for r in records:
        print(f"\n{r['n_images']} images ({r['n_train']} training, {r['n_val']} validation, {r['n_test']} test; "
              f"{r['steps_per_epoch']} steps of 32 per epoch), "
              f"{r['threads']} threads; training step {r['step_wall_s']:.1f} s wall, {r['step_cpu_s']:.1f} s CPU")
        print(f"{'stage':<90} {'wall s':>8} {'CPU s':>8}")
        for st in r["stages"]:
            print(f"{st['stage'][:90]:<90} {st['wall_s']:8.1f} {st['cpu_s']:8.1f}")
        print(f"{'end-of-run work (Trainer.fit stopped -> end)':<90} {r['end_wall_s']:8.1f} {r['end_cpu_s']:8.1f}")
        print(f"one epoch ({r['steps_per_epoch']} steps at the measured step): wall {r['epoch_wall_s']:.1f} s, CPU "
              f"{r['epoch_cpu_s']:.1f} s -> end-of-run / one epoch: wall {r['end_wall_s'] / r['epoch_wall_s']:.3f}, "
              f"CPU {r['end_cpu_s'] / r['epoch_cpu_s']:.3f} (target <= 0.25 from 1,000 images)")
    if json_path:
        from neuroreg._utils.io import atomic_write_text
        atomic_write_text(json_path, json.dumps(records, indent=1))
    return records


def _new_task_passes(n_train: int, n_test: int) -> int:
    """Forward passes of the report's new-task section: both networks on the capped probe-training and test
    images (the report's defaults: at most 1,000 and 2,000)."""
    return 2 * (min(n_train, 1000) + min(n_test, 2000))


def extrapolate_isic(record: dict, n_images: int) -> dict:
    """A measured :func:`run_isic` record projected to ``n_images``: the new-task stage scaled by its forward
    passes (:func:`_new_task_passes`, splits 70/10/20), every other stage kept (the probe images, the brain set and
    the reduced card's capped validation images do not grow once the validation split exceeds its cap), one epoch
    scaled by its steps. Valid from a record whose validation split already exceeds the card's image cap."""
    n_train, n_test = round(0.7 * n_images), round(0.2 * n_images)
    scale = _new_task_passes(n_train, n_test) / _new_task_passes(record["n_train"], record["n_test"])
    steps = max(1, n_train // 32)
    out = {"n_images": n_images, "n_train": n_train, "steps_per_epoch": steps, "from": record["n_images"],
           "new_task_scale": scale, "stages": []}
    for key in ("wall_s", "cpu_s"):
        grown = sum(st[key] * (scale - 1) for st in record["stages"] if "new task" in st["stage"])
        out[f"end_{key}"] = record[f"end_{key}"] + grown
        out[f"epoch_{key}"] = steps * record[f"step_{key}"]
    for st in record["stages"]:
        f = scale if "new task" in st["stage"] else 1.0
        out["stages"].append({"stage": st["stage"], "wall_s": st["wall_s"] * f, "cpu_s": st["cpu_s"] * f})
    print(f"{n_images} images projected from the {record['n_images']}-image run (new-task stage x {scale:.2f}, "
          f"the rest as measured; one epoch {steps} steps at the measured step)")
    for st in out["stages"]:
        print(f"{st['stage'][:90]:<90} {st['wall_s']:8.1f} {st['cpu_s']:8.1f}")
    print(f"end-of-run work: wall {out['end_wall_s']:.1f} s, CPU {out['end_cpu_s']:.1f} s; one epoch: wall "
          f"{out['epoch_wall_s']:.1f} s, CPU {out['epoch_cpu_s']:.1f} s -> ratio wall "
          f"{out['end_wall_s'] / out['epoch_wall_s']:.3f}, CPU {out['end_cpu_s'] / out['epoch_cpu_s']:.3f}")
    return out


if __name__ == "__main__":
    main()
