"""`MemGuardCompaction`: a Pydantic AI capability that guards another one's compaction.

Pydantic AI compacts a history in one of two hooks, and this wrapper guards both:

- `before_model_request` (pydantic-ai-harness's `SlidingWindowCompaction`, `ClearToolResults`,
  `SummarizingCompaction`, a `ProcessHistory`, ...): the capability rewrites the run's history and
  returns the request with the compacted messages. The wrapper runs the inner hook itself and,
  when the request changed, reviews the change before the model is called.
- `compact_history` (pydantic-ai-slim 2.78+: `NativeCompaction`, a summarizer of your own): core
  asks for a `CompactionResult` when compaction was requested or the model refused the context.
  The wrapper asks the inner capability, reviews its result, and answers with that very result
  (commit), `None` (veto: core sends the uncompacted request), or a fallback's `CompactionResult`.

Either way the guard's gate is asked first (a conversation cooling down after a veto is not
compacted, and the inner hook is not called); the agent's own model is probed on the full and
the compacted context with the request the loop would send (same model, settings, tools and
output schema); and the winning probe is served as the loop's own next request when it is the
same request (`ServingModel`), so a review costs one extra model call. A context overflow must
reduce: that review never vetoes. With `Guard(mode="audit")`, and for a provider's encrypted
compaction memguard cannot read, the compaction always applies and is scored in the background,
unbilled and unseen by the run.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from memguard import CompactionEvent, Decision, Gate, Guard, Message, Verdict, as_strategy
from pydantic_ai.capabilities import AbstractCapability, WrapperCapability
from pydantic_ai.messages import InstructionPart, ModelMessage, ModelResponse
from pydantic_ai.models import Model, ModelRequestContext, ModelRequestParameters
from pydantic_ai.settings import ModelSettings
from pydantic_ai.tools import AgentDepsT, RunContext
from pydantic_ai.usage import RunUsage

from pydantic_ai_memguard.fallbacks import (
    CapabilityStrategy,
    HistoryCompactionStrategy,
    ResultStrategy,
    check_compaction,
    compacts_history,
    strategy_name,
)
from pydantic_ai_memguard.messages import MessageBridge
from pydantic_ai_memguard.probing import Observed, Probe, ProbeServer, ServingModel, probe
from pydantic_ai_memguard.requests import outgoing, request_key

__all__ = ["ContextOverflow", "MemGuardCompaction"]

logger = logging.getLogger("memguard.pydantic_ai")


class ContextOverflow(RuntimeError):
    """The full context cannot be probed: the model refused it for exceeding its context window.

    Raised, instead of sending that very request again, by the full-context probe of a
    must-reduce review (``reason == "context_overflow"``). The review then has nothing to compare
    against: the compaction is committed unscored, and the decision's `error` says why.
    """


@dataclass(frozen=True)
class _Target:
    """The request a probe copies: model, settings and parameters; streamed like the run."""

    model: Model
    settings: ModelSettings | None
    parameters: ModelRequestParameters
    stream: bool = False
    run_context: RunContext[Any] | None = None

    async def probe(self, messages: Sequence[ModelMessage]) -> Probe:
        return await probe(self.model, messages, self.settings, self.parameters, stream=self.stream,
                           run_context=self.run_context)


@dataclass
class _Snapshot:
    """The request and history as they were before the inner compaction ran."""

    history: list[ModelMessage]
    messages: list[ModelMessage]
    messages_list: list[ModelMessage]  # the request's own list object (its type matters to Pydantic AI)
    fields: dict[str, Any]

    @classmethod
    def take(cls, ctx: RunContext[Any], request_context: ModelRequestContext) -> _Snapshot:
        return cls(
            list(ctx.messages),
            list(request_context.messages),
            request_context.messages,
            {name: getattr(request_context, name) for name in ("model", "model_settings", "model_request_parameters")},
        )

    def restore(self, ctx: RunContext[Any], request_context: ModelRequestContext) -> ModelRequestContext:
        """History and request exactly as they were (the inner's changes undone)."""
        ctx.messages[:] = self.history
        if list(self.messages_list) != self.messages:
            self.messages_list[:] = self.messages
        request_context.messages = self.messages_list
        for name, value in self.fields.items():
            setattr(request_context, name, value)
        return request_context


class _Probes:
    """The probes of one review, found again from the view message the guard saw."""

    def __init__(self, bridge: MessageBridge) -> None:
        self.bridge = bridge
        self.probes: list[tuple[Message, Probe]] = []
        self.full: Probe | None = None

    def keep(self, kept: Probe, *, full: bool) -> Message:
        message = self.bridge.response_view(kept.response)
        self.probes.append((message, kept))
        if full:
            self.full = kept
        return message

    def probe_for(self, message: Any) -> Probe | None:
        return next((kept for shown, kept in self.probes if shown is message), None)


def _same(a: Sequence[Any], b: Sequence[Any]) -> bool:
    return len(a) == len(b) and all(x is y or x == y for x, y in zip(a, b, strict=True))


async def _resolve(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


class _Shared:
    """State every per-run copy of one `MemGuardCompaction` shares (Pydantic AI may copy capabilities per run)."""

    def __init__(self) -> None:
        self.last_decision: Decision | None = None
        self.server = ProbeServer()
        self.audits: dict[str | None, list[asyncio.Task[None]]] = {}
        self.lock = threading.Lock()


class MemGuardCompaction(WrapperCapability[AgentDepsT]):
    """Guard a compaction capability of a Pydantic AI agent with MemRM.

    Pass it *instead of* the compaction capability it wraps:

    ```python
    Agent(model, capabilities=[MemGuardCompaction(SlidingWindowCompaction(max_messages=80), guard)])
    ```

    The inner capability compacts in `before_model_request` (pydantic-ai-harness) or in
    `compact_history` (pydantic-ai-slim 2.78+); the wrapper handles compaction requests only
    when its inner capability does. The gate is asked first (a conversation cooling down after a
    veto is not compacted, and the inner hook is not called); the agent's own model is probed on
    the full and the compacted context with the request the loop would send; the winning probe
    answers the run's same next request (`ServingModel`), so a review costs one extra model call.
    A context overflow must reduce: that review never vetoes. In audit mode, and for a provider's
    encrypted compaction memguard cannot read, the compaction always applies and is scored in the
    background, unbilled and unseen by the run.

    Args:
        inner: The compaction capability to guard.
        guard: The guard (its mode, cooldown, fallbacks and sinks apply).
        fallbacks: Tried, in order, before the guard's own when the proposal is judged harmful:
            compaction capabilities (``ClearToolResults(...)``, one with its own
            `compact_history`) or memguard strategies (``ObservationMasking()``, functions of
            memguard `Message` lists).
        strategy: The proposal's name in records and in MemRM's prompt (default: from the inner
            capability, see `strategy_name`).
        on_decision: Called with each decision; in audit mode with the pending record (the
            scored one reaches the guard's sinks). An exception it raises is logged, never raised
            into the run.

    Raises:
        TypeError: `guard` is not a `Guard`; `inner` or a capability fallback compacts nothing; a
            fallback is neither a capability nor callable; or `on_decision` is not callable.
    """

    def __init__(
        self,
        inner: AbstractCapability[AgentDepsT],
        guard: Guard,
        *,
        fallbacks: Sequence[Any] = (),
        strategy: str | None = None,
        on_decision: Callable[[Decision], Any] | None = None,
    ) -> None:
        if not isinstance(guard, Guard):
            raise TypeError(f"guard must be a memguard.Guard, got {type(guard).__name__}")
        check_compaction(inner)
        for fallback in fallbacks:
            if isinstance(fallback, AbstractCapability):
                check_compaction(fallback, "a fallback")
            elif not callable(fallback):
                raise TypeError(
                    f"a fallback must be a compaction capability or a memguard strategy, got {type(fallback).__name__}"
                )
        if on_decision is not None and not callable(on_decision):
            raise TypeError("on_decision must be callable")
        self.guard = guard
        """The guard that reviews each compaction."""
        self.fallbacks = tuple(fallbacks)
        """This capability's own fallbacks, tried before the guard's."""
        self.strategy = strategy or strategy_name(inner)
        """The proposal's name in records and in MemRM's prompt."""
        self.on_decision = on_decision
        self._shared = _Shared()
        super().__init__(wrapped=inner)

    @property
    def last_decision(self) -> Decision | None:
        """The latest decision (in audit mode: the pending record of the latest compaction)."""
        return self._shared.last_decision

    @property
    def inner(self) -> AbstractCapability[AgentDepsT]:
        """The guarded compaction capability (computed, so it follows a per-run rebind)."""
        return self.wrapped

    def __repr__(self) -> str:
        return f"MemGuardCompaction({self.wrapped!r}, strategy={self.strategy!r}, mode={self.guard.mode!r})"

    # ------------------------------------------------------------------ which hooks Pydantic AI calls

    @property
    def _has_compact_history(self) -> bool:
        """Compaction requests are handled only when the inner capability handles them."""
        return compacts_history(self.wrapped)

    def _handles_compact_history(self, ctx: RunContext[AgentDepsT]) -> bool:
        handles = getattr(self.wrapped, "_handles_compact_history", None)
        return bool(handles(ctx)) if callable(handles) else False

    def get_wrapper_model(self, model: Model) -> Model | None:
        """Put a `ServingModel` in front of the model, so a review's winning probe answers the run's same request.

        See `pydantic_ai.capabilities.AbstractCapability.get_wrapper_model`.

        Returns:
            A `ServingModel` around the inner capability's wrapper model (or `model` itself).
        """
        return ServingModel(self.wrapped.get_wrapper_model(model) or model, self._shared.server)

    # ------------------------------------------------------------------ the before_model_request kind

    async def before_model_request(
        self, ctx: RunContext[AgentDepsT], request_context: ModelRequestContext
    ) -> ModelRequestContext:
        """Guard a compaction the inner capability makes in `before_model_request`.

        The gate is asked first: during a cooldown the inner hook is not called and the request
        goes unchanged. Otherwise the inner hook runs; when it changed the request or the history,
        the change is reviewed before the model is called. A veto restores the history and the
        request exactly as they were; a fallback's messages replace the proposal's, in the request
        and, like the proposal, in the history. The winning probe waits for the run's next
        request. In audit mode the proposal is sent as it is and scored in the background.

        See `pydantic_ai.capabilities.AbstractCapability.before_model_request`.

        Returns:
            The request to send: the proposal's, a fallback's, or the uncompacted one.
        """
        # An inner capability that compacts in compact_history only asks for compaction here.
        parameters = request_context.model_request_parameters
        gate = None if compacts_history(self.wrapped) else self._gate(ctx, request_context.messages, parameters)
        if gate is not None and not gate.review:  # cooling down: the inner compaction is not even asked
            await self._skip(gate, request_context.messages, parameters)
            return request_context
        before = _Snapshot.take(ctx, request_context)
        proposed: ModelRequestContext = await _resolve(self.wrapped.before_model_request(ctx, request_context))
        if _same(proposed.messages, before.messages) and _same(ctx.messages, before.history):
            return proposed
        if gate is None:
            gate = self._gate(ctx, before.messages, parameters)
            if not gate.review:
                await self._skip(gate, before.messages, parameters)
                return before.restore(ctx, request_context)
        bridge = MessageBridge(_instructions(parameters))
        target = _Target(proposed.model, proposed.model_settings or None, proposed.model_request_parameters,
                         stream=request_context.streaming, run_context=ctx)
        if gate.audit:
            self._audit(ctx, gate, target, bridge, before.messages, list(proposed.messages))
            return proposed
        event = self._event(ctx, gate, bridge, before.messages, proposed.messages)
        probes = _Probes(bridge)

        async def policy(messages: list[Message]) -> Message:
            full = _same(messages, event.before)
            if full:
                context = before.messages
            elif _same(messages, event.candidate):
                context = list(proposed.messages)
            else:
                context = bridge.from_view(messages)
            return probes.keep(await target.probe(context), full=full)

        decision = await self.guard.areview(event, policy, gate=gate,
                                            fallbacks=self._request_fallbacks(ctx, proposed, bridge))
        self._record(decision)
        if decision.verdict is Verdict.VETO:
            chosen = before.restore(ctx, request_context)
            winner = probes.probe_for(decision.response) or probes.full
        elif _same(decision.messages, event.candidate):  # the proposal itself, as the inner applied it
            chosen = proposed
            winner = probes.probe_for(decision.response)
        else:  # a fallback stands in for the proposal, in the request and, like it, in the history
            messages = bridge.from_view(decision.messages)
            if not _same(ctx.messages, before.history):
                ctx.messages[:] = messages
            chosen = replace(proposed, messages=messages)
            winner = probes.probe_for(decision.response)
        self._serve(ctx, probes, winner)
        return chosen

    def _request_fallbacks(
        self, ctx: RunContext[AgentDepsT], request_context: ModelRequestContext, bridge: MessageBridge
    ) -> tuple[Any, ...] | None:
        """This capability's fallbacks bound to this request, before the guard's own chain."""
        if not self.fallbacks:
            return None
        bound = [
            CapabilityStrategy(fallback, bridge, ctx, request_context, strategy_name(fallback))
            if isinstance(fallback, AbstractCapability)
            else fallback
            for fallback in self.fallbacks
        ]
        return (*bound, *self.guard.fallbacks)

    # ------------------------------------------------------------------ the compact_history kind (2.78+)

    async def compact_history(self, ctx: RunContext[AgentDepsT], request: Any) -> Any:
        """Review the inner capability's `CompactionResult` (pydantic-ai-slim 2.78+).

        Core asks for a compaction when one was requested or the model refused the context. The
        gate is asked first (during a cooldown the inner hook is not called); the inner's result
        is then reviewed. An encrypted provider compaction is only audited: it is always kept. A
        context overflow (``reason == "context_overflow"``) must reduce: that review never vetoes.

        See `pydantic_ai.capabilities.AbstractCapability.compact_history`.

        Returns:
            The inner's result (commit), a fallback's `CompactionResult`, or None (veto,
            cooldown, or the inner declined): core then sends the uncompacted request.
        """
        if not compacts_history(self.wrapped):
            return None
        must_reduce = request.reason == "context_overflow"
        conversation = request.conversation_request
        gate = self._gate(ctx, request.messages, conversation.parameters, must_reduce=must_reduce)
        if not gate.review:  # cooling down: the inner compaction is not even asked
            await self._skip(gate, request.messages, conversation.parameters)
            return None
        inner: Any = self.wrapped  # a 2.78+ capability: the hook is not in every supported Pydantic AI
        result = await inner.compact_history(ctx, request)
        if result is None:
            return None
        from pydantic_ai_memguard.results import is_opaque

        bridge = MessageBridge(_instructions(conversation.parameters))
        target = _Target(conversation.model, conversation.settings, conversation.parameters)
        details = {"handler": result.handler, "reason": request.reason}
        if gate.audit or is_opaque(result.part):  # an encrypted summary cannot be judged, only recorded
            if not gate.audit:
                gate = self._gate(ctx, request.messages, conversation.parameters, must_reduce=must_reduce, audit=True)
            self._audit(ctx, gate, target, bridge, list(request.messages), list(result.messages), **details)
            return result
        event = self._event(ctx, gate, bridge, request.messages, result.messages, **details)
        probes = _Probes(bridge)

        async def policy(messages: list[Message]) -> Message:
            full = _same(messages, event.before)
            if full and must_reduce:  # the very request the model just refused: not sent again
                raise ContextOverflow("the model refused the full context for exceeding its context window")
            if full:
                context = request.messages
            elif _same(messages, event.candidate):
                context = result.messages
            else:
                context = bridge.from_view(messages)
            return probes.keep(await target.probe(context), full=full)

        fallbacks = self._history_fallbacks(ctx, request, bridge)
        decision = await self.guard.areview(event, policy, gate=gate, fallbacks=fallbacks)
        self._record(decision)
        winner = probes.probe_for(decision.response)
        if decision.verdict is Verdict.VETO and must_reduce:
            # Core re-raises the overflow on None; a must-reduce review does not veto, so this is a core fault.
            logger.error("memguard: a must-reduce review vetoed; keeping the compaction (the context must shrink)")
            chosen = result
        elif decision.verdict is Verdict.VETO:
            chosen, winner = None, winner or probes.full
        elif _same(decision.messages, event.candidate):
            chosen = result
        else:
            chosen = self._fallback_result(decision, bridge, request, fallbacks)
        self._serve(ctx, probes, winner)
        return chosen

    def _history_fallbacks(self, ctx: RunContext[AgentDepsT], request: Any, bridge: MessageBridge) -> tuple[Any, ...]:
        """Every fallback (this capability's, then the guard's) as a producer of a valid `CompactionResult`."""
        out: list[Any] = []
        for fallback in (*self.fallbacks, *self.guard.fallbacks):
            if isinstance(fallback, AbstractCapability):
                name = strategy_name(fallback)
                if compacts_history(fallback):
                    out.append(HistoryCompactionStrategy(fallback, bridge, ctx, request, name))
                    continue
            else:
                name = as_strategy(fallback).name
            out.append(ResultStrategy(fallback, bridge, ctx, request, name))
        return tuple(out)

    @staticmethod
    def _fallback_result(decision: Decision, bridge: MessageBridge, request: Any, fallbacks: Sequence[Any]) -> Any:
        """The `CompactionResult` of the fallback the guard chose: a capability's own, or memguard's."""
        from pydantic_ai_memguard.results import as_result

        messages = bridge.from_view(decision.messages)
        parts = {id(part) for message in messages for part in message.parts}
        for fallback in fallbacks:
            for part_id, result in getattr(fallback, "results", {}).items():
                if part_id in parts and _same(result.messages, messages):
                    return result
        return as_result(messages, request.messages, handler=f"memguard:{decision.strategy}")

    # ------------------------------------------------------------------ both kinds

    def _gate(self, ctx: RunContext[AgentDepsT], messages: Sequence[ModelMessage], parameters: ModelRequestParameters,
              *, must_reduce: bool = False, audit: bool | None = None) -> Gate:
        """The core's gate for this step, asked before the inner compaction runs.

        The conversation is the run's `conversation_id` (Pydantic AI gives every run one); only a
        run without one costs a view of the context, from which the core derives an id.
        """
        step = sum(isinstance(message, ModelResponse) for message in messages)  # the view's assistant turns
        before = None if ctx.conversation_id else MessageBridge(_instructions(parameters)).to_view(messages)
        return self.guard.gate(before, conversation_id=ctx.conversation_id or None, step=step,
                               must_reduce=must_reduce, audit=audit)

    def _event(self, ctx: RunContext[AgentDepsT], gate: Gate, bridge: MessageBridge,
               before: Sequence[ModelMessage], candidate: Sequence[ModelMessage], **details: Any) -> CompactionEvent:
        fields: dict[str, Any] = {
            "before": bridge.to_view(before),
            "candidate": bridge.to_view(candidate),
            "strategy": self.strategy,
            "step": gate.step,
            "metadata": {"framework": "pydantic_ai", "capability": type(self.wrapped).__name__, "run_id": ctx.run_id,
                         **details},
        }
        if gate.conversation_id:  # else the guard tells conversations apart itself
            fields["conversation_id"] = gate.conversation_id
        return CompactionEvent(**fields)

    async def _skip(self, gate: Gate, messages: Sequence[ModelMessage], parameters: ModelRequestParameters) -> None:
        """Publish the skip: the context stays as it is, and the inner compaction was not asked."""
        before = MessageBridge(_instructions(parameters)).to_view(messages)
        self._record(await self.guard.askip(gate, before, strategy=self.strategy))

    def _serve(self, ctx: RunContext[AgentDepsT], probes: _Probes, winner: Probe | None) -> None:
        """Offer the winning probe to the run's next request; the run's usage counts every other probe."""
        for _, kept in probes.probes:
            if kept is not winner:
                _bill(ctx, kept.response)
        if winner is not None:
            self._shared.server.offer(ctx.run_id, winner)

    # ------------------------------------------------------------------ audit mode

    def _audit(self, ctx: RunContext[AgentDepsT], gate: Gate, target: _Target, bridge: MessageBridge,
               before: list[ModelMessage], candidate: list[ModelMessage], **details: Any) -> None:
        """Score the compaction in the background; the run sees none of it (no usage, no stream, no state)."""
        watch = self._shared.server.watch(ctx.run_id)  # the run's own next request: the compacted step
        isolated = _Target(target.model, target.settings, target.parameters)  # no stream, no run context
        job = self._audit_job(ctx, gate, isolated, bridge, before, candidate, watch, details)
        task = asyncio.get_running_loop().create_task(job, context=contextvars.Context())
        with self._shared.lock:
            self._shared.audits.setdefault(ctx.run_id, []).append(task)

    async def _audit_job(self, ctx: RunContext[AgentDepsT], gate: Gate, target: _Target,
                         bridge: MessageBridge, before: list[ModelMessage], candidate: list[ModelMessage],
                         watch: asyncio.Future[Observed], details: dict[str, Any]) -> None:
        full = asyncio.ensure_future(target.probe(before))
        await asyncio.wait({watch})  # cancelled at the run's end when it made no further request
        observed = None if watch.cancelled() or watch.exception() is not None else watch.result()
        # The views and the match keys are CPU work in proportion to the context: off the agent's loop.
        event, reused = await asyncio.to_thread(
            self._audit_view, ctx, gate, bridge, target, before, candidate, observed, details)
        update: dict[str, Any] = {}
        failure: BaseException | None = None
        try:
            compacted = reused if reused is not None else (await target.probe(candidate)).response
            update["proposed_response"] = bridge.response_view(compacted)
            update["recorded_response"] = bridge.response_view((await full).response)
        except Exception as exc:  # noqa: BLE001 - the guard records it as a failed probe
            failure = exc
            full.cancel()

        def failed_probe(messages: list[Any]) -> Any:
            assert failure is not None
            raise failure

        audited = event.model_copy(update=update)  # the gate says audit: the guard scores it on its worker
        self._record(await self.guard.areview(audited, None if failure is None else failed_probe, gate=gate))

    def _audit_view(self, ctx: RunContext[AgentDepsT], gate: Gate, bridge: MessageBridge, target: _Target,
                    before: list[ModelMessage], candidate: list[ModelMessage], observed: Observed | None,
                    details: dict[str, Any]) -> tuple[CompactionEvent, ModelResponse | None]:
        """The event, and the run's own answer on the compacted context when its next request was that one."""
        event = self._event(ctx, gate, bridge, before, candidate, **details)
        if observed is None:
            return event, None
        sent, parameters = outgoing(target.model, candidate, target.settings, target.parameters)
        expected = request_key(target.model, sent, target.settings, parameters)
        seen = request_key(target.model, observed.messages, observed.settings, observed.parameters)
        return event, observed.response if seen == expected else None

    async def wrap_run(self, ctx: RunContext[AgentDepsT], *, handler: Any) -> Any:
        """Run the agent run, then settle what memguard left for it.

        A winning probe the run never asked for is billed to the run's usage (it was a real
        request), and the run's audit reviews are awaited: their probes run on the run's event
        loop, which may close when the run ends.

        See `pydantic_ai.capabilities.AbstractCapability.wrap_run`.

        Returns:
            The run's result, as the inner capability's `wrap_run` returns it.
        """
        try:
            return await super().wrap_run(ctx, handler=handler)
        finally:
            for unserved in self._shared.server.finish(ctx.run_id):  # a probe the run never asked for
                _bill(ctx, unserved.response)
            await self._drain_audits(ctx.run_id)

    async def _drain_audits(self, run_id: str | None) -> None:
        """Wait for this run's audit probes (they run on its loop, which may close when it ends)."""
        with self._shared.lock:
            pending = self._shared.audits.pop(run_id, [])
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    # ------------------------------------------------------------------ shared

    def _record(self, decision: Decision) -> None:
        self._shared.last_decision = decision
        if self.on_decision is None:
            return
        try:
            self.on_decision(decision)
        except Exception as exc:  # noqa: BLE001 - a user hook must not break the agent
            logger.error("memguard: on_decision hook failed (%s)", type(exc).__name__)


def _bill(ctx: RunContext[Any], response: ModelResponse) -> None:
    """A probe that is not the step's response was still a real request: the run's usage counts it."""
    ctx.usage.incr(RunUsage(requests=1))
    ctx.usage.incr(response.usage)


def _instructions(parameters: ModelRequestParameters) -> str | None:
    parts = parameters.instruction_parts
    return InstructionPart.join(parts) if parts else None
