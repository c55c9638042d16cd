"""``curves.png``: scores along training, one panel per TensorBoard tag, one line per run.

The one drawing of the curves, used by the scorecard callback at the end of a run
and by ``neuroreg evaluate --run A B`` for several runs side by side.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Mapping

import matplotlib.pyplot as plt

from neuroreg.results.figures import save_figure

__all__ = ["plot_curves", "write_curves_figure"]


def plot_curves(rows: Iterable[Mapping]) -> plt.Figure:
    """rows: dicts with ``model``, ``step``, ``tag``, ``value`` (``curves.csv`` of one or several runs).

    Returns a figure with one panel per tag (``brain/...``, ``robust/...``, ``clean/...``): the value
    against the optimizer step, one line per model/run.
    """
    rows = list(rows)
    if not rows:
        raise ValueError("no curve rows to plot (the periodic scorecard never ran)")
    tags = list(dict.fromkeys(r["tag"] for r in rows))
    n = len(tags)
    cols = min(3, n)
    nrows = -(-n // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.0 * nrows), squeeze=False)
    for ax, tag in zip(axes.flat, tags):
        for model in dict.fromkeys(r["model"] for r in rows):
            pts = sorted((int(r["step"]), float(r["value"])) for r in rows if r["tag"] == tag and r["model"] == model)
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, label=str(model))
        ax.set_title(tag, fontsize=9)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return fig


def write_curves_figure(rows: Iterable[Mapping], folder: str | os.PathLike) -> Path:
    """Draw ``rows`` (:func:`plot_curves`) into ``folder/curves.png`` (110 dpi, through
    :func:`neuroreg.results.figures.save_figure`); returns the path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return save_figure(plot_curves(rows), folder / "curves.png", dpi=110)
