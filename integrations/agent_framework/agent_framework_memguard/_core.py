"""The calls into memguard's core, in one place (the gate, a skip, a review).

memguard's third pass (`Guard.gate`, `Guard.askip`, `areview(..., gate=)`) asks the gate before
the wrapped compaction runs; until that core lands, the review itself applies the cooldown, and
a must-reduce review is a hard-budget review that no candidate can exceed. Only this module
changes when the core does; the integration re-implements no rule of the core.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from memguard import CompactionEvent, Decision, Guard

__all__ = ["Gate", "areview", "askip", "gate"]


@dataclass(frozen=True)
class Gate:
    """What the core says before the inner compaction runs (the shape of the core's `Gate`)."""

    review: bool
    conversation_id: str | None
    step: int | None
    must_reduce: bool
    reason: str | None = None


def gate(guard: Guard, before: list[Any], *, conversation_id: str | None, step: int | None,
         must_reduce: bool) -> Gate:
    """Whether to run the inner compaction and review it (cooldown, must-reduce)."""
    del guard, before  # the core's review asks its cooldown itself for now
    return Gate(review=True, conversation_id=conversation_id, step=step, must_reduce=must_reduce)


async def askip(guard: Guard, decided: Gate, before: list[Any], *, strategy: str) -> Decision:
    """Publish that this step was not reviewed (cooldown) and hand back the untouched context."""
    raise RuntimeError("the gate never skips before memguard's third pass")  # pragma: no cover


async def areview(guard: Guard, event: CompactionEvent, policy: Any, *, decided: Gate,
                  fallbacks: Sequence[Any] | None) -> Decision:
    """Review `event`; a must-reduce step may not be vetoed (the lowest-risk candidate is forced)."""
    hard_budget = sys.maxsize if decided.must_reduce else None
    return await guard.areview(event, policy, fallbacks=fallbacks, hard_budget=hard_budget)
