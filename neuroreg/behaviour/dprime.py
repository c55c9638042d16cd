"""Per-image d' of a model and of primates, the values I1n correlates (for figures and inspection).

:func:`image_dprimes` gives, per image, the normalised d' averaged over its distractors
(Brain-Score's I1n pattern, :mod:`neuroreg.behaviour.i1i2`) of the model's choice
probabilities and of all the trials at once (no halving): the two axes of a
"model vs primate" scatter.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from neuroreg.behaviour._tables import probability_matrix, read_trials, same_images
from neuroreg.behaviour.i1i2 import _model_false_alarms, _pattern, _trial_false_alarms

__all__ = ["image_dprimes"]


def image_dprimes(probabilities, trials) -> pd.DataFrame:
    """Per-image normalised d' (I1n's pattern) of the model and of the trials.

    probabilities, trials: as :func:`neuroreg.behaviour.i2n` takes them (the long
    ``stimulus_id``/``choice``/``probability`` table and one row per trial).

    Returns one row per image (sorted stimulus ids): ``stimulus_id``, ``object`` (its
    ``sample_obj``), ``model_dprime`` and ``primate_dprime`` (d' units, clipped at +-5, the
    object's mean subtracted), ``n_trials`` (the image's trials). A d' is NaN where it is
    undefined (an image whose every trial was answered one way gives +-5, not NaN).
    """
    model = probability_matrix(probabilities)
    data = read_trials(trials, model.labels)
    same_images(model, data)
    switches = dict(objects=False, collapse=True, normalize=True)
    source = _pattern(_model_false_alarms(model, data.truth), data.truth, **switches)
    target = _pattern(_trial_false_alarms(data, np.arange(data.n_trials)), data.truth, **switches)
    # same_images: the model's sorted ids are the trials' sorted ids, so the rows line up
    return pd.DataFrame({"stimulus_id": data.stimulus_ids, "object": data.labels[data.truth],
                         "model_dprime": source, "primate_dprime": target,
                         "n_trials": np.bincount(data.image, minlength=data.stimulus_ids.size)})
