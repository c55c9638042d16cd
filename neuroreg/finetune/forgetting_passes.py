"""The forward passes of a forgetting report: the model's input, penultimate features, logits, layer features.

Every pass runs the network in eval mode from a fixed random stream (``seed``),
so a stochastic front end (VOneBlock noise) draws the same noise for the start
and the fine-tuned network, and unchanged weights give identical features. The
classifier's input (the penultimate features the probes read) is captured in
the same pass as the logits or the layer features.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from neuroreg._utils.capture import capture_inputs
from neuroreg._utils.modes import eval_mode
from neuroreg._utils.seeding import seeded
from neuroreg.brain import StimulusSource, bundled_sets, load_bundled
from neuroreg.data.folders import _dataset_len, load_neural_stimuli
from neuroreg.data.preprocessing import Preprocessing, preprocessing_of
from neuroreg.errors import ShapeError
from neuroreg.features.extraction import extract
from neuroreg.finetune.start_model import classifier_name

__all__ = ["ProbeSet", "model_preprocess", "with_head_of", "stratified_subset", "labels_of",
           "embed", "embed_models", "transformed", "ImageTensors", "probe_images", "features_of", "probe_features"]

#: one probe set: (name, the set object, images ``(n, 3, H, W)`` in [0, 1] at one size, stimulus ids ``(n,)``)
ProbeSet = tuple[str, Any, Tensor, np.ndarray]

def model_preprocess(model: nn.Module, image_size: int | None = None) -> Preprocessing:
    """The model's own preprocessing (:func:`~neuroreg.data.preprocessing.preprocessing_of`): ``(3, H, W)`` or
    ``(n, 3, H, W)`` in [0, 1] -> resized to its input size (or ``image_size``) with its interpolation,
    normalised with its mean/std. Images already at that size are only normalised (no crop)."""
    return preprocessing_of(model, image_size)


def with_head_of(after: nn.Module, before: nn.Module) -> nn.Module:
    """A copy of ``before`` carrying ``after``'s weights everywhere except the classifier (the original head)."""
    head = classifier_name(before)
    out = copy.deepcopy(before)
    own = out.state_dict()
    theirs = after.state_dict()
    body = {k: v for k, v in theirs.items() if not (k == head or k.startswith(head + "."))}
    missing = [k for k in own if k not in body and not (k == head or k.startswith(head + "."))]
    if missing or any(own[k].shape != v.shape for k, v in body.items() if k in own):
        raise ShapeError(f"before and after have different backbones (first missing keys: {missing[:5]})")
    out.load_state_dict({**own, **body})
    return out


def stratified_subset(labels: np.ndarray, n_max: int | None, seed: int) -> np.ndarray:
    """Up to ``n_max`` indices with classes in proportion (seeded, deterministic); all if n_max is None."""
    if n_max is None or len(labels) <= n_max:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    keep = []
    classes, counts = np.unique(labels, return_counts=True)
    quota = np.maximum(1, np.floor(counts / counts.sum() * n_max)).astype(int)
    for c, q in zip(classes, quota):
        idx = np.flatnonzero(labels == c)
        keep.extend(rng.choice(idx, size=min(q, len(idx)), replace=False).tolist())
    return np.sort(np.asarray(keep))


def labels_of(dataset: Dataset) -> np.ndarray:
    """The integer labels ``(n,)`` of a dataset of ``(image, label)`` items, read without decoding when it can."""
    if hasattr(dataset, "rows") and hasattr(dataset, "labels"):             # TableImages: no image decoding
        return np.asarray(dataset.labels)[np.asarray(dataset.rows)]
    if hasattr(dataset, "targets"):
        return np.asarray(dataset.targets)
    return np.asarray([int(dataset[i][1]) for i in range(_dataset_len(dataset, "dataset"))])


@torch.no_grad()
def embed(model: nn.Module, dataset: Dataset, batch_size: int, device: torch.device,
           seed: int = 0) -> tuple[np.ndarray, ...]:
    """(penultimate features (n, d), logits (n, k), labels (n,)) in one pass; model state restored."""
    (feats, logits), labels = embed_models([model], dataset, batch_size, device, seed)
    return feats[0], logits[0], labels


def _rng_state(device: torch.device) -> tuple[Tensor, Tensor | None]:
    """The CPU generator's state and, on a CUDA device, that device's."""
    return torch.get_rng_state(), (torch.cuda.get_rng_state(device) if device.type == "cuda" else None)


def _set_rng_state(device: torch.device, state: tuple[Tensor, Tensor | None]) -> None:
    """Restore a state read by :func:`_rng_state`."""
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


