"""Figures and files of a :class:`~neuroreg.scorecard.card.Scorecard` (its ``save``): summary first, then one part
per section.

Written into one folder: ``report.html`` (self-contained: figures inlined),
``report.md``, ``summary.csv``/``summary.json`` (one row per model, raw numbers),
``scorecard.csv``/``scorecard.json`` (every row, with its section),
``scorecard_meta.json`` (models, what each section ran on, preprocessing),
PNG figures and TensorBoard scalars under ``tensorboard/``.
"""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
import numpy as np
import pandas as pd
from scipy.stats import rankdata

from neuroreg._utils.io import atomic_path, atomic_write_text
from neuroreg.results.figures import save_figure
from neuroreg.results.report import Report, write_table
from neuroreg.scorecard.behaviour_report import behaviour_part
from neuroreg.scorecard.summary import SECTIONS, ScorecardLike, summarize_brain
from neuroreg.results.table import ScoreTable

__all__ = ["plot_comparison", "plot_depth_profile", "plot_rdm_pair", "write_scorecard"]

_HEADINGS = {"accuracy": "Task accuracy", "attacks": "Adversarial robustness",
             "corruptions": "Corruption robustness", "brain": "Brain scores", "behaviour": "Behaviour and the Brain-Score composite",
             "factortopy": "FactorTopy hierarchy", "human_alignment": "Human alignment (ClickMe)"}


def _slug(text: object) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(text)).strip("_")[:80] or "x"


def plot_comparison(summary: pd.DataFrame) -> plt.Figure:
    """Grouped bars, one colour per model: task and robustness, brain scores (normalised by the
    ceiling where one is known), FactorTopy slope; one panel per group that has numbers."""
    task_cols = [c for c in summary.columns if c.startswith(("clean_top1", "robust_acc", "corruption_acc"))]
    brain_cols = [c for c in summary.columns if re.match(r"^(crsa|versa|predictivity):", c)
                  and not c.endswith((" ceiling", " normalized"))]
    ft_cols = [c for c in summary.columns if c.startswith("factortopy_slope")]
    panels = [(t, cols) for t, cols in (("task and robustness (accuracy)", task_cols),
                                        ("brain score (test split; * = / noise ceiling)", brain_cols),
                                        ("FactorTopy hierarchy slope", ft_cols)) if cols]
    if not panels:
        raise ValueError("the summary has no numbers to compare")
    widths = [max(2.5, 0.9 * len(cols) * max(1, len(summary)) ** 0.5) for _, cols in panels]
    fig, axes = plt.subplots(1, len(panels), figsize=(min(18, 2 + sum(widths)), 4.2),
                             gridspec_kw={"width_ratios": widths}, squeeze=False)
    n_models = len(summary)
    colors = plt.cm.tab10(np.arange(n_models) % 10)
    for ax, (title, cols) in zip(axes[0], panels):
        width = 0.8 / n_models
        labels = []
        for j, col in enumerate(cols):
            norm_col = f"{col} normalized"
            use_norm = norm_col in summary.columns and summary[norm_col].notna().all()
            labels.append(("* " if use_norm else "") + col.replace(":", "\n", 1))
            for i, (_, row) in enumerate(summary.iterrows()):
                value = row[norm_col] if use_norm else row.get(col)
                if value is None or pd.isna(value):
                    continue
                ax.bar(j + (i - (n_models - 1) / 2) * width, value, width, color=colors[i],
                       label=row["model"] if j == 0 else None)
                ax.text(j + (i - (n_models - 1) / 2) * width, value, f"{value:.2f}", ha="center",
                        va="bottom" if value >= 0 else "top", fontsize=7)
        ax.set_xticks(range(len(cols)), labels, fontsize=7, rotation=30, ha="right")
        ax.axhline(0, color="black", lw=0.6)
        ax.set_title(title, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    # legend entries built from the models, not read back from the axes: matplotlib drops labels that
    # start with "_", so a model named that way would vanish from the legend (or leave it empty)
    names = [str(m) for m in summary["model"]]
    handles = [Patch(color=colors[i]) for i in range(len(names))]
    fig.legend(handles, names, loc="upper center", ncol=max(1, min(n_models, 4)), fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, 1.08))
    fig.tight_layout()
    return fig


