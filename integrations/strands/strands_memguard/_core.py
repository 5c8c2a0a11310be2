"""The guard's gate and reviews, in one place (the core's third pass brings them as `Guard` methods).

Until ``Guard.gate`` / ``skip`` / ``askip`` and ``review(..., gate=)`` land, this module asks the
guard's own cooldown (`Guard.cooldown_left`) and publishes skips itself; it holds no rule of its
own, and is the only module to change when the core's API arrives.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from memguard import CompactionEvent, Decision, Guard, Verdict, to_messages
from memguard.guard import Policy

__all__ = ["Gate", "areview", "askip", "gate", "review", "skip"]


@dataclass(frozen=True)
class Gate:
    """The guard's answer before the inner manager runs: review this step, or skip it."""

    review: bool
    conversation_id: str
    step: int | None = None
    must_reduce: bool = False
    audit: bool = False
    reason: str | None = None


def gate(guard: Guard, before: Sequence[Any], *, conversation_id: str, step: int, must_reduce: bool) -> Gate:
    """Ask whether this step is reviewed at all (False: do not run the inner manager)."""
    audit = guard.mode == "audit"
    if audit or must_reduce or guard.cooldown == 0:
        return Gate(True, conversation_id, step, must_reduce, audit)
    left = guard.cooldown_left(conversation_id, step)
    if not left:
        return Gate(True, conversation_id, step, must_reduce, audit)
    return Gate(False, conversation_id, step, must_reduce, audit, reason=f"cooldown: {left} step(s) left")


def _skipped(guard: Guard, gate: Gate, before: Sequence[Any], strategy: str) -> Decision:
    return Decision(verdict=Verdict.VETO, mode="audit" if gate.audit else "enforce", messages=list(before),
                    proposed_strategy=strategy, reasons=[gate.reason or "cooldown"], reviewed=False,
                    step=gate.step or 0, conversation_id=gate.conversation_id, scorer=guard.identity)


def skip(guard: Guard, gate: Gate, before: Sequence[Any], *, strategy: str) -> Decision:
    """Publish the decision for a skipped step: `before`, untouched."""
    decision = _skipped(guard, gate, before, strategy)
    guard.publish(decision)
    return decision


async def askip(guard: Guard, gate: Gate, before: Sequence[Any], *, strategy: str) -> Decision:
    """`skip` from async code."""
    decision = _skipped(guard, gate, before, strategy)
    await guard.apublish(decision)
    return decision


def _budget(guard: Guard, event: CompactionEvent, gate: Gate) -> int | None:
    if not gate.must_reduce:
        return None
    return max(1, guard.count_tokens(to_messages(list(event.before))) - 1)  # every smaller candidate fits: no veto


def review(guard: Guard, event: CompactionEvent, policy: Policy, *, gate: Gate,
           fallbacks: Sequence[Any] | None) -> Decision:
    """Review `event` (blocking); a must-reduce gate never vetoes."""
    return guard.review(event, policy, fallbacks=fallbacks, hard_budget=_budget(guard, event, gate))


async def areview(guard: Guard, event: CompactionEvent, policy: Policy, *, gate: Gate,
                  fallbacks: Sequence[Any] | None) -> Decision:
    """Review `event` without blocking the event loop."""
    return await guard.areview(event, policy, fallbacks=fallbacks, hard_budget=_budget(guard, event, gate))
