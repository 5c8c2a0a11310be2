"""What every guarded SDK hook shares: calling it, naming it, using it as a fallback, telling the user.

The SDK's compaction hooks (`call_model_input_filter`, a handoff `input_filter`,
`session_input_callback`) may be plain functions, coroutine functions or objects with a
(coroutine) `__call__`. A hook of the same kind can stand in as a fallback for the one under
review: `bind_hook` turns it into a memguard strategy (view messages in, view messages out) by way
of two conversions supplied by the wrapper that knows the hook's data.
"""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Callable, Sequence
from typing import Any

from memguard import Decision, Guard
from memguard.strategies import as_strategy

__all__ = [
    "AsyncHookStrategy",
    "HookStrategy",
    "bind_fallbacks",
    "call_hook",
    "check_fallbacks",
    "hook_name",
    "is_async_hook",
    "notify",
]

logger = logging.getLogger("memguard.openai_agents")


def notify(hook: Callable[[Decision], Any] | None, decision: Decision) -> None:
    """Call `hook(decision)`; a failure is logged by exception type only (messages may quote the conversation)."""
    if hook is None:
        return
    try:
        hook(decision)
    except Exception as exc:  # noqa: BLE001 - a user hook must not break the agent
        logger.error("memguard: on_decision hook failed (%s)", type(exc).__name__)


def hook_name(hook: Any) -> str:
    """A readable strategy name for a hook (audit records, the RM's perturbation tag)."""
    name = getattr(hook, "name", None)
    if isinstance(name, str) and name:
        return name
    func = getattr(hook, "func", None)  # functools.partial
    if func is not None and not inspect.isclass(hook):
        return hook_name(func)
    cls = hook.__name__ if inspect.isfunction(hook) or inspect.ismethod(hook) else type(hook).__name__
    snake = re.sub(r"(?<!^)(?=[A-Z])", "_", cls).lower()
    if cls == "ToolOutputTrimmer":
        return f"{snake}_recent_{hook.recent_turns}_max_{hook.max_output_chars}"
    return snake


def is_async_hook(hook: Any) -> bool:
    """A coroutine function, or an object whose (possibly inherited) `__call__` is one."""
    if inspect.iscoroutinefunction(hook):
        return True
    func = getattr(hook, "func", None)  # functools.partial of a coroutine function
    if func is not None and inspect.iscoroutinefunction(func):
        return True
    methods = [vars(klass)["__call__"] for klass in type(hook).__mro__ if "__call__" in vars(klass)]
    return bool(methods) and inspect.iscoroutinefunction(methods[0])


async def call_hook(hook: Any, *args: Any) -> Any:
    """Call a sync or async hook and return its result."""
    result = hook(*args)
    if inspect.isawaitable(result):
        result = await result
    return result


class HookStrategy:
    """A hook used as a memguard fallback strategy for one review: view in, hook, view out.

    Args:
        hook: An SDK hook of the guarded hook's kind (an input filter, a handoff filter, a session
            input callback).
        to_hook: Turns the review's view messages into the hook's arguments.
        to_view: Turns the hook's result into view messages.
    """

    def __init__(self, hook: Any, to_hook: Callable[[list[Any]], tuple[Any, ...]],
                 to_view: Callable[[Any], list[Any]]) -> None:
        self.hook = hook
        self.to_hook = to_hook
        self.to_view = to_view
        self.name = hook_name(hook)

    def __call__(self, messages: Sequence[Any]) -> list[Any]:
        return self.to_view(self.hook(*self.to_hook(list(messages))))


class AsyncHookStrategy(HookStrategy):
    """`HookStrategy` for a coroutine hook (the guard awaits it)."""

    async def __call__(self, messages: Sequence[Any]) -> list[Any]:  # type: ignore[override]
        return self.to_view(await call_hook(self.hook, *self.to_hook(list(messages))))


def is_strategy(fallback: Any) -> bool:
    """memguard strategies (a `name`, messages in and out) versus hooks of the SDK's kind."""
    return isinstance(getattr(fallback, "name", None), str) and not isinstance(fallback, HookStrategy)


def check_fallbacks(fallbacks: Sequence[Any]) -> tuple[Any, ...]:
    """Validate fallbacks up front (a clear error now rather than at the first review)."""
    for fallback in fallbacks:
        if not callable(fallback):
            raise TypeError(f"fallback {fallback!r} is neither a hook nor a memguard strategy")
    return tuple(fallbacks)


def bind_fallbacks(fallbacks: Sequence[Any], guard: Guard, to_hook: Callable[[list[Any]], tuple[Any, ...]],
                   to_view: Callable[[Any], list[Any]]) -> tuple[Any, ...] | None:
    """The chain for one review: the wrapper's fallbacks (hooks bound to this call), then the guard's."""
    if not fallbacks:
        return None
    bound = []
    for fallback in fallbacks:
        if is_strategy(fallback):
            bound.append(as_strategy(fallback))
        else:
            kind = AsyncHookStrategy if is_async_hook(fallback) else HookStrategy
            bound.append(as_strategy(kind(fallback, to_hook, to_view)))
    return (*bound, *guard.fallbacks)
