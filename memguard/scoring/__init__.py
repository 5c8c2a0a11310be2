"""Scorers: in-process (`MemRM`) and remote (`RemoteMemRM`), both behind the `Scorer` protocol."""

from typing import TYPE_CHECKING, Any

from memguard.scoring.base import NonFiniteScoreError, Score, Scorer, ScorerIdentity
from memguard.scoring.worker import ScoringWorker

if TYPE_CHECKING:
    from memguard.scoring.local import MemRM as MemRM  # explicit re-export: not in __all__
    from memguard.scoring.remote import RemoteMemRM, RemoteScorerError

# `MemRM` (memguard[local]) is importable by name but not in `__all__`, so that a star import
# works on the light core.
__all__ = ["NonFiniteScoreError", "RemoteMemRM", "RemoteScorerError", "Score", "Scorer", "ScorerIdentity",
           "ScoringWorker"]


def __getattr__(name: str) -> Any:
    # Lazy: importing torch costs ~2 s, and a remote scorer does not need it. Without
    # memguard[local], `MemRM` raises an ImportError that names the extra.
    if name == "MemRM":
        from memguard.scoring.local import MemRM

        return MemRM
    if name in ("RemoteMemRM", "RemoteScorerError"):  # httpx only, no torch
        from memguard.scoring import remote

        return getattr(remote, name)
    raise AttributeError(f"module 'memguard.scoring' has no attribute {name!r}")
