"""Does a VOne front end (Dapello et al. 2020), or IT alignment (Dapello et al. 2023), buy adversarial robustness?

A small-scale check of the direction of the effect, not the papers' ImageNet numbers. Three models are
trained on the same offline task (procedural oriented gratings, 4 classes, 32 px), with the same
optimizer, steps, data and seeds, differing only in what is studied:

- CORnet-Z, and a VOneNet around the same CORnet-Z (its learned V1 replaced by the fixed, stochastic
  VOneBlock with a 1x1 bottleneck); ``--full``: CORnet-S and VOne-CORnet-S;
- the same plain model with the CKA IT-alignment term toward the bundled monkey IT RDM (92 images).

The VOneBlock is sized for the images: ``image_size`` = the real 32 px, ``visual_degrees=2`` (16 px per
degree), so the gratings' 2-6 cycles per image are 1-3 cycles/degree, inside the VOneBlock's
0.5-8 cycles/degree range (De Valois et al. 1982), and 32 + 32 channels. Every model sees its own
preprocessing contract (ImageNet mean/std for CORnet, 0.5/0.5 for VOneNets); attack budgets are in
[0, 1] pixel units for all. AdamW (lr 1e-3, cosine schedule after a 10% warmup) trains every model. The
earlier version of this check used SGD at lr 0.01 with the default 256 + 256-channel VOneBlock: the VOne
model's loss was NaN within 20 steps and it stayed at chance. The VOneBlock's outputs are far larger than
a learned V1's (on these gratings at initialisation, standard deviation 1.7 against 0.19; logits 2.1
against 0.19), and an adaptive optimizer trains both at one learning rate.

Each trained model is attacked with L-inf PGD at several eps (for the stochastic VOne model also
EOT-PGD, which averages gradients over the front end's noise, 4 draws in the default mode and 10 in
--full; its robust accuracy is the lower of the two) with the attack suite's gradient-masking sanity
checks, and run through four corruptions at three severities. Reported: clean and robust accuracy, mean and standard deviation over seeds.

    python experiments/reproduce_vone_robustness.py --quick   # 1 seed, 100 steps, small attacks
    python experiments/reproduce_vone_robustness.py           # 3 seeds, 200 steps: 11 CPU minutes
    python experiments/reproduce_vone_robustness.py --full    # CORnet-S pair, 64 px, 3 seeds, 1000 steps

The default mode took 5 min 17 s of wall clock and 587 s of CPU time (user + sys, 2 worker processes of
one thread) on an idle 2-core CPU.
At full scale the same comparison is ``neuroreg train --config configs/train_vone_cornet_s_imagenet.yaml``
(and its plain twin) on ImageNet on a GPU, then ``neuroreg evaluate --model ... --checkpoint ...``.
Writes ``results/reproduce/vone_robustness/``: ``runs.csv`` (every model, seed and measure),
``sanity.csv`` (the attack suite's checks), ``summary.{csv,md}`` and ``accuracy_vs_eps.png``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from torch import nn

from neuroreg._utils.io import atomic_path, atomic_write_text
from neuroreg.alignment import CKALoss
from neuroreg.results.figures import save_figure
from neuroreg.models import VOneNet
from neuroreg.results.report import markdown_table
from neuroreg.robustness import attack_suite, corruption_suite
from neuroreg.training import BrainRegularizedModule
from neuroreg.data import GratingsDataModule
from neuroreg.finetune import build_model
from neuroreg.data.folders import GratingsDataset

OUT = Path("results/reproduce/vone_robustness")
CORRUPTIONS = ("gaussian_noise", "defocus_blur", "contrast", "jpeg_compression")
NUM_CLASSES = 4


@dataclass(frozen=True)
class Mode:
    """Everything that differs between --quick, the default and --full."""

    backbone: str
    image_size: int
    steps: int
    seeds: int
    vone: dict
    n_train: int
    n_test: int
    eps: tuple[float, ...]
    pgd_steps: int
    eot_iter: int
    n_draws: int
    square_queries: int
    severities: tuple[int, ...]


_VONE_32 = dict(image_size=32, visual_degrees=2, simple_channels=32, complex_channels=32)
MODES = {
    "quick": Mode("cornet_z", 32, 100, 1, _VONE_32, 512, 64, (8 / 255, 32 / 255), 5, 4, 2, 50, (1, 5)),
    "default": Mode("cornet_z", 32, 200, 3, _VONE_32, 1024, 128, (4 / 255, 8 / 255, 16 / 255, 32 / 255),
                    10, 4, 4, 100, (1, 3, 5)),
    "full": Mode("cornet_s", 64, 1000, 3, dict(image_size=64, visual_degrees=4, simple_channels=128,
                                                 complex_channels=128),
                 4096, 512, (2 / 255, 4 / 255, 8 / 255, 16 / 255, 32 / 255), 20, 10, 8, 1000, (1, 2, 3, 4, 5)),
}


def variants(mode: Mode) -> list[tuple[str, str, bool]]:
    """(label, kind, align): kind is "plain" or "vone"."""
    plain = {"cornet_z": "CORnet-Z", "cornet_s": "CORnet-S"}[mode.backbone]
    return [(plain, "plain", False), (f"VOne-{plain}", "vone", False), (f"{plain} + CKA IT alignment", "plain", True)]


def build(mode: Mode, kind: str, seed: int) -> nn.Module:
    backbone = build_model(mode.backbone, num_classes=NUM_CLASSES)
    if kind == "plain":
        return backbone
    return VOneNet(backbone, seed=seed, **mode.vone)  # the Gabor bank is drawn per seed as well


def train(mode: Mode, kind: str, align: bool, seed: int, root: Path) -> nn.Module:
    L.seed_everything(seed, workers=True, verbose=False)
    backbone = build(mode, kind, seed)
    alignment = [CKALoss(area="IT", target="kriegeskorte92:monkey_IT", debiased=True, weight=1.0)] if align else []
    module = BrainRegularizedModule(backbone=backbone, alignment=alignment, optimizer="adamw", lr=1e-3,
                                    weight_decay=1e-4, scheduler="cosine", warmup_steps=mode.steps // 10)
    data = GratingsDataModule(num_classes=NUM_CLASSES, n_train=mode.n_train, n_val=64, batch_size=32,
                              image_size=mode.image_size, neural="kriegeskorte92" if align else None,
                              neural_batch_size=32, seed=seed).use_model(backbone)
    trainer = L.Trainer(max_steps=mode.steps, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, deterministic=True,
                        default_root_dir=str(root), num_sanity_val_steps=0, limit_val_batches=0)
    trainer.fit(module, datamodule=data)
    return backbone.eval()


def evaluate(model: nn.Module, label: str, seed: int, mode: Mode) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rows (model, seed, measure, eps, attack, score) and the sanity verdicts of the attack suite."""
    test = GratingsDataset(mode.n_test, NUM_CLASSES, mode.image_size, seed=10_000 + seed)  # unseen by training
    attacks = attack_suite(model, test, attacks=["pgd"], eps=list(mode.eps), norm="Linf",
                           pgd_steps=mode.pgd_steps, eot_iter=mode.eot_iter, n_draws=mode.n_draws,
                           square_queries=mode.square_queries, batch_size=128, seed=seed, model_name=label,
                           progress=False).to_pandas()
    acc = attacks[attacks["metric"] == "accuracy"]
    rows = [dict(measure="clean", eps=0.0, attack="none", score=float(acc.loc[acc["role"] == "clean", "score"].iloc[0]))]
    main = acc[(acc["role"] == "main") & (acc["eps"] > 0)]
    for eps, grp in main.groupby("eps"):
        for _, r in grp.iterrows():
            rows.append(dict(measure=f"{r['attack']} eps {eps * 255:g}/255", eps=eps, attack=r["attack"],
                             score=float(r["score"])))
        # the strongest white-box attack run at this budget (EOT-PGD or PGD for the stochastic model)
        rows.append(dict(measure=f"PGD eps {eps * 255:g}/255", eps=eps, attack="strongest",
                         score=float(grp["score"].min())))
    corr = corruption_suite(model, test, corruptions=list(CORRUPTIONS), severities=mode.severities, batch_size=128,
                            seed=seed, n_draws=mode.n_draws, model_name=label, progress=False).to_pandas()
    per = corr[corr["metric"] == "corruption_accuracy"]
    for _, r in per.iterrows():
        rows.append(dict(measure=f"{r['corruption']} (mean over severities)", attack="corruption",
                         score=float(r["score"])))
    mean = corr.loc[corr["metric"] == "mean_corruption_accuracy", "score"]
    rows.append(dict(measure="corruptions (mean)", attack="corruption", score=float(mean.iloc[0])))
    out = pd.DataFrame(rows)
    out.insert(0, "seed", seed)
    out.insert(0, "model", label)
    sanity = attacks[attacks["metric"].str.startswith("sanity:")][["metric", "passed", "detail"]].copy()
    sanity.insert(0, "seed", seed)
    sanity.insert(0, "model", label)
    return out, sanity


