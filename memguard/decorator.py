"""Guard a compaction function with a decorator: ``f(messages, ...) -> messages`` stays that.

The wrapped function returns the messages to use (the proposed compaction, a fallback, or the
untouched input on a veto) in the caller's own message type. Each call's `Decision` is its own:

- ``summarise.with_decision(messages, ...)`` returns ``Compacted(messages, decision)`` (awaitable
  when ``f`` is async);
- ``summarise.last_decision`` is the latest decision *of the calling thread or asyncio task*
  (a `ContextVar`), never another caller's;
- an ``on_decision`` callback sees every decision.

The guard's gate is asked first: during a cooldown after a veto ``f`` is not called at all (a
summariser is an LLM call). A compaction function that raises is a veto like any other: the
guard's sinks, counters and `on_decision` see it too.

What ``f`` receives: in enforce mode a copy of each message that can be deep-copied (so ``f``
may edit its input in place without touching the history a veto hands back), and the caller's
own object for any that cannot (a LangChain ``ToolMessage`` whose artifact holds a socket): no
copy can fail. In audit mode the agent's path does no per-message work: ``f`` gets a new list of
the caller's own message objects, so audit assumes ``f`` does not mutate messages in place (it
may add, drop or reorder them freely).

Cooldown state is kept per conversation: pass `conversation_id` (a string, or a callable of the
messages) when one function compacts several conversations with the same opening; by default the
guard derives an id from the opening messages (see `memguard.gate.conversation_key`).
"""

from __future__ import annotations

import contextvars
import copy
import functools
import inspect
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from memguard.events import CompactionEvent, Decision

if TYPE_CHECKING:
    from memguard.gate import Gate
    from memguard.guard import Guard, Policy

__all__ = ["Compacted", "GuardedCompaction", "guard_compaction", "safe_copies"]

logger = logging.getLogger("memguard")


class Compacted(NamedTuple):
    """What `GuardedCompaction.with_decision` returns: the messages to use and the call's own decision."""

    messages: list[Any]
    """The messages to use from now on, in the caller's type (the compaction, a fallback's context,
    or the untouched input on a veto).
    """
    decision: Decision
    """This call's own `Decision`."""


def safe_copies(messages: Any) -> list[Any]:
    """A deep copy of each message that can be copied; the caller's own object for any that cannot.

    Args:
        messages: The messages to copy.

    Returns:
        A new list; copying never raises.
    """
    out = []
    for message in messages:
        try:
            out.append(copy.deepcopy(message))
        except Exception:  # noqa: BLE001 - sockets, locks, clients: passed by reference, never an error
            out.append(message)
    return out


class GuardedCompaction(functools.partial):  # type: ignore[type-arg]
    """A guarded compaction function: call it like the function it wraps.

    A `functools.partial` of the guarded call, so `inspect.iscoroutinefunction` is true for an
    async one (documented for partials since Python 3.8) while `last_decision` can be a property
    that reads the calling thread's or task's own value.
    """

    _last: contextvars.ContextVar[Decision | None]
    _decide: Callable[..., Any]

    @property
    def last_decision(self) -> Decision | None:
        """The latest decision of this thread or asyncio task (None before its first call)."""
        return self._last.get()

    def with_decision(self, messages: Any, *args: Any, **kwargs: Any) -> Any:
        """Call the guarded function and get this call's decision beside the messages.

        Args:
            messages: The conversation to compact, in the caller's message type.
            *args: Passed on to the wrapped function.
            **kwargs: Passed on to the wrapped function.

        Returns:
            ``Compacted(messages, decision)``; for an async function, a coroutine that returns it.
        """
        return self._decide(messages, *args, **kwargs)

    def __repr__(self) -> str:
        return f"<guarded compaction {getattr(self, '__qualname__', '?')}>"


