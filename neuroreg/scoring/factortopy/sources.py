"""Where FactorTopy reads network features from: a dict of maps in memory or a frozen model run on stimuli.

Both sources yield, for a list of stimulus indices, a dict layer -> ``(b, C, H, W)``
float32 tensor on the requested device. The model source runs the network batch
by batch under ``torch.no_grad``, so full-resolution maps of all stimuli never
need to sit in memory at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from neuroreg._utils.capture import capture_outputs
from neuroreg._utils.checks import check_finite
from neuroreg.brain.data import images_to_tensor
from neuroreg.errors import ShapeError, UnknownNameError
from neuroreg.features.extraction import resolve_layers

__all__: list[str] = []


def _as_map(name: str, x: Tensor) -> Tensor:
    """``(b, C)`` vectors become ``(b, C, 1, 1)`` maps; ``(b, C, H, W)`` passes through."""
    if x.ndim == 2:
        return x[:, :, None, None]
    if x.ndim == 4:
        return x
    raise ShapeError(f"features[{name!r}] must be (n_stimuli, C, H, W) maps or (n_stimuli, C) vectors; "
                     f"got shape {tuple(x.shape)}")


class _DictSource:
    """Feature maps already computed: mapping layer -> ``(n, C, H, W)`` or ``(n, C)``."""

    def __init__(self, features: Mapping[str, Tensor], layers: Sequence[str], n_stimuli: int) -> None:
        missing = [name for name in layers if name not in features]
        if missing:
            raise UnknownNameError(f"layers {missing} are missing from the features; "
                                   f"features have {list(features)}")
        self.maps: dict[str, Tensor] = {}
        for name in layers:
            value = features[name]
            x = value if isinstance(value, Tensor) else torch.as_tensor(np.asarray(value))
            if not torch.is_floating_point(x):
                raise TypeError(f"features[{name!r}] must be floating point; got dtype {x.dtype}")
            x = _as_map(name, x)
            if x.shape[0] != n_stimuli:
                raise ShapeError(f"features[{name!r}] has {x.shape[0]} stimuli but brain has {n_stimuli} "
                                 f"(shape {tuple(x.shape)})")
            check_finite(f"features[{name!r}]", x)
            self.maps[name] = x
        self.layers = list(layers)
        self.n_stimuli = n_stimuli

    def shapes(self) -> dict[str, tuple[int, int, int]]:
        return {name: (x.shape[1], x.shape[2], x.shape[3]) for name, x in self.maps.items()}

    def batches(self, index: np.ndarray, batch_size: int, device: torch.device) -> Iterator[tuple[np.ndarray, dict[str, Tensor]]]:
        for start in range(0, len(index), batch_size):
            idx = index[start:start + batch_size]
            t = torch.as_tensor(idx)
            yield idx, {name: x[t].to(device=device, dtype=torch.float32) for name, x in self.maps.items()}


class _ModelSource:
    """A frozen network run on stimuli batch by batch; forward hooks read the named layers."""

    def __init__(self, model: nn.Module, stimuli, layers: Sequence[str], n_stimuli: int,
                 device: torch.device) -> None:

        if stimuli is None:
            raise ValueError("a model was given but no stimuli: pass stimuli=... to fit/predict, "
                             "or a BrainData whose .stimuli holds the images")
        x = stimuli if isinstance(stimuli, Tensor) else torch.as_tensor(np.asarray(stimuli))
        if x.ndim != 4:
            raise ShapeError(f"stimuli must be (n, 3, H, W) float or (n, H, W, 3) uint8; got shape {tuple(x.shape)}")
        x = images_to_tensor(x)
        if x.shape[0] != n_stimuli:
            raise ShapeError(f"stimuli has {x.shape[0]} images but brain has {n_stimuli} stimuli")
        check_finite("stimuli", x)
        self.images = x
        self.model = model
        self.modules = resolve_layers(model, list(layers))
        self.layers = list(layers)
        self.n_stimuli = n_stimuli
        self.device = device
        self._shapes: dict[str, tuple[int, int, int]] | None = None

    def _run(self, batch: Tensor) -> dict[str, Tensor]:
        with capture_outputs(self.model, self.modules, detach=True) as out, torch.no_grad():
            self.model(batch)  # recurrent areas: the last call wins
        out.require()
        return {key: _as_map(key, out[key].float()) for key in self.layers}

    def shapes(self) -> dict[str, tuple[int, int, int]]:
        if self._shapes is None:
            maps = self._run(self.images[:1].to(self.device))
            self._shapes = {k: (v.shape[1], v.shape[2], v.shape[3]) for k, v in maps.items()}
        return self._shapes

    def batches(self, index: np.ndarray, batch_size: int, device: torch.device) -> Iterator[tuple[np.ndarray, dict[str, Tensor]]]:
        for start in range(0, len(index), batch_size):
            idx = index[start:start + batch_size]
            batch = self.images[torch.as_tensor(idx)].to(device)
            maps = self._run(batch)
            for key, value in maps.items():
                if not bool(torch.isfinite(value).all()):
                    raise ValueError(f"the model produced non-finite activations at layer {key!r}")
            yield idx, maps

