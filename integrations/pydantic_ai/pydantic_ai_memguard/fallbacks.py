"""A Pydantic AI compaction capability used as a memguard fallback strategy.

memguard strategies are functions of memguard's message view. A compaction capability is run on
the agent's own messages instead: through its `compact(messages, ctx)` when it has one (the
pydantic-ai-harness `CompactionStrategy` protocol: the transform, applied unconditionally, as
`TieredCompaction` uses it), else through its `before_model_request` on a scratch copy of the run
and request contexts, so the agent's real history is never touched by a candidate.

Where the guarded compaction is a `compact_history` hook (pydantic-ai-slim 2.78+), a fallback must
be a `CompactionResult` too: a capability with its own `compact_history` is asked the very same
`CompactionRequest` (`HistoryCompactionStrategy`); any other fallback's history gets a compaction
part of memguard's own and is checked as core will check it (`ResultStrategy`).

The strategies are coroutine functions: `Guard.areview` awaits them on the agent's own event loop,
so a fallback that calls a model (`SummarizingCompaction`) uses the run's loop-bound clients.
"""

from __future__ import annotations

import asyncio
import inspect
import re
from collections.abc import Sequence
from copy import copy
from dataclasses import dataclass, field
from typing import Any

from memguard import Message
from pydantic_ai.capabilities import AbstractCapability
from pydantic_ai.messages import ModelMessage
from pydantic_ai.models import ModelRequestContext
from pydantic_ai.tools import RunContext

from pydantic_ai_memguard.messages import MessageBridge

__all__ = [
    "CapabilityStrategy",
    "HistoryCompactionStrategy",
    "ResultStrategy",
    "check_compaction",
    "compact_with",
    "compacts_history",
    "strategy_name",
]

_KEEP_FIELDS = ("keep_tokens", "keep_messages", "keep_pairs")


def check_compaction(capability: Any, what: str = "inner") -> AbstractCapability[Any]:
    """`capability` if it can compact a history, else a `TypeError` that says why not."""
    if not isinstance(capability, AbstractCapability):
        raise TypeError(
            f"{what} must be a Pydantic AI capability (AbstractCapability), got {type(capability).__name__}"
        )
    hook = type(capability).before_model_request
    if (
        hook is AbstractCapability.before_model_request
        and not callable(getattr(capability, "compact", None))
        and not compacts_history(capability)
    ):
        raise TypeError(
            f"{type(capability).__name__} neither compacts in before_model_request or compact_history nor has "
            "compact(messages, ctx); there is no compaction to guard"
        )
    return capability


def compacts_history(capability: AbstractCapability[Any]) -> bool:
    """Whether `capability` has a `compact_history` hook (Pydantic AI's own answer; False before 2.78)."""
    return bool(getattr(capability, "_has_compact_history", False))


