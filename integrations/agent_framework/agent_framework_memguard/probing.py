"""Asking the agent's own model for its next step, and serving that answer as the real step.

A probe is the request the framework would send, on another context: the recorded request's
client, options (model settings, tools, tool_choice, instructions, response format), stream flag
and client keywords, sent at the leaf, `client._inner_get_response`, where the framework's own
call ends up after its layers. Never through `get_response`: that would run the tool loop,
re-enter the chat middleware and recurse into compaction, and it would bill the run's telemetry.
A streamed request is probed streamed (its updates are kept), so the answer can be replayed to a
streaming consumer exactly as it came.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from agent_framework import (
    ChatContext,
    ChatResponse,
    ChatResponseUpdate,
    Content,
    ResponseStream,
    add_usage_details,
)
from agent_framework import (
    Message as AFMessage,
)

__all__ = ["LEAF_EXCLUDED", "Probe", "Request"]

LEAF_EXCLUDED = frozenset({"compaction_strategy", "tokenizer", "_evaluation_tool_capture"})
"""Client keywords the framework consumes before the leaf (`BaseChatClient.get_response`)."""


@dataclass
class Request:
    """One model request as the framework is about to send it (what a probe repeats).

    A probe is sent at the leaf, `client._inner_get_response`, where the framework's own call ends
    up after its layers; never through `get_response`, which would run the tool loop, re-enter
    the chat middleware, recurse into compaction and bill the run's telemetry.
    """

    client: Any
    """The chat client whose `_inner_get_response` the framework calls."""
    messages: list[AFMessage]
    """The list the compaction works on (the middleware's `ChatContext.messages`)."""
    options: dict[str, Any]
    """The request's options, copied when the request was recorded (the tool loop changes its own
    dict between iterations, e.g. `tool_choice`)."""
    stream: bool = False
    """Whether the framework streams this request."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """The client keywords the leaf receives."""
    session: Any = None
    """The run's `AgentSession`, if any."""
    tokenizer: Any = None
    """The tokenizer the framework counts this request's tokens with (per call, or the client's)."""

    @classmethod
    def from_context(cls, context: ChatContext) -> Request:
        """The request a chat middleware sees, as the leaf will receive it.

        Args:
            context: The chat middleware's context (its `messages` become a list, if they are not).

        Returns:
            The request, without the keywords the framework consumes before the leaf.
        """
        if not isinstance(context.messages, list):
            context.messages = list(context.messages)
        kwargs = {k: v for k, v in context.kwargs.items() if k not in LEAF_EXCLUDED}
        tokenizer = context.kwargs.get("tokenizer") or getattr(context.client, "tokenizer", None)
        return cls(context.client, context.messages, dict(context.options or {}), bool(context.stream), kwargs,
                   context.session, tokenizer)

    @property
    def instructions(self) -> Any:
        """The run's instructions (shown to MemRM as the leading system turn)."""
        return self.options.get("instructions")

    async def send(self, messages: Sequence[AFMessage]) -> Probe:
        """Send `messages` at the leaf with this request's options and stream flag.

        Args:
            messages: The context to probe (the messages the model would be sent).

        Returns:
            The model's response; for a streamed request also the updates as they arrived.

        Raises:
            TypeError: When the client has no `_inner_get_response` (not an Agent Framework chat client).
        """
        leaf = getattr(self.client, "_inner_get_response", None)
        if not callable(leaf):
            raise TypeError(f"{type(self.client).__name__} has no _inner_get_response: not a BaseChatClient")
        sent = list(messages)
        result = leaf(messages=list(sent), stream=self.stream, options=dict(self.options), **self.kwargs)
        if not self.stream:
            return Probe(await result, None, sent)
        stream = result if isinstance(result, ResponseStream) else await result
        updates: list[ChatResponseUpdate] = [update async for update in stream]
        return Probe(await stream.get_final_response(), updates, sent)


@dataclass
class Probe:
    """A model response obtained by a probe, with what was sent to get it."""

    response: ChatResponse[Any]
    """The model's response."""
    updates: list[ChatResponseUpdate] | None
    """The stream updates as they arrived (None: not streamed)."""
    sent: list[AFMessage]
    """The messages sent."""

    def answers(self, messages: Sequence[AFMessage]) -> bool:
        """Whether this probe is the answer to sending `messages`: the very objects, in order.

        The probe carried the request's own options, stream flag and client keywords, so the same
        messages make it the identical request.

        Args:
            messages: The messages the model call is about to send.

        Returns:
            True when they are the objects this probe sent, in the same order.
        """
        return len(messages) == len(self.sent) and all(a is b for a, b in zip(messages, self.sent, strict=True))

    def bill(self, other: Probe) -> None:
        """Count `other`'s usage in this response: a probe the run did not use was still a request.

        Args:
            other: A probe of the same review that is not served.
        """
        usage = other.response.usage_details
        if not usage:
            return
        if self.updates is None:
            self.response.usage_details = add_usage_details(self.response.usage_details, usage)
        else:
            self.updates.append(ChatResponseUpdate(role="assistant", contents=[Content.from_usage(usage)]))
            self.response.usage_details = add_usage_details(self.response.usage_details, usage)

    def replay(self) -> ChatResponse[Any] | ResponseStream[ChatResponseUpdate, ChatResponse[Any]]:
        """The response as the step's answer.

        Returns:
            The same response object, or, for a streamed probe, its updates replayed as a stream.
        """
        if self.updates is None:
            return self.response
        updates, response = list(self.updates), self.response

        async def again() -> AsyncIterator[ChatResponseUpdate]:
            for update in updates:
                yield update

        return ResponseStream(again(), finalizer=lambda _seen: response)
