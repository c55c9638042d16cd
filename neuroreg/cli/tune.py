"""``neuroreg tune``: grid or random search over ``neuroreg train`` options with Ray Tune."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, required=True, help="tune YAML (train_config, grid/random, ...)")
    parser.add_argument("--store", type=Path, required=True, help="folder for the trials' run folders and results")
    parser.add_argument("--address", default=None, help="Ray cluster to join, e.g. auto (default: a local one)")
    parser.add_argument("--cpus", type=int, default=None, help="CPUs of the local Ray cluster (default: all)")


def run(args: argparse.Namespace) -> int:
    from neuroreg.sweep.tune import run_tune  # local: loads torch; keeps `neuroreg tune --help` light

    table = run_tune(args.config, args.store, address=args.address, cpus=args.cpus)
    trials = {r.get("trial") for r in table}
    print(f"{len(trials)} trials; {len(table)} rows in {args.store / 'results.csv'}")
    return 0