def guard_compaction(
    guard: Guard,
    *,
    policy: Policy | None = None,
    strategy: str | None = None,
    on_decision: Callable[[Decision], Any] | None = None,
    conversation_id: str | Callable[[list[Any]], str] | None = None,
    must_reduce: bool | Callable[[list[Any]], bool] = False,
) -> Callable[[Callable[..., Any]], GuardedCompaction]:
    """The decorator behind `Guard.compaction` and `memguard.guarded` (see the module docstring).

    Args:
        guard: The guard that reviews each call.
        policy: The agent (messages -> next response), probed on both contexts.
        strategy: The name the compaction goes by (default: the function's name).
        on_decision: Called with every decision.
        conversation_id: A string, or a callable of the messages, naming the conversation.
        must_reduce: True (or a callable of the messages saying so) when the context must
            shrink now (it overflows): such a call is never skipped and never vetoed.

    Returns:
        A decorator that turns ``f`` into a `GuardedCompaction`.

    Raises:
        TypeError: `conversation_id` is neither a string nor a callable.
    """
    if conversation_id is not None and not isinstance(conversation_id, str) and not callable(conversation_id):
        raise TypeError("conversation_id must be a string or a callable of the messages")

    def id_for(messages: list[Any]) -> str | None:
        if callable(conversation_id):
            return str(conversation_id(messages))
        return conversation_id

    def decorate(func: Callable[..., Any]) -> GuardedCompaction:
        name = str(strategy or getattr(func, "__name__", "compaction"))
        last: contextvars.ContextVar[Decision | None] = contextvars.ContextVar(f"memguard_last_{name}", default=None)

        def prepare(messages: Any) -> tuple[list[Any], Gate, list[Any] | None]:
            """The caller's list, the gate's answer, and what to hand `func` (None: skip it)."""
            before = list(messages)
            reduce = bool(must_reduce(before)) if callable(must_reduce) else bool(must_reduce)
            gate = guard.gate(before, conversation_id=id_for(before), must_reduce=reduce)
            if not gate.review:
                return before, gate, None
            return before, gate, (list(before) if gate.audit else safe_copies(before))

        def event_for(before: list[Any], candidate: Any, gate: Gate) -> CompactionEvent:
            return CompactionEvent(before=before, candidate=list(candidate), strategy=name,
                                   conversation_id=gate.conversation_id, step=gate.step)

        def failed(before: list[Any], gate: Gate, exc: Exception) -> Decision:
            # The user's compaction itself failed (say, the summariser's API call): keep everything.
            return guard.compaction_failed(before, strategy=name, error=exc, conversation_id=gate.conversation_id)

        def record(decision: Decision) -> Compacted:
            last.set(decision)
            if on_decision is not None:
                try:
                    on_decision(decision)
                except Exception as exc:  # noqa: BLE001 - type only: messages may quote conversations
                    logger.error("memguard: on_decision callback failed (%s)", type(exc).__name__)
            return Compacted(decision.messages, decision)

        if inspect.iscoroutinefunction(func):

            async def adecide(messages: Any, *args: Any, **kwargs: Any) -> Compacted:
                before, gate, given = prepare(messages)
                if given is None:
                    return record(await guard.askip(gate, before, strategy=name))
                try:
                    candidate = await func(given, *args, **kwargs)
                except Exception as exc:  # noqa: BLE001
                    decision = failed(before, gate, exc)
                    await guard.apublish(decision)
                    return record(decision)
                return record(await guard.areview(event_for(before, candidate, gate), policy, gate=gate))

            async def acall(messages: Any, *args: Any, **kwargs: Any) -> list[Any]:
                return (await adecide(messages, *args, **kwargs)).messages

            return _wrap(GuardedCompaction(acall), func, adecide, last)

        def decide(messages: Any, *args: Any, **kwargs: Any) -> Compacted:
            before, gate, given = prepare(messages)
            if given is None:
                return record(guard.skip(gate, before, strategy=name))
            try:
                candidate = func(given, *args, **kwargs)
            except Exception as exc:  # noqa: BLE001
                decision = failed(before, gate, exc)
                guard.publish(decision)
                return record(decision)
            return record(guard.review(event_for(before, candidate, gate), policy, gate=gate))

        def call(messages: Any, *args: Any, **kwargs: Any) -> list[Any]:
            return decide(messages, *args, **kwargs).messages

        return _wrap(GuardedCompaction(call), func, decide, last)

    return decorate


def _wrap(wrapper: GuardedCompaction, func: Callable[..., Any], decide: Callable[..., Any],
          last: contextvars.ContextVar[Decision | None]) -> GuardedCompaction:
    functools.update_wrapper(wrapper, func)
    wrapper._decide = decide
    wrapper._last = last
    # The function itself, so `inspect.iscoroutinefunction(f.with_decision)` tells async from sync.
    wrapper.__dict__["with_decision"] = functools.wraps(func)(decide)
    return wrapper
