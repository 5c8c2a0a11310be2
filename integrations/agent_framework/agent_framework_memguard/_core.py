"""The calls into memguard's core, in one place (the gate, a skip, a review).

memguard's third pass asks the gate (`Guard.gate`) before the wrapped compaction runs: during a
cooldown the inner strategy is not called at all (a summariser is an LLM call), and a step that
must reduce is never skipped and never vetoed. A guard without a gate (memguard before its third
pass) applies the cooldown inside the review, and a must-reduce review is a hard-budget review
that no candidate can exceed. Only this module knows the difference; the integration
re-implements no rule of the core.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from memguard import CompactionEvent, Decision, Guard

__all__ = ["Gate", "areview", "askip", "gate"]


@dataclass(frozen=True)
class _OpenGate:
    """A guard without a gate: every step is reviewed (its review applies the cooldown)."""

    review: bool
    conversation_id: str | None
    step: int | None
    must_reduce: bool
    reason: str | None = None


Gate = Any
"""The core's `memguard.Gate` (or `_OpenGate` for a guard without one)."""


def gate(guard: Guard, before: list[Any], *, conversation_id: str | None, step: int | None,
         must_reduce: bool) -> Gate:
    """Whether to run the inner compaction and review it (cooldown, must-reduce), asked first."""
    ask = getattr(guard, "gate", None)
    if ask is None:
        return _OpenGate(review=True, conversation_id=conversation_id, step=step, must_reduce=must_reduce)
    return ask(before, conversation_id=conversation_id, step=step, must_reduce=must_reduce)


async def askip(guard: Guard, decided: Gate, before: list[Any], *, strategy: str) -> Decision:
    """Publish that this step was not reviewed (cooldown) and hand back the untouched context."""
    decision: Decision = await guard.askip(decided, before, strategy=strategy)  # type: ignore[attr-defined]
    return decision


async def areview(guard: Guard, event: CompactionEvent, policy: Any, *, decided: Gate,
                  fallbacks: Sequence[Any] | None) -> Decision:
    """Review `event` under the gate's answer (a must-reduce step may not be vetoed)."""
    if isinstance(decided, _OpenGate):
        hard_budget = sys.maxsize if decided.must_reduce else None
        return await guard.areview(event, policy, fallbacks=fallbacks, hard_budget=hard_budget)
    decision: Decision = await guard.areview(event, policy, gate=decided, fallbacks=fallbacks)  # type: ignore[call-arg]
    return decision
