"""The Neural Harmonizer on the tiny configuration: training with the harmonization term against the same run
without it, over several seeds.

For each seed, ``configs/train_harmonizer_tiny.yaml`` runs through ``neuroreg train``'s LightningCLI core
twice: as written (harmonization weight 1.0, the release's ``lambda_harmonization``) and with
``--model.harmonization.init_args.weight 0`` (the same run without the term: same initialisation, data and
batch order; the saliency is then not computed). Each trained network, and the untrained one, is scored on
the held-out images of the configuration (256 images of another seed, all with their maps):

- task accuracy (top-1; chance 0.25);
- human alignment: per image, Spearman's rank correlation between the model's saliency map and the true
  importance map (the Gaussian bump on the class-defining shape), with the release's default explainer
  (``|d logit / d image|``, max over colour channels: ``neuroreg.scoring.absolute_saliency``) through
  ``neuroreg.scoring.clickme_scores``; the mean over images is the score (the ClickMe human ceiling that
  divides it into an ``alignment_score`` belongs to ClickMe's maps, not to these);
- conflict accuracy: the same held-out shapes with a distractor whose colour names another class
  (``distractor_agreement=0``): 1.0 for a decision read from the shape, 0.0 for one read from the colour.

Printed and written (``--out``, JSON): every run's numbers, and per condition the mean and standard deviation
(ddof 1) over seeds, the paired differences (with - without), and the verdict: alignment raised in every seed,
and held-out accuracy of the harmonized runs no lower than ``--margin`` (default 0.02) below the runs without.

Run (single-threaded torch: on a busy machine one thread per run is faster than two)::

    nice -n 10 python experiments/harmonizer_tiny.py --seeds 0 1 2 3 4 --out experiments/harmonizer_tiny.json
    nice -n 10 python experiments/harmonizer_tiny.py --set data.init_args.map_fraction 0.5 \
        --out experiments/harmonizer_tiny_half_maps.json     # maps on half the training images (token 0 else)
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

from neuroreg.data import SalientPatternsDataset
from neuroreg.data.preprocessing import preprocessing_of
from neuroreg.scoring import clickme_scores
from neuroreg.training.lightning_cli import build_cli, fit_cli

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "train_harmonizer_tiny.yaml"
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
         "--trainer.logger", "false", "--checkpoint.every_n_train_steps", "0", "--checkpoint.save_last", "false",
         "--checkpoint.save_top_k", "0"]


def evaluate(model: torch.nn.Module, cfg_data: dict, seed: int) -> dict:
    """Held-out accuracy, mean Spearman of saliency vs importance map, and conflict accuracy of ``model``."""
    n, k, size = int(cfg_data["n_val"]), int(cfg_data["num_classes"]), int(cfg_data["image_size"])
    held = SalientPatternsDataset(n, k, size, seed=2 * seed + 1)            # the data module's held-out set
    conflict = SalientPatternsDataset(n, k, size, seed=2 * seed + 1, distractor_agreement=0.0)
    prep = preprocessing_of(model)
    model.eval()
    out = {}
    with torch.no_grad():
        for name, ds in (("accuracy", held), ("conflict_accuracy", conflict)):
            out[name] = float((model(prep.normalize(ds.images)).argmax(1) == ds.labels).float().mean())
    metrics = clickme_scores(model, (held.images, held.heatmaps, held.labels), batch_size=64, progress=False)
    out["spearman"] = float(metrics.spearman.mean())
    out["spearman_sd_over_images"] = float(metrics.spearman.std(ddof=1))
    return out


def run(seed: int, weight: float | None, steps: int | None, overrides: list[str] | None = None) -> dict:
    """Train the tiny configuration with ``seed`` (``weight`` None: untrained) and evaluate it; ``overrides``:
    more ``--key value`` arguments of ``neuroreg train``."""
    with tempfile.TemporaryDirectory() as root:
        args = ["--config", str(CONFIG), "--seed_everything", str(seed), "--data.init_args.seed", str(seed),
                "--trainer.default_root_dir", root, *QUIET]
        if weight is not None:
            args += ["--model.harmonization.init_args.weight", str(weight)]
        if steps is not None:
            args += ["--trainer.max_steps", str(steps)]
        args += overrides or []
        cli = build_cli(args)
        start = time.perf_counter()
        if weight is not None:
            fit_cli(cli)
        seconds = time.perf_counter() - start
        result = evaluate(cli.model.backbone, cli.config["data"]["init_args"], seed)
    return {"seed": seed, "condition": "untrained" if weight is None else
            ("with" if weight > 0 else "without"), "weight": weight, "train_seconds": round(seconds, 1),
            "steps": int(cli.trainer.global_step), **result}


def _mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else math.nan)


def summarise(rows: list[dict], margin: float) -> dict:
    by = {c: {r["seed"]: r for r in rows if r["condition"] == c} for c in ("untrained", "without", "with")}
    seeds = sorted(set(by["with"]) & set(by["without"]))
    summary: dict = {"seeds": seeds, "margin": margin}
    for c in ("untrained", "without", "with"):
        summary[c] = {m: _mean_sd([by[c][s][m] for s in seeds if s in by[c]])
                      for m in ("accuracy", "spearman", "conflict_accuracy")}
    diffs = {m: [by["with"][s][m] - by["without"][s][m] for s in seeds]
             for m in ("accuracy", "spearman", "conflict_accuracy")}
    summary["difference"] = {m: _mean_sd(v) for m, v in diffs.items()}
    summary["alignment_raised_every_seed"] = all(d > 0 for d in diffs["spearman"])
    summary["accuracy_within_margin"] = summary["with"]["accuracy"][0] >= summary["without"]["accuracy"][0] - margin
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--weight", type=float, default=1.0, help="harmonization weight of the 'with' runs")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the config's)")
    parser.add_argument("--margin", type=float, default=0.02, help="accuracy margin of the verdict")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=None, help="JSON file for the rows and the summary")
    parser.add_argument("--set", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                        help="another neuroreg train option for every run, e.g. --set data.init_args.map_fraction 0.5")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    overrides = [a for key, value in args.set for a in (f"--{key}", value)]
    rows = []
    for seed in args.seeds:
        for weight in (None, 0.0, args.weight):
            row = run(seed, weight, args.steps, overrides)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    summary = summarise(rows, args.margin)
    print(f"{'condition':<10} {'held-out accuracy':>20} {'mean Spearman':>16} {'conflict accuracy':>20}")
    for c in ("untrained", "without", "with", "difference"):
        cells = [f"{summary[c][m][0]:.3f} +- {summary[c][m][1]:.3f}"
                 for m in ("accuracy", "spearman", "conflict_accuracy")]
        print(f"{c:<10} {cells[0]:>20} {cells[1]:>16} {cells[2]:>20}")
    print(f"alignment raised in every seed: {summary['alignment_raised_every_seed']}; accuracy within "
          f"{args.margin}: {summary['accuracy_within_margin']} (seeds {summary['seeds']})")
    if args.out is not None:
        payload = {"config": CONFIG.name, "weight": args.weight, "overrides": overrides, "threads": args.threads,
                   "rows": rows, "summary": summary}
        args.out.write_text(json.dumps(payload, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
