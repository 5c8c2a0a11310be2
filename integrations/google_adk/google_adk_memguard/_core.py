"""The guard's gate, skip and gated review, as this package calls them.

The core's third pass (`Guard.gate`, `Guard.askip`, `Guard.areview(..., gate=)`) brings these
names; until it lands on this branch they stand on today's guard: the cooldown rule is the
guard's own `cooldown_left`, a hard limit is today's `hard_budget` sized so that every smaller
candidate fits. Nothing here decides on its own: it only routes to the guard.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from memguard import CompactionEvent, Decision, Guard, Verdict

__all__ = ["Gate", "areview", "askip", "gate"]


@dataclass(frozen=True)
class Gate:
    """What the guard says about one step before the inner summarizer runs."""

    review: bool
    conversation_id: str
    step: int | None = None
    must_reduce: bool = False
    audit: bool = False
    reason: str | None = None


def gate(guard: Guard, *, conversation_id: str, step: int, must_reduce: bool = False) -> Gate:
    """Ask the guard whether this step is reviewed (False: skip, and do not call the inner summarizer)."""
    audit = guard.mode == "audit"
    if audit or must_reduce:
        return Gate(True, conversation_id, step, must_reduce, audit)
    left = guard.cooldown_left(conversation_id, step)
    if left:
        return Gate(False, conversation_id, step, reason=f"cooldown: {left} more step(s)")
    return Gate(True, conversation_id, step)


async def askip(guard: Guard, gate: Gate, before: Sequence[Any], *, strategy: str) -> Decision:
    """Publish the decision for a skipped step: `before`, untouched, not reviewed."""
    decision = Decision(
        verdict=Verdict.VETO, mode="audit" if gate.audit else "enforce", messages=list(before),
        proposed_strategy=strategy, reasons=[gate.reason or "cooldown"], reviewed=False,
        step=gate.step or 0, conversation_id=gate.conversation_id, scorer=guard.identity,
    )
    await guard.apublish(decision)
    return decision


async def areview(guard: Guard, event: CompactionEvent, policy: Callable[..., Any] | None, *, gate: Gate,
                  fallbacks: Sequence[Any]) -> Decision:
    """Review `event` as `gate` says (a must-reduce gate allows no veto)."""
    hard_budget = max(1, guard.count_tokens(list(event.before)) - 1) if gate.must_reduce else None
    return await guard.areview(event, policy, fallbacks=fallbacks, hard_budget=hard_budget)
