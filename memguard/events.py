"""What flows through the guard: a proposed compaction in, a decision out.

Framework hook → `CompactionEvent` → probe → render → score → policy → `Decision` → sinks.
`Decision` is also the audit record, so it knows how to serialise itself with or without text.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable, Sequence
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
    """What the guard did with a proposed compaction.

    A `StrEnum`, so a verdict compares equal to its value (``Verdict.VETO == "veto"``) and is
    written as that string in audit records.
    """

    COMMIT = "commit"
    """The proposed compaction is used."""
    FALLBACK = "fallback"
    """A safer strategy's compaction is used instead (`Decision.strategy` names it)."""
    VETO = "veto"
    """Nothing is compacted: the agent keeps its full context."""
    FORCED = "forced"
    """Hard budget: no candidate was safe, so the lowest-risk one that fits is used."""
    AUDIT = "audit"
    """Audit mode: the review is recorded only, and the agent's own compaction is used."""


class CompactionEvent(BaseModel):
    """A compaction the agent's framework proposes: the context now, and what it would become.

    `recorded_response`/`proposed_response` may carry the agent's next response under the full
    and the compacted context when the framework already has them (audit callbacks do); the
    guard then uses them instead of probing the agent again.

    Messages may be OpenAI-style dicts, LangChain messages or `Message` objects; the decision
    hands them back in the same type. A validation error names the bad message by position and
    never quotes the conversation.
    """

    # Validation errors must not quote the conversation (pydantic echoes the input by default).
    model_config = ConfigDict(arbitrary_types_allowed=True, hide_input_in_errors=True)

    before: list[Any] = Field(description="The agent's context as it is now.")
    """The agent's context as it is now."""
    candidate: list[Any] = Field(description="The proposed compacted context.")
    """The proposed compacted context."""
    strategy: str = "compaction"
    """The name of the strategy that proposed it (shown to MemRM and in records)."""
    step: int | None = Field(default=None, description="Agent step; default: assistant turns in `before`.")
    """The agent's step; None counts the assistant turns in `before`."""
    perturbation: str | None = Field(
        default=None, description="Tag shown to the RM; default strategy_swap__<strategy>."
    )
    """The tag shown to MemRM; None gives ``strategy_swap__<strategy>``, the tags training used."""
    conversation_id: str | None = Field(
        default=None,
        description="Keys the cooldown state; default: derived from the system prompt and the first turns.",
    )
    """Keys the cooldown state (the framework's thread or session id); None derives one from the
    system prompt and the first turns (`conversation_key`).
    """
    metadata: dict[str, Any] = Field(default_factory=dict)
    """Anything the caller wants to keep beside the event (not used by the guard)."""
    recorded_response: Any = None
    """The agent's next response under `before`, when already known."""
    proposed_response: Any = None
    """The agent's next response under `candidate`, when already known."""
    event_id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    """A unique id, copied onto the `Decision` so records can be correlated."""

    _build: Callable[[], tuple[Sequence[Any], Sequence[Any]]] | None = PrivateAttr(default=None)

    @classmethod
    def deferred(cls, build: Callable[[], tuple[Sequence[Any], Sequence[Any]]], **fields: Any) -> CompactionEvent:
        """An event whose messages are built only when a review needs them.

        An integration whose framework messages must be converted to memguard's view (an O(n)
        walk of the conversation) hands the conversion over instead of doing it: an audit review
        runs `build` on the guard's worker thread, off the agent's path, so the agent pays the
        same small cost whatever the conversation's length. An enforce review builds at once (it
        needs the messages before the agent goes on).

        Args:
            build: Returns ``(before, candidate)``. It runs on another thread, later: it must read
                only what the agent no longer changes (copies, or objects the framework never
                edits in place).
            **fields: The other `CompactionEvent` fields (`strategy`, `step`, `conversation_id`,
                `metadata`, ...); not `before` or `candidate`.

        Returns:
            The event, with empty `before`/`candidate` until `materialized()` builds them.

        Raises:
            TypeError: `build` is not callable, or `fields` holds `before` or `candidate`.
        """
        if not callable(build):
            raise TypeError(f"build must be callable, got {type(build).__name__}")
        given = sorted({"before", "candidate"} & fields.keys())
        if given:
            raise TypeError(f"a deferred event's messages come from build(), not {', '.join(given)}=")
        event = cls(before=[], candidate=[], **fields)
        event._build = build
        return event

    @property
    def is_deferred(self) -> bool:
        """Whether `before`/`candidate` are still to be built (`deferred`)."""
        return self._build is not None

    def materialized(self) -> CompactionEvent:
        """This event with its messages built (the event itself when it is not deferred).

        Raises:
            ValueError: `build` returned something that is not a pair of message sequences.
            Exception: Whatever `build` raises.
        """
        if self._build is None:
            return self
        built = self._build()
        if not isinstance(built, tuple) or len(built) != 2:
            raise ValueError(f"a deferred event's build() must return (before, candidate), got {type(built).__name__}")
        before, candidate = (self._a_conversation(messages, _Named(name))
                             for messages, name in zip(built, ("before", "candidate"), strict=True))
        event = self.model_copy(update={"before": before, "candidate": candidate})
        event._build = None
        return event

    @field_validator("before", "candidate", mode="before")
    @classmethod
    def _a_conversation(cls, value: Any, info: Any) -> Any:
        from memguard.messages import _check_sequence

        try:
            return _check_sequence(value)
        except ValueError as exc:
            raise ValueError(f"{info.field_name}: {exc}") from None


