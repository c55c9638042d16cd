"""``neuroreg sweep``: score a model zoo against neural data sets, resumable, here or on a Ray cluster."""

from __future__ import annotations

import argparse
from pathlib import Path

from neuroreg.cli._exit import EXIT_BUSY
from neuroreg._utils.io import check_output_target


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, required=True, help="sweep YAML (models, brain, scorers, options)")
    parser.add_argument("--store", type=Path, required=True, help="results folder (created; reused to resume)")
    parser.add_argument("--backend", choices=["local", "ray"], default="local",
                        help="local: this machine (default); ray: Ray tasks (local cluster or --address)")
    parser.add_argument("--address", default=None, help="Ray cluster to join, e.g. auto (with --backend ray)")
    parser.add_argument("--workers", type=int, default=1,
                        help="local: worker processes; ray without --address: CPUs of the local cluster")
    parser.add_argument("--status", action="store_true", help="print done/running/failed/to-do counts and exit")
    parser.add_argument("--retry-failed", action="store_true", help="run jobs that failed before again")


def run(args: argparse.Namespace) -> int:
    from neuroreg.sweep import SweepStore, expand_jobs, load_sweep_config, run_sweep  # local: loads torch

    check_output_target(args.store, kind="dir", name="--store")
    if args.address is not None and args.backend != "ray":
        raise ValueError(f"--address {args.address} joins a Ray cluster: add --backend ray (got --backend "
                         f"{args.backend})")
    if args.status:
        store = SweepStore(args.store)
        jobs = expand_jobs(load_sweep_config(args.config))
        counts = store.counts([j.key for j in jobs])
        print(f"{len(jobs)} jobs: " + ", ".join(f"{counts[s]} {s.replace('todo', 'to do')}"
                                                 for s in ("done", "running", "failed", "todo")))
        for key, error in store.failures().items():
            print(f"  failed {key}: {error}")
        return 0
    table = run_sweep(args.config, args.store, backend=args.backend, workers=args.workers, address=args.address,
                      retry_failed=args.retry_failed)
    store = SweepStore(args.store)
    counts = store.counts()
    print(f"{counts['done']} jobs done, {counts['failed']} failed; {len(table)} rows in {args.store / 'results.csv'}")
    if counts["failed"]:
        return 1
    keys = [j.key for j in expand_jobs(load_sweep_config(args.config))]
    return EXIT_BUSY if store.counts(keys)["running"] else 0
