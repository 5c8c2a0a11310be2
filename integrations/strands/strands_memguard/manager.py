"""`MemGuardConversationManager`: a Strands conversation manager that lets memguard decide every reduction.

Strands asks its conversation manager to shrink ``agent.messages`` (in place, synchronously) on
three paths, and the wrapper reviews each one:

- **before a model call**: the inner manager's own ``BeforeModelCallEvent`` hooks (``per_turn``,
  ``proactive_compression``) are registered on a private registry and run by the wrapper's hook,
  never beside it. The review is async (``Guard.areview``) and the winning probe answers the
  pending model call when it is the same request (`ProbeReplay`): one extra model call per review;
- **end of invocation** (``apply_management``): nothing is pending, so both probes are extra
  (two calls); the probes ask the agent the invocation's last prompt again (``probe_prompt``);
- **context overflow** (``reduce_context(agent, e)``): the context must shrink, so the review never
  vetoes (commit, fall back, or force the lowest-risk candidate), and the full context, which just
  overflowed, is not probed.

The gate is asked when the inner manager is about to reduce (its ``reduce_context``), before it
runs: during a cooldown the inner does not reduce at all (no summary paid for), while its own
bookkeeping (the ``per_turn`` call counter, the threshold check) runs as usual. A veto restores
``agent.messages`` from a deep copy taken before the inner ran, the inner's session state
(``removed_message_count``, the summary it keeps) and the flags ``restore_from_session`` does not
restore (``_pin_first_applied``), leaving the ``per_turn`` counter where it is. In audit mode the
inner's reduction always stands; the review runs in the background and reaches the guard's sinks:
the worker converts both histories (``CompactionEvent.deferred``) from private copies taken at the
review (`_FrozenCopies`: only new or edited messages are deep-copied on the agent's path).
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from memguard import CompactionEvent, Decision, Gate, Guard, Verdict
from strands.agent.conversation_manager import ConversationManager
from strands.hooks import AgentInitializedEvent, BeforeInvocationEvent, BeforeModelCallEvent, HookRegistry
from strands.interrupt import InterruptException

from strands_memguard.fallbacks import bind_fallbacks, check_fallbacks, strategy_name
from strands_memguard.probing import AgentRequest, ProbeRecord, ProbeReplay, _messages_key
from strands_memguard.views import SHELL_TOOLS, StrandsView, assistant_turns

if TYPE_CHECKING:
    from strands import Agent
    from strands.types.content import Message

__all__ = ["ContextOverflowed", "MemGuardConversationManager"]

logger = logging.getLogger("memguard.strands")

_FLAGS = ("_pin_first_applied",)
"""Inner-manager state that ``restore_from_session`` does not restore: a veto restores it by name."""

_KEPT = ("_model_call_count",)
"""Counters a veto leaves where they are (the ``per_turn`` cadence counts model calls, not reductions)."""

_REPLAYABLE = frozenset({"before_model_call", "overflow"})
"""Paths after which the agent's next model call is the request a probe already sent."""

BEFORE_MODEL_CALL, END_OF_INVOCATION, OVERFLOW, REDUCE = "before_model_call", "end_of_invocation", "overflow", "reduce"


class ContextOverflowed(RuntimeError):
    """The full context is not probed after a context-window overflow: it just overflowed.

    Raised, instead of sending that context again, by the full-context probe of an overflow
    review. That review must reduce, so it never vetoes: the reduction (or a fallback) is
    committed, or the lowest-risk candidate is forced.
    """


