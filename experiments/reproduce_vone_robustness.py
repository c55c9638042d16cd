"""Does a VOne front end (Dapello et al. 2020), or IT alignment (Dapello et al. 2023), buy adversarial robustness?

A small-scale check of the direction of the effect, not the papers' ImageNet numbers. Matched models
are trained on the same offline task (procedural oriented gratings, 4 classes, 32 px), the same steps
and the same seeds, differing only in what is studied:

- ``cornet_s`` vs ``vone_cornet_s`` (the same CORnet-S areas V2-IT behind a learned V1 or the fixed,
  stochastic VOneBlock); in ``--quick`` mode the lighter CORnet-Z and a VOneNet around it;
- the same plain model with and without the CKA IT-alignment term toward the bundled monkey IT RDM.

Each trained model is attacked with L-inf PGD at several eps (EOT over the VOneBlock's noise for the
stochastic model, with the attack suite's sanity checks) and run through the corruption suite. All models
see raw [0, 1] pixels (no mean/std normalisation), so a pair differs only in what is studied. Reported:
clean and robust accuracy, mean and spread over seeds.

    python experiments/reproduce_vone_robustness.py --quick     # 1 seed, 60 steps: minutes on 2 cores
    python experiments/reproduce_vone_robustness.py             # 3 seeds, 150 steps

At full scale the same comparison is ``neuroreg train --config configs/train_vone_cornet_s_imagenet.yaml``
(and its plain twin) on ImageNet on a GPU, then ``neuroreg evaluate --model ... --checkpoint ...``.
Writes ``results/reproduce/vone_robustness/``: ``runs.csv`` (every model and seed),
``summary.{csv,md}`` and ``accuracy_vs_eps.png``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

OUT = Path("results/reproduce/vone_robustness")
EPS = (0.0, 1 / 255, 2 / 255, 4 / 255, 8 / 255)


def train(model_name: str, *, align: bool, seed: int, steps: int, root: Path):
    import lightning as L
    import torch

    from neuroreg.alignment import CKALoss
    from neuroreg.training import BrainRegularizedModule, GratingsDataModule, build_model

    L.seed_everything(seed, workers=True)
    if model_name.startswith("vone+"):  # a VOneBlock in front of a registered backbone (VOneNet)
        from neuroreg.models import VOneNet
        backbone = VOneNet(build_model(model_name[len("vone+"):], num_classes=4), seed=seed)
    else:
        backbone = build_model(model_name, num_classes=4)
    alignment = [CKALoss(area="IT", target="kriegeskorte92:monkey_IT", debiased=True, weight=1.0)] if align else []
    module = BrainRegularizedModule(backbone=backbone, alignment=alignment, optimizer="sgd", lr=0.01,
                                    scheduler="none")
    data = GratingsDataModule(num_classes=4, n_train=512, n_val=128, batch_size=32, image_size=32,
                              neural="kriegeskorte92" if align else None, neural_batch_size=32, normalize=False,
                              seed=seed)
    trainer = L.Trainer(max_steps=steps, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, deterministic=True,
                        default_root_dir=str(root), num_sanity_val_steps=0, limit_val_batches=0)
    trainer.fit(module, datamodule=data)
    return backbone.eval(), torch


def evaluate_model(model, name: str, seed: int, *, quick: bool) -> pd.DataFrame:
    from neuroreg.robustness import attack_suite, corruption_suite
    from neuroreg.training.data import GratingsDataset

    prep = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}  # every model was trained on raw [0, 1] pixels
    val = GratingsDataset(64 if quick else 256, 4, 32, seed=1000 + seed)
    eps = (0.0, 2 / 255, 8 / 255) if quick else EPS
    attacks = attack_suite(model, val, attacks=["pgd"], eps=list(eps), norm="Linf", mean=prep["mean"],
                           std=prep["std"], pgd_steps=5 if quick else 10, eot_iter=2 if quick else 10,
                           square_queries=100 if quick else 1000, batch_size=64, seed=seed, model_name=name,
                           progress=False).to_pandas()
    corr = corruption_suite(model, val, corruptions=["gaussian_noise", "defocus_blur", "contrast", "jpeg_compression"]
                            [: 2 if quick else 4], severities=(1, 5) if quick else (1, 3, 5), mean=prep["mean"],
                            std=prep["std"], batch_size=64, seed=seed, model_name=name, progress=False).to_pandas()
    rows = attacks[(attacks["metric"] == "accuracy")][["eps", "score"]].copy()
    rows["what"] = [f"pgd eps {e * 255:g}/255" if e else "clean" for e in rows["eps"]]
    cor = corr[(corr["metric"] == "accuracy") & corr["corruption"].notna() & (corr["corruption"] != "none")]
    rows = pd.concat([rows, pd.DataFrame([{"what": "corruptions (mean)", "score": float(cor["score"].mean())}])])
    rows["model"], rows["seed"] = name, seed
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CORnet-Z pair, 1 seed, 60 training steps")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    seeds = 1 if args.quick else args.seeds
    steps = 60 if args.quick else args.steps
    from matplotlib.figure import Figure

    from neuroreg.report import markdown_table

    t0 = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    base = "cornet_z" if args.quick else "cornet_s"
    vone = "vone+cornet_z" if args.quick else "vone_cornet_s"
    variants = [(base, base, False), (f"VOne-{base}" if args.quick else vone, vone, False),
                (f"{base} + CKA IT alignment", base, True)]
    frames = []
    for seed in range(seeds):
        for label, name, align in variants:
            model, _ = train(name, align=align, seed=seed, steps=steps, root=args.out / "runs")
            frames.append(evaluate_model(model, label, seed, quick=args.quick))
            print(f"seed {seed}: {label} done ({time.perf_counter() - t0:.0f} s)")
    runs = pd.concat(frames, ignore_index=True)
    runs.to_csv(args.out / "runs.csv", index=False)
    summary = (runs.groupby(["model", "what"], sort=False)["score"]
               .agg(mean="mean", sd=lambda s: float(np.std(s, ddof=1)) if len(s) > 1 else float("nan"), n="size")
               .reset_index())
    summary.to_csv(args.out / "summary.csv", index=False)
    wide = summary.pivot(index="what", columns="model", values="mean").reindex(
        list(dict.fromkeys(summary["what"]))).reset_index()
    (args.out / "summary.md").write_text(markdown_table(wide) + "\n")
    fig = Figure(figsize=(5.5, 4), layout="constrained")
    ax = fig.subplots()
    for label, grp in runs[runs["eps"].notna()].groupby("model", sort=False):
        m = grp.groupby("eps")["score"].agg(["mean", "std"]).reset_index()
        ax.errorbar(m["eps"] * 255, m["mean"], yerr=m["std"].fillna(0), marker="o", capsize=3, label=label)
    ax.axhline(0.25, color="k", lw=0.5, ls="--", label="chance")
    ax.set(xlabel="L-inf eps (x/255)", ylabel="accuracy", title=f"PGD on gratings ({seeds} seed(s), {steps} steps)")
    ax.legend(fontsize=8)
    fig.savefig(args.out / "accuracy_vs_eps.png", dpi=120)
    print(wide.to_string(index=False))
    print(f"wrote {args.out}/ (runs.csv, summary.*, accuracy_vs_eps.png) in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
