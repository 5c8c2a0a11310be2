"""What a `compact_history` hook may return, for the histories memguard itself builds.

Pydantic AI's core (2.78+) checks a `CompactionResult` before it sends it: its messages end with
the request being answered, its `part` is their latest `CompactionPart` (by identity) and holds a
summary or a provider's encrypted content, and a summary written into a request comes after the
standing system prompt the given history opens with. A memguard fallback (observation masking, a
recent window, a `before_model_request` compaction) produces a history without a compaction part
of its own: `with_marker` adds one that says what was done, and `as_result` checks the history the
way core will, so a fallback core would refuse is never offered (the review skips it instead).
A provider's compaction whose summary is encrypted (`content` None, OpenAI's) is `opaque`: memguard
cannot read what it kept, so it is audited, never enforced.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic_ai.messages import CompactionPart, ModelMessage, ModelRequest, SystemPromptPart

__all__ = ["MARKER", "as_result", "is_opaque", "with_marker"]

MARKER = "Part of the earlier conversation was shortened to fit the context ({strategy})."
"""The summary of a compaction part memguard adds to a fallback's history (what MemRM and the model read)."""


def is_opaque(part: CompactionPart) -> bool:
    """A compaction memguard cannot read: no summary text, only a provider's encrypted content."""
    return not (part.content and part.content.strip())


def _latest(messages: Sequence[ModelMessage]) -> tuple[int, CompactionPart] | None:
    for index in reversed(range(len(messages))):
        for part in reversed(messages[index].parts):
            if isinstance(part, CompactionPart):
                return index, part
    return None


def _standing_prompt(messages: Sequence[ModelMessage]) -> int:
    """How many leading `SystemPromptPart`s the requests a history opens with hold (they are sent merged)."""
    count = 0
    for message in messages:
        if not isinstance(message, ModelRequest):
            break
        for part in message.parts:
            if not isinstance(part, SystemPromptPart):
                return count
            count += 1
    return count


def with_marker(messages: Sequence[ModelMessage], strategy: str) -> list[ModelMessage]:
    """`messages` with a compaction part of memguard's own after the latest one they hold (or the opening)."""
    latest = _latest(messages)
    at = min(latest[0] + 1 if latest is not None else 1, max(0, len(messages) - 1))  # never after the request
    marker = ModelRequest(parts=[CompactionPart(content=MARKER.format(strategy=strategy))])
    return [*messages[:at], marker, *messages[at:]]


def as_result(messages: Sequence[ModelMessage], given: Sequence[ModelMessage], *, handler: str) -> Any:
    """A `CompactionResult` for `messages`, a compaction of `given`; `ValueError` where core would refuse it."""
    from pydantic_ai.capabilities.compaction import (  # type: ignore[import-not-found, unused-ignore]  # 2.78+
        CompactionResult,
    )

    messages = list(messages)
    if not messages or not isinstance(messages[-1], ModelRequest):
        raise ValueError("the compacted history must end with the request being answered")
    latest = _latest(messages)
    known = {id(part) for message in given for part in message.parts}
    if latest is None or id(latest[1]) in known:
        raise ValueError("the compacted history holds no compaction part of its own")
    holder, part = latest
    if is_opaque(part) and not (part.provider_details and "encrypted_content" in part.provider_details):
        raise ValueError("the compaction part is empty")
    if isinstance(messages[holder], ModelRequest) and _standing_prompt(messages) < _standing_prompt(given):
        raise ValueError("the compacted history must keep the standing system prompt ahead of its summary")
    return CompactionResult(messages=messages, part=part, handler=handler)
