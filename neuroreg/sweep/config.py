"""Sweep configurations: what to score, expanded into one job per (model, data set, scorer).

A configuration (YAML, read with ``yaml.safe_load``, or a dict)::

    models:                       # registered names, or mappings
      - cornet_z
      - {name: vone_cornet_s, kwargs: {noise_mode: none}, label: vone_cornet_s_nonoise}
      - {name: resnet18, checkpoint: weights/resnet18.pth}      # timm name + local weights
    brain:                        # bundled names, "nsd:ROOT", "algonauts2023:ROOT", or mappings
      - kriegeskorte92
      - {nsd: /data/nsd, subject: 1, roi: nsdgeneral}
    scorers: [crsa]               # crsa, versa, predictivity, factortopy (brain); attacks, corruptions (task)
    task: /data/imagenet_val_subset   # ImageFolder root, needed by attacks and corruptions
    options: {layers: areas, batch_size: 32, seed: 0, device: null, image_size: null}
    # also the Ray requests cpus_per_job, gpus_per_job, memory_gb_per_job; other keys are refused

Every job is keyed by a hash of its full specification (model and a hash of its
weights, data set, scorer, options, neuroreg version), so a store can tell
which jobs are already done whatever order they were listed in.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

import neuroreg
from neuroreg.errors import ConfigError

__all__ = ["BRAIN_SCORERS", "TASK_SCORERS", "OPTIONS", "Job", "load_sweep_config", "check_options", "expand_jobs",
           "weights_hash"]

BRAIN_SCORERS = ("crsa", "versa", "predictivity", "factortopy")
TASK_SCORERS = ("attacks", "corruptions")
_DEFAULT_OPTIONS = {"layers": "areas", "batch_size": 32, "seed": 0, "device": None, "image_size": None}
#: Every option a sweep understands (the last three are Ray resource requests, see ``backends.job_resources``).
OPTIONS = ("layers", "batch_size", "seed", "device", "image_size", "cpus_per_job", "gpus_per_job",
           "memory_gb_per_job")
_BRAIN_PREFIXES = ("nsd", "algonauts2023")


@dataclass(frozen=True)
class Job:
    """One unit of work: score one model on one data set with one scorer."""

    model: dict[str, Any]
    dataset: dict[str, Any]
    scorer: str
    options: dict[str, Any] = field(default_factory=dict)
    version: str = ""

    def spec(self) -> dict[str, Any]:
        return {"model": self.model, "dataset": self.dataset, "scorer": self.scorer, "options": self.options,
                "version": self.version}

    @property
    def key(self) -> str:
        """``<model>-<dataset>-<scorer>-<hash>``: readable and unique for the specification."""
        digest = hashlib.sha256(json.dumps(self.spec(), sort_keys=True, default=str).encode()).hexdigest()[:12]
        readable = f"{self.model['label']}-{self.dataset['label']}-{self.scorer}"
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in readable)
        return f"{safe}-{digest}"

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> "Job":
        return cls(dict(spec["model"]), dict(spec["dataset"]), str(spec["scorer"]), dict(spec["options"]),
                   str(spec["version"]))


def weights_hash(path: str | Path, block: int = 1 << 20) -> str:
    """SHA-256 (first 16 hex digits) of a weights file, read in blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()[:16]


def load_sweep_config(config: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """A sweep configuration from a YAML file or a mapping, checked and with defaults filled in."""
    if isinstance(config, (str, Path)):
        path = Path(config)
        if not path.is_file():
            raise ConfigError(f"sweep config not found: {path}")
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
        base = path.parent
    else:
        raw, base = dict(config), Path.cwd()
    if not isinstance(raw, Mapping):
        raise ConfigError(f"a sweep config must be a mapping with models, brain and scorers; got {type(raw).__name__}")
    unknown = set(raw) - {"models", "brain", "scorers", "task", "options"}
    if unknown:
        raise ConfigError(f"unknown sweep config keys {sorted(unknown)}; expected models, brain, scorers, task, options")
    scorers = list(raw.get("scorers") or ["crsa"])
    bad = [s for s in scorers if s not in BRAIN_SCORERS + TASK_SCORERS]
    if bad:
        raise ConfigError(f"unknown scorers {bad}; choose from {list(BRAIN_SCORERS + TASK_SCORERS)}")
    models = [_model_spec(m, base) for m in raw.get("models") or []]
    if not models:
        raise ConfigError("the sweep config lists no models")
    labels = [m["label"] for m in models]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"model labels must be unique (give `label:` to tell them apart); got {labels}")
    brain = [_brain_spec(b, base) for b in raw.get("brain") or []]
    if any(s in BRAIN_SCORERS for s in scorers) and not brain:
        raise ConfigError(f"scorers {[s for s in scorers if s in BRAIN_SCORERS]} need brain data sets (`brain:`)")
    task = raw.get("task")
    if any(s in TASK_SCORERS for s in scorers):
        if task is None:
            raise ConfigError(f"scorers {[s for s in scorers if s in TASK_SCORERS]} need task data (`task:` an "
                              "ImageFolder root)")
        task = str((base / Path(task).expanduser()).resolve())
    given = raw.get("options") or {}
    if not isinstance(given, Mapping):
        raise ConfigError(f"sweep options must be a mapping of {sorted(OPTIONS)}; got {given!r}")
    options = dict(_DEFAULT_OPTIONS)
    options.update(given)
    check_options(options)
    return {"models": models, "brain": brain, "scorers": scorers, "task": task, "options": options}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_options(options: Mapping[str, Any]) -> None:
    """Refuse unknown sweep option keys and values of the wrong type or sign, naming the option."""
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        close = {k: difflib.get_close_matches(k, OPTIONS, n=1) for k in unknown}
        hint = "".join(f"; did you mean {c[0]!r} for {k!r}?" for k, c in close.items() if c)
        raise ConfigError(f"unknown sweep options {unknown}; known options: {sorted(OPTIONS)}{hint}")
    for name in ("batch_size", "image_size"):
        value = options.get(name)
        if value is None and name == "image_size":
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"options.{name} must be a positive integer{' or null' if name == 'image_size' else ''}; "
                              f"got {value!r}")
    if not _is_int(options.get("seed")):
        raise ConfigError(f"options.seed must be an integer; got {options.get('seed')!r}")
    device = options.get("device")
    if device is not None and (not isinstance(device, str) or not device):
        raise ConfigError(f"options.device must be a device name (cpu, cuda, cuda:1, mps) or null; got {device!r}")
    for name, least in (("cpus_per_job", 0.0), ("gpus_per_job", 0.0), ("memory_gb_per_job", 0.0)):
        value = options.get(name)
        if value is not None and (not _is_number(value) or value < least or (name != "gpus_per_job" and value == 0)):
            raise ConfigError(f"options.{name} must be a {'non-negative' if name == 'gpus_per_job' else 'positive'} "
                              f"number; got {value!r}")
    layers = options.get("layers")
    ok = (layers is None or (isinstance(layers, str) and layers)
          or (isinstance(layers, list) and layers and all(isinstance(x, str) and x for x in layers))
          or (isinstance(layers, Mapping) and layers
              and all(isinstance(k, str) and isinstance(v, str) and v for k, v in layers.items())))
    if not ok:
        raise ConfigError(f"options.layers must be 'areas', 'all', a module name, a list of them or a mapping "
                          f"name -> module; got {layers!r}")


