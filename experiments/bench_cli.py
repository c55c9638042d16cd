"""Start-up time of the ``neuroreg`` command: ``--version`` and ``--help`` against the Python floor and torch.

Each command runs in a fresh interpreter; the figures are medians over
``--repeats`` runs, interleaved (A, B, C, ...) so that load on a shared machine
hits every side alike. Peers measured in the same run:

- ``python -c pass``: the interpreter's own start-up (the floor).
- ``python -c "import torch"`` and ``python -c "import lightning"``: what a
  command line that imports its subcommands eagerly pays before printing
  anything.

Goal: ``neuroreg --version`` under 1.5 s on an idle machine (it imports neither
torch nor Lightning).

    python experiments/bench_cli.py
    python experiments/bench_cli.py --repeats 9
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _time(cmd: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr[-500:]}")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    py = sys.executable
    sides = {
        "python -c pass": [py, "-c", "pass"],
        "neuroreg --version": [py, "-m", "neuroreg.cli.main", "--version"],
        "neuroreg --help": [py, "-m", "neuroreg.cli.main", "--help"],
        "neuroreg score --help": [py, "-m", "neuroreg.cli.main", "score", "--help"],
        "python -c 'import torch'": [py, "-c", "import torch"],
        "python -c 'import lightning'": [py, "-c", "import lightning"],
    }
    times: dict[str, list[float]] = {k: [] for k in sides}
    for name, cmd in sides.items():  # warm the file cache once
        _time(cmd, env)
    for _ in range(args.repeats):
        for name, cmd in sides.items():
            times[name].append(_time(cmd, env))
    med = {k: statistics.median(v) for k, v in times.items()}
    floor, torch_t = med["python -c pass"], med["python -c 'import torch'"]
    print(f"{'command':<30} {'median s':>9} {'x python':>9} {'x import torch':>15}   (median of {args.repeats})")
    for name, t in med.items():
        print(f"{name:<30} {t:>9.3f} {t / floor:>9.2f} {t / torch_t:>15.2f}")
    goal = med["neuroreg --version"] < 1.5
    print(f"neuroreg --version: {med['neuroreg --version']:.3f} s (goal < 1.5 s on an idle machine: "
          f"{'met' if goal else 'not met'}); os.getloadavg() = {tuple(round(x, 1) for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