def plot_depth_profile(table: ScoreTable, *, title: str = "") -> plt.Figure:
    """Held-out score against the layer's relative depth (0 = first layer, 1 = last): one panel per brain
    target, one line per model (mean over subjects), the noise-ceiling band (lower to upper bound) in grey."""
    df = table.to_pandas()
    df = df[df["split"] == "test"] if (df["split"] == "test").any() else df
    split = str(df["split"].iloc[0]) if len(df) else "test"
    if df.empty:
        raise ValueError("no rows to plot")
    target = "rdm_set" if "rdm_set" in df.columns and df["rdm_set"].notna().any() else "region"
    x_col = "depth" if "depth" in df.columns and df["depth"].notna().all() else "layer_index"
    targets = list(dict.fromkeys(df[target].astype(str)))
    models = list(dict.fromkeys(df["model"].astype(str)))
    colors = {m: plt.cm.tab10(i % 10) for i, m in enumerate(models)}
    n_cols = min(len(targets), 4)
    n_rows = -(-len(targets) // n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(3.4 * n_cols + 0.5, 3.0 * n_rows + 0.6), squeeze=False,
                             sharey=True)
    for ax, name in zip(axes.flat, targets):
        grp = df[df[target].astype(str) == name]
        for model, sub in grp.groupby(grp["model"].astype(str), sort=False):
            prof = sub.groupby(x_col, sort=True)["score"].mean()
            ax.plot(prof.index.astype(float), prof.values, marker="o", ms=3, color=colors[model], label=model)
        upper = pd.to_numeric(grp["ceiling_r"], errors="coerce").dropna()
        if len(upper):
            lower = pd.to_numeric(grp["ceiling_r_lower"], errors="coerce").dropna() if "ceiling_r_lower" in grp else []
            lo = float(np.mean(lower)) if len(lower) else float(upper.mean())
            ax.axhspan(lo, float(upper.mean()), color="gray", alpha=0.2, lw=0)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("relative depth" if x_col == "depth" else "layer index", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(targets):]:
        ax.set_visible(False)
    axes[0][0].set_ylabel(f"{df['metric'].iloc[0]} ({split} split)")
    # legend entries from the models (matplotlib hides labels starting with "_": see plot_comparison)
    labels = models
    handles = [Line2D([], [], marker="o", ms=3, color=colors[m]) for m in models]
    fig.legend(handles, labels, loc="lower center", ncol=max(1, min(len(labels), 3)), fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, -0.02 - 0.04 * (len(labels) > 3)))
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.08 + 0.05 * (len(labels) > 3), 1, 1))
    return fig


