"""A Pydantic AI compaction capability used as a memguard fallback strategy.

memguard strategies are functions of memguard's message view. A compaction capability is run on
the agent's own messages instead: through its `compact(messages, ctx)` when it has one (the
pydantic-ai-harness `CompactionStrategy` protocol: the transform, applied unconditionally, as
`TieredCompaction` uses it), else through its `before_model_request` on a scratch copy of the run
and request contexts, so the agent's real history is never touched by a candidate.

The guard may call a strategy on the event loop's own thread (memguard before 0.2's `areview`)
or on a worker thread while the loop waits (later cores run sync strategies off the loop). The
coroutine runs on the agent's loop when that loop is free, so loop-bound clients (a summarizer's
HTTP client) keep working, and on a private loop otherwise.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import threading
from collections.abc import Sequence
from copy import copy
from dataclasses import dataclass
from typing import Any

from pydantic_ai.capabilities import AbstractCapability
from pydantic_ai.messages import ModelMessage
from pydantic_ai.models import ModelRequestContext
from pydantic_ai.tools import RunContext

from memguard import Message
from pydantic_ai_memguard.messages import MessageBridge

__all__ = ["CapabilityStrategy", "check_compaction", "compact_with", "strategy_name"]

_KEEP_FIELDS = ("keep_tokens", "keep_messages", "keep_pairs")


def check_compaction(capability: Any, what: str = "inner") -> AbstractCapability[Any]:
    """`capability` if it can compact a history, else a `TypeError` that says why not."""
    if not isinstance(capability, AbstractCapability):
        raise TypeError(f"{what} must be a Pydantic AI capability (AbstractCapability), got {type(capability).__name__}")
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


async def compact_with(capability: AbstractCapability[Any], messages: Sequence[ModelMessage],
                       ctx: RunContext[Any], request_context: ModelRequestContext) -> list[ModelMessage]:
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


def _run_private(coro: Any) -> Any:
    """Run `coro` to completion on a new loop in a helper thread (the caller's loop is busy)."""
    box: dict[str, Any] = {}

    def runner() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=runner, name="pydantic-ai-memguard-fallback", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


@dataclass(frozen=True)
class CapabilityStrategy:
    """A compaction capability as a memguard strategy, bound to one model request."""

    capability: AbstractCapability[Any]
    bridge: MessageBridge
    ctx: RunContext[Any]
    request_context: ModelRequestContext
    loop: asyncio.AbstractEventLoop
    name: str

    def __call__(self, messages: Sequence[Message]) -> list[Message]:
        agent_messages = self.bridge.from_view(messages)
        coro = compact_with(self.capability, agent_messages, self.ctx, self.request_context)
        try:
            on_loop = asyncio.get_running_loop() is self.loop
        except RuntimeError:
            on_loop = False
        if on_loop or self.loop.is_closed():
            compacted = _run_private(coro)
        else:
            compacted = asyncio.run_coroutine_threadsafe(coro, self.loop).result()
        return self.bridge.to_view(compacted)
