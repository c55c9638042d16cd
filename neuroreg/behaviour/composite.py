"""Brain-Score's composite: the mean of V4 predictivity, IT predictivity and behavioural I2n, each ceiled.

Brain-Score (Schrimpf et al. 2018, section "Score computation") ranks a model by the mean of
three ceiled scores: neural predictivity on V4 and on IT (MajajHong2015, the committed layer of
each region) and I2n on the Rajalingham 2018 behaviour. :func:`brainscore_composite` takes the
tables neuroreg's scorers return (``predictivity(protocol="brainscore")``, :func:`~neuroreg.behaviour.i2n`)
and writes one row per component and one for the composite, each naming the Brain-Score version
whose formulas made it (``protocol``, ``formula``, ``source``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from neuroreg.behaviour.i1i2 import BRAINSCORE_I1I2
from neuroreg.results.table import ScoreTable
from neuroreg.scoring.protocols.brainscore import BRAINSCORE_VERSIONS

__all__ = ["brainscore_composite", "BRAINSCORE_I2N_VERSION", "BRAINSCORE_I2N_COMMIT"]

#: The Brain-Score version (brain-score/vision's state) whose I2n and ceiling step neuroreg equals.
BRAINSCORE_I2N_VERSION = "2026"
#: The brain-score/vision commit the I2n fixtures were computed at (tests/fixtures/brainscore_behaviour/).
BRAINSCORE_I2N_COMMIT = "c642dbe42aae3ed064bc0b66f70a80b264021164"


def float_or_none(value: Any) -> float | None:
    """``value`` as a float; None where it is missing, not a number or NaN (a table cell of a score row)."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(out) else out


def _region_row(predictivity: ScoreTable, region: str) -> dict:
    rows = [r for r in predictivity if r.get("region") == region and r.get("is_best")
            and r.get("data", "scored") == "scored"]
    if not rows:
        regions = sorted({str(r.get("region")) for r in predictivity})
        raise ValueError(f"predictivity has no committed-layer row (is_best) for region {region!r}; its regions are "
                         f"{regions}. Pass the table of predictivity(..., protocol='brainscore') on a data set "
                         f"with {region} neuroids")
    if any(r.get("protocol") != "brainscore" for r in rows):
        raise ValueError(f"predictivity rows of {region} were not made with protocol='brainscore' (protocol "
                         f"{rows[0].get('protocol')!r}); the composite takes Brain-Score's own predictivity")
    version = str(rows[0].get("brainscore_version"))
    formula, commit = BRAINSCORE_VERSIONS.get(version, ("?", "?"))

    def mean(key: str) -> float | None:
        values = [float_or_none(r.get(key)) for r in rows]
        known = [v for v in values if v is not None]
        return float(np.mean(known)) if len(known) == len(values) else None

    return dict(component=region, metric="predictivity", region=region,
                layer=",".join(dict.fromkeys(str(r["layer"]) for r in rows)), score=mean("score"),
                ceiling=mean("reliability"), ceiling_r=mean("ceiling_r"), brainscore_ceiled=mean("brainscore_ceiled"),
                protocol=f"brainscore-{version}", formula=f"PLS r, ceiled {formula}",
                source=f"brain-score/vision {commit}", n_subjects=len(rows))


def _behaviour_row(i2n: ScoreTable) -> dict:
    rows = [r for r in i2n if r.get("split") == "mean"]
    if len(rows) != 1:
        raise ValueError(f"i2n must hold the one split='mean' row that neuroreg.behaviour.i2n writes; found "
                         f"{len(rows)} (splits: {sorted({str(r.get('split')) for r in i2n})})")
    row = rows[0]
    if row.get("metric") != "i2n":
        raise ValueError(f"the behavioural component is I2n; got metric {row.get('metric')!r}")
    return dict(component="behaviour", metric="i2n", region="behaviour", layer=row.get("layer"),
                score=float_or_none(row.get("score")), ceiling=float_or_none(row.get("ceiling")),
                ceiling_r=float_or_none(row.get("ceiling_r")),
                brainscore_ceiled=float_or_none(row.get("brainscore_ceiled")),
                protocol=f"brainscore-{BRAINSCORE_I2N_VERSION}",
                formula="mean over splits of r / sqrt(split-half ceiling)",
                source=f"{BRAINSCORE_I1I2} at brain-score/vision {BRAINSCORE_I2N_COMMIT}", n_subjects=None)


def brainscore_composite(predictivity: ScoreTable, i2n: ScoreTable, *, regions: tuple[str, str] = ("V4", "IT"),
                         model: str | None = None) -> ScoreTable:
    """The Brain-Score composite of one model: mean of the V4, IT and behaviour ceiled scores.

    predictivity: rows of ``predictivity(features, brain, protocol="brainscore", labels=...)`` on
        a data set with both ``regions`` (every layer; the committed layer of each region has
        ``is_best``; several subjects of a region are averaged).
    i2n: the table of :func:`neuroreg.behaviour.i2n` (its ``split="mean"`` row is used).

    Returns four rows (``component`` = the two regions, ``"behaviour"``, ``"composite"``):
    ``score`` the raw score (Pearson r of the committed layer; I2n's mean split r),
    ``ceiling`` Brain-Score's ceiling (the neural split-half reliability c; I2n's mean split-half
    r), ``ceiling_r``, ``brainscore_ceiled`` the ceiled score as the benchmark reports it,
    ``protocol`` (``"brainscore-<version>"``), ``formula`` and ``source`` (the brain-score/vision
    commit); the composite row's ``score`` and ``brainscore_ceiled`` are the mean of the three
    ceiled scores and its ``protocol`` the versions used. A component without a ceiled score (a
    ceiling that is not positive) raises ``ValueError`` naming it.
    """
    if not isinstance(predictivity, ScoreTable) or not isinstance(i2n, ScoreTable):
        raise TypeError(f"predictivity and i2n must be ScoreTables; got {type(predictivity).__name__} and "
                        f"{type(i2n).__name__}")
    parts = [_region_row(predictivity, region) for region in regions] + [_behaviour_row(i2n)]
    undefined = [p["component"] for p in parts if p["brainscore_ceiled"] is None]
    if undefined:
        raise ValueError(f"the composite is undefined: component(s) {undefined} have no ceiled score (a ceiling "
                         "that is not positive, or a NaN score)")
    value = float(np.mean([p["brainscore_ceiled"] for p in parts]))
    protocols = list(dict.fromkeys(p["protocol"] for p in parts))
    table = ScoreTable()
    for p in parts:
        table.append(model=model, split="cv", **p)
    table.append(model=model, component="composite", metric="brainscore", region="all", layer=None, split="cv",
                 score=value, ceiling=None, ceiling_r=None, brainscore_ceiled=value, protocol=" + ".join(protocols),
                 formula=f"mean of the ceiled {', '.join(p['component'] for p in parts)}",
                 source="Schrimpf et al. 2018: mean of V4, IT and behaviour", n_subjects=None)
    return table