@dataclass
class _Snapshot:
    """``agent.messages`` and the inner manager's state as they were before the inner reduced."""

    messages: list[Any]
    state: dict[str, Any]
    flags: dict[str, Any]

    @classmethod
    def deep(cls, agent: Agent, inner: ConversationManager) -> _Snapshot:
        # One deepcopy, so the summary the inner keeps stays the very object in the copied messages.
        messages, state = copy.deepcopy((list(agent.messages), inner.get_state()))
        return cls(messages, state, {name: getattr(inner, name) for name in _FLAGS if hasattr(inner, name)})

    @classmethod
    def frozen(cls, agent: Agent, inner: ConversationManager, copies: _FrozenCopies) -> _Snapshot:
        """The audit-mode snapshot: private copies, reused from earlier rounds where still faithful.

        Nothing restores it (an audit review never vetoes), so the inner's state is copied only
        as far as the review reads it (its summary, frozen with the messages).
        """
        state = inner.get_state()
        messages, summary = copies.freeze(agent.messages, state.get("summary_message"))
        state = {**copy.deepcopy({k: v for k, v in state.items() if k != "summary_message"}),
                 "summary_message": summary}
        return cls(messages, state, {name: getattr(inner, name) for name in _FLAGS if hasattr(inner, name)})

    @property
    def summary(self) -> Any:
        return self.state.get("summary_message")

    def restore(self, agent: Agent, inner: ConversationManager, messages: list[Any] | None = None) -> None:
        """Messages (these, or the snapshot's) and inner state back; the counters in `_KEPT` stay."""
        kept = {name: getattr(inner, name) for name in _KEPT if hasattr(inner, name)}
        agent.messages[:] = self.messages if messages is None else messages
        inner.restore_from_session(self.state)
        for name, value in (*self.flags.items(), *kept.items()):
            setattr(inner, name, value)


class _FrozenCopies:
    """Private deep copies of the agent's messages, for an audit review that runs later, elsewhere.

    An audit review is built and probed on the guard's worker, which can lag behind the agent by
    several reviews while earlier ones probe the model. Strands edits messages in place (the
    sliding window truncates tool results, a guardrail redacts the latest message, pins are set
    in their metadata), so what the worker reads must be a copy taken on the agent's thread, at
    the review. Deep-copying the whole conversation at each review is O(n) and slow (tens of ms
    at 2,000 messages); comparing a message with its copy is the same walk in C, about 50 times
    faster. So a copy made at an earlier review is reused while its original is the same object
    and still equals it (an in-place edit makes them differ: the message is copied again), and
    only new or edited messages are deep-copied. The copies are never handed to the agent or
    edited (the view reads them, probes send them), so a reused copy is as faithful as a new one.

    Only the messages of the latest `freeze` are remembered (their originals are kept alive
    until the next one, so an id is never mistaken for another object's).
    """

    def __init__(self) -> None:
        self._copies: dict[int, tuple[Any, Any]] = {}

    def freeze(self, messages: Sequence[Any], summary: Any = None) -> tuple[list[Any], Any]:
        """Faithful private copies of `messages` and of `summary` (the same copy where it is one of them).

        Args:
            messages: The agent's messages as they are now.
            summary: The summary message the inner manager keeps, if any.

        Returns:
            The copied messages, in order, and the copied summary (None when there is none).
        """
        memo: dict[int, Any] = {}  # one memo: objects shared between messages stay shared in the copies
        kept: dict[int, tuple[Any, Any]] = {}
        frozen = [self._copy(message, memo, kept) for message in messages]
        copied_summary = None if summary is None else self._copy(summary, memo, kept)
        self._copies = kept
        return frozen, copied_summary

    def _copy(self, original: Any, memo: dict[int, Any], kept: dict[int, tuple[Any, Any]]) -> Any:
        entry = kept.get(id(original)) or self._copies.get(id(original))
        if entry is None or entry[0] is not original or not _equal(original, entry[1]):
            entry = (original, copy.deepcopy(original, memo))
        kept[id(original)] = entry
        return entry[1]


def _equal(original: Any, copied: Any) -> bool:
    """Whether a message still equals its copy (an object that cannot say so counts as changed)."""
    try:
        return bool(original == copied)
    except Exception:  # noqa: BLE001 - an odd __eq__ (an array in metadata): copy again, to be safe
        return False


