"""memguard: guard an LLM agent's memory compaction with MemRM."""

from memguard.scoring.base import Score, Scorer, ScorerIdentity

__all__ = ["Score", "Scorer", "ScorerIdentity"]
__version__ = "0.1.0"
