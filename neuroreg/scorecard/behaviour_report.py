"""The behaviour section of the scorecard report and summary: I2n, Brain-Score's composite, per-image d'.

Read from the section's rows alone (:func:`neuroreg.scorecard.behaviour.behaviour_scores`), so a
scorecard loaded from disk draws the same figure.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from neuroreg.behaviour.composite import float_or_none
from neuroreg.results.figures import save_figure
from neuroreg.results.table import ScoreTable

__all__ = ["behaviour_columns", "behaviour_part", "plot_dprime_scatter"]

_COMPONENT_COLUMNS = ["model", "component", "metric", "layer", "primates", "score", "ceiling", "ceiling_r",
                      "brainscore_ceiled", "protocol", "formula", "source"]
_I2N_COLUMNS = ["model", "dataset", "primates", "split", "score", "ceiling", "ceiling_r", "brainscore_ceiled",
                "n_trials", "n_images", "number_of_trials", "layer"]


def behaviour_columns(rows: ScoreTable) -> dict[str, Any]:
    """Summary columns of one model's behaviour rows: ``brainscore:<component>`` (ceiled scores:
    V4, IT, behaviour, composite), ``i2n:<primates>`` with its ``ceiling`` and ``ceiled``."""
    out: dict[str, Any] = {}
    for r in rows:
        if r.get("component"):
            out[f"brainscore:{r['component']}"] = r.get("brainscore_ceiled")
        elif r.get("metric") == "i2n" and r.get("split") == "mean":
            key = f"i2n:{r.get('primates')}"
            out[key] = r.get("score")
            out[f"{key} ceiling"] = r.get("ceiling")
            out[f"{key} ceiled"] = r.get("brainscore_ceiled")
    return out


def plot_dprime_scatter(dprimes: pd.DataFrame, models: list[str], scores: dict[str, float | None]) -> plt.Figure:
    """Model d' against primate d' per image (I1n's normalised d'), one panel per model, points by object.

    dprimes: rows of metric ``image_dprime`` (``model``, ``object``, ``score`` = model d',
    ``primate_dprime``); scores: each model's I2n, for the panel titles.
    """
    if not models:
        raise ValueError("no models to plot")
    fig, axes = plt.subplots(1, len(models), figsize=(4.2 * len(models), 4), squeeze=False)
    objects = sorted(dprimes["object"].astype(str).unique())
    colours = {o: plt.get_cmap("tab10")(i % 10) for i, o in enumerate(objects)}
    for ax, model in zip(axes[0], models):
        sub = dprimes[dprimes["model"] == model]
        for obj in objects:
            part = sub[sub["object"].astype(str) == obj]
            ax.scatter(part["primate_dprime"], part["score"], s=14, color=colours[obj], label=obj)
        score = scores.get(model)
        ax.set_title(f"{model}" + (f" (I2n {score:.2f})" if score is not None else ""), fontsize=9)
        ax.set_xlabel("primate d' (normalised, per image)")
        ax.axhline(0, color="0.8", lw=0.5)
        ax.axvline(0, color="0.8", lw=0.5)
    axes[0][0].set_ylabel("model d' (normalised, per image)")
    axes[0][-1].legend(fontsize=7, frameon=False, loc="best")
    fig.tight_layout()
    return fig


def _slug(text: object) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(text)).strip("_")[:80] or "x"


def behaviour_part(models: list[str], table: ScoreTable, folder: Path) -> tuple[str, list, list[tuple[Path, str]]]:
    """The report's behaviour part: text, tables (composite, I2n, committed layers), the d' figure."""
    df = table.to_pandas()
    metric = df["metric"] if "metric" in df else pd.Series([], dtype=object)
    components = df[df["component"].notna()] if "component" in df else df.iloc[:0]
    i2n = df[(metric == "i2n") & ~df.index.isin(components.index)]
    committed = df[(metric == "predictivity") & (df["is_best"] == True)] if "is_best" in df else df.iloc[:0]  # noqa: E712
    composite = components[components["component"] == "composite"] if len(components) else components
    ranked: list[tuple[str, float]] = []
    for m, v in zip(composite.get("model", []), composite.get("score", [])):
        value = float_or_none(v)
        if value is not None:
            ranked.append((str(m), value))
    ranked.sort(key=lambda x: -x[1])
    figs: list[tuple[Path, str]] = []
    dprimes = df[metric == "image_dprime"]
    if ranked and len(dprimes):
        group = components[components["component"] == "behaviour"]["primates"].iloc[0]
        chosen = list(dict.fromkeys([ranked[0][0], ranked[-1][0]]))
        means = i2n[(i2n["split"].astype(str) == "mean") & (i2n["primates"] == group)]
        scores = {m: float_or_none(s) for m, s in zip(means["model"], means["score"])}
        figs.append((save_figure(plot_dprime_scatter(dprimes[dprimes["primates"] == group], chosen, scores),
                                 folder / f"behaviour_dprime_{_slug('_'.join(chosen))}.png"),
                     f"Per-image d' (I1n's normalised d', {group} trials) of the model against the primates', for "
                     f"the best and the worst model by Brain-Score composite ({', '.join(chosen)})."))
    text = ("Brain-Score's composite: the mean of the ceiled V4 predictivity, IT predictivity and I2n "
            "(Schrimpf et al. 2018); each row names the Brain-Score version whose formulas made it. I2n is "
            "reported per primate group with its split-half ceiling." if len(components) else "")
    tables = [("Brain-Score composite", components[[c for c in _COMPONENT_COLUMNS if c in components]]),
              ("I2n per primate group", i2n[[c for c in _I2N_COLUMNS if c in i2n]]),
              ("committed layers (predictivity, protocol brainscore)", committed)]
    return text, [t for t in tables if len(t[1])], figs
