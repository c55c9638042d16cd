"""Report figures: accuracy vs eps per attack, and a corruption x severity heatmap.

Both take the ScoreTable of the matching suite and return a matplotlib Figure
(Agg canvas, no display needed); ``path`` saves it atomically.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from neuroreg.results.figures import save_figure
from neuroreg.results.table import ScoreTable

__all__ = ["plot_accuracy_vs_eps", "plot_corruption_heatmap"]


def _save(fig: Figure, path: str | Path | None) -> None:
    if path is not None:
        save_figure(fig, path, dpi=150, close=False)


def plot_accuracy_vs_eps(table: ScoreTable, *, path: str | Path | None = None, eps_scale: float | None = None,
                         title: str | None = None) -> Figure:
    """Accuracy (mean, +/- sd band for stochastic models) against eps, one line per attack and model.

    ``table``: output of :func:`~neuroreg.robustness.attack_suite` (rows with
    role "main"). ``eps_scale``: multiply eps on the axis (255 shows L-inf eps
    in 8-bit steps); default 255 for L-inf, 1 for L2.
    """
    df = table.to_pandas()
    if df.empty or "role" not in df.columns:
        raise ValueError("table has no attack-suite rows (column 'role' missing); pass the output of attack_suite")
    rows = df[(df["metric"] == "accuracy") & (df["role"] == "main")]
    if rows.empty:
        raise ValueError("table has no accuracy rows of the requested attacks")
    norms = sorted(rows["norm"].dropna().unique())
    scale = eps_scale if eps_scale is not None else (255.0 if norms == ["Linf"] else 1.0)
    fig = Figure(figsize=(5.5, 4))
    ax = fig.add_subplot()
    for (model, attack), grp in rows.groupby(["model", "attack"], sort=False):
        grp = grp.sort_values("eps")
        eps = grp["eps"].to_numpy(float) * scale
        acc = grp["score"].to_numpy(float)
        label = attack if rows["model"].nunique() == 1 else f"{model}: {attack}"
        line, = ax.plot(eps, acc, marker="o", label=label)
        sd = grp["sd"].to_numpy(float) if "sd" in grp else np.zeros_like(acc)
        if np.nan_to_num(sd).any():
            ax.fill_between(eps, acc - sd, acc + sd, color=line.get_color(), alpha=0.2)
    unit = "eps x 255" if scale == 255.0 else ("eps" if scale == 1.0 else f"eps x {scale:g}")
    ax.set_xlabel(f"{unit} ({', '.join(norms)})")
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.02, 1.02)
    failed = df[df["metric"].astype(str).str.startswith("sanity:") & (df["score"] == 0)]
    ax.set_title(title or ("accuracy under attack" + (f" ({len(failed)} sanity check(s) FAILED)" if len(failed) else "")))
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    _save(fig, path)
    return fig


def plot_corruption_heatmap(table: ScoreTable, *, path: str | Path | None = None, title: str | None = None) -> Figure:
    """Accuracy per corruption (rows) x severity (columns), from :func:`~neuroreg.robustness.corruption_suite`."""
    df = table.to_pandas()
    if df.empty or "corruption" not in df.columns:
        raise ValueError("table has no corruption-suite rows (column 'corruption' missing)")
    rows = df[(df["metric"] == "accuracy") & (df["corruption"] != "none")]
    if rows.empty:
        raise ValueError("table has no corrupted accuracy rows")
    if rows["model"].nunique() > 1:
        raise ValueError(f"the heatmap shows one model; table holds {sorted(rows['model'].unique())} "
                         "(filter it with table.filter(model=...))")
    names = list(dict.fromkeys(rows["corruption"]))
    sevs = sorted(int(s) for s in rows["severity"].unique())
    grid = np.full((len(names), len(sevs)), np.nan)
    for r in rows.itertuples(index=False):
        grid[names.index(r.corruption), sevs.index(int(r.severity))] = r.score
    fig = Figure(figsize=(1.2 + 0.9 * len(sevs), 0.9 + 0.35 * len(names)))
    ax = fig.add_subplot()
    image = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(sevs)), [str(s) for s in sevs])
    ax.set_yticks(range(len(names)), [n.replace("_", " ") for n in names])
    ax.set_xlabel("severity")
    for i in range(len(names)):
        for j in range(len(sevs)):
            if np.isfinite(grid[i, j]):
                ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if grid[i, j] < 0.5 else "black")
    clean = df[(df["metric"] == "accuracy") & (df["corruption"] == "none")]["score"]
    ax.set_title(title or ("accuracy under corruption" + (f" (clean {clean.iloc[0]:.2f})" if len(clean) else "")))
    fig.colorbar(image, ax=ax, label="accuracy")
    _save(fig, path)
    return fig
