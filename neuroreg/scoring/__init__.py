"""The scoring core: RDMs, RSA, ridge encoding, noise ceilings, CKA, FactorTopy, score tables."""

from neuroreg.scoring.cka import CKA, cka, cka_from_grams, gram, gram_from_rdm
from neuroreg.scoring.results import SCORE_COLUMNS, ScoreTable

__all__ = [
    "CKA", "cka", "cka_from_grams", "gram", "gram_from_rdm",
    "ScoreTable", "SCORE_COLUMNS",
]
