"""Validation of the FactorTopy estimator's parameters, checked when ``fit`` starts (scikit-learn's convention)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from neuroreg.scoring.factortopy.pooling import _POOLINGS

__all__: list[str] = []


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_params(p: Mapping[str, Any]) -> list[str]:
    """Raise ``ValueError`` naming the first bad parameter of ``p`` (``FactorTopy.get_params()``);
    return the layer names as a list."""
    layers = [p["layers"]] if isinstance(p["layers"], str) else list(p["layers"])
    if len(layers) < 2:
        raise ValueError(f"layers must name at least 2 layers (shallow -> deep); got {layers}")
    if len(set(layers)) != len(layers):
        raise ValueError(f"layers must be unique; got {layers}")
    for name in ("d", "hidden", "batch_size", "voxel_batch_size", "max_epochs", "smooth_k"):
        if not _is_int(p[name]) or p[name] < 1:
            raise ValueError(f"{name} must be a positive integer; got {p[name]!r}")
    if not _is_int(p["random_state"]) or p["random_state"] < 0:
        raise ValueError(f"random_state must be an integer >= 0 (it seeds the initialisation, the splits and the "
                         f"batch order); got {p['random_state']!r}")
    _check_layer_choice(p)
    if p["pooling"] not in _POOLINGS:
        raise ValueError(f"pooling must be one of {_POOLINGS}; got {p['pooling']!r}")
    if p["position_init"] not in ("correlation", "centre"):
        raise ValueError(f"position_init must be 'correlation' or 'centre'; got {p['position_init']!r}")
    if not _is_int(p["pyramid_cache"]) or p["pyramid_cache"] < 0:
        raise ValueError(f"pyramid_cache must be an integer number of bytes >= 0; got {p['pyramid_cache']!r}")
    if not _is_int(p["init_steps"]) or p["init_steps"] < 0:
        raise ValueError(f"init_steps must be an integer >= 0; got {p['init_steps']!r}")
    if p["peak_alpha"] is not None and (isinstance(p["peak_alpha"], bool) or not p["peak_alpha"] > 0):
        raise ValueError(f"peak_alpha must be a number > 0 or None; got {p['peak_alpha']!r}")
    for name in ("select_fraction", "val_fraction"):
        if not 0.0 < p[name] < 1.0:
            raise ValueError(f"{name} must be in (0, 1); got {p[name]}")
    t0, t1 = p["temperature"]
    if not (t0 > 0 and t1 > 0):
        raise ValueError(f"temperature must be two positive numbers (start, end); got {p['temperature']}")
    for name in ("lr", "beta"):
        if not p[name] > 0:
            raise ValueError(f"{name} must be > 0; got {p[name]}")
    for name in ("entropy_weight", "smooth_weight", "expert_weight", "weight_decay", "warmup_epochs",
                 "anneal_epochs", "patience"):
        if p[name] < 0:
            raise ValueError(f"{name} must be >= 0; got {p[name]}")
    return layers


def _check_layer_choice(p: Mapping[str, Any]) -> None:
    """The parameters of the ridge layer choice."""
    if p["layer_choice"] not in ("ridge_cv", "selector"):
        raise ValueError(f"layer_choice must be 'ridge_cv' or 'selector'; got {p['layer_choice']!r}")
    if not _is_int(p["cv_folds"]) or p["cv_folds"] < 2:
        raise ValueError(f"cv_folds must be an integer >= 2; got {p['cv_folds']!r}")
    alphas = np.atleast_1d(np.asarray(p["ridge_alpha"], dtype=np.float64))
    if alphas.ndim != 1 or alphas.size == 0 or not (np.isfinite(alphas) & (alphas > 0)).all():
        raise ValueError(f"ridge_alpha must be a positive number or a sequence of them; got {p['ridge_alpha']!r}")
    floor = p["ridge_var_floor"]
    if isinstance(floor, bool) or not (isinstance(floor, (int, float, np.floating)) and floor >= 0):
        raise ValueError(f"ridge_var_floor must be a number >= 0; got {floor!r}")
    if not p["choice_temperature"] > 0:
        raise ValueError(f"choice_temperature must be > 0; got {p['choice_temperature']}")
