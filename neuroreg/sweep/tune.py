"""Training sweeps with Ray Tune: a grid or random search over ``neuroreg train`` options.

A tune configuration (YAML)::

    train_config: train_tiny_cornet_z.yaml       # a `neuroreg train` config, relative to this file
    set:                                          # fixed for every trial (dotted keys, list items by index)
      trainer.max_steps: 8
    grid:                                         # every combination
      model.alignment.0.init_args.weight: [0.0, 1.0]
    random:                                       # sampled num_samples times
      model.lr: {loguniform: [0.01, 0.1]}         # uniform | loguniform | randint: [low, high]; choice: [...]
    num_samples: 1
    metric: val/acc1
    mode: max
    resources_per_trial: {cpu: 1, gpu: 0}
    max_concurrent_trials: null
    score: [kriegeskorte92]                       # cRSA of every trial's final model on these bundled sets

Each trial is a normal ``neuroreg train`` run folder (``<store>/trials/<trial>/``
with ``config.yaml``, checkpoints and TensorBoard logs); validation metrics
reach Tune through Ray's Lightning callback. At the end of a trial its final
model is scored (cRSA on the ``score`` sets) into ``scorecard.json``; all
trials' rows are merged into ``<store>/results.csv`` with one column per
searched option.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Mapping

import yaml

from neuroreg._utils.io import atomic_write_text
from neuroreg.errors import ConfigError, NotAvailableError
from neuroreg.results.table import ScoreTable

__all__ = ["load_tune_config", "set_dotted", "run_tune", "run_trial"]

_KEYS = {"train_config", "set", "grid", "random", "num_samples", "metric", "mode", "resources_per_trial",
         "max_concurrent_trials", "score", "seed"}


def load_tune_config(path: str | Path) -> dict[str, Any]:
    """A checked tune configuration; ``train_config`` made absolute."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"tune config not found: {path}")
    raw = yaml.safe_load(path.read_text(encoding="utf-8-sig")) or {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{path}: a tune config must be a mapping")
    unknown = set(raw) - _KEYS
    if unknown:
        raise ConfigError(f"{path}: unknown keys {sorted(unknown)}; expected {sorted(_KEYS)}")
    if "train_config" not in raw:
        raise ConfigError(f"{path}: `train_config` (a neuroreg train YAML) is required")
    train = (path.parent / raw["train_config"]).resolve()
    if not train.is_file():
        raise ConfigError(f"{path}: train_config not found: {train}")
    if not raw.get("grid") and not raw.get("random"):
        raise ConfigError(f"{path}: give at least one searched option under `grid` or `random`")
    cfg = {"set": {}, "grid": {}, "random": {}, "num_samples": 1, "metric": "val/acc1", "mode": "max",
           "resources_per_trial": {"cpu": 1, "gpu": 0}, "max_concurrent_trials": None,
           "score": ["kriegeskorte92"], "seed": 0}
    cfg.update(raw)
    cfg["train_config"] = str(train)
    if cfg["mode"] not in ("max", "min"):
        raise ConfigError(f"{path}: mode must be 'max' or 'min'; got {cfg['mode']!r}")
    return cfg


def set_dotted(tree: dict, key: str, value: Any) -> None:
    """Set ``tree[a][b][0][c] = value`` for ``key = "a.b.0.c"`` (list items by index), with clear errors."""
    parts = key.split(".")
    node: Any = tree
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f"option {key!r}: {'.'.join(parts[:i]) or 'the root'} is a list of {len(node)} "
                                  f"items; {part!r} is not an index in it")
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
        else:
            raise ConfigError(f"option {key!r}: {'.'.join(parts[:i])} is a value ({node!r}), not a mapping or list")


def _search_space(cfg: Mapping[str, Any]) -> dict[str, Any]:
    from ray import tune  # optional: the cluster extra
    space: dict[str, Any] = {}
    for key, values in (cfg.get("grid") or {}).items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"grid option {key!r} must be a non-empty list; got {values!r}")
        space[key] = tune.grid_search(values)
    samplers = {"uniform": tune.uniform, "loguniform": tune.loguniform, "randint": tune.randint}
    for key, spec in (cfg.get("random") or {}).items():
        if not isinstance(spec, Mapping) or len(spec) != 1:
            raise ConfigError(f"random option {key!r} must be one of {{uniform|loguniform|randint: [low, high]}} "
                              f"or {{choice: [...]}}; got {spec!r}")
        (kind, args), = spec.items()
        if kind == "choice":
            space[key] = tune.choice(list(args))
        elif kind in samplers:
            space[key] = samplers[kind](*args)
        else:
            raise ConfigError(f"random option {key!r}: unknown sampler {kind!r}")
    return space