class _Named:
    """The `info` a field validator reads (its field's name), for validating built messages."""

    def __init__(self, field_name: str) -> None:
        self.field_name = field_name


class CandidateReport(BaseModel):
    """How one candidate context fared: the proposed compaction, or a fallback the guard tried."""

    strategy: str
    """The strategy that produced this context."""
    perturbation: str
    """The tag MemRM was shown for it."""
    p_harmful: float | None = None
    """MemRM's P(HARMFUL); None when it was not scored (identical action, rejected, or an error)."""
    band: Band | None = None
    """The coverage band of `p_harmful` ("safe", "uncertain", "harmful")."""
    acceptable: bool = False
    """Whether it passed the commit rule (and the band, with `band_gate`)."""
    identical: bool = Field(
        default=False, description="Same next action as under the full context: SAFE without an RM call."
    )
    """Same next action as under the full context: SAFE without an RM call."""
    rejected: str | None = Field(default=None, description="Why the sanity rails refused it before any RM call.")
    """Why the sanity rails refused it before any RM call (None: not refused)."""
    error: str | None = None
    """What failed while probing or scoring it (None: nothing failed)."""
    proposed_action: str | None = None
    """The agent's next action under this context, as MemRM read it."""
    n_messages: int = 0
    """Messages in this context."""
    context_tokens: int | None = None
    """Its size as the hard budget counts it (None: not counted)."""
    prompt_tokens: int | None = None
    """Tokens of the MemRM prompt scored for it (None: not scored)."""
    truncated_tokens: int = 0
    """Tokens cut from the left of that prompt to fit MemRM's window."""
    fits_budget: bool | None = None
    """Whether it fits the hard budget (None: no budget in force)."""


class Timings(BaseModel):
    """Seconds one review spent per phase.

    Each phase is wall time summed over the review (contexts probed together count once), so
    the phases add up to at most `total`, which also covers running fallbacks and counting tokens.
    """

    probe: float = 0.0
    """Seconds spent asking the agent for its next response."""
    render: float = 0.0
    """Seconds spent rendering MemRM prompts."""
    score: float = 0.0
    """Seconds spent waiting for the scorer."""
    total: float = 0.0
    """Wall time of the whole review."""


def fingerprint_text(text: str) -> dict[str, Any]:
    """A stand-in for text in redacted records: a hash to correlate, a size to reason about.

    Args:
        text: The text to hide.

    Returns:
        ``{"sha256": <first 16 hex digits>, "chars": <length>}``.
    """
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


def _score_text(report: CandidateReport | None) -> str:
    """``P(HARMFUL)=0.62`` (or ``identical next action``) for a candidate; empty when unscored."""
    if report is None:
        return ""
    if report.identical:
        return "identical next action"
    if report.p_harmful is not None:
        return f"P(HARMFUL)={report.p_harmful:.2f}"
    if report.rejected:
        return "rejected by the rails"
    return ""


