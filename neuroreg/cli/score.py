"""``neuroreg score``: brain scores of one model on bundled or user neural data, over a layer sweep.

    neuroreg score --model cornet_s --data kriegeskorte92 algonauts2019_78
    neuroreg score --config configs/score.yaml
"""

from __future__ import annotations

import argparse
from pathlib import Path

from neuroreg._utils.io import check_output_target
from neuroreg.cli._model_args import add_model_arguments, build_model
from neuroreg.cli.evaluate import _layers


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--data", nargs="+", default=["kriegeskorte92", "algonauts2019_78"],
                        help="bundled neural sets, or voxel data nsd:ROOT / algonauts2023:ROOT (default: both bundled)")
    parser.add_argument("--layers", nargs="+", default=["all"],
                        help="'all' (every block/stage output), 'areas' (V1 V2 V4 IT) or module names")
    parser.add_argument("--max-layers", type=int, default=None, help="cap the sweep with even spacing")
    parser.add_argument("--image-size", type=int, default=None, help="input size (default: the model's)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: results/score/<model>)")


def run(args: argparse.Namespace) -> int:
    from neuroreg.scorecard.evaluation import evaluate, summarize_brain  # local: the whole scoring stack; keeps `--help` light

    out = check_output_target(args.out or Path("results") / "score" / args.model, kind="dir", name="--out")
    model = build_model(args)
    card = evaluate({args.model: model}, None, brain_sets=args.data, sections=["brain", "factortopy"],
                    layers=_layers(args.layers), max_layers=args.max_layers, image_size=args.image_size,
                    batch_size=args.batch_size, device=args.device, seed=args.seed)
    paths = card.save(out)
    print(f"{'dataset':<17} {'rdm set':<18} {'region':<6} {'metric':<12} {'score':>6} {'ceiling':>7}  layers")
    for r in summarize_brain(card.brain):
        ceiling = f"{r['ceiling_r']:.3f}" if r["ceiling_r"] is not None else "-"
        print(f"{str(r['dataset']):<17} {str(r['rdm_set']):<18} {str(r['region']):<6} {r['metric']:<12} "
              f"{r['score']:>6.3f} {ceiling:>7}  {r['layers']}")
    print(f"wrote {paths['html']}")
    return 0
