"""Where sweep jobs run: in this process, in worker processes on this machine, or on a Ray cluster."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, Callable, Mapping, Sequence

from neuroreg.errors import NeuroregError, NotAvailableError
from neuroreg.sweep.config import Job
from neuroreg.sweep.jobs import execute

__all__ = ["BACKENDS", "run_local", "run_ray", "job_resources"]

BACKENDS = ("local", "ray")
#: Default memory request per job (GiB) by data kind; jobs on voxel data hold larger feature matrices.
_MEMORY_GIB = {"bundled": 2.0, "task": 4.0, "nsd": 16.0, "algonauts2023": 16.0, "responses": 8.0}

Report = Callable[[str, str, float], None]


def job_resources(job: Job) -> dict[str, Any]:
    """Ray resources of a job: ``num_cpus``, ``num_gpus`` (1 when it runs on CUDA) and ``memory`` (bytes).

    Options ``cpus_per_job``, ``gpus_per_job`` and ``memory_gb_per_job`` override the defaults
    (1 CPU; a GPU when ``device`` names CUDA; memory by data kind, doubled for FactorTopy).
    """
    opts = job.options
    device = str(opts.get("device") or "")
    gpus = opts.get("gpus_per_job")
    if gpus is None:
        gpus = 1 if device.startswith("cuda") else 0
    memory = opts.get("memory_gb_per_job")
    if memory is None:
        memory = _MEMORY_GIB.get(job.dataset.get("kind", "bundled"), 4.0) * (2 if job.scorer == "factortopy" else 1)
    return {"num_cpus": float(opts.get("cpus_per_job", 1)), "num_gpus": float(gpus),
            "memory": int(float(memory) * 2**30)}


def run_local(jobs: Sequence[Job], store_root: str, report: Report, workers: int = 1,
              runnable: Sequence[str] = ("todo",)) -> None:
    """Run jobs one after another here (``workers=1``) or in ``workers`` fresh processes.

    ``runnable``: the states a job may be in to run (see :func:`~neuroreg.sweep.jobs.execute`). An
    error :func:`execute` raises (an output error) stops the sweep; jobs not started are dropped.
    """
    if workers <= 1:
        for job in jobs:
            report(*execute(job.spec(), store_root, tuple(runnable)))
        return
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        futures = [pool.submit(execute, job.spec(), store_root, tuple(runnable)) for job in jobs]
        for fut in as_completed(futures):
            report(*fut.result())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def ray_tasks(ray, fn):
    """``fn`` as two Ray remote functions: for CPU jobs, and for GPU jobs with a fresh worker per call.

    Ray gives a task a new worker process after each call (``max_calls=1``, which releases the
    GPU's memory and CUDA context) only when the GPU is requested in ``ray.remote(...)`` itself,
    not through ``.options(num_gpus=...)``, and ``max_calls`` cannot be set in ``.options``; a
    reused worker would keep its first job's CUDA device. GPU jobs therefore use a function
    declared with ``max_calls=1``.
    """
    return ray.remote(fn), ray.remote(max_calls=1)(fn)


def run_ray(jobs: Sequence[Job], store_root: str, report: Report, *, address: str | None = None,
            workers: int | None = None, init_kwargs: Mapping[str, Any] | None = None,
            runnable: Sequence[str] = ("todo",)) -> None:
    """Run jobs as Ray tasks, each with its own resource request (see :func:`job_resources`).

    ``address``: ``"auto"`` or ``"ray://host:10001"`` joins a running cluster; None starts a local
    one (with ``workers`` CPUs when given). If Ray is already initialised in this process, that
    session is used and left running. Workers must see ``store_root`` (a shared file system on a
    multi-machine cluster) and have neuroreg installed.
    """
    try:
        import ray  # optional: the cluster extra
    except ImportError:
        raise NotAvailableError("the ray backend needs Ray: pip install 'neuroreg[cluster]'") from None
    started = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
        if address is None and workers:
            kwargs["num_cpus"] = int(workers)
        kwargs.update(init_kwargs or {})
        ray.init(address=address, **kwargs)
        started = True
    try:
        cpu_task, gpu_task = ray_tasks(ray, execute)
        # A small local cluster: do not ask for more memory than the machine has. Compared with the
        # cluster's total, read once: what the jobs already running leave free at the moment a later
        # job is submitted would drop that job's request and let Ray start it without the memory.
        local_memory = ray.cluster_resources().get("memory", float("inf")) if address is None else float("inf")
        pending = []
        for job in jobs:
            res = job_resources(job)
            if res["memory"] > local_memory:
                res.pop("memory")
            task = gpu_task if res["num_gpus"] > 0 else cpu_task
            pending.append(task.options(**res, max_retries=0).remote(job.spec(), store_root, tuple(runnable)))
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                try:
                    result = ray.get(ref)
                except Exception as exc:   # a task's own error (an output error) stops the sweep, as locally
                    cause = getattr(exc, "cause", None)
                    if isinstance(cause, NeuroregError):
                        for ref_left in pending:
                            ray.cancel(ref_left)
                        raise cause from None
                    raise
                report(*result)
    finally:
        if started:
            ray.shutdown()
