"""Files, figures and TensorBoard scalars of a forgetting report.

``write_forgetting(table, folder)`` writes ``forgetting.csv``, ``forgetting.json``,
``forgetting.md`` (warnings first, then the new task, the old tasks, the drift and the brain scores,
each under its ``kind``) and three figures (all atomically): ``forgetting_cka_drift.png``
(CKA to the start per layer), ``forgetting_brain.png`` (brain score before and
after per region) and ``forgetting_accuracy.png`` (accuracies before and after).
For a chain of runs, :func:`plot_accuracy_matrix` draws the accuracy matrix
(``forgetting_chain.png`` next to ``forgetting_chain.csv``).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from neuroreg._utils.io import atomic_write_text
from neuroreg.results.figures import save_figure
from neuroreg.results.report import format_value
from neuroreg.results.table import ScoreTable
from neuroreg.finetune.forgetting_rows import metric_kind

__all__ = ["write_forgetting", "forgetting_markdown", "forgetting_warnings", "log_forgetting", "plot_cka_drift", "plot_brain_change",
           "plot_accuracy_change", "plot_accuracy_matrix"]

_ACCURACY_METRICS = ("task_accuracy", "balanced_accuracy", "finetuned_head_accuracy", "original_accuracy",
                     "previous_task_accuracy", "retention_accuracy")
_BRAIN_METRICS = ("crsa", "versa", "hierarchy_slope")


_KIND_HEADINGS = {
    "new_task": ("New task: transfer, not forgetting",
                 "task_accuracy / balanced_accuracy: the same read-out before and after, a logistic probe (one "
                 "recipe) trained on the start's features (before) and on the fine-tuned backbone's features "
                 "(after); change = what fine-tuning did to the features for the new task. finetuned_head_*: the "
                 "fine-tuned network's own head (after only; the start has no head for this task); chance = the "
                 "best constant answer."),
    "old_task": ("Old tasks: forgetting",
                 "The original task, the earlier tasks of a chain of runs and the retention probes; change < 0 "
                 "is what the network lost."),
    "representation": ("Representation drift", ""),
    "brain": ("Brain alignment", "Brain-score change (best layer chosen on the train half, test half)."),
}


def _kinds(df: pd.DataFrame) -> pd.Series:
    """The ``kind`` column; for a report written before it existed (or rows added by hand), the metric's kind."""
    known = df["metric"].map(_kind_or_other)
    return df["kind"].fillna(known).astype(str) if "kind" in df else known


def _kind_or_other(metric: str) -> str:
    try:
        return metric_kind(metric)
    except ValueError:
        return "other"


def forgetting_warnings(table: ScoreTable) -> list[str]:
    """The report's warnings (a fine-tuned head below the start's probe or near chance), one line each."""
    out = []
    for row in table:
        if row.get("warning"):
            out.append(f"{row.get('model') or 'model'}, {row.get('dataset')}: {row['metric']} "
                       f"{format_value(row['score'])}: {row['warning']}")
    return out


def forgetting_markdown(table: ScoreTable) -> str:
    """A Markdown summary: warnings first, then one part per ``kind`` (new task, old tasks, drift, brain), one row
    per (metric, dataset, region) with before / after / change columns."""
    df = table.to_pandas()
    if df.empty:
        return "# Forgetting report\n\n(no rows)\n"
    df = df.assign(dataset=df.get("dataset", pd.Series([None] * len(df))).fillna(""),
                   region=df["region"].fillna(""), layer=df["layer"].fillna(""))
    df = df.assign(kind=_kinds(df))
    lines = ["# Forgetting report", "",
             "before = start network, after = fine-tuned network, change = after - before.", ""]
    if df["metric"].str.startswith("previous_task").any():
        lines[-1:-1] = ["previous_task_*: earlier tasks of the chain of runs; before = the network at the end of "
                        "that task, after = the fine-tuned backbone under that task's head."]
    warnings = forgetting_warnings(table)
    if warnings:
        lines += ["## Warnings", ""] + [f"- WARNING: {w}" for w in warnings] + [""]
    for kind in [*_KIND_HEADINGS, *sorted(set(df["kind"]) - set(_KIND_HEADINGS))]:
        part = df[df["kind"] == kind]
        if part.empty:
            continue
        heading, note = _KIND_HEADINGS.get(kind, (kind, ""))
        lines += [f"## {heading}", ""] + ([note, ""] if note else [])
        if kind == "representation":
            drift = part[part["metric"] == "cka_to_start"]
            lines += [f"CKA between start and fine-tuned features ({drift['dataset'].iloc[0]}; 1 = unchanged):", "",
                      "| layer | CKA |", "|---|---|"]
            lines += [f"| {r.layer} | {format_value(float(r.score))} |" for r in drift.itertuples()]
            lines.append("")
            continue
        new_task = kind == "new_task"
        extra = " chance | warning |" if new_task else ""
        lines += [f"| metric | dataset | region | layer (before / after) | before | after | change |{extra}",
                  "|---|---|---|---|---|---|---|" + ("---|---|" if new_task else "")]
        for (metric, dataset, region), grp in part.groupby(["metric", "dataset", "region"], sort=False):
            by = {r["stage"]: r for _, r in grp.iterrows()}
            layers = " / ".join(str(by[s]["layer"]) for s in ("before", "after") if s in by and by[s]["layer"])
            vals = [format_value(by[s]["score"]) if s in by else "" for s in ("before", "after", "change")]
            row = f"| {metric} | {dataset} | {region} | {layers} | {' | '.join(vals)} |"
            if new_task:
                first = grp.iloc[0]
                chance = first.get("chance")
                warning = first.get("warning")
                row += f" {format_value(chance)} | {'WARNING: ' + str(warning) if isinstance(warning, str) and warning else ''} |"
            lines.append(row)
        lines.append("")
    return "\n".join(lines)


