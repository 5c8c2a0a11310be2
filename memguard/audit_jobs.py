"""Audit reviews as background jobs: what the agent gets at once, and how every job ends.

An audit review must cost the agent nothing it can see: the caller gets a pending `Decision`
built without touching a message (no conversion on its thread: the step and the format are
worked out by the job; only the list of references is copied), and the job runs on the guard's
worker thread in a new, empty `contextvars.Context` (no framework callback, stream writer or run
configuration of the caller's reaches a probe).

Every job ends exactly one way, each published as a Decision and counted in `Guard.stats()`:
the review's own decision (`audit_completed`), a failure of the job itself (`audit_failed`,
`skipped="audit_failed"`), or a drop: the queue was full, the guard closed, or it closed before
the job ran (`audit_dropped`, `skipped="audit_dropped"`). The reason is on the Decision.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from typing import TYPE_CHECKING

from memguard.events import CompactionEvent, Decision, Verdict

if TYPE_CHECKING:
    from memguard.gate import Gate
    from memguard.guard import Guard, Policy

__all__ = ["AuditJob", "dropped_decision", "failed_decision", "pending_decision"]


def pending_decision(guard: Guard, event: CompactionEvent, gate: Gate) -> Decision:
    """The decision an audit caller gets at once: the agent's own compaction, scored later."""
    return Decision(
        verdict=Verdict.AUDIT,
        mode="audit",
        messages=list(event.candidate),  # a list of its own: the caller may append to it while the job waits
        strategy=event.strategy,
        proposed_strategy=event.strategy,
        step=event.step if event.step is not None else gate.step if gate.step is not None else 0,
        conversation_id=gate.conversation_id,
        event_id=event.event_id,
        scorer=guard.identity,
        pending=True,
    )


def dropped_decision(pending: Decision, why: str) -> Decision:
    return pending.model_copy(update={
        "pending": False, "reviewed": False, "skipped": "audit_dropped", "error": f"audit dropped: {why}",
        "reasons": [f"not reviewed: {why} (counted in stats()['audit_dropped'])"],
    })


def failed_decision(pending: Decision, exc: BaseException) -> Decision:
    """The job itself raised (not the agent or the scorer: those end in the review's own decision)."""
    kind = type(exc).__name__
    return pending.model_copy(update={
        "pending": False, "reviewed": False, "skipped": "audit_failed", "error": f"audit failed: {kind}",
        "reasons": [f"the audit job raised {kind} (counted in stats()['audit_failed'])"],
    })


class AuditJob:
    """One audit review, run by the guard's worker; `drop` ends it without running it."""

    def __init__(self, guard: Guard, event: CompactionEvent, policy: Policy | None, gate: Gate,
                 pending: Decision, run: Callable[[Guard, CompactionEvent, Policy | None, Gate], Decision]) -> None:
        self.guard: Guard | None = guard
        self.event = event
        self.policy = policy
        self.gate = gate
        self.pending = pending
        self._run = run

    def __call__(self) -> None:
        # A new, empty context for every job: nothing of the caller's, nothing of an earlier job's.
        contextvars.Context().run(self._review)

    def _review(self) -> None:
        policy = self.policy
        guard = self._take()
        if guard is None:
            return
        try:
            decision = self._run(guard, self.event, policy, self.gate)
        except Exception as exc:  # noqa: BLE001 - the job's own failure: counted and published, never raised
            guard._audit_ended(failed_decision(self.pending, exc), "audit_failed")
            return
        guard._audit_ended(decision, "audit_completed")

    def drop(self, reason: str) -> None:
        guard = self._take()
        if guard is not None:
            guard._audit_ended(dropped_decision(self.pending, reason), "audit_dropped")

    def _take(self) -> Guard | None:
        """The guard, once: whoever ends the job first (run or drop) ends it; the job then lets it go."""
        guard, self.guard = self.guard, None
        self.policy = None
        return guard