def run_trial(params: Mapping[str, Any], *, cfg: Mapping[str, Any], store: str) -> None:
    """One Tune trial: write its train config, fit with Tune reporting, then score the final model."""
    from ray import tune  # optional: the cluster extra

    # local: the training and scoring stacks (Lightning, timm, sklearn) load in the trial, not in the driver
    from neuroreg.scorecard.evaluation import brain_scores
    from neuroreg.training.lightning_cli import build_cli, fit_cli

    context = tune.get_context()
    trial = context.get_trial_name() or "trial"
    folder = Path(store) / "trials" / trial
    folder.mkdir(parents=True, exist_ok=True)
    train = yaml.safe_load(Path(cfg["train_config"]).read_text(encoding="utf-8"))
    train = copy.deepcopy(train)
    for key, value in {**cfg["set"], **params}.items():
        set_dotted(train, key, value)
    trainer = train.setdefault("trainer", {})
    trainer["default_root_dir"] = str(folder)
    trainer["enable_progress_bar"] = False
    callbacks = list(trainer.get("callbacks") or [])
    callbacks.append({"class_path": "ray.tune.integration.pytorch_lightning.TuneReportCheckpointCallback",
                      "init_args": {"save_checkpoints": False, "on": "validation_end"}})
    trainer["callbacks"] = callbacks
    config_path = folder / "trial.yaml"
    atomic_write_text(config_path, yaml.safe_dump(train, sort_keys=False))
    cli = build_cli(["--config", str(config_path)])
    fit_cli(cli)
    table = ScoreTable()
    backbone = cli.model.backbone
    if cfg.get("score"):
        scores = brain_scores(backbone, list(cfg["score"]), model_name=trial, progress=False)
        for row in scores:
            table.append(**row, **{f"param:{k}": v for k, v in params.items()}, trial=trial)
    metrics = {k: float(v) for k, v in cli.trainer.callback_metrics.items() if getattr(v, "numel", lambda: 1)() == 1}
    for name, value in metrics.items():
        table.append(model=trial, metric=name, split="val", score=value, trial=trial,
                     **{f"param:{k}": v for k, v in params.items()})
    table.to_json(folder / "scorecard.json")


def run_tune(config: str | Path, store: str | Path, *, address: str | None = None, cpus: int | None = None,
             ) -> ScoreTable:
    """Run the trials of a tune config with Ray Tune; return every trial's final rows merged.

    ``address`` joins a running Ray cluster (``"auto"``); otherwise a local one is started with
    ``cpus`` CPUs. Results: ``<store>/trials/<trial>/`` (run folders), ``<store>/tune/`` (Tune's
    own state), ``<store>/results.csv``.
    """
    try:
        import ray  # optional: the cluster extra
        from ray import tune
    except ImportError:
        raise NotAvailableError("neuroreg tune needs Ray Tune: pip install 'neuroreg[cluster]'") from None
    cfg = load_tune_config(config)
    store = Path(store).resolve()
    store.mkdir(parents=True, exist_ok=True)
    atomic_write_text(store / "tune.json", json.dumps(cfg, indent=1, default=str))
    started = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
        if address is None and cpus:
            kwargs["num_cpus"] = int(cpus)
        ray.init(address=address, **kwargs)
        started = True
    try:
        res = cfg["resources_per_trial"]
        trainable = tune.with_resources(tune.with_parameters(run_trial, cfg=cfg, store=str(store)),
                                        {"cpu": float(res.get("cpu", 1)), "gpu": float(res.get("gpu", 0))})
        tuner = tune.Tuner(
            trainable, param_space=_search_space(cfg),
            tune_config=tune.TuneConfig(metric=cfg["metric"], mode=cfg["mode"], num_samples=int(cfg["num_samples"]),
                                        max_concurrent_trials=cfg["max_concurrent_trials"]),
            run_config=tune.RunConfig(storage_path=str(store / "tune"), name="trials", verbose=1))
        grid = tuner.fit()
    finally:
        if started:
            ray.shutdown()
    results = [grid[i] for i in range(len(grid))]   # ResultGrid is a sequence (__len__, __getitem__)
    errors = [str(r.error) for r in results if r.error is not None]
    table = ScoreTable()
    for path in sorted((store / "trials").glob("*/scorecard.json")):
        table.extend(ScoreTable.read_json(path))
    if len(table):
        table.to_csv(store / "results.csv")
    if errors:
        raise RuntimeError(f"{len(errors)} of {len(grid)} trials failed; first: {errors[0]}")
    return table
