"""memguard: guard an LLM agent's memory compaction with MemRM.

Every proposed compaction is scored by MemRM for P(HARMFUL) and committed, replaced by a safer
strategy, or vetoed (nothing lost). See `Guard`.
"""

from typing import TYPE_CHECKING, Any

from memguard.audit import AuditWorker, JSONLSink, LoggingSink, OpenTelemetrySink, Sink
from memguard.events import CandidateReport, CompactionEvent, Decision, Timings, Verdict
from memguard.guard import Guard, Policy, band_of, conversation_key, guarded
from memguard.messages import Message, MessageFormat, restore_messages, to_messages
from memguard.protocol import LABEL_HARMFUL, LABEL_SAFE, render_action, render_prompt
from memguard.scoring.base import Score, Scorer, ScorerIdentity
from memguard.scoring.worker import ScoringWorker
from memguard.settings import GuardSettings, commits
from memguard.strategies import (
    KeepMore,
    ObservationMasking,
    RecentWindow,
    Strategy,
    default_fallbacks,
)

if TYPE_CHECKING:
    from memguard.scoring.local import MemRM
    from memguard.scoring.remote import RemoteMemRM, RemoteScorerError

__all__ = [
    "AuditWorker",
    "CandidateReport",
    "CompactionEvent",
    "Decision",
    "Guard",
    "GuardSettings",
    "JSONLSink",
    "KeepMore",
    "LABEL_HARMFUL",
    "LABEL_SAFE",
    "LoggingSink",
    "MemRM",
    "Message",
    "MessageFormat",
    "ObservationMasking",
    "OpenTelemetrySink",
    "Policy",
    "RecentWindow",
    "RemoteMemRM",
    "RemoteScorerError",
    "Score",
    "Scorer",
    "ScorerIdentity",
    "ScoringWorker",
    "Sink",
    "Strategy",
    "Timings",
    "Verdict",
    "band_of",
    "commits",
    "conversation_key",
    "default_fallbacks",
    "guarded",
    "render_action",
    "render_prompt",
    "restore_messages",
    "to_messages",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # The scorers load lazily (MemRM pulls in torch, ~2 s): memguard.scoring decides how.
    if name in ("MemRM", "RemoteMemRM", "RemoteScorerError"):
        from memguard import scoring

        return getattr(scoring, name)
    raise AttributeError(f"module 'memguard' has no attribute {name!r}")