@dataclass
class _Round:
    """One routed call of the inner manager: a hook dispatch, ``apply_management`` or ``reduce_context``."""

    agent: Agent
    path: str
    must_reduce: bool
    invocation_state: dict[str, Any] | None
    shallow: _Snapshot
    gate: Gate | None = None
    snapshot: _Snapshot | None = None
    skipped: bool = False


class _Probes:
    """The probes of one review, found again from the answer the guard saw."""

    def __init__(self) -> None:
        self._kept: list[tuple[dict[str, Any], ProbeRecord]] = []
        self._lock = threading.Lock()

    def keep(self, answer: dict[str, Any], record: ProbeRecord) -> None:
        with self._lock:
            self._kept.append((answer, record))

    def record_for(self, answer: Any) -> ProbeRecord | None:
        with self._lock:
            return next((record for shown, record in self._kept if shown is answer), None)


@dataclass
class _Review:
    round: _Round
    snapshot: _Snapshot
    view: StrandsView
    event: CompactionEvent
    policy: Callable[[list[Any]], Any]
    fallbacks: tuple[Any, ...] | None
    probes: _Probes = field(default_factory=_Probes)


@dataclass
class _Skip:
    gate: Gate
    before: list[Any]


def _same(a: Sequence[Any], b: Sequence[Any]) -> bool:
    return len(a) == len(b) and all(x is y for x, y in zip(a, b, strict=True))


def _last_prompt(messages: Sequence[Any]) -> str | None:
    """The text of the latest user message that is a prompt (not tool results)."""
    for message in reversed(messages):
        blocks = message.get("content") or []
        if message.get("role") != "user" or any("toolResult" in block for block in blocks):
            continue
        texts = [str(block["text"]) for block in blocks if "text" in block]
        if texts:
            return "\n".join(texts)
    return None