class Decision(BaseModel):
    """The guard's answer for one event, and the audit record that sinks write.

    `messages` and `response` are in the caller's own message type. `to_record` serialises the
    rest, with or without text; `summary` gives one line a person can read.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    verdict: Verdict
    """What the guard did (`Verdict`)."""
    mode: Literal["enforce", "audit"] = "enforce"
    """Whether the decision is applied ("enforce") or only recorded ("audit")."""
    messages: list[Any] = Field(default_factory=list, description="The messages to use from now on.")
    """The messages to use from now on: the proposed compaction, a fallback's context, or the
    untouched context on a veto.
    """
    strategy: str | None = Field(default=None, description="The strategy whose context won (None: veto).")
    """The strategy whose context won (None: veto)."""
    proposed_strategy: str = "compaction"
    """The strategy that proposed the compaction."""
    candidates: list[CandidateReport] = Field(default_factory=list)
    """One report per context tried, the proposed compaction first."""
    response: Any = Field(default=None, description="The agent response for the winning context, to reuse.")
    """The agent's response under the winning context, to reuse as the step's answer instead of
    asking the model again (None: none to reuse).
    """
    recorded_action: str | None = None
    """The agent's next action under the full context, as MemRM read it."""
    reasons: list[str] = Field(default_factory=list)
    """Why the guard decided as it did, in plain words."""
    error: str | None = None
    """What failed, when something did (the scorer, a probe); `on_error` decided."""
    timings: Timings = Field(default_factory=Timings)
    """Seconds spent per phase."""
    truncated_tokens: int = 0
    """Tokens cut from the left of the proposed compaction's prompt."""
    scorer: ScorerIdentity | None = None
    """The weights that scored it (None: no scorer identity known)."""
    step: int = 0
    """The agent's step."""
    conversation_id: str = ""
    """The conversation the cooldown state is kept under."""
    event_id: str = ""
    """The `CompactionEvent`'s id."""
    timestamp: float = Field(default_factory=time.time)
    """When the decision was made (seconds since the epoch)."""
    pending: bool = Field(default=False, description="Audit mode: scoring still runs in the background.")
    """Audit mode: scoring still runs in the background, and the sinks get the finished decision
    later.
    """
    reviewed: bool = Field(
        default=True, description="False when no review ran: a cooldown veto, a dropped audit job, a failed compaction."
    )
    """False when no review ran: a cooldown skip, a dropped or failed audit job, a compaction that
    raised.
    """
    skipped: Skipped | None = Field(
        default=None,
        description="Why no review ran: 'cooldown', 'compaction_failed', 'audit_dropped' or 'audit_failed'.",
    )
    """Why no review ran: "cooldown", "compaction_failed", "audit_dropped" or "audit_failed" (None:
    it was reviewed).
    """

    # Exception messages quoted in `error` and `reasons`: a redacted record replaces each by a
    # fingerprint, so no exception text (which may quote the model's raw answer) reaches a log.
    _exception_texts: list[str] = PrivateAttr(default_factory=list)

    def quoting(self, texts: list[str]) -> Decision:
        """Note exception texts that `error` and `reasons` quote, so redacted records hide them.

        An exception's message may quote the model's raw answer; `to_record(redact=True)`
        replaces each of these texts by its fingerprint wherever it appears.

        Args:
            texts: The exception messages quoted (empty ones are ignored).

        Returns:
            This decision, to chain on construction.
        """
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

    def summary(self) -> str:
        """One line a person can read: what happened, the score that decided it, and why.

        Examples: ``commit: P(HARMFUL)=0.12 (summarization)``, ``fallback observation_masking:
        P(HARMFUL)=0.08 (summarization: P(HARMFUL)=0.91)``, ``veto: skipped (cooldown)``,
        ``audit: pending``. Scores show two decimals; the exact values stay on the Decision.

        Returns:
            The summary line (no conversation text: it is safe to log).
        """
        verdict = self.verdict.value
        if self.skipped is not None:
            return f"{verdict}: skipped ({self.skipped.replace('_', ' ')})"
        if self.pending:
            return f"{verdict}: pending (scored in the background)"
        head = f"{verdict} {self.strategy}" if self.verdict is Verdict.FALLBACK else verdict
        chosen = next((c for c in self.candidates if c.strategy == self.strategy), None)
        shown = chosen if chosen is not None and self.verdict is not Verdict.VETO else (
            self.candidates[0] if self.candidates else None)
        score = _score_text(shown)
        detail = [score] if score else []
        if self.verdict is Verdict.FALLBACK and self.candidates:
            proposed = _score_text(self.candidates[0])
            detail.append(f"({self.proposed_strategy}: {proposed})" if proposed else f"({self.proposed_strategy})")
        else:
            detail.append(f"({self.proposed_strategy})")
        if self.error:
            detail.append(f"[error: {self.error.split(':', 1)[0]}]")
        return f"{head}: {' '.join(detail)}"

    def __str__(self) -> str:
        return self.summary()

    def to_record(self, *, redact: bool = False, include_messages: bool = False) -> dict[str, Any]:
        """A JSON-ready audit record of this decision.

        `messages` and `response` are left out (their count is kept as ``n_messages``) unless
        `include_messages` asks for them.

        Args:
            redact: Replace every piece of text (actions, quoted exception texts, messages) by
                its hash and size (`fingerprint_text`), so the record holds no conversation.
            include_messages: Add the chosen context as OpenAI-style dicts (fingerprints of
                each message when redacting).

        Returns:
            A dict of JSON types.
        """
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
