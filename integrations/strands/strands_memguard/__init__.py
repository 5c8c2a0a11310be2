"""strands-memguard: memguard for Strands Agents.

`MemGuardConversationManager` wraps a Strands conversation manager
(``SlidingWindowConversationManager``, ``SummarizingConversationManager``, your own) and commits,
replaces or vetoes each reduction it makes, on every path Strands reduces on (before a model
call, at the end of an invocation, after a context-window overflow). `StrandsView` converts
Strands messages to memguard's view and back without loss.
"""

from importlib.metadata import PackageNotFoundError, version

from strands_memguard.fallbacks import ManagerStrategy, strategy_name
from strands_memguard.manager import ContextOverflowed, MemGuardConversationManager
from strands_memguard.probing import AgentRequest, ProbeRecord, ProbeReplay
from strands_memguard.views import REF, SHELL_TOOLS, SYSTEM_REF, StrandsView, assistant_turns

__all__ = [
    "REF",
    "SHELL_TOOLS",
    "SYSTEM_REF",
    "AgentRequest",
    "ContextOverflowed",
    "ManagerStrategy",
    "MemGuardConversationManager",
    "ProbeRecord",
    "ProbeReplay",
    "StrandsView",
    "assistant_turns",
    "strategy_name",
]
try:
    __version__ = version("strands-memguard")  # pyproject.toml holds the only copy
except PackageNotFoundError:  # a source tree on sys.path that was never installed
    __version__ = "0+unknown"
