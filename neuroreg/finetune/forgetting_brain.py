"""Brain-score change of a forgetting report: cRSA on the probe sets, veRSA and FactorTopy on voxel data.

Each score is chosen the same way before and after fine-tuning: the mean over
subjects per layer, the best layer picked on the train half, its score on the
test half; ``change`` = after - before.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from neuroreg._utils.images import resize_images
from neuroreg.data.preprocessing import preprocessing_of
from neuroreg.features import simulate_voxels
from neuroreg.features.extraction import Features
from neuroreg.results.selection import best_index
from neuroreg.results.table import ScoreTable
from neuroreg.scoring import FactorTopy, compare_factortopy, crsa, versa
from neuroreg.finetune.forgetting_passes import ProbeSet, features_of
from neuroreg.finetune.forgetting_rows import ReportSettings

__all__ = ["best_layer_scores", "crsa_rows", "voxel_rows"]


def best_layer_scores(table: ScoreTable, metric: str) -> pd.DataFrame:
    """Mean over subjects per (set, region, layer, split); the layer chosen on train, its test score.

    Returns one row per (``rdm_set``, ``region``) with its ``layer`` and test ``score``."""
    df = table.to_pandas()
    df = df[(df["metric"] == metric) & (df["subject"].astype(str) != "mean")]
    if "rdm_set" not in df:
        df = df.assign(rdm_set="brain")
    df = df.assign(rdm_set=df["rdm_set"].fillna("brain"), region=df["region"].fillna("all"))
    mean = df.groupby(["rdm_set", "region", "layer", "split"], sort=True)["score"].mean().reset_index()
    rows = []
    for (source, region), grp in mean.groupby(["rdm_set", "region"], sort=True):
        train = grp[grp["split"] == "train"]
        pick = best_index(train["score"].to_numpy(dtype=float))
        if pick is None:        # no layer has a defined train score: nothing to choose from
            continue
        best = train["layer"].iloc[pick]
        test = grp[(grp["split"] == "test") & (grp["layer"] == best)]["score"]
        rows.append({"rdm_set": source, "region": region, "layer": best, "score": float(test.iloc[0])})
    return pd.DataFrame(rows)


def _change_rows(out: ScoreTable, best_before: pd.DataFrame, best_after: pd.DataFrame, dataset: str,
                 **row: Any) -> None:
    """Before, after and change rows per (set, region) present on both sides, each stage at its own best layer.

    dataset: the ``dataset`` column, formatted with the row's ``rdm_set`` (``"{rdm_set}"`` is replaced)."""
    merged = best_before.merge(best_after, on=["rdm_set", "region"], suffixes=("_before", "_after"))
    for r in merged.itertuples():
        common = dict(row, dataset=dataset.replace("{rdm_set}", str(r.rdm_set)), region=r.region, split="test")
        out.append(stage="before", score=r.score_before, layer=r.layer_before, **common)
        out.append(stage="after", score=r.score_after, layer=r.layer_after, **common)
        out.append(stage="change", score=r.score_after - r.score_before, **common)


def crsa_rows(probes: list[ProbeSet], feats: Mapping[str, list[dict[str, Tensor]]], start: dict[str, Any],
              stored: bool, s: ReportSettings) -> ScoreTable:
    """cRSA change per probe set that has RDMs and per region.

    feats: stage -> per probe set, layer -> features ``(n, ...)``; start: the start side, whose ``"crsa"``
    entry (the start's best layers per set) is read with ``stored`` and written otherwise."""
    out = ScoreTable()
    crsa_before: dict[str, dict[str, list]] = start.setdefault("crsa", {})
    for i, (name, data, _images, ids) in enumerate(probes):
        if not getattr(data, "rdms", None):
            continue
        if not stored:
            crsa_before[name] = best_layer_scores(crsa(Features(feats["before"][i], stimulus_ids=ids), data,
                                                       progress=False), "crsa").to_dict("list")
        best_a = best_layer_scores(crsa(Features(feats["after"][i], stimulus_ids=ids), data, progress=False), "crsa")
        _change_rows(out, pd.DataFrame(crsa_before[name]), best_a, name + ":{rdm_set}", **s.base, metric="crsa")
    return out


def _simulated_brain(before: nn.Module, probes: list[ProbeSet], modules: list[str],
                     transform: Callable[[Tensor], Tensor], s: ReportSettings) -> Any:
    """Voxels simulated from ``before`` on every probe image (at the largest probe size), with the images."""
    if not probes:
        raise ValueError("brain='simulate' needs probe_sets to draw the stimuli from")
    size = max(p[2].shape[-1] for p in probes)
    # one stimulus size, resampled as the start network's own preprocessing resamples
    interpolation = preprocessing_of(before).interpolation
    images = torch.cat([resize_images(p[2], size, interpolation=interpolation) for p in probes])
    ids = np.concatenate([np.asarray([f"{p[0]}:{i}" for i in p[3]]) for p in probes])
    model_input = torch.stack([transform(im) for im in images])      # the start network sees its own preprocessing
    brain, _truth = simulate_voxels(before, model_input, layers=modules, n_voxels=100, seed=s.seed,
                                    stimulus_ids=ids, batch_size=s.batch_size, device=s.device, progress=False)
    brain.stimuli = images
    return brain


def voxel_rows(before: nn.Module, after: nn.Module, brain: Any, probes: list[ProbeSet], layer_map: Any,
               transforms: tuple[Callable[[Tensor], Tensor], ...], s: ReportSettings) -> ScoreTable:
    """veRSA change per region on voxel data and, when the voxels have ``roi`` and ``coords`` and
    ``s.factortopy`` is set, FactorTopy's change (:func:`~neuroreg.scoring.compare_factortopy`).

    brain: :class:`~neuroreg.brain.BrainData` with its stimuli, or ``"simulate"``; transforms: the
    (before, after) networks' preprocessing of one ``(3, H, W)`` image."""
    tf_b, tf_a = transforms
    if isinstance(brain, str):
        if brain != "simulate":
            raise ValueError(f"brain must be BrainData, 'simulate' or None; got {brain!r}")
        modules = list(dict(layer_map).values()) if isinstance(layer_map, Mapping) else list(layer_map)
        brain = _simulated_brain(before, probes, modules, tf_b, s)
    if getattr(brain, "stimuli", None) is None:
        raise ValueError("brain needs its stimulus images (BrainData(..., stimuli=images)) to score the networks")
    images = brain.images_tensor()
    ids = np.asarray(brain.stimulus_ids)
    fb = Features(features_of(before, images, layer_map, tf_b, s.batch_size, s.device, s.seed), stimulus_ids=ids)
    fa = Features(features_of(after, images, layer_map, tf_a, s.batch_size, s.device, s.seed), stimulus_ids=ids)
    out = ScoreTable()
    best_b, best_a = (best_layer_scores(versa(f, brain, seed=s.seed, progress=False), "versa") for f in (fb, fa))
    name = getattr(brain, "name", "brain") or "brain"
    _change_rows(out, best_b, best_a, name, **s.base, metric="versa")
    info = getattr(brain, "unit_info", None) or {}
    if s.factortopy and "roi" in info and "coords" in info:
        kw = {"max_epochs": 30, "random_state": s.seed,
              **(dict(s.factortopy) if isinstance(s.factortopy, Mapping) else {})}
        fits = [FactorTopy(list(fb), **kw).fit(dict(f), brain) for f in (fb, fa)]
        for row in compare_factortopy(*fits, model=s.model):
            out.append(**{**row, "dataset": name})
    return out
