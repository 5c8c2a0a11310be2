"""memguard: guard an LLM agent's memory compaction with MemRM."""

from typing import TYPE_CHECKING, Any

from memguard.scoring.base import Score, Scorer, ScorerIdentity

if TYPE_CHECKING:
    from memguard.scoring.local import MemRM

__all__ = ["MemRM", "Score", "Scorer", "ScorerIdentity"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # MemRM pulls in torch (~2 s); users of a remote scorer should not pay for it.
    if name == "MemRM":
        from memguard.scoring.local import MemRM

        return MemRM
    raise AttributeError(f"module 'memguard' has no attribute {name!r}")