@torch.no_grad()
def embed_models(models: Sequence[nn.Module], dataset: Dataset, batch_size: int, device: torch.device,
                  seed: int = 0) -> tuple[tuple[list[np.ndarray], list[np.ndarray]], np.ndarray]:
    """Penultimate features and logits of every model on ``dataset``, reading (decoding, resizing) each batch once.

    Returns ``(([features (n, d) per model], [logits (n, k) per model]), labels (n,))``. Each model
    draws from its own random stream seeded with ``seed``, as in a pass of its own (a stochastic
    front end gets the same noise in every model); modes and the caller's RNG state are restored.
    """
    feats: list[list[Tensor]] = [[] for _ in models]
    logits: list[list[Tensor]] = [[] for _ in models]
    labels: list[Tensor] = []
    with contextlib.ExitStack() as stack:
        heads = [stack.enter_context(capture_inputs(model, {"head": classifier_name(model)}, detach=True))
                 for model in models]
        for model in models:
            stack.enter_context(eval_mode(model))
        stack.enter_context(seeded(seed, device))
        states = [_rng_state(device)] * len(models)
        for x, y in DataLoader(dataset, batch_size=batch_size, shuffle=False):
            x = x.to(device)
            for i, model in enumerate(models):
                _set_rng_state(device, states[i])
                heads[i].clear()
                out = model(x)
                states[i] = _rng_state(device)
                feats[i].append(heads[i].require()["head"].flatten(1).float().cpu())
                logits[i].append(out.float().cpu())
            labels.append(torch.as_tensor(y))
    return (([torch.cat(f).numpy() for f in feats], [torch.cat(lg).numpy() for lg in logits]),
            torch.cat(labels).numpy())


def transformed(images: Tensor, transform: Callable[[Tensor], Tensor]) -> Tensor:
    """``transform`` applied to each ``(3, H, W)`` image of ``images``, stacked."""
    return torch.stack([transform(im) for im in images]) if len(images) else images


class ImageTensors(Dataset):
    """``(image, 0)`` items of an image tensor ``(n, 3, H, W)``, each through ``transform`` if given."""

    def __init__(self, images: Tensor, transform: Callable[[Tensor], Tensor] | None) -> None:
        self.images, self.transform = images, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        return (self.images[i] if self.transform is None else self.transform(self.images[i])), 0


def probe_images(probe_sets: Sequence[Any]) -> list[ProbeSet]:
    """(name, set object, images (n, 3, H, W) in [0, 1] at one size, stimulus ids) per probe set."""
    out: list[ProbeSet] = []
    for item in probe_sets:
        data = load_bundled(item) if isinstance(item, str) and item in bundled_sets() else item
        if isinstance(item, str) and item not in bundled_sets():
            data = load_neural_stimuli(item)
        if not isinstance(data, StimulusSource):
            raise TypeError(f"probe sets must be bundled set names, .npz paths or stimulus sets (BrainData, "
                            f"NeuralStimulusSet); got {type(item).__name__}")
        images = data.images_tensor()     # native size
        out.append((str(getattr(data, "name", item)), data, images, np.asarray(data.stimulus_ids)))
    return out


def features_of(model: nn.Module, images: Tensor, layers: Mapping[str, str], transform, batch_size: int,
              device: torch.device, seed: int = 0, embedding: list | None = None) -> dict[str, Tensor]:
    """Features of ``layers``; with ``embedding`` (a list), the classifier's input of the same forward passes
    is appended to it as an ``(n, d)`` array (the retention probe reuses them instead of a second pass)."""
    heads = {"head": classifier_name(model)} if embedding is not None else {}
    with capture_inputs(model, heads, detach=True, keep="all") as captured, seeded(seed, device):
        out = dict(extract(model, images, dict(layers), batch_size=batch_size, device=device,
                           transform=transform, progress=False))
    store = [t.flatten(1).float().cpu() for t in captured.get("head", [])]
    if embedding is not None:
        if len(store) and sum(len(t) for t in store) == len(images):
            embedding.append(torch.cat(store).numpy())
        else:   # extraction stopped before the head (timm forward_intermediates): one more pass
            embedding.append(embed(model, ImageTensors(images, transform), batch_size, device, seed)[0])
    return out


def probe_features(model: nn.Module, inputs: list[Tensor], layer_map, batch_size: int, dev: torch.device,
                    seed: int) -> tuple[list[dict[str, Tensor]], list[np.ndarray]]:
    """Per probe set: features at every layer and the classifier's input (the retention probe's embedding)."""
    feats: list[dict[str, Tensor]] = []
    embeddings: list[np.ndarray] = []
    if len({tuple(x.shape[1:]) for x in inputs}) == 1:
        # every probe set at one size: one pass over all probe images, every layer and the classifier's input
        # captured in it, then split per set
        emb: list[np.ndarray] = []
        whole = features_of(model, torch.cat(inputs), layer_map, None, batch_size, dev, seed, emb)
        bounds = np.cumsum([0] + [len(x) for x in inputs])
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            feats.append({k: v[lo:hi] for k, v in whole.items()})
            embeddings.append(emb[0][lo:hi])
    else:
        for x in inputs:
            feats.append(features_of(model, x, layer_map, None, batch_size, dev, seed, embeddings))
    return feats, embeddings


