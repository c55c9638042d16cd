"""Training losses that pull a model area toward neural data, built on the scoring core.

>>> from neuroreg.alignment import CKALoss
>>> term = CKALoss("IT", "kriegeskorte92:monkey_IT", weight=1.0)   # Dapello et al. 2023
>>> sim = RSALoss("IT", brain_data, weight=0.1)                      # Li et al. 2019
"""

from neuroreg.alignment.base import AlignmentLoss, target_cka
from neuroreg.alignment.cka_loss import CKA_MODES, CKALoss, cka_loss
from neuroreg.alignment.harmonization import HarmonizationLoss, harmonization_loss
from neuroreg.alignment.rsa_loss import SIMILARITIES, RSALoss, rsa_loss, similarity_matrix
from neuroreg.alignment.schedule import WeightSchedule
from neuroreg.alignment.targets import BUNDLED_TARGETS, NeuralTarget, as_target

__all__ = ["AlignmentLoss", "CKALoss", "cka_loss", "target_cka", "CKA_MODES", "RSALoss", "rsa_loss",
           "similarity_matrix", "SIMILARITIES", "WeightSchedule",
           "HarmonizationLoss", "harmonization_loss",
           "NeuralTarget", "as_target", "BUNDLED_TARGETS"]
