"""Probing the agent's model the way `create_agent` calls it, and reusing the answer that wins.

A probe is the step's own model request (`ModelRequest`: model, tools, tool_choice, model
settings, response format, system message) with other messages, sent through the `handler` that
`wrap_model_call` received, so it passes the same inner middlewares and tool binding as the real
call. Two kinds:

- enforce probes answer the step: the one on the context that wins *is* the step's response, so
  it is served again only to that identical request (same request, same messages). They run
  under the step's run context (callbacks, stream writers), like any model call of the step;
- audit probes answer nobody: the guard runs them on its worker in an empty
  `contextvars.Context`, so nothing of the run's (callbacks, `stream_mode="messages"` writers,
  usage counters) sees them. They must not carry the run's context along: this module never
  captures it for them.
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from langchain.agents.middleware import ModelRequest, ModelResponse
from langchain.agents.middleware.types import ExtendedModelResponse
from langchain_core.messages import AIMessage, BaseMessage

from langchain_memguard.compaction import with_messages
from langchain_memguard.views import GuardView

__all__ = [
    "AsyncHandler",
    "Handler",
    "Probes",
    "aaudit_policy",
    "action_message",
    "aenforce_policy",
    "as_model_response",
    "audit_policy",
    "enforce_policy",
]

Handler = Callable[[ModelRequest], Any]
AsyncHandler = Callable[[ModelRequest], Awaitable[Any]]


def as_model_response(result: Any) -> ModelResponse:
    """What a `wrap_model_call` handler returned, as a `ModelResponse`.

    Raises:
        TypeError: The handler returned something `create_agent` does not either.
    """
    if isinstance(result, ModelResponse):
        return result
    if isinstance(result, AIMessage):
        return ModelResponse(result=[result])
    if isinstance(result, ExtendedModelResponse):
        return result.model_response
    raise TypeError(f"the model handler returned {type(result).__name__}, not a ModelResponse")


def action_message(response: ModelResponse) -> BaseMessage:
    """The message MemRM judges: the model's AI message (the first one, as `create_agent` emits it).

    Raises:
        ValueError: The response holds no message at all.
    """
    for message in response.result:
        if isinstance(message, AIMessage):
            return message
    if not response.result:
        raise ValueError("the model handler returned an empty ModelResponse")
    return response.result[0]


class Probes:
    """The responses probed during one enforce review, found again from the message the guard chose.

    The guard hands back the chosen candidate's response object; only a response probed on exactly
    that candidate (same request, same messages) is served as the step's answer.
    """

    def __init__(self) -> None:
        self._by_message: dict[int, tuple[BaseMessage, ModelResponse]] = {}

    def keep(self, result: Any) -> BaseMessage:
        """Remember one probe's response; returns the message the guard judges."""
        response = as_model_response(result)
        message = action_message(response)
        self._by_message[id(message)] = (message, response)
        return message

    def response_for(self, message: Any) -> ModelResponse | None:
        """The probed response whose action is `message` (the very object), else None."""
        found = self._by_message.get(id(message))
        return found[1] if found is not None and found[0] is message else None


def enforce_policy(
    handler: Handler, request: ModelRequest, view: GuardView, probes: Probes
) -> Callable[[Sequence[Any]], BaseMessage]:
    """The agent for a blocking enforce review: `request` with the probed messages, via `handler`.

    The guard may probe on its own threads (full and compacted context at once): each probe runs
    in a copy of the step's context, so it is traced and streamed like the step's model call.
    """
    context = contextvars.copy_context()

    def policy(messages: Sequence[Any]) -> BaseMessage:
        probe = with_messages(request, view.from_view(messages))
        return probes.keep(context.copy().run(handler, probe))

    return policy


def aenforce_policy(
    handler: AsyncHandler, request: ModelRequest, view: GuardView, probes: Probes
) -> Callable[[Sequence[Any]], Awaitable[BaseMessage]]:
    """The agent for an async enforce review (probes are awaited in the step's own task)."""

    async def policy(messages: Sequence[Any]) -> BaseMessage:
        return probes.keep(await handler(with_messages(request, view.from_view(messages))))

    return policy


def audit_policy(handler: Handler, request: ModelRequest, view: GuardView) -> Callable[[Sequence[Any]], BaseMessage]:
    """The agent for an audit review: the same request on other messages, in whatever context the
    guard's worker runs it (an empty one), never the step's."""

    def policy(messages: Sequence[Any]) -> BaseMessage:
        return action_message(as_model_response(handler(with_messages(request, view.from_view(messages)))))

    return policy


def aaudit_policy(
    handler: AsyncHandler, request: ModelRequest, view: GuardView
) -> Callable[[Sequence[Any]], Awaitable[BaseMessage]]:
    """`audit_policy` for an async agent: the guard awaits it on the agent's loop, in an empty context."""

    async def policy(messages: Sequence[Any]) -> BaseMessage:
        return action_message(as_model_response(await handler(with_messages(request, view.from_view(messages)))))

    return policy
