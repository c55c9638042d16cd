"""The behavioural read-out: choice probabilities from a layer's features, as Brain-Score's ``ProbabilitiesMapping``.

Brain-Score (``model_helpers.brain_transformation.behavior.ProbabilitiesMapping``) fits,
on a fitting stimulus set's features of the committed behaviour layer, a
``StandardScaler`` and a ``LogisticRegression(multi_class="multinomial",
solver="newton-cg", C=1e-3)``, and reads per-image probabilities over the fitting
set's labels off the images it is shown. I2n's two-alternative probabilities come
from these (``p_c / (p_c + p_t)``, :mod:`neuroreg.behaviour.i1i2`).

scikit-learn >= 1.8 has no ``multi_class`` switch: with three or more labels its
logistic regression is multinomial; with two it is binary. A two-label multinomial
fit with weights w1, w2 and penalty (|w1|^2 + |w2|^2) / 2 has w1 = -w2 at its
optimum, so it is the binary fit of w = w1 - w2 with penalty |w|^2 / 4: the binary
regression with ``2 C`` gives Brain-Score's probabilities.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted

from neuroreg.errors import NonFiniteError, ShapeError
from neuroreg.features.extraction import extract

__all__ = ["ProbabilitiesReadout", "choice_probabilities", "readout_features", "BRAINSCORE_READOUT_C"]

#: Brain-Score's ``classifier_c`` (inverse L2 strength of the logistic regression).
BRAINSCORE_READOUT_C = 1e-3


def _matrix(x, name: str) -> np.ndarray:
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if arr.ndim != 2:
        raise ShapeError(f"{name} must be a 2-D (n_images, n_features) array; got shape {arr.shape}")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        row = int(np.flatnonzero(~np.isfinite(arr).all(axis=1))[0])
        raise NonFiniteError(f"{name} contains NaN or inf (first in row {row})")
    return arr


class ProbabilitiesReadout(BaseEstimator):
    """Standardise, then multinomial logistic regression: Brain-Score's ``ProbabilitiesClassifier``.

    ``fit(features (n, d), labels (n,))`` returns self; learned state: ``scaler_``,
    ``classifier_`` and ``labels_`` (the labels in order of first appearance, as
    Brain-Score orders its choices). ``predict_proba(features (m, d))`` -> ``(m, n_labels)``
    in ``labels_`` order, rows summing to 1.
    """

    def __init__(self, C: float = BRAINSCORE_READOUT_C) -> None:
        self.C = C

    def fit(self, features, labels: Sequence[Any]) -> "ProbabilitiesReadout":
        x = _matrix(features, "features")
        y = np.asarray(labels)
        if y.shape != (x.shape[0],):
            raise ShapeError(f"labels must give one label per row of features ({x.shape[0]}); got shape {y.shape}")
        if not (isinstance(self.C, (int, float)) and self.C > 0):
            raise ValueError(f"C must be a positive number; got {self.C!r}")
        order = pd.unique(pd.Series(y))
        if order.size < 2:
            raise ValueError(f"labels must name at least 2 classes to choose between; got {order.tolist()}")
        index = {label: k for k, label in enumerate(order.tolist())}
        self.scaler_ = StandardScaler().fit(x)
        # two labels: the binary fit with 2 C equals the two-class multinomial fit (module docstring)
        c = 2.0 * self.C if order.size == 2 else self.C
        self.classifier_ = LogisticRegression(C=c, solver="newton-cg").fit(
            self.scaler_.transform(x), np.array([index[v] for v in y.tolist()]))
        self.labels_ = np.asarray(order)
        return self

    def predict_proba(self, features) -> np.ndarray:
        check_is_fitted(self, "classifier_")
        x = _matrix(features, "features")
        if x.shape[1] != self.scaler_.n_features_in_:
            raise ShapeError(f"features have {x.shape[1]} columns; the read-out was fitted on "
                             f"{self.scaler_.n_features_in_}")
        return self.classifier_.predict_proba(self.scaler_.transform(x))

    def probabilities(self, features, stimulus_ids: Sequence[Any]) -> pd.DataFrame:
        """The long table the behavioural metrics take: ``stimulus_id``, ``choice``, ``probability``."""
        p = self.predict_proba(features)
        ids = np.asarray(stimulus_ids)
        if ids.shape != (p.shape[0],):
            raise ShapeError(f"stimulus_ids must give one id per row of features ({p.shape[0]}); got shape {ids.shape}")
        return pd.DataFrame({"stimulus_id": np.repeat(ids, p.shape[1]),
                             "choice": np.tile(self.labels_, p.shape[0]),
                             "probability": p.reshape(-1)})


def readout_features(model: torch.nn.Module, stimuli, *, layer: str = "IT", number_of_trials: int = 1,
                     transform: Any = "model", batch_size: int = 64, device: str | torch.device | None = None,
                     seed: int = 0) -> np.ndarray:
    """``(n, d)`` features of ``layer`` (spatially averaged maps), the mean over ``number_of_trials`` passes.

    Pass t uses ``seed + t``, so a stochastic model (VOneNet noise) gives a new draw per
    pass; a deterministic one gives the same features each time. The default layer
    ``"IT"`` averaged over space is the penultimate layer (the classifier's input) of
    CORnets, VOneNets and timm CNNs, Brain-Score's behavioural read-out layer; for a
    vision transformer it is the last block's tokens averaged (name ``layer`` to read
    another module, e.g. the one a Brain-Score plugin commits).
    """
    if isinstance(number_of_trials, bool) or not isinstance(number_of_trials, int) or number_of_trials < 1:
        raise ValueError(f"number_of_trials must be a positive integer; got {number_of_trials!r}")
    passes = []
    for trial in range(number_of_trials):
        feats = extract(model, stimuli, {"behaviour": layer}, batch_size=batch_size, device=device,
                        transform=transform, pool="avg", seed=seed + trial, progress=False)
        passes.append(feats["behaviour"].reshape(feats.n_stimuli, -1).to(torch.float64).numpy())
    return np.mean(passes, axis=0)


def choice_probabilities(model: torch.nn.Module, fitting_stimuli, fitting_labels: Sequence[Any], stimuli,
                         stimulus_ids: Sequence[Any], *, layer: str = "IT", number_of_trials: int = 1,
                         C: float = BRAINSCORE_READOUT_C, transform: Any = "model", batch_size: int = 64,
                         device: str | torch.device | None = None, seed: int = 0) -> pd.DataFrame:
    """A model's per-image choice probabilities over the fitting set's labels (Brain-Score's behavioural read-out).

    fitting_stimuli / stimuli: images as :func:`neuroreg.extract` takes them (``(n, 3, H, W)``
        floats in [0, 1], image paths, a folder, a Dataset); fitting_labels: ``(n_fit,)`` object
        label of each fitting image; stimulus_ids: ``(n,)`` id of each image of ``stimuli``.
    layer: module name or area alias; its maps are averaged over space.
    number_of_trials: forward passes averaged per image set (Rajalingham 2018 asks for 2).

    Returns the long table ``stimulus_id``, ``choice``, ``probability`` that
    :func:`~neuroreg.behaviour.i2n` takes.
    """
    kwargs = dict(layer=layer, number_of_trials=number_of_trials, transform=transform, batch_size=batch_size,
                  device=device, seed=seed)
    readout = ProbabilitiesReadout(C=C).fit(readout_features(model, fitting_stimuli, **kwargs), fitting_labels)
    return readout.probabilities(readout_features(model, stimuli, **kwargs), stimulus_ids)
