"""pydantic-ai-memguard: memguard for Pydantic AI agents.

`MemGuardCompaction` wraps a compaction capability (pydantic-ai-harness's
`SlidingWindowCompaction`, `ClearToolResults`, `SummarizingCompaction`, ..., or one that compacts
in Pydantic AI's `compact_history` hook) and commits, replaces or vetoes each compaction on
MemRM's word, serving the winning probe as the run's same next request.
`MessageBridge` converts Pydantic AI messages to memguard's view and back without loss.
"""

from importlib.metadata import PackageNotFoundError, version

from pydantic_ai_memguard.capability import ContextOverflow, MemGuardCompaction
from pydantic_ai_memguard.fallbacks import (
    CapabilityStrategy,
    HistoryCompactionStrategy,
    ResultStrategy,
    compact_with,
    strategy_name,
)
from pydantic_ai_memguard.messages import ENCRYPTED_SUMMARY, REF, SUMMARY_PREFIX, MessageBridge
from pydantic_ai_memguard.probing import Observed, Probe, ProbeServer, ServingModel, probe
from pydantic_ai_memguard.requests import outgoing, request_key

__all__ = [
    "ENCRYPTED_SUMMARY",
    "REF",
    "SUMMARY_PREFIX",
    "CapabilityStrategy",
    "ContextOverflow",
    "HistoryCompactionStrategy",
    "MemGuardCompaction",
    "MessageBridge",
    "Observed",
    "Probe",
    "ProbeServer",
    "ResultStrategy",
    "ServingModel",
    "compact_with",
    "outgoing",
    "probe",
    "request_key",
    "strategy_name",
]
try:
    __version__ = version("pydantic-ai-memguard")  # pyproject.toml holds the only copy
except PackageNotFoundError:  # a source tree on sys.path that was never installed
    __version__ = "0+unknown"
