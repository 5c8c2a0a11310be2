"""The memguard core calls this integration makes, in one place.

The gate (is this conversation cooling down? must this compaction reduce? is this one review an
audit review?), the skip record, the review and the audit path live in memguard's core:
`Guard.gate`, `Guard.askip`, `Guard.areview(gate=...)`. Where the installed core predates that
API, these functions map it onto the one that is there (`Guard.cooldown_left`,
`Guard.areview(hard_budget=...)`), deciding nothing themselves.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from memguard import CompactionEvent, Decision, Guard, Message

__all__ = ["Gate", "aaudit", "areview", "askip", "gate"]

logger = logging.getLogger("memguard.pydantic_ai")


@dataclass(frozen=True)
class Gate:
    """The core's answer before a compaction runs (`memguard.Gate`'s fields), for a core without it."""

    review: bool
    conversation_id: str | None
    step: int | None = None
    must_reduce: bool = False
    audit: bool = False
    reason: str | None = None


def _has_gate(guard: Guard) -> bool:
    return callable(getattr(guard, "gate", None))


def gate(guard: Guard, *, conversation_id: str | None, step: int, before: Callable[[], list[Message]],
         must_reduce: bool = False, audit: bool | None = None) -> Any:
    """Ask the guard whether to run (and review) the inner compaction for this step.

    `before` gives the view of the context; it is called only when the run names no conversation
    (the core then derives one from the opening).
    """
    if _has_gate(guard):
        messages = before() if conversation_id is None else None
        return guard.gate(messages, conversation_id=conversation_id, step=step,  # type: ignore[attr-defined, unused-ignore]
                          must_reduce=must_reduce, audit=audit)
    audit = guard.mode == "audit" if audit is None else audit
    left = 0 if (must_reduce or audit or conversation_id is None) else guard.cooldown_left(conversation_id, step)
    reason = f"cooldown: {left} more step(s)" if left else None
    return Gate(not left, conversation_id, step, must_reduce, audit, reason)


async def askip(guard: Guard, the_gate: Any, before: list[Message], *, strategy: str) -> Decision:
    """Publish the decision for a step the gate skipped (the inner compaction never ran)."""
    if _has_gate(guard):
        decision: Decision = await guard.askip(the_gate, before, strategy=strategy)  # type: ignore[attr-defined, unused-ignore]
        return decision

    def not_probed(messages: list[Any]) -> Any:  # a cooldown review never probes
        raise RuntimeError("a skipped step is not probed")

    event = CompactionEvent(before=before, candidate=before, strategy=strategy, step=the_gate.step,
                            conversation_id=the_gate.conversation_id)
    return await guard.areview(event, not_probed)


async def areview(guard: Guard, event: CompactionEvent, policy: Callable[..., Any] | None, the_gate: Any, *,
                  fallbacks: Sequence[Any] | None = None) -> Decision:
    """Review `event` as the gate said: enforce or must-reduce (never a veto)."""
    if _has_gate(guard):
        decision: Decision = await guard.areview(event, policy, gate=the_gate,  # type: ignore[call-arg, unused-ignore]
                                                 fallbacks=fallbacks)
        return decision
    hard_budget = None
    if the_gate.must_reduce:  # the context must shrink below what the model refused
        tokens = await asyncio.to_thread(guard.count_tokens, list(event.before))
        hard_budget = max(1, tokens - 1)
    return await guard.areview(event, policy, fallbacks=fallbacks, hard_budget=hard_budget)


async def aaudit(guard: Guard, event: CompactionEvent, the_gate: Any,
                 policy: Callable[..., Any] | None = None) -> Decision | None:
    """Hand a compaction, with both next steps when known, to the guard's background scoring.

    Returns the pending record; None where the installed core cannot audit one review of an
    enforcing guard (the compaction is then kept unrecorded, never reviewed by a hidden guard).
    """
    if _has_gate(guard):
        decision: Decision = await guard.areview(event, policy, gate=the_gate)  # type: ignore[call-arg, unused-ignore]
        return decision
    if guard.mode == "audit":
        return await guard.areview(event, policy)
    logger.info("memguard: this memguard core cannot audit one review of an enforcing guard; kept unrecorded")
    return None
