"""Guard a compaction function with a decorator: ``f(messages, ...) -> messages`` stays that.

The wrapped function returns the messages to use (the proposed compaction, a fallback, or the
untouched input on a veto) in the caller's own message type. The `Decision` is reachable without
changing the signature: ``wrapper.last_decision`` and an ``on_decision`` callback. A compaction
function that raises is a veto like any other: the guard's sinks, counters and `on_decision`
see it too.

Cooldown state is kept per conversation: pass `conversation_id` (a string, or a callable of the
messages) when one function compacts several conversations with the same opening; by default the
guard derives an id from the opening messages (see `memguard.guard.conversation_key`).
"""

from __future__ import annotations

import copy
import functools
import inspect
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from memguard.events import CompactionEvent, Decision

if TYPE_CHECKING:
    from memguard.guard import Guard, Policy

__all__ = ["guard_compaction"]

logger = logging.getLogger("memguard")


def guard_compaction(
    guard: Guard,
    *,
    policy: Policy | None = None,
    strategy: str | None = None,
    on_decision: Callable[[Decision], Any] | None = None,
    conversation_id: str | Callable[[list[Any]], str] | None = None,
) -> Callable[[Callable[..., Any]], Any]:
    if conversation_id is not None and not isinstance(conversation_id, str) and not callable(conversation_id):
        raise TypeError("conversation_id must be a string or a callable of the messages")

    def id_for(messages: list[Any]) -> str | None:
        if callable(conversation_id):
            return str(conversation_id(messages))
        return conversation_id

    def decorate(func: Callable[..., Any]) -> Any:
        name = str(strategy or getattr(func, "__name__", "compaction"))

        def event_for(messages: Any, candidate: Any) -> CompactionEvent:
            before = list(messages)
            return CompactionEvent(before=before, candidate=list(candidate), strategy=name,
                                   conversation_id=id_for(before))

        def failed(messages: Any, exc: Exception) -> Decision:
            # The user's compaction itself failed (say, the summariser's API call): keep everything.
            before = list(messages)
            return guard.compaction_failed(before, strategy=name, error=exc, conversation_id=id_for(before))

        def record(wrapper: Any, decision: Decision) -> list[Any]:
            wrapper.last_decision = decision
            if on_decision is not None:
                try:
                    on_decision(decision)
                except Exception as exc:  # noqa: BLE001 - type only: messages may quote conversations
                    logger.error("memguard: on_decision callback failed (%s)", type(exc).__name__)
            return decision.messages

        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(messages: Any, *args: Any, **kwargs: Any) -> list[Any]:
                try:
                    candidate = await func(copy.deepcopy(list(messages)), *args, **kwargs)
                except Exception as exc:  # noqa: BLE001
                    decision = failed(messages, exc)
                    await guard.apublish(decision)
                    return record(async_wrapper, decision)
                decision = await guard.areview(event_for(messages, candidate), policy)
                return record(async_wrapper, decision)

            async_wrapper.last_decision = None  # type: ignore[attr-defined]
            return async_wrapper

        @functools.wraps(func)
        def wrapper(messages: Any, *args: Any, **kwargs: Any) -> list[Any]:
            try:
                candidate = func(copy.deepcopy(list(messages)), *args, **kwargs)
            except Exception as exc:  # noqa: BLE001
                decision = failed(messages, exc)
                guard.publish(decision)
                return record(wrapper, decision)
            decision = guard.review(event_for(messages, candidate), policy)
            return record(wrapper, decision)

        wrapper.last_decision = None  # type: ignore[attr-defined]
        return wrapper

    return decorate
