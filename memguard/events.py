"""What flows through the guard: a proposed compaction in, a decision out.

Framework hook → `CompactionEvent` → probe → render → score → policy → `Decision` → sinks.
`Decision` is also the audit record, so it knows how to serialise itself with or without text.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, computed_field, field_validator

from memguard.scoring.base import ScorerIdentity

__all__ = [
    "Band",
    "CandidateReport",
    "CompactionEvent",
    "Decision",
    "Skipped",
    "Timings",
    "Verdict",
    "fingerprint_text",
]

Band = Literal["safe", "harmful", "uncertain"]
Skipped = Literal["cooldown", "compaction_failed", "audit_dropped", "audit_failed"]


class Verdict(StrEnum):
    """What the guard did with a proposed compaction."""

    COMMIT = "commit"  # the proposed compaction is used
    FALLBACK = "fallback"  # a safer strategy's compaction is used instead
    VETO = "veto"  # nothing is compacted: the agent keeps its full context
    FORCED = "forced"  # hard budget: no safe candidate, the lowest-risk one that fits is used
    AUDIT = "audit"  # audit mode: recorded only, the agent's own compaction is used


class CompactionEvent(BaseModel):
    """A compaction the agent's framework proposes.

    `recorded_response`/`proposed_response` may carry the agent's next response under the full
    and the compacted context when the framework already has them (audit callbacks do); the
    guard then uses them instead of probing the agent again.
    """

    # Validation errors must not quote the conversation (pydantic echoes the input by default).
    model_config = ConfigDict(arbitrary_types_allowed=True, hide_input_in_errors=True)

    before: list[Any] = Field(description="The agent's context as it is now.")
    candidate: list[Any] = Field(description="The proposed compacted context.")
    strategy: str = "compaction"
    step: int | None = Field(default=None, description="Agent step; default: assistant turns in `before`.")
    perturbation: str | None = Field(
        default=None, description="Tag shown to the RM; default strategy_swap__<strategy>."
    )
    conversation_id: str | None = Field(
        default=None,
        description="Keys the cooldown state; default: derived from the system prompt and the first turns.",
    )
    metadata: dict[str, Any] = Field(default_factory=dict)
    recorded_response: Any = None
    proposed_response: Any = None
    event_id: str = Field(default_factory=lambda: uuid.uuid4().hex)

    @field_validator("before", "candidate", mode="before")
    @classmethod
    def _a_conversation(cls, value: Any, info: Any) -> Any:
        from memguard.messages import _check_sequence

        try:
            return _check_sequence(value)
        except ValueError as exc:
            raise ValueError(f"{info.field_name}: {exc}") from None


class CandidateReport(BaseModel):
    """How one candidate context fared."""

    strategy: str
    perturbation: str
    p_harmful: float | None = None
    band: Band | None = None
    acceptable: bool = False
    identical: bool = Field(
        default=False, description="Same next action as under the full context: SAFE without an RM call."
    )
    rejected: str | None = Field(default=None, description="Why the sanity rails refused it before any RM call.")
    error: str | None = None
    proposed_action: str | None = None
    n_messages: int = 0
    context_tokens: int | None = None
    prompt_tokens: int | None = None
    truncated_tokens: int = 0
    fits_budget: bool | None = None


class Timings(BaseModel):
    """Seconds spent per phase; `total` is wall time of the whole review."""

    probe: float = 0.0
    render: float = 0.0
    score: float = 0.0
    total: float = 0.0


def fingerprint_text(text: str) -> dict[str, Any]:
    """A stand-in for text in redacted records: a hash to correlate, a size to reason about."""
    raw = text.encode("utf-8", "surrogatepass")
    return {"sha256": hashlib.sha256(raw).hexdigest()[:16], "chars": len(text)}


def _scrub(value: Any, texts: list[str]) -> Any:
    """`value` with each exception text replaced by its fingerprint (type names stay)."""
    if not isinstance(value, str):
        return value
    for text in texts:
        if text in value:
            mark = fingerprint_text(text)
            value = value.replace(text, f"<redacted {mark['chars']} chars sha256:{mark['sha256']}>")
    return value


class Decision(BaseModel):
    """The guard's answer for one event; `messages` and `response` are in the caller's type."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    verdict: Verdict
    mode: Literal["enforce", "audit"] = "enforce"
    messages: list[Any] = Field(default_factory=list, description="The messages to use from now on.")
    strategy: str | None = Field(default=None, description="The strategy whose context won (None: veto).")
    proposed_strategy: str = "compaction"
    candidates: list[CandidateReport] = Field(default_factory=list)
    response: Any = Field(default=None, description="The agent response for the winning context, to reuse.")
    recorded_action: str | None = None
    reasons: list[str] = Field(default_factory=list)
    error: str | None = None
    timings: Timings = Field(default_factory=Timings)
    truncated_tokens: int = 0
    scorer: ScorerIdentity | None = None
    step: int = 0
    conversation_id: str = ""
    event_id: str = ""
    timestamp: float = Field(default_factory=time.time)
    pending: bool = Field(default=False, description="Audit mode: scoring still runs in the background.")
    reviewed: bool = Field(
        default=True, description="False when no review ran: a cooldown veto, a dropped audit job, a failed compaction."
    )
    skipped: Skipped | None = Field(
        default=None,
        description="Why no review ran: 'cooldown', 'compaction_failed', 'audit_dropped' or 'audit_failed'.",
    )

    # Exception messages quoted in `error` and `reasons`: a redacted record replaces each by a
    # fingerprint, so no exception text (which may quote the model's raw answer) reaches a log.
    _exception_texts: list[str] = PrivateAttr(default_factory=list)

    def quoting(self, texts: list[str]) -> Decision:
        """Note exception texts that `error`/`reasons` quote (redacted records fingerprint them)."""
        self._exception_texts = [t for t in texts if t]
        return self

    @computed_field  # type: ignore[prop-decorator]
    @property
    def p_harmful(self) -> float | None:
        """P(HARMFUL) of the proposed compaction (the first candidate), when it was scored."""
        return self.candidates[0].p_harmful if self.candidates else None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def band(self) -> Band | None:
        """Coverage band of the proposed compaction's score ("safe" / "uncertain" / "harmful")."""
        return self.candidates[0].band if self.candidates else None

    def to_record(self, *, redact: bool = False, include_messages: bool = False) -> dict[str, Any]:
        """A JSON-ready audit record. `redact` replaces every piece of text by hash and size."""
        record = self.model_dump(mode="json", exclude={"messages", "response"})
        record["n_messages"] = len(self.messages)
        if redact:
            texts = sorted({t for t in self._exception_texts if t}, key=len, reverse=True)
            if texts:
                record["error"] = _scrub(record.get("error"), texts)
                record["reasons"] = [_scrub(r, texts) for r in record["reasons"]]
                for cand in record["candidates"]:
                    cand["error"] = _scrub(cand.get("error"), texts)
                    cand["rejected"] = _scrub(cand.get("rejected"), texts)
            if record.get("recorded_action") is not None:
                record["recorded_action"] = fingerprint_text(record["recorded_action"])
            for cand in record["candidates"]:
                if cand.get("proposed_action") is not None:
                    cand["proposed_action"] = fingerprint_text(cand["proposed_action"])
        if include_messages:
            from memguard.messages import to_messages

            rendered = [m.to_openai() for m in to_messages(self.messages)]
            if redact:
                rendered = [
                    {"role": str(m.get("role")), **fingerprint_text(json.dumps(m, default=str))} for m in rendered
                ]
            record["messages"] = rendered
        return record
