"""memguard for the OpenAI Agents SDK.

`MemGuardInputFilter` guards a `RunConfig(call_model_input_filter=...)` (the SDK's
`ToolOutputTrimmer` or your own) and `MemGuardSession` guards a session that rewrites its stored
history (`OpenAIResponsesCompactionSession` or your own); `to_view`/`from_view` convert the SDK's
input items to memguard's messages and back without loss.
"""

from importlib.metadata import PackageNotFoundError, version

from openai_agents_memguard.filter import AsyncFilterStrategy, FilterStrategy, MemGuardInputFilter, filter_name
from openai_agents_memguard.items import ITEMS_KEY, from_view, input_digest, is_opaque, to_view
from openai_agents_memguard.probing import AgentProbe, probe_model
from openai_agents_memguard.reuse import MemGuardModel, ProbeStore
from openai_agents_memguard.session import HistoryRestoreError, MemGuardSession, audit_twin

__all__ = [
    "ITEMS_KEY",
    "AgentProbe",
    "AsyncFilterStrategy",
    "FilterStrategy",
    "HistoryRestoreError",
    "MemGuardInputFilter",
    "MemGuardModel",
    "MemGuardSession",
    "ProbeStore",
    "audit_twin",
    "filter_name",
    "from_view",
    "input_digest",
    "is_opaque",
    "probe_model",
    "to_view",
]
try:
    __version__ = version("openai-agents-memguard")  # pyproject.toml holds the only copy
except PackageNotFoundError:  # a source tree on sys.path that was never installed
    __version__ = "0+unknown"
