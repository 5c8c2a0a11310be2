"""The guard's core calls this integration makes, in one place.

Every rule (cooldown, reviewability, must-reduce, the audit path) lives in memguard's core; this
module only forwards to it. It exists so that the adapter code reads the same on the core's gate
API (`Guard.gate`, `Guard.askip`, `Guard.areview(..., gate=, audit=)`) and on the older core that
only had `Guard.areview` and `Guard.cooldown_left`: the second branch of each function goes away
once every supported memguard has the gate.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from memguard import CompactionEvent, Decision, Guard

__all__ = ["Gate", "areview", "askip", "gate"]


@dataclass(frozen=True)
class _OldGate:
    """The gate's answer, computed with the older core's read-only `cooldown_left`."""

    review: bool
    conversation_id: str
    step: int | None = None
    must_reduce: bool = False
    audit: bool = False
    reason: str | None = None


Gate = Any
"""`memguard.Gate` (or the stand-in above on an older core)."""


def _has_gate(guard: Guard) -> bool:
    return callable(getattr(guard, "gate", None))


def gate(guard: Guard, before: Sequence[Any], *, conversation_id: str | None, step: int | None = None,
         must_reduce: bool = False, audit: bool | None = None) -> Gate:
    """Ask the guard, before the wrapped compaction runs, whether this step is reviewed."""
    if _has_gate(guard):
        return guard.gate(list(before), conversation_id=conversation_id, step=step,  # type: ignore[attr-defined]
                          must_reduce=must_reduce, audit=audit)
    from memguard.guard import conversation_key
    from memguard.review import step_of

    cid = conversation_id or conversation_key(before)
    is_audit = guard.mode == "audit" if audit is None else audit
    if is_audit or must_reduce:
        return _OldGate(True, cid, step, must_reduce, is_audit)
    at = step if step is not None else step_of(CompactionEvent(before=list(before), candidate=list(before)))
    left = guard.cooldown_left(cid, at)
    return _OldGate(left == 0, cid, at, reason=f"cooldown: {left} more step(s)" if left else None)


async def askip(guard: Guard, gate: Gate, before: Sequence[Any], *, strategy: str) -> Decision:
    """Publish the decision for a skipped step (the wrapped compaction was not run)."""
    if _has_gate(guard):
        decision: Decision = await guard.askip(gate, list(before), strategy=strategy)  # type: ignore[attr-defined]
        return decision
    event = CompactionEvent(before=list(before), candidate=list(before), strategy=strategy,
                            conversation_id=gate.conversation_id, step=gate.step)
    return await guard.areview(event, _never_probed)  # the older core answers a cooling step without probing


async def _never_probed(messages: list[Any]) -> Any:
    raise RuntimeError("a cooling step was probed")


async def areview(guard: Guard, event: CompactionEvent, policy: Any, *, gate: Gate | None = None,
                  fallbacks: Sequence[Any] | None = None, audit: bool = False) -> Decision:
    """Review `event`; `audit=True` makes this one review an audit review on the guard's own worker."""
    if _has_gate(guard):
        options: dict[str, Any] = {"fallbacks": fallbacks}
        if gate is not None:
            options["gate"] = gate
        if audit:
            options["audit"] = True
        return await guard.areview(event, policy, **options)
    if audit and guard.mode != "audit":  # older core: its twin's worker is not the guard's, so wait for it here
        twin = _audit_twin(guard)
        decision = await twin.areview(event, policy)
        await asyncio.to_thread(twin.flush, 30.0)
        return decision
    return await guard.areview(event, policy, fallbacks=fallbacks)


_TWINS: weakref.WeakKeyDictionary[Guard, Guard] = weakref.WeakKeyDictionary()


def _audit_twin(guard: Guard) -> Guard:
    """Older core only: it has no per-call audit review, so one audit guard per guard stands in."""
    twin = _TWINS.get(guard)
    if twin is None:
        settings = guard.settings.model_copy(update={"mode": "audit"})
        twin = _TWINS[guard] = Guard(guard.scorer, settings=settings, sinks=guard.sinks, on_decision=guard.on_decision)
    return twin
