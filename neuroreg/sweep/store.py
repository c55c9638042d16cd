"""The results store of a sweep: one folder, one sub-folder per job, every file written atomically.

Layout::

    STORE/
      sweep.json                   the checked configuration of the last run
      jobs/<key>/spec.json         the job's full specification
      jobs/<key>/status.json       state (todo | running | done | failed), attempts, completions,
                                   error, seconds, host, pid, times
      jobs/<key>/result.json       the job's score rows (written before the state turns done)
      jobs/<key>/log.txt           what the job printed
      jobs/<key>/.lock             while the job runs: the process id and host running it
      features/<hash>.h5           the feature cache (see :mod:`neuroreg.sweep.cache`)

A job is done once ``status.json`` says so; its rows are read back from
``result.json``. A job runs only while its process holds the job's lock
(:class:`~neuroreg._utils.io.PathLock`), so two sweeps on one store never run the
same job: the second leaves the jobs the first holds alone. Killing a sweep at
any moment leaves every finished job's rows intact; a job whose process is gone
(same host, process id no longer running) or whose lock was removed by hand (a
process on another host) reads as ``todo`` (with ``interrupted: true``) and the
next sweep takes its lock over and runs it again.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any, Iterable

from neuroreg._utils.io import PathLock, atomic_write_text, holder_gone
from neuroreg.scorecard.card import Scorecard
from neuroreg.results.table import ScoreTable
from neuroreg.sweep.config import Job

__all__ = ["SweepStore", "STATES", "SECTION_OF_SCORER"]

STATES = ("todo", "running", "done", "failed")
#: Scorecard section of each scorer's rows.
SECTION_OF_SCORER = {"crsa": "brain", "versa": "brain", "predictivity": "brain", "factortopy": "factortopy",
                     "attacks": "attacks", "corruptions": "corruptions"}


class SweepStore:
    """A sweep's results folder. Safe for workers on other machines that share the file system."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    # -- paths
    def job_dir(self, key: str) -> Path:
        return self.root / "jobs" / key

    @property
    def feature_dir(self) -> Path:
        return self.root / "features"

    def job_lock(self, key: str) -> PathLock:
        """The lock a process holds while it runs job ``key`` (pid and host, taken over from a dead process)."""
        return PathLock(self.job_dir(key) / ".lock", purpose=f"sweep job {key}")

    # -- status
    def status(self, key: str) -> dict[str, Any]:
        """The job's status; a ``running`` job whose process is gone (same host) or whose lock was removed
        reads as ``todo``, with ``interrupted: True``."""
        path = self.job_dir(key) / "status.json"
        if not path.is_file():
            return {"state": "todo", "attempts": 0, "completions": 0}
        try:
            status = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):  # an unreadable status counts as not done
            return {"state": "todo", "attempts": 0, "completions": 0}
        if not isinstance(status, dict) or status.get("state") not in STATES:
            return {"state": "todo", "attempts": 0, "completions": 0}
        # A live job holds its lock from before it is marked running until after its final state is written,
        # so a running job without a lock file, or whose process is gone, was interrupted.
        if status["state"] == "running" and (holder_gone(status) or not (self.job_dir(key) / ".lock").exists()):
            status.update(state="todo", interrupted=True)
        return status

    def _write_status(self, key: str, status: dict[str, Any]) -> None:
        atomic_write_text(self.job_dir(key) / "status.json", json.dumps(status, indent=1, default=str))

    def register(self, job: Job) -> None:
        """Write the job's specification (once)."""
        path = self.job_dir(job.key) / "spec.json"
        if not path.is_file():
            atomic_write_text(path, json.dumps(job.spec(), indent=1, sort_keys=True, default=str))

    def mark_running(self, key: str) -> dict[str, Any]:
        status = self.status(key)
        status.update(state="running", attempts=int(status.get("attempts", 0)) + 1, host=socket.gethostname(),
                      pid=os.getpid(), started=time.time(), error=None)
        self._write_status(key, status)
        return status

    def mark_done(self, key: str, table: ScoreTable, seconds: float) -> None:
        atomic_write_text(self.job_dir(key) / "result.json", table.to_json())
        status = self.status(key)
        status.update(state="done", completions=int(status.get("completions", 0)) + 1, seconds=seconds,
                      finished=time.time(), error=None, n_rows=len(table))
        self._write_status(key, status)

    def mark_failed(self, key: str, error: str, seconds: float) -> None:
        status = self.status(key)
        status.update(state="failed", error=error, seconds=seconds, finished=time.time())
        self._write_status(key, status)

    def mark_todo(self, key: str, error: str) -> None:
        """Back to ``todo`` after a stop that is not the job's fault (an output error): the next sweep runs it."""
        status = self.status(key)
        status.update(state="todo", error=error, finished=time.time())
        self._write_status(key, status)

    # -- queries
    def keys(self) -> list[str]:
        folder = self.root / "jobs"
        return sorted(p.name for p in folder.iterdir() if (p / "spec.json").is_file()) if folder.is_dir() else []

    def counts(self, keys: Iterable[str] | None = None) -> dict[str, int]:
        """Jobs per state (``todo``, ``running``, ``done``, ``failed``)."""
        out = {s: 0 for s in STATES}
        for key in (self.keys() if keys is None else keys):
            out[self.status(key)["state"]] += 1
        return out

    def failures(self) -> dict[str, str]:
        """key -> error message of every failed job."""
        return {k: s.get("error") or "" for k in self.keys() if (s := self.status(k))["state"] == "failed"}

    def table(self, keys: Iterable[str] | None = None) -> ScoreTable:
        """Rows of every done job (of ``keys``, default all), in key order, as one table."""
        out = ScoreTable()
        for key in sorted(self.keys() if keys is None else keys):
            if self.status(key)["state"] == "done":
                out.extend(ScoreTable.read_json(self.job_dir(key) / "result.json"))
        return out

    def scorecard(self, keys: Iterable[str] | None = None):
        """Every done job's rows as one side-by-side :class:`~neuroreg.scorecard.card.Scorecard` (a section per
        kind of scorer, a row per model in its summary), e.g. ``store.scorecard().save("zoo_report")``."""
        card = Scorecard(title=f"sweep {self.root.name}")
        by_section: dict[str, ScoreTable] = {}
        for row in self.table(keys):
            by_section.setdefault(SECTION_OF_SCORER.get(str(row.get("scorer")), "brain"), ScoreTable()).append(**row)
        for section, table in by_section.items():
            card.add(section, table)
        return card