def _model_spec(item: Any, base: Path) -> dict[str, Any]:
    if isinstance(item, str):
        item = {"name": item}
    if not isinstance(item, Mapping) or "name" not in item:
        raise ConfigError(f"a model entry must be a name or a mapping with `name`; got {item!r}")
    unknown = set(item) - {"name", "pretrained", "checkpoint", "kwargs", "label", "num_classes"}
    if unknown:
        raise ConfigError(f"model {item['name']!r}: unknown keys {sorted(unknown)}")
    kwargs: dict[str, Any] = dict(item.get("kwargs") or {})
    spec = {"name": str(item["name"]), "pretrained": bool(item.get("pretrained", False)),
            "kwargs": kwargs, "checkpoint": None, "weights": "init"}
    if item.get("num_classes") is not None:
        kwargs["num_classes"] = int(item["num_classes"])
    if item.get("checkpoint"):
        path = (base / Path(item["checkpoint"]).expanduser()).resolve()
        if not path.is_file():
            raise ConfigError(f"model {item['name']!r}: checkpoint not found: {path}")
        spec["checkpoint"] = str(path)
        spec["weights"] = weights_hash(path)
    elif spec["pretrained"]:
        spec["weights"] = "pretrained"
    spec["label"] = str(item.get("label") or item["name"])
    return spec


def _brain_spec(item: Any, base: Path) -> dict[str, Any]:
    if isinstance(item, str):
        prefix, sep, root = item.partition(":")
        if sep and prefix in _BRAIN_PREFIXES:
            item = {prefix: root}
        elif sep:
            raise ConfigError(f"brain set {item!r}: the prefix must be one of {list(_BRAIN_PREFIXES)}")
        else:
            return {"kind": "bundled", "name": item, "label": item}
    if not isinstance(item, Mapping):
        raise ConfigError(f"a brain entry must be a name, 'nsd:ROOT', 'algonauts2023:ROOT' or a mapping; got {item!r}")
    kinds = [k for k in ("bundled", "nsd", "algonauts2023", "responses") if k in item]
    if len(kinds) != 1:
        raise ConfigError(f"a brain mapping needs exactly one of bundled, nsd, algonauts2023, responses; got {dict(item)}")
    kind = kinds[0]
    options = {k: v for k, v in item.items() if k not in (kind, "label")}
    if kind == "bundled":
        return {"kind": kind, "name": str(item[kind]), "options": options, "label": item.get("label", item[kind])}
    root = str((base / Path(str(item[kind])).expanduser()).resolve())
    if not Path(root).exists():
        raise ConfigError(f"brain set {kind}: {root} does not exist")
    default_label = f"{kind}_" + "_".join(f"{k}{v}" for k, v in sorted(options.items())) if options else kind
    return {"kind": kind, "root": root, "options": options, "label": str(item.get("label") or default_label)}


def expand_jobs(config: Mapping[str, Any]) -> list[Job]:
    """Every (model, data set, scorer) job of a checked configuration, in listing order."""
    jobs = []
    for model in config["models"]:
        for scorer in config["scorers"]:
            if scorer in BRAIN_SCORERS:
                for data in config["brain"]:
                    jobs.append(Job(model, data, scorer, config["options"], neuroreg.__version__))
            else:
                task = {"kind": "task", "root": config["task"], "label": Path(config["task"]).name}
                jobs.append(Job(model, task, scorer, config["options"], neuroreg.__version__))
    return jobs
