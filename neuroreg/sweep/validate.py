"""Checks of a whole sweep before its first job: a bad entry stops the sweep with one line, not every job.

:func:`check_sweep` builds every model once (randomly initialised, on the CPU: no
weights are downloaded or read) with its keyword arguments, resolves the
``layers`` option on it, checks the image size against its preprocessing, the
bundled data set names, and the device on this machine (where the jobs run
here). Option types and unknown option keys are checked earlier, when the
configuration is read (:func:`~neuroreg.sweep.config.check_options`).
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

import neuroreg as nr
from neuroreg.errors import ConfigError, NotAvailableError
from neuroreg.features.extraction import resolve_layers
from neuroreg.data.preprocessing import preprocessing_of
from neuroreg.sweep.jobs import bundled_names, layers_of

__all__ = ["check_sweep", "check_device"]


def check_device(device: str | None) -> None:
    """Refuse ``options.device`` that is not a device name, or names CUDA or MPS this machine lacks."""
    if device is None:
        return
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"options.device {device!r} is not a device name (cpu, cuda, cuda:1, mps)") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise NotAvailableError(f"options.device {device!r}: CUDA is not available on this machine "
                                    "(torch.cuda.is_available() is False); use device: cpu or null")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise NotAvailableError(f"options.device {device!r}: this machine has {torch.cuda.device_count()} "
                                    "CUDA device(s)")
    elif dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise NotAvailableError(f"options.device {device!r}: MPS is not available on this machine; "
                                    "use device: cpu or null")


def _check_model(spec: Mapping[str, Any], options: Mapping[str, Any]) -> None:
    label = spec["label"]
    try:
        model = nr.create_model(spec["name"], pretrained=False, **spec.get("kwargs", {}))
    except Exception as exc:  # noqa: BLE001 - any failure to build is the entry's fault; said in one line
        kwargs = f" with kwargs {spec.get('kwargs')}" if spec.get("kwargs") else ""
        detail = " ".join(str(exc).split())[:300]
        raise ConfigError(f"model {label!r} ({spec['name']}{kwargs}) cannot be built: "
                          f"{type(exc).__name__}: {detail}") from None
    try:
        resolve_layers(model, layers_of(model, options.get("layers")))
    except (KeyError, ValueError) as exc:
        raise ConfigError(f"model {label!r}: options.layers={options.get('layers')!r}: "
                          f"{' '.join(str(exc).split())}") from None
    try:
        preprocessing_of(model, options.get("image_size"))
    except ValueError as exc:
        raise ConfigError(f"model {label!r}: options.image_size={options.get('image_size')!r}: {exc}") from None


def check_sweep(config: Mapping[str, Any], *, device_here: bool = True) -> None:
    """Raise a one-line :class:`ConfigError` (or :class:`NotAvailableError` for the device) on a bad sweep.

    ``config``: a checked configuration (:func:`~neuroreg.sweep.config.load_sweep_config`).
    ``device_here``: the jobs run on this machine, so ``options.device`` must exist here
    (False when they run on a Ray cluster joined by address, whose workers may have GPUs the
    driver lacks).
    """
    options = config["options"]
    if device_here:
        check_device(options.get("device"))
    elif options.get("device") is not None:
        try:
            torch.device(options["device"])
        except (RuntimeError, TypeError) as exc:
            raise ConfigError(f"options.device {options['device']!r} is not a device name (cpu, cuda, cuda:1, mps)"
                              ) from exc
    known = bundled_names()
    for data in config["brain"]:
        if data.get("kind") == "bundled" and data["name"] not in known:
            raise ConfigError(f"brain set {data['name']!r} is not a bundled data set; bundled sets: {known} "
                              "(other data: {nsd: ROOT}, {algonauts2023: ROOT} or {responses: FILE, stimuli: FOLDER})")
    for spec in config["models"]:
        _check_model(spec, options)
