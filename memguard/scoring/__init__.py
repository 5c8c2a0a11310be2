"""Scorers: in-process (`MemRM`) and remote (`RemoteMemRM`), both behind the `Scorer` protocol."""

from memguard.scoring.base import Score, Scorer, ScorerIdentity

__all__ = ["Score", "Scorer", "ScorerIdentity"]
