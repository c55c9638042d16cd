"""Public names of ``neuroreg.behaviour`` (read by type checkers, and by the package face for its lazy exports)."""

from neuroreg.behaviour.i1i2 import i1 as i1, i1n as i1n, i2 as i2, i2n as i2n, o1 as o1, o2 as o2
from neuroreg.behaviour.i1i2 import behavioural_consistency as behavioural_consistency, DPRIME_CAP as DPRIME_CAP
from neuroreg.behaviour.i1i2 import BRAINSCORE_I1I2 as BRAINSCORE_I1I2
from neuroreg.behaviour.kappa import error_consistency as error_consistency
from neuroreg.behaviour.kappa import error_consistency_ceiling as error_consistency_ceiling
from neuroreg.behaviour.kappa import cohens_kappa as cohens_kappa
from neuroreg.behaviour.readout import ProbabilitiesReadout as ProbabilitiesReadout
from neuroreg.behaviour.readout import choice_probabilities as choice_probabilities
from neuroreg.behaviour.readout import readout_features as readout_features
from neuroreg.behaviour.readout import BRAINSCORE_READOUT_C as BRAINSCORE_READOUT_C
from neuroreg.behaviour.dprime import image_dprimes as image_dprimes
from neuroreg.behaviour.composite import brainscore_composite as brainscore_composite
from neuroreg.behaviour.composite import BRAINSCORE_I2N_VERSION as BRAINSCORE_I2N_VERSION
