"""memguard for the OpenAI Agents SDK.

Every place the SDK rewrites what an agent sees is guarded by a wrapper of the same kind:
`MemGuardInputFilter` (`RunConfig.call_model_input_filter`, per model call),
`MemGuardHandoffFilter` (`Handoff.input_filter`, `RunConfig.handoff_input_filter`, nested handoff
history), `MemGuardSessionInput` (`RunConfig.session_input_callback`) and `MemGuardSession`
(a session that rewrites its stored history). `MemGuardModel` (any wrapper's `wrap_model`) wraps
the run's model so that the winning probe answers the run's own call. `to_view`/`from_view`
convert the SDK's input items to memguard's messages and back without loss.
"""

from importlib.metadata import PackageNotFoundError, version

from openai_agents_memguard.filter import MemGuardInputFilter, filter_name
from openai_agents_memguard.handoffs import MemGuardHandoffFilter, next_agent_input
from openai_agents_memguard.hooks import AsyncHookStrategy, HookStrategy
from openai_agents_memguard.items import ITEMS_KEY, from_view, input_digest, is_opaque, to_view
from openai_agents_memguard.probing import Probe, RequestProbe, probe_model
from openai_agents_memguard.requests import ModelRequest, request_signature
from openai_agents_memguard.reuse import MemGuardModel, ProbeStore, store_for
from openai_agents_memguard.session import HistoryRestoreError, MemGuardSession
from openai_agents_memguard.session_input import MemGuardSessionInput

__all__ = [
    "ITEMS_KEY",
    "AsyncHookStrategy",
    "HistoryRestoreError",
    "HookStrategy",
    "MemGuardHandoffFilter",
    "MemGuardInputFilter",
    "MemGuardModel",
    "MemGuardSession",
    "MemGuardSessionInput",
    "ModelRequest",
    "Probe",
    "ProbeStore",
    "RequestProbe",
    "filter_name",
    "from_view",
    "input_digest",
    "is_opaque",
    "next_agent_input",
    "probe_model",
    "request_signature",
    "store_for",
    "to_view",
]
try:
    __version__ = version("openai-agents-memguard")  # pyproject.toml holds the only copy
except PackageNotFoundError:  # a source tree on sys.path that was never installed
    __version__ = "0+unknown"
