"""memguard: guard an LLM agent's memory compaction with MemRM.

Every proposed compaction is scored by MemRM for P(HARMFUL) and committed, replaced by a safer
strategy, or vetoed (nothing lost). See `Guard`.
"""

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from memguard._concurrency import run_coroutine_blocking
from memguard.actions import same_action
from memguard.audit import AuditWorker, JSONLSink, LoggingSink, OpenTelemetrySink, Sink
from memguard.decorator import Compacted, GuardedCompaction
from memguard.events import CandidateReport, CompactionEvent, Decision, Timings, Verdict
from memguard.gate import OPENING_MESSAGES, Gate
from memguard.guard import Guard, Policy, band_of, conversation_key, guarded
from memguard.messages import Message, MessageFormat, restore_messages, to_messages
from memguard.protocol import LABEL_HARMFUL, LABEL_SAFE, SUMMARY_PREFIX, render_action, render_prompt
from memguard.scoring.base import NonFiniteScoreError, Score, Scorer, ScorerIdentity
from memguard.scoring.worker import ScoringWorker
from memguard.settings import GuardSettings, commits
from memguard.strategies import (
    KeepMore,
    ObservationMasking,
    RecentWindow,
    Strategy,
    as_strategy,
    default_fallbacks,
)
from memguard.text import safe_text

if TYPE_CHECKING:
    from memguard.scoring.local import MemRM as MemRM  # explicit re-export: not in __all__
    from memguard.scoring.remote import RemoteMemRM, RemoteScorerError

__all__ = [
    "LABEL_HARMFUL",
    "LABEL_SAFE",
    "OPENING_MESSAGES",
    "SUMMARY_PREFIX",
    "AuditWorker",
    "CandidateReport",
    "Compacted",
    "CompactionEvent",
    "Decision",
    "Gate",
    "Guard",
    "GuardedCompaction",
    "GuardSettings",
    "JSONLSink",
    "KeepMore",
    "LoggingSink",
    "Message",
    "MessageFormat",
    "NonFiniteScoreError",
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
    "as_strategy",
    "band_of",
    "commits",
    "conversation_key",
    "default_fallbacks",
    "guarded",
    "render_action",
    "render_prompt",
    "restore_messages",
    "run_coroutine_blocking",
    "safe_text",
    "same_action",
    "to_messages",
]
# `MemRM` is importable by name (`from memguard import MemRM`) but left out of `__all__`: it needs
# memguard[local], and a star import must work on the light core.

try:
    __version__ = version("memguard")  # pyproject.toml holds the only copy
except PackageNotFoundError:  # a source tree on sys.path that was never installed
    __version__ = "0+unknown"


def __getattr__(name: str) -> Any:
    # The scorers load lazily (MemRM pulls in torch, ~2 s, from memguard[local]; RemoteMemRM
    # needs only the core): memguard.scoring decides how.
    if name in ("MemRM", "RemoteMemRM", "RemoteScorerError"):
        from memguard import scoring

        return getattr(scoring, name)
    raise AttributeError(f"module 'memguard' has no attribute {name!r}")
