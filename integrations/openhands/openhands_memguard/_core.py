"""The guard's core calls this integration makes, in one place.

Every rule (cooldown, reviewability, must-reduce, the audit path) lives in memguard's core; this
module only forwards to it, on the core's gate API (`Guard.gate`, `Guard.skip`/`askip`,
`Guard.review`/`areview(..., gate=)`) and, for the older core that had only `review` with
`hard_budget` and the read-only `cooldown_left`, the second branch of each function (it goes away
once every supported memguard has the gate).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from memguard import CompactionEvent, Decision, Guard

__all__ = ["areview", "askip", "gate", "review", "skip"]


@dataclass(frozen=True)
class _OldGate:
    review: bool
    conversation_id: str
    step: int | None = None
    must_reduce: bool = False
    audit: bool = False
    reason: str | None = None


def _has_gate(guard: Guard) -> bool:
    return callable(getattr(guard, "gate", None))


def gate(guard: Guard, before: Sequence[Any] | None, *, conversation_id: str | None, step: int,
         must_reduce: bool) -> Any:
    """Ask the guard, before the wrapped condenser runs, whether this step is reviewed."""
    if _has_gate(guard):
        return guard.gate(None if before is None else list(before),  # type: ignore[attr-defined]
                          conversation_id=conversation_id, step=step, must_reduce=must_reduce)
    from memguard.guard import conversation_key

    cid = conversation_id or conversation_key(before or [])
    audit = guard.mode == "audit"
    left = 0 if audit or must_reduce else guard.cooldown_left(cid, step)
    return _OldGate(left == 0, cid, step, must_reduce, audit, f"cooldown: {left} more step(s)" if left else None)


def _skip_event(gate: Any, before: Sequence[Any], strategy: str) -> CompactionEvent:
    return CompactionEvent(before=list(before), candidate=list(before), strategy=strategy,
                           conversation_id=gate.conversation_id, step=gate.step)


def _never_probed(messages: list[Any]) -> Any:
    raise RuntimeError("a cooling step was probed")


def skip(guard: Guard, gate: Any, before: Sequence[Any], *, strategy: str) -> Decision:
    """Publish the decision for a skipped step (the wrapped condenser was not asked)."""
    if _has_gate(guard):
        decision: Decision = guard.skip(gate, list(before), strategy=strategy)  # type: ignore[attr-defined]
        return decision
    return guard.review(_skip_event(gate, before, strategy), _never_probed)


async def askip(guard: Guard, gate: Any, before: Sequence[Any], *, strategy: str) -> Decision:
    """`skip` from async code."""
    if _has_gate(guard):
        decision: Decision = await guard.askip(gate, list(before), strategy=strategy)  # type: ignore[attr-defined]
        return decision
    return await guard.areview(_skip_event(gate, before, strategy), _never_probed)


def review(guard: Guard, event: CompactionEvent, policy: Any, *, gate: Any, fallbacks: Sequence[Any] | None,
           hard_budget: Callable[[], int | None]) -> Decision:
    """Review `event`; a must-reduce gate never vetoes (the older core: through `hard_budget`)."""
    if _has_gate(guard):
        return guard.review(event, policy, gate=gate, fallbacks=fallbacks)  # type: ignore[call-arg]
    return guard.review(event, policy, fallbacks=fallbacks, hard_budget=hard_budget() if gate.must_reduce else None)


async def areview(guard: Guard, event: CompactionEvent, policy: Any, *, gate: Any, fallbacks: Sequence[Any] | None,
                  hard_budget: Callable[[], int | None]) -> Decision:
    """`review` from async code."""
    if _has_gate(guard):
        return await guard.areview(event, policy, gate=gate, fallbacks=fallbacks)  # type: ignore[call-arg]
    budget = hard_budget() if gate.must_reduce else None
    return await guard.areview(event, policy, fallbacks=fallbacks, hard_budget=budget)
