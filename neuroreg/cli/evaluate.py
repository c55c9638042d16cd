"""``neuroreg evaluate``: the scorecard (accuracy, attacks, corruptions, brain, FactorTopy) of one or more models.

    neuroreg evaluate --model cornet_z vone_cornet_s --brain kriegeskorte92
    neuroreg evaluate --model cornet_z vone_cornet_s --brain brainio:~/.brainio   # I2n, Brain-Score composite
    neuroreg evaluate --model cornet_s --checkpoint run.ckpt --task-data /data/val --corruptions imagenet-c
    neuroreg evaluate --config configs/evaluate.yaml
    neuroreg evaluate --run runs/w0 runs/w1 runs/w2      # training runs side by side: curves and final numbers
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

from neuroreg._utils.io import check_output_target
from neuroreg.cli._model_args import add_model_arguments, build_models
from neuroreg.data.preprocessing import preprocessing_of

SECTION_NAMES = ("accuracy", "attacks", "corruptions", "brain", "behaviour", "factortopy")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser, multiple=True, required=False)
    parser.add_argument("--run", nargs="*", type=Path, default=None,
                        help="training run folders (neuroreg train/finetune) whose scorecard/ is compared side by "
                             "side, with their score curves; combine with --model to add models scored now")
    parser.add_argument("--task-data", type=Path, default=None,
                        help="labelled images in ImageFolder layout (<root>/<class>/*.jpg); class order = sorted "
                             "folder names, which must match the model's output order")
    parser.add_argument("--sections", nargs="*", default=None,
                        help=f"sections to run among {' '.join(SECTION_NAMES)} (default: all whose inputs are given)")
    parser.add_argument("--image-size", type=int, default=None, help="input size (default: each model's own)")
    parser.add_argument("--max-images", type=int, default=None, help="evaluate on N task images (seeded pick)")
    parser.add_argument("--attacks", nargs="*", default=["pgd"],
                        help="attacks (fgsm pgd eotpgd apgd-ce apgd-dlr square autoattack); none: no attacks")
    parser.add_argument("--eps", nargs="*", type=float, default=None, help="budgets (default: the preset grid)")
    parser.add_argument("--norm", default="Linf", choices=["Linf", "L2"])
    parser.add_argument("--corruptions", nargs="*", default=None, help="'imagenet-c' or corruption names")
    parser.add_argument("--severities", nargs="*", type=int, default=[1, 2, 3, 4, 5])
    parser.add_argument("--brain", nargs="*", default=["kriegeskorte92"],
                        help="bundled sets (kriegeskorte92 algonauts2019_78), voxel data nsd:ROOT, "
                             "algonauts2023:ROOT, and/or brainio:DIR, a Brain-Score cache folder ($BRAINIO_HOME "
                             "layout): the behaviour section (V4/IT predictivity, I2n, Brain-Score's composite)")
    parser.add_argument("--fitting-stimuli", default=None,
                        help="behaviour section: identifier of the read-out's fitting stimulus set in the cache "
                             "(default objectome.public when present, else the images no trial shows)")
    parser.add_argument("--readout-layer", default="IT",
                        help="behaviour section: the read-out's layer (module or area; default IT, the penultimate)")
    parser.add_argument("--number-of-trials", type=int, default=2,
                        help="behaviour section: forward passes averaged for the read-out (Brain-Score: 2)")
    parser.add_argument("--brainscore-version", default="2026", choices=["2018", "2019", "2026"],
                        help="behaviour section: Brain-Score's predictivity normalisation (r/c, (r/c)^2, r^2/c)")
    parser.add_argument("--human-alignment", type=Path, default=None, metavar="DIR",
                        help="ClickMe maps (val-*.tfrecords, or the folder layout images/ heatmaps/ labels.csv): "
                             "the human-alignment section (Spearman, Dice, IoU, alignment score)")
    parser.add_argument("--layers", nargs="*", default=["all"],
                        help="'all' (every block/stage output), 'areas' (V1 V2 V4 IT), or module names")
    parser.add_argument("--max-layers", type=int, default=None, help="cap the sweep with even spacing")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default: results/evaluate/<model>[_vs_<model>...])")


def _task_dataset(root: Path, model, image_size: int | None, max_images: int | None, seed: int):
    from torchvision import datasets  # local: loads torchvision; keeps `neuroreg evaluate --help` light

    from neuroreg.brain import read_image  # local: loads numpy/h5py/PIL; keeps `--help` light

    if not root.is_dir():
        raise FileNotFoundError(f"--task-data folder does not exist: {root}")
    # read_image: a corrupt image stops with DataFormatError naming the file (one line, exit 4), not a PIL traceback
    ds = datasets.ImageFolder(str(root), transform=preprocessing_of(model, image_size).eval_transform(),
                              loader=read_image)
    n_outputs = int(getattr(model, "num_classes", 0) or 0)
    if n_outputs and len(ds.classes) != n_outputs:
        shown = ", ".join(ds.classes[:5]) + (", ..." if len(ds.classes) > 5 else "")
        raise ValueError(f"--task-data {root} has {len(ds.classes)} class folders ({shown}) but the model has "
                         f"{n_outputs} outputs (--num-classes {n_outputs}); class folder i (sorted by name) is "
                         f"scored as output i, so give a folder with {n_outputs} classes or --num-classes "
                         f"{len(ds.classes)} with a checkpoint of that many outputs")
    if max_images is not None and max_images < len(ds):
        idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))[:max_images]
        ds = torch.utils.data.Subset(ds, idx.tolist())
    return ds


def _layers(values):
    if not values or values == ["all"]:
        return "all"
    if values == ["areas"]:
        return "areas"
    return list(values)


def check_arguments(args: argparse.Namespace) -> None:
    """What the parser cannot check, before any model is built: attack budgets, read-out passes."""
    trials = getattr(args, "number_of_trials", 2)
    if trials is not None and trials < 1:
        raise ValueError(f"--number-of-trials: forward passes averaged must be >= 1; got {trials}")
    for eps in args.eps or []:
        if not math.isfinite(eps) or eps < 0:
            raise ValueError(f"--eps: budgets must be finite and >= 0; got {eps:g} (e.g. --eps 0.0157 for 4/255)")


def run(args: argparse.Namespace) -> int:
    from neuroreg.scorecard.evaluation import evaluate  # local: the whole scoring stack; keeps `--help` light
    from neuroreg.scorecard.card import Scorecard  # local: loads pandas; keeps `--help` light

    runs = list(getattr(args, "run", None) or [])
    if not args.model and not runs:
        print("neuroreg evaluate: error: give --model NAME [NAME ...] to score models, or --run DIR [DIR ...] "
              "to compare training runs", file=sys.stderr)
        return 2
    check_arguments(args)
    names = [Path(r).resolve().name for r in runs] + [a.replace("/", "_") for a in args.model or []]
    out = check_output_target(args.out or Path("results") / "evaluate" / "_vs_".join(names), kind="dir",
                              name="--out")
    cards = [_load_run(r) for r in runs]
    if not args.model:
        return _write(Scorecard.combine(cards), out, runs)
    models = build_models(args)
    attacks = [a for a in (args.attacks or []) if a.lower() != "none"]
    # each model's task images are resized/cropped with its own contract; all are checked before any scoring
    tasks = {name: _task_dataset(args.task_data, model, args.image_size, args.max_images, args.seed)
             if args.task_data else None for name, model in models.items()}
    for name, model in models.items():
        task = tasks[name]
        cards.append(evaluate({name: model}, task, brain_sets=args.brain, sections=args.sections,
                              attacks=attacks, eps=args.eps, norm=args.norm, corruptions=args.corruptions,
                              severities=args.severities, layers=_layers(args.layers), max_layers=args.max_layers,
                              image_size=args.image_size, device=args.device, batch_size=args.batch_size,
                              seed=args.seed, behaviour=_behaviour_options(args),
                              human_alignment=getattr(args, "human_alignment", None)))
    return _write(Scorecard.combine(cards), out, runs)


def _behaviour_options(args: argparse.Namespace) -> dict:
    return {"fitting": getattr(args, "fitting_stimuli", None), "readout_layer": getattr(args, "readout_layer", None),
            "number_of_trials": getattr(args, "number_of_trials", None),
            "brainscore_version": getattr(args, "brainscore_version", None)}


def _load_run(folder: Path):
    from neuroreg.scorecard.card import Scorecard  # local: loads pandas; keeps `--help` light
    if not Path(folder).is_dir():
        raise FileNotFoundError(f"--run folder does not exist: {folder}")
    card = Scorecard.load(folder)
    card.figures = [f for f in card.figures if f[2] != "curves"]   # redrawn for all runs together
    return card


def _write(card, out: Path, runs) -> int:
    from neuroreg.training.callbacks.curves import read_curves  # local: loads pandas (the scorecard)
    curves = [row for r in runs for row in read_curves(r)]
    if curves:
        from neuroreg.training.callbacks.curves_figure import write_curves_figure  # local: loads pyplot
        card.figures.append((str(write_curves_figure(curves, out)), "Scores along training, one line per run.",
                             "curves"))
    paths = card.save(out)
    print(card.summary().round(3).to_string(index=False))
    print(f"wrote {paths['html']} and {paths['summary']}")
    return 0
