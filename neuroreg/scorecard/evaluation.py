"""The scorecard: task accuracy, adversarial and corruption robustness, and brain scores for one or more models.

>>> import neuroreg as nr
>>> card = nr.evaluate({"cornet_z": m1, "vone_cornet_s": m2}, task_data=val_set,
...                    brain_sets=["kriegeskorte92"], attacks=["pgd"])
>>> card.summary()                 # one row per model
>>> card.save("results/compare")   # report.html, report.md, CSV/JSON, figures, TensorBoard

``nr.evaluate`` is :func:`evaluate`; the helpers (:func:`accuracy`,
:func:`brain_scores`, :func:`summarize_brain`) are importable from this module
(``from neuroreg.scorecard.evaluation import brain_scores``); :func:`summarize_brain` is defined in
:mod:`neuroreg.scorecard.summary`, whose summary row uses it.

Every model sees its own preprocessing contract
(:func:`neuroreg.data.preprocessing.preprocessing_of`): task images in [0, 1] are
normalised inside, brain stimuli resized and normalised the same way.

Progress: :func:`evaluate` shows one bar over its (model, section) steps when
``progress`` is true (default: on a terminal only, like every neuroreg function
with a ``progress`` argument), and logs a line at the start and end of every
step (model, section, seconds) on the ``neuroreg.scorecard.evaluation`` logger at INFO level,
silent unless a handler is configured (``logging.basicConfig(level="INFO")``).
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from neuroreg._utils.modes import eval_mode
from neuroreg.scoring.classification import balanced_accuracy_from_confusion, confusion_matrix, topk_accuracy
from neuroreg.brain import BrainData, NeuralStimulusSet, bundled_sets, load_algonauts2023, load_bundled, load_nsd
from neuroreg.errors import UnknownNameError
from neuroreg.features.extraction import extract
from neuroreg.features.layers import LayerSweep, sweep_layers
from neuroreg.data.preprocessing import preprocessing_of
from neuroreg.robustness import attack_suite, corruption_suite
from neuroreg.robustness._data import as_loader
from neuroreg.scorecard.behaviour import BehaviourOptions, behaviour_scores
from neuroreg.scorecard.behaviour_data import BrainScoreCache, is_brainio_entry, load_brainscore_cache
from neuroreg.scorecard.card import Scorecard
from neuroreg.scorecard.human_alignment import human_alignment_ran_on, score_human_alignment
from neuroreg.scorecard.summary import SECTIONS, summarize_brain
from neuroreg.scoring import FactorTopy, crsa, predictivity, rdm, versa
from neuroreg.results.table import ScoreTable

__all__ = ["Scorecard", "evaluate", "accuracy", "brain_scores", "factortopy_scores", "resolve_brain_set",
           "summarize_brain", "SECTIONS"]

_log = logging.getLogger(__name__)


def resolve_brain_set(item) -> NeuralStimulusSet | BrainData:
    """A bundled set name, ``"nsd:ROOT"`` / ``"algonauts2023:ROOT"`` (subject 1, images loaded),
    a NeuralStimulusSet or a BrainData with stimulus images. (``"brainio:DIR"``, a Brain-Score
    cache, is the behaviour section's: :func:`evaluate` routes it there.)"""
    if is_brainio_entry(item):
        raise ValueError(f"{item!r} is a Brain-Score cache: the behaviour section reads it (nr.evaluate routes "
                         "brainio:DIR entries of brain_sets there); it is not a brain set of the brain section")
    if isinstance(item, str):
        kind, sep, root = item.partition(":")
        if sep and kind == "nsd":
            return load_nsd(root, load_images=True)
        if sep and kind == "algonauts2023":
            return load_algonauts2023(root, load_images=True)
        if item not in bundled_sets():
            raise UnknownNameError(f"unknown brain set {item!r}; bundled sets: {sorted(bundled_sets())}, or "
                                   "nsd:ROOT / algonauts2023:ROOT for voxel data, or brainio:DIR for a Brain-Score "
                                   "cache (the behaviour section)")
        return load_bundled(item)
    if isinstance(item, (NeuralStimulusSet, BrainData)):
        return item
    raise TypeError(f"brain sets must be names, NeuralStimulusSet or BrainData; got {type(item).__name__}")


def _device_of(model: nn.Module, device) -> torch.device:
    if device is not None:
        return torch.device(device)
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


@torch.no_grad()
def accuracy(model: nn.Module, data, *, topk: Sequence[int] = (1, 5), mean=None, std=None,
             batch_size: int = 64, device=None, model_name: str = "model", max_batches: int | None = None,
             balanced: bool = True) -> ScoreTable:
    """Top-k accuracy (and balanced top-1: mean per-class recall) on ``data``.

    data: Dataset/DataLoader of ``(image (3, H, W) in [0, 1], label)`` or a tuple
        ``(images, labels)``. Images are normalised inside with the model's
        contract (``mean``/``std`` override it).
    Rows: metric ``top{k}`` for each k not above the number of classes, and
    ``balanced_top1``; split ``"test"``.
    """
    prep = preprocessing_of(model, mean=mean, std=std)
    loader = as_loader(data, batch_size)
    dev = _device_of(model, device)
    correct = {k: 0 for k in topk}
    confusion: torch.Tensor | None = None
    n = 0
    n_classes: int | None = None
    with eval_mode(model):
        for i, (x, y) in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                break
            x, y = x.to(dev), torch.as_tensor(y).to(dev)
            logits = model(prep.normalize(x))
            n_classes = logits.shape[1]
            if int(y.max()) >= n_classes or int(y.min()) < 0:
                raise ValueError(f"labels must be in [0, {n_classes - 1}] for a model with {n_classes} outputs; "
                                 f"got labels in [{int(y.min())}, {int(y.max())}]")
            for k in topk:
                correct[k] += round(float(topk_accuracy(logits, y, k)) * y.shape[0])
            conf = confusion_matrix(logits, y).cpu()
            confusion = conf if confusion is None else confusion + conf
            n += y.shape[0]
    if n == 0 or confusion is None or n_classes is None:   # a batch with images sets all three
        raise ValueError("data is empty: no images to evaluate")
    table = ScoreTable()
    for k in topk:
        if k <= n_classes:
            table.append(model=model_name, metric=f"top{k}", split="test", score=correct[k] / n, n_images=n)
    if balanced:
        table.append(model=model_name, metric="balanced_top1", split="test",
                     score=float(balanced_accuracy_from_confusion(confusion)), n_images=n,
                     n_classes_seen=int((confusion.sum(1) > 0).sum()))
    return table


def _with_depth(table: ScoreTable, sweep: LayerSweep, dataset: str) -> ScoreTable:
    out = ScoreTable()
    for row in table:
        row["dataset"] = dataset
        if row.get("layer") in sweep.depth:
            row["depth"] = sweep.depth[row["layer"]]
        out.append(**row)
    return out


def brain_scores(model: nn.Module, brain_sets: Sequence = ("kriegeskorte92",), *,
                 layers: str | Sequence[str] | Mapping[str, str] | None = "all", max_layers: int | None = None,
                 image_size: int | None = None, mean=None, std=None, batch_size: int = 32, device=None,
                 model_name: str = "model", seed: int = 0, metrics: Sequence[str] = ("crsa", "versa", "predictivity"),
                 notes: dict | None = None, rdms: dict | None = None, progress: bool | None = None) -> ScoreTable:
    """Brain scores of ``model`` over a layer sweep, best layer picked on the train split, reported on test.

    brain_sets: bundled names, ``nsd:ROOT``/``algonauts2023:ROOT``, NeuralStimulusSets
        (scored with cRSA against every RDM set they hold) or BrainData with images
        (voxel data: veRSA and encoding predictivity, whichever ``metrics`` name).
    layers: ``"all"`` (every block/stage output, :func:`neuroreg.features.layers.sweep_layers`),
        ``"areas"``, module names, or a dict label -> module. ``max_layers`` caps the
        sweep with even spacing. Rows carry ``depth``: the layer's relative depth in [0, 1].
    notes: optional dict filled with one sentence per data set saying what was run.
    rdms: optional dict filled with ``dataset -> (layer, model RDM (n, n))`` at the best
        test layer of the first RDM set, for figures.
    """
    prep = preprocessing_of(model, image_size, mean=mean, std=std)
    sweep = sweep_layers(model, layers, max_layers=max_layers)
    table = ScoreTable()
    for item in brain_sets:
        data = resolve_brain_set(item)
        images = data.images_tensor()
        if isinstance(data, NeuralStimulusSet):
            feats = extract(model, images, sweep.layers, batch_size=batch_size, device=device, transform=prep,
                            stimulus_ids=data.stimulus_ids, progress=progress)
            part = _with_depth(crsa(feats, data, model=model_name, seed=seed, progress=progress), sweep, data.name)
            table.extend(part)
            if notes is not None:
                notes[data.name] = (f"cRSA on {data.name}: {len(data.stimulus_ids)} stimuli, RDM sets "
                                    f"{', '.join(data.rdms)}; {len(sweep)} layers ({sweep.source}) at "
                                    f"{prep.image_size} px; best layer per subject chosen on the train half, "
                                    "reported on the test half.")
            if rdms is not None and len(part):
                best = part.best(("dataset", "rdm_set", "region"))
                if len(best):
                    layer = best[0]["layer"]
                    x = feats[layer].flatten(1).double()
                    rdms[data.name] = (layer, np.asarray(rdm(x, metric="correlation")),
                                       next(iter(data.rdms.values())).rdms.mean(0), next(iter(data.rdms)))
            continue
        # voxel data: features reduced by a seeded sparse random projection (veRSA's own step), bounded memory
        feats = extract(model, images, sweep.layers, batch_size=batch_size, device=device, transform=prep,
                        stimulus_ids=data.stimulus_ids, pool="srp", seed=seed, progress=progress)
        ran = []
        if "versa" in metrics:
            table.extend(_with_depth(versa(feats, data, srp_dim=None, model=model_name, seed=seed,
                                           progress=progress), sweep, data.name))
            ran.append("veRSA")
        if "predictivity" in metrics:
            table.extend(_with_depth(predictivity(feats, data, srp_dim=None, model=model_name, seed=seed,
                                                  progress=progress), sweep, data.name))
            ran.append("encoding predictivity (10 splits, ceiling where repeats exist)")
        if notes is not None:
            notes[data.name] = (f"{' and '.join(ran) or 'nothing'} on {data.name}: {data.n_stimuli} stimuli x "
                                f"{data.n_units} units; {len(sweep)} layers ({sweep.source}) at {prep.image_size} px, "
                                "sparse random projection to 5,920 dims; veRSA best layer chosen on the train half, "
                                "reported on the test half.")
    return table


def factortopy_scores(model: nn.Module, brain: BrainData, *, layers=None, max_layers: int = 6,
                      image_size: int | None = None, model_name: str = "model", seed: int = 0, device=None,
                      fit_kwargs: Mapping[str, Any] | None = None, batch_size: int = 32,
                      maps_memory: int = 2 ** 31, progress: bool | None = None):
    """Fit :class:`~neuroreg.scoring.FactorTopy` on voxel data; returns (summary ScoreTable, fitted FactorTopy).

    layers: default the layer sweep capped at ``max_layers`` evenly spaced layers
    (FactorTopy reads spatial maps of every layer, so it takes a handful).

    The layers' maps are extracted once (:func:`neuroreg.extract`, ``batch_size`` images
    at a time, ``seed`` seeding the noise of stochastic models) and the fit reads them
    from memory, instead of running the network again for every batch of every epoch:
    the same numbers for a deterministic network at a fraction of the cost. A stochastic
    network's stimuli keep one noise draw each, the draw its brain-score sweep sees.
    When the maps of all stimuli would take more than ``maps_memory`` bytes (float32; e.g.
    NSD-sized stimulus sets at full resolution), the fit runs the network batch by batch
    instead (every epoch), so only the preprocessed images and a batch of maps are held.
    """
    prep = preprocessing_of(model, image_size)
    sweep = sweep_layers(model, layers if layers is not None else "all", max_layers=max_layers)
    names = list(sweep.layers.values())
    images = brain.images_tensor()
    one = extract(model, images[:1], names, batch_size=1, device=device, transform=prep, seed=seed, progress=False)
    needed = len(images) * sum(int(np.prod(one[name].shape[1:])) for name in names) * 4
    ft = FactorTopy(names, random_state=seed, device=device, progress=progress, **dict(fit_kwargs or {}))
    if needed <= maps_memory:
        feats = extract(model, images, names, batch_size=batch_size, device=device, transform=prep,
                        stimulus_ids=brain.stimulus_ids, seed=seed, progress=progress)
        ft.fit({name: feats[name] for name in names}, brain)
    else:
        ft.fit(model, brain, stimuli=prep(images))
    table = ScoreTable()
    for row in ft.summary(model=model_name):
        row["dataset"] = brain.name
        table.append(**row)
    return table, ft


def _as_models(model_or_models, model_name) -> dict[str, nn.Module]:
    if isinstance(model_or_models, nn.Module):
        name = model_name or getattr(model_or_models, "pretrained_cfg", {}).get("architecture") \
            or type(model_or_models).__name__
        return {str(name): model_or_models}
    if isinstance(model_or_models, Mapping):
        models = dict(model_or_models)
    elif isinstance(model_or_models, (list, tuple)):
        models = {}
        for m in model_or_models:
            if not isinstance(m, nn.Module):
                raise TypeError(f"models must be nn.Modules; got {type(m).__name__}")
            base = getattr(m, "pretrained_cfg", {}).get("architecture") or type(m).__name__
            name, k = str(base), 2
            while name in models:
                name, k = f"{base}#{k}", k + 1
            models[name] = m
    else:
        raise TypeError("model_or_models must be an nn.Module, a list of them or a dict name -> module; "
                        f"got {type(model_or_models).__name__}")
    if not models:
        raise ValueError("no models to evaluate")
    for name, m in models.items():
        if not isinstance(m, nn.Module):
            raise TypeError(f"model {name!r} must be an nn.Module; got {type(m).__name__}")
    return models


def _describe_task(data) -> str:
    n: int | str
    try:
        n = len(data[0]) if isinstance(data, tuple) else len(data.dataset if hasattr(data, "dataset") else data)
    except TypeError:
        n = "?"
    return f"{n} labelled images ({type(data).__name__})"


def evaluate(model_or_models, task_data=None, brain_sets: Sequence = ("kriegeskorte92",), *,
             sections: Sequence[str] | None = None, attacks: Sequence[str] | None = ("pgd",),
             eps: Sequence[float] | None = None, norm: str = "Linf",
             corruptions: str | Sequence[str] | None = None, severities: Sequence[int] = (1, 2, 3, 4, 5),
             layers="all", max_layers: int | None = None, image_size: int | None = None,
             model_name: str | None = None, device=None, batch_size: int = 64, seed: int = 0,
             attack_kwargs: Mapping[str, Any] | None = None, corruption_kwargs: Mapping[str, Any] | None = None,
             factortopy_kwargs: Mapping[str, Any] | None = None, factortopy_image_size: int | None = None,
             behaviour: Mapping[str, Any] | None = None, human_alignment=None,
             progress: bool | None = None) -> Scorecard:
    """Score one model or several side by side: task, attacks, corruptions, brain.

    model_or_models: an ``nn.Module``, a list of them, or a dict name -> module.
    task_data: Dataset/DataLoader of ``(image in [0, 1], label)`` or ``(images, labels)``;
        needed for accuracy, attacks and corruptions.
    brain_sets: bundled names (cRSA), ``nsd:ROOT``/``algonauts2023:ROOT`` or BrainData
        (veRSA, encoding predictivity, FactorTopy when voxels have cortical coordinates),
        and ``brainio:DIR``: a Brain-Score cache folder, scored by the behaviour section
        (I2n and Brain-Score's composite, :mod:`neuroreg.scorecard.behaviour`).
    sections: subset of :data:`neuroreg.scorecard.card.SECTIONS` ("accuracy", "attacks",
        "corruptions", "brain", "behaviour", "factortopy", "human_alignment"); default every
        section whose inputs are given (attacks when ``attacks``, corruptions when ``corruptions``,
        human alignment when ``human_alignment``).
    behaviour: options of the behaviour section: ``fitting`` (identifier of the read-out's
        fitting stimulus set), ``neural`` / ``behaviour`` (assembly identifiers when the cache
        holds several), ``time_bin``, and the fields of
        :class:`~neuroreg.scorecard.behaviour.BehaviourOptions` (``readout_layer``,
        ``number_of_trials``, ``neural_trials``, ``brainscore_version``, ``repetitions``).
    human_alignment: ClickMe human-importance maps for the human-alignment section: a ClickMe
        root (its ``val`` split) or a Dataset/DataLoader of ``(image, heatmap[, token], label)``
        (:func:`neuroreg.scoring.human_alignment`; the released explainer and ceiling).
    layers, max_layers: the layer sweep for brain scores (see :func:`brain_scores`).
    image_size: run brain stimuli at this size instead of the model's own.
    factortopy_kwargs: :class:`~neuroreg.scoring.FactorTopy` options (``max_epochs``, ``d``, ...).
    factortopy_image_size: FactorTopy's stimulus size (default ``image_size``). FactorTopy
        blurs every layer's full spatial maps in every epoch, so its cost grows with the
        square of the image side: half the side costs about a sixth (measured in the demo).
    progress: one bar over the (model, section) steps, and the scorers' own bars
        (default: on a terminal only); every step is also logged (module docstring).

    Returns a :class:`Scorecard` whose tables carry a ``model`` column; each
    section records what it was run on (:attr:`Scorecard.ran_on`).
    """
    models = _as_models(model_or_models, model_name)
    plan = _plan(task_data, brain_sets, sections, attacks, corruptions, behaviour, human_alignment)
    opts = _Options(attacks=list(attacks or []), eps=eps, norm=norm, corruptions=corruptions, severities=severities,
                    layers=layers, max_layers=max_layers, image_size=image_size, device=device,
                    batch_size=batch_size, seed=seed, attack_kwargs=dict(attack_kwargs or {}),
                    corruption_kwargs=dict(corruption_kwargs or {}), factortopy_kwargs=factortopy_kwargs,
                    factortopy_image_size=factortopy_image_size if factortopy_image_size is not None else image_size,
                    behaviour=_behaviour_options(behaviour, seed), progress=progress)
    card = Scorecard(models=list(models))
    steps = _Steps(len(models) * len(plan.steps), progress)
    with contextlib.ExitStack() as stack:
        stack.callback(steps.close)
        for name, model in models.items():
            stack.enter_context(eval_mode(model))  # each model back in its own modes at the end
            card.preprocessing[name] = preprocessing_of(model, image_size).to_dict()
            _score_task(card, steps, name, model, task_data, plan, opts)
            _score_brain(card, steps, name, model, plan, opts)
            _score_behaviour(card, steps, name, model, plan, opts)
            _score_factortopy(card, steps, name, model, plan, opts)
            _score_human_alignment(card, steps, name, model, human_alignment, plan, opts)
    return card


@dataclass(frozen=True)
class _Plan:
    """What :func:`evaluate` runs: the sections wanted, the brain sets resolved, and the steps in order."""

    wanted: frozenset[str]
    brain_sets: list            # NeuralStimulusSet or BrainData
    voxel_sets: list            # BrainData with cortical coordinates: FactorTopy's input
    no_coords: list[str]        # names of voxel sets without coordinates
    caches: list[BrainScoreCache]   # Brain-Score caches: the behaviour section's input
    steps: list[str]


@dataclass(frozen=True)
class _Options:
    """:func:`evaluate`'s settings, as the section runners read them."""

    attacks: list[str]
    eps: Sequence[float] | None
    norm: str
    corruptions: str | Sequence[str] | None
    severities: Sequence[int]
    layers: Any
    max_layers: int | None
    image_size: int | None
    device: Any
    batch_size: int
    seed: int
    attack_kwargs: dict
    corruption_kwargs: dict
    factortopy_kwargs: Mapping[str, Any] | None
    factortopy_image_size: int | None
    behaviour: BehaviourOptions
    progress: bool | None


_CACHE_KEYS = ("fitting", "neural", "behaviour", "time_bin")


def _behaviour_options(options: Mapping[str, Any] | None, seed: int) -> BehaviourOptions:
    fields = set(BehaviourOptions.__dataclass_fields__)
    unknown = set(options or {}) - fields - set(_CACHE_KEYS)
    if unknown:
        raise ValueError(f"behaviour options {sorted(unknown)} are unknown; choose among "
                         f"{sorted(fields | set(_CACHE_KEYS))}")
    kept = {k: v for k, v in (options or {}).items() if k in fields and v is not None}
    return BehaviourOptions(**{"seed": seed, **kept})


def _plan(task_data, brain_sets, sections, attacks, corruptions, behaviour=None, human_alignment=None) -> _Plan:
    wanted = set(sections) if sections is not None else {
        "accuracy", "brain", "behaviour", "factortopy", *(["attacks"] if attacks else []),
        *(["corruptions"] if corruptions else []), *(["human_alignment"] if human_alignment is not None else [])}
    unknown = wanted - set(SECTIONS)
    if unknown:
        raise ValueError(f"unknown sections {sorted(unknown)}; choose among {list(SECTIONS)}")
    if "human_alignment" in wanted and human_alignment is None:
        raise ValueError("section 'human_alignment' needs ClickMe maps: human_alignment=DIR (--human-alignment DIR)")
    if task_data is None and wanted & {"accuracy", "attacks", "corruptions"} and sections is not None:
        raise ValueError(f"sections {sorted(wanted & {'accuracy', 'attacks', 'corruptions'})} need task_data")
    caches_named = [b for b in (brain_sets or ()) if is_brainio_entry(b)]
    if "behaviour" in wanted and sections is not None and not caches_named:
        raise ValueError("section 'behaviour' needs a Brain-Score cache: brain_sets=['brainio:DIR'] (--brain "
                         "brainio:DIR)")
    where = {k: v for k, v in (behaviour or {}).items() if k in _CACHE_KEYS and v is not None}
    caches = [load_brainscore_cache(b, **where) for b in caches_named] if "behaviour" in wanted else []
    named = [b for b in (brain_sets or ()) if not is_brainio_entry(b)]
    resolved = [resolve_brain_set(b) for b in named] if wanted & {"brain", "factortopy"} else []
    voxel_sets = [b for b in resolved if isinstance(b, BrainData) and "coords" in b.unit_info]
    no_coords = [b.name for b in resolved if isinstance(b, BrainData) and "coords" not in b.unit_info]
    steps: list[str] = [s for s in ("accuracy", "attacks", "corruptions") if task_data is not None and s in wanted
                        and (s != "attacks" or attacks) and (s != "corruptions" or corruptions)]
    steps += [f"brain {_set_name(b)}" for b in resolved] if "brain" in wanted else []
    steps += [f"behaviour {c.root.name}" for c in caches]
    steps += [f"factortopy {b.name}" for b in voxel_sets] if "factortopy" in wanted else []
    steps += ["human alignment"] if "human_alignment" in wanted else []
    return _Plan(frozenset(wanted), resolved, voxel_sets, no_coords, caches, steps)


def _eps_text(table: ScoreTable, norm: str) -> str:
    budgets = sorted({r["eps"] for r in table if r.get("eps") is not None})
    return ", ".join(f"{e * 255:.3g}/255" if norm == "Linf" else f"{e:.3g}" for e in budgets)


def _score_task(card: Scorecard, steps: "_Steps", name: str, model: nn.Module, task_data, plan: _Plan,
                opts: _Options) -> None:
    """Accuracy, attacks and corruptions of one model on the task images, as the plan says."""
    if "accuracy" in plan.steps:
        with steps.step(name, "accuracy"):
            card.add("accuracy", accuracy(model, task_data, batch_size=opts.batch_size, device=opts.device,
                                          model_name=name),
                     ran_on={name: f"{_describe_task(task_data)}; top-1/top-5 and balanced top-1"})
    if "attacks" in plan.steps and opts.attacks:
        with steps.step(name, "attacks", ", ".join(opts.attacks)):
            table: ScoreTable = attack_suite(model, task_data, attacks=opts.attacks, eps=opts.eps, norm=opts.norm,
                                             batch_size=opts.batch_size, seed=opts.seed, model_name=name,
                                             **opts.attack_kwargs)
        stochastic = any(r.get("attack") == "eotpgd" for r in table)
        card.add("attacks", table, ran_on={name: (
            f"{_describe_task(task_data)}; {', '.join(opts.attacks)} ({opts.norm}), eps {_eps_text(table, opts.norm)}"
            f"{'; stochastic model: EOT-PGD added' if stochastic else ''}"
            f"{'; sanity checks run' if opts.attack_kwargs.get('sanity', True) else '; no sanity checks'}")})
    if "corruptions" in plan.steps and opts.corruptions:
        with steps.step(name, "corruptions"):
            table = corruption_suite(model, task_data, corruptions=opts.corruptions, severities=opts.severities,
                                     batch_size=opts.batch_size, seed=opts.seed, model_name=name,
                                     **opts.corruption_kwargs)
        names = sorted({r["corruption"] for r in table if r.get("corruption") not in (None, "none")})
        card.add("corruptions", table, ran_on={name: (
            f"{_describe_task(task_data)}; {len(names)} corruptions x severities "
            f"{', '.join(map(str, opts.severities))}")})


def _score_brain(card: Scorecard, steps: "_Steps", name: str, model: nn.Module, plan: _Plan, opts: _Options) -> None:
    """Brain scores of one model on every brain set, with the RDMs of its best layers for the report."""
    if not plan.brain_sets or "brain" not in plan.wanted:
        return
    notes: dict[str, str] = {}
    rdms: dict = {}
    table = ScoreTable()
    for data in plan.brain_sets:
        with steps.step(name, f"brain {_set_name(data)}"):
            table.extend(brain_scores(model, [data], layers=opts.layers, max_layers=opts.max_layers,
                                      image_size=opts.image_size, batch_size=opts.batch_size, device=opts.device,
                                      model_name=name, seed=opts.seed, notes=notes, rdms=rdms,
                                      progress=opts.progress))
    card.add("brain", table, ran_on={name: " ".join(notes.values())})
    for ds, value in rdms.items():
        card.rdms[(name, ds)] = value


def _score_behaviour(card: Scorecard, steps: "_Steps", name: str, model: nn.Module, plan: _Plan,
                     opts: _Options) -> None:
    """I2n and Brain-Score's composite of one model on every Brain-Score cache (:mod:`neuroreg.scorecard.behaviour`)."""
    for cache in plan.caches:
        with steps.step(name, f"behaviour {cache.root.name}"):
            table, note = behaviour_scores(model, cache, options=opts.behaviour, layers=opts.layers,
                                           max_layers=opts.max_layers, image_size=opts.image_size,
                                           batch_size=opts.batch_size, device=opts.device, model_name=name,
                                           progress=opts.progress)
        card.add("behaviour", table, ran_on={name: note})


def _score_factortopy(card: Scorecard, steps: "_Steps", name: str, model: nn.Module, plan: _Plan,
                      opts: _Options) -> None:
    """FactorTopy of one model on every voxel set with cortical coordinates (and a note for those without)."""
    if "factortopy" not in plan.wanted:
        return
    if plan.no_coords:
        card.ran_on.setdefault("factortopy", {})[name] = (
            f"not run on {', '.join(plan.no_coords)}: FactorTopy needs cortical coordinates "
            "(unit_info['coords']) for every voxel")
    size = opts.factortopy_image_size
    for data in plan.voxel_sets:
        with steps.step(name, f"factortopy {data.name}"):
            table, ft = factortopy_scores(model, data, image_size=size, model_name=name, seed=opts.seed,
                                          device=opts.device, fit_kwargs=opts.factortopy_kwargs,
                                          batch_size=opts.batch_size, progress=opts.progress)
        card.add("factortopy", table, ran_on={name: (
            f"FactorTopy on {data.name}: {data.n_stimuli} stimuli x {data.n_units} voxels with cortical "
            f"coordinates; layers {', '.join(ft.layers_)} at {preprocessing_of(model, size).image_size} px; "
            f"{ft.n_epochs_} epochs (best {ft.best_epoch_ + 1})")})
        card.fits[(name, data.name)] = ft


def _score_human_alignment(card: Scorecard, steps: "_Steps", name: str, model: nn.Module, data, plan: _Plan,
                           opts: _Options) -> None:
    """The ClickMe human-alignment score of one model (:mod:`neuroreg.scorecard.human_alignment`)."""
    if "human alignment" not in plan.steps:
        return
    with steps.step(name, "human alignment"):
        table = score_human_alignment({name: model}, data, batch_size=opts.batch_size, device=opts.device,
                                      seed=opts.seed, image_size=opts.image_size, progress=opts.progress)
    card.add("human_alignment", table, ran_on=human_alignment_ran_on(table))


def _set_name(data: NeuralStimulusSet | BrainData) -> str:
    return str(getattr(data, "name", "") or type(data).__name__)


class _Steps:
    """One bar over :func:`evaluate`'s (model, section) steps, and a log line at the start and end of each."""

    def __init__(self, total: int, progress: bool | None) -> None:
        self.total, self.done = total, 0
        self.start = time.perf_counter()
        self.bar = tqdm(total=total, desc="evaluate", unit="step", disable=None if progress is None else not progress)

    @contextlib.contextmanager
    def step(self, model: str, section: str, detail: str = "") -> Iterator[None]:
        self.bar.set_description(f"{model}: {section}")
        _log.info("[%d/%d] %s: %s%s ...", self.done + 1, self.total, model, section, f" ({detail})" if detail else "")
        tic = time.perf_counter()
        yield
        self.done += 1
        self.bar.update(1)
        _log.info("[%d/%d] %s: %s done in %.1f s (%.0f s since the first step)", self.done, self.total, model,
                  section, time.perf_counter() - tic, time.perf_counter() - self.start)

    def close(self) -> None:
        self.bar.close()
