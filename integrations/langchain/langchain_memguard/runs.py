"""What the running graph says about the step being guarded: whose conversation it is, and whether
its context must shrink now.
"""

from __future__ import annotations

from typing import Any

from langchain.agents.middleware import ModelRequest
from langchain_core.messages.utils import count_tokens_approximately

__all__ = ["conversation_id", "input_limit", "must_reduce"]


def conversation_id() -> str | None:
    """The run's conversation: its LangGraph `thread_id`, and the graph namespace of a sub-agent.

    A sub-agent run inside a tool of another graph shares the parent's thread id; its namespace
    (the calling node's, without the model node's own last component) tells it apart, so one
    agent's veto never cools another down. None outside a graph run or without a thread: the
    guard then derives an id from the conversation's opening.
    """
    try:
        from langgraph.config import get_config

        configurable = get_config().get("configurable") or {}
    except Exception:  # noqa: BLE001 - outside a graph run there is simply no thread
        return None
    thread = configurable.get("thread_id")
    if thread is None:
        return None
    namespace = str(configurable.get("checkpoint_ns") or "")
    parent = "|".join(namespace.split("|")[:-1])
    return f"{thread}|{parent}" if parent else str(thread)


def input_limit(request: ModelRequest) -> int | None:
    """The model's declared input window (`model.profile["max_input_tokens"]`), if it declares one."""
    profile = getattr(request.model, "profile", None)
    limit = profile.get("max_input_tokens") if isinstance(profile, dict) else None
    return limit if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0 else None


def must_reduce(request: ModelRequest) -> bool:
    """True when the step's full context cannot be sent at all: it exceeds the model's declared
    input window (counted like LangChain's `SummarizationMiddleware` counts by default).

    A veto would then fail the model call (`ContextOverflowError` from the provider), so the
    guard must not veto this step. Only computed for models that declare a window.
    """
    limit = input_limit(request)
    if limit is None:
        return False
    messages: list[Any] = list(request.messages)
    if request.system_message is not None:
        messages.insert(0, request.system_message)
    return count_tokens_approximately(messages) > limit
