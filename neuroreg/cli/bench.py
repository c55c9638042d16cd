"""``neuroreg bench NAME``: run ``experiments/bench_NAME.py`` from a source checkout."""

from __future__ import annotations

import argparse
import runpy
import sys
from pathlib import Path

__all__ = ["experiments_dir", "available_benchmarks", "add_arguments", "run"]


def experiments_dir() -> Path | None:
    """The ``experiments/`` folder of the source checkout neuroreg runs from, if any."""
    candidate = Path(__file__).resolve().parents[1] / "experiments"
    return candidate if candidate.is_dir() else None


def available_benchmarks() -> list[str]:
    folder = experiments_dir()
    if folder is None:
        return []
    return sorted(p.stem[len("bench_"):] for p in folder.glob("bench_*.py"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?", help="benchmark name (e.g. 'scoring' runs experiments/bench_scoring.py); "
                                               "omit to list them")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments passed to the benchmark script")


def run(args: argparse.Namespace) -> int:
    names = available_benchmarks()
    folder = experiments_dir()
    if folder is None:
        print("neuroreg bench: the experiments/ folder is not available (benchmarks run from a source "
              "checkout installed with `pip install -e .`).", file=sys.stderr)
        return 2
    if not args.name:
        print("available benchmarks: " + ", ".join(names))
        return 0
    if args.name not in names:
        print(f"neuroreg bench: unknown benchmark {args.name!r}; available: {', '.join(names)}", file=sys.stderr)
        return 2
    script = folder / f"bench_{args.name}.py"
    saved = sys.argv
    sys.argv = [str(script), *args.args]
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as exc:
        return int(exc.code or 0)
    finally:
        sys.argv = saved
    return 0
