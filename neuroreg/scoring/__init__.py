"""The scoring core: RDMs, RSA, ridge encoding, noise ceilings, CKA, FactorTopy, score tables."""

from neuroreg.scoring.compare import COMPARE_METHODS, compare_rdms
from neuroreg.scoring.cka import CKA, cka, cka_from_grams, gram, gram_from_rdm
from neuroreg.scoring.rdm import RDM_METRICS, condense, rdm, square
from neuroreg.scoring.results import SCORE_COLUMNS, ScoreTable

__all__ = [
    "rdm", "RDM_METRICS", "condense", "square",
    "compare_rdms", "COMPARE_METHODS",
    "CKA", "cka", "cka_from_grams", "gram", "gram_from_rdm",
    "ScoreTable", "SCORE_COLUMNS",
]
