"""Running a LangChain compaction middleware as a pure function of a message list.

`create_agent` offers two ways to compact: a `before_model` hook that returns a state update
(`SummarizationMiddleware`: ``[RemoveMessage(REMOVE_ALL_MESSAGES), summary, *kept]``) and a
`wrap_model_call` hook that edits the request it hands to the model (`ContextEditingMiddleware`,
which never touches the state). Here both become "messages in, compacted messages out", so the
guard can score them and use them as fallbacks.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse
from langchain_core.messages import AIMessage, BaseMessage
from langgraph.graph.message import add_messages
from memguard import run_coroutine_blocking

from langchain_memguard.views import GuardView

__all__ = [
    "HookKind",
    "MiddlewareStrategy",
    "apply_update",
    "compact_with",
    "hook_kind",
    "refuse_unguardable",
    "strategy_name",
]

HookKind = Literal["state", "request"]


def _overrides(middleware: AgentMiddleware, hook: str) -> bool:
    return getattr(type(middleware), hook, None) is not getattr(AgentMiddleware, hook)


def hook_kind(middleware: Any) -> HookKind:
    """"state" for a `before_model` compaction, "request" for a `wrap_model_call` one."""
    if not isinstance(middleware, AgentMiddleware):
        raise TypeError(f"expected a LangChain AgentMiddleware, got {type(middleware).__name__}")
    if _overrides(middleware, "before_model") or _overrides(middleware, "abefore_model"):
        return "state"
    if _overrides(middleware, "wrap_model_call") or _overrides(middleware, "awrap_model_call"):
        return "request"
    raise TypeError(
        f"{middleware.name} neither returns a messages update from before_model nor edits the "
        "request in wrap_model_call; there is no compaction to guard"
    )


def refuse_unguardable(middleware: Any) -> None:
    """Refuse a compaction middleware that `MemGuardMiddleware` cannot guard, saying what to do instead.

    deepagents' `SummarizationMiddleware` (and its `SummarizationToolMiddleware`): it writes the
    evicted history to its backend *before* it summarises (a veto cannot take that write back), it
    keeps each compaction as a ``_summarization_event`` in the state that its own `wrap_model_call`
    replays at every later call, and it decides, offloads, summarises and calls the model in that
    one `wrap_model_call`, so there is no way to skip its summariser during a cooldown, nor to send
    "the context it would have sent without summarising" without its private methods.

    Raises:
        TypeError: `middleware` is one of those.
    """
    cls = type(middleware)
    if cls.__module__.split(".")[0] == "deepagents" and "Summarization" in cls.__name__:
        raise TypeError(
            f"deepagents' {middleware.name} cannot be guarded: it offloads the history to its backend before "
            "summarising and replays its summary from the state at every call, so a veto could neither undo "
            "the offload nor keep the summary out. Audit it with MemGuardCallbackHandler, or enforce by "
            "replacing it: MemGuardMiddleware(langchain.agents.middleware.SummarizationMiddleware(...), guard, "
            'name="SummarizationMiddleware") (docs/langchain.md, "Deep Agents")'
        )


def strategy_name(middleware: Any) -> str:
    """A readable strategy name for audit records and MemRM's perturbation tag.

    Args:
        middleware: A compaction middleware.

    Returns:
        ``summarization_keep_<kind>_<value>`` for `SummarizationMiddleware`,
        ``context_editing_keep_<keeps>`` for `ContextEditingMiddleware`, else the middleware's
        name in snake case without ``Middleware``.
    """
    cls = type(middleware).__name__
    if cls == "SummarizationMiddleware":
        kind, value = middleware.keep
        return (
            f"summarization_keep_{kind}_{value:g}" if isinstance(value, float) else f"summarization_keep_{kind}_{value}"
        )
    if cls == "ContextEditingMiddleware":
        keeps = [getattr(edit, "keep", None) for edit in middleware.edits]
        suffix = "_".join(str(k) for k in keeps if k is not None)
        return f"context_editing_keep_{suffix}" if suffix else "context_editing"
    name = middleware.name.removesuffix("Middleware") or middleware.name
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def apply_update(messages: Sequence[BaseMessage], update: Sequence[Any]) -> list[BaseMessage]:
    """The message list after `update` goes through the graph's `add_messages` reducer."""
    merged: Any = add_messages(cast(Any, list(messages)), cast(Any, list(update)))
    return list(merged)


def with_messages(request: ModelRequest, messages: Sequence[BaseMessage]) -> ModelRequest:
    """`request` with other messages (LangChain types them as its message union; any BaseMessage works)."""
    return request.override(messages=cast(Any, list(messages)))


def _state_for(request: ModelRequest, messages: Sequence[BaseMessage]) -> Any:
    return {**request.state, "messages": list(messages)}


def _capture_request(middleware: AgentMiddleware, request: ModelRequest) -> list[BaseMessage]:
    captured: list[list[BaseMessage]] = []

    def capture(edited: ModelRequest) -> ModelResponse:
        captured.append(list(edited.messages))
        return ModelResponse(result=[AIMessage(content="")])

    middleware.wrap_model_call(request, capture)
    if not captured:
        raise RuntimeError(f"{middleware.name}.wrap_model_call never called the model handler")
    return captured[-1]


def compact_with(
    middleware: AgentMiddleware, messages: Sequence[BaseMessage], request: ModelRequest
) -> list[BaseMessage]:
    """What `middleware` would make of `messages` at this model call, as a pure function.

    A state compaction runs its `before_model` on a copy of the state that holds `messages`; a
    request edit runs its `wrap_model_call` with a handler that keeps the edited messages and
    calls no model. This is how a middleware becomes a memguard fallback strategy.

    Args:
        middleware: A compaction middleware (`before_model` or `wrap_model_call`).
        messages: The agent's messages (not a MemRM view).
        request: The model call's request: the state, runtime and settings the middleware reads.

    Returns:
        The compacted messages, or a copy of `messages` when the middleware does not compact now.

    Raises:
        TypeError: `middleware` is not an `AgentMiddleware`, or it compacts nothing.
        RuntimeError: Its `wrap_model_call` never called the model handler.
    """
    if hook_kind(middleware) == "request":
        return _capture_request(middleware, with_messages(request, messages))
    state = _state_for(request, messages)
    if _overrides(middleware, "before_model"):
        update = middleware.before_model(state, request.runtime)
    else:
        update = run_coroutine_blocking(middleware.abefore_model(state, request.runtime))
    if not update or not update.get("messages"):
        return list(messages)
    return apply_update(messages, update["messages"])


@dataclass(frozen=True)
class MiddlewareStrategy:
    """A compaction middleware used as a memguard fallback strategy for one model call.

    The guard hands strategies the messages it was given: the LangChain view of the agent's
    context (see `GuardView`). Called with those messages, this strips the view, runs the
    middleware on the agent's own messages (`compact_with`), and returns the result as a view
    again.
    """

    middleware: AgentMiddleware
    """The compaction middleware to run."""
    request: ModelRequest
    """The model call it runs for (state, runtime and settings)."""
    view: GuardView
    """The view the guard's messages are in, to convert them back and forth."""
    name: str
    """The strategy's name in audit records (see `strategy_name`)."""

    def __call__(self, messages: Sequence[BaseMessage]) -> list[BaseMessage]:
        compacted = compact_with(self.middleware, self.view.from_view(list(messages)), self.request)
        return self.view.to_view(compacted)
