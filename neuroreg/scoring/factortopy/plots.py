"""Figures of a fitted :class:`~neuroreg.scoring.factortopy.FactorTopy` (Yang et al. 2024, figs. 3, 5, 7).

Every function returns a matplotlib ``Figure`` and writes it atomically when ``path``
is given (format from the suffix); the matplotlib backend is left as it is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import hsv_to_rgb
from matplotlib.figure import Figure
from numpy.typing import ArrayLike
from sklearn.utils.validation import check_is_fitted

from neuroreg.results.figures import save_figure
from neuroreg.scoring.factortopy.estimator import FactorTopy
from neuroreg.scoring.factortopy.summary import DEFAULT_LEVELS, hierarchy_fit

__all__ = ["plot_layer_map", "plot_roi_histograms", "plot_hierarchy", "plot_compare"]


def _save(fig: Figure, path: str | Path | None) -> Figure:
    """Write ``fig`` when a path is given; the figure is returned open either way."""
    if path is not None:
        save_figure(fig, path, dpi=120, close=False)
    return fig


def _fitted(ft: FactorTopy) -> FactorTopy:
    if not isinstance(ft, FactorTopy):
        raise TypeError(f"expected a fitted FactorTopy; got {type(ft).__name__}")
    check_is_fitted(ft)
    return ft


def layer_colors(best_layer: ArrayLike, confidence: ArrayLike, n_layers: int) -> np.ndarray:
    """RGB ``(n, 3)``: hue from the selected layer (shallow red -> deep violet), brightness from confidence."""
    hue = 0.8 * np.asarray(best_layer, dtype=np.float64) / max(n_layers - 1, 1)
    value = 0.25 + 0.75 * np.clip(np.asarray(confidence, dtype=np.float64), 0.0, 1.0)
    hsv = np.stack([hue, np.full_like(hue, 0.85), value], axis=1)
    return hsv_to_rgb(hsv)


def plot_layer_map(ft: FactorTopy, *, point_size: float = 12.0, title: str | None = None, path=None) -> Figure:
    """Cortical map (first two coordinates): colour = most probable layer (brightness = confidence),
    and a second panel with the confidence alone."""
    ft = _fitted(ft)
    xy = ft.coords_[:, :2]
    n_layers = len(ft.layers_)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), constrained_layout=True)
    axes[0].scatter(xy[:, 0], xy[:, 1], c=layer_colors(ft.best_layer_, ft.confidence_, n_layers),
                    s=point_size, linewidths=0)
    handles = [plt.Line2D([], [], marker="o", linestyle="", markersize=7,
                          color=layer_colors([k], [1.0], n_layers)[0], label=name)
               for k, name in enumerate(ft.layers_)]
    axes[0].legend(handles=handles, title="layer", fontsize=7, loc="best", framealpha=0.7)
    axes[0].set_title("selected layer (brightness = confidence)")
    sc = axes[1].scatter(xy[:, 0], xy[:, 1], c=ft.confidence_, cmap="magma", vmin=0, vmax=1,
                         s=point_size, linewidths=0)
    fig.colorbar(sc, ax=axes[1], label="confidence 1 - H/log L")
    axes[1].set_title("confidence")
    if ft.roi_ is not None:
        for roi in np.unique(ft.roi_):
            centre = xy[ft.roi_ == roi].mean(0)
            for ax in axes:
                ax.annotate(str(roi), centre, ha="center", va="center", fontsize=9, weight="bold",
                            bbox=dict(boxstyle="round,pad=0.2", fc="white", alpha=0.6, lw=0))
    for ax in axes:
        ax.set_aspect("equal")
        ax.set_xlabel("cortical x")
        ax.set_ylabel("cortical y")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_roi_histograms(ft: FactorTopy, *, levels: Mapping[str, float] | None = None, path=None) -> Figure:
    """Per ROI, the share of voxels whose most probable layer is each layer."""
    ft = _fitted(ft)
    if ft.roi_ is None:
        raise ValueError("plot_roi_histograms needs ROI labels: the fitted brain had no unit_info['roi']")
    order = dict(DEFAULT_LEVELS if levels is None else levels)
    rois = sorted(np.unique(ft.roi_).tolist(), key=lambda r: (order.get(r, np.inf), str(r)))
    n_layers = len(ft.layers_)
    fig, axes = plt.subplots(1, len(rois), figsize=(2.6 * len(rois) + 1, 3.2), sharey=True,
                             constrained_layout=True, squeeze=False)
    colors = layer_colors(np.arange(n_layers), np.ones(n_layers), n_layers)
    for ax, roi in zip(axes[0], rois):
        best = ft.best_layer_[ft.roi_ == roi]
        share = np.bincount(best, minlength=n_layers) / max(len(best), 1)
        ax.bar(np.arange(n_layers), share, color=colors)
        ax.set_xticks(np.arange(n_layers), ft.layers_, rotation=60, fontsize=7)
        ax.set_title(f"{roi} (n={len(best)})")
    axes[0, 0].set_ylabel("share of voxels")
    return _save(fig, path)


def plot_hierarchy(ft: FactorTopy, *, levels: Mapping[str, float] | None = None, seed: int = 0,
                   path=None) -> Figure:
    """Voxel depth against ROI level with the fitted hierarchy line (slope, b0, b1 in the title)."""
    ft = _fitted(ft)
    if ft.roi_ is None:
        raise ValueError("plot_hierarchy needs ROI labels: the fitted brain had no unit_info['roi']")
    levels = dict(DEFAULT_LEVELS if levels is None else levels)
    fit = hierarchy_fit(ft.layer_, ft.roi_, levels)
    keep = np.isin(ft.roi_, list(levels))
    x = np.array([levels[r] for r in ft.roi_[keep]], dtype=np.float64)
    jitter = np.random.default_rng(seed).uniform(-0.04, 0.04, size=x.shape)  # display only
    fig, ax = plt.subplots(figsize=(5, 4), constrained_layout=True)
    ax.scatter(x + jitter, ft.layer_[keep], s=6, alpha=0.35, color="0.4", linewidths=0)
    for roi, lev in levels.items():
        mask = ft.roi_ == roi
        if mask.any():
            ax.errorbar(lev, ft.layer_[mask].mean(), yerr=ft.layer_[mask].std(), fmt="o", color="C3", capsize=3)
    grid = np.linspace(min(levels.values()), max(levels.values()), 2)
    ax.plot(grid, fit["b0"] + fit["slope"] * grid, color="C0", lw=2)
    ax.set_xticks(list(levels.values()), list(levels.keys()))
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlabel("ROI level")
    ax.set_ylabel("selected depth (0 = first layer, 1 = last)")
    ax.set_title(f"slope {fit['slope']:.2f}  b0 {fit['b0']:.2f}  b1 {fit['b1']:.2f}")
    return _save(fig, path)


def plot_compare(before: FactorTopy, after: FactorTopy, *, labels: tuple[str, str] = ("before", "after"),
                 levels: Mapping[str, float] | None = None, path=None) -> Figure:
    """Layer maps before and after fine-tuning side by side, with slope and mean confidence."""
    before, after = _fitted(before), _fitted(after)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), constrained_layout=True)
    for ax, ft, label in zip(axes, (before, after), labels):
        xy = ft.coords_[:, :2]
        ax.scatter(xy[:, 0], xy[:, 1], c=layer_colors(ft.best_layer_, ft.confidence_, len(ft.layers_)),
                   s=10, linewidths=0)
        text = f"{label}: confidence {ft.confidence_.mean():.2f}"
        if ft.roi_ is not None:
            try:
                text += f", slope {ft.hierarchy_slope(levels):.2f}"
            except ValueError:
                pass
        ax.set_title(text)
        ax.set_aspect("equal")
    return _save(fig, path)