def plot_rdm_pair(model_rdm: np.ndarray, brain_rdm: np.ndarray, *, model_label: str, brain_label: str) -> plt.Figure:
    """Model and brain RDMs side by side in the same stimulus order, shown as percentile ranks."""
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.9))
    for ax, mat, label in ((axes[0], model_rdm, model_label), (axes[1], brain_rdm, brain_label)):
        mat = np.asarray(mat, dtype=float)
        iu = np.triu_indices(mat.shape[0], 1)
        ranks = np.zeros_like(mat)
        ranks[iu] = rankdata(mat[iu]) / len(iu[0])
        ranks = ranks + ranks.T
        image = ax.imshow(ranks, cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(label, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(image, ax=list(axes), fraction=0.025, label="dissimilarity (percentile)")
    return fig


def _tensorboard(card: ScorecardLike, summary: pd.DataFrame, folder: Path) -> None:
    try:
        from torch.utils.tensorboard import SummaryWriter  # local: loads torch; this module is torch-free
    except ImportError:  # tensorboard is optional at run time
        return
    for _, row in summary.iterrows():
        writer = SummaryWriter(log_dir=str(folder / "tensorboard" / _slug(row["model"])))
        try:
            for col, value in row.items():
                if col != "model" and value is not None and not pd.isna(value):
                    writer.add_scalar(f"scorecard/{col}", float(value), 0)
        finally:
            writer.close()


#: What one section of the report shows: (text, tables, figures as (path, caption)).
_Part = tuple[str, list, list[tuple[Path, str]]]


def _attacks_part(card: ScorecardLike, table: ScoreTable, folder: Path) -> _Part:
    from neuroreg.robustness import plot_accuracy_vs_eps  # local: neuroreg.robustness loads torch
    figs: list[tuple[Path, str]] = []
    main = ScoreTable(r for r in table if not str(r.get("metric", "")).startswith("sanity:"))
    try:
        figs.append((save_figure(plot_accuracy_vs_eps(table), folder / "accuracy_vs_eps.png"),
                     "Accuracy against the attack budget eps, one line per model and attack; accuracy "
                     "must fall monotonically and reach chance at large eps."))
    except ValueError:
        pass
    df = table.to_pandas()
    sanity = df[df["metric"].astype(str).str.startswith("sanity:")]
    keep = [c for c in ("model", "metric", "attack", "passed", "detail") if c in sanity.columns]
    n_fail = int((~sanity["passed"].astype(bool)).sum()) if "passed" in sanity.columns else 0
    text = (f"{len(sanity)} sanity checks, {n_fail} failed." if len(sanity) else "")
    return text, [("sanity checks", sanity[keep]), ("accuracy under attack", main.filter(metric="accuracy"))], figs


def _corruptions_part(card: ScorecardLike, table: ScoreTable, folder: Path) -> _Part:
    from neuroreg.robustness import plot_corruption_heatmap  # local: neuroreg.robustness loads torch
    figs: list[tuple[Path, str]] = []
    for model in card.models:
        sub = table.filter(model=model)
        if not len(sub):
            continue
        try:
            figs.append((save_figure(plot_corruption_heatmap(sub, title=f"{model}: accuracy under corruption"),
                                     folder / f"corruptions_{_slug(model)}.png"),
                         f"{model}: accuracy per corruption (rows) and severity (columns)."))
        except ValueError:
            pass
    return "", [("corruption accuracy", table)], figs


def _brain_part(card: ScorecardLike, table: ScoreTable, folder: Path) -> _Part:
    figs: list[tuple[Path, str]] = []
    for ds in dict.fromkeys(r.get("dataset") for r in table):
        sub = table.filter(dataset=ds)
        for metric in [m for m in dict.fromkeys(r["metric"] for r in sub) if m in ("crsa", "versa", "predictivity")]:
            figs.append((save_figure(plot_depth_profile(sub.filter(metric=metric), title=f"{metric} on {ds}"),
                                     folder / f"layer_profile_{_slug(ds)}_{metric}.png"),
                         f"{metric} on {ds} layer by layer (held-out split), against relative depth; grey band: "
                         "noise ceiling (lower to upper bound)."))
    for (model, ds), (layer, model_rdm, brain_rdm, brain_name) in card.rdms.items():
        figs.append((save_figure(plot_rdm_pair(model_rdm, brain_rdm, model_label=f"{model}, {layer}",
                                               brain_label=f"{ds}: {brain_name} (mean over subjects)"),
                                 folder / f"rdm_{_slug(model)}_{_slug(ds)}.png"),
                     f"RDMs of {model} at its best layer ({layer}) and of the brain ({brain_name}), same "
                     "stimulus order, as percentile ranks."))
    tables = [("best layer per region (test split, mean over subjects)", summarize_brain(table)),
              ("every layer", table)]
    return "The best layer is chosen on the train split and reported on the test split.", tables, figs


def _factortopy_part(card: ScorecardLike, table: ScoreTable, folder: Path) -> _Part:
    from neuroreg.scoring.factortopy.plots import plot_layer_map  # local: loads torch (scoring)
    figs: list[tuple[Path, str]] = []
    for (model, ds), ft in card.fits.items():
        figs.append((save_figure(plot_layer_map(ft, title=f"{model} on {ds}"),
                                 folder / f"factortopy_{_slug(model)}_{_slug(ds)}.png"),
                     f"FactorTopy layer map of {model} on {ds}: colour = layer each voxel reads from, "
                     "brightness = confidence."))
    return "", [("FactorTopy summary", table)], figs


def _behaviour_part(card: ScorecardLike, table: ScoreTable, folder: Path) -> _Part:
    return behaviour_part(card.models, table, folder)


_PARTS = {"attacks": _attacks_part, "corruptions": _corruptions_part, "brain": _brain_part,
          "behaviour": _behaviour_part, "factortopy": _factortopy_part}


def _write_tables(card: ScorecardLike, folder: Path) -> tuple[dict[str, Path], pd.DataFrame]:
    """``scorecard.csv/json`` (every row) and ``summary.csv/json`` (one row per model); returns the paths and
    the summary."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = write_table(card.table(), folder, "scorecard")
    summary = card.summary()
    with atomic_path(folder / "summary.csv") as tmp:
        summary.to_csv(tmp, index=False)
    atomic_write_text(folder / "summary.json", summary.to_json(orient="records", indent=2))
    paths["summary"] = folder / "summary.csv"
    return paths, summary


def _add_summary(report: Report, card: ScorecardLike, summary: pd.DataFrame, folder: Path) -> Path:
    """The report's first part: the models side by side (``comparison.png``) and the summary table."""
    n = len(card.models)
    figures = []
    try:
        figures.append((save_figure(plot_comparison(summary), folder / "comparison.png"),
                        f"The {n} model{'s' if n > 1 else ''} side by side: accuracy, robustness and brain scores "
                        "(bars marked * are divided by the noise ceiling)."))
    except ValueError:
        pass
    shown = summary.set_index("model").T.reset_index().rename(columns={"index": "measure"})
    report.add("Summary", f"{n} model{'s' if n > 1 else ''}: {', '.join(card.models)}. Brain scores are test-split "
               "scores of the layer chosen on the train split, averaged over subjects; 'normalized' = score / noise "
               "ceiling. summary.csv holds the same numbers unrounded, one row per model.",
               tables=[("summary (one column per model)", shown)], figures=figures, fold=False)
    return folder / "comparison.png"


def _add_section(report: Report, card: ScorecardLike, section: str, folder: Path) -> list[tuple[str, str, str]]:
    """One section's part of the report; returns the figures drawn from state that is not saved (RDMs,
    FactorTopy maps) as (path, caption, section), so a loaded card lists them again."""
    table = card.sections[section]
    if section in _PARTS:
        text, tables, figs = _PARTS[section](card, table, folder)
    else:   # accuracy, and sections added with Scorecard.add: their table as it is
        text, tables, figs = "", [(section, table)], []
    derived = [(str(p), c, section) for p, c in figs if Path(p).name.startswith(("rdm_", "factortopy_"))]
    for path, caption, sec in card.figures:
        if sec == section and not any(Path(path) == Path(f) for f, _ in figs):
            figs.append((Path(path), caption))
    notes = [f"{m}: {t}" for m, t in card.ran_on.get(section, {}).items()]
    report.add(_HEADINGS.get(section, section.replace("_", " ").capitalize()), text, tables=tables,
               figures=figs, notes=notes)
    return derived


def write_scorecard(card: ScorecardLike, folder: Path, *, tensorboard: bool = True) -> dict[str, Path]:
    """Write every file of ``card`` into ``folder`` (see the module docstring); returns the main paths."""
    paths, summary = _write_tables(card, folder)
    report = Report(card.title, folder)
    paths["comparison"] = _add_summary(report, card, summary, folder)
    order = [s for s in SECTIONS if s in card.sections] + [s for s in card.sections if s not in SECTIONS]
    derived: list[tuple[str, str, str]] = []   # figures that cannot be redrawn after load (RDMs, FactorTopy maps)
    for section in order:
        derived.extend(_add_section(report, card, section, folder))
    paths.update(report.write())
    paths["meta"] = card.write_meta(folder, derived)
    if tensorboard:
        _tensorboard(card, summary, folder)
    return paths
