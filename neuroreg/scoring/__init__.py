"""The scoring core: RDMs, RSA, ridge encoding, noise ceilings, CKA, FactorTopy, human alignment, score tables."""

from neuroreg.scoring.bootstrap import BootstrapResult, bootstrap, bootstrap_mean, bootstrap_rdm_comparison
from neuroreg.scoring.ceiling import (NoiseCeiling, ncsnr_ceiling, noise_ceiling, rdm_noise_ceiling,
                                      spearman_brown, split_half_ceiling)
from neuroreg.scoring.cka import CKA, cka, cka_from_grams, gram, gram_from_rdm
from neuroreg.scoring.factortopy import FactorTopy, compare_factortopy, hierarchy_fit
from neuroreg.scoring.encoding import CONWELL_ALPHAS, CONWELL_SRP_DIM, pearson_per_column, predictivity, versa
from neuroreg.scoring.compare import COMPARE_METHODS, compare_rdms, compare_vectors
from neuroreg.scoring.rdm import RDM_METRICS, condense, rdm, square
from neuroreg.scoring.ridge import RidgeGCV
from neuroreg.results.table import SCORE_COLUMNS, ScoreTable
from neuroreg.scoring.rsa import crsa
from neuroreg.scoring.human_alignment import (HUMAN_SPEARMAN_CEILING, ClickMeMetrics, absolute_saliency,
                                              clickme_metrics, clickme_scores, human_alignment)

__all__ = [
    "rdm", "RDM_METRICS", "condense", "square",
    "compare_rdms", "compare_vectors", "COMPARE_METHODS",
    "crsa", "RidgeGCV", "versa", "predictivity", "pearson_per_column", "CONWELL_ALPHAS", "CONWELL_SRP_DIM",
    "noise_ceiling", "NoiseCeiling", "rdm_noise_ceiling", "split_half_ceiling", "ncsnr_ceiling", "spearman_brown",
    "bootstrap", "bootstrap_mean", "bootstrap_rdm_comparison", "BootstrapResult",
    "CKA", "cka", "cka_from_grams", "gram", "gram_from_rdm",
    "ScoreTable", "SCORE_COLUMNS",
    "FactorTopy", "compare_factortopy", "hierarchy_fit",
    "clickme_metrics", "ClickMeMetrics", "clickme_scores", "human_alignment", "absolute_saliency",
    "HUMAN_SPEARMAN_CEILING",
]
