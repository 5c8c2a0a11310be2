"""The calls into memguard's core, in one place (the gate, a skip, a review).

The gate (`Guard.gate`) is asked before the wrapped strategy runs: during a cooldown the inner
strategy is not called at all (a `SummarizationStrategy` is an LLM call), and a step that must
reduce is never skipped and never vetoed. The integration re-implements no rule of the core.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from memguard import CompactionEvent, Decision, Gate, Guard

__all__ = ["Gate", "areview", "askip", "gate"]


def gate(guard: Guard, before: list[Any] | None, *, conversation_id: str | None, step: int | None,
         must_reduce: bool) -> Gate:
    """Whether to run the inner compaction and review it (cooldown, must-reduce), asked first.

    `before` may be None when `conversation_id` names the conversation and the gate checks no
    cooldown (an audit gate), so an audit step converts no message to ask it.
    """
    return guard.gate(before, conversation_id=conversation_id, step=step, must_reduce=must_reduce)


async def askip(guard: Guard, decided: Gate, before: list[Any], *, strategy: str) -> Decision:
    """Publish that this step was not reviewed (cooldown) and hand back the untouched context."""
    return await guard.askip(decided, before, strategy=strategy)


async def areview(guard: Guard, event: CompactionEvent, policy: Any, *, decided: Gate,
                  fallbacks: Sequence[Any] | None) -> Decision:
    """Review `event` under the gate's answer (a must-reduce step may not be vetoed)."""
    return await guard.areview(event, policy, gate=decided, fallbacks=fallbacks)
