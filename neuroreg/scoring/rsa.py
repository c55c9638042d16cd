"""Classical RSA (cRSA) of every layer against every brain RDM (Conwell et al. 2024).

For each layer, the model RDM (1 - Pearson r between unreduced stimulus
patterns) is compared with each brain RDM (region x subject) on the train and
test halves of the stimuli, split by the parity of each stimulus's position in
sorted-id order (never by row order; see ``scoring/_inputs.py``). The best layer
per brain RDM (each subject, and each session where a subject has several) is
chosen on the train half and reported on the test half; the whole layer profile
stays in the table.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from neuroreg.scoring._inputs import (BrainRDM, brain_rdms, feature_ids, layer_matrix, layer_names, resolve_split,
                                      row_ids)
from neuroreg.scoring.bootstrap import bootstrap_mean, bootstrap_rdm_comparison
from neuroreg.scoring.ceiling import rdm_noise_ceiling
from neuroreg.scoring.compare import _method, compare_rdms
from neuroreg.scoring.protocols import check_protocol
from neuroreg.scoring.protocols.conwell import crsa_targets
from neuroreg.scoring.rdm import _check_metric, rdm
from neuroreg.results.table import ScoreTable
from neuroreg.results.selection import flag_best_layers

__all__ = ["crsa", "resolve_split"]


def _sub(d: np.ndarray, idx: np.ndarray) -> np.ndarray:
    return d[np.ix_(idx, idx)]


def crsa(features, brain, *, metric: str = "correlation", method: str = "pearson", split="conwell",
         model: str | None = None, ceiling: bool = True, n_boot: int = 0, seed: int = 0,
         device: str | torch.device | None = None, progress: bool | None = None,
         protocol: str | None = None) -> ScoreTable:
    """cRSA score of every layer against every brain RDM.

    Parameters
    ----------
    features: :class:`~neuroreg.features.extraction.Features` or mapping layer -> ``(n, ...)``
        array/tensor, the stimuli in the brain data's order (reordered by id when
        both carry stimulus ids).
    brain: BrainData (RDMs computed with ``metric`` per roi x subject of
        ``unit_info``), an RDMSet, a mapping name -> RDMSet or a NeuralStimulusSet.
    metric: model (and BrainData) RDM distance, default 1 - Pearson r.
    method: RDM comparison (:func:`~neuroreg.scoring.compare_rdms`), default Pearson.
    split: ``"conwell"`` (even positions of the sorted stimulus ids train, odd
        test), None (all stimuli, split ``"all"``), or ``(train_ids, test_ids)``
        (stimulus ids; rows without ids are their positions 0..n-1). Each split
        needs at least 4 stimuli; below 10 a warning gives the number.
    ceiling: where a region has RDMs of >= 2 subjects, fill ``ceiling_r`` with
        their Nili upper bound on the same stimuli (``ceiling_r_lower``: the lower
        bound); a subject with several RDMs (sessions) is left out as a whole.
    n_boot: bootstrap resamples for 95% CIs (0: none): over stimuli on every row, and
        over subjects on added ``subject="mean"`` rows where a region has >= 2 subjects
        (a subject's sessions are averaged first).
    device: compute model RDMs there (e.g. ``"cuda"``); default: where the features are.
    progress: progress bar over layers (default: only on a terminal).
    protocol: None (neuroreg's settings) or ``"conwell"`` (Conwell et al.'s released
        code; see ``docs/protocols.md``): checks that the settings are the published
        ones and leaves out brain groups of 10 voxels or fewer, as that code does.

    Row order does not matter: features are aligned to the brain data by id
    (duplicate ids are refused), and splits and bootstrap resamples follow the
    sorted ids. Precision: RDMs are computed and compared in float64 on CPU
    (float32 at least on other devices) whatever the features' dtype.

    Returns a :class:`ScoreTable` with one row per layer x brain RDM x split
    (metric ``"crsa"``) and columns ``rdm_set``, ``rdm`` (the RDM's name in its
    set), ``n_stimuli``, ``protocol`` and ``is_best`` (True on the rows of the layer
    chosen on the train split for that RDM). ``table.best()`` gives the test
    score of the train-chosen layer.
    """
    protocol = check_protocol(protocol, "crsa")
    _check_metric(metric)
    method = _method(method)
    layers = layer_names(features)
    targets = brain_rdms(brain, feature_ids(features), metric)
    if protocol == "conwell":
        targets = crsa_targets(targets, brain, metric=metric, method=method, split=split)
    n = targets[0].rdm.shape[0]
    for t in targets:
        if t.rdm.shape[0] != n:
            raise ValueError(f"brain RDMs have different numbers of stimuli ({n} and {t.rdm.shape[0]})")
    splits = resolve_split(split, row_ids(features, brain, n), scorer="crsa")
    ceilings = _ceilings(targets, splits, method) if ceiling else {}
    base = dict(model=model, metric="crsa", method=method, protocol=protocol)
    rows = []
    show = sys.stderr.isatty() if progress is None else progress
    for li, layer in enumerate(tqdm(layers, desc="cRSA layers", disable=not show, leave=False)):
        model_rdm = _model_rdm(features, layer, n, metric, device)
        rows += _layer_rows(model_rdm, layer, li, base, targets, splits, ceilings, n_boot, seed)
    if n_boot:
        rows += _subject_mean_rows(rows, base, ceilings, n_boot, seed)
    select = "train" if "train" in splits else "all"
    # one choice per brain RDM: sessions of one subject are separate RDMs with their own best layer
    flag_best_layers(rows, _rdm_key, split=select)
    return ScoreTable(rows)


def _ceilings(targets: list[BrainRDM], splits: dict[str, np.ndarray], method: str) -> dict[tuple, tuple[float, float]]:
    """``(rdm_set, region, split) -> (lower, upper)`` Nili noise ceiling of every region with RDMs of
    >= 2 subjects (a subject's sessions grouped), on each split's stimuli."""
    by_region: dict[Any, list[BrainRDM]] = defaultdict(list)
    for t in targets:
        by_region[(t.source, t.region)].append(t)
    ceilings: dict[tuple, tuple[float, float]] = {}
    for key, group in by_region.items():
        subjects = [str(t.subject) for t in group]
        if len(set(subjects)) >= 2:
            stack = np.stack([t.rdm for t in group])
            for s, idx in splits.items():
                nc = rdm_noise_ceiling(stack[:, idx][:, :, idx], method, groups=subjects)
                ceilings[key + (s,)] = (nc.lower, nc.upper)
    return ceilings


def _model_rdm(features, layer: str, n: int, metric: str, device) -> np.ndarray:
    """The ``(n, n)`` float64 RDM of one layer, computed on ``device`` when given."""
    x = layer_matrix(features, layer, n)
    if device is not None:
        x = torch.as_tensor(x).to(device)
    try:
        model_rdm = rdm(x, metric)
    except ValueError as exc:
        raise ValueError(f"features[{layer!r}]: {exc}") from exc
    if isinstance(model_rdm, torch.Tensor):
        model_rdm = model_rdm.detach().cpu().double().numpy()
    return model_rdm


def _with_ceiling(row: dict, ceilings: dict[tuple, tuple[float, float]], key: tuple) -> dict:
    lo_up = ceilings.get(key)
    if lo_up is not None:
        row["ceiling_r"], row["ceiling_r_lower"] = lo_up[1], lo_up[0]
    return row


def _layer_rows(model_rdm: np.ndarray, layer: str, layer_index: int, base: dict, targets: list[BrainRDM],
                splits: dict[str, np.ndarray], ceilings: dict[tuple, tuple[float, float]], n_boot: int,
                seed: int) -> list[dict]:
    """One row per brain RDM x split for one layer's RDM (with a bootstrap CI over stimuli when ``n_boot``);
    base: the ``model``, ``metric``, ``method`` and ``protocol`` of every row."""
    rows = []
    for s, idx in splits.items():
        m_sub = _sub(model_rdm, idx)
        b_stack = np.stack([_sub(t.rdm, idx) for t in targets])
        scores = np.atleast_2d(compare_rdms(m_sub[None], b_stack, base["method"]))[0]
        for ti, t in enumerate(targets):
            row = dict(model=base["model"], layer=layer, region=t.region, subject=t.subject, metric=base["metric"],
                       split=s, score=float(scores[ti]), rdm_set=t.source, rdm=t.name, n_stimuli=int(idx.size),
                       layer_index=layer_index, method=base["method"], protocol=base["protocol"])
            _with_ceiling(row, ceilings, (t.source, t.region, s))
            if n_boot:
                ci = bootstrap_rdm_comparison(m_sub, b_stack[ti], base["method"], n_boot=n_boot, seed=seed)
                row.update(ci_low=ci.low, ci_high=ci.high, n_boot=ci.n_valid, n_boot_degenerate=ci.n_degenerate,
                           bootstrap_over="stimuli")
            rows.append(row)
    return rows


def _subject_mean_rows(rows: list[dict], base: dict, ceilings: dict[tuple, tuple[float, float]], n_boot: int,
                       seed: int) -> list[dict]:
    """Group score rows (``subject="mean"``): the mean over subjects (a subject's sessions averaged first),
    bootstrapped over subjects, where a region has >= 2 subjects."""
    groups: dict[tuple, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        groups[(r["rdm_set"], r["region"], r["layer"], r["layer_index"], r["split"], r["n_stimuli"])][
            str(r["subject"])].append(r["score"])
    out = []
    for (source, region, layer, li, s, n_s), by_subject in groups.items():
        vals = [float(np.mean(v)) for v in by_subject.values()]
        if len(vals) >= 2:
            ci = bootstrap_mean(vals, n_boot=n_boot, seed=seed)
            row = dict(model=base["model"], layer=layer, region=region, subject="mean", metric=base["metric"], split=s,
                       score=float(np.mean(vals)), ci_low=ci.low, ci_high=ci.high, n_boot=ci.n_valid,
                       n_boot_degenerate=ci.n_degenerate, bootstrap_over="subjects", n_subjects=len(vals),
                       n_rdms=sum(len(v) for v in by_subject.values()), rdm_set=source, rdm=None, n_stimuli=n_s,
                       layer_index=li, method=base["method"], protocol=base["protocol"])
            out.append(_with_ceiling(row, ceilings, (source, region, s)))
    return out


def _rdm_key(row: dict) -> tuple:
    return (row["rdm_set"], row["region"], str(row["subject"]), row["rdm"])
