"""langchain-memguard: memguard for LangChain agents.

- `MemGuardMiddleware` wraps a compaction middleware of a `create_agent` agent
  (`SummarizationMiddleware`, `ContextEditingMiddleware`, ...): in enforce mode it commits,
  replaces or vetoes each compaction on MemRM's word; in audit mode it records, invisibly to the run.
- `MemGuardCallbackHandler` only records, from the callbacks of any LangChain/LangGraph agent,
  whatever compacts its memory.

Guide: docs/langchain.md.
"""

from importlib.metadata import PackageNotFoundError, version

from langchain_memguard.callback import PROBE_TAG, MemGuardCallbackHandler
from langchain_memguard.compaction import MiddlewareStrategy, compact_with, strategy_name
from langchain_memguard.middleware import MemGuardMiddleware
from langchain_memguard.replay import ProbeMismatchError
from langchain_memguard.views import (
    LANGCHAIN_SUMMARY_PREFIX,
    GuardView,
    from_guard_view,
    summary_text,
    to_guard_view,
)

__all__ = [
    "LANGCHAIN_SUMMARY_PREFIX",
    "PROBE_TAG",
    "GuardView",
    "MemGuardCallbackHandler",
    "MemGuardMiddleware",
    "MiddlewareStrategy",
    "ProbeMismatchError",
    "compact_with",
    "from_guard_view",
    "strategy_name",
    "summary_text",
    "to_guard_view",
]
try:
    __version__ = version("langchain-memguard")  # pyproject.toml holds the only copy
except PackageNotFoundError:  # a source tree on sys.path that was never installed
    __version__ = "0+unknown"
