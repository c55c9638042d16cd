"""The scorecard: task accuracy, adversarial and corruption robustness, and brain scores in one call.

>>> card = nr.evaluate(model, task_data=val_set, brain_sets=["kriegeskorte92"], attacks=["pgd"])
>>> card.table().to_pandas()
>>> card.save("results/my_model")
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neuroreg.brain import BrainData, NeuralStimulusSet, bundled_sets, load_bundled
from neuroreg.errors import UnknownNameError
from neuroreg.features import extract
from neuroreg.scoring.results import ScoreTable

__all__ = ["Scorecard", "evaluate", "accuracy", "brain_scores", "preprocessing_of", "image_transform",
           "resolve_brain_set", "default_layers", "summarize_brain"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def preprocessing_of(model: nn.Module) -> dict[str, Any]:
    """``mean``, ``std`` and ``input_size`` (C, H, W) from a timm ``pretrained_cfg`` (ImageNet defaults)."""
    cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None) or {}
    return {"mean": tuple(cfg.get("mean", IMAGENET_MEAN)), "std": tuple(cfg.get("std", IMAGENET_STD)),
            "input_size": tuple(cfg.get("input_size", (3, 224, 224)))}


def image_transform(image_size: int, mean: Sequence[float], std: Sequence[float]) -> Callable[[Tensor], Tensor]:
    """Per-image ``(3, H, W)`` [0, 1] -> resized to ``image_size`` squared and normalised."""
    m = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)

    def transform(x: Tensor) -> Tensor:
        if x.shape[-2:] != (image_size, image_size):
            x = F.interpolate(x[None], size=(image_size, image_size), mode="bilinear", align_corners=False,
                              antialias=True)[0].clamp(0, 1)
        return (x - m.to(x.device)) / s.to(x.device)
    return transform


def default_layers(model: nn.Module) -> dict[str, str]:
    """Area map of the model (V1/V2/V4/IT) when known, else its top-level child modules."""
    from neuroreg.models import area_layers
    try:
        return dict(area_layers(model))
    except (KeyError, ValueError, TypeError):
        children = [n for n, _ in model.named_children()]
        if not children:
            raise ValueError(f"{type(model).__name__} has no child modules; pass layers=...")
        return {n: n for n in children}


def resolve_brain_set(item) -> NeuralStimulusSet | BrainData:
    """A bundled set name, a NeuralStimulusSet or a BrainData (with stimulus images)."""
    if isinstance(item, str):
        if item not in bundled_sets():
            raise UnknownNameError(f"unknown brain set {item!r}; bundled sets: {sorted(bundled_sets())}")
        return load_bundled(item)
    if isinstance(item, (NeuralStimulusSet, BrainData)):
        return item
    raise TypeError(f"brain sets must be names, NeuralStimulusSet or BrainData; got {type(item).__name__}")


@torch.no_grad()
def accuracy(model: nn.Module, data, *, topk: Sequence[int] = (1, 5), mean=IMAGENET_MEAN, std=IMAGENET_STD,
             batch_size: int = 64, device=None, model_name: str = "model", max_batches: int | None = None) -> ScoreTable:
    """Top-k accuracy on ``data`` (Dataset/DataLoader of ``(image in [0, 1], label)`` or ``(images, labels)``).

    Rows: metric ``top{k}`` for each k not above the number of classes, split ``"test"``.
    """
    from neuroreg.robustness._data import as_loader
    loader = as_loader(data, batch_size)
    params = list(model.parameters())
    dev = torch.device(device) if device is not None else (params[0].device if params else torch.device("cpu"))
    m = torch.tensor(mean, device=dev).view(1, -1, 1, 1)
    s = torch.tensor(std, device=dev).view(1, -1, 1, 1)
    was_training = model.training
    model.eval()
    correct = {k: 0 for k in topk}
    n = 0
    n_classes = None
    try:
        for i, (x, y) in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                break
            x, y = x.to(dev), y.to(dev)
            logits = model((x - m) / s)
            n_classes = logits.shape[1]
            if int(y.max()) >= n_classes or int(y.min()) < 0:
                raise ValueError(f"labels must be in [0, {n_classes - 1}] for a model with {n_classes} outputs; "
                                 f"got labels in [{int(y.min())}, {int(y.max())}]")
            top = logits.topk(min(max(topk), n_classes), dim=1).indices
            for k in topk:
                correct[k] += int((top[:, :k] == y[:, None]).any(1).sum())
            n += y.shape[0]
    finally:
        model.train(was_training)
    if n == 0:
        raise ValueError("data is empty: no images to evaluate")
    table = ScoreTable()
    for k in topk:
        if k <= n_classes:
            table.append(model=model_name, metric=f"top{k}", split="test", score=correct[k] / n, n_images=n)
    return table


def brain_scores(model: nn.Module, brain_sets: Sequence = ("kriegeskorte92",), *,
                 layers: Sequence[str] | Mapping[str, str] | None = None, image_size: int | None = None,
                 mean=None, std=None, batch_size: int = 32, device=None, model_name: str = "model",
                 seed: int = 0, progress: bool | None = None) -> ScoreTable:
    """cRSA (per layer, best layer picked on the even half, reported on the odd half) for each brain set.

    NeuralStimulusSets are scored against every RDMSet they hold; a BrainData
    with images is scored with veRSA (voxel-wise encoding + RDM of predictions).
    """
    from neuroreg.scoring import crsa, versa
    prep = preprocessing_of(model)
    size = image_size or prep["input_size"][-1]
    transform = image_transform(size, mean or prep["mean"], std or prep["std"])
    layer_map = layers if layers is not None else default_layers(model)
    table = ScoreTable()
    for item in brain_sets:
        data = resolve_brain_set(item)
        images = data.images_tensor() if isinstance(data, NeuralStimulusSet) else data.images()
        feats = extract(model, images, layer_map, batch_size=batch_size, device=device, transform=transform,
                        stimulus_ids=data.stimulus_ids, progress=progress)
        if isinstance(data, NeuralStimulusSet):
            part = crsa(feats, data, model=model_name, seed=seed, progress=progress)
        else:
            part = versa(feats, data, model=model_name, seed=seed, progress=progress)
        for row in part:
            row["dataset"] = data.name
            table.append(**row)
    return table


def summarize_brain(table: ScoreTable) -> ScoreTable:
    """Test score of the train-chosen layer, averaged over subjects, per model x dataset x RDM set x region.

    Columns: score (mean over the subjects' RDMs), ``sd`` across them, ``n_subjects``, ``n_rdms``,
    ``ceiling_r`` (mean upper bound where known, Pearson-r scale) and ``layers`` (the chosen layers).
    """
    best = table.best(("dataset", "rdm_set", "region")).to_pandas()
    out = ScoreTable()
    if best.empty:
        return out
    keys = ["model", "dataset", "rdm_set", "region", "metric"]
    for key, grp in best.groupby(keys, dropna=False, sort=False):
        ceiling = grp["ceiling_r"].dropna()
        out.append(**dict(zip(keys, key)), split="test", score=float(grp["score"].mean()),
                   sd=float(grp["score"].std(ddof=0)), n_subjects=int(grp["subject"].nunique(dropna=False)),
                   n_rdms=int(len(grp)),
                   ceiling_r=float(ceiling.mean()) if len(ceiling) else None,
                   layers=",".join(dict.fromkeys(grp["layer"].astype(str))))
    return out


@dataclass
class Scorecard:
    """Everything :func:`evaluate` measured about one model."""

    model_name: str
    accuracy: ScoreTable = field(default_factory=ScoreTable)
    attacks: ScoreTable = field(default_factory=ScoreTable)
    corruptions: ScoreTable = field(default_factory=ScoreTable)
    brain: ScoreTable = field(default_factory=ScoreTable)

    def table(self) -> ScoreTable:
        """All rows, with a ``section`` column."""
        out = ScoreTable()
        for section in ("accuracy", "attacks", "corruptions", "brain"):
            for row in getattr(self, section):
                out.append(**row, section=section)
        return out

    def summary(self) -> dict[str, float]:
        """Headline numbers: clean top-1, worst-case attacked accuracy, mean corruption accuracy, best brain score."""
        out: dict[str, float] = {}
        top1 = self.accuracy.filter(metric="top1")
        if len(top1):
            out["clean_top1"] = top1[0]["score"]
        acc = [r for r in self.attacks if r["metric"] == "accuracy" and (r.get("eps") or 0) > 0]
        if acc:
            out["attacked_accuracy_min"] = min(r["score"] for r in acc)
        cor = [r for r in self.corruptions if r["metric"] == "accuracy" and r.get("corruption") not in (None, "none")]
        if cor:
            out["corruption_accuracy_mean"] = float(np.mean([r["score"] for r in cor]))
        for r in summarize_brain(self.brain) if len(self.brain) else ():
            out[f"brain:{r['dataset']}:{r['rdm_set']}:{r['region']}:{r['metric']}"] = r["score"]
        return out

    def save(self, folder: str | Path) -> dict[str, Path]:
        """Write tables (CSV/JSON/Markdown), figures and ``report.md``/``report.html`` into ``folder``."""
        from neuroreg.report import Report, plot_layer_profile, save_figure, write_table
        from neuroreg.robustness import plot_accuracy_vs_eps, plot_corruption_heatmap
        folder = Path(folder)
        paths = write_table(self.table(), folder, "scorecard")
        report = Report(f"Scorecard: {self.model_name}", folder)
        summary = self.summary()
        report.add("Summary", "; ".join(f"{k} = {v:.3f}" for k, v in summary.items()) or "no scores")
        if len(self.accuracy):
            report.add("Task accuracy", tables=[("accuracy", self.accuracy)])
        if len(self.attacks):
            fig = save_figure(plot_accuracy_vs_eps(self.attacks), folder / "accuracy_vs_eps.png")
            report.add("Adversarial robustness", tables=[("attacks", self.attacks)], figures=[fig])
        if len(self.corruptions):
            fig = save_figure(plot_corruption_heatmap(self.corruptions), folder / "corruptions.png")
            report.add("Corruption robustness", tables=[("corruptions", self.corruptions)], figures=[fig])
        if len(self.brain):
            figs = []
            for ds in dict.fromkeys(r.get("dataset") for r in self.brain):
                sub = self.brain.filter(dataset=ds)
                metric = sub[0]["metric"]
                figs.append(save_figure(plot_layer_profile(sub.filter(metric=metric), metric=metric,
                                                           title=f"{self.model_name} on {ds}"),
                                        folder / f"layer_profile_{ds}.png"))
            report.add("Brain scores", "Best layer chosen on the train half, reported on the test half.",
                       tables=[("best layer per region (mean over subjects)", summarize_brain(self.brain)),
                               ("all layers", self.brain)], figures=figs)
        paths.update(report.write())
        return paths


def evaluate(model: nn.Module, task_data=None, brain_sets: Sequence = ("kriegeskorte92",), *,
             attacks: Sequence[str] | None = ("pgd",), eps: Sequence[float] | None = None, norm: str = "Linf",
             corruptions: str | Sequence[str] | None = None, severities: Sequence[int] = (1, 2, 3, 4, 5),
             layers=None, model_name: str | None = None, device=None, batch_size: int = 64, seed: int = 0,
             attack_kwargs: Mapping[str, Any] | None = None, progress: bool | None = None) -> Scorecard:
    """Score ``model`` on the task, under attack, under corruption and against the brain.

    ``task_data`` (Dataset/DataLoader of ``(image in [0, 1], label)``) is needed for
    accuracy, attacks and corruptions; without it only brain scores are computed.
    The model receives images normalised with its ``pretrained_cfg`` mean/std.
    """
    name = model_name or getattr(model, "default_cfg", {}).get("architecture") or type(model).__name__
    prep = preprocessing_of(model)
    card = Scorecard(model_name=name)
    if task_data is not None:
        card.accuracy = accuracy(model, task_data, mean=prep["mean"], std=prep["std"], batch_size=batch_size,
                                 device=device, model_name=name)
        if attacks:
            from neuroreg.robustness import attack_suite
            card.attacks = attack_suite(model, task_data, attacks=list(attacks), eps=eps, norm=norm,
                                        mean=prep["mean"], std=prep["std"], batch_size=batch_size, seed=seed,
                                        model_name=name, **dict(attack_kwargs or {}))
        if corruptions:
            from neuroreg.robustness import corruption_suite
            card.corruptions = corruption_suite(model, task_data, corruptions=corruptions, severities=severities,
                                                mean=prep["mean"], std=prep["std"], batch_size=batch_size,
                                                seed=seed, model_name=name)
    if brain_sets:
        card.brain = brain_scores(model, brain_sets, layers=layers, batch_size=batch_size, device=device,
                                  model_name=name, seed=seed, progress=progress)
    return card
