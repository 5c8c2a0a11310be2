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
the agent's model on the stored history (plus `probe_input`, if given) before and after, with
the request the agent's next turn sends (its tools, handoffs, output schema and prompt; its
settings merged with `run_config`'s). Those probes answer no call of the run, so a session review
costs two model calls. The guard's gate is asked before the wrapped session compacts: during a
cooldown after a veto it is not asked to compact at all (every ask pays for a compaction, an API
call, that the guard would refuse unseen). An opaque rewrite is reviewed as an audit review of
the same guard (`Guard.areview(..., audit=True)`), so its decision is in `guard.stats()` and its
sinks, and `guard.flush()`/`guard.close()` cover it.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Sequence
from typing import Any

from agents import Agent, Model, RunConfig, RunContextWrapper
from memguard import CompactionEvent, Decision, Gate, Guard, Verdict

from openai_agents_memguard.hooks import notify
from openai_agents_memguard.items import from_view, is_opaque, to_view
from openai_agents_memguard.probing import RequestProbe, probe_model
from openai_agents_memguard.sdk import next_request, resolve_model

__all__ = ["HistoryRestoreError", "MemGuardSession"]

logger = logging.getLogger("memguard.openai_agents")

ALL_ITEMS = 2_147_483_647
"""The limit that reads a whole history (None would apply the session's own default limit)."""


