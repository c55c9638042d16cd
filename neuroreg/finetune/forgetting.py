"""What fine-tuning gained on the new task and what the network lost on old ones, compared like with like.

``forgetting_report(before, after, ...)`` compares the starting network with the
fine-tuned one and returns a :class:`~neuroreg.scoring.ScoreTable` in the
project's long format, with a ``stage`` column (``before``, ``after``,
``change`` = after - before), as :func:`~neuroreg.scoring.compare_factortopy`,
and a ``kind`` column that says what each row measures:

==================  ====================================================================================
kind                rows
==================  ====================================================================================
``new_task``        transfer to the new domain, not forgetting: ``task_accuracy`` and
                    ``balanced_accuracy`` (the same read-out before and after) and the
                    fine-tuned network's own head (``finetuned_head_*``, stage ``after`` only)
``old_task``        the forgetting: ``original_accuracy``, ``backward_transfer``, the earlier
                    tasks of a chain (``previous_task_*``) and ``retention_accuracy``
``representation``  ``cka_to_start`` (representation drift)
``brain``           ``crsa``, ``versa``, ``hierarchy_slope``, ``factortopy_*`` (brain-score change)
==================  ====================================================================================

===================  =======================================================================
metric               meaning
===================  =======================================================================
task_accuracy        new task, test split, read-out ``probe``: one recipe (standardised
balanced_accuracy    features, L2 logistic regression, C = 1, trained on the train split) fitted
                     on the start's penultimate features (before) and on the fine-tuned
                     backbone's penultimate features (after). change = what fine-tuning did to
                     the features for the new task. Balanced = mean per-class recall.
finetuned_head_      new task, test split, read-out ``head``: the fine-tuned network's own
accuracy, ..._       predictions (stage ``after`` only; the start has no head for the new task).
balanced_accuracy    ``chance`` = the best constant answer (most frequent class; 1 / classes for
                     balanced accuracy). ``warning`` is set when the head ends below the probe on
                     the start's features, or within ``near_chance_margin`` of chance: fine-tuning
                     that did not converge (also logged as a warning).
original_accuracy    the original task (``original_data``): before = ``original_network`` (the
                     start by default); after = the fine-tuned backbone under its head.
backward_transfer    dataset ``original``: original_accuracy after - before (Lopez-Paz & Ranzato
                     2017, two tasks); dataset ``sequence`` (with ``previous_tasks``): the mean
                     accuracy change over every earlier task of a chain of fine-tuning runs.
previous_task_       each earlier task of the chain (``previous_tasks``), its test split:
accuracy, previous_  before = the network at the end of that task; after = the fine-tuned
task_balanced_acc... backbone under that task's head (``previous_task_balanced_accuracy`` too).
retention_accuracy   cross-validated probe on a fixed reference set (default: the bundled 92
                     images, animate vs inanimate and the six categories), before and after.
cka_to_start         CKA between start and fine-tuned features at every layer, on the probe
                     images (bundled 92 + 78 by default); 1.0 = unchanged (stage ``after``).
crsa                 cRSA per bundled set and region, best layer chosen on the train half,
                     reported on the test half, mean over subjects.
versa, hierarchy_    with voxel data (``brain=``) or ``brain="simulate"``: veRSA per region
slope, factortopy_*  (best layer) and FactorTopy's hierarchy slope via compare_factortopy.
===================  =======================================================================

With a frozen backbone (a linear probe's outcome) every ``change`` of a row that is not
``new_task`` is exactly 0, and so is the probe rows' change; only the head row shows what
the new head learned. (``previous_task_*`` compare with the end of each earlier task, so
in a chain they also hold what the runs in between changed.)

Every score reuses the scoring core (:func:`~neuroreg.scoring.cka`,
:func:`~neuroreg.scoring.crsa`, :func:`~neuroreg.scoring.versa`,
:class:`~neuroreg.scoring.FactorTopy`); nothing is re-implemented here.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import logging
import os
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits
from torch.utils.data import DataLoader, Dataset, Subset

from neuroreg._utils.modes import eval_mode
from neuroreg.brain import StimulusSource, bundled_sets, load_bundled
from neuroreg.features import simulate_voxels
from neuroreg.scoring.classification import balanced_accuracy
from neuroreg.errors import DataFormatError, ShapeError
from neuroreg.features.extraction import Features, extract
from neuroreg.models import area_layers
from neuroreg.scoring import FactorTopy, cka_from_grams, compare_factortopy, crsa, gram, versa
from neuroreg.results.selection import best_index
from neuroreg.results.table import ScoreTable
from neuroreg.data.folders import _dataset_len, load_neural_stimuli
from neuroreg.finetune.forgetting_cache import (dataset_fingerprint, load_start_side, model_fingerprint,
                                               save_start_side, stable_repr, start_side_key)
from neuroreg.finetune.start_model import classifier_name

__all__ = ["PreviousTask", "forgetting_report", "model_preprocess", "with_head_of", "metric_kind", "KINDS",
           "HEAD_METRICS", "NEAR_CHANCE_MARGIN"]

_STAGES = ("before", "after", "change")
log = logging.getLogger(__name__)

#: what a row of the report measures (its ``kind`` column), in report order
KINDS = ("new_task", "old_task", "representation", "brain")
#: the fine-tuned network's own head on the new task (stage ``after`` only)
HEAD_METRICS = ("finetuned_head_accuracy", "finetuned_head_balanced_accuracy")
_METRIC_KINDS = {
    "task_accuracy": "new_task", "balanced_accuracy": "new_task", HEAD_METRICS[0]: "new_task",
    HEAD_METRICS[1]: "new_task",
    "original_accuracy": "old_task", "backward_transfer": "old_task", "previous_task_accuracy": "old_task",
    "previous_task_balanced_accuracy": "old_task", "retention_accuracy": "old_task",
    "cka_to_start": "representation",
    "crsa": "brain", "versa": "brain", "hierarchy_slope": "brain", "factortopy_confidence": "brain",
    "factortopy_r2": "brain", "factortopy_depth": "brain",
}
#: a fine-tuned head whose accuracy is at most chance + this margin is flagged as near chance
NEAR_CHANCE_MARGIN = 0.1


def metric_kind(metric: str) -> str:
    """The ``kind`` of a report metric: ``new_task``, ``old_task``, ``representation`` or ``brain`` (see
    the module docstring)."""
    try:
        return _METRIC_KINDS[metric]
    except KeyError:
        raise ValueError(f"unknown forgetting-report metric {metric!r}; known: {sorted(_METRIC_KINDS)}") from None


def _head_warning(head: float, probe_before: float, chance: float, margin: float) -> str | None:
    """Why the fine-tuned head's score on the new task does not show a network that learned it, or None.

    head: the fine-tuned head's (balanced) accuracy; probe_before: the same measure of the probe on the
    start's features; chance: the best constant answer's score on the same images."""
    reasons = []
    if head < probe_before:
        reasons.append(f"ends below a linear probe on its start's features ({head:.3f} < {probe_before:.3f})")
    if head <= chance + margin:
        reasons.append(f"is near chance ({head:.3f}; chance {chance:.3f}, margin {margin:.2f})")
    if not reasons:
        return None
    return ("the fine-tuned head " + " and ".join(reasons) + ": fine-tuning did not converge on the new task "
            "(more steps or a higher head learning rate)")


@dataclass(frozen=True)
class PreviousTask:
    """An earlier task of a chain of fine-tuning runs (original -> EuroSAT -> ISIC).

    name: written to the ``dataset`` column. network: the network as it was at the end of that
    task, with that task's head. test_data: its test split, ``(image, label)`` items preprocessed
    for the network, labels in the order of that head's outputs.
    """

    name: str
    network: nn.Module
    test_data: Dataset


# ----------------------------------------------------------------------------- building blocks
def _preprocess_spec(model: nn.Module, image_size: int | None) -> tuple[int, tuple[float, ...], tuple[float, ...]]:
    """(input size, mean, std) that :func:`model_preprocess` applies for ``model``."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    size = int(image_size or (cfg.get("input_size") or (3, 224, 224))[-1])
    mean = tuple(float(v) for v in cfg.get("mean", (0.485, 0.456, 0.406)))
    std = tuple(float(v) for v in cfg.get("std", (0.229, 0.224, 0.225)))
    return size, mean, std


