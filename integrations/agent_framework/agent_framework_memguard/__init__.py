"""agent-framework-memguard: memguard for Microsoft Agent Framework agents.

`MemGuardCompaction` wraps an Agent Framework compaction strategy (`SlidingWindowStrategy`,
`ToolResultCompactionStrategy`, `SummarizationStrategy`, `ContextWindowCompactionStrategy`, ...)
and commits, replaces or vetoes each compaction on MemRM's word; as the agent's chat middleware it
probes the request the framework would send and answers the model call with the winning probe.
`guard_agent` wires it on an existing agent; `to_view`/`from_view` convert messages without loss.
"""

from importlib.metadata import PackageNotFoundError, version

from agent_framework_memguard.compaction import MemGuardCompaction, guard_agent
from agent_framework_memguard.fallbacks import FrameworkFallback, apply_view, strategy_name
from agent_framework_memguard.probing import Probe, Request
from agent_framework_memguard.state import ListState, Scratch
from agent_framework_memguard.views import INSTRUCTIONS, PART, from_view, is_summary, response_view, to_view

__all__ = [
    "INSTRUCTIONS",
    "PART",
    "FrameworkFallback",
    "ListState",
    "MemGuardCompaction",
    "Probe",
    "Request",
    "Scratch",
    "apply_view",
    "from_view",
    "guard_agent",
    "is_summary",
    "response_view",
    "strategy_name",
    "to_view",
]
try:
    __version__ = version("agent-framework-memguard")  # pyproject.toml holds the only copy
except PackageNotFoundError:  # a source tree on sys.path that was never installed
    __version__ = "0+unknown"
