"""Guard a compaction function with a decorator: ``f(messages, ...) -> messages`` stays that.

The wrapped function returns the messages to use (the proposed compaction, a fallback, or the
untouched input on a veto) in the caller's own message type. The `Decision` is reachable without
changing the signature: ``wrapper.last_decision`` and an ``on_decision`` callback.
"""

from __future__ import annotations

import copy
import functools
import inspect
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from memguard.events import CompactionEvent, Decision, Verdict

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
    conversation_id: str = "default",
) -> Callable[[Callable[..., Any]], Any]:
    def decorate(func: Callable[..., Any]) -> Any:
        name = strategy or getattr(func, "__name__", "compaction")

        def event_for(messages: Any, candidate: Any) -> CompactionEvent:
            return CompactionEvent(before=list(messages), candidate=list(candidate), strategy=name,
                                   conversation_id=conversation_id)

        def failed(messages: Any, exc: Exception) -> Decision:
            # The user's compaction itself failed (say, the summariser's API call): keep everything.
            logger.warning("memguard: compaction %s raised %s; keeping the full context", name, type(exc).__name__)
            return Decision(verdict=Verdict.VETO, mode=guard.mode, messages=list(messages), proposed_strategy=name,
                            reasons=[f"compaction function raised {type(exc).__name__}"],
                            error=f"{type(exc).__name__}", conversation_id=conversation_id,
                            scorer=guard.identity)

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
                    return record(async_wrapper, failed(messages, exc))
                decision = await guard.areview(event_for(messages, candidate), policy)
                return record(async_wrapper, decision)

            async_wrapper.last_decision = None  # type: ignore[attr-defined]
            return async_wrapper

        @functools.wraps(func)
        def wrapper(messages: Any, *args: Any, **kwargs: Any) -> list[Any]:
            try:
                candidate = func(copy.deepcopy(list(messages)), *args, **kwargs)
            except Exception as exc:  # noqa: BLE001
                return record(wrapper, failed(messages, exc))
            decision = guard.review(event_for(messages, candidate), policy)
            return record(wrapper, decision)

        wrapper.last_decision = None  # type: ignore[attr-defined]
        return wrapper

    return decorate
