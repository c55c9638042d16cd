"""The scoring core: RDMs, RSA, ridge encoding, noise ceilings, CKA, FactorTopy, score tables."""

from neuroreg.scoring.results import SCORE_COLUMNS, ScoreTable

__all__ = ["ScoreTable", "SCORE_COLUMNS"]