def model_preprocess(model: nn.Module, image_size: int | None = None) -> Callable[[Tensor], Tensor]:
    """``(3, H, W)`` in [0, 1] -> resized to the model's input size and normalised with its ``pretrained_cfg``."""
    spec = _preprocess_spec(model, image_size)

    def transform(x: Tensor) -> Tensor:
        return _model_input(x[None], spec)[0]
    return transform


def _model_input(images: Tensor, spec: tuple[int, tuple[float, ...], tuple[float, ...]]) -> Tensor:
    """:func:`model_preprocess` on a batch ``(n, 3, H, W)`` (one resize call for the whole batch)."""
    size, mean, std = spec
    if images.shape[-2:] != (size, size):
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False,
                               antialias=True).clamp(0, 1)
    return ((images - torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1))
            / torch.tensor(std, dtype=torch.float32).view(-1, 1, 1))


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


def _stratified_subset(labels: np.ndarray, n_max: int | None, seed: int) -> np.ndarray:
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


def _labels_of(dataset: Dataset) -> np.ndarray:
    if hasattr(dataset, "rows") and hasattr(dataset, "labels"):             # TableImages: no image decoding
        return np.asarray(dataset.labels)[np.asarray(dataset.rows)]
    if hasattr(dataset, "targets"):
        return np.asarray(dataset.targets)
    return np.asarray([int(dataset[i][1]) for i in range(_dataset_len(dataset, "dataset"))])


@torch.no_grad()
def _embed(model: nn.Module, dataset: Dataset, batch_size: int, device: torch.device,
           seed: int = 0) -> tuple[np.ndarray, ...]:
    """(penultimate features (n, d), logits (n, k), labels (n,)) in one pass; model state restored."""
    (feats, logits), labels = _embed_models([model], dataset, batch_size, device, seed)
    return feats[0], logits[0], labels


def _rng_state(device: torch.device) -> tuple[Tensor, Tensor | None]:
    return torch.get_rng_state(), (torch.cuda.get_rng_state(device) if device.type == "cuda" else None)


def _set_rng_state(device: torch.device, state: tuple[Tensor, Tensor | None]) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


