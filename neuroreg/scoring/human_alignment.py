"""Human alignment on ClickMe: where a network looks against where humans look (the Neural Harmonizer's score).

The released ``harmonization.evaluation.evaluate_clickme`` (harmonization 0.0.9;
Fel, Felipe, Linsley & Serre 2022), in PyTorch:

- :func:`clickme_metrics` compares model maps with human maps image by image:
  Spearman's rank correlation of the flattened maps, and Dice and IoU of the
  maps' top 10 % (a pixel counts when it lies strictly above the map's 90th
  percentile, numpy's linear-interpolation percentile; ``EPSILON`` = 1e-9 in the
  denominators). Both maps are cast to float32 first, as the release does, so
  ties are those of float32. No resizing or blurring happens here: the release
  prepares the human maps in its data set (resize to 64 px, Gaussian blur,
  resize to the image size) and compares them with the saliency maps as they
  come. ``alignment_score`` = mean Spearman / :data:`HUMAN_SPEARMAN_CEILING`.
- :func:`absolute_saliency` is the release's default explainer (Xplique's
  ``Saliency``): the absolute gradient of the true-class logit with respect to the
  model's input, max over colour channels.
- :func:`clickme_scores` runs a model over ClickMe-like data in batches and
  returns the per-image metrics; :func:`human_alignment` summarises them in a
  :class:`~neuroreg.results.ScoreTable`.

A constant map (every pixel equal) has no ranks to correlate: scipy's ``spearmanr``
returns NaN for it, and so does the release, whose alignment score then is NaN.
:func:`clickme_metrics` returns the same NaN (with a warning naming the images);
the batched scorers refuse such images unless told to omit them (``constant_maps``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from scipy.stats import rankdata
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, TensorDataset
from tqdm.auto import tqdm

from neuroreg._utils.modes import eval_mode
from neuroreg._utils.seeding import seeded
from neuroreg.data.clickme import IMAGE_SIZE, clickme_dataset
from neuroreg.data.preprocessing import preprocessing_of
from neuroreg.errors import NonFiniteError, ShapeError
from neuroreg.results.table import ScoreTable

__all__ = ["HUMAN_SPEARMAN_CEILING", "TOP_PERCENT", "ClickMeMetrics", "clickme_metrics", "absolute_saliency",
           "clickme_scores", "human_alignment", "Explainer"]

#: The released human ceiling: mean Spearman between two halves of the ClickMe participants.
HUMAN_SPEARMAN_CEILING = 0.65753
#: Dice and IoU compare the maps' top ``TOP_PERCENT`` % of pixels.
TOP_PERCENT = 10
#: The release's epsilon in the Dice and IoU denominators.
EPSILON = 1e-9

#: An explainer: ``(model, images (B, C, H, W), labels (B,) int64) -> maps (B, H, W)`` (or ``(B, C, H, W)``,
#: averaged over C as the release averages a channel axis).
Explainer = Callable[[nn.Module, Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class ClickMeMetrics:
    """Per-image human-alignment metrics, as the release's ``evaluate_clickme`` returns them.

    spearman, dice, iou: ``(n,)`` float64, one value per image (Spearman NaN for a constant map).
    alignment_score: mean Spearman / :data:`HUMAN_SPEARMAN_CEILING` (NaN when any Spearman is).
    labels: ``(n,)`` class indices of the images when a model was scored, else None.
    Also readable as a mapping: ``metrics["spearman"]``, as the release's dict.
    """

    spearman: np.ndarray
    dice: np.ndarray
    iou: np.ndarray
    alignment_score: float
    labels: np.ndarray | None = field(default=None, compare=False)

    @property
    def n_images(self) -> int:
        return int(self.spearman.shape[0])

    def __getitem__(self, key: str) -> Any:
        if key not in ("spearman", "dice", "iou", "alignment_score"):
            raise KeyError(f"{key!r}: ClickMe metrics are 'spearman', 'dice', 'iou' and 'alignment_score'")
        return getattr(self, key)

    def to_dict(self) -> dict[str, Any]:
        """The release's dict: ``spearman``, ``dice``, ``iou`` (lists) and ``alignment_score``."""
        return {"spearman": self.spearman.tolist(), "dice": self.dice.tolist(), "iou": self.iou.tolist(),
                "alignment_score": float(self.alignment_score)}


