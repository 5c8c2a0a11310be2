"""pydantic-ai-memguard: memguard for Pydantic AI agents.

`MemGuardCompaction` wraps a compaction capability (pydantic-ai-harness's
`SlidingWindowCompaction`, `ClearToolResults`, `SummarizingCompaction`, ...) and commits, replaces
or vetoes each compaction on MemRM's word, reusing the winning probe as the step's response.
`MessageBridge` converts Pydantic AI messages to memguard's view and back without loss.
"""

from importlib.metadata import PackageNotFoundError, version

from pydantic_ai_memguard.capability import MemGuardCompaction
from pydantic_ai_memguard.fallbacks import CapabilityStrategy, compact_with, strategy_name
from pydantic_ai_memguard.messages import REF, SUMMARY_PREFIX, MessageBridge
from pydantic_ai_memguard.probing import ObservedModel, ReplayModel, probe

__all__ = [
    "REF",
    "SUMMARY_PREFIX",
    "CapabilityStrategy",
    "MemGuardCompaction",
    "MessageBridge",
    "ObservedModel",
    "ReplayModel",
    "compact_with",
    "probe",
    "strategy_name",
]
try:
    __version__ = version("pydantic-ai-memguard")  # pyproject.toml holds the only copy
except PackageNotFoundError:  # a source tree on sys.path that was never installed
    __version__ = "0+unknown"
