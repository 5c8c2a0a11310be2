"""The memguard core calls this integration makes, in one place.

The gate (is this conversation cooling down? must this compaction reduce?), the skip record, and
the review live in memguard's core (`Guard.gate`, `Guard.askip`, `Guard.areview(gate=...)`).
Until that API is in the installed core, these functions map it onto the one that is there
(`Guard.cooldown_left`, `Guard.areview(hard_budget=...)`), deciding nothing themselves.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from memguard import CompactionEvent, Decision, Guard, Message

__all__ = ["Gate", "aaudit", "askip", "areview", "gate"]

logger = logging.getLogger("memguard.pydantic_ai")


@dataclass(frozen=True)
class Gate:
    """The core's answer before a compaction runs (`memguard.Gate`'s fields)."""

    review: bool
    reason: str | None
    conversation_id: str | None
    step: int | None
    must_reduce: bool
    audit: bool


def gate(guard: Guard, *, conversation_id: str | None, step: int, must_reduce: bool = False,
         audit: bool | None = None) -> Gate:
    """Ask the guard whether to run (and review) the inner compaction for this step."""
    audit = guard.mode == "audit" if audit is None else audit
    left = 0 if (must_reduce or audit or conversation_id is None) else guard.cooldown_left(conversation_id, step)
    reason = f"cooldown: {left} more step(s)" if left else None
    return Gate(not left, reason, conversation_id, step, must_reduce, audit)


async def askip(guard: Guard, the_gate: Gate, before: list[Message], *, strategy: str,
                metadata: dict[str, Any] | None = None) -> Decision:
    """Publish the decision for a step the gate skipped (the inner compaction never ran)."""

    def not_probed(messages: list[Any]) -> Any:  # a cooldown review never probes
        raise RuntimeError("a skipped step is not probed")

    event = CompactionEvent(before=before, candidate=before, strategy=strategy, step=the_gate.step,
                            conversation_id=the_gate.conversation_id, metadata=metadata or {})
    return await guard.areview(event, not_probed)


async def areview(guard: Guard, event: CompactionEvent, policy: Callable[..., Any] | None, the_gate: Gate, *,
                  fallbacks: Sequence[Any] | None = None) -> Decision:
    """Review `event` as the gate said: enforce, audit, or must-reduce (never a veto)."""
    hard_budget = None
    if the_gate.must_reduce:  # the context must shrink below what the model refused
        tokens = await asyncio.to_thread(guard.count_tokens, list(event.before))
        hard_budget = max(1, tokens - 1)
    return await guard.areview(event, policy, fallbacks=fallbacks, hard_budget=hard_budget)


async def aaudit(guard: Guard, event: CompactionEvent, the_gate: Gate,
                 policy: Callable[..., Any] | None = None) -> Decision | None:
    """Hand a compaction, with both next steps when known, to the guard's background scoring.

    Returns the pending record; None where the installed core cannot audit one call of an
    enforcing guard (the compaction is kept, unrecorded, rather than reviewed by a hidden guard).
    """
    if guard.mode == "audit":
        return await guard.areview(event, policy)
    logger.info("memguard: this memguard core cannot audit one compaction of an enforcing guard; kept unrecorded")
    return None