def _as_maps(maps: Any, name: str) -> np.ndarray:
    """``(n, H, W)`` or ``(n, C, H, W)`` (averaged over C) -> float32 ``(n, H, W)``; finite values checked."""
    if isinstance(maps, Tensor):
        maps = maps.detach().float().cpu().numpy()
    arr = np.asarray(maps)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise TypeError(f"{name} must be a numeric array or tensor; got dtype {arr.dtype}")
    if arr.ndim == 4:
        arr = arr.astype(np.float32).mean(axis=1)
    if arr.ndim != 3:
        raise ShapeError(f"{name} must be maps of shape (n, H, W) or (n, C, H, W); got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] * arr.shape[2] == 0:
        raise ShapeError(f"{name} must hold at least one map of at least one pixel; got shape {arr.shape}")
    arr = arr.astype(np.float32)
    finite = np.isfinite(arr).reshape(len(arr), -1).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise NonFiniteError(f"{name} contains NaN or inf in {len(bad)} of {len(arr)} maps "
                             f"(first at image {int(bad[0])})")
    return arr


def _constant(maps: np.ndarray) -> np.ndarray:
    """``(n,)`` True where a float32 map ``(n, H, W)`` has one value everywhere."""
    flat = maps.reshape(len(maps), -1)
    return (flat == flat[:, :1]).all(axis=1)


def _spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-row Spearman of ``(n, p)`` arrays: Pearson of average ranks (scipy's ``spearmanr``); NaN when constant."""
    ra, rb = rankdata(a, axis=1), rankdata(b, axis=1)
    ra -= ra.mean(axis=1, keepdims=True)
    rb -= rb.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (ra * rb).sum(axis=1) / np.sqrt((ra * ra).sum(axis=1) * (rb * rb).sum(axis=1))
    return np.clip(rho, -1.0, 1.0)


def _top(maps: np.ndarray, percent: float) -> np.ndarray:
    """Boolean ``(n, H, W)``: pixels strictly above each map's ``100 - percent`` percentile (the release's rule)."""
    return maps > np.percentile(maps, 100 - percent, axis=(1, 2), keepdims=True)


def clickme_metrics(model_maps: Any, human_maps: Any, *, percent: float = TOP_PERCENT) -> ClickMeMetrics:
    """Spearman, Dice and IoU between model and human importance maps, per image; the alignment score.

    model_maps, human_maps: ``(n, H, W)`` arrays or tensors of the same shape (``(n, C, H, W)`` is
        averaged over C first, as the release averages a channel axis); cast to float32, as the release.
    percent: Dice and IoU binarise each map at its top ``percent`` % (pixels strictly above the
        ``100 - percent`` percentile; the release's 10).
    Returns :class:`ClickMeMetrics` equal to the release's ``evaluate_clickme`` on the same maps: per image
    Spearman of the flattened maps (average ranks), Dice ``2 |A & B| / (|A| + |B| + 1e-9)``, IoU
    ``|A & B| / (|A | B| + 1e-9)``, and ``alignment_score`` = mean Spearman / 0.65753.

    A constant map has an undefined Spearman: NaN, as scipy and the release give, and a NaN
    alignment score; a :class:`RuntimeWarning` names those images. Its top 10 % is empty (no pixel lies
    strictly above its percentile), so its Dice and IoU are 0. NaN or inf in a map raise
    :class:`~neuroreg.errors.NonFiniteError`; different shapes raise :class:`~neuroreg.errors.ShapeError`.
    """
    a, b = _as_maps(model_maps, "model_maps"), _as_maps(human_maps, "human_maps")
    if a.shape != b.shape:
        raise ShapeError(f"model_maps and human_maps must have the same shape (n, H, W); got model maps "
                         f"{a.shape} and human maps {b.shape}")
    if not 0 < float(percent) < 100:
        raise ValueError(f"percent must be in (0, 100); got {percent}")
    constant = _constant(a) | _constant(b)
    if constant.any():
        which = np.flatnonzero(constant)
        warnings.warn(f"{len(which)} of {len(a)} image(s) have a constant model or human map (first at image "
                      f"{int(which[0])}): their Spearman is NaN, as the released code's, and so is the "
                      "alignment score", RuntimeWarning, stacklevel=2)
    rho = _spearman(a.reshape(len(a), -1), b.reshape(len(b), -1))
    rho[constant] = np.nan
    ta, tb = _top(a, percent), _top(b, percent)
    inter = (ta & tb).sum(axis=(1, 2)).astype(np.float64)
    dice = 2.0 * inter / (ta.sum(axis=(1, 2)) + tb.sum(axis=(1, 2)) + EPSILON)
    iou = inter / ((ta | tb).sum(axis=(1, 2)) + EPSILON)
    return ClickMeMetrics(spearman=rho, dice=dice, iou=iou,
                          alignment_score=float(np.mean(rho) / HUMAN_SPEARMAN_CEILING))


def absolute_saliency(model: nn.Module, images: Tensor, labels: Tensor) -> Tensor:
    """The release's default explainer (Xplique's ``Saliency``): ``|d logit[label] / d image|``, max over channels.

    model: maps ``(B, C, H, W)`` inputs to ``(B, K)`` logits; run as it is (put it in eval mode first).
    images: ``(B, C, H, W)`` model inputs (already normalised); labels: ``(B,)`` class indices.
    Returns ``(B, H, W)`` float32, detached. The gradient is taken in float32 with autocast off. A
    stochastic model (VOneNet's noise) gives the gradient of one noise draw per image (seed the draws
    around the call; :func:`clickme_scores` does).
    """
    x = images.detach().float().requires_grad_(True)
    with torch.enable_grad(), torch.autocast(x.device.type, enabled=False):
        logits = model(x)
        if logits.ndim != 2 or logits.shape[0] != x.shape[0]:
            raise ShapeError(f"the model must return (B, K) logits for (B, C, H, W) images; got "
                             f"{tuple(logits.shape)} for images {tuple(x.shape)}")
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= logits.shape[1]):
            raise ValueError(f"labels must lie in [0, {logits.shape[1] - 1}] for a model with {logits.shape[1]} "
                             f"logits; got labels in [{int(labels.min())}, {int(labels.max())}]")
        score = logits.float().gather(1, labels.view(-1, 1).to(logits.device)).sum()
        (grad,) = torch.autograd.grad(score, x)
    return grad.abs().amax(dim=1)


def _loader(data: Any, batch_size: int, image_size: int | None = None, drop_last: bool = False) -> DataLoader:
    """A DataLoader over ``data``: a DataLoader as is, a Dataset, a tuple of tensors, or a ClickMe root."""
    if isinstance(data, DataLoader):
        return data
    if isinstance(data, (str, Path)):
        data = clickme_dataset(data, "val", image_size=IMAGE_SIZE if image_size is None else int(image_size))
    if isinstance(data, tuple) and len(data) in (3, 4) and all(isinstance(t, Tensor) for t in data):
        if len({int(t.shape[0]) for t in data}) != 1:
            raise ShapeError(f"clickme_val tensors must have one entry per image; got lengths "
                             f"{[int(t.shape[0]) for t in data]}")
        data = TensorDataset(*data)
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    if isinstance(data, Dataset):
        return DataLoader(data, batch_size=int(batch_size), shuffle=False, drop_last=drop_last)
    raise TypeError("clickme_val must be a ClickMe root folder, a torch Dataset or DataLoader yielding (image, "
                    "heatmap, label) or (image, heatmap, token, label), or a tuple of such tensors; got "
                    + type(data).__name__)


def _unpack(batch: Any, index: int) -> tuple[Tensor, Tensor, Tensor]:
    """One batch -> (images (B, C, H, W), heatmaps (B, H, W), labels (B,)), images without a map dropped."""
    if not isinstance(batch, (tuple, list)) or len(batch) not in (3, 4):
        raise TypeError(f"clickme_val must yield (images, heatmaps, labels) or (images, heatmaps, tokens, labels); "
                        f"batch {index} is a {type(batch).__name__}"
                        f"{f' of {len(batch)} items' if isinstance(batch, (tuple, list)) else ''}")
    images, heatmaps, labels = torch.as_tensor(batch[0]), torch.as_tensor(batch[1]), torch.as_tensor(batch[-1])
    if images.ndim != 4:
        raise ShapeError(f"clickme_val images must be (B, C, H, W); batch {index} has {tuple(images.shape)}")
    if heatmaps.ndim == 4:
        if heatmaps.shape[1] != 1:
            raise ShapeError(f"clickme_val heatmaps must be (B, H, W) or (B, 1, H, W); batch {index} has "
                             f"{tuple(heatmaps.shape)}")
        heatmaps = heatmaps[:, 0]
    if heatmaps.ndim != 3 or heatmaps.shape[0] != images.shape[0] or heatmaps.shape[1:] != images.shape[2:]:
        raise ShapeError(f"clickme_val heatmaps must be (B, H, W) maps of the images' size; batch {index} has "
                         f"heatmaps {tuple(heatmaps.shape)} for images {tuple(images.shape)}")
    if labels.ndim == 2:       # one-hot, as the release's data set yields
        labels = labels.argmax(dim=1)
    if labels.ndim != 1 or labels.shape[0] != images.shape[0] or labels.dtype.is_floating_point:
        raise ShapeError(f"clickme_val labels must be (B,) class indices or (B, K) one-hot; batch {index} has "
                         f"{tuple(labels.shape)} ({labels.dtype}) for {images.shape[0]} images")
    if len(batch) == 4:        # tokens: 1 where a human map exists
        keep = torch.as_tensor(batch[2]).reshape(-1) > 0
        images, heatmaps, labels = images[keep], heatmaps[keep], labels[keep]
    return images, heatmaps, labels.long()


def _explain(explainer: Explainer, model: nn.Module, images: Tensor, labels: Tensor, index: int) -> np.ndarray:
    """The explainer's maps of one batch as float32 ``(B, H, W)``, shapes and values checked."""
    maps = explainer(model, images, labels)
    if not isinstance(maps, Tensor):
        maps = torch.as_tensor(np.asarray(maps))
    maps = maps.detach().float()
    if maps.ndim == 4:
        maps = maps.mean(dim=1)
    if maps.shape != (images.shape[0], *images.shape[2:]):
        raise ShapeError(f"the explainer must return (B, H, W) maps of the images' size; batch {index} gave "
                         f"{tuple(maps.shape)} for images {tuple(images.shape)}")
    finite = torch.isfinite(maps).flatten(1).all(dim=1)
    if not finite.all():
        raise NonFiniteError(f"the explainer's maps contain NaN or inf in batch {index}, image "
                             f"{int((~finite).nonzero()[0])} of the batch (the model's output or its gradient is "
                             "not finite)")
    return maps.cpu().numpy()


def _check_constant(maps: np.ndarray, human: np.ndarray, start: int) -> None:
    """Raise when a map is constant, naming the image and which map."""
    for what, arr in (("saliency", maps), ("human", human)):
        flat = _constant(arr)
        if flat.any():
            raise NonFiniteError(
                f"image {start + int(np.flatnonzero(flat)[0])} has a constant {what} map: its Spearman is undefined "
                "(NaN in the released code, which then reports a NaN alignment score); pass "
                "constant_maps='omit' to leave such images out of the means")


def clickme_scores(model: nn.Module, clickme_val: Any, *, explainer: Explainer | None = None, batch_size: int = 64,
                   device: torch.device | str | None = None, mean=None, std=None, normalize: bool = True,
                   max_batches: int | None = None, constant_maps: str = "raise", seed: int = 0,
                   image_size: int | None = None, drop_last: bool = False,
                   progress: bool | None = None) -> ClickMeMetrics:
    """Per-image ClickMe metrics of ``model``: its explainer's maps against the human maps.

    clickme_val: a torch Dataset or DataLoader yielding ``(image (C, H, W) in [0, 1], heatmap (H, W) or
        (1, H, W), label)`` or ``(image, heatmap, token, label)`` (images whose token is 0 have no human
        map and are skipped), as :class:`neuroreg.data.ClickMeDataset` and ``ClickMeFolder`` do; a tuple
        of such tensors; or a ClickMe root folder (its validation split, through
        :func:`neuroreg.data.clickme_dataset`, at ``image_size`` pixels, default the release's 224).
        Labels are class indices or one-hot rows. Heatmaps must already be prepared as the release
        does (blurred, at the image size).
    explainer: ``(model, images, labels) -> (B, H, W)`` maps; default :func:`absolute_saliency`.
    drop_last: leave out the last incomplete batch (a given DataLoader is used as it is). The release's
        ``load_clickme_val`` batches by 64 with ``drop_remainder=True``, so its ``evaluate_clickme`` scores
        the first ``64 * (n // 64)`` validation images: ``batch_size=64, drop_last=True`` scores the same ones.
    normalize: normalise the images with the model's preprocessing contract (``mean``/``std`` override
        it) before the explainer, so the gradient is with respect to the model's input, as the release's
        ``preprocess_inputs``; False passes them as they are. Images are not resized.
    constant_maps: ``"raise"`` (default) stops at the first image with a constant saliency or human map;
        ``"omit"`` keeps the release's NaN Spearman for it (the returned alignment score is then NaN).
    seed: seeds torch's generators for the run (a stochastic model's noise draws).
    progress: a bar over the batches (default: on a terminal only).
    """
    if constant_maps not in ("raise", "omit"):
        raise ValueError(f"constant_maps must be 'raise' or 'omit'; got {constant_maps!r}")
    explain = absolute_saliency if explainer is None else explainer
    loader = _loader(clickme_val, batch_size, image_size, drop_last)
    prep = preprocessing_of(model, mean=mean, std=std) if normalize else None
    dev = torch.device(device) if device is not None else next(
        (t.device for t in [*model.parameters(), *model.buffers()]), torch.device("cpu"))
    parts: dict[str, list[np.ndarray]] = {"spearman": [], "dice": [], "iou": [], "labels": []}
    n = 0
    with eval_mode(model, dev), seeded(seed, dev), warnings.catch_warnings():
        # constant maps: refused below, or omitted on request; clickme_metrics' warning about them is not needed
        warnings.filterwarnings("ignore", message=".*constant model or human map", category=RuntimeWarning)
        bar = tqdm(loader, desc="human alignment", unit="batch", leave=False,
                   disable=None if progress is None else not progress)
        for i, batch in enumerate(bar):
            if max_batches is not None and i >= max_batches:
                break
            images, heatmaps, y = _unpack(batch, i)
            if not len(images):
                continue
            hm = _as_maps(heatmaps, f"clickme_val heatmaps (batch {i})")
            x = images.to(dev).float()
            maps = _explain(explain, model, prep.normalize(x) if prep is not None else x, y.to(dev), i)
            if constant_maps == "raise":
                _check_constant(maps, hm, n)
            metrics = clickme_metrics(maps, hm)      # per image: batches change nothing, and memory stays one batch
            for key in ("spearman", "dice", "iou"):
                parts[key].append(metrics[key])
            parts["labels"].append(y.numpy())
            n += len(maps)
        bar.close()
    if not n:
        raise ValueError("clickme_val holds no image with a human map: nothing to score")
    rho = np.concatenate(parts["spearman"])
    return ClickMeMetrics(rho, np.concatenate(parts["dice"]), np.concatenate(parts["iou"]),
                          alignment_score=float(np.mean(rho) / HUMAN_SPEARMAN_CEILING),
                          labels=np.concatenate(parts["labels"]))


def summary_rows(metrics: ClickMeMetrics, *, model_name: str = "model", dataset: str = "clickme",
                 explainer: str = "saliency") -> ScoreTable:
    """Summary rows of per-image metrics: ``alignment_score``, ``spearman``, ``dice``, ``iou`` (means).

    Images whose Spearman is NaN (constant maps) are left out of every mean and counted in ``n_omitted``.
    Columns besides the standard ones: ``dataset``, ``explainer``, ``n_images`` (images in the means),
    ``n_omitted``, and ``human_ceiling`` (0.65753) on the alignment-score row.
    """
    keep = np.isfinite(metrics.spearman)
    if not keep.any():
        raise NonFiniteError(f"every one of the {metrics.n_images} images has a constant map: no Spearman to average")
    rho = float(np.mean(metrics.spearman[keep]))
    common = dict(model=model_name, split="test", dataset=dataset, explainer=explainer, n_images=int(keep.sum()),
                  n_omitted=int((~keep).sum()))
    table = ScoreTable()
    table.append(metric="alignment_score", score=rho / HUMAN_SPEARMAN_CEILING, human_ceiling=HUMAN_SPEARMAN_CEILING,
                 **common)
    table.append(metric="spearman", score=rho, **common)
    table.append(metric="dice", score=float(np.mean(metrics.dice[keep])), **common)
    table.append(metric="iou", score=float(np.mean(metrics.iou[keep])), **common)
    return table


def human_alignment(model: nn.Module, clickme_val: Any, *, explainer: Explainer | None = None,
                    batch_size: int = 64, device: torch.device | str | None = None, model_name: str = "model",
                    dataset: str = "clickme", mean=None, std=None, normalize: bool = True,
                    max_batches: int | None = None, constant_maps: str = "raise", seed: int = 0,
                    image_size: int | None = None, drop_last: bool = False, per_image: dict | None = None,
                    progress: bool | None = None) -> ScoreTable:
    """The human-alignment score of ``model`` on ClickMe-like data, as the released ``evaluate_clickme``.

    Arguments as :func:`clickme_scores` (data layout, explainer, normalisation, constant maps, seed,
    the release's dropped last batch, progress); ``model_name`` and ``dataset`` label the rows;
    ``per_image``: an optional dict that receives ``per_image[model_name]`` = the :class:`ClickMeMetrics`
    with every image's Spearman, Dice, IoU and label.

    Returns a :class:`~neuroreg.results.ScoreTable` of four rows (:func:`summary_rows`):
    ``alignment_score`` (mean Spearman / 0.65753), ``spearman``, ``dice`` and ``iou`` (means over images),
    each with ``n_images``; with ``constant_maps="omit"`` the images with a constant map are left out of
    the means (the release would report NaN) and counted in ``n_omitted``.
    """
    metrics = clickme_scores(model, clickme_val, explainer=explainer, batch_size=batch_size, device=device,
                             mean=mean, std=std, normalize=normalize, max_batches=max_batches,
                             constant_maps=constant_maps, seed=seed, image_size=image_size, drop_last=drop_last,
                             progress=progress)
    if per_image is not None:
        per_image[model_name] = metrics
    name = "saliency" if explainer is None else getattr(explainer, "__name__", type(explainer).__name__)
    return summary_rows(metrics, model_name=model_name, dataset=dataset, explainer=name)