@torch.no_grad()
def _embed_models(models: Sequence[nn.Module], dataset: Dataset, batch_size: int, device: torch.device,
                  seed: int = 0) -> tuple[tuple[list[np.ndarray], list[np.ndarray]], np.ndarray]:
    """Penultimate features and logits of every model on ``dataset``, reading (decoding, resizing) each batch once.

    Returns ``(([features (n, d) per model], [logits (n, k) per model]), labels (n,))``. Each model
    draws from its own random stream seeded with ``seed``, as in a pass of its own (a stochastic
    front end gets the same noise in every model); modes and the caller's RNG state are restored.
    """
    stores: list[list[Tensor]] = [[] for _ in models]
    feats: list[list[Tensor]] = [[] for _ in models]
    logits: list[list[Tensor]] = [[] for _ in models]
    labels: list[Tensor] = []
    with contextlib.ExitStack() as stack:
        for model, store in zip(models, stores):
            head = dict(model.named_modules())[classifier_name(model)]
            handle = head.register_forward_pre_hook(
                lambda _m, inp, store=store: store.append(inp[0].detach().flatten(1).float().cpu()))
            stack.callback(handle.remove)
            stack.enter_context(eval_mode(model))
        stack.enter_context(_seeded(device, seed))
        states = [_rng_state(device)] * len(models)
        for x, y in DataLoader(dataset, batch_size=batch_size, shuffle=False):
            x = x.to(device)
            for i, model in enumerate(models):
                _set_rng_state(device, states[i])
                stores[i].clear()
                out = model(x)
                states[i] = _rng_state(device)
                feats[i].append(stores[i][-1])
                logits[i].append(out.float().cpu())
            labels.append(torch.as_tensor(y))
    return (([torch.cat(f).numpy() for f in feats], [torch.cat(lg).numpy() for lg in logits]),
            torch.cat(labels).numpy())


