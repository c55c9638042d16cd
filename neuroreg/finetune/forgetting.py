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
:class:`~neuroreg.scoring.FactorTopy`); nothing is re-implemented here. The parts live in
``forgetting_probes`` (new task, retention), ``forgetting_old_tasks``, ``forgetting_drift``,
``forgetting_brain``, on the passes of ``forgetting_passes``; this module assembles them.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import time
from typing import Any, Callable, ContextManager, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset, Subset

from neuroreg._utils.modes import eval_mode
from neuroreg.models import area_layers
from neuroreg.results.table import ScoreTable
from neuroreg.finetune.forgetting_brain import crsa_rows, voxel_rows
from neuroreg.finetune.forgetting_cache import (dataset_fingerprint, load_start_side, model_fingerprint,
                                               save_start_side, stable_repr, start_side_key)
from neuroreg.finetune.forgetting_drift import cka_rows
from neuroreg.finetune.forgetting_old_tasks import original_rows, sequence_rows
from neuroreg.finetune.forgetting_passes import (ProbeSet, labels_of, model_preprocess, probe_features, probe_images,
                                                 stratified_subset, transformed, with_head_of)
from neuroreg.finetune.forgetting_probes import new_task_rows, retention_rows
from neuroreg.finetune.forgetting_rows import (HEAD_METRICS, KINDS, NEAR_CHANCE_MARGIN, PreviousTask, ReportSettings,
                                               metric_kind)

# the names a caller of the report needs (defined in the part modules) are its public face here too
__all__ = ["PreviousTask", "forgetting_report", "model_preprocess", "with_head_of", "metric_kind", "KINDS",
           "HEAD_METRICS", "NEAR_CHANCE_MARGIN"]

