"""Server-side compaction (`ModelSettings.context_management`): audited, never enforced.

With ``ModelSettings(context_management=[{"type": "compaction", "compact_threshold": N}])`` the
Responses API compacts the context itself once it crosses the threshold, and answers on the
compacted context: the response carries an encrypted `compaction` item and the answer. Nothing
on the client can stop or change that compaction, or read what it kept, so memguard only audits
it: when a response through `MemGuardModel` holds a compaction item, the guard scores, in the
background, the answer the run got (on the compacted context) against a probe of the same
request on the full input with `context_management` off (what the agent would have done without
the compaction). The decision is an audit decision of the user's own guard (`audit=True`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from agents import Model, ModelResponse, ModelTracing
from memguard import CompactionEvent, Decision, Guard

from openai_agents_memguard.hooks import notify
from openai_agents_memguard.items import to_view
from openai_agents_memguard.probing import RequestProbe, action_message
from openai_agents_memguard.requests import ModelRequest

__all__ = ["STRATEGY", "audit_server_compaction", "compaction_items"]

STRATEGY = "server_context_management"


def _type(item: Any) -> Any:
    return item.get("type") if isinstance(item, dict) else getattr(item, "type", None)


def compaction_items(output: list[Any]) -> list[Any]:
    """The compaction items of a response's output (empty: the server did not compact)."""
    return [item for item in output if _type(item) == "compaction"]


async def audit_server_compaction(guard: Guard, model: Model, request: ModelRequest, response: ModelResponse,
                                  on_decision: Callable[[Decision], Any] | None = None) -> Decision | None:
    """Submit the audit review of a server-side compaction that produced `response`; None if there was none."""
    if not request.settings.context_management or request.server_managed or not isinstance(request.input, list):
        return None
    kept = compaction_items(list(response.output))
    if not kept:
        return None
    full = dataclasses.replace(request, settings=dataclasses.replace(request.settings, context_management=None),
                               tracing=ModelTracing.DISABLED)
    event = CompactionEvent(
        before=to_view(request.input, request.instructions),
        candidate=to_view([item.model_dump(exclude_unset=True) if hasattr(item, "model_dump") else item
                           for item in kept], request.instructions),
        strategy=STRATEGY,
        proposed_response=action_message(response),
        metadata={"framework": "openai-agents", "hook": "context_management", "opaque": True},
    )
    decision = await guard.areview(event, RequestProbe(model, full), audit=True)
    notify(on_decision, decision)
    return decision
