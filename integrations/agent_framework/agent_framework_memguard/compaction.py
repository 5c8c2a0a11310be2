"""`MemGuardCompaction`: an Agent Framework compaction strategy and chat middleware that guards another strategy.

Agent Framework compacts through one protocol, `CompactionStrategy`: ``async __call__(messages)
-> bool`` mutates the list in place (exclusion flags in `message.additional_properties`, summary
messages inserted) and says whether it changed it. The chat client applies it before every model
call of the tool loop (`Agent(compaction_strategy=...)`), and `CompactionProvider` around runs.

`MemGuardCompaction(inner, guard)` is such a strategy, and a `ChatMiddleware` too, so it sees the
request it guards. As middleware (put it last) it applies the run's compaction itself, before the
model call: it records the request (client, options, stream flag, client keywords, session), and
when the compaction reaches the guard it

1. asks the gate (cooldown, must-reduce) before the inner strategy runs;
2. records the list and every message's state, runs the inner strategy in place;
3. if it changed anything, reviews the included messages before against after (the run's
   instructions as the leading system turn), probing the model with the recorded request at the
   leaf (`_inner_get_response`);
4. commits (the inner's change stands), falls back (a safer strategy's result, applied in place),
   or vetoes: the same message objects in the same order, every flag and property as it was;
5. answers the model call with the winning probe when the request is the very one it probed, so a
   review costs one extra model call.

The framework is then told the request is compacted (it does not compact it again). Called by the
framework without a recorded request (`CompactionProvider`, or no middleware), it probes through
the `client=`/`options=` it was given, or raises a clear error.

In audit mode the inner's change always stands and no message is converted on the agent's path:
the event is `CompactionEvent.deferred`, its views built on the guard's worker from the lists of
included messages captured when the compaction ran.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from agent_framework import (
    ChatContext,
    ChatMiddleware,
    ChatResponse,
    TokenizerProtocol,
    apply_compaction,
    included_messages,
)
from agent_framework import (
    Message as AFMessage,
)
from agent_framework._compaction import annotate_message_groups
from memguard import OPENING_MESSAGES, CompactionEvent, Decision, Guard, Message, Verdict

from agent_framework_memguard import _core
from agent_framework_memguard.budget import InputBudget, find_input_budget, nested_strategies
from agent_framework_memguard.fallbacks import FrameworkFallback, apply_view, is_framework_strategy, strategy_name
from agent_framework_memguard.probing import Probe, Request
from agent_framework_memguard.state import ListState, Scratch
from agent_framework_memguard.views import from_view, is_summary, response_view, to_view

__all__ = ["MemGuardCompaction", "guard_agent"]

logger = logging.getLogger("memguard.agent_framework")


@dataclass
class _Call:
    """One model call the middleware is handling: its request and, after a review, the answer to serve.

    In audit mode `audit` holds the review to submit once the call's real response (the agent's
    step on the compacted context) is known.
    """

    request: Request
    serve: Probe | None = None
    audit: tuple[CompactionEvent, _Review, _core.Gate] | None = None


_CALL: ContextVar[_Call | None] = ContextVar("agent_framework_memguard_call", default=None)


class _Compacted:
    """Stands in for the run's strategy once the middleware has compacted the request: a no-op.

    It forwards what the framework reads from a strategy (`tokenizer`, `requires_client_managed_history`).
    """

    def __init__(self, strategy: Any) -> None:
        self.strategy = strategy
        self.tokenizer = getattr(strategy, "tokenizer", None)
        self.requires_client_managed_history = getattr(strategy, "requires_client_managed_history", False) is True

    async def __call__(self, messages: list[AFMessage]) -> bool:
        return False


@dataclass
class _Review:
    """The probes of one review, found again from the view turn the guard saw."""

    request: Request
    before: list[Message]
    candidate: list[Message]
    before_sent: list[AFMessage]
    after_sent: list[AFMessage]
    probes: list[tuple[Message, Probe]] = field(default_factory=list)
    full: Probe | None = None
    contexts: dict[tuple[int, ...], list[AFMessage]] = field(default_factory=dict)
    instructions: Any = None

    def build(self) -> tuple[list[Message], list[Message]]:
        """Both views, from the lists of included messages captured when the compaction ran.

        A deferred audit event's `build`: it runs on the guard's worker, off the agent's path. The
        views it makes are the ones `policy` recognises.
        """
        self.before = to_view(self.before_sent, self.instructions)
        self.candidate = to_view(self.after_sent, self.instructions)
        return self.before, self.candidate

    async def policy(self, view: list[Any]) -> Message:
        """The agent's next step on `view`: the recorded request, sent at the leaf."""
        key = _key(view)
        if key == _key(self.before):
            context = self.before_sent
        elif key == _key(self.candidate):
            context = self.after_sent
        else:
            context = self.contexts.setdefault(key, from_view(view))
        probe = await self.request.send(context)
        if context is self.before_sent:
            self.full = probe
        shown = response_view(probe.response)
        self.probes.append((shown, probe))
        return shown

    def probe_for(self, response: Any) -> Probe | None:
        return next((probe for shown, probe in self.probes if shown is response), None)


