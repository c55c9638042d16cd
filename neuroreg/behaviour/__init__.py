"""Behaviour: the read-out of choice probabilities and the behavioural metrics (I1n, I2n, error consistency).

>>> probs = nr.behaviour.choice_probabilities(model, fitting_images, fitting_labels, images, stimulus_ids)
>>> nr.behaviour.i2n(probs, trials)        # Brain-Score's Rajalingham2018-i2n, per split and averaged
"""

from typing import TYPE_CHECKING as _TYPE_CHECKING

from neuroreg._utils.lazy import lazy_exports as _lazy_exports

if _TYPE_CHECKING:  # what the lazy names resolve to, for type checkers (never run)
    from neuroreg.behaviour.i1i2 import (BRAINSCORE_I1I2 as BRAINSCORE_I1I2, DPRIME_CAP as DPRIME_CAP,
                                         behavioural_consistency as behavioural_consistency, i1 as i1, i1n as i1n,
                                         i2 as i2, i2n as i2n, o1 as o1, o2 as o2)
    from neuroreg.behaviour.readout import (BRAINSCORE_READOUT_C as BRAINSCORE_READOUT_C,
                                            ProbabilitiesReadout as ProbabilitiesReadout,
                                            choice_probabilities as choice_probabilities,
                                            readout_features as readout_features)
    from neuroreg.behaviour.kappa import (cohens_kappa as cohens_kappa,
                                                      error_consistency as error_consistency,
                                                      error_consistency_ceiling as error_consistency_ceiling)

# public name -> the module that defines it (imported on first use)
_EXPORTS = {
    "i1": "neuroreg.behaviour.i1i2",
    "i1n": "neuroreg.behaviour.i1i2",
    "i2": "neuroreg.behaviour.i1i2",
    "i2n": "neuroreg.behaviour.i1i2",
    "o1": "neuroreg.behaviour.i1i2",
    "o2": "neuroreg.behaviour.i1i2",
    "behavioural_consistency": "neuroreg.behaviour.i1i2",
    "DPRIME_CAP": "neuroreg.behaviour.i1i2",
    "BRAINSCORE_I1I2": "neuroreg.behaviour.i1i2",
    "error_consistency": "neuroreg.behaviour.kappa",
    "error_consistency_ceiling": "neuroreg.behaviour.kappa",
    "cohens_kappa": "neuroreg.behaviour.kappa",
    "ProbabilitiesReadout": "neuroreg.behaviour.readout",
    "choice_probabilities": "neuroreg.behaviour.readout",
    "readout_features": "neuroreg.behaviour.readout",
    "BRAINSCORE_READOUT_C": "neuroreg.behaviour.readout",
}

__getattr__, __dir__, __all__ = _lazy_exports(__name__, _EXPORTS)
