"""A Pydantic AI compaction capability used as a memguard fallback strategy.

memguard strategies are functions of memguard's message view. A compaction capability is run on
the agent's own messages instead: through its `compact(messages, ctx)` when it has one (the
pydantic-ai-harness `CompactionStrategy` protocol: the transform, applied unconditionally, as
`TieredCompaction` uses it), else through its `before_model_request` on a scratch copy of the run
and request contexts, so the agent's real history is never touched by a candidate.

The strategy is a coroutine function: `Guard.areview` awaits it on the agent's own event loop, so
a fallback that calls a model (`SummarizingCompaction`) uses the run's loop-bound clients.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Sequence
from copy import copy
from dataclasses import dataclass
from typing import Any

from memguard import Message
from pydantic_ai.capabilities import AbstractCapability
from pydantic_ai.messages import ModelMessage
from pydantic_ai.models import ModelRequestContext
from pydantic_ai.tools import RunContext

from pydantic_ai_memguard.messages import MessageBridge

__all__ = ["CapabilityStrategy", "check_compaction", "compact_with", "strategy_name"]

_KEEP_FIELDS = ("keep_tokens", "keep_messages", "keep_pairs")


def check_compaction(capability: Any, what: str = "inner") -> AbstractCapability[Any]:
    """`capability` if it can compact a history, else a `TypeError` that says why not."""
    if not isinstance(capability, AbstractCapability):
        raise TypeError(
            f"{what} must be a Pydantic AI capability (AbstractCapability), got {type(capability).__name__}"
        )
    hook = type(capability).before_model_request
    if hook is AbstractCapability.before_model_request and not callable(getattr(capability, "compact", None)):
        raise TypeError(
            f"{type(capability).__name__} neither compacts in before_model_request nor has compact(messages, ctx); "
            "there is no compaction to guard"
        )
    return capability


def strategy_name(capability: Any) -> str:
    """A readable strategy name for audit records and MemRM's perturbation tag."""
    name = re.sub(r"(?<!^)(?=[A-Z])", "_", type(capability).__name__).lower()
    for field in _KEEP_FIELDS:
        value = getattr(capability, field, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return f"{name}_{field}_{value}"
    return name


async def _resolve(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


async def compact_with(
    capability: AbstractCapability[Any],
    messages: Sequence[ModelMessage],
    ctx: RunContext[Any],
    request_context: ModelRequestContext,
) -> list[ModelMessage]:
    """What `capability` makes of `messages`; the real run and request contexts stay untouched."""
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
    """A compaction capability as a memguard strategy, bound to one model request."""

    capability: AbstractCapability[Any]
    bridge: MessageBridge
    ctx: RunContext[Any]
    request_context: ModelRequestContext
    name: str

    async def __call__(self, messages: Sequence[Message]) -> list[Message]:
        agent_messages = self.bridge.from_view(messages)
        compacted = await compact_with(self.capability, agent_messages, self.ctx, self.request_context)
        return self.bridge.to_view(compacted)