def _key(view: Sequence[Any]) -> tuple[int, ...]:
    return tuple(id(item) for item in view)


class MemGuardCompaction(ChatMiddleware):
    """Guard an Agent Framework compaction strategy with memguard (a strategy and a chat middleware).

    Use it as both, last among the chat middleware:

    ```python
    guarded = MemGuardCompaction(SlidingWindowStrategy(keep_last_groups=20), guard)
    agent = Agent(client, tools=tools, compaction_strategy=guarded, middleware=[..., guarded])
    ```

    or let `guard_agent(agent, guard)` wire both on an existing agent. As middleware it applies
    the run's compaction itself, before the model call, so it sees the request it guards: the
    gate is asked first (during a cooldown the inner strategy is not called); the inner strategy
    runs in place; a change is reviewed, probing the model with the recorded request; a veto puts
    back the same message objects in the same order, every flag and property as it was; and the
    model call is answered with the winning probe when it is the very request probed, so a review
    costs one extra model call. Over the input budget the review must reduce: it never vetoes.

    Args:
        inner: The compaction strategy to guard (any `CompactionStrategy`).
        guard: The memguard `Guard` that decides.
        fallbacks: Safer compactions tried in order when the proposal is judged harmful, before the
            guard's own chain: Agent Framework strategies (run on copies of the pre-proposal
            messages) or memguard strategies (`ObservationMasking()`, ...).
        strategy: The proposal's name in records and MemRM's prompt (default: from `inner`).
        on_decision: Called with each decision (in audit mode with the pending record).
        conversation_id: Keys the guard's cooldown; default: the run's `session.session_id`, else
            the guard derives one from the conversation's opening.
        client: The chat client to probe when the framework calls this strategy without a
            recorded request (`CompactionProvider`).
        options: The chat options (model settings, tools, instructions) for those probes.
        input_budget_tokens: Tokens the full context must fit: over it, the review may not veto.
            "auto" finds a wrapped `ContextWindowCompactionStrategy`'s budget; None: never.

    Raises:
        TypeError: For a `guard` that is not a memguard `Guard`, a non-callable `inner`, fallback
            or `on_decision`.
    """

    def __init__(
        self,
        inner: Any,
        guard: Guard,
        *,
        fallbacks: Sequence[Any] = (),
        strategy: str | None = None,
        on_decision: Callable[[Decision], Any] | None = None,
        conversation_id: str | None = None,
        client: Any = None,
        options: dict[str, Any] | None = None,
        input_budget_tokens: int | str | None = "auto",
    ) -> None:
        if not isinstance(guard, Guard):
            raise TypeError(f"guard must be a memguard.Guard, got {type(guard).__name__}")
        if not callable(inner):
            raise TypeError(f"inner must be a compaction strategy (async __call__(messages) -> bool), got "
                            f"{type(inner).__name__}")
        for fallback in fallbacks:
            if not callable(fallback):
                raise TypeError(f"a fallback must be a compaction strategy or a memguard strategy, got "
                                f"{type(fallback).__name__}")
        if on_decision is not None and not callable(on_decision):
            raise TypeError("on_decision must be callable")
        self.inner = inner
        """The guarded compaction strategy."""
        self.guard = guard
        """The guard that decides."""
        self.fallbacks = tuple(fallbacks)
        """This strategy's own fallbacks, tried before the guard's."""
        self.strategy = strategy or strategy_name(inner)
        """The proposal's name in records and MemRM's prompt."""
        self.on_decision = on_decision
        self.conversation_id = conversation_id
        self.client = client
        self.options = dict(options or {})
        self.input_budget: InputBudget | None = find_input_budget(inner, input_budget_tokens)
        self.last_decision: Decision | None = None
        """The latest decision (None before the first)."""

    def __repr__(self) -> str:
        return f"MemGuardCompaction({self.inner!r}, strategy={self.strategy!r}, mode={self.guard.mode!r})"

    # ------------------------------------------------------------------ what the framework reads

    @property
    def tokenizer(self) -> TokenizerProtocol | None:
        """The inner strategy's tokenizer (the framework counts tokens with it before compacting)."""
        tokenizer = getattr(self.inner, "tokenizer", None)
        return tokenizer if isinstance(tokenizer, TokenizerProtocol) else None

    @property
    def requires_client_managed_history(self) -> bool:
        """The inner strategy's requirement (the framework refuses service-managed history for it)."""
        return getattr(self.inner, "requires_client_managed_history", False) is True

    def __getattr__(self, name: str) -> Any:
        # `create_trigger_tool` exists exactly when the inner strategy has it (AgentTriggered-
        # CompactionStrategy asks a wrapped strategy for it with getattr).
        if name == "create_trigger_tool" and "inner" in vars(self):
            return getattr(self.inner, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    # ------------------------------------------------------------------ as chat middleware

    async def process(self, context: ChatContext, call_next: Callable[[], Awaitable[None]]) -> None:
        """Compact the request (guarded) before the model call, and serve the winning probe.

        A request whose compaction strategy is not this guard (nor wraps it) goes on untouched.
        The framework is then told the request is compacted, so it does not compact it again.
        In audit mode the call's real response is the proposed action, submitted for review once
        it is known (a streamed response when the stream is finalised).

        Args:
            context: The chat request (its `messages` are compacted in place).
            call_next: The rest of the pipeline (not called when the winning probe answers).
        """
        strategy = context.kwargs.get("compaction_strategy") or getattr(context.client, "compaction_strategy", None)
        if strategy is None or not any(s is self for s in nested_strategies(strategy)):
            await call_next()  # this request is not compacted by this guard
            return
        call = _Call(Request.from_context(context))
        token = _CALL.set(call)
        try:
            await apply_compaction(call.request.messages, strategy=strategy, tokenizer=call.request.tokenizer)
        finally:
            _CALL.reset(token)
        context.kwargs["compaction_strategy"] = _Compacted(strategy)  # compacted: not again downstream
        served = call.serve
        if served is not None and served.answers(included_messages(call.request.messages)):
            context.result = served.replay()
            return
        if call.audit is None:
            await call_next()
            return
        audit = call.audit
        if context.stream:  # the real response is known when the stream is finalised

            async def observe(final: Any) -> None:
                await self._submit_audit(audit, final)

            context.stream_result_hooks.append(observe)
            await call_next()
            return
        await call_next()
        if isinstance(context.result, ChatResponse):
            await self._submit_audit(audit, context.result)

    async def _submit_audit(self, audit: tuple[CompactionEvent, _Review, _core.Gate], response: Any) -> None:
        """Audit: the call's real response is the agent's step on the compacted context; the guard
        probes the full context and scores both in the background (one extra model call)."""
        event, review, decided = audit
        observed = event.model_copy(update={"proposed_response": response_view(response)})
        self._record(await _core.areview(self.guard, observed, review.policy, decided=decided, fallbacks=None))

    # ------------------------------------------------------------------ as compaction strategy

    async def __call__(self, messages: list[AFMessage]) -> bool:
        """Run the inner strategy on `messages` in place, guarded; True when the list changed.

        Args:
            messages: The list to compact (annotated by the framework, as for any strategy).

        Returns:
            Whether the list changed (False after a veto: it is exactly as it was).

        Raises:
            RuntimeError: Called without a recorded request and without `client=`.
        """
        call = _CALL.get()
        if call is not None and call.request.messages is messages:
            return await self._guarded(messages, call.request, call)
        return await self._guarded(messages, self._configured_request(messages), None)

    def _configured_request(self, messages: list[AFMessage]) -> Request:
        if self.client is None:
            raise RuntimeError(
                "MemGuardCompaction needs the request it guards to probe the model: add it to the agent's "
                "middleware as well (Agent(..., compaction_strategy=g, middleware=[..., g]) or guard_agent(agent, "
                "guard)), or, where no request exists (CompactionProvider), pass client= and options="
            )
        return Request(self.client, messages, dict(self.options))

    async def _guarded(self, messages: list[AFMessage], request: Request, call: _Call | None) -> bool:
        annotate_message_groups(messages)
        must_reduce = self.input_budget is not None and self.input_budget.exceeded(messages)
        before_sent = included_messages(messages)
        audit = self.guard.mode == "audit"
        # Audit converts nothing per message on the agent's path: the views are built on the
        # guard's worker (`CompactionEvent.deferred`). Enforce needs them now, for the review.
        before = None if audit else to_view(before_sent, request.instructions)
        conversation_id = self.conversation_id or getattr(request.session, "session_id", None)
        decided = _core.gate(self.guard, self._gate_view(before, before_sent, request, conversation_id),
                             conversation_id=conversation_id, step=_step_of(messages), must_reduce=must_reduce)
        if not decided.review:  # a cooldown (enforce only: an audit gate always reviews)
            before = before if before is not None else to_view(before_sent, request.instructions)
            self._record(await _core.askip(self.guard, decided, before, strategy=self.strategy))
            return False
        state = None if audit else ListState.take(messages)  # audit never undoes the inner's change
        try:
            changed = await self.inner(messages)
        except Exception as exc:
            # Audit converts `before` only now, on this failure path: the captured list holds the
            # same objects, whose view fields an inner strategy leaves alone (see `_audit_event`).
            before = before if before is not None else to_view(before_sent, request.instructions)
            failed = self.guard.compaction_failed(before, strategy=self.strategy, error=exc,
                                                  conversation_id=decided.conversation_id)
            await self.guard.apublish(failed)
            self._record(failed)
            if state is None:
                raise  # audit changes nothing: the run fails as it would unguarded
            state.restore()  # a failing compaction keeps the full context, recorded
            return False
        if not changed:
            return False
        after_sent = included_messages(messages)
        metadata = {"framework": "agent_framework", "strategy": type(self.inner).__name__, "must_reduce": must_reduce}
        if before is None or state is None:  # audit (enforce has both)
            if _key(before_sent) == _key(after_sent):
                return True  # bookkeeping only: the model is sent the very same messages
            review, event = self._audit_event(request, before_sent, after_sent, decided, metadata)
            if call is not None:
                call.audit = (event, review, decided)  # submitted once the model answered the compacted context
            else:
                self._record(await _core.areview(self.guard, event, review.policy, decided=decided, fallbacks=None))
            return True
        candidate = to_view(after_sent, request.instructions)
        if _same_view(before, candidate) and _key(before_sent) == _key(after_sent):
            return True  # bookkeeping only: the model is sent exactly what it was (nothing to review)
        review = _Review(request, before, candidate, before_sent, after_sent)
        event = CompactionEvent(before=review.before, candidate=review.candidate, strategy=self.strategy,
                                step=decided.step, conversation_id=decided.conversation_id, metadata=metadata)
        fallbacks = self._fallbacks_for(state, request)
        decision = await _core.areview(self.guard, event, review.policy, decided=decided, fallbacks=fallbacks)
        self._record(decision)
        served = self._apply(decision, messages, state, review, fallbacks)
        if call is not None and served is not None:
            for _, probe in review.probes:
                if probe is not served:
                    served.bill(probe)  # the run's usage counts every request the provider billed
            call.serve = served
        return decision.verdict is not Verdict.VETO

    @staticmethod
    def _gate_view(before: list[Message] | None, before_sent: list[AFMessage], request: Request,
                   conversation_id: str | None) -> list[Message] | None:
        """What the gate reads of the context: the full view when there is one (enforce), else none
        when the conversation is named, else only the opening the guard derives an id from.

        An audit gate never checks a cooldown, so with a conversation id it reads no message; without
        one it hashes the first `OPENING_MESSAGES` turns (`conversation_key`). `to_view` gives every
        message at least one turn, message by message, so the view of that many leading messages
        opens exactly like the full view.
        """
        if before is not None or conversation_id is not None:
            return before
        return to_view(before_sent[:OPENING_MESSAGES], request.instructions)

    def _audit_event(self, request: Request, before_sent: list[AFMessage], after_sent: list[AFMessage],
                     decided: _core.Gate, metadata: dict[str, Any]) -> tuple[_Review, CompactionEvent]:
        """The review and its deferred event: the views are built on the guard's worker.

        What the worker reads is captured now: the two lists of included messages (references,
        taken when the compaction ran; the agent's list goes on changing, these do not) and the
        instructions. `to_view` reads each message's role, its contents (text, calls, results) and
        its summary annotation. Agent Framework never edits those on a message already in the
        history: its strategies flag messages excluded and insert new ones, and re-annotating a
        group rewrites only the flags and the group bookkeeping (keeping `_summary_of_message_ids`).
        Copying every message here would be the per-message work audit mode keeps off the agent's
        path. A strategy of your own that rewrites a message's contents in place is therefore seen
        after its edit on both sides (and, keeping the same included messages, as bookkeeping).
        """
        review = _Review(request, [], [], before_sent, after_sent, instructions=request.instructions)
        event = CompactionEvent.deferred(review.build, strategy=self.strategy, step=decided.step,
                                         conversation_id=decided.conversation_id, metadata=metadata)
        return review, event

    def _fallbacks_for(self, state: ListState, request: Request) -> tuple[Any, ...] | None:
        """This guard's fallbacks bound to this request, before the guard's own chain."""
        if not self.fallbacks:
            return None
        tokenizer = request.tokenizer
        bound = [FrameworkFallback(f, state, request.instructions, tokenizer) if is_framework_strategy(f) else f
                 for f in self.fallbacks]
        return (*bound, *self.guard.fallbacks)

    def _apply(self, decision: Decision, messages: list[AFMessage], state: ListState, review: _Review,
               fallbacks: Sequence[Any] | None) -> Probe | None:
        """Make `messages` what the decision chose; the probe that answers it, if any."""
        probe = review.probe_for(decision.response)
        if decision.verdict is Verdict.VETO:
            state.restore()
            return probe or review.full
        if _key(decision.messages) == _key(review.candidate):
            return probe  # the proposal, as the inner strategy applied it
        state.restore()
        scratch: Scratch | None = next(
            (s for f in fallbacks or () if isinstance(f, FrameworkFallback)
             and (s := f.scratch_for(decision.messages)) is not None), None)
        if scratch is not None:
            scratch.transplant(messages)
            if probe is not None:
                probe.sent = [scratch.original(m) for m in probe.sent]
            return probe
        context = review.contexts.setdefault(_key(decision.messages), from_view(decision.messages))
        apply_view(messages, decision.messages, context, name=decision.strategy or "fallback")
        return probe

    def _record(self, decision: Decision) -> None:
        self.last_decision = decision
        if self.on_decision is None:
            return
        try:
            self.on_decision(decision)
        except Exception as exc:  # noqa: BLE001 - a user hook must not break the agent
            logger.error("memguard: on_decision hook failed (%s)", type(exc).__name__)


def _same_view(a: list[Message], b: list[Message]) -> bool:
    return len(a) == len(b) and all(x.model_dump() == y.model_dump() for x, y in zip(a, b, strict=True))


def _step_of(messages: Sequence[AFMessage]) -> int:
    """The agent's step: its own turns in the whole list (excluded ones too, summaries not).

    It only grows while a conversation goes on, whatever a compaction hid, so the guard's cooldown
    counts real steps.
    """
    return sum(1 for m in messages if m.role == "assistant" and not is_summary(m))


def guard_agent(agent: Any, guard: Guard, **options: Any) -> MemGuardCompaction:
    """Guard an existing agent's compaction: wire one `MemGuardCompaction` as its strategy and middleware.

    Args:
        agent: An `agent_framework.Agent` with a `compaction_strategy` (its own or its client's).
        guard: The memguard `Guard` that decides.
        **options: `MemGuardCompaction` keywords (`fallbacks`, `strategy`, `on_decision`, ...).

    Returns:
        The guard strategy now installed on `agent`.

    Raises:
        ValueError: When the agent has no compaction strategy, or it is already guarded.
    """
    inner = getattr(agent, "compaction_strategy", None) or getattr(getattr(agent, "client", None),
                                                                    "compaction_strategy", None)
    if inner is None:
        raise ValueError("the agent has no compaction_strategy to guard (Agent(..., compaction_strategy=...))")
    if any(isinstance(s, MemGuardCompaction) for s in nested_strategies(inner)):
        raise ValueError("the agent's compaction is already guarded by memguard")
    guarded = MemGuardCompaction(inner, guard, **options)
    agent.compaction_strategy = guarded
    agent.middleware = [*(agent.middleware or []), guarded]
    return guarded