def _accuracies(pred: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    return float((pred == labels).mean()), balanced_accuracy(pred, labels)


class _RowSpan(TransformerMixin, BaseEstimator):
    """Coordinates of each row in an orthonormal basis of the training rows' span (thin SVD).

    An L2-penalised linear model with an unpenalised intercept (scikit-learn's ``lbfgs``
    logistic regression) has its optimal weights in the span of the training rows: a part
    orthogonal to it changes no training loss and only adds to the penalty. Fitting on these
    ``r <= min(n, d)`` coordinates therefore gives the same decision function as fitting on all
    ``d`` features, with ``w . x = w' . (V^T x)`` for test rows too, and ``||w'|| = ||w||``;
    with ``n`` images far fewer than ``d`` features the solver's cost drops accordingly.
    When ``n >= d`` the features pass unchanged.
    """

    def fit(self, x: np.ndarray, y: Any = None) -> "_RowSpan":
        x = np.asarray(x, dtype=np.float64)
        self.basis_: np.ndarray | None = None
        if x.shape[0] < x.shape[1]:
            _, s, vt = np.linalg.svd(x, full_matrices=False)
            keep = s > (s[0] if len(s) else 0.0) * max(x.shape) * np.finfo(np.float64).eps
            self.basis_ = vt[keep].T
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return x if self.basis_ is None else x @ self.basis_


def _one_blas_thread():
    """Context for the probes' fits: their problems are small (<= a few thousand rows), where a multithreaded
    BLAS/LAPACK adds only synchronisation; on cores shared with other work that made a 73 x 1280 SVD take
    0.6 s instead of 0.03 s, and the retention probes 4-6x longer."""
    return threadpool_limits(limits=1, user_api="blas")


def _probe(seed: int):
    """Standardised features -> logistic regression (C = 1), solved in the span of the training rows.

    ``tol`` is tighter than scikit-learn's default (1e-4): in the at most ``n``-dimensional span
    it costs little, and it brings the fit closer to the optimum that the full-dimensional solve
    only approximates."""
    return make_pipeline(StandardScaler(), _RowSpan(),
                         LogisticRegression(max_iter=2000, C=1.0, tol=1e-6, random_state=seed))


def _stage_rows(table: ScoreTable, before: float, after: float, **row: Any) -> None:
    for stage, value in zip(_STAGES, (before, after, after - before)):
        table.append(stage=stage, score=value, **row)


def _transformed(images: Tensor, transform: Callable[[Tensor], Tensor]) -> Tensor:
    """``transform`` applied to each ``(3, H, W)`` image of ``images``, stacked."""
    return torch.stack([transform(im) for im in images]) if len(images) else images


class _Images(Dataset):
    def __init__(self, images: Tensor, transform: Callable[[Tensor], Tensor] | None) -> None:
        self.images, self.transform = images, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        return (self.images[i] if self.transform is None else self.transform(self.images[i])), 0


def _probe_images(probe_sets: Sequence[Any]) -> list[tuple[str, Any, Tensor, np.ndarray]]:
    """(name, set object, images (n, 3, H, W) in [0, 1] at one size, stimulus ids) per probe set."""
    out: list[tuple[str, Any, Tensor, np.ndarray]] = []
    for item in probe_sets:
        data = load_bundled(item) if isinstance(item, str) and item in bundled_sets() else item
        if isinstance(item, str) and item not in bundled_sets():
            data = load_neural_stimuli(item)
        if not isinstance(data, StimulusSource):
            raise TypeError(f"probe sets must be bundled set names, .npz paths or stimulus sets (BrainData, "
                            f"NeuralStimulusSet, NeuralStimuli); got {type(item).__name__}")
        images = data.images_tensor()     # native size
        out.append((str(getattr(data, "name", item)), data, images, np.asarray(data.stimulus_ids)))
    return out


def _seeded(device: torch.device, seed: int):
    """Same random stream for both networks: a stochastic front end (VOneBlock noise) draws the same noise for
    before and after, so unchanged weights give identical features; the caller's RNG state is restored."""
    @contextlib.contextmanager
    def ctx():
        devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            yield
    return ctx()


def _features(model: nn.Module, images: Tensor, layers: Mapping[str, str], transform, batch_size: int,
              device: torch.device, seed: int = 0, embedding: list | None = None) -> dict[str, Tensor]:
    """Features of ``layers``; with ``embedding`` (a list), the classifier's input of the same forward passes
    is appended to it as an ``(n, d)`` array (the retention probe reuses them instead of a second pass)."""
    store: list[Tensor] = []
    handle = None
    if embedding is not None:
        head = dict(model.named_modules())[classifier_name(model)]
        handle = head.register_forward_pre_hook(lambda _m, inp: store.append(inp[0].detach().flatten(1).float().cpu()))
    try:
        with _seeded(device, seed):
            out = dict(extract(model, images, dict(layers), batch_size=batch_size, device=device,
                               transform=transform, progress=False))
    finally:
        if handle is not None:
            handle.remove()
    if embedding is not None:
        if len(store) and sum(len(t) for t in store) == len(images):
            embedding.append(torch.cat(store).numpy())
        else:   # extraction stopped before the head (timm forward_intermediates): one more pass
            embedding.append(_embed(model, _Images(images, transform), batch_size, device, seed)[0])
    return out


def _best_layer_scores(table: ScoreTable, metric: str) -> pd.DataFrame:
    """Mean over subjects per (set, region, layer, split); the layer chosen on train, its test score."""
    df = table.to_pandas()
    df = df[(df["metric"] == metric) & (df["subject"].astype(str) != "mean")]
    if "rdm_set" not in df:
        df = df.assign(rdm_set="brain")
    df = df.assign(rdm_set=df["rdm_set"].fillna("brain"), region=df["region"].fillna("all"))
    mean = df.groupby(["rdm_set", "region", "layer", "split"], sort=True)["score"].mean().reset_index()
    rows = []
    for (source, region), grp in mean.groupby(["rdm_set", "region"], sort=True):
        train = grp[grp["split"] == "train"]
        pick = best_index(train["score"].to_numpy(dtype=float))
        if pick is None:        # no layer has a defined train score: nothing to choose from
            continue
        best = train["layer"].iloc[pick]
        test = grp[(grp["split"] == "test") & (grp["layer"] == best)]["score"]
        rows.append({"rdm_set": source, "region": region, "layer": best, "score": float(test.iloc[0])})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- the report
def forgetting_report(before: nn.Module, after: nn.Module, *, task_data: Any = None, original_data: Any = None,
                      probe_sets: Sequence[Any] = ("kriegeskorte92", "algonauts2019_78"),
                      reference: str | None = "kriegeskorte92", brain: Any = None, layers: Any = None,
                      factortopy: bool | Mapping[str, Any] = True, image_size: int | None = None,
                      transform: Callable[[Tensor], Tensor] | None = None, batch_size: int = 32,
                      device: str | torch.device | None = None, max_eval_images: int | None = 2000,
                      max_probe_train: int | None = 1000, debiased: bool = True, seed: int = 0,
                      model: str | None = None, dataset: str = "task",
                      start_cache: str | os.PathLike | None = None, original_network: nn.Module | None = None,
                      previous_tasks: Sequence[PreviousTask] = (),
                      near_chance_margin: float = NEAR_CHANCE_MARGIN) -> ScoreTable:
    """What ``after`` (fine-tuned) gained on the new task and lost on old ones relative to ``before`` (its start).

    One long score table; every row's ``kind`` says what it measures (module docstring): ``new_task``
    rows are transfer, compared like with like (the same probe recipe on the start's and on the
    fine-tuned backbone's features; the fine-tuned head on rows of its own, ``finetuned_head_*``,
    with a ``warning`` when it ends below the start's probe or near chance); ``old_task`` rows are
    the forgetting (original task, earlier tasks of a chain, retention probes); ``representation``
    and ``brain`` rows are the drift and the brain-score change.

    Parameters
    ----------
    before, after: the networks (same architecture; heads may differ). Not modified.
    task_data: the new task: a data module with ``eval_dataset(split)`` (e.g.
        :class:`~neuroreg.data.EuroSATDataModule`) or ``(train, test)`` datasets of
        ``(image, label)`` already preprocessed for the models. The probes train on the train
        split (at most ``max_probe_train`` images) and are scored on the test split, as the
        head is. None skips the new-task rows.
    original_data: a dataset of ``(image, label)`` in the class space of ``original_network``
        (preprocessed), for ``original_accuracy`` and ``backward_transfer``.
    original_network: the network whose head and task ``original_data`` belong to (default:
        ``before``; in a chain of runs, the chain's first network, e.g. the ImageNet one).
    previous_tasks: earlier tasks of a chain of fine-tuning runs (:class:`PreviousTask`), for
        ``previous_task_accuracy`` per task and the chain's ``backward_transfer`` (dataset
        ``sequence``: mean change over the previous tasks and the original task if given).
        Their rows are always computed in full (not stored in ``start_cache``).
    probe_sets: image sets for drift and cRSA: bundled names, ``.npz`` stimulus files
        or :class:`~neuroreg.brain.NeuralStimulusSet` objects.
    reference: bundled set with category labels for ``retention_accuracy`` (None: skip).
    brain: voxel :class:`~neuroreg.brain.BrainData` with stimuli (veRSA; FactorTopy when it has
        ``roi`` and ``coords``), ``"simulate"`` (voxels simulated from ``before`` on the probe
        images) or None.
    layers: module names / area aliases / mapping (default: the V1/V2/V4/IT areas).
    factortopy: fit FactorTopy when ``brain`` allows it; a mapping gives its keyword arguments.
    image_size, transform: preprocessing of the probe images (default: resize to the model's
        input size and normalise with its ``pretrained_cfg``).
    max_eval_images, max_probe_train: cap the new/original task's test images and the
        probe's training images (stratified, seeded) to bound the cost.
    debiased: CKA estimator for ``cka_to_start`` (both give exactly 1 for identical features).
    model, dataset: written to the ``model`` and ``dataset`` columns.
    start_cache: a folder where the start network's side of the report (task probe, original
        accuracy, Gram matrices, cRSA and retention before fine-tuning) is stored and re-used by
        later reports from the same start with the same settings
        (:mod:`neuroreg.finetune.forgetting_cache`); the numbers are the same either way.
        The voxel rows (``brain``) are always computed in full. None: no cache.
    near_chance_margin: the fine-tuned head is flagged (``warning`` column and a logged warning)
        when its score is at most chance + this margin, or below the probe on the start.
    """
    if not 0.0 <= near_chance_margin < 1.0:
        raise ValueError(f"near_chance_margin must be in [0, 1); got {near_chance_margin}")
    dev = torch.device(device) if device is not None else next(after.parameters()).device
    # no copies: each pass puts the networks in eval mode on ``dev`` and restores every submodule's mode
    # and the device afterwards (neuroreg._utils.modes.eval_mode)
    for i, task in enumerate(previous_tasks):
        if not isinstance(task, PreviousTask):
            raise TypeError(f"previous_tasks[{i}] must be a PreviousTask; got {type(task).__name__}")
    with contextlib.ExitStack() as stack:
        for net in {id(m): m for m in (before, after, original_network, *(t.network for t in previous_tasks))
                    if m is not None}.values():
            stack.enter_context(eval_mode(net, dev))
        table = _report(before, after, dev, task_data=task_data, original_data=original_data,
                        original_network=original_network if original_network is not None else before,
                        probe_sets=probe_sets, reference=reference, brain=brain, layers=layers,
                        factortopy=factortopy, image_size=image_size, transform=transform, batch_size=batch_size,
                        max_eval_images=max_eval_images, max_probe_train=max_probe_train, debiased=debiased,
                        seed=seed, model=model, dataset=dataset, start_cache=start_cache,
                        near_chance_margin=near_chance_margin)
        table.extend(_sequence_rows(after, previous_tasks, table, batch_size, dev, max_eval_images, seed,
                                    {"model": model}))
    return ScoreTable({**row, "kind": metric_kind(row["metric"])} for row in table)


def _start_key(before: nn.Module, datasets: Mapping[str, Dataset | None], probes, layer_map, transform,
               **settings: Any) -> str | None:
    """Cache key of the start side, or None when a data set's identity cannot be established."""
    prints = {}
    for what, ds in datasets.items():
        if ds is None:
            continue
        fp = dataset_fingerprint(ds)
        if fp is None:
            log.info("forgetting report: the %s data (%s) cannot be fingerprinted; the start side is not cached",
                     what, type(ds).__name__)
            return None
        prints[what] = fp
    if transform is not None and not stable_repr(transform):
        log.info("forgetting report: the transform %r has no stable identity; the start side is not cached",
                 transform)
        return None
    probe_prints = [(name, [str(i) for i in ids], hashlib.sha256(images.contiguous().numpy().tobytes()).hexdigest())
                    for name, _data, images, ids in probes]
    return start_side_key(before, data=prints, probes=probe_prints, layers=repr(layer_map),
                          transform=repr(transform), **settings)


def _report(before: nn.Module, after: nn.Module, dev: torch.device, *, task_data: Any, original_data: Any,
            original_network: nn.Module, probe_sets: Sequence[Any], reference: str | None, brain: Any, layers: Any,
            factortopy: bool | Mapping[str, Any], image_size: int | None,
            transform: Callable[[Tensor], Tensor] | None, batch_size: int, max_eval_images: int | None,
            max_probe_train: int | None, debiased: bool, seed: int, model: str | None,
            dataset: str, start_cache: str | os.PathLike | None, near_chance_margin: float) -> ScoreTable:
    table = ScoreTable()
    base = {"model": model}
    layer_map = dict(area_layers(before)) if layers is None else layers
    probes = _probe_images(probe_sets)

    test_sub = train_sub = orig_sub = None
    if task_data is not None:
        if hasattr(task_data, "eval_dataset"):
            train_set, test_set = task_data.eval_dataset("train"), task_data.eval_dataset("test")
        else:
            train_set, test_set = task_data
        test_idx = _stratified_subset(_labels_of(test_set), max_eval_images, seed)
        train_idx = _stratified_subset(_labels_of(train_set), max_probe_train, seed + 1)
        test_sub, train_sub = Subset(test_set, test_idx.tolist()), Subset(train_set, train_idx.tolist())
    if original_data is not None:
        orig_sub = Subset(original_data, _stratified_subset(_labels_of(original_data), max_eval_images,
                                                            seed + 2).tolist())

    # ---- the start network's side: stored results (same key) or computed now and stored
    key = None
    if start_cache is not None:
        key = _start_key(before, {"task train": train_sub, "task test": test_sub, "original": orig_sub}, probes,
                         layer_map, transform, image_size=image_size, preprocess=_preprocess_spec(before, image_size),
                         reference=reference, batch_size=batch_size, device=dev.type, debiased=debiased, seed=seed,
                         original_network=(None if original_network is before or orig_sub is None
                                           else model_fingerprint(original_network)))
    cached = load_start_side(start_cache, key) if key is not None and start_cache is not None else None
    start: dict[str, Any] = cached if cached is not None else {}

    # ---- new task: the same probe on the start's and on the fine-tuned backbone's features (like with like),
    # and the fine-tuned head on its own rows
    if task_data is not None:
        if test_sub is None or train_sub is None:
            raise RuntimeError("internal: task_data without its train and test subsets")
        if cached is not None:
            ((f_train_a,), _), y_train = _embed_models([after], train_sub, batch_size, dev, seed)
            ((f_test_a,), (logits_a,)), y_test = _embed_models([after], test_sub, batch_size, dev, seed)
            _check_cached_labels(start["task"]["labels"], y_test, "new task's test", start_cache)
            pred_b = start["task"]["pred"].numpy()
        else:
            # both networks on each batch: the images are read and resized once
            ((f_train_b, f_train_a), _), y_train = _embed_models([before, after], train_sub, batch_size, dev, seed)
            ((f_test_b, f_test_a), (_, logits_a)), y_test = _embed_models([before, after], test_sub, batch_size,
                                                                          dev, seed)
            with _one_blas_thread():
                pred_b = _probe(seed).fit(f_train_b, y_train).predict(f_test_b)
            start["task"] = {"pred": torch.as_tensor(pred_b), "labels": torch.as_tensor(y_test)}
        with _one_blas_thread():
            pred_a = _probe(seed).fit(f_train_a, y_train).predict(f_test_a)
        acc_b, bal_b = _accuracies(pred_b, y_test)
        acc_a, bal_a = _accuracies(pred_a, y_test)
        chance_acc = float(np.bincount(y_test).max() / len(y_test)) if len(y_test) else 0.0
        chance_bal = 1.0 / max(1, len(np.unique(y_test)))
        common = dict(base, dataset=dataset, split="test", n_images=len(test_sub))
        probe = dict(common, layer="penultimate", read_out="probe", n_probe_train=len(train_sub))
        _stage_rows(table, acc_b, acc_a, metric="task_accuracy", chance=chance_acc, **probe)
        _stage_rows(table, bal_b, bal_a, metric="balanced_accuracy", chance=chance_bal, **probe)
        head_acc, head_bal = _accuracies(logits_a.argmax(1), y_test)
        for metric, value, probe_before, chance in ((HEAD_METRICS[0], head_acc, acc_b, chance_acc),
                                                     (HEAD_METRICS[1], head_bal, bal_b, chance_bal)):
            warning = _head_warning(value, probe_before, chance, near_chance_margin)
            if warning:
                log.warning("forgetting report (%s, %s): %s %s", model or "model", dataset, metric, warning)
            table.append(metric=metric, stage="after", score=value, layer="head", read_out="head", chance=chance,
                         probe_before=probe_before, warning=warning, **common)

    # ---- original task
    if orig_sub is not None:
        head_a = with_head_of(after, original_network)
        if cached is not None:
            (_, (logits_a,)), y = _embed_models([head_a], orig_sub, batch_size, dev, seed)
            _check_cached_labels(start["original"]["labels"], y, "original task's", start_cache)
            acc_b = float(start["original"]["accuracy"])
        else:
            (_, (logits_b, logits_a)), y = _embed_models([original_network, head_a], orig_sub, batch_size, dev,
                                                         seed)
            acc_b = float((logits_b.argmax(1) == y).mean())
            start["original"] = {"accuracy": acc_b, "labels": torch.as_tensor(y)}
        acc_a = float((logits_a.argmax(1) == y).mean())
        common = dict(base, dataset="original", split="test", layer="head", n_images=len(orig_sub))
        _stage_rows(table, acc_b, acc_a, metric="original_accuracy", **common)
        table.append(metric="backward_transfer", stage="after", score=acc_a - acc_b, **common)

    # ---- probe images: drift, cRSA, retention
    tf_b = transform or model_preprocess(before, image_size)
    tf_a = transform or model_preprocess(after, image_size)
    same_input = transform is not None or _preprocess_spec(before, image_size) == _preprocess_spec(after, image_size)
    # each probe image resized and normalised once (one resize call per set unless the caller gave a transform)
    if transform is not None:
        inputs_b = [_transformed(p[2], transform) for p in probes]
    else:
        inputs_b = [_model_input(p[2], _preprocess_spec(before, image_size)) for p in probes]
    inputs_a = inputs_b if same_input else [_model_input(p[2], _preprocess_spec(after, image_size)) for p in probes]
    passes = [("after", after, inputs_a)] if cached is not None else [("before", before, inputs_b),
                                                                       ("after", after, inputs_a)]
    feats: dict[str, list[dict[str, Tensor]]] = {"before": [], "after": []}
    embeddings: dict[str, list[np.ndarray]] = {"before": [], "after": []}
    for stage, model_, inputs in passes:
        feats[stage], embeddings[stage] = _probe_features(model_, inputs, layer_map, batch_size, dev, seed)
    if probes:
        names = "+".join(p[0] for p in probes)
        n_total = sum(len(p[3]) for p in probes)
        if cached is None:
            start["grams"] = {layer: gram(torch.cat([f[layer].flatten(1) for f in feats["before"]]).double())
                              for layer in feats["before"][0]}
        for li, layer in enumerate(feats["after"][0]):
            xa = torch.cat([f[layer].flatten(1) for f in feats["after"]]).double()
            score = float(cka_from_grams(start["grams"][layer], gram(xa), debiased=debiased))
            table.append(metric="cka_to_start", stage="after", score=score, layer=layer, layer_index=li,
                         dataset=names, split="all", n_stimuli=n_total, debiased=debiased, **base)
    crsa_before: dict[str, dict[str, list]] = start.setdefault("crsa", {})
    for i, (name, data, _images, ids) in enumerate(probes):
        if not getattr(data, "rdms", None):
            continue
        if cached is None:
            crsa_before[name] = _best_layer_scores(crsa(Features(feats["before"][i], stimulus_ids=ids), data,
                                                        progress=False), "crsa").to_dict("list")
        best_b = pd.DataFrame(crsa_before[name])
        best_a = _best_layer_scores(crsa(Features(feats["after"][i], stimulus_ids=ids), data, progress=False), "crsa")
        merged = best_b.merge(best_a, on=["rdm_set", "region"], suffixes=("_before", "_after"))
        for r in merged.itertuples():
            common = dict(base, metric="crsa", dataset=f"{name}:{r.rdm_set}", region=r.region, split="test")
            table.append(stage="before", score=r.score_before, layer=r.layer_before, **common)
            table.append(stage="after", score=r.score_after, layer=r.layer_after, **common)
            table.append(stage="change", score=r.score_after - r.score_before, **common)
    if reference is not None:
        reused = None
        for i, p in enumerate(probes):
            if p[0] == reference:
                reused = (p[3], {stage: e[i] for stage, e in embeddings.items() if e})
        rows, scores_b = _retention(before, after, reference, tf_b, tf_a, batch_size, dev, seed, base, reused,
                                    start.get("retention"))
        start["retention"] = scores_b
        table.extend(rows)
    if start_cache is not None and key is not None and cached is None:
        save_start_side(start_cache, key, start)

    # ---- voxel data
    if brain is not None:
        table.extend(_brain_rows(before, after, brain, probes, layer_map, tf_b, tf_a, batch_size, dev, factortopy,
                                 seed, base))
    return table


def _sequence_rows(after: nn.Module, tasks: Sequence[PreviousTask], table: ScoreTable, batch_size: int,
                   dev: torch.device, max_eval_images: int | None, seed: int, base: Mapping[str, Any]) -> ScoreTable:
    """Accuracy on each earlier task's test split at the end of that task and now (under its head), and the
    chain's backward transfer: mean change over those tasks and the original task when ``table`` has it."""
    out = ScoreTable()
    changes: list[float] = []
    for i, task in enumerate(tasks):
        labels = _labels_of(task.test_data)
        sub = Subset(task.test_data, _stratified_subset(labels, max_eval_images, seed + 3 + i).tolist())
        (_, (logits_b, logits_a)), y = _embed_models([task.network, with_head_of(after, task.network)], sub,
                                                     batch_size, dev, seed)
        acc_b, bal_b = _accuracies(logits_b.argmax(1), y)
        acc_a, bal_a = _accuracies(logits_a.argmax(1), y)
        common = dict(base, dataset=task.name, split="test", layer="head", n_images=len(sub), task_index=i)
        _stage_rows(out, acc_b, acc_a, metric="previous_task_accuracy", **common)
        _stage_rows(out, bal_b, bal_a, metric="previous_task_balanced_accuracy", **common)
        changes.append(acc_a - acc_b)
    if not changes:
        return out
    changes += [float(r["score"]) for r in table.filter(metric="original_accuracy", stage="change")]
    out.append(metric="backward_transfer", stage="after", score=float(np.mean(changes)), dataset="sequence",
               split="test", layer="head", n_tasks=len(changes), **base)
    return out


def _check_cached_labels(cached: Tensor, labels: np.ndarray, what: str, folder) -> None:
    if not np.array_equal(cached.numpy(), labels):
        raise DataFormatError(f"the forgetting start cache in {folder} has other labels for the {what} images than "
                              f"the data now read ({len(cached)} vs {len(labels)} images); delete the folder's "
                              f"start_*.pt files")


def _probe_features(model: nn.Module, inputs: list[Tensor], layer_map, batch_size: int, dev: torch.device,
                    seed: int) -> tuple[list[dict[str, Tensor]], list[np.ndarray]]:
    """Per probe set: features at every layer and the classifier's input (the retention probe's embedding)."""
    feats: list[dict[str, Tensor]] = []
    embeddings: list[np.ndarray] = []
    if len({tuple(x.shape[1:]) for x in inputs}) == 1:
        # every probe set at one size: one pass over all probe images, every layer and the classifier's input
        # captured in it, then split per set
        emb: list[np.ndarray] = []
        whole = _features(model, torch.cat(inputs), layer_map, None, batch_size, dev, seed, emb)
        bounds = np.cumsum([0] + [len(x) for x in inputs])
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            feats.append({k: v[lo:hi] for k, v in whole.items()})
            embeddings.append(emb[0][lo:hi])
    else:
        for x in inputs:
            feats.append(_features(model, x, layer_map, None, batch_size, dev, seed, embeddings))
    return feats, embeddings


def _retention(before, after, reference: str, tf_b, tf_a, batch_size, dev, seed, base,
               cached: tuple[np.ndarray, dict[str, np.ndarray]] | None = None,
               scores_before: Mapping[str, float] | None = None) -> tuple[ScoreTable, dict[str, float]]:
    """Cross-validated logistic probe on the reference set's category labels, before and after.

    ``cached``: (stimulus ids, stage -> embeddings in that order) from the probe-set pass, if the
    reference set was one of the probe sets. ``scores_before``: the start's scores per label set,
    stored earlier (the start network is then not run). Returns the rows and the start's scores."""
    data = load_bundled(reference)
    labels = getattr(data, "labels", None)
    if labels is None:
        raise ValueError(f"reference set {reference!r} has no category labels; use 'kriegeskorte92' or None")
    ids = np.asarray(data.stimulus_ids).astype(str)
    order = np.argsort(ids, kind="stable")
    label_sets = {"animate": labels["animate"].to_numpy()[order],
                  "category": pd.factorize(labels["category"].to_numpy()[order], sort=True)[0]}
    stages = [("after", after, tf_a)] if scores_before is not None else [("before", before, tf_b),
                                                                          ("after", after, tf_a)]
    emb: dict[str, np.ndarray]
    if cached is not None and sorted(np.asarray(cached[0]).astype(str)) == sorted(ids):
        rows = np.argsort(np.asarray(cached[0]).astype(str), kind="stable")      # cached rows in sorted-id order
        emb = {stage: cached[1][stage][rows] for stage, _m, _tf in stages}
    else:
        images = data.images_tensor()[torch.as_tensor(order)]
        emb = {stage: _embed(m, _Images(images, tf), batch_size, dev, seed)[0] for stage, m, tf in stages}
    out = ScoreTable()
    before_out: dict[str, float] = {}
    for label_name, y in label_sets.items():
        n_splits = int(min(5, np.bincount(y).min()))
        cv = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        with _one_blas_thread():
            scores = {stage: float(cross_val_score(_probe(seed), x, y, cv=cv).mean()) for stage, x in emb.items()}
        if scores_before is not None:
            scores["before"] = float(scores_before[label_name])
        before_out[label_name] = scores["before"]
        _stage_rows(out, scores["before"], scores["after"], metric="retention_accuracy",
                    dataset=f"{reference}:{label_name}", split="cv", layer="head", n_stimuli=len(y),
                    n_folds=n_splits, **base)
    return out, before_out


def _brain_rows(before, after, brain, probes, layer_map, tf_b, tf_a, batch_size, dev, factortopy, seed,
                base) -> ScoreTable:
    if isinstance(brain, str):
        if brain != "simulate":
            raise ValueError(f"brain must be BrainData, 'simulate' or None; got {brain!r}")
        if not probes:
            raise ValueError("brain='simulate' needs probe_sets to draw the stimuli from")
        size = max(p[2].shape[-1] for p in probes)
        images = torch.cat([F.interpolate(p[2], size=(size, size), mode="bilinear", align_corners=False,
                                          antialias=True).clamp(0, 1) for p in probes])
        modules = list(dict(layer_map).values()) if isinstance(layer_map, Mapping) else list(layer_map)
        ids = np.concatenate([np.asarray([f"{p[0]}:{i}" for i in p[3]]) for p in probes])
        model_input = torch.stack([tf_b(im) for im in images])      # the start network sees its own preprocessing
        brain, _truth = simulate_voxels(before, model_input, layers=modules, n_voxels=100, seed=seed,
                                        stimulus_ids=ids, batch_size=batch_size, device=dev, progress=False)
        brain.stimuli = images
    if getattr(brain, "stimuli", None) is None:
        raise ValueError("brain needs its stimulus images (BrainData(..., stimuli=images)) to score the networks")
    images = brain.images()
    ids = np.asarray(brain.stimulus_ids)
    fb = Features(_features(before, images, layer_map, tf_b, batch_size, dev, seed), stimulus_ids=ids)
    fa = Features(_features(after, images, layer_map, tf_a, batch_size, dev, seed), stimulus_ids=ids)
    out = ScoreTable()
    best = {stage: _best_layer_scores(versa(f, brain, seed=seed, progress=False), "versa")
            for stage, f in (("before", fb), ("after", fa))}
    merged = best["before"].merge(best["after"], on=["rdm_set", "region"], suffixes=("_before", "_after"))
    name = getattr(brain, "name", "brain") or "brain"
    for r in merged.itertuples():
        common = dict(base, metric="versa", dataset=name, region=r.region, split="test")
        out.append(stage="before", score=r.score_before, layer=r.layer_before, **common)
        out.append(stage="after", score=r.score_after, layer=r.layer_after, **common)
        out.append(stage="change", score=r.score_after - r.score_before, **common)
    info = getattr(brain, "unit_info", None) or {}
    has_topo = "roi" in info and "coords" in info
    if factortopy and has_topo:
        kw = {"max_epochs": 30, "seed": seed, **(dict(factortopy) if isinstance(factortopy, Mapping) else {})}
        layers = list(fb)
        fits = [FactorTopy(layers, **kw).fit(dict(f), brain) for f in (fb, fa)]
        for row in compare_factortopy(*fits, model=base.get("model")):
            out.append(**{**row, "dataset": name})
    return out
