"""Figures of scores along training: one panel per TensorBoard tag, one line per run."""

from __future__ import annotations

from typing import Iterable, Mapping


import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["plot_curves"]


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