def run_one(mode: Mode, label: str, kind: str, align: bool, seed: int, root: Path,
            threads: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train one model of one seed and evaluate it (also the unit of work of a worker process)."""
    torch.set_num_threads(threads)
    model = train(mode, kind, align, seed, root)
    return evaluate(model, label, seed, mode)


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    keep = runs[runs["attack"].isin(["none", "strongest", "corruption"])]
    return (keep.groupby(["model", "measure"], sort=False)["score"]
            .agg(mean="mean", sd=lambda s: float(np.std(s, ddof=1)) if len(s) > 1 else float("nan"), n="size")
            .reset_index())


def summary_markdown(summary: pd.DataFrame) -> str:
    cell = summary.assign(cell=[f"{m:.2f}" if np.isnan(s) else f"{m:.2f} ± {s:.2f}"
                                for m, s in zip(summary["mean"], summary["sd"])])
    wide = cell.pivot(index="measure", columns="model", values="cell")
    wide = wide.reindex(index=list(dict.fromkeys(summary["measure"])),
                        columns=list(dict.fromkeys(summary["model"]))).reset_index()
    return markdown_table(wide) + "\n"


def plot(runs: pd.DataFrame, mode: Mode, path: Path, *, mode_name: str = "default") -> None:
    fig = Figure(figsize=(5.5, 4), layout="constrained")
    ax = fig.subplots()
    curve = runs[runs["attack"].isin(["none", "strongest"])]
    for label, grp in curve.groupby("model", sort=False):
        m = grp.groupby("eps")["score"].agg(["mean", "std"]).reset_index()
        ax.errorbar(m["eps"] * 255, m["mean"], yerr=m["std"].fillna(0), marker="o", capsize=3, label=label)
    ax.axhline(1 / NUM_CLASSES, color="k", lw=0.5, ls="--", label="chance")
    ax.set(xlabel="L-inf eps (x/255)", ylabel="accuracy (mean ± sd over seeds)", ylim=(0, 1.02),
           title=f"PGD on {mode.image_size} px gratings ({mode.seeds} seed(s), {mode.steps} steps)")
    ax.legend(fontsize=8)
    if mode_name == "quick":
        fig.suptitle("QUICK smoke run: not the result", color="tab:red")
    save_figure(fig, path)


def write_csv(df: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


def _cpu_seconds() -> float:
    """User + system CPU time of this process and its finished worker processes."""
    return sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                  resource.getrusage(resource.RUSAGE_CHILDREN)))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_true", help="1 seed, 100 steps, small attacks (the slow test)")
    group.add_argument("--full", action="store_true", help="CORnet-S pair at 64 px, 1000 steps (longer; a GPU helps)")
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds (default: the mode's)")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the mode's)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: these models are small, and on a loaded 2-core machine "
                             "2 threads cost 12 times the CPU time of 1 in spin-waiting)")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes, one model each (default 2)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    for name in ("threads", "jobs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1; got {getattr(args, name)}")
    torch.set_num_threads(args.threads)
    mode_name = "quick" if args.quick else "full" if args.full else "default"
    mode = MODES[mode_name]
    for name in ("seeds", "steps"):
        value = getattr(args, name)
        if value is not None:
            if value < 1:
                parser.error(f"--{name} must be >= 1; got {value}")
            mode = replace(mode, **{name: value})

    t0, cpu0 = time.perf_counter(), _cpu_seconds()
    args.out.mkdir(parents=True, exist_ok=True)
    tasks = [(label, kind, align, seed) for seed in range(mode.seeds) for label, kind, align in variants(mode)]
    results: list[tuple[pd.DataFrame, pd.DataFrame]] = []

    def done(rows: pd.DataFrame, label: str, seed: int) -> None:
        clean = rows.loc[rows["measure"] == "clean", "score"].iloc[0]
        print(f"seed {seed}: {label}: clean accuracy {clean:.2f} ({time.perf_counter() - t0:.0f} s)", flush=True)

    if args.jobs == 1:
        for label, kind, align, seed in tasks:
            results.append(run_one(mode, label, kind, align, seed, args.out / "runs", args.threads))
            done(results[-1][0], label, seed)
    else:  # one model per worker process; every task is seeded on its own, so the results do not depend on jobs
        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("fork")) as pool:
            futures = [pool.submit(run_one, mode, label, kind, align, seed, args.out / "runs", args.threads)
                       for label, kind, align, seed in tasks]
            for future, (label, _, _, seed) in zip(futures, tasks):
                results.append(future.result())
                done(results[-1][0], label, seed)
    frames, checks = [r[0] for r in results], [r[1] for r in results]
    runs = pd.concat(frames, ignore_index=True)
    sanity = pd.concat(checks, ignore_index=True)
    summary = summarise(runs)
    banner = (f"{'QUICK smoke run' if mode_name == 'quick' else mode_name + ' mode'}: {mode.backbone}, "
              f"{mode.image_size} px, {mode.seeds} seed(s), {mode.steps} steps, {mode.n_test} test images"
              + (": not the result" if mode_name == "quick" else ""))
    write_csv(runs.assign(mode=mode_name), args.out / "runs.csv")
    write_csv(sanity.assign(mode=mode_name), args.out / "sanity.csv")
    write_csv(summary.assign(mode=mode_name), args.out / "summary.csv")
    atomic_write_text(args.out / "summary.md", f"{banner}\n\n" + summary_markdown(summary))
    plot(runs, mode, args.out / "accuracy_vs_eps.png", mode_name=mode_name)
    cpu = _cpu_seconds() - cpu0
    print(banner)
    print(summary_markdown(summary))
    failed = sanity[~sanity["passed"].astype(bool)]
    print(f"sanity checks: {len(sanity) - len(failed)} of {len(sanity)} passed"
          + "".join(f"\n  failed: {r.model} seed {r.seed} {r.metric}: {r.detail}" for r in failed.itertuples()))
    print(f"wrote {args.out}/ (runs.csv, sanity.csv, summary.csv, summary.md, accuracy_vs_eps.png) "
          f"in {time.perf_counter() - t0:.0f} s wall, {cpu:.0f} s CPU")


if __name__ == "__main__":
    main()
