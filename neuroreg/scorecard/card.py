"""The :class:`Scorecard`: every section's score table for one or several models, a summary row per model.

A scorecard is built by :func:`neuroreg.scorecard.evaluation` (or assembled with
:meth:`Scorecard.add` / :meth:`Scorecard.combine`), written with :meth:`save`
(report.html, report.md, CSV/JSON, figures, TensorBoard) and read back with
:meth:`Scorecard.load`, so runs done separately can be compared later::

    card = Scorecard.combine([Scorecard.load("results/a"), Scorecard.load("results/b")])
    card.save("results/a_vs_b")
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from neuroreg._utils.io import atomic_write_text
from neuroreg.results.table import ScoreTable

__all__ = ["Scorecard", "SECTIONS", "summary_table", "summarize_brain"]

#: Sections :func:`neuroreg.scorecard.evaluation` fills, in report order; other sections (e.g. "forgetting",
#: "training") can be added with :meth:`Scorecard.add` and are reported after these.
SECTIONS = ("accuracy", "attacks", "corruptions", "brain", "factortopy")

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


def summary_table(card: "Scorecard") -> pd.DataFrame:
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


@dataclass
class Scorecard:
    """Score tables per section for one or several models (every row has a ``model`` column).

    models: model names, in order. sections: section name -> ScoreTable.
    ran_on: section -> model -> one sentence saying what the section was run on.
    preprocessing: model -> its preprocessing contract (dict).
    rdms: (model, dataset) -> (layer, model RDM, brain RDM, brain RDM name) for figures.
    fits: (model, dataset) -> fitted FactorTopy, for its layer maps (not saved; the maps are).
    figures: extra figures (path, caption, section) added by :meth:`add`.
    """

    models: list[str] = field(default_factory=list)
    sections: dict[str, ScoreTable] = field(default_factory=dict)
    ran_on: dict[str, dict[str, str]] = field(default_factory=dict)
    preprocessing: dict[str, dict] = field(default_factory=dict)
    rdms: dict = field(default_factory=dict)
    fits: dict = field(default_factory=dict)
    figures: list[tuple[str, str, str]] = field(default_factory=list)
    title: str = "neuroreg scorecard"

    # -- sections
    def add(self, section: str, table: ScoreTable, *, ran_on: Mapping[str, str] | None = None,
            figures: Sequence[tuple[str | Path, str]] = ()) -> "Scorecard":
        """Append ``table``'s rows to ``section`` (models taken from its ``model`` column). Returns self."""
        if not isinstance(table, ScoreTable):
            raise TypeError(f"table must be a ScoreTable; got {type(table).__name__}")
        self.sections.setdefault(section, ScoreTable()).extend(table)
        for r in table:
            if r.get("model") is not None and str(r["model"]) not in self.models:
                self.models.append(str(r["model"]))
        for model, text in (ran_on or {}).items():
            self.ran_on.setdefault(section, {})[str(model)] = text
            if str(model) not in self.models:
                self.models.append(str(model))
        for path, caption in figures:
            self.figures.append((str(path), caption, section))
        return self

    def __getattr__(self, name: str) -> ScoreTable:
        # card.accuracy, card.attacks, ... (empty when the section did not run)
        if name in SECTIONS:
            return self.sections.get(name, ScoreTable())
        raise AttributeError(name)

    @classmethod
    def combine(cls, cards) -> "Scorecard":
        """One scorecard holding every model of ``cards`` (side by side)."""
        out = cls()
        for card in cards:
            for section, table in card.sections.items():
                out.add(section, table, ran_on=card.ran_on.get(section))
            for m in card.models:
                if m not in out.models:
                    out.models.append(m)
            out.preprocessing.update(card.preprocessing)
            out.rdms.update(card.rdms)
            out.fits.update(card.fits)
            out.figures.extend(card.figures)
        return out

    def table(self) -> ScoreTable:
        """All rows, with a ``section`` column."""
        out = ScoreTable()
        for section, table in self.sections.items():
            for row in table:
                out.append(**row, section=section)
        return out

    def summary(self) -> pd.DataFrame:
        """One row per model (see :func:`summary_table`)."""
        return summary_table(self)

    # -- files
    def save(self, folder: str | Path, *, tensorboard: bool = True) -> dict[str, Path]:
        """Write ``report.html`` (self-contained), ``report.md``, ``scorecard.csv/json``, ``summary.csv``,
        ``scorecard_meta.json``, figures (PNG) and TensorBoard scalars into ``folder``."""
        # local: neuroreg.scorecard.report imports this module (Scorecard) and loads matplotlib
        from neuroreg.scorecard.report import write_scorecard
        return write_scorecard(self, Path(folder), tensorboard=tensorboard)

    @classmethod
    def load(cls, folder: str | Path) -> "Scorecard":
        """Read a scorecard written by :meth:`save` (tables, what each section ran on, figure list).

        ``folder`` may also be a training run's folder: its ``scorecard/`` (written by
        :class:`~neuroreg.training.ScorecardCallback`, with the run's curves as section ``curves``).
        """
        folder = Path(folder)
        if not (folder / "scorecard.json").is_file() and (folder / "scorecard" / "scorecard.json").is_file():
            folder = folder / "scorecard"
        rows_path, meta_path = folder / "scorecard.json", folder / "scorecard_meta.json"
        if not rows_path.is_file() or not meta_path.is_file():
            raise FileNotFoundError(f"{folder} holds no saved scorecard (scorecard.json and scorecard_meta.json)")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        card = cls(models=list(meta.get("models", [])), ran_on=meta.get("ran_on", {}),
                   preprocessing=meta.get("preprocessing", {}), title=meta.get("title", "neuroreg scorecard"))
        for row in json.loads(rows_path.read_text(encoding="utf-8")):
            section = row.pop("section", None) or "other"
            row.pop("normalized", None)
            card.sections.setdefault(section, ScoreTable()).append(**row)
        for fig in meta.get("extra_figures", []):
            path = Path(fig["path"])
            path = path if path.is_absolute() else folder / path
            if path.is_file():
                card.figures.append((str(path), fig["caption"], fig["section"]))
        return card

    def _meta(self, folder: Path, derived=()) -> dict:
        def rel(p: str) -> str:
            path = Path(p)
            return str(path.relative_to(folder)) if path.is_relative_to(folder) else str(path)
        return {"models": self.models, "ran_on": self.ran_on, "preprocessing": self.preprocessing,
                "title": self.title, "sections": list(self.sections),
                "extra_figures": [{"path": rel(p), "caption": c, "section": s}
                                  for p, c, s in dict.fromkeys([*self.figures, *derived])]}

    def write_meta(self, folder: Path, derived=()) -> Path:
        """Write ``scorecard_meta.json``; ``derived``: (path, caption, section) of figures drawn from
        state that is not saved (RDMs, fitted FactorTopy), listed so :meth:`load` shows them again."""
        meta = self._meta(folder, derived)
        return atomic_write_text(folder / "scorecard_meta.json", json.dumps(meta, indent=2, default=str))
