"""The scorecard's human-alignment section: the ClickMe alignment score of each model, one row per model.

>>> from neuroreg.scorecard.human_alignment import score_human_alignment, human_alignment_ran_on
>>> table = score_human_alignment({"cornet_z": m1, "harmonized": m2}, "data/clickme")
>>> card.add("human_alignment", table, ran_on=human_alignment_ran_on(table))

Each row is :func:`neuroreg.scoring.human_alignment` of one model folded into one line: ``score`` is the
alignment score (mean Spearman / the released human ceiling 0.65753, as the released
``evaluate_clickme``), with the mean ``spearman``, ``dice`` and ``iou`` beside it, ``n_images``,
``n_omitted`` (images with a constant map, left out only with ``constant_maps="omit"``), the
``dataset`` and the ``explainer``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from torch import nn

from neuroreg.results.table import ScoreTable
from neuroreg.scoring.human_alignment import HUMAN_SPEARMAN_CEILING, Explainer, human_alignment

__all__ = ["score_human_alignment", "human_alignment_ran_on", "SECTION"]

#: The section's name in a :class:`~neuroreg.scorecard.card.Scorecard`.
SECTION = "human_alignment"


def _models(model_or_models: Any, model_name: str | None) -> dict[str, nn.Module]:
    """One module or a mapping name -> module, as a dict; names as :func:`neuroreg.evaluate` gives them."""
    if isinstance(model_or_models, nn.Module):
        name = model_name or getattr(model_or_models, "pretrained_cfg", {}).get("architecture") \
            or type(model_or_models).__name__
        return {str(name): model_or_models}
    if isinstance(model_or_models, Mapping) and model_or_models:
        bad = {k: type(v).__name__ for k, v in model_or_models.items() if not isinstance(v, nn.Module)}
        if bad:
            raise TypeError(f"models must be nn.Modules; got {bad}")
        return {str(k): v for k, v in model_or_models.items()}
    raise TypeError("model_or_models must be an nn.Module or a non-empty dict name -> module; got "
                    f"{type(model_or_models).__name__}{' (empty)' if isinstance(model_or_models, Mapping) else ''}")


def _dataset_name(clickme_val: Any, dataset: str | None) -> str:
    if dataset is not None:
        return str(dataset)
    if isinstance(clickme_val, (str, Path)):
        return f"clickme val ({Path(clickme_val).name or str(clickme_val)})"
    return f"clickme ({type(clickme_val).__name__})"


def score_human_alignment(model_or_models: Any, clickme_val: Any, *, model_name: str | None = None,
                          dataset: str | None = None, explainer: Explainer | None = None, batch_size: int = 64,
                          device=None, mean=None, std=None, normalize: bool = True, max_batches: int | None = None,
                          constant_maps: str = "raise", seed: int = 0, image_size: int | None = None,
                          drop_last: bool = False, per_image: dict | None = None,
                          progress: bool | None = None) -> ScoreTable:
    """The human-alignment section: one row per model, ``metric="alignment_score"``.

    model_or_models: an ``nn.Module`` (named ``model_name``, else its architecture or class) or a dict
        name -> module.
    clickme_val: a ClickMe root folder (its validation split), or a Dataset/DataLoader of
        ``(image, heatmap[, token], label)`` (:func:`neuroreg.scoring.clickme_scores` says the layout).
    dataset: the name the rows carry (default from ``clickme_val``).
    Other arguments: as :func:`neuroreg.scoring.human_alignment` (explainer, default the release's
    absolute-gradient saliency; normalisation with each model's own contract; constant maps; seed;
    ``drop_last`` with ``batch_size=64`` for the release's exact image set;
    ``per_image`` receives each model's per-image :class:`~neuroreg.scoring.ClickMeMetrics`).

    Columns: ``score`` (alignment score), ``spearman``, ``dice``, ``iou`` (means over images),
    ``human_ceiling``, ``n_images``, ``n_omitted``, ``dataset``, ``explainer``; ``split="test"``.
    """
    models = _models(model_or_models, model_name)
    name_of_data = _dataset_name(clickme_val, dataset)
    out = ScoreTable()
    for name, model in models.items():
        rows = {r["metric"]: r for r in human_alignment(
            model, clickme_val, explainer=explainer, batch_size=batch_size, device=device, model_name=name,
            dataset=name_of_data, mean=mean, std=std, normalize=normalize, max_batches=max_batches,
            constant_maps=constant_maps, seed=seed, image_size=image_size, drop_last=drop_last, per_image=per_image,
            progress=progress)}
        row = dict(rows["alignment_score"])
        row.update({m: rows[m]["score"] for m in ("spearman", "dice", "iou")})
        out.append(**row)
    return out


def human_alignment_ran_on(table: ScoreTable) -> dict[str, str]:
    """One sentence per model saying what its human-alignment row was computed on, for ``Scorecard.add``."""
    out = {}
    for r in table:
        omitted = f" ({r['n_omitted']} with a constant map left out)" if r.get("n_omitted") else ""
        out[r["model"]] = (f"{r['dataset']}: {r['n_images']} images with a human map{omitted}; {r['explainer']} "
                           "maps against the human maps, per image Spearman, Dice and IoU at the top 10 %, "
                           f"alignment score = mean Spearman / {HUMAN_SPEARMAN_CEILING} (the released human ceiling)")
    return out
