"""Chains of fine-tuning runs (original -> EuroSAT -> ISIC): the earlier tasks a start network went through.

A ``neuroreg finetune`` run that starts from another run's checkpoint
(``--model.start_from runs/eurosat/checkpoints/last.ckpt``) continues a chain.
Every run folder keeps what is needed to revisit its task: the LightningCLI
``config.yaml`` (the data module with its arguments, and the run's own start),
``splits.csv`` (its exact test split) and its checkpoints in ``<run>/checkpoints/``
(the default; a checkpoint kept elsewhere is not traced back to its run).

- :func:`task_chain` follows start checkpoints back through those folders and
  returns the runs, oldest first; it stops at a start that is not a fine-tuning
  run's checkpoint (a model name, a ``neuroreg train`` checkpoint): the root.
- :func:`previous_tasks` rebuilds, per run, the network at the end of that run
  (with its task's head) and its test split, for
  :func:`~neuroreg.finetune.forgetting.forgetting_report`'s ``previous_tasks``.
- :func:`chain_root` is the chain's first network, the one the original task
  (``original_data``, e.g. ImageNet) belongs to.
- :func:`accuracy_matrix` gathers the chain's reports into the continual-learning
  accuracy matrix ``R[j, i]`` (task ``i``'s test accuracy after run ``j``, under task ``i``'s head) with each
  task's forgetting (Chaudhry et al. 2018: best earlier accuracy minus the last).
"""

from __future__ import annotations

import importlib
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
from torch import nn

from neuroreg.errors import CheckpointError, DataFormatError
from neuroreg.results.table import ScoreTable
from neuroreg.finetune.forgetting_rows import HEAD_METRICS, PreviousTask
from neuroreg.data.split_data import SplitImageDataModule
from neuroreg.finetune.start_model import is_checkpoint_path, load_start_model, run_configs, start_is_random

__all__ = ["ChainRun", "task_chain", "task_name", "task_names", "data_set_name", "previous_tasks", "chain_root",
           "accuracy_matrix"]

#: longest chain followed (a guard against a config that points back into its own chain)
MAX_CHAIN = 64


@dataclass(frozen=True)
class ChainRun:
    """One fine-tuning run of a chain: its folder, the checkpoint of it that the next run started from, and its
    LightningCLI config."""

    run_dir: Path
    checkpoint: Path
    config: Mapping[str, Any]

    @property
    def name(self) -> str:
        """The run's task name (:func:`task_name`), for the report's ``dataset`` column."""
        return task_name(str((self.config.get("data") or {}).get("class_path", "data")), self.run_dir)


def data_set_name(data_class: str) -> str:
    """``EuroSATDataModule`` or ``neuroreg.data.EuroSATDataModule`` -> ``eurosat``."""
    return data_class.rpartition(".")[2].replace("DataModule", "").lower() or "data"


def task_name(data_class: str, run_dir: str | Path) -> str:
    """``<data set>:<run folder>``, e.g. ``eurosat:eurosat_full`` (made unique along a chain by
    :func:`task_names`)."""
    return f"{data_set_name(data_class)}:{Path(run_dir).resolve().name}"


def task_names(bases: list[str]) -> list[str]:
    """Names of the chain's tasks in order, made unique: a name already taken by an earlier task gets its 1-based
    position (``eurosat:run#3``). A name depends only on the tasks before it, so every run of a chain names the
    tasks it shares with the others alike."""
    out: list[str] = []
    for i, base in enumerate(bases):
        out.append(base if base not in out else f"{base}#{i + 1}")
    return out


def _finetune_run(checkpoint: Path) -> tuple[Path, dict[str, Any]] | None:
    """(run folder, config) when ``checkpoint`` was written by a ``neuroreg finetune`` run, else None."""
    run = checkpoint.resolve().parent.parent
    configs = run_configs(run)
    if not configs:
        return None
    cfg = configs[0]
    model, data = cfg.get("model"), cfg.get("data")
    if not isinstance(model, Mapping) or "start_from" not in model or not isinstance(data, Mapping):
        return None
    if not (run / "splits.csv").is_file():
        warnings.warn(f"the chain of fine-tuning runs stops at {run}: its splits.csv is missing, so its test split "
                      "cannot be rebuilt", stacklevel=3)
        return None
    return run, cfg


def task_chain(start_from: str) -> list[ChainRun]:
    """The fine-tuning runs behind ``start_from``, oldest first (empty when it is not such a run's checkpoint).

    A start path that no longer exists ends the chain with a warning naming it; relative paths are
    read from the current folder, as the runs read them.
    """
    runs: list[ChainRun] = []
    current: Any = start_from
    while isinstance(current, str) and is_checkpoint_path(current):
        path = Path(current).expanduser()
        if not path.is_file():
            if runs:
                warnings.warn(f"the chain of fine-tuning runs stops at {runs[-1].run_dir}: the checkpoint it started "
                              f"from, {current!r}, is not found", stacklevel=2)
            break
        found = _finetune_run(path)
        if found is None:
            break
        run, cfg = found
        if any(r.run_dir == run for r in runs) or len(runs) >= MAX_CHAIN:
            raise CheckpointError(f"the chain of fine-tuning runs through {run} loops back on itself or is longer "
                                  f"than {MAX_CHAIN} runs; check model.start_from in its config.yaml")
        runs.append(ChainRun(run, path, cfg))
        current = cfg["model"]["start_from"]
    return runs[::-1]


