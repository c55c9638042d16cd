"""Tidy score tables shared by every scorer (brain scores, robustness, forgetting)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import pandas as pd

from neuroreg._utils.io import atomic_path, atomic_write_text
from neuroreg.results.selection import best_index

__all__ = ["ScoreTable", "SCORE_COLUMNS"]

#: Columns every row has (missing values are None). Extra columns are kept.
#: ``ceiling_r``: the best score a perfect model could reach on the same data, on the
#: scale of a Pearson r (for brain scores; see :meth:`ScoreTable.to_pandas`).
#: ``protocol``: the settings the score was computed with (``"neuroreg"``,
#: ``"conwell"``, ``"brainscore"``; docs/protocols.md).
SCORE_COLUMNS = ("model", "layer", "region", "subject", "metric", "split",
                 "score", "ci_low", "ci_high", "ceiling_r", "protocol")

#: Columns that tell apart rows of different brain targets, besides region and subject,
#: when a scorer adds them (``rdm``: one subject's session RDM).
_TARGET_COLUMNS = ("rdm_set", "rdm")


def _clean(value: Any) -> Any:
    """numpy/torch scalars -> Python scalars so rows serialise to JSON."""
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 0) == 0:
        value = value.item()
    return value


class ScoreTable:
    """A list of score rows, one per (model, layer, region, subject, metric, split, ...).

    Rows are dicts with at least :data:`SCORE_COLUMNS`; scorers may add columns
    (``attack``, ``eps``, ``norm`` for robustness, ``n_boot`` for bootstraps...).
    ``score`` must be a finite number: a score that cannot be computed is an
    error where it arises, never a NaN in the table.
    """

    def __init__(self, rows: Iterable[Mapping[str, Any]] = ()) -> None:
        self._rows: list[dict[str, Any]] = []
        for row in rows:
            self.append(**row)

    def append(self, **row: Any) -> None:
        """Add one row; unknown columns are kept, missing standard ones set to None."""
        clean = {col: None for col in SCORE_COLUMNS}
        clean.update({k: _clean(v) for k, v in row.items()})
        score = clean["score"]
        if score is None or not isinstance(score, (int, float)) or not math.isfinite(score):
            raise ValueError(f"score must be a finite number; got {score!r} in row {clean}")
        self._rows.append(clean)

    def extend(self, other: "ScoreTable | Iterable[Mapping[str, Any]]") -> "ScoreTable":
        for row in other:
            self.append(**row)
        return self

    @classmethod
    def concat(cls, tables: Iterable["ScoreTable"]) -> "ScoreTable":
        out = cls()
        for t in tables:
            out.extend(t)
        return out

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(dict(r) for r in self._rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return dict(self._rows[i])

    @property
    def columns(self) -> list[str]:
        cols = list(SCORE_COLUMNS)
        for r in self._rows:
            cols.extend(k for k in r if k not in cols)
        return cols

    def filter(self, **criteria: Any) -> "ScoreTable":
        """Rows whose columns equal the given values (a list means any of them)."""
        def ok(row):
            for k, v in criteria.items():
                accepted = v if isinstance(v, (list, tuple, set)) else [v]
                if row.get(k) not in accepted:
                    return False
            return True
        return ScoreTable(r for r in self._rows if ok(r))

    def best(self, by: str | Iterable[str] = "region", *, select_split: str | None = "train",
             report_split: str | None = "test", over: str = "layer") -> "ScoreTable":
        """Best ``over`` (layer) per group, chosen on ``select_split`` and reported on ``report_split``.

        With ``select_split=None`` the best row is chosen and reported on the same
        rows (use only when there is no held-out split). Groups are formed by
        ``by`` plus model, subject and metric, and by ``rdm_set`` and ``rdm`` where
        the table has them, so each brain RDM (e.g. each session of a subject)
        gets its own layer.
        """
        keys = [by] if isinstance(by, str) else list(by)
        present = set(self.columns)
        group_cols = [c for c in ("model", *keys, "subject", "metric",
                                  *(t for t in _TARGET_COLUMNS if t in present)) if c != over]
        group_cols = list(dict.fromkeys(group_cols))
        df = self.to_pandas()
        if df.empty:
            return ScoreTable()
        out = ScoreTable()
        sel = df if select_split is None else df[df["split"] == select_split]
        if sel.empty:
            raise ValueError(f"no rows with split={select_split!r} to select the best {over} on; "
                             f"splits present: {sorted(df['split'].dropna().unique().tolist())}")
        for _, grp in sel.groupby(group_cols, dropna=False, sort=False):
            winner = grp.iloc[best_index(grp["score"].to_numpy(dtype=float))]   # scores are finite
            if select_split is None or report_split is None:
                out.append(**{k: v for k, v in winner.items() if k in self.columns}, selected_on=select_split)
                continue
            mask = (df["split"] == report_split) & (df[over] == winner[over])
            for c in group_cols:
                mask &= (df[c] == winner[c]) if pd.notna(winner[c]) else df[c].isna()
            for _, row in df[mask].iterrows():
                out.append(**{k: (None if (isinstance(v, float) and math.isnan(v)) else v)
                              for k, v in row.items()}, selected_on=select_split)
        return out

    def to_pandas(self) -> pd.DataFrame:
        """A DataFrame with the standard columns first and ``normalized = score / ceiling_r``.

        ``ceiling_r`` is always on the scale of the score (a correlation): the Nili
        upper bound for RDM comparisons, ``sqrt`` of the Spearman-Brown split-half
        reliability or of NSD's ncsnr noise ceiling (both fractions of variance) for
        unit-wise encoding scores. A model as good as the data allow has
        ``normalized`` near 1. ``normalized`` is missing where ``ceiling_r`` is
        missing or not positive. (Brain-Score's own normalisations, which differ by
        version, are in the ``brainscore_ceiled`` column of ``protocol="brainscore"``
        rows.)
        """
        df = pd.DataFrame(self._rows, columns=self.columns)
        if len(df):
            ceiling = pd.to_numeric(df["ceiling_r"], errors="coerce")
            df["normalized"] = pd.to_numeric(df["score"]) / ceiling.where(ceiling > 0)
        return df

    def to_csv(self, path: str | Path) -> Path:
        """Write CSV atomically; returns the path."""
        with atomic_path(path) as tmp:
            self.to_pandas().to_csv(tmp, index=False)
        return Path(path)

    def to_json(self, path: str | Path | None = None) -> str:
        """JSON list of rows; written atomically when ``path`` is given."""
        text = json.dumps(self._rows, indent=2, default=str)
        if path is not None:
            atomic_write_text(path, text)
        return text

    @classmethod
    def read_json(cls, path: str | Path) -> "ScoreTable":
        return cls(json.loads(Path(path).read_text(encoding="utf-8")))

    def __repr__(self) -> str:
        return f"ScoreTable({len(self)} rows)\n{self.to_pandas().to_string(max_rows=20)}" if len(self) else "ScoreTable(0 rows)"
