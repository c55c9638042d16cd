"""Sweeps over models, neural data sets and scorers: resumable, cached, on one machine or a Ray cluster.

    from neuroreg.sweep import run_sweep
    table = run_sweep("configs/sweep_tiny.yaml", store="results/sweep_tiny")            # here
    table = run_sweep(cfg, store="/shared/sweep", backend="ray", address="auto")      # on a cluster

Training sweeps (alignment weight, area, front end, seed) run through Ray Tune:
:func:`neuroreg.sweep.tune.run_tune`.
"""

from neuroreg.sweep.config import BRAIN_SCORERS, TASK_SCORERS, Job, expand_jobs, load_sweep_config
from neuroreg.sweep.runner import run_sweep, sweep_status
from neuroreg.sweep.store import SweepStore

__all__ = ["run_sweep", "sweep_status", "SweepStore", "Job", "expand_jobs", "load_sweep_config",
           "BRAIN_SCORERS", "TASK_SCORERS"]