class MemGuardConversationManager(ConversationManager):
    """Guard any Strands conversation manager with MemRM.

    Pass it *instead of* the manager it wraps:

    ```python
    Agent(model, conversation_manager=MemGuardConversationManager(
        SlidingWindowConversationManager(window_size=40, per_turn=True), guard))
    ```

    Strands asks its conversation manager to shrink ``agent.messages`` on three paths, and each
    is reviewed. Before a model call (the inner's ``per_turn`` or proactive hooks, run by this
    manager's hook): the winning probe answers the pending model call when it is the same
    request (`ProbeReplay`), so a review costs one extra model call. At the end of an invocation
    (`apply_management`): nothing is pending, so both probes are extra. After a context-window
    overflow (`reduce_context` with an error): the context must shrink, so the review never
    vetoes. The gate is asked when the inner is about to reduce: during a cooldown it does not
    reduce at all. A veto restores the messages and the inner's state as they were before it
    ran. In audit mode the inner's reduction always stands and the review runs in the background.

    Args:
        inner: The conversation manager to guard (``SlidingWindowConversationManager``,
            ``SummarizingConversationManager``, your own).
        guard: The `memguard.Guard` that reviews every reduction.
        fallbacks: Tried, in order, before the guard's own when a reduction is judged harmful:
            memguard strategies (`ObservationMasking()`, functions of the view) or other Strands
            conversation managers (run on a copy of the messages).
        on_decision: Called with each `Decision` (the pending record in audit mode).
        conversation_id: The id the guard keys cooldowns and audit records on (default: the
            agent's session id and agent id).
        strategy: The reduction's name in audit records and MemRM's perturbation tag (default:
            from the inner manager, e.g. ``sliding_window_40``).
        probe_prompt: The user turn both end-of-invocation probes answer (nothing is pending
            there); default: the invocation's last prompt, asked again.
        shell_tools: Tool names whose ``command`` input MemRM reads as a shell command.

    Raises:
        TypeError: `inner` is not a Strands conversation manager (or is already guarded), `guard`
            is not a `Guard`, a fallback is neither a manager nor a strategy.
    """

    def __init__(
        self,
        inner: ConversationManager,
        guard: Guard,
        *,
        fallbacks: Sequence[Any] = (),
        on_decision: Callable[[Decision], Any] | None = None,
        conversation_id: str | None = None,
        strategy: str | None = None,
        probe_prompt: str | None = None,
        shell_tools: Iterable[str] = SHELL_TOOLS,
    ) -> None:
        if isinstance(inner, MemGuardConversationManager):
            raise TypeError("the manager is already guarded: wrap its inner manager, not the wrapper")
        if not isinstance(inner, ConversationManager):
            raise TypeError(f"inner must be a Strands ConversationManager, got {type(inner).__name__}")
        if not isinstance(guard, Guard):
            raise TypeError(f"guard must be a memguard.Guard, got {type(guard).__name__}")
        if on_decision is not None and not callable(on_decision):
            raise TypeError("on_decision must be callable")
        # ConversationManager.__init__ is not called: it would reset the inner's removed_message_count.
        self._compression_threshold = None
        self._inner = inner
        self._guard = guard
        self.fallbacks = check_fallbacks(fallbacks)
        """This manager's own fallbacks, tried before the guard's."""
        self.on_decision = on_decision
        self.conversation_id = conversation_id
        self.strategy = strategy or strategy_name(inner)
        """The reduction's name in audit records and MemRM's prompt."""
        self.probe_prompt = probe_prompt
        self.shell_tools = frozenset(shell_tools)
        self._replay = ProbeReplay()
        self._frozen = _FrozenCopies()
        self._active: _Round | None = None
        self._last_decision: Decision | None = None

    # ------------------------------------------------------------------ the inner manager's face

    @property
    def inner(self) -> ConversationManager:
        """The guarded conversation manager."""
        return self._inner

    @property
    def guard(self) -> Guard:
        """The guard that reviews every reduction."""
        return self._guard

    @property
    def last_decision(self) -> Decision | None:
        """The latest decision (in audit mode, the pending record of the latest reduction)."""
        return self._last_decision

    @property  # the base class's plain attribute, delegated to the inner manager
    def removed_message_count(self) -> int:
        """The inner manager's count of messages removed from the agent (sessions read it)."""
        return int(self._inner.removed_message_count)

    @removed_message_count.setter
    def removed_message_count(self, value: int) -> None:
        self._inner.removed_message_count = value

    def get_state(self) -> dict[str, Any]:
        """The inner manager's state: a session saved guarded restores unguarded, and back.

        See `strands.agent.conversation_manager.ConversationManager.get_state`.

        Returns:
            The inner manager's state.
        """
        return self._inner.get_state()

    def restore_from_session(self, state: dict[str, Any]) -> list[Message] | None:
        """Restore the inner manager from a session (saved guarded or not).

        See `strands.agent.conversation_manager.ConversationManager.restore_from_session`.

        Returns:
            What the inner manager returns: messages to put first in the agent's list, if any.
        """
        return self._inner.restore_from_session(state)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._inner, name)  # window_size, per_turn, ...: the inner's settings

    def __repr__(self) -> str:
        return f"MemGuardConversationManager({self._inner!r}, strategy={self.strategy!r}, mode={self._guard.mode!r})"

    # ------------------------------------------------------------------ the three paths

    def register_hooks(self, registry: HookRegistry, **kwargs: Any) -> None:
        """Route the inner manager's hooks through the guard: never register them beside it.

        The inner's hooks are registered on a private registry; each group of them (by order) runs
        as one reviewed round from a hook of this manager's. Its ``AgentInitializedEvent`` hooks,
        which reduce nothing, are registered as they are.

        See `strands.agent.conversation_manager.ConversationManager.register_hooks`.
        """
        registry.add_callback(BeforeInvocationEvent, self._on_before_invocation)
        inner_hooks = HookRegistry()
        self._inner.register_hooks(inner_hooks, **kwargs)
        for event_type, entries in inner_hooks._registered_callbacks.items():
            if event_type is AgentInitializedEvent:  # dispatched synchronously; nothing to reduce there
                for entry in entries:
                    registry.add_callback(event_type, entry.callback, order=entry.order)
                continue
            for order in sorted({entry.order for entry in entries}):
                group = HookRegistry()
                for entry in entries:
                    if entry.order == order:
                        group.add_callback(event_type, entry.callback, order=order)
                registry.add_callback(event_type, self._router(group), order=order)

    def apply_management(self, agent: Agent, **kwargs: Any) -> None:
        """End of invocation: the inner's management, reviewed.

        Blocking, as Strands calls it synchronously. Nothing is pending, so both probes are extra
        model calls; they answer the invocation's last prompt again (or ``probe_prompt``).

        See `strands.agent.conversation_manager.ConversationManager.apply_management`.
        """
        if self._active is not None:
            self._inner.apply_management(agent, **kwargs)
            return
        self._replay.wire(agent)
        with self._routed(agent, END_OF_INVOCATION, must_reduce=False) as round_:
            self._inner.apply_management(agent, **kwargs)
        self._finish(round_)

    def reduce_context(self, agent: Agent, e: Exception | None = None, **kwargs: Any) -> None:
        """The inner's reduction, reviewed; after an overflow (`e` set) it must shrink: never a veto.

        After an overflow the full context is not probed (it just overflowed), and the winning
        probe answers the retried model call when it is the same request.

        See `strands.agent.conversation_manager.ConversationManager.reduce_context`.
        """
        if self._active is not None:
            self._inner.reduce_context(agent, e, **kwargs)
            return
        self._replay.wire(agent)
        path = OVERFLOW if e is not None else REDUCE
        with self._routed(agent, path, must_reduce=e is not None) as round_:
            self._inner.reduce_context(agent, e, **kwargs)
        self._finish(round_)

    def _router(self, group: HookRegistry) -> Any:
        """A hook callback that runs the inner's callbacks of one order as one routed round."""

        async def route(event: Any) -> None:
            agent = getattr(event, "agent", None)
            if agent is None or self._active is not None:
                _, interrupts = await group.invoke_callbacks_async(event)
            else:
                self._replay.wire(agent)
                path = BEFORE_MODEL_CALL if isinstance(event, BeforeModelCallEvent) else type(event).__name__
                state = getattr(event, "invocation_state", None)
                with self._routed(agent, path, must_reduce=False, invocation_state=state) as round_:
                    _, interrupts = await group.invoke_callbacks_async(event)
                await self._afinish(round_)
            if interrupts:
                raise InterruptException(interrupts[0])

        return route

    def _on_before_invocation(self, event: BeforeInvocationEvent) -> None:
        self._replay.clear(event.agent)  # a probe from the last invocation answers nothing now

    # ------------------------------------------------------------------ one routed call

    @contextmanager
    def _routed(self, agent: Agent, path: str, *, must_reduce: bool,
                invocation_state: dict[str, Any] | None = None) -> Iterator[_Round]:
        """Run the inner manager with its ``reduce_context`` gated; yields the round to finish."""
        inner = self._inner
        shallow = _Snapshot(list(agent.messages), inner.get_state(),
                            {name: getattr(inner, name) for name in _FLAGS if hasattr(inner, name)})
        round_ = _Round(agent, path, must_reduce, invocation_state, shallow)
        real = inner.reduce_context

        def gated(agent: Agent, e: Exception | None = None, **kwargs: Any) -> None:
            if round_.skipped:
                return
            if round_.snapshot is None:
                round_.gate = round_.gate or self._gate(round_)
                if not round_.gate.review:
                    round_.skipped = True  # a cooldown: the inner does not reduce (no summary paid for)
                    return
                # Enforce: a deep copy a veto restores. Audit: copies for the worker, reused where faithful.
                round_.snapshot = (_Snapshot.frozen(agent, inner, self._frozen) if round_.gate.audit
                                   else _Snapshot.deep(agent, inner))
            real(agent, e, **kwargs)

        shadowed = "reduce_context" in vars(inner)
        setattr(inner, "reduce_context", gated)  # noqa: B010 - an instance attribute shadows the method
        self._active = round_
        try:
            yield round_
        except BaseException as error:
            self._failed(round_, error)
            raise
        finally:
            self._active = None
            if shadowed:
                setattr(inner, "reduce_context", real)  # noqa: B010
            else:
                delattr(inner, "reduce_context")

    def _gate(self, round_: _Round, messages: Sequence[Any] | None = None) -> Gate:
        """The guard's gate for this step, asked before the inner reduces (`messages`: as they are now).

        In audit mode no cooldown is checked, so the step is left to the worker (it counts the
        assistant turns of the history it builds): nothing here walks the conversation.
        """
        messages = round_.agent.messages if messages is None else messages
        step = None if self._guard.mode == "audit" else assistant_turns(messages)
        return self._guard.gate(messages, conversation_id=self._conversation_id(round_.agent),
                                step=step, must_reduce=round_.must_reduce)

    def _conversation_id(self, agent: Agent) -> str:
        if self.conversation_id:
            return self.conversation_id
        return f"strands:{agent.session_id}:{agent.agent_id}"

    def _failed(self, round_: _Round, error: BaseException) -> None:
        """The inner raised while reducing: recorded (Strands then handles the error as it would)."""
        if round_.snapshot is None or not isinstance(error, Exception) or isinstance(error, InterruptException):
            return
        decision = self._guard.compaction_failed(list(round_.snapshot.messages), strategy=self.strategy, error=error,
                                                 conversation_id=self._conversation_id(round_.agent))
        self._guard.publish(decision)
        self._record(decision)

    # ------------------------------------------------------------------ reviewing what the inner did

    def _finish(self, round_: _Round) -> None:
        outcome = self._prepare(round_)
        if isinstance(outcome, _Skip):
            self._record(self._guard.skip(outcome.gate, outcome.before, strategy=self.strategy))
        elif outcome is not None:
            decision = self._guard.review(outcome.event, outcome.policy, gate=self._require_gate(round_),
                                          fallbacks=outcome.fallbacks)
            self._apply(outcome, decision)

    async def _afinish(self, round_: _Round) -> None:
        outcome = self._prepare(round_)
        if isinstance(outcome, _Skip):
            self._record(await self._guard.askip(outcome.gate, outcome.before, strategy=self.strategy))
        elif outcome is not None:
            decision = await self._guard.areview(outcome.event, outcome.policy, gate=self._require_gate(round_),
                                                 fallbacks=outcome.fallbacks)
            self._apply(outcome, decision)

    @staticmethod
    def _require_gate(round_: _Round) -> Gate:
        if round_.gate is None:  # _prepare asks it before any review; a guard for the invariant
            raise RuntimeError("a review without a gate")
        return round_.gate

    def _prepare(self, round_: _Round) -> _Review | _Skip | None:
        """What to do once the inner ran: nothing, publish a skip, or review its reduction."""
        agent = round_.agent
        if round_.skipped and round_.gate is not None:
            return _Skip(round_.gate, list(agent.messages))
        snapshot = round_.snapshot
        if snapshot is None:  # the inner changed the messages without its reduce_context (a custom manager)
            snapshot = round_.shallow
            if _same(agent.messages, snapshot.messages):
                return None
            round_.gate = self._gate(round_, snapshot.messages)  # asked after the fact: it already ran
            if not round_.gate.review:
                snapshot.restore(agent, self._inner)
                return _Skip(round_.gate, list(agent.messages))
        elif (len(agent.messages) == len(snapshot.messages)
              and _messages_key(agent.messages) == _messages_key(snapshot.messages)):
            return None  # nothing the model reads changed (say, only pins were set)
        return self._review(round_, snapshot)

    def _review(self, round_: _Round, snapshot: _Snapshot) -> _Review:
        agent, inner = round_.agent, self._inner
        gate = self._require_gate(round_)
        request = AgentRequest.of(agent, round_.invocation_state)
        view = StrandsView(request.system_prompt_text, shell_tools=self.shell_tools)
        summary = inner.get_state().get("summary_message")  # the summary a summarizing manager keeps
        candidate = list(agent.messages)
        if gate.audit:
            # Built and probed later, on the worker, which may lag behind the agent: everything it
            # reads is a private copy taken now (see `_FrozenCopies`: only new or edited messages
            # are deep-copied). The candidate's list is already the agent's new one, but its
            # messages are the agent's own: a later reduction edits them in place (a truncated
            # tool result), maybe before the worker reads them.
            if snapshot is round_.shallow:  # a manager that reduced outside reduce_context: not copied yet
                messages, before_summary = self._frozen.freeze(snapshot.messages, snapshot.summary)
                snapshot = _Snapshot(messages, {**snapshot.state, "summary_message": before_summary}, snapshot.flags)
            candidate, summary = self._frozen.freeze(candidate, summary)
        before = snapshot
        shown: dict[str, list[Any]] = {}
        tail: list[Any] = []

        def build() -> tuple[list[Any], list[Any]]:
            """Both views (O(n)): on the worker in audit mode, here in enforce mode."""
            shown["before"] = view.to_view(before.messages, summary=before.summary)
            if round_.path == END_OF_INVOCATION:  # nothing pending: the probes answer a prompt
                prompt = self.probe_prompt or _last_prompt(before.messages) or "Continue."
                tail.append({"role": "user", "content": [{"text": prompt}]})
            return shown["before"], view.to_view(candidate, summary=summary)

        fields: dict[str, Any] = {
            "strategy": self.strategy,
            # Enforce: the gate counted these messages' assistant turns before the inner ran.
            # Audit: None, counted on the worker from the history it builds.
            "step": gate.step,
            "conversation_id": gate.conversation_id,
            "metadata": {"framework": "strands", "manager": type(inner).__name__, "path": round_.path},
        }
        if gate.audit:
            event = CompactionEvent.deferred(build, **fields)
        else:
            full, reduced = build()
            event = CompactionEvent(before=full, candidate=reduced, **fields)
        probes = _Probes()

        async def policy(context: list[Any]) -> dict[str, Any]:
            if round_.must_reduce and _same(context, shown["before"]):
                raise ContextOverflowed("the full context overflowed the model's context window; not probed")
            record = await request.stream([*view.from_view(context), *tail])
            answer = view.response(record.message)
            probes.keep(answer, record)
            return answer

        fallbacks = bind_fallbacks(self.fallbacks, self._guard.fallbacks, agent, view)
        return _Review(round_, snapshot, view, event, policy, fallbacks, probes)

    def _apply(self, review: _Review, decision: Decision) -> None:
        """Make the agent hold what the guard chose, and offer the winning probe to the next call."""
        self._record(decision)
        if decision.verdict is Verdict.AUDIT:
            return  # the inner's reduction stands; the review runs in the background
        round_, inner = review.round, self._inner
        if decision.verdict is Verdict.VETO:
            review.snapshot.restore(round_.agent, inner)
        elif not _same(decision.messages, review.event.candidate):  # a fallback stands in for the reduction
            messages = review.view.from_view(decision.messages)
            kept = {id(message) for message in review.view.sources(decision.messages)}
            summary = review.snapshot.summary
            dropped = sum(1 for m in review.snapshot.messages if id(m) not in kept and m is not summary)
            review.snapshot.restore(round_.agent, inner, messages)
            inner.removed_message_count += dropped
        if round_.path in _REPLAYABLE:
            self._replay.offer(round_.agent, review.probes.record_for(decision.response))

    def _record(self, decision: Decision) -> None:
        self._last_decision = decision
        if self.on_decision is None:
            return
        try:
            self.on_decision(decision)
        except Exception as exc:  # noqa: BLE001 - a user hook must not break the agent
            logger.error("memguard: on_decision hook failed (%s)", type(exc).__name__)
