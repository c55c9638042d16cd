"""Scores along training as rows: the TensorBoard tags of a scorecard, and ``curves.csv`` written and read back.

A row is ``{"model", "step", "epoch", "tag", "value"}``; a tag names one number of
the scorecard (``clean/top1``, ``robust/pgd_eps4``, ``brain/kriegeskorte92/monkey_IT/crsa``).
The figure of these rows is drawn by :mod:`neuroreg.training.callbacks.curves_figure`.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Iterable, Mapping

from neuroreg._utils.io import atomic_write_text
from neuroreg.scorecard.summary import ScorecardLike, summarize_brain

__all__ = ["CURVE_FIELDS", "curve_tags", "read_curves", "write_curves"]

#: the columns of ``curves.csv``
CURVE_FIELDS = ("model", "step", "epoch", "tag", "value")


def _eps_label(eps: float, norm: str) -> str:
    return f"eps{eps * 255:.3g}" if norm == "Linf" else f"l2_{eps:.3g}"


def curve_tags(card: ScorecardLike) -> dict[str, float]:
    """TensorBoard tag -> value of a scorecard: ``clean/top1``, ``robust/<attack>_eps<k>`` (the minimum over
    attacks' draws at that budget), ``brain/<dataset>/<rdm set or region>/<metric>`` (test half of the
    train-chosen layer, mean over subjects)."""
    out: dict[str, float] = {}
    for r in card.sections.get("accuracy", ()):
        if r["metric"] in ("top1", "balanced_top1", "top5"):
            out[f"clean/{r['metric']}"] = float(r["score"])
    for r in card.sections.get("attacks", ()):
        if r.get("metric") != "accuracy" or r.get("eps") in (None, 0) or not r.get("attack"):
            continue
        norm = str(r.get("norm") or "Linf")
        tag = f"robust/{r['attack']}_{_eps_label(float(r['eps']), norm)}"
        out[tag] = min(out.get(tag, float("inf")), float(r["score"]))
    brain = card.sections.get("brain")
    if brain is not None and len(brain):
        for r in summarize_brain(brain):
            where = r.get("rdm_set") or r.get("region")
            out[f"brain/{r.get('dataset')}/{where}/{r['metric']}"] = float(r["score"])
    return out


def write_curves(rows: Iterable[Mapping], folder: str | os.PathLike) -> Path:
    """Write ``rows`` (dicts with :data:`CURVE_FIELDS`) to ``folder/curves.csv`` atomically; returns the path."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CURVE_FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(folder / "curves.csv", buf.getvalue())


def read_curves(folder: str | os.PathLike) -> list[dict]:
    """Rows of ``curves.csv`` in a run folder or its ``scorecard/`` folder (model, step, epoch, tag, value);
    empty when the run wrote none."""
    folder = Path(folder)
    path = folder / "curves.csv" if (folder / "curves.csv").is_file() else folder / "scorecard" / "curves.csv"
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return [{"model": r["model"], "step": int(r["step"]), "epoch": int(r["epoch"]), "tag": r["tag"],
                 "value": float(r["value"])} for r in csv.DictReader(f)]
