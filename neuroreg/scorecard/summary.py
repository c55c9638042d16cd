"""The summary of a scorecard: the best layer per brain region, and one row per model over every section.

Used by :class:`~neuroreg.scorecard.card.Scorecard` (its :meth:`summary`) and by the report
(:mod:`neuroreg.scorecard.report`), which both import this module; it imports neither.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Protocol, Sequence

import numpy as np
import pandas as pd

from neuroreg.results.table import ScoreTable
from neuroreg.scorecard.behaviour_report import behaviour_columns

__all__ = ["SECTIONS", "ScorecardLike", "summarize_brain", "summary_table"]


class ScorecardLike(Protocol):
    """What the summary and the report read of a :class:`~neuroreg.scorecard.card.Scorecard`."""

    models: list[str]
    sections: dict[str, ScoreTable]
    ran_on: dict[str, dict[str, str]]
    rdms: dict
    fits: dict
    figures: list[tuple[str, str, str]]
    title: str

    def table(self) -> ScoreTable: ...

    def summary(self) -> pd.DataFrame: ...

    def write_meta(self, folder: Path, derived: Sequence[tuple[str, str, str]] = ()) -> Path: ...


#: Sections :func:`neuroreg.scorecard.evaluation` fills, in report order; other sections (e.g. "forgetting",
#: "training") can be added with :meth:`Scorecard.add` and are reported after these.
SECTIONS = ("accuracy", "attacks", "corruptions", "brain", "behaviour", "factortopy", "human_alignment")

#: RobustBench's standard budgets (ImageNet scale): the summary's robust accuracy is read at the eps
#: nearest to these.
_STANDARD_EPS = {"Linf": 4 / 255, "L2": 0.5}
#: Brain metrics shown in the summary row (the tables keep every metric a scorer returns).
_SUMMARY_METRICS = ("crsa", "versa", "predictivity")


def _region_label(row: Mapping[str, Any]) -> str:
    parts = [row.get("dataset"), row.get("rdm_set") or row.get("region")]
    return ":".join(str(p) for p in parts if p not in (None, "") and not (isinstance(p, float) and np.isnan(p)))


def summarize_brain(table: ScoreTable) -> ScoreTable:
    """Test score of the train-chosen layer, averaged over subjects, per model x dataset x RDM set x region x metric.

    Metrics without a train split (encoding predictivity, already cross-validated)
    report the best layer's cross-validated score (split ``"cv"``).

    Columns: score (mean over subjects/RDMs), ``sd`` across them, ``n_subjects``,
    ``n_rdms``, ``ceiling_r`` (mean where known, Pearson-r scale), ``depth`` (mean relative depth of
    the chosen layers) and ``layers`` (the chosen layers).
    """
    if not len(table):
        return ScoreTable()
    table = ScoreTable({"rdm_set": None, "dataset": None, **r} for r in table)   # every row has both keys
    parts = []
    for metric in dict.fromkeys(r["metric"] for r in table):
        sub = table.filter(metric=metric)
        if any(r["split"] == "train" for r in sub):      # cRSA, veRSA: chosen on train, reported on test
            parts.append(sub.best(("dataset", "rdm_set", "region")))
        else:                                            # cross-validated scores (predictivity): best layer's cv score
            parts.append(sub.best(("dataset", "rdm_set", "region"), select_split=None))
    best = ScoreTable.concat(parts).to_pandas()
    out = ScoreTable()
    if best.empty:
        return out
    keys = ["model", "dataset", "rdm_set", "region", "metric"]
    for key, grp in best.groupby(keys, dropna=False, sort=False):
        ceiling = _numeric(grp["ceiling_r"]).dropna()
        depth = _numeric(grp["depth"]).dropna() if "depth" in grp else []
        out.append(**{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in zip(keys, key)},
                   split=str(grp["split"].iloc[0]), score=float(grp["score"].mean()),
                   sd=float(grp["score"].std(ddof=0)), n_subjects=int(grp["subject"].nunique(dropna=False)),
                   n_rdms=int(len(grp)), ceiling_r=float(ceiling.mean()) if len(ceiling) else None,
                   depth=float(np.mean(depth)) if len(depth) else None,
                   layers=",".join(dict.fromkeys(grp["layer"].astype(str))))
    return out


def _numeric(series):
    return pd.to_numeric(series, errors="coerce")


def summary_table(card: ScorecardLike) -> pd.DataFrame:
    """One row per model: clean top-1, robust accuracy at the standard eps, mean corruption accuracy,
    brain score per data set and region (with ceiling and normalised score), FactorTopy slope."""
    rows = []
    for model in card.models:
        row: dict[str, Any] = {"model": model}
        acc = card.sections.get("accuracy", ScoreTable()).filter(model=model)
        for r in acc:
            if r["metric"] in ("top1", "balanced_top1"):
                row[f"clean_{r['metric']}"] = r["score"]
        att = [r for r in card.sections.get("attacks", ScoreTable()).filter(model=model)
               if r["metric"] == "accuracy" and (r.get("eps") or 0) > 0]
        if att:
            norm = att[0].get("norm") or "Linf"
            target = _STANDARD_EPS.get(str(norm), 4 / 255)
            eps_values = sorted({float(r["eps"]) for r in att})
            eps = min(eps_values, key=lambda e: abs(e - target))
            at = [r["score"] for r in att if abs(float(r["eps"]) - eps) < 1e-12]
            label = f"{eps * 255:.3g}/255" if str(norm) == "Linf" else f"{eps:.3g}"
            row[f"robust_acc@{label}"] = float(min(at))
        cor = [r for r in card.sections.get("corruptions", ScoreTable()).filter(model=model)
               if r["metric"] == "mean_corruption_accuracy"]
        if cor:
            row["corruption_acc"] = cor[0]["score"]
        brain = card.sections.get("brain", ScoreTable()).filter(model=model)
        if len(brain):
            for r in summarize_brain(brain):
                if r["metric"] not in _SUMMARY_METRICS:
                    continue
                key = f"{r['metric']}:{_region_label(r)}"
                row[key] = r["score"]
                if r.get("ceiling_r"):
                    row[f"{key} ceiling"] = r["ceiling_r"]
                    row[f"{key} normalized"] = r["score"] / r["ceiling_r"]
        row.update(behaviour_columns(card.sections.get("behaviour", ScoreTable()).filter(model=model)))
        for r in card.sections.get("human_alignment", ScoreTable()).filter(model=model):
            row["human_alignment"] = r["score"]
        ft = card.sections.get("factortopy", ScoreTable()).filter(model=model)
        for r in ft:
            if r["metric"] == "hierarchy_slope":
                row[f"factortopy_slope:{r.get('dataset')}"] = r["score"]
            if r["metric"] == "factortopy_confidence" and r.get("region") == "all":
                row[f"factortopy_confidence:{r.get('dataset')}"] = r["score"]
        for section, table in card.sections.items():
            if section in SECTIONS:
                continue
            for r in table.filter(model=model):
                if r.get("headline"):
                    row[f"{section}:{r['metric']}"] = r["score"]
        rows.append(row)
    df = pd.DataFrame(rows)
    return df
