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
from typing import Mapping, Sequence

import pandas as pd

from neuroreg._utils.io import atomic_write_text
from neuroreg.results.table import ScoreTable
from neuroreg.scorecard.report import write_scorecard
from neuroreg.scorecard.summary import SECTIONS, summary_table

__all__ = ["Scorecard"]


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

    def write_meta(self, folder: Path, derived: Sequence[tuple[str, str, str]] = ()) -> Path:
        """Write ``scorecard_meta.json``; ``derived``: (path, caption, section) of figures drawn from
        state that is not saved (RDMs, fitted FactorTopy), listed so :meth:`load` shows them again."""
        meta = self._meta(folder, derived)
        return atomic_write_text(folder / "scorecard_meta.json", json.dumps(meta, indent=2, default=str))
