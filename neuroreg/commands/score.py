"""``neuroreg score``: brain scores of one model on bundled or user neural data."""

from __future__ import annotations

import argparse
from pathlib import Path

from neuroreg.commands._model_args import add_model_arguments, build_model


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--data", nargs="+", default=["kriegeskorte92", "algonauts2019_78"],
                        help="bundled neural sets to score against (default: both)")
    parser.add_argument("--layers", nargs="+", default=None,
                        help="module names or areas V1 V2 V4 IT (default: the model's area map or top-level blocks)")
    parser.add_argument("--image-size", type=int, default=None, help="input size (default: the model's)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: results/score/<model>)")


def run(args: argparse.Namespace) -> int:
    from neuroreg.evaluate import Scorecard, brain_scores, summarize_brain

    model = build_model(args)
    table = brain_scores(model, args.data, layers=args.layers, image_size=args.image_size,
                         batch_size=args.batch_size, device=args.device, model_name=args.model, seed=args.seed)
    card = Scorecard(model_name=args.model, brain=table)
    out = args.out or Path("results") / "score" / args.model
    paths = card.save(out)
    print(f"{'dataset':<17} {'rdm set':<18} {'region':<6} {'metric':<6} {'score':>6} {'ceiling':>7}  layers")
    for r in summarize_brain(table):
        ceiling = f"{r['ceiling_r']:.3f}" if r["ceiling_r"] is not None else "-"
        print(f"{r['dataset']:<17} {r['rdm_set']:<18} {str(r['region']):<6} {r['metric']:<6} "
              f"{r['score']:>6.3f} {ceiling:>7}  {r['layers']}")
    print(f"wrote {paths['html']}")
    return 0
