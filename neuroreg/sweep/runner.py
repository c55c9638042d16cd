"""``run_sweep``: expand a configuration into jobs, run the missing ones, return the merged table."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Mapping

from tqdm.auto import tqdm

from neuroreg._utils.io import atomic_write_text, check_output_target
from neuroreg.results.table import ScoreTable
from neuroreg.sweep.backends import BACKENDS, run_local, run_ray
from neuroreg.sweep.config import expand_jobs, load_sweep_config
from neuroreg.sweep.store import SweepStore
from neuroreg.sweep.validate import check_sweep

__all__ = ["run_sweep", "sweep_status"]


def run_sweep(config: str | Path | Mapping[str, Any], store: str | Path, *, backend: str = "local",
              workers: int = 1, address: str | None = None, retry_failed: bool = False,
              progress: bool | None = None) -> ScoreTable:
    """Run every job of ``config`` not yet done in ``store``; return the rows of all its done jobs.

    backend: ``"local"`` (here, or ``workers`` processes) or ``"ray"`` (``address="auto"`` joins
    a running cluster; without an address a local Ray cluster is started). ``address`` without
    ``backend="ray"`` is refused.
    retry_failed: also run jobs that failed before (by default they are reported and skipped).

    The whole configuration is checked before the first job (:func:`~neuroreg.sweep.validate.check_sweep`:
    models and their keyword arguments, layers, image size, data set names, option keys, the
    device), and ``store`` must be a folder that can be written. Jobs that were running when an
    earlier sweep was killed are run again; jobs another live sweep is running (their lock names
    a live process) are left to it and reported. A failing job is recorded with its error and
    does not stop the others; an output error (a full disk) stops the sweep with
    :class:`~neuroreg.errors.OutputError`.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}; got {backend!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer; got {workers!r}")
    if address is not None and backend != "ray":
        raise ValueError(f"address={address!r} joins a Ray cluster and needs backend='ray' (--backend ray); "
                         f"got backend={backend!r}")
    check_output_target(store, kind="dir", name="store")
    cfg = load_sweep_config(config)
    check_sweep(cfg, device_here=not (backend == "ray" and address is not None))
    jobs = expand_jobs(cfg)
    st = SweepStore(store)
    st.root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(st.root / "sweep.json", json.dumps(cfg, indent=1, default=str))
    for job in jobs:
        st.register(job)
    runnable = ("todo", "failed") if retry_failed else ("todo",)
    states = {job.key: st.status(job.key)["state"] for job in jobs}
    todo = [j for j in jobs if states[j.key] in runnable]
    skipped = sum(1 for j in jobs if states[j.key] == "failed" and not retry_failed)
    done_before = sum(1 for s in states.values() if s == "done")
    busy = [j.key for j in jobs if states[j.key] == "running"]
    print(f"sweep: {len(jobs)} jobs; {done_before} done before, {len(todo)} to run"
          + (f", {len(busy)} running in another sweep" if busy else "")
          + (f", {skipped} failed before (--retry-failed runs them)" if skipped else ""), file=sys.stderr)
    bar = tqdm(total=len(todo), desc="sweep", unit="job", disable=None if progress is None else not progress)
    failed: list[str] = []

    def report(key: str, state: str, seconds: float) -> None:
        if state == "failed":
            failed.append(key)
        elif state == "busy":
            busy.append(key)
        bar.set_postfix(failed=len(failed))
        bar.update(1)

    try:
        if todo:
            if backend == "local":
                run_local(todo, str(st.root), report, workers=int(workers), runnable=runnable)
            else:
                run_ray(todo, str(st.root), report, address=address, workers=int(workers) if workers > 1 else None,
                        runnable=runnable)
    finally:
        bar.close()
    for key in failed:
        error = st.status(key).get("error") or "see the log"
        print(f"sweep: job {key} failed: {error} (log: {st.job_dir(key) / 'log.txt'})", file=sys.stderr)
    if busy:
        holder = st.job_lock(busy[0]).holder() or st.status(busy[0])
        who = f"process {holder.get('pid')} on host {holder.get('host')}" if holder else "another sweep"
        print(f"sweep: {len(busy)} jobs are being run by another sweep ({who} holds {busy[0]}); they were left "
              f"to it: run this sweep again when it has finished to collect their rows", file=sys.stderr)
    table = st.table([j.key for j in jobs])
    if len(table):
        table.to_csv(st.root / "results.csv")
        try:  # the side-by-side report of every model swept; the rows above are the result either way
            st.scorecard([j.key for j in jobs]).save(st.root / "report", tensorboard=False)
        except Exception as exc:  # noqa: BLE001
            print(f"sweep: the side-by-side report could not be written: {type(exc).__name__}: {exc}",
                  file=sys.stderr)
    return table


def sweep_status(store: str | Path) -> dict[str, int]:
    """Jobs per state in a store: ``todo``, ``running``, ``done``, ``failed``."""
    return SweepStore(store).counts()