def strategy_name(capability: Any) -> str:
    """A readable strategy name for audit records and MemRM's perturbation tag.

    Args:
        capability: A compaction capability.

    Returns:
        The class name in snake case, with its ``keep_tokens``, ``keep_messages`` or
        ``keep_pairs`` setting when it has one (``sliding_window_compaction_keep_messages_40``).
    """
    name = re.sub(r"(?<!^)(?=[A-Z])", "_", type(capability).__name__).lower()
    for keep in _KEEP_FIELDS:
        value = getattr(capability, keep, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return f"{name}_{keep}_{value}"
    return name


async def _resolve(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


async def compact_with(
    capability: AbstractCapability[Any],
    messages: Sequence[ModelMessage],
    ctx: RunContext[Any],
    request_context: ModelRequestContext,
) -> list[ModelMessage]:
    """What `capability` makes of `messages`; the real run and request contexts stay untouched.

    A capability with ``compact(messages, ctx)`` (pydantic-ai-harness's `CompactionStrategy`
    protocol) is asked through it: the transform, applied unconditionally. Any other runs its
    `before_model_request` on scratch copies of the run and request contexts.

    Args:
        capability: A compaction capability.
        messages: The agent's history.
        ctx: The run's context (copied, never changed).
        request_context: The model request's context (copied, never changed).

    Returns:
        The compacted history.
    """
    compact = getattr(capability, "compact", None)
    if callable(compact):
        return list(await _resolve(compact(list(messages), ctx)))
    scratch_ctx = copy(ctx)
    scratch_ctx.messages = list(messages)
    scratch_request = copy(request_context)
    scratch_request.messages = list(messages)
    result = await _resolve(capability.before_model_request(scratch_ctx, scratch_request))
    return list(result.messages)


@dataclass(frozen=True)
class CapabilityStrategy:
    """A compaction capability as a memguard strategy, bound to one model request.

    Called with memguard's view of the history (an async strategy, awaited on the agent's own
    event loop), it runs the capability on the agent's messages (`compact_with`) and returns the
    result as a view.
    """

    capability: AbstractCapability[Any]
    """The compaction capability."""
    bridge: MessageBridge
    """The review's bridge, to convert the view back and forth."""
    ctx: RunContext[Any]
    """The run's context (copied for each call)."""
    request_context: ModelRequestContext
    """The model request's context (copied for each call)."""
    name: str
    """The strategy's name in records (see `strategy_name`)."""

    async def __call__(self, messages: Sequence[Message]) -> list[Message]:
        agent_messages = self.bridge.from_view(messages)
        compacted = await compact_with(self.capability, agent_messages, self.ctx, self.request_context)
        return self.bridge.to_view(compacted)


@dataclass(frozen=True)
class HistoryCompactionStrategy:
    """A capability's `compact_history`, asked the guarded compaction's very request.

    A fallback where the guarded compaction is a `compact_history` hook (pydantic-ai-slim 2.78+).
    Called with the review's view, it returns the result's history as a view, and keeps the
    `CompactionResult` itself so the capability can answer core with it. It raises `ValueError`
    when the capability declines, or returns what core would refuse: the review then moves on.
    """

    capability: AbstractCapability[Any]
    """A capability with its own `compact_history` hook."""
    bridge: MessageBridge
    """The review's bridge, to convert the history to a view."""
    ctx: RunContext[Any]
    """The run's context."""
    request: Any  # a CompactionRequest (pydantic-ai-slim 2.78+)
    """The guarded compaction's `CompactionRequest`."""
    name: str
    """The strategy's name in records (see `strategy_name`)."""
    results: dict[int, Any] = field(default_factory=dict)  # id(part) -> the CompactionResult
    """The results produced so far, by the id of their compaction part."""

    async def __call__(self, messages: Sequence[Message]) -> list[Message]:
        from pydantic_ai_memguard.results import as_result

        capability: Any = self.capability  # a 2.78+ capability: the hook is not in every supported Pydantic AI
        result = await capability.compact_history(self.ctx, self.request)
        if result is None:
            raise ValueError(f"{self.name} declined to compact this history")
        as_result(result.messages, self.request.messages, handler=result.handler)  # what core would refuse
        self.results[id(result.part)] = result
        return self.bridge.to_view(result.messages)


@dataclass(frozen=True)
class ResultStrategy:
    """Any other fallback, its history marked with a compaction part so that it is a valid `CompactionResult`.

    A fallback where the guarded compaction is a `compact_history` hook (pydantic-ai-slim
    2.78+), for a fallback without such a hook of its own. Its history gets a compaction part of
    memguard's own that says what was done, and is checked as core will check it: called, it
    raises `ValueError` where core would refuse the result, so the review skips it.
    """

    fallback: Any
    """A memguard strategy (a function of view messages), or a compaction capability run on the
    request's messages (`compact_with`, with a scratch request context)."""
    bridge: MessageBridge
    """The review's bridge, to convert the view back and forth."""
    ctx: RunContext[Any]
    """The run's context."""
    request: Any  # a CompactionRequest (pydantic-ai-slim 2.78+)
    """The guarded compaction's `CompactionRequest`."""
    name: str
    """The strategy's name in records and in the marker part."""

    async def __call__(self, messages: Sequence[Message]) -> list[Message]:
        from pydantic_ai_memguard.results import as_result, with_marker

        if isinstance(self.fallback, AbstractCapability):
            conversation = self.request.conversation_request
            scratch = ModelRequestContext(
                model=conversation.model,
                messages=list(self.request.messages),
                model_settings=conversation.settings,
                model_request_parameters=conversation.parameters,
            )
            compacted = await compact_with(self.fallback, self.request.messages, self.ctx, scratch)
        else:  # a memguard strategy: a sync one is CPU work, run off the agent's loop as the guard runs one
            compacted = self.bridge.from_view(await _resolve(await asyncio.to_thread(self.fallback, list(messages))))
        marked = with_marker(compacted, self.name)
        as_result(marked, self.request.messages, handler=f"memguard:{self.name}")
        return self.bridge.to_view(marked)
