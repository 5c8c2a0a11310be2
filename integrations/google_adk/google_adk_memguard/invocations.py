"""Which invocation a summarizer call belongs to, and what the plugin saw of it.

ADK calls a summarizer with events only. The plugin registers every invocation it sees start
(`before_run_callback`) with its context, the agent context of each model call, and the last
request it saw; the summarizer finds its invocation by the identity of the events it was handed
(they are the session's own objects) and learns from it the session id (the conversation id),
whether the run is still going (in-flow: before a model call) or over (post-invocation), and
where to leave a proposal for the plugin. Contexts are held weakly: the registry never keeps a
finished run's session alive.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from google.adk.agents.invocation_context import InvocationContext
from google.adk.events.event import Event
from google.adk.models.llm_request import LlmRequest
from google.adk.sessions.session import Session
from memguard import Gate

__all__ = ["Held", "Invocation", "Invocations", "model_steps"]

MAX_INVOCATIONS = 4096
"""Invocations remembered at most (the oldest forgotten first); a live one is found again by its events."""


@dataclass
class Held:
    """What the summarizer left for the plugin's next `before_model_callback` in an in-flow step.

    `kind` says what the plugin does with it: ``"review"`` probes and decides on `proposal`;
    ``"skip"`` publishes the gate's skip against the real request; ``"audit"`` notes the
    proposal ADK already applied, to score it against the response the real call brings.
    """

    kind: Literal["review", "skip", "audit"]
    gate: Gate
    proposal: Event | None = None
    events: list[Event] = field(default_factory=list)


@dataclass
class Invocation:
    """One run of the agent, as far as memguard needs it."""

    invocation_id: str
    session_id: str
    _root: weakref.ReferenceType[InvocationContext]
    _agent: weakref.ReferenceType[InvocationContext] | None = None
    running: bool = True
    held: Held | None = None
    watch: Any = None  # an audit review waiting for the real call's response (plugin.py)
    last_request: LlmRequest | None = None

    @property
    def ctx(self) -> InvocationContext | None:
        """The context of the agent that ran last (its branch, scope and model), else the run's own."""
        agent = self._agent() if self._agent is not None else None
        return agent if agent is not None else self._root()

    @property
    def session(self) -> Session | None:
        ctx = self.ctx
        return ctx.session if ctx is not None else None

    def enter(self, ctx: InvocationContext) -> None:
        """`ctx` is the agent context of what runs now (an agent start, a model call)."""
        self._agent = weakref.ref(ctx)


class Invocations:
    """The invocations the plugin saw start, newest first to search (thread-safe)."""

    def __init__(self, size: int = MAX_INVOCATIONS) -> None:
        self._size = size
        self._items: OrderedDict[str, Invocation] = OrderedDict()
        self._lock = threading.Lock()

    def start(self, ctx: InvocationContext) -> Invocation:
        invocation = Invocation(ctx.invocation_id, ctx.session.id, weakref.ref(ctx))
        with self._lock:
            for key in [key for key, item in self._items.items() if item.session_id == invocation.session_id]:
                del self._items[key]  # the session's previous run, post-invocation compaction included, is over
            self._items[ctx.invocation_id] = invocation
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return invocation

    def get(self, invocation_id: str) -> Invocation | None:
        with self._lock:
            return self._items.get(invocation_id)

    def find(self, events: Sequence[Event]) -> Invocation | None:
        """The invocation whose session holds `events` (the last one, by identity), newest first."""
        if not events:
            return None
        last = events[-1]
        with self._lock:
            candidates = list(reversed(self._items.values()))
        for invocation in candidates:
            session = invocation.session
            if session is not None and any(event is last for event in reversed(session.events)):
                return invocation
        return None


def model_steps(events: Sequence[Event]) -> int:
    """The step of a session: its complete model turns (what memguard counts as assistant turns)."""
    return len([
        event for event in events
        if event.content is not None and event.content.role == "model" and not event.partial
        and not (event.actions and event.actions.compaction)
    ])