def _test_split(run: ChainRun):
    """The run's test split, rebuilt from its data config with its own ``splits.csv``."""
    data = run.config["data"]
    class_path = str(data.get("class_path", ""))
    module_name, _, cls_name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), cls_name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise DataFormatError(f"{run.run_dir}: cannot import its data module {class_path!r}: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, SplitImageDataModule)):
        raise DataFormatError(f"{run.run_dir}: data.class_path {class_path!r} is not a split image data module "
                              "(EuroSAT, ISIC 2019, generated patterns)")
    kwargs = dict(data.get("init_args") or {})
    kwargs.update(splits=str(run.run_dir / "splits.csv"), neural=None)
    return cls(**kwargs).eval_dataset("test")


def _network(run: ChainRun) -> nn.Module:
    """The network at the end of ``run`` (the checkpoint the next run started from), with that task's head."""
    return load_start_model(str(run.checkpoint))["model"].eval()      # architecture from its hyper-parameters


def previous_tasks(chain: list[ChainRun], *, current_start: nn.Module | None = None) -> list[PreviousTask]:
    """One :class:`PreviousTask` per run of ``chain`` (oldest first).

    ``current_start``: the network the current run started from, already built: used for the chain's
    last run instead of reading its checkpoint again. A run whose data can no longer be read (a moved
    data root, a changed ``splits.csv``) is left out with a warning that says why.
    """
    tasks = []
    for i, (run, name) in enumerate(zip(chain, task_names([r.name for r in chain]))):
        try:
            data = _test_split(run)
        except (DataFormatError, FileNotFoundError, OSError, ValueError) as exc:
            warnings.warn(f"forgetting report: earlier task {name} left out: {exc}", stacklevel=2)
            continue
        last = i == len(chain) - 1
        network = current_start if last and current_start is not None else _network(run)
        tasks.append(PreviousTask(name, network, data))
    return tasks


def chain_root(chain: list[ChainRun]) -> nn.Module:
    """The chain's first network (the start of its oldest run), with its original head."""
    if not chain:
        raise ValueError("chain_root needs a chain of at least one fine-tuning run")
    model = chain[0].config["model"]
    if start_is_random(str(model["start_from"]), model.get("weights")):
        raise CheckpointError(f"the chain's first run ({chain[0].run_dir}) started from {model['start_from']!r} "
                              "initialised at random: that network has no original task and cannot be rebuilt; "
                              "drop --forgetting.original_data (the earlier fine-tuning tasks are still scored)")
    return load_start_model(str(model["start_from"]), arch=model.get("arch"), weights=model.get("weights"),
                            model_kwargs=model.get("model_kwargs"))["model"].eval()


def _accuracies_after(table: ScoreTable, own_name: str) -> dict[str, float]:
    """Task name -> accuracy after the run of ``table``: its own task (named ``own_name``) and earlier ones, each
    under its own head (the same read-out as ``previous_task_accuracy``)."""
    # reports written before the fine-tuned head had rows of its own held its accuracy in task_accuracy "after"
    own_metric = HEAD_METRICS[0] if any(r["metric"] == HEAD_METRICS[0] for r in table) else "task_accuracy"
    out = {}
    for row in table:
        if row.get("stage") != "after":
            continue
        if row["metric"] == own_metric:
            out[own_name] = float(row["score"])
        elif row["metric"] == "previous_task_accuracy":
            out[str(row["dataset"])] = float(row["score"])
    return out


def accuracy_matrix(chain: list[ChainRun], current: ScoreTable, current_name: str) -> pd.DataFrame:
    """The chain's accuracy matrix: one row per run (after it), one column per task, in chain order.

    ``R[j, i]`` is task ``i``'s test accuracy after run ``j`` (under task ``i``'s head), read from each run's
    ``forgetting.json`` and, for the last row, from ``current`` (the report of the run named ``current_name``;
    names as :func:`task_names` makes them);
    NaN where a task was not learned yet or a report is missing. The extra row ``forgetting`` holds, per task,
    the best accuracy it had before the last run minus its accuracy after the last run.
    """
    names = task_names([run.name for run in chain] + [current_name])
    rows = []
    for run, name in zip(chain, names):
        path = run.run_dir / "forgetting.json"
        rows.append(_accuracies_after(ScoreTable.read_json(path), name) if path.is_file() else {})
    rows.append(_accuracies_after(current, names[-1]))
    matrix = pd.DataFrame([[r.get(n, np.nan) for n in names] for r in rows], index=names, columns=names,
                          dtype=float)
    matrix.index.name, matrix.columns.name = "after run", "task"
    earlier = matrix.iloc[:-1]
    forgetting = earlier.max(axis=0, skipna=True) - matrix.iloc[-1]
    forgetting.iloc[-1] = np.nan                       # the last task has no earlier accuracy
    matrix.loc["forgetting"] = forgetting
    return matrix
