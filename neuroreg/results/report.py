"""Reports: score tables as CSV/JSON/Markdown/HTML and matplotlib figures, all written atomically."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from neuroreg._utils.io import atomic_write_text
from neuroreg.results.figures import save_figure
from neuroreg.results.table import ScoreTable

__all__ = ["format_value", "save_figure", "markdown_table", "write_table", "plot_layer_profile", "round_for_reading", "Report"]


#: significant digits of a number written for reading (Markdown tables, report lines); the CSV/JSON keep all
DIGITS = 4


def format_value(value) -> str:
    """The one number formatter of the written reports: ``DIGITS`` significant digits, never in exponent form
    between 1e-4 and 1e15 (``0.08333``, ``12350``, ``1`` for 1.0); "" for None and NaN; other values as ``str``.

    Numbers that small or that large keep the exponent (``1.235e-05``); integers and booleans are
    written as they are."""
    if value is None or (isinstance(value, (float, np.floating)) and np.isnan(value)):
        return ""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (float, np.floating)):
        return str(value)
    v = float(value) + 0.0      # -0.0 -> 0.0
    if v != 0 and not 1e-4 <= abs(v) < 1e15:
        return f"{v:.{DIGITS}g}"
    return np.format_float_positional(v, precision=DIGITS, unique=False, fractional=False, trim="-")


def markdown_table(df: pd.DataFrame, columns: Sequence[str] | None = None) -> str:
    """A GitHub-flavoured Markdown table of ``df`` (empty columns dropped)."""
    if columns is None:
        columns = [c for c in df.columns if df[c].notna().any()]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for _, row in df[list(columns)].iterrows():
        lines.append("| " + " | ".join(format_value(v).replace("|", "\\|") for v in row) + " |")
    return "\n".join(lines)


def write_table(table: ScoreTable, folder: str | Path, stem: str) -> dict[str, Path]:
    """Write ``stem.csv``, ``stem.json`` and ``stem.md`` into ``folder``."""
    folder = Path(folder)
    paths = {"csv": table.to_csv(folder / f"{stem}.csv")}
    table.to_json(folder / f"{stem}.json")
    paths["json"] = folder / f"{stem}.json"
    paths["md"] = atomic_write_text(folder / f"{stem}.md", markdown_table(table.to_pandas()) + "\n")
    return paths


def plot_layer_profile(table: ScoreTable, *, metric: str | None = None, split: str | None = "test",
                       title: str = "", ceilings: dict[str, float] | None = None) -> plt.Figure:
    """Score per layer (x, in table order), one line per model and brain target, averaged over subjects.

    The brain target is the ``rdm_set`` column when scores carry one (cRSA), else
    the ``region``. ``ceilings`` maps a target name -> noise ceiling, drawn dashed.
    """
    df = table.to_pandas()
    if metric is not None:
        df = df[df["metric"] == metric]
    if split is not None and (df["split"] == split).any():
        df = df[df["split"] == split]
    if df.empty:
        raise ValueError(f"no rows to plot for metric={metric!r}, split={split!r}")
    layers = list(dict.fromkeys(df["layer"].astype(str)))
    fig, ax = plt.subplots(figsize=(max(5.0, 0.6 * len(layers) + 2), 3.6))
    target = "rdm_set" if "rdm_set" in df.columns and df["rdm_set"].notna().any() else "region"
    for (model, name), grp in df.groupby(["model", target], dropna=False, sort=False):
        grp = grp.groupby(grp["layer"].astype(str), sort=False)["score"].mean().reindex(layers)
        ax.plot(range(len(layers)), grp.values, marker="o", label=f"{model} / {name}")
    for region, value in (ceilings or {}).items():
        ax.axhline(value, ls="--", lw=1, color="gray")
        ax.text(len(layers) - 1, value, f" ceiling {region}", va="bottom", ha="right", fontsize=7, color="gray")
    ax.set_xticks(range(len(layers)))
    ax.set_xticklabels(layers, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel(metric or "score")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, frameon=False)
    ax.grid(alpha=0.3)
    return fig


def _img_tag(path: Path, caption: str = "") -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    img = f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'
    cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
    return f"<figure>{img}{cap}</figure>"


def round_for_reading(df: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """Floats rounded to ``digits`` decimals (raw numbers stay in the CSV); empty columns dropped."""
    df = df[[c for c in df.columns if df[c].notna().any()]].copy()
    for c in df.columns:
        if pd.api.types.is_float_dtype(df[c]):
            values = df[c].dropna()
            df[c] = df[c].astype("Int64") if len(values) and (values == values.round()).all() and \
                values.abs().max() < 2 ** 53 and c not in ("score", "ceiling_r", "ceiling_r_lower", "normalized") else df[c].round(digits)
        elif df[c].dtype == object:
            df[c] = df[c].map(lambda v: round(v, digits) if isinstance(v, float) else v)
    return df


#: Tables longer than this are folded in the HTML report (``<details>``).
FOLD_ROWS = 12

_STYLE = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
          "table{border-collapse:collapse;font-size:13px;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 7px}"
          "th{background:#f3f3f3}figure{margin:1em 0}figure img{max-width:100%;height:auto}"
          "figcaption{font-size:13px;color:#444;margin-top:.3em}details{margin:.5em 0}"
          "summary{cursor:pointer;color:#145}.ran-on{font-size:13px;color:#555}")


#: One section of a :class:`Report`: (heading, text, tables, figures, notes, fold). A section of
#: only the first four entries (the older layout) is written with no notes and folding on.
ReportSection = tuple[str, str, list[tuple[str, ScoreTable | pd.DataFrame]], list[tuple[Path, str]], list[str], bool]


@dataclass
class Report:
    """Collects sections (text, tables, figures with a caption) and writes Markdown + self-contained HTML.

    ``figures`` entries are paths or ``(path, caption)`` pairs; tables longer than
    :data:`FOLD_ROWS` rows are folded (``<details>``) unless ``fold=False``; floats are
    rounded for reading (3 decimals).
    """

    title: str
    folder: Path
    sections: list[ReportSection] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.folder = Path(self.folder)

    def add(self, heading: str, text: str = "", tables: Iterable[tuple[str, ScoreTable | pd.DataFrame]] = (),
            figures: Iterable = (), *, notes: Sequence[str] = (), fold: bool = True) -> None:
        figs = [(Path(f[0]), str(f[1])) if isinstance(f, (tuple, list)) else (Path(f), "") for f in figures]
        self.sections.append((heading, text, list(tables), figs, list(notes), fold))

    def write(self) -> dict[str, Path]:
        md = [f"# {self.title}", ""]
        body = [f"<h1>{html.escape(self.title)}</h1>"]
        for section in self.sections:
            heading, text, tables, figures = section[:4]
            notes = section[4] if len(section) > 4 else []
            fold = section[5] if len(section) > 5 else True
            md += [f"## {heading}", ""]
            body.append(f"<h2>{html.escape(heading)}</h2>")
            if text:
                md += [text, ""]
                body.append(f"<p>{html.escape(text)}</p>")
            for note in notes:
                md += [f"*{note}*", ""]
                body.append(f'<p class="ran-on">{html.escape(note)}</p>')
            for fig, caption in figures:
                rel = fig.relative_to(self.folder) if fig.is_relative_to(self.folder) else fig
                md += [f"![{fig.stem}]({rel})", ""] + ([caption, ""] if caption else [])
                body.append(_img_tag(fig, caption))
            for name, tab in tables:
                df = tab.to_pandas() if isinstance(tab, ScoreTable) else tab
                df = round_for_reading(df)
                md += [f"**{name}**", "", markdown_table(df), ""]
                table_html = df.to_html(index=False, na_rep="", float_format=lambda v: f"{v:.3f}")
                if fold and len(df) > FOLD_ROWS:
                    body.append(f"<details><summary>{html.escape(name)} ({len(df)} rows)</summary>{table_html}"
                                "</details>")
                else:
                    body.append(f"<h3>{html.escape(name)}</h3>{table_html}")
        page = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
                f"<link rel='icon' href='data:,'><title>{html.escape(self.title)}</title>"
                f"<style>{_STYLE}</style></head><body>{''.join(body)}</body></html>")
        return {"md": atomic_write_text(self.folder / "report.md", "\n".join(md)),
                "html": atomic_write_text(self.folder / "report.html", page)}
