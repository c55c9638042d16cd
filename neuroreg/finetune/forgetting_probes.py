"""The logistic probes of a forgetting report: the new task's probe and head rows, and the retention probes.

One recipe everywhere (:func:`logistic_probe`): standardised features, L2
logistic regression with C = 1, solved in the span of the training rows. On the
new task it is fitted on the start's and on the fine-tuned backbone's
penultimate features (like with like); on the retention reference set it is
cross-validated on its category labels, before and after.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits
from torch import Tensor, nn
from torch.utils.data import Dataset

from neuroreg.brain import load_bundled
from neuroreg.results.table import ScoreTable
from neuroreg.scoring.classification import balanced_accuracy
from neuroreg.finetune.forgetting_cache import check_cached_labels
from neuroreg.finetune.forgetting_passes import ImageTensors, embed, embed_models
from neuroreg.finetune.forgetting_rows import HEAD_METRICS, ReportSettings, head_warning, stage_rows

__all__ = ["accuracies", "logistic_probe", "one_blas_thread", "new_task_rows", "retention_rows"]

log = logging.getLogger(__name__)


def accuracies(pred: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(accuracy, balanced accuracy) of predicted classes ``pred`` (n,) against ``labels`` (n,)."""
    return float((pred == labels).mean()), balanced_accuracy(pred, labels)


class _RowSpan(TransformerMixin, BaseEstimator):
    """Coordinates of each row in an orthonormal basis of the training rows' span (thin SVD).

    An L2-penalised linear model with an unpenalised intercept (scikit-learn's ``lbfgs``
    logistic regression) has its optimal weights in the span of the training rows: a part
    orthogonal to it changes no training loss and only adds to the penalty. Fitting on these
    ``r <= min(n, d)`` coordinates therefore gives the same decision function as fitting on all
    ``d`` features, with ``w . x = w' . (V^T x)`` for test rows too, and ``||w'|| = ||w||``;
    with ``n`` images far fewer than ``d`` features the solver's cost drops accordingly.
    When ``n >= d`` the features pass unchanged.
    """

    def fit(self, x: np.ndarray, y: Any = None) -> "_RowSpan":
        x = np.asarray(x, dtype=np.float64)
        self.basis_: np.ndarray | None = None
        if x.shape[0] < x.shape[1]:
            _, s, vt = np.linalg.svd(x, full_matrices=False)
            keep = s > (s[0] if len(s) else 0.0) * max(x.shape) * np.finfo(np.float64).eps
            self.basis_ = vt[keep].T
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return x if self.basis_ is None else x @ self.basis_


def one_blas_thread():
    """Context for the probes' fits: their problems are small (<= a few thousand rows), where a multithreaded
    BLAS/LAPACK adds only synchronisation; on cores shared with other work that made a 73 x 1280 SVD take
    0.6 s instead of 0.03 s, and the retention probes 4-6x longer."""
    return threadpool_limits(limits=1, user_api="blas")


def logistic_probe(seed: int) -> Pipeline:
    """Standardised features -> logistic regression (C = 1), solved in the span of the training rows.

    ``tol`` is tighter than scikit-learn's default (1e-4): in the at most ``n``-dimensional span
    it costs little, and it brings the fit closer to the optimum that the full-dimensional solve
    only approximates."""
    return make_pipeline(StandardScaler(), _RowSpan(),
                         LogisticRegression(max_iter=2000, C=1.0, tol=1e-6, random_state=seed))



