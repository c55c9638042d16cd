"""Accuracy under the ImageNet-C corruptions, mean corruption accuracy and mCE.

mCE (Hendrycks & Dietterich 2019): for each corruption c the corruption error
CE_c = sum_s E_{s,c}(model) / sum_s E_{s,c}(baseline), with E the top-1 error at
severity s; mCE is the mean of CE_c over corruptions. The relative mCE uses
(E_{s,c} - E_clean) in both sums. The paper's baseline is AlexNet, whose errors
(averaged over the five severities) are :data:`ALEXNET_MEAN_ERROR`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from neuroreg.errors import UnknownNameError
from neuroreg.robustness._data import as_loader, batches
from neuroreg._utils.seeding import seeded
from neuroreg.robustness._evaluation import count_correct
from neuroreg.robustness.corruptions import CORRUPTIONS, corrupt, load_frost_images
from neuroreg.robustness.wrapper import FROM_MODEL, RobustClassifier
from neuroreg._utils.modes import eval_mode
from neuroreg.results.table import ScoreTable

__all__ = ["corruption_suite", "corruption_errors", "mean_corruption_error", "ALEXNET_MEAN_ERROR"]

#: AlexNet top-1 error on ImageNet-C per corruption, mean over severities 1-5
#: (the mCE normaliser published with hendrycks/robustness).
ALEXNET_MEAN_ERROR = {
    "gaussian_noise": 0.886428, "shot_noise": 0.894468, "impulse_noise": 0.922640,
    "defocus_blur": 0.819880, "glass_blur": 0.826268, "motion_blur": 0.785948, "zoom_blur": 0.798360,
    "snow": 0.866816, "frost": 0.826572, "fog": 0.819324, "brightness": 0.564592,
    "contrast": 0.853204, "elastic_transform": 0.646056, "pixelate": 0.717840, "jpeg_compression": 0.606500,
}


_FROST_NOTES = {
    "procedural": "procedural frost calibrated to ImageNet-C's frost photographs (same mean absolute change and "
                  "SSIM); not the photographs, so not directly comparable to ImageNet-C",
    "photographs": "frost photographs given by frost_images, cropped and blended as ImageNet-C does",
}
_NOT_COMPARABLE = ("not comparable to published ImageNet-C CE/mCE: frost uses the procedural texture "
                   "(pass frost_images= the original frost photographs)")


def _resolve(corruptions: str | Sequence[str]) -> list[str]:
    if isinstance(corruptions, str):
        if corruptions == "imagenet-c":
            return list(CORRUPTIONS)
        corruptions = [corruptions]
    names = list(dict.fromkeys(corruptions))
    if not names:
        raise ValueError("corruptions must name at least one corruption; got an empty list")
    for n in names:
        if n not in CORRUPTIONS:
            raise UnknownNameError(f"unknown corruption {n!r}; expected 'imagenet-c' or names from "
                                   f"{list(CORRUPTIONS)}")
    return names


def corruption_errors(table: ScoreTable) -> tuple[dict[str, dict[int, float]], float | None]:
    """Top-1 errors {corruption: {severity: error}} and the clean error from a
    :func:`corruption_suite` table."""
    errors: dict[str, dict[int, float]] = {}
    clean = None
    for row in table:
        if row.get("metric") != "accuracy":
            continue
        if row.get("corruption") == "none":
            clean = 1.0 - row["score"]
        elif row.get("corruption") is not None and row.get("severity") is not None:
            errors.setdefault(row["corruption"], {})[int(row["severity"])] = 1.0 - row["score"]
    return errors, clean


def mean_corruption_error(errors: Mapping[str, Mapping[int, float]], baseline: Any, *,
                          clean_error: float | None = None,
                          baseline_clean_error: float | None = None) -> dict[str, Any]:
    """CE per corruption, mCE and (when clean errors are given) relative mCE.

    Args:
        errors: {corruption: {severity: top-1 error}} of the model.
        baseline: "alexnet" (:data:`ALEXNET_MEAN_ERROR`; needs all five
            severities), a :func:`corruption_suite` ScoreTable of the baseline
            model, or {corruption: {severity: error}}.

    Returns {"ce": {c: CE}, "mce": float, "relative_ce": {...}, "relative_mce": float | None}.
    """
    if isinstance(baseline, str):
        if baseline.lower() != "alexnet":
            raise UnknownNameError(f"unknown baseline {baseline!r}; expected 'alexnet', a ScoreTable or a "
                                   "mapping {corruption: {severity: error}}")
        for c, per_sev in errors.items():
            if sorted(per_sev) != [1, 2, 3, 4, 5]:
                raise ValueError(f"the AlexNet baseline is a mean over severities 1-5; {c!r} has severities "
                                 f"{sorted(per_sev)}")
        base = {c: {s: e for s in range(1, 6)} for c, e in ALEXNET_MEAN_ERROR.items()}
    elif isinstance(baseline, ScoreTable):
        base, base_clean = corruption_errors(baseline)
        baseline_clean_error = base_clean if baseline_clean_error is None else baseline_clean_error
    elif isinstance(baseline, Mapping):
        base = {c: dict(v) for c, v in baseline.items()}
    else:
        raise TypeError(f"baseline must be 'alexnet', a ScoreTable or a mapping; got {type(baseline).__name__}")
    ce, rel = {}, {}
    for c, per_sev in errors.items():
        if c not in base:
            raise ValueError(f"baseline has no errors for corruption {c!r}; it covers {sorted(base)}")
        missing = sorted(set(per_sev) - set(base[c]))
        if missing:
            raise ValueError(f"baseline for {c!r} lacks severities {missing}")
        sevs = sorted(per_sev)
        denom = sum(base[c][s] for s in sevs)
        if denom <= 0:
            raise ValueError(f"baseline error for {c!r} sums to {denom}; mCE needs a baseline that errs")
        ce[c] = sum(per_sev[s] for s in sevs) / denom
        if clean_error is not None and baseline_clean_error is not None:
            rel_denom = sum(base[c][s] - baseline_clean_error for s in sevs)
            if rel_denom > 0:
                rel[c] = sum(per_sev[s] - clean_error for s in sevs) / rel_denom
    return {"ce": ce, "mce": float(np.mean(list(ce.values()))) if ce else None,
            "relative_ce": rel, "relative_mce": float(np.mean(list(rel.values()))) if len(rel) == len(ce) and rel else None}


def corruption_suite(model: nn.Module, data: Any, corruptions: str | Sequence[str] = "imagenet-c",
                     severities: Sequence[int] = (1, 2, 3, 4, 5), *, baseline: Any = None,
                     mean: Sequence[float] | str | None = FROM_MODEL, std: Sequence[float] | str | None = FROM_MODEL,
                     batch_size: int = 128, max_batches: int | None = None, model_name: str | None = None,
                     seed: int = 0, n_draws: int = 1, frost_images: Any = None,
                     progress: bool | None = None) -> ScoreTable:
    """Accuracy on every corruption x severity, mean corruption accuracy and mCE.

    Args:
        model: classifier (wrapped like in :func:`attack_suite`).
        data: Dataset / DataLoader of (image (3, H, W) in [0, 1], label), or (images, labels).
        corruptions: "imagenet-c" (all 15) or names from
            :data:`~neuroreg.robustness.corruptions.CORRUPTIONS`.
        severities: subset of 1..5.
        baseline: for CE/mCE rows: "alexnet", the ScoreTable of this suite run
            on a baseline model, or {corruption: {severity: error}}.
        seed: corruption draws are seeded per batch from it, and the model's own
            noise (stochastic models such as VOneNets) from the global torch RNG
            seeded with it for the duration of the suite (the caller's RNG state is restored).
        n_draws: forward passes per image, accuracy averaged over them: for
            stochastic models, to lower the variance of the estimate.
        frost_images: folder (or loaded tensors) of the original ImageNet-C
            frost photographs, see :func:`~neuroreg.robustness.corruptions.load_frost_images`;
            None uses neuroreg's procedural frost.

    Returns rows (metric="accuracy", corruption, severity) plus the clean row
    (corruption="none", severity=0), "corruption_accuracy" per corruption (mean
    over severities), "mean_corruption_accuracy", and with a baseline "CE" per
    corruption, "mCE" and, when both clean errors are known, "relative_mCE".
    Frost rows carry ``frost`` ("procedural" or "photographs") and a note; with
    the procedural frost the frost CE and the mCE rows carry
    ``comparable=False`` and a note saying why.
    """
    names = _resolve(corruptions)
    sevs = _checked_severities(severities)
    if isinstance(n_draws, bool) or not isinstance(n_draws, (int, np.integer)) or n_draws < 1:
        raise ValueError(f"n_draws must be a positive int; got {n_draws!r}")
    frost_kind = "procedural" if frost_images is None else "photographs"
    if frost_images is not None and "frost" in names:
        frost_images = (load_frost_images(frost_images) if isinstance(frost_images, (str, Path))
                        else list(frost_images))
    wrapped = model if isinstance(model, RobustClassifier) else RobustClassifier(model, mean, std)
    clean_correct, correct, n_seen = _count_correct(wrapped, as_loader(data, batch_size), names, sevs,
                                                    seed=int(seed), n_draws=int(n_draws), frost_images=frost_images,
                                                    max_batches=max_batches, progress=progress)
    name = model_name or type(getattr(wrapped, "model", wrapped)).__name__
    common = dict(model=name, split="test", n_images=n_seen, n_draws=int(n_draws))
    accuracy = {key: c / n_seen for key, c in correct.items()}
    return _corruption_table(common, clean_correct / n_seen, accuracy, names, sevs, frost_kind, baseline)


def _checked_severities(severities: Sequence[int]) -> list[int]:
    """The distinct severities, in the order given; each an integer in 1..5."""
    sevs = list(dict.fromkeys(severities))
    if not sevs:
        raise ValueError("severities must hold at least one of 1..5; got none")
    for s in sevs:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or not 1 <= int(s) <= 5:
            raise ValueError(f"severities must be integers in 1..5; got {s!r}")
    return [int(s) for s in sevs]


def _count_correct(wrapped: RobustClassifier, loader: DataLoader, names: list[str], sevs: list[int], *, seed: int,
                   n_draws: int, frost_images: Any, max_batches: int | None,
                   progress: bool | None) -> tuple[float, dict[tuple[str, int], float], int]:
    """Correct answers (mean over ``n_draws`` passes) on clean and corrupted batches, and the images seen.

    Returns ``(clean, {(corruption, severity): correct}, n_images)``. The model's own noise
    draws from the global torch RNG seeded with ``seed`` (the caller's state is restored);
    batch ``b``'s corruptions from their own seed.
    """
    device = wrapped.device
    correct = {(c, s): 0.0 for c in names for s in sevs}
    clean_correct, n_seen = 0.0, 0
    with eval_mode(wrapped):
        with seeded(seed, device):
            first = next(iter(batches(loader, device, None, 1)), None)
            if first is None:
                raise ValueError("data holds no images")
            wrapped.infer(first[0])
            n_total = len(loader) if max_batches is None else min(len(loader), max_batches)
            bar = tqdm(total=n_total * (1 + len(names) * len(sevs)), desc="corruption suite",
                       disable=None if progress is None else not progress)
            with torch.no_grad():
                for b, (x, y) in enumerate(batches(loader, device, wrapped.num_classes, max_batches)):
                    clean_correct += count_correct(wrapped, x, y, n_draws).mean()
                    n_seen += len(y)
                    bar.update(1)
                    for c in names:
                        for s in sevs:
                            xc = corrupt(x, c, s, seed=seed * 1_000_003 + b, frost_images=frost_images)
                            correct[(c, s)] += count_correct(wrapped, xc, y, n_draws).mean()
                            bar.update(1)
            bar.close()
    return clean_correct, correct, n_seen


def _corruption_table(common: dict[str, Any], clean_acc: float, accuracy: Mapping[tuple[str, int], float],
                      names: list[str], sevs: list[int], frost_kind: str, baseline: Any) -> ScoreTable:
    """The rows of :func:`corruption_suite` from the accuracies per (corruption, severity)."""
    table = ScoreTable()
    table.append(**common, metric="accuracy", score=clean_acc, corruption="none", severity=0)
    per_corruption = {}
    for c in names:
        accs = [accuracy[(c, s)] for s in sevs]
        note = {"frost": frost_kind, "note": _FROST_NOTES[frost_kind]} if c == "frost" else {}
        for s, a in zip(sevs, accs):
            table.append(**common, metric="accuracy", score=a, corruption=c, severity=s, **note)
        per_corruption[c] = float(np.mean(accs))
        table.append(**common, metric="corruption_accuracy", score=per_corruption[c], corruption=c, **note)
    table.append(**common, metric="mean_corruption_accuracy", score=float(np.mean(list(per_corruption.values()))),
                 corruption="all")
    if baseline is not None:
        errors = {c: {s: 1.0 - accuracy[(c, s)] for s in sevs} for c in names}
        result = mean_corruption_error(errors, baseline, clean_error=1.0 - clean_acc)
        procedural = frost_kind == "procedural" and "frost" in names
        flag = {"comparable": False, "note": _NOT_COMPARABLE} if procedural else {}
        for c, v in result["ce"].items():
            table.append(**common, metric="CE", score=v, corruption=c, **(flag if c == "frost" else {}))
        table.append(**common, metric="mCE", score=result["mce"], corruption="all", **flag)
        if result["relative_mce"] is not None:
            table.append(**common, metric="relative_mCE", score=result["relative_mce"], corruption="all", **flag)
    return table