class HistoryRestoreError(RuntimeError):
    """Putting the previous history back after a veto failed; `items` is that history, to store again.

    Raised by `MemGuardSession` when a write fails, or when the session changed what it was given
    (one that rewrites inside `add_items`): nothing is silently lost.

    Args:
        items: The history to put back.
        cause: What failed (its type is named in the message).
    """

    def __init__(self, items: list[Any], cause: BaseException) -> None:
        super().__init__(f"could not restore {len(items)} session items after a veto ({type(cause).__name__})")
        self.items = items
        """The history to store again."""


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

    ```python
    session = MemGuardSession(
        OpenAIResponsesCompactionSession("chat-1", SQLiteSession("chat-1", "chat.db")),
        guard, agent=agent)
    Runner.run_sync(agent, "next question", session=session)
    ```

    The SDK offers no hook between computing a compaction and writing it, so the wrapped session's
    `run_compaction` writes, and the guard reviews the history before and after. Commit: the
    rewrite stays; fallback: the history becomes the fallback's; veto: the previous history is put
    back through the session's public API (`HistoryRestoreError` if that fails). During a
    cooldown the session is not asked to compact. A rewrite with an encrypted compaction item is
    audited, never enforced. The probes answer no call of the run: a review costs two model
    calls. Everything this class does not define is forwarded to the wrapped session.

    Args:
        session: The session to guard (any `agents` Session; its `run_compaction` is reviewed).
        guard: The guard that decides (opaque rewrites: an audit review of this same guard).
        agent: The agent whose next turn is probed.
        model: The model to probe when neither the agent nor `run_config` holds a `Model` instance.
        run_config: The run's `RunConfig`: its model and `model_settings` apply to the probes.
        context: The run context the agent's tools and instructions see.
        fallbacks: memguard strategies tried on the old history when the rewrite is harmful.
        probe_input: Items appended to every probe (a typical next user message).
        strategy: The rewrite's name in audit records (default: the session's class).
        on_decision: Called with each `Decision`.
        conversation_id: Keys the guard's cooldown (default: the session id).

    Raises:
        TypeError: `session`, `guard` or `agent` is not what it must be.
        ValueError: No model instance can be found to probe.
    """

    def __init__(
        self,
        session: Any,
        guard: Guard,
        *,
        agent: Agent[Any],
        model: Model | None = None,
        run_config: RunConfig | None = None,
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
        self.run_config = run_config
        self.context = context
        self.fallbacks = None if fallbacks is None else tuple(fallbacks)
        self.probe_input = list(probe_input)
        self.strategy = strategy or type(session).__name__
        self.on_decision = on_decision
        self.conversation_id = conversation_id or self.session_id
        probe_model(agent, resolve_model(agent, run_config, model))  # a clear error now, not at the first compaction
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
        """The wrapped session's items.

        See `agents.Session.get_items`.

        Returns:
            The stored items (the latest `limit` when given).
        """
        return list(await self.session.get_items(limit))

    async def add_items(self, items: list[Any]) -> None:
        """Store items in the wrapped session.

        See `agents.Session.add_items`.
        """
        await self.session.add_items(items)

    async def pop_item(self) -> Any:
        """Remove the wrapped session's latest item.

        See `agents.Session.pop_item`.

        Returns:
            The item removed, or None when the session is empty.
        """
        return await self.session.pop_item()

    async def clear_session(self) -> None:
        """Clear the wrapped session.

        See `agents.Session.clear_session`.
        """
        await self.session.clear_session()

    async def _run_compaction(self, args: Any = None, *, wrapper: RunContextWrapper[Any] | None = None) -> None:
        before = await self._all()
        instructions = await self.agent.get_system_prompt(RunContextWrapper(self.context))
        # An audit gate checks no cooldown, and the session names the conversation: no view needed.
        view = None if self.guard.mode == "audit" else to_view(before, instructions)
        gate = self.guard.gate(view, conversation_id=self.conversation_id)
        if not gate.review:  # cooling down after a veto: the wrapped session is not asked to compact
            kept = view if view is not None else to_view(before, instructions)
            notify(self.on_decision, await self.guard.askip(gate, kept, strategy=self.strategy))
            return
        run = self.session.run_compaction
        if wrapper is not None and _accepts_wrapper(run):
            await run(args, wrapper=wrapper)
        else:
            await run(args)
        after = await self._all()
        if not _same(before, after):
            await self._review(gate, instructions, before, after)

    # ------------------------------------------------------------------ the review

    async def _all(self) -> list[Any]:
        return list(await self.session.get_items(ALL_ITEMS))

    async def _review(self, gate: Gate, instructions: str | None, before: list[Any], after: list[Any]) -> Decision:
        known = list(before)
        opaque = any(is_opaque(item) and item not in known for item in after)
        fields: dict[str, Any] = dict(
            strategy=self.strategy,
            conversation_id=gate.conversation_id,
            metadata={"framework": "openai-agents", "session": type(self.session).__name__,
                      "agent": self.agent.name, "opaque": opaque},
        )
        audit = opaque or gate.audit
        if audit:
            # An audit review (the guard's mode, or an opaque rewrite): the views are built on the
            # guard's worker, off the run's path. The lists are this review's own copies (`_all`
            # copies what `get_items` returned, and the session's later writes replace its stored
            # items rather than edit these); the items are what `get_items` returned: the SDK's
            # sessions decode them afresh per call, and the Runner reads a history through copies
            # of its items (`strip_internal_input_item_metadata`), so nothing edits them later.
            kept, rewritten = list(before), list(after)
            event = CompactionEvent.deferred(lambda: (to_view(kept, instructions), to_view(rewritten, instructions)),
                                             **fields)
        else:
            event = CompactionEvent(before=to_view(before, instructions), candidate=to_view(after, instructions),
                                    **fields)
        wrapper = RunContextWrapper(self.context)
        request = await next_request(self.agent, wrapper, self.run_config, before, audit=audit)
        model = probe_model(self.agent, resolve_model(self.agent, self.run_config, self.model))
        probe = RequestProbe(model, request, extra_input=self.probe_input)
        if opaque:  # nothing to enforce on: an audit review of the same guard
            decision = await self.guard.areview(event, probe, audit=True)
        else:
            decision = await self.guard.areview(event, probe, gate=gate, fallbacks=self.fallbacks)
        notify(self.on_decision, decision)
        if decision.verdict is Verdict.VETO:
            await self._replace(before)
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
