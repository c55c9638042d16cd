"""FactorTopy: which layer, position and scale of a network each voxel reads from (Yang, Gee & Shi 2024).

"Brain Decodes Deep Nets" (arXiv:2312.01280) fits one brain-encoding model for
all voxels at once. From a voxel's cortical coordinates (sinusoidal encoding),
three small MLPs choose

* a **layer**: softmax weights ``omega_i`` over the ``L`` layers,
* a **space** position ``u_i`` in the feature map (x, y in [-1, 1]),
* a **scale** ``alpha_i`` in [0, 1]: a Gaussian receptive-field size (default) or the
  paper's mix of the local feature with the map's global mean;

each layer's channels are aligned by a shared linear map ``B_l`` to ``D`` dimensions
and the voxel predicts ``y_i = sum_l omega_il v_il(u_i, alpha_i) . w_il + b_i``.
Summaries: expected depth, confidence ``1 - H(omega_i)/log L`` and the hierarchy
slope (regression of depth on ROI level V1 0, V2V3 1/3, OPA 2/3, EBA 1).

Modules: :mod:`.pooling` (feature at a position and scale), :mod:`.ridge` (closed-form
ridge read-outs), :mod:`.layer_choice` (the ridge layer choice), :mod:`.network` (selectors and
read-outs), :mod:`.estimator` (:class:`FactorTopy`), :mod:`.training` (the training loop),
:mod:`.statistics` (feature normalisation), :mod:`.params` (parameter checks), :mod:`.summary` (confidence, depth,
hierarchy), :mod:`.compare` (before/after), :mod:`.sources` (features from a dict
or a model), :mod:`.initialization` (ridge-fit peak start), :mod:`.diagnostics`
(choice margin, weak layers) and :mod:`.plots` (imported on demand; it loads
matplotlib). How and why the implementation departs from the paper, with the
measurements behind each choice, is in ``docs/factortopy.md``.
"""

from neuroreg.scoring.factortopy.compare import compare_factortopy
from neuroreg.scoring.factortopy.diagnostics import choice_margin, weak_layers
from neuroreg.scoring.factortopy.estimator import FactorTopy
from neuroreg.scoring.factortopy.initialization import correlation_peaks
from neuroreg.scoring.factortopy.network import FactorTopyNet, factorized_readout, sinusoidal_encoding
from neuroreg.scoring.factortopy.pooling import (N_LEVELS, SCALE_RANGE, gaussian_pyramid, pooled_features, scale_to_sd,
                                                 sd_to_scale)
from neuroreg.scoring.factortopy.ridge import ridge_cv_r
from neuroreg.scoring.factortopy.summary import DEFAULT_LEVELS, expected_depth, hierarchy_fit, layer_confidence

__all__ = ["FactorTopy", "FactorTopyNet", "factorized_readout", "pooled_features", "ridge_cv_r", "gaussian_pyramid",
           "scale_to_sd", "sd_to_scale", "sinusoidal_encoding", "layer_confidence", "expected_depth",
           "hierarchy_fit", "compare_factortopy", "correlation_peaks", "choice_margin", "weak_layers",
           "DEFAULT_LEVELS", "N_LEVELS", "SCALE_RANGE"]