log = logging.getLogger(__name__)


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
                      near_chance_margin: float = NEAR_CHANCE_MARGIN,
                      say: Callable[[str], None] | None = None) -> ScoreTable:
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
    image_size, transform: preprocessing of the probe images (default: each model's own contract,
        :func:`~neuroreg.data.preprocessing.preprocessing_of`: its input size or ``image_size``,
        its interpolation, its mean/std).
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
    say: where each section of the report says when it starts and how many seconds it took
        (e.g. ``print``; ``neuroreg finetune`` passes Lightning's ``rank_zero_info``); None: the module's
        logger at INFO level.
    """
    dev = torch.device(device) if device is not None else next(after.parameters()).device
    s = ReportSettings(device=dev, batch_size=batch_size, seed=seed, image_size=image_size, transform=transform,
                       max_eval_images=max_eval_images, max_probe_train=max_probe_train, debiased=debiased,
                       reference=reference, factortopy=factortopy, near_chance_margin=near_chance_margin,
                       model=model, dataset=dataset, start_cache=start_cache)
    for i, task in enumerate(previous_tasks):
        if not isinstance(task, PreviousTask):
            raise TypeError(f"previous_tasks[{i}] must be a PreviousTask; got {type(task).__name__}")
    original = original_network if original_network is not None else before
    # no copies: each pass puts the networks in eval mode on ``dev`` and restores every submodule's mode
    # and the device afterwards (neuroreg._utils.modes.eval_mode)
    with contextlib.ExitStack() as stack:
        for net in {id(m): m for m in (before, after, original, *(t.network for t in previous_tasks))}.values():
            stack.enter_context(eval_mode(net, dev))
        layer_map = dict(area_layers(before)) if layers is None else layers
        probes = probe_images(probe_sets)
        train, test = _task_subsets(task_data, s)
        original_sub = _original_subset(original_data, s)
        key = _start_key(before, original, {"task train": train, "task test": test, "original": original_sub},
                         probes, layer_map, s)
        cached = load_start_side(start_cache, key) if key is not None and start_cache is not None else None
        start: dict[str, Any] = cached if cached is not None else {}
        stored = cached is not None
        side = "fine-tuned network only: the start's side from the cache" if stored else "both networks"
        step = _stages(say, f"forgetting report ({side})")
        table = _cached_side_rows(before, after, original, (train, test, original_sub), probes, layer_map, start,
                                  stored, step, s)
        if start_cache is not None and key is not None and not stored:
            save_start_side(start_cache, key, start)
        if brain is not None:
            with step("voxel data: veRSA and FactorTopy"):
                table.extend(voxel_rows(before, after, brain, probes, layer_map, _transforms(before, after, s), s))
        chain_step = step(f"{len(previous_tasks)} earlier task(s) of the chain") if previous_tasks else None
        with chain_step or contextlib.nullcontext():
            table.extend(sequence_rows(after, previous_tasks, table, s))
    return ScoreTable({**row, "kind": metric_kind(row["metric"])} for row in table)


def _cached_side_rows(before: nn.Module, after: nn.Module, original: nn.Module,
                      subsets: tuple[Subset | None, Subset | None, Subset | None], probes: list[ProbeSet],
                      layer_map: Any, start: dict[str, Any], stored: bool,
                      step: Callable[[str], ContextManager[None]], s: ReportSettings) -> ScoreTable:
    """The sections whose start side ``start_cache`` can hold: new task, original task, probe images."""
    train, test, original_sub = subsets
    table = ScoreTable()
    if train is not None and test is not None:
        with step("new task: probes and the fine-tuned head"):
            table.extend(new_task_rows(before, after, train, test, start, stored, s))
    if original_sub is not None:
        with step("original task"):
            table.extend(original_rows(after, original, original_sub, start, stored, s))
    with step(f"probe images ({', '.join(p[0] for p in probes) or 'none'}): drift, cRSA, retention"):
        table.extend(_probe_set_rows(before, after, probes, layer_map, start, stored, s))
    return table


def _stages(say: Callable[[str], None] | None, prefix: str) -> Callable[[str], ContextManager[None]]:
    """``step(label)``: a block that says ``"<prefix>: <label> ..."`` and then its seconds (the report can take
    minutes of forward passes; a user must tell a slow report from a hung one)."""
    tell = say if say is not None else log.info

    @contextlib.contextmanager
    def step(label: str) -> Iterator[None]:
        tell(f"{prefix}: {label} ...")
        tic = time.perf_counter()
        yield
        tell(f"{prefix}: {label} done in {time.perf_counter() - tic:.1f} s")
    return step


def _task_subsets(task_data: Any, s: ReportSettings) -> tuple[Subset | None, Subset | None]:
    """(probe training images, test images) of the new task, each capped (stratified, seeded); None without one."""
    if task_data is None:
        return None, None
    if hasattr(task_data, "eval_dataset"):
        train_set, test_set = task_data.eval_dataset("train"), task_data.eval_dataset("test")
    else:
        train_set, test_set = task_data
    test_idx = stratified_subset(labels_of(test_set), s.max_eval_images, s.seed)
    train_idx = stratified_subset(labels_of(train_set), s.max_probe_train, s.seed + 1)
    return Subset(train_set, train_idx.tolist()), Subset(test_set, test_idx.tolist())


def _original_subset(original_data: Dataset | None, s: ReportSettings) -> Subset | None:
    """The original task's test images, capped (stratified, seeded); None without them."""
    if original_data is None:
        return None
    return Subset(original_data, stratified_subset(labels_of(original_data), s.max_eval_images, s.seed + 2).tolist())


def _start_key(before: nn.Module, original: nn.Module, datasets: Mapping[str, Dataset | None],
               probes: list[ProbeSet], layer_map: Any, s: ReportSettings) -> str | None:
    """Cache key of the start side, or None without a cache or when a data set's identity cannot be established."""
    if s.start_cache is None:
        return None
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
    if s.transform is not None and not stable_repr(s.transform):
        log.info("forgetting report: the transform %r has no stable identity; the start side is not cached",
                 s.transform)
        return None
    probe_prints = [(name, [str(i) for i in ids], hashlib.sha256(images.contiguous().numpy().tobytes()).hexdigest())
                    for name, _data, images, ids in probes]
    return start_side_key(before, data=prints, probes=probe_prints, layers=repr(layer_map),
                          transform=repr(s.transform), image_size=s.image_size,
                          preprocess=model_preprocess(before, s.image_size).to_dict(), reference=s.reference,
                          batch_size=s.batch_size, device=s.device.type, debiased=s.debiased, seed=s.seed,
                          original_network=(None if original is before or datasets.get("original") is None
                                            else model_fingerprint(original)))


def _transforms(before: nn.Module, after: nn.Module, s: ReportSettings) -> tuple[Callable[[Tensor], Tensor], ...]:
    """The (before, after) networks' preprocessing of one ``(3, H, W)`` image: the caller's or each model's own."""
    return (s.transform or model_preprocess(before, s.image_size), s.transform or model_preprocess(after, s.image_size))


def _probe_inputs(before: nn.Module, after: nn.Module, probes: list[ProbeSet],
                  s: ReportSettings) -> tuple[list[Tensor], list[Tensor]]:
    """Each probe set preprocessed for ``before`` and for ``after`` (one resize call per set and network, and
    one only when both networks take the same input)."""
    if s.transform is not None:
        inputs_b = [transformed(p[2], s.transform) for p in probes]
        return inputs_b, inputs_b
    prep_b, prep_a = model_preprocess(before, s.image_size), model_preprocess(after, s.image_size)
    inputs_b = [prep_b(p[2]) for p in probes]
    return inputs_b, (inputs_b if prep_a == prep_b else [prep_a(p[2]) for p in probes])


def _probe_set_rows(before: nn.Module, after: nn.Module, probes: list[ProbeSet], layer_map: Any,
                    start: dict[str, Any], stored: bool, s: ReportSettings) -> ScoreTable:
    """Drift, cRSA and retention rows: the probe images' layer features and penultimate features come from one
    pass per network (the start's only when its side is not ``stored``)."""
    inputs_b, inputs_a = _probe_inputs(before, after, probes, s)
    passes = [("after", after, inputs_a)] if stored else [("before", before, inputs_b), ("after", after, inputs_a)]
    feats: dict[str, list[dict[str, Tensor]]] = {"before": [], "after": []}
    embeddings: dict[str, list[np.ndarray]] = {"before": [], "after": []}
    for stage, net, inputs in passes:
        feats[stage], embeddings[stage] = probe_features(net, inputs, layer_map, s.batch_size, s.device, s.seed)
    table = ScoreTable()
    table.extend(cka_rows(probes, feats, start, stored, s))
    table.extend(crsa_rows(probes, feats, start, stored, s))
    if s.reference is not None:
        reused = None
        for i, p in enumerate(probes):
            if p[0] == s.reference:
                reused = (p[3], {stage: e[i] for stage, e in embeddings.items() if e})
        rows, start["retention"] = retention_rows(before, after, _transforms(before, after, s), s.reference, s,
                                                  reused, start.get("retention"))
        table.extend(rows)
    return table
