"""Scorers: in-process (`MemRM`) and remote (`RemoteMemRM`), both behind the `Scorer` protocol."""

from typing import TYPE_CHECKING, Any

from memguard.scoring.base import Score, Scorer, ScorerIdentity
from memguard.scoring.worker import ScoringWorker

if TYPE_CHECKING:
    from memguard.scoring.local import MemRM

__all__ = ["MemRM", "Score", "Scorer", "ScorerIdentity", "ScoringWorker"]


def __getattr__(name: str) -> Any:
    # Lazy: importing torch costs ~2 s, and a remote scorer does not need it.
    if name == "MemRM":
        from memguard.scoring.local import MemRM

        return MemRM
    raise AttributeError(f"module 'memguard.scoring' has no attribute {name!r}")
