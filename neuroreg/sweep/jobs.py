"""Running one sweep job: build the model, load the data, get features (cached), score, store the rows."""

from __future__ import annotations

import contextlib
import io
import time
import traceback
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn

import neuroreg as nr
from neuroreg._utils.io import atomic_write_text, is_disk_full
from neuroreg.models.pretrained import load_weights
from neuroreg.errors import OutputError, RunLockedError
from neuroreg.features.layers import sweep_layers
from neuroreg.data.preprocessing import preprocessing_of
from neuroreg.results.table import ScoreTable
from neuroreg.sweep.cache import cached_extract, feature_key
from neuroreg.sweep.config import BRAIN_SCORERS, Job
from neuroreg.sweep.store import SweepStore

__all__ = ["build_model", "load_dataset", "bundled_names", "layers_of", "run_job", "execute"]


def build_model(spec: Mapping[str, Any], seed: int = 0) -> nn.Module:
    """The model of a job spec: registered name, keyword arguments, optional local weights (strict)."""
    torch.manual_seed(seed)
    model = nr.create_model(spec["name"], pretrained=spec.get("pretrained", False), **spec.get("kwargs", {}))
    if spec.get("checkpoint"):
        load_weights(model, Path(spec["checkpoint"]), spec["name"])
    return model.eval()


def load_dataset(spec: Mapping[str, Any]):
    """The neural data of a job spec (bundled set, NSD, Algonauts 2023 or a responses file) with its images."""
    from neuroreg import brain  # local: loads timm; the sweep driver (`neuroreg sweep --status`) needs torch only

    options = dict(spec.get("options") or {})
    kind = spec["kind"]
    if kind == "bundled":
        return brain.load_bundled(spec["name"], **options)
    if kind == "nsd":
        return brain.load_nsd(spec["root"], load_images=True, **options)
    if kind == "algonauts2023":
        return brain.load_algonauts2023(spec["root"], load_images=True, **options)
    if kind == "responses":
        return brain.load_responses(spec["root"], **options)
    raise ValueError(f"unknown data set kind {kind!r}")


def bundled_names() -> list[str]:
    """Names of the bundled neural data sets."""
    from neuroreg import brain  # local: loads timm; the sweep driver (`neuroreg sweep --status`) needs torch only

    return sorted(brain.bundled_sets())


def layers_of(model: nn.Module, option) -> dict[str, str]:
    """Output name -> module name of the sweep option ``layers`` (``"areas"``, ``"all"``, names, a mapping)."""
    if option in (None, "areas"):
        try:
            return sweep_layers(model, "areas").layers
        except ValueError:  # no area map known: every block/stage output
            return sweep_layers(model, "all").layers
    if option == "all":
        return sweep_layers(model, "all").layers
    if isinstance(option, str):
        return {option: option}
    return {str(k): str(v) for k, v in option.items()} if isinstance(option, Mapping) else {n: n for n in option}


def _task_loader_data(root: str, prep):
    from torchvision import datasets  # local: loads torchvision; the sweep driver needs torch only
    return datasets.ImageFolder(root, transform=prep.eval_transform())