def new_task_rows(before: nn.Module, after: nn.Module, train: Dataset, test: Dataset, start: dict[str, Any],
                  stored: bool, s: ReportSettings) -> ScoreTable:
    """``task_accuracy``/``balanced_accuracy`` (the probe on each network's penultimate features, before and
    after) and the fine-tuned head's own rows (``finetuned_head_*``, after only, flagged when it did not learn).

    start: the start side; with ``stored`` its ``"task"`` entry (probe predictions, test labels) is read
    instead of running ``before``, else it is written there."""
    dev, seed = s.device, s.seed
    if stored:
        ((f_train_a,), _), y_train = embed_models([after], train, s.batch_size, dev, seed)
        ((f_test_a,), (logits_a,)), y_test = embed_models([after], test, s.batch_size, dev, seed)
        check_cached_labels(start["task"]["labels"], y_test, "new task's test", s.start_cache)
        pred_b = start["task"]["pred"].numpy()
    else:
        # both networks on each batch: the images are read and resized once
        ((f_train_b, f_train_a), _), y_train = embed_models([before, after], train, s.batch_size, dev, seed)
        ((f_test_b, f_test_a), (_, logits_a)), y_test = embed_models([before, after], test, s.batch_size, dev,
                                                                     seed)
        with one_blas_thread():
            pred_b = logistic_probe(seed).fit(f_train_b, y_train).predict(f_test_b)
        start["task"] = {"pred": torch.as_tensor(pred_b), "labels": torch.as_tensor(y_test)}
    with one_blas_thread():
        pred_a = logistic_probe(seed).fit(f_train_a, y_train).predict(f_test_a)
    acc_b, bal_b = accuracies(pred_b, y_test)
    acc_a, bal_a = accuracies(pred_a, y_test)
    chance_acc = float(np.bincount(y_test).max() / len(y_test)) if len(y_test) else 0.0
    chance_bal = 1.0 / max(1, len(np.unique(y_test)))
    table = ScoreTable()
    common = dict(s.base, dataset=s.dataset, split="test", n_images=len(y_test))
    probe_row = dict(common, layer="penultimate", read_out="probe", n_probe_train=len(y_train))
    stage_rows(table, acc_b, acc_a, metric="task_accuracy", chance=chance_acc, **probe_row)
    stage_rows(table, bal_b, bal_a, metric="balanced_accuracy", chance=chance_bal, **probe_row)
    head_acc, head_bal = accuracies(logits_a.argmax(1), y_test)
    for metric, value, probe_before, chance in ((HEAD_METRICS[0], head_acc, acc_b, chance_acc),
                                                 (HEAD_METRICS[1], head_bal, bal_b, chance_bal)):
        warning = head_warning(value, probe_before, chance, s.near_chance_margin)
        if warning:
            log.warning("forgetting report (%s, %s): %s %s", s.model or "model", s.dataset, metric, warning)
        table.append(metric=metric, stage="after", score=value, layer="head", read_out="head", chance=chance,
                     probe_before=probe_before, warning=warning, **common)
    return table


def retention_rows(before: nn.Module, after: nn.Module, transforms: tuple[Callable[[Tensor], Tensor], ...],
                   reference: str, s: ReportSettings,
                   reused: tuple[np.ndarray, dict[str, np.ndarray]] | None = None,
                   scores_before: Mapping[str, float] | None = None) -> tuple[ScoreTable, dict[str, float]]:
    """Cross-validated logistic probe on the reference set's category labels, before and after.

    transforms: the (before, after) networks' preprocessing of one ``(3, H, W)`` image.
    ``reused``: (stimulus ids, stage -> embeddings in that order) from the probe-set pass, if the
    reference set was one of the probe sets. ``scores_before``: the start's scores per label set,
    stored earlier (the start network is then not run). Returns the rows and the start's scores."""
    data = load_bundled(reference)
    labels = getattr(data, "labels", None)
    if labels is None:
        raise ValueError(f"reference set {reference!r} has no category labels; use 'kriegeskorte92' or None")
    ids = np.asarray(data.stimulus_ids).astype(str)
    order = np.argsort(ids, kind="stable")
    label_sets = {"animate": labels["animate"].to_numpy()[order],
                  "category": pd.factorize(labels["category"].to_numpy()[order], sort=True)[0]}
    tf_b, tf_a = transforms
    stages = [("after", after, tf_a)] if scores_before is not None else [("before", before, tf_b),
                                                                          ("after", after, tf_a)]
    emb: dict[str, np.ndarray]
    if reused is not None and sorted(np.asarray(reused[0]).astype(str)) == sorted(ids):
        rows = np.argsort(np.asarray(reused[0]).astype(str), kind="stable")      # reused rows in sorted-id order
        emb = {stage: reused[1][stage][rows] for stage, _m, _tf in stages}
    else:
        images = data.images_tensor()[torch.as_tensor(order)]
        emb = {stage: embed(m, ImageTensors(images, tf), s.batch_size, s.device, s.seed)[0]
               for stage, m, tf in stages}
    out = ScoreTable()
    before_out: dict[str, float] = {}
    for label_name, y in label_sets.items():
        n_splits = int(min(5, np.bincount(y).min()))
        cv = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=s.seed)
        with one_blas_thread():
            scores = {stage: float(cross_val_score(logistic_probe(s.seed), x, y, cv=cv).mean())
                      for stage, x in emb.items()}
        if scores_before is not None:
            scores["before"] = float(scores_before[label_name])
        before_out[label_name] = scores["before"]
        stage_rows(out, scores["before"], scores["after"], metric="retention_accuracy",
                   dataset=f"{reference}:{label_name}", split="cv", layer="head", n_stimuli=len(y),
                   n_folds=n_splits, **s.base)
    return out, before_out
