"""Saving matplotlib figures: the one writer used by reports, robustness and FactorTopy plots.

Nothing here selects a backend: ``Figure.savefig`` renders through the figure's own
canvas, so a Jupyter user's inline backend stays as it was.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from neuroreg._utils.io import atomic_path

__all__ = ["save_figure"]


def save_figure(fig: Figure, path: str | Path, *, dpi: int = 120, close: bool = True) -> Path:
    """Write ``fig`` to ``path`` atomically (format from the suffix, PNG without one).

    dpi: dots per inch of raster formats. close: release the figure from pyplot's
    figure manager afterwards (reports that write many figures); keep it open when the
    figure is also returned to the caller. Returns ``path``.
    """
    target = Path(path)
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format=target.suffix.lstrip(".") or "png", dpi=dpi, bbox_inches="tight")
    if close:
        plt.close(fig)
    return target
