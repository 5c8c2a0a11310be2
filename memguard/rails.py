"""Sanity rails: refuse obviously broken compactions before spending an RM call on them.

These are the failures users report most against LangChain's and OpenHands' summarisers: an
empty summary, an error message or exception text stored as the summary, a placeholder such as
"No previous conversation history.", and tool results left without the call that produced them.
A refused candidate is never committed, whatever the scores say.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from memguard.messages import Message, is_system_like

__all__ = ["check_candidate"]

_SUMMARY_PREFIXES = (
    "[Summary]",
    "Here is a summary of the conversation to date:",
    "<summary>",
    "Summary:",
)
_PLACEHOLDERS = re.compile(
    r"^\s*(no previous conversation history\.?|no summary( available)?\.?|n/?a\.?|none\.?|null|"
    r"summary unavailable\.?|\[?summary\]?|\.\.\.|tbd)\s*$",
    re.IGNORECASE,
)
# An error *message* stored as the summary: "Error: ...", "Error code: 429 - ...", "ERROR 500",
# "ValueError: ...", "Exception: ...", a traceback, an apology or an HTTP failure. Not a summary
# that starts with the word ("Error handling in parse() was rewritten ..."): after "error" or
# "exception" a colon, a dash, a status code or the word "code" must follow.
_ERRORS = re.compile(
    r"^\s*(traceback \(most recent call last\)|(error|exception)\s*(code\b|[:\-]|\[?\d{3}\b)|"
    r"[A-Za-z_.]*(error|exception)\s*:|"
    r"i'?m sorry,? (but )?i (can(no|')t|am unable)|rate limit(ed)? (exceeded|reached)\b|request failed\b|"
    r"internal server error)",
    re.IGNORECASE,
)


def _strip_summary_prefix(text: str) -> str:
    stripped = text.strip()
    for prefix in _SUMMARY_PREFIXES:
        if stripped.lower().startswith(prefix.lower()):
            stripped = stripped[len(prefix):].strip()
    if stripped.lower().endswith("</summary>"):
        stripped = stripped[: -len("</summary>")].strip()
    return stripped


def _new_messages(before: Sequence[Message], candidate: Sequence[Message]) -> list[Message]:
    seen = {(str(m.role), m.text()) for m in before}
    return [
        m
        for m in candidate
        if (str(m.role), m.text()) not in seen
        and m.role != "tool"
        and not (m.role == "assistant" and m.tool_calls)
    ]


def _orphans(candidate: Sequence[Message]) -> str | None:
    open_calls: set[str] = set()
    for index, message in enumerate(candidate):
        if message.role == "assistant":
            open_calls = set(message.tool_call_ids())
        elif message.role == "tool":
            if not message.tool_call_id or message.tool_call_id not in open_calls:
                return f"orphan tool message at index {index} (its tool call was dropped)"
    return None


def _dangling_calls(candidate: Sequence[Message]) -> str | None:
    answered = {m.tool_call_id for m in candidate if m.role == "tool"}
    for index, message in enumerate(candidate[:-1]):
        if message.role == "assistant":
            missing = [cid for cid in message.tool_call_ids() if cid not in answered]
            if missing:
                return f"tool call at index {index} lost its result"
    return None


def check_candidate(before: Sequence[Message], candidate: Sequence[Message]) -> str | None:
    """The reason a candidate must be refused, or None when it passes."""
    if not candidate:
        return "empty candidate: the compaction removed every message"
    if before and is_system_like(before[0].role) and not any(is_system_like(m.role) for m in candidate):
        return "the system prompt was dropped"
    for message in _new_messages(before, candidate):
        body = _strip_summary_prefix(message.text())
        if message.content is not None and not isinstance(message.content, (str, list)):
            continue
        if not body:
            return "empty summary"
        if _PLACEHOLDERS.match(body):
            return "placeholder summary"
        if _ERRORS.match(body):
            return "summary is an error message"
    return _orphans(candidate) or _dangling_calls(candidate)
