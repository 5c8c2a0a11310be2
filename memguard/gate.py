"""The gate: asked once per step, before the wrapped compaction runs.

Frameworks re-propose a compaction at every model call once their trigger fires, and a review
costs agent probes and a scorer call; after a veto the same conversation is therefore not
reviewed again for `cooldown` steps. The gate answers that question *before* the caller's own
compaction runs (a summariser is an LLM call: during a cooldown it must not be paid for), and
it is the one place every driver asks: the decorator, `Guard.review`, and every integration.

The rule: after a reviewed enforce-mode veto at step ``s``, ``cooldown=N`` skips exactly the
steps ``s+1 .. s+N`` (and a re-proposal at ``s`` itself); step ``s+N+1`` is reviewed. Audit and
must-reduce gates always review. A conversation that names no id gets one derived from its
opening (`conversation_key`); two users whose chats open the same way share that id, so a
derived id cools down only a context that *extends* the vetoed one: the same opening (the id)
and the same message at the vetoed context's last position, an O(1) check.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from memguard.actions import tool_call_signature
from memguard.messages import role_and_text, role_of

__all__ = ["OPENING_MESSAGES", "Cooldowns", "Gate", "assistant_turns", "conversation_key", "message_fingerprint"]

OPENING_MESSAGES = 8
"""Messages a derived conversation id reads at most (it runs on the agent's path, even in audit mode).

An integration that converts its framework's messages only to ask the gate needs the view of this
many opening messages, not of the whole conversation.
"""


@dataclass(frozen=True)
class Gate:
    """What the guard says about one step before any work is done for it."""

    review: bool
    """True: run the inner compaction, then review its proposal. False: skip, and do not call the
    inner compaction (publish `Guard.skip(gate, before)` instead).
    """
    conversation_id: str
    """The conversation's id (given, or derived from the opening); pass it on the `CompactionEvent`."""
    step: int | None = None
    """The step the gate judged (None when it did not need one: no cooldown to check)."""
    must_reduce: bool = False
    """The framework must shrink the context now: never skipped, never vetoed."""
    audit: bool = False
    """This review is an audit review (recorded only, run in the background)."""
    reason: str | None = None
    """Why the step is skipped (None when it is reviewed)."""


def conversation_key(messages: Sequence[Any]) -> str:
    """A stable id for a conversation that names none: its system prompt(s), task and first action.

    Those open the context and stay put while a conversation grows, and a veto leaves them as they
    were, so every proposal the conversation makes until a compaction commits maps to the same id.
    Only the messages up to the first assistant turn, at most 8, are read (this runs on the
    agent's path even in audit mode). Two conversations that open alike get the same id: the
    gate tells them apart by the vetoed context itself.

    Args:
        messages: The conversation, in any supported message type.

    Returns:
        ``"auto-"`` and 16 hex digits of a hash of the opening's roles and texts.
    """
    opening: list[tuple[str, str]] = []
    for index, item in enumerate(messages):
        role, text = role_and_text(item, index=index)
        opening.append((role, text))
        if role == "assistant" or len(opening) >= OPENING_MESSAGES:
            break
    digest = hashlib.sha256(json.dumps(opening, ensure_ascii=False).encode("utf-8", "surrogatepass"))
    return "auto-" + digest.hexdigest()[:16]


def message_fingerprint(item: Any) -> str:
    """A hash of one message's role, text and tool calls (ids excluded), whatever its type."""
    role, text = role_and_text(item)
    payload = json.dumps([role, text, tool_call_signature(item)], ensure_ascii=False, default=str)
    return hashlib.sha256(payload.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def assistant_turns(messages: Sequence[Any]) -> int:
    """The step of a context: its number of assistant turns (roles only, no conversion)."""
    return sum(1 for item in messages if role_of(item) == "assistant")


@dataclass(frozen=True)
class _Veto:
    step: int
    length: int | None = None  # the vetoed context's length (derived ids only)
    last: str | None = None  # fingerprint of its last message (derived ids only)

    def left(self, step: int, cooldown: int) -> int:
        """Steps still skipped counting `step` itself (0: review)."""
        if step < self.step or step > self.step + cooldown:
            return 0
        return self.step + cooldown - step + 1

    def extended_by(self, before: Sequence[Any] | None) -> bool:
        if self.length is None or self.last is None:
            return True  # an explicit id: the id alone names the conversation
        if before is None or len(before) < self.length:
            return False
        return message_fingerprint(before[self.length - 1]) == self.last


class Cooldowns:
    """Per-conversation veto records, least recently seen dropped first (thread-safe)."""

    def __init__(self, max_conversations: int) -> None:
        self.max_conversations = max_conversations
        self.vetoed_at: OrderedDict[str, _Veto] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, conversation_id: str) -> _Veto | None:
        """The conversation's last veto, marked as recently seen (kept longest)."""
        with self._lock:
            veto = self.vetoed_at.get(conversation_id)
            if veto is not None:
                self.vetoed_at.move_to_end(conversation_id)
            return veto

    def peek(self, conversation_id: str) -> _Veto | None:
        with self._lock:
            return self.vetoed_at.get(conversation_id)

    def record(self, conversation_id: str, step: int, vetoed: Sequence[Any] | None = None) -> None:
        """Start a cooldown at `step`; `vetoed` (the vetoed context) anchors a derived id to it."""
        veto = _Veto(step)
        if vetoed:
            veto = _Veto(step, len(vetoed), message_fingerprint(vetoed[-1]))
        with self._lock:
            self.vetoed_at[conversation_id] = veto
            self.vetoed_at.move_to_end(conversation_id)
            while len(self.vetoed_at) > self.max_conversations:
                self.vetoed_at.popitem(last=False)
