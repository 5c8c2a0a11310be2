"""`MemGuardSession`: guard a session that rewrites its stored history (persistent compaction).

`OpenAIResponsesCompactionSession` replaces the stored history with the server's compacted items
in `run_compaction`, which the Runner calls after a turn (any session of your own with a
`run_compaction` is guarded the same way; one that rewrites inside `add_items` cannot be put back
through its own `add_items` and is refused at the first veto). The SDK offers no hook between
computing the compacted items and writing them, so the wrapper lets the write happen, reads the
history before and after, and has the guard review that pair:

- commit: the rewritten history stays;
- fallback: the history becomes the fallback's (a memguard strategy applied to the old history);
- veto: the previous history is put back (``clear_session`` + ``add_items`` through the wrapped
  session's public API), so the stored history ends as it was. A reader of the same store
  during those few writes could see the compacted history; a failed restore raises
  `HistoryRestoreError` carrying the items to put back (nothing is silently lost).

**Opaque compactions are audited, never enforced.** The Responses API's compaction returns the
user messages and one `compaction` item whose summary is encrypted. memguard cannot read what
it kept, so its rails cannot check it and no fallback can be built from it; such a rewrite is
kept, and its review runs in audit mode (scored in the background, recorded with verdict
``audit``). Everything the wrapper does not define is forwarded to the wrapped session.

Probing: a compaction runs between turns, when the agent has no pending step; the guard probes
the agent's model on the stored history (plus `probe_input`, if given) before and after. Those
probes answer no call of the run, so a session review costs two model calls. After a veto the
wrapped session is not asked to compact again for `guard.cooldown` turns: every ask pays for a
compaction (an API call) that the guard would refuse unseen.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Sequence
from typing import Any

from agents import Agent, Model, RunContextWrapper
from memguard import CompactionEvent, Decision, Guard, Verdict

from openai_agents_memguard.hooks import notify
from openai_agents_memguard.items import from_view, is_opaque, to_view
from openai_agents_memguard.probing import AgentProbe, probe_model

__all__ = ["HistoryRestoreError", "MemGuardSession", "audit_twin"]

logger = logging.getLogger("memguard.openai_agents")

ALL_ITEMS = 2_147_483_647
"""The limit that reads a whole history (None would apply the session's own default limit)."""


class HistoryRestoreError(RuntimeError):
    """Putting the previous history back failed; `items` is that history, to store again."""

    def __init__(self, items: list[Any], cause: BaseException) -> None:
        super().__init__(f"could not restore {len(items)} session items after a veto ({type(cause).__name__})")
        self.items = items


def audit_twin(guard: Guard) -> Guard:
    """A guard with `guard`'s scorer, settings, sinks and callback, in audit mode."""
    if guard.mode == "audit":
        return guard
    settings = guard.settings.model_copy(update={"mode": "audit"})
    return Guard(guard.scorer, settings=settings, sinks=guard.sinks, on_decision=guard.on_decision)


def _accepts_wrapper(method: Any) -> bool:
    try:
        parameters = inspect.signature(method).parameters
    except (TypeError, ValueError):
        return False
    found = parameters.get("wrapper")
    return found is not None and found.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def _same(a: Sequence[Any], b: Sequence[Any]) -> bool:
    return len(a) == len(b) and all(x is y or x == y for x, y in zip(a, b, strict=True))


class MemGuardSession:
    """A session whose rewrites of the stored history are reviewed by the guard.

    ::

        session = MemGuardSession(
            OpenAIResponsesCompactionSession("chat-1", SQLiteSession("chat-1", "chat.db")),
            guard, agent=agent)
        Runner.run_sync(agent, "next question", session=session)

    `agent` is probed (its model, or `model` when it names its model by string); `context` is
    the run context its tools and instructions see. `conversation_id` defaults to the session id.
    """

    def __init__(
        self,
        session: Any,
        guard: Guard,
        *,
        agent: Agent[Any],
        model: Model | None = None,
        context: Any = None,
        fallbacks: Sequence[Any] | None = None,
        probe_input: Sequence[Any] = (),
        strategy: str | None = None,
        on_decision: Callable[[Decision], Any] | None = None,
        conversation_id: str | None = None,
    ) -> None:
        for method in ("get_items", "add_items", "pop_item", "clear_session"):
            if not callable(getattr(session, method, None)):
                raise TypeError(f"session must implement the agents Session protocol ({method} is missing)")
        if not isinstance(guard, Guard):
            raise TypeError(f"guard must be a memguard.Guard, got {type(guard).__name__}")
        if not isinstance(agent, Agent):
            raise TypeError(f"agent must be an agents.Agent, got {type(agent).__name__}")
        self.session = session
        self.session_id: str = session.session_id
        self.guard = guard
        self.agent = agent
        self.model = model
        self.context = context
        self.fallbacks = None if fallbacks is None else tuple(fallbacks)
        self.probe_input = list(probe_input)
        self.strategy = strategy or type(session).__name__
        self.on_decision = on_decision
        self.conversation_id = conversation_id or self.session_id
        self.last_decision: Decision | None = None
        self._audit: Guard | None = None
        self._paused = 0
        probe_model(agent, model)  # a clear error now rather than at the first compaction
        if callable(getattr(session, "run_compaction", None)):
            self.run_compaction = self._run_compaction

    def __getattr__(self, name: str) -> Any:
        # The SDK reaches for optional session hooks (settings, generation tracking, deferred
        # compaction) by name; the wrapped session answers them as if it were not wrapped.
        if name.startswith("__") or name in ("session", "run_compaction"):
            raise AttributeError(name)
        return getattr(self.session, name)

    # ------------------------------------------------------------------ the Session protocol

    async def get_items(self, limit: int | None = None) -> list[Any]:
        return list(await self.session.get_items(limit))

    async def add_items(self, items: list[Any]) -> None:
        await self.session.add_items(items)

    async def pop_item(self) -> Any:
        return await self.session.pop_item()

    async def clear_session(self) -> None:
        await self.session.clear_session()

    async def _run_compaction(self, args: Any = None, *, wrapper: RunContextWrapper[Any] | None = None) -> None:
        if self._paused:
            self._paused -= 1
            return
        before = await self._all()
        run = self.session.run_compaction
        if wrapper is not None and _accepts_wrapper(run):
            await run(args, wrapper=wrapper)
        else:
            await run(args)
        after = await self._all()
        if not _same(before, after):
            await self._review(before, after)

    # ------------------------------------------------------------------ the review

    async def _all(self) -> list[Any]:
        return list(await self.session.get_items(ALL_ITEMS))

    async def _review(self, before: list[Any], after: list[Any]) -> Decision:
        wrapper = RunContextWrapper(self.context)
        instructions = await self.agent.get_system_prompt(wrapper)
        known = [item for item in before]
        opaque = any(is_opaque(item) and item not in known for item in after)
        guard = self.guard
        if opaque and guard.mode != "audit":
            if self._audit is None:
                self._audit = audit_twin(guard)
            guard = self._audit
        event = CompactionEvent(
            before=to_view(before, instructions),
            candidate=to_view(after, instructions),
            strategy=self.strategy,
            conversation_id=self.conversation_id,
            metadata={"framework": "openai-agents", "session": type(self.session).__name__,
                      "agent": self.agent.name, "opaque": opaque},
        )
        probe = _SessionProbe(AgentProbe(self.agent, self.context, probe_model(self.agent, self.model)),
                              self.probe_input)
        decision = await guard.areview(event, probe, fallbacks=None if opaque else self.fallbacks)
        self._record(decision)
        if decision.verdict is Verdict.VETO:
            await self._replace(before)
            self._paused = max(0, guard.cooldown - 1)
        elif decision.verdict is Verdict.FALLBACK:
            await self._replace(from_view(decision.messages)[1])
        return decision

    async def _replace(self, items: list[Any]) -> None:
        """Store exactly `items`, through the wrapped session's public API, and check it took."""
        try:
            await self.session.clear_session()
            if items:
                await self.session.add_items(list(items))
            stored = await self._all()
        except Exception as exc:
            logger.error("memguard: restoring %d session items failed (%s)", len(items), type(exc).__name__)
            raise HistoryRestoreError(list(items), exc) from exc
        if not _same(stored, items):
            # A session that rewrites inside add_items rewrote what we put back.
            raise HistoryRestoreError(list(items), RuntimeError("the session changed the items it was given"))

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Wait for audit reviews of opaque compactions (they run in the background)."""
        done = self._audit.flush(timeout) if self._audit is not None else True
        return self.guard.flush(timeout) and done

    def _record(self, decision: Decision) -> None:
        self.last_decision = decision
        notify(self.on_decision, decision)


class _SessionProbe:
    """The agent's next turn on a stored history, with `probe_input` appended to every probe."""

    def __init__(self, probe: AgentProbe, probe_input: list[Any]) -> None:
        self.probe = probe
        self.probe_input = probe_input

    async def __call__(self, messages: list[Any]) -> dict[str, Any]:
        instructions, items = from_view(messages)
        return await self.probe.call(instructions, [*items, *self.probe_input])