def run_job(job: Job, store: SweepStore) -> ScoreTable:
    """Score one job and return its rows (with ``dataset``, ``scorer`` and ``job`` columns)."""
    from neuroreg.scoring import FactorTopy, crsa, predictivity, versa  # local: loads timm, sklearn (driver: torch only)

    opts = job.options
    seed = int(opts.get("seed", 0))
    label = job.model["label"]
    model = build_model(job.model, seed)
    prep = preprocessing_of(model, opts.get("image_size"))
    size = prep.image_size
    device = opts.get("device")
    table = ScoreTable()
    if job.scorer in BRAIN_SCORERS:
        data = load_dataset(job.dataset)
        layers = layers_of(model, opts.get("layers"))
        images = data.images_tensor()
        key = feature_key(job.model, job.dataset, layers=layers, size=size, mean=prep.mean, std=prep.std,
                          seed=seed)
        feats, _ = cached_extract(store.feature_dir, key, model, images, layers, stimulus_ids=data.stimulus_ids,
                                  batch_size=int(opts.get("batch_size", 32)), device=device,
                                  transform=prep, seed=seed,
                                  progress=False)
        if job.scorer == "crsa":
            part = crsa(feats, data, model=label, seed=seed, progress=False)
        elif job.scorer == "versa":
            part = versa(feats, data, model=label, seed=seed, progress=False)
        elif job.scorer == "predictivity":
            part = predictivity(feats, data, model=label, seed=seed, progress=False)
        else:
            ft = FactorTopy(layers=list(feats), random_state=seed).fit({k: feats[k] for k in feats}, data)
            part = ft.summary(model=label)
        for row in part:
            table.append(**{**row, "dataset": data.name})
    else:
        task = _task_loader_data(job.dataset["root"], prep)
        kwargs = dict(mean=prep.mean, std=prep.std, batch_size=int(opts.get("batch_size", 32)), seed=seed,
                      model_name=label, progress=False)
        if job.scorer == "attacks":
            from neuroreg.robustness import attack_suite  # local: loads kornia, torchattacks (driver: torch only)
            part = attack_suite(model, task, **kwargs)
        else:
            from neuroreg.robustness import corruption_suite  # local: loads kornia, torchattacks (driver: torch only)
            part = corruption_suite(model, task, **kwargs)
        for row in part:
            table.append(**{**row, "dataset": job.dataset["label"]})
    out = ScoreTable()
    for row in table:
        out.append(**{**row, "scorer": job.scorer, "job": job.key})
    return out


def execute(spec: Mapping[str, Any], store_root: str, runnable: Sequence[str] = ("todo",)
            ) -> tuple[str, str, float]:
    """Run one job from its specification and record it in the store: (key, final state, seconds).

    The job runs only under its lock (:meth:`SweepStore.job_lock`) and only while its state is one of
    ``runnable`` once the lock is held: the final state is ``"busy"`` when another live process holds
    the job, ``"skipped"`` when another sweep finished it meanwhile, else ``"done"`` or ``"failed"``.
    A failing job is recorded with its error and the sweep goes on; an output error (a full disk,
    an unwritable store) is not the job's fault: the job goes back to ``todo`` and the error is raised,
    which stops the sweep. What the job prints goes to its ``log.txt``.
    """
    job = Job.from_spec(spec)
    store = SweepStore(store_root)
    lock = store.job_lock(job.key)
    try:
        lock.acquire()
    except RunLockedError:
        return job.key, "busy", 0.0
    try:
        if store.status(job.key)["state"] not in runnable:
            return job.key, "skipped", 0.0
        return _run_recorded(job, store)
    finally:
        lock.release()


def _run_recorded(job: Job, store: SweepStore) -> tuple[str, str, float]:
    store.mark_running(job.key)
    t0 = time.perf_counter()
    log = io.StringIO()
    try:
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            table = run_job(job, store)
    except Exception as exc:  # recorded per job; the sweep continues
        seconds = time.perf_counter() - t0
        log.write(traceback.format_exc())
        message = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, OutputError) or is_disk_full(exc):
            with contextlib.suppress(OSError):   # the disk may be too full for the record itself
                _write_log(store, job.key, log.getvalue())
                store.mark_todo(job.key, message)
            raise
        _write_log(store, job.key, log.getvalue())
        store.mark_failed(job.key, message, seconds)
        return job.key, "failed", seconds
    seconds = time.perf_counter() - t0
    _write_log(store, job.key, log.getvalue())
    store.mark_done(job.key, table, seconds)
    return job.key, "done", seconds


def _write_log(store: SweepStore, key: str, text: str) -> None:
    atomic_write_text(store.job_dir(key) / "log.txt", text)