def plot_cka_drift(table: ScoreTable):
    """Line plot: CKA to the start network per layer (depth order). Returns a matplotlib figure or None."""
    df = table.filter(metric="cka_to_start").to_pandas()
    if df.empty:
        return None
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(range(len(df)), df["score"], marker="o")
    ax.set_xticks(range(len(df)), [str(x) for x in df["layer"]], rotation=30, ha="right")
    ax.set_ylabel("CKA (start vs fine-tuned)")
    ax.set_xlabel("layer")
    ax.set_ylim(min(0.0, float(df["score"].min()) - 0.05), 1.05)
    ax.axhline(1.0, color="grey", lw=0.8, ls="--")
    ax.set_title("representation drift")
    return fig


def _paired_bars(df: pd.DataFrame, label_cols: list[str], ylabel: str, title: str):
    df = df[df["stage"].isin(["before", "after"])].copy()
    df["label"] = df[label_cols].fillna("").astype(str).agg(" ".join, axis=1).str.strip()
    pivot = df.pivot_table(index="label", columns="stage", values="score", aggfunc="first", sort=False)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.8 * len(pivot) + 2), 3.4))
    x = np.arange(len(pivot))
    for i, stage in enumerate(("before", "after")):
        if stage in pivot:
            ax.bar(x + (i - 0.5) * 0.38, pivot[stage].to_numpy(), width=0.38, label=stage)
    ax.set_xticks(x, pivot.index, rotation=30, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    return fig


def plot_brain_change(table: ScoreTable):
    """Bars: brain score (cRSA/veRSA/hierarchy slope) before and after per data set and region."""
    df = table.filter(metric=list(_BRAIN_METRICS)).to_pandas()
    if df.empty:
        return None
    return _paired_bars(df, ["metric", "dataset", "region"], "score", "brain alignment before / after")


def plot_accuracy_change(table: ScoreTable):
    """Bars: task, original-task, earlier-task (chain) and retention accuracies before and after."""
    df = table.filter(metric=list(_ACCURACY_METRICS)).to_pandas()
    if df.empty:
        return None
    return _paired_bars(df, ["metric", "dataset"], "accuracy", "accuracy before / after")


def plot_accuracy_matrix(matrix: pd.DataFrame):
    """Heat map of a chain's accuracy matrix (rows: after each run; columns: tasks), values printed in the cells.

    ``matrix``: :func:`neuroreg.finetune.chain.accuracy_matrix` (its ``forgetting`` row is left out).
    """
    r = matrix.drop(index="forgetting", errors="ignore")
    values = r.to_numpy(dtype=float)
    fig, ax = plt.subplots(figsize=(1.3 * len(r.columns) + 2.5, 0.9 * len(r) + 1.6))
    image = ax.imshow(np.ma.masked_invalid(values), cmap="viridis", vmin=0.0, vmax=1.0)
    for (j, i), v in np.ndenumerate(values):
        if np.isfinite(v):
            ax.text(i, j, f"{v:.2f}", ha="center", va="center", color="white" if v < 0.6 else "black")
    ax.set_xticks(range(len(r.columns)), [str(c) for c in r.columns], rotation=30, ha="right")
    ax.set_yticks(range(len(r)), [str(i) for i in r.index])
    ax.set_xlabel("task (its test split, its own head)")
    ax.set_ylabel("after run")
    ax.set_title("accuracy over the chain of runs")
    fig.colorbar(image, ax=ax, label="accuracy")
    return fig


def write_forgetting(table: ScoreTable, folder: str | Path, *, figures: bool = True) -> dict[str, Path]:
    """Write the report's CSV, JSON, Markdown and figures to ``folder``; returns name -> path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = {"csv": table.to_csv(folder / "forgetting.csv")}
    table.to_json(folder / "forgetting.json")
    out["json"] = folder / "forgetting.json"
    out["md"] = atomic_write_text(folder / "forgetting.md", forgetting_markdown(table))
    if figures:
        for key, plot in (("cka_drift", plot_cka_drift), ("brain", plot_brain_change),
                          ("accuracy", plot_accuracy_change)):
            fig = plot(table)
            if fig is not None:
                out[key] = save_figure(fig, folder / f"forgetting_{key}.png")
    return out


def log_forgetting(table: ScoreTable, writer, step: int = 0) -> int:
    """Add every row as a TensorBoard scalar ``forgetting/<metric>/<dataset>/<region>/<layer>/<stage>``,
    and the figures; ``writer`` is a ``SummaryWriter`` (e.g. ``trainer.logger.experiment``). Returns the count."""
    n = 0
    for row in table:
        parts = [row["metric"], row.get("dataset"), row.get("region"), row.get("layer"), row.get("stage")]
        tag = "forgetting/" + "/".join(str(p) for p in parts if p not in (None, ""))
        writer.add_scalar(tag, float(row["score"]), step)
        n += 1
    for key, plot in (("cka_drift", plot_cka_drift), ("brain", plot_brain_change), ("accuracy", plot_accuracy_change)):
        fig = plot(table)
        if fig is not None:
            writer.add_figure(f"forgetting/{key}", fig, step)
    writer.flush()
    return n
