"""`MemGuardCompaction`: a Pydantic AI capability that guards another one's compaction.

Pydantic AI compaction capabilities (pydantic-ai-harness's `SlidingWindowCompaction`,
`ClearToolResults`, `SummarizingCompaction`, `TieredCompaction`, ...) apply themselves in
`before_model_request`: they rewrite the run's history (`ctx.messages[:] = ...`) and return the
request with the compacted messages. This wrapper runs the inner capability's hook itself, and
when the request changed it reviews the change with the guard before the model is called:

- the agent's own model is probed on the full and the compacted context (same tools, settings
  and output schema as the real request);
- commit keeps the compaction; veto restores the history and the request exactly as they were; a
  fallback (another compaction capability, or a memguard strategy) is applied instead;
- the probe on the winning context is served as the step's model response (`ReplayModel`), so a
  review costs one extra model call, and every other hook of the step still runs.

With `Guard(mode="audit")` the compaction is always applied: the real model call is observed (it
is the answer under the compacted context), the full context is probed concurrently, and the
guard scores both in the background. The run waits for its outstanding audit probes at its end.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from memguard import CompactionEvent, Decision, Guard, Message, Verdict
from pydantic_ai.capabilities import AbstractCapability, WrapperCapability
from pydantic_ai.messages import InstructionPart, ModelMessage, ModelResponse
from pydantic_ai.models import ModelRequestContext
from pydantic_ai.tools import AgentDepsT, RunContext
from pydantic_ai.usage import RunUsage

from pydantic_ai_memguard.fallbacks import CapabilityStrategy, check_compaction, strategy_name
from pydantic_ai_memguard.messages import MessageBridge
from pydantic_ai_memguard.probing import ObservedModel, ReplayModel, probe

__all__ = ["MemGuardCompaction"]

logger = logging.getLogger("memguard.pydantic_ai")


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
    """The model responses probed during one review, found again from the view message the guard saw."""

    def __init__(self, bridge: MessageBridge) -> None:
        self.bridge = bridge
        self.responses: list[tuple[Message, ModelResponse]] = []
        self.full: ModelResponse | None = None

    def keep(self, response: ModelResponse, *, full: bool) -> Message:
        message = self.bridge.response_view(response)
        self.responses.append((message, response))
        if full:
            self.full = response
        return message

    def response_for(self, message: Any) -> ModelResponse | None:
        return next((response for shown, response in self.responses if shown is message), None)


def _same(a: Sequence[Any], b: Sequence[Any]) -> bool:
    return len(a) == len(b) and all(x is y or x == y for x, y in zip(a, b, strict=True))


async def _resolve(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


class _Shared:
    """State every per-run copy of one `MemGuardCompaction` shares (Pydantic AI may copy capabilities per run)."""

    def __init__(self) -> None:
        self.last_decision: Decision | None = None
        self.audits: dict[str | None, list[tuple[asyncio.Task[None], ObservedModel]]] = {}
        self.lock = threading.Lock()


class MemGuardCompaction(WrapperCapability[AgentDepsT]):
    """Guard a compaction capability of a Pydantic AI agent with MemRM.

    Pass it *instead of* the compaction capability it wraps::

        Agent(model, capabilities=[MemGuardCompaction(SlidingWindowCompaction(max_messages=80), guard)])

    `fallbacks` are tried, in order, before the guard's own when the proposed compaction is judged
    harmful: other compaction capabilities (`ClearToolResults(...)`, a `SlidingWindowCompaction`
    that keeps more) or memguard strategies (`ObservationMasking()`, functions of memguard
    `Message` lists). `strategy` names the proposal in records and in MemRM's prompt (default: from
    the inner capability). `last_decision` holds the latest `Decision`; `on_decision` is called with
    each one (in audit mode with the pending record; the scored one reaches the guard's sinks).
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
        self.fallbacks = tuple(fallbacks)
        self.strategy = strategy or strategy_name(inner)
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

    # ------------------------------------------------------------------ the hook

    async def before_model_request(
        self, ctx: RunContext[AgentDepsT], request_context: ModelRequestContext
    ) -> ModelRequestContext:
        before = _Snapshot.take(ctx, request_context)
        proposed: ModelRequestContext = await _resolve(self.wrapped.before_model_request(ctx, request_context))
        if _same(proposed.messages, before.messages) and _same(ctx.messages, before.history):
            return proposed
        bridge = MessageBridge(_instructions(request_context))
        fields: dict[str, Any] = {
            "before": bridge.to_view(before.messages),
            "candidate": bridge.to_view(proposed.messages),
            "strategy": self.strategy,
            "metadata": {"framework": "pydantic_ai", "capability": type(self.wrapped).__name__, "run_id": ctx.run_id},
        }
        if ctx.conversation_id:  # else the guard tells conversations apart itself
            fields["conversation_id"] = ctx.conversation_id
        event = CompactionEvent(**fields)
        if self.guard.mode == "audit":
            return self._audit(ctx, proposed, before, bridge, event)
        return await self._enforce(ctx, request_context, proposed, before, bridge, event)

    async def _enforce(
        self,
        ctx: RunContext[AgentDepsT],
        request_context: ModelRequestContext,
        proposed: ModelRequestContext,
        before: _Snapshot,
        bridge: MessageBridge,
        event: CompactionEvent,
    ) -> ModelRequestContext:
        probes = _Probes(bridge)

        async def policy(messages: list[Message]) -> Message:
            full = _same(messages, event.before)
            if full:
                context = before.messages
            elif _same(messages, event.candidate):
                context = list(proposed.messages)
            else:
                context = bridge.from_view(messages)
            return probes.keep(await probe(proposed, context, ctx), full=full)

        decision = await self.guard.areview(event, policy, fallbacks=self._fallbacks_for(ctx, proposed, bridge))
        self._record(decision)
        if decision.verdict is Verdict.VETO:
            chosen = before.restore(ctx, request_context)
            response = probes.response_for(decision.response) or probes.full
        elif _same(decision.messages, event.candidate):  # the proposal itself, as the inner applied it
            chosen = proposed
            response = probes.response_for(decision.response)
        else:  # a fallback stands in for the proposal, in the request and, like it, in the history
            messages = bridge.from_view(decision.messages)
            if not _same(ctx.messages, before.history):
                ctx.messages[:] = messages
            chosen = replace(proposed, messages=messages)
            response = probes.response_for(decision.response)
        self._bill_unused_probes(ctx, probes, response)
        return chosen if response is None else replace(chosen, model=ReplayModel(chosen.model, response))

    def _fallbacks_for(
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

    @staticmethod
    def _bill_unused_probes(ctx: RunContext[AgentDepsT], probes: _Probes, used: ModelResponse | None) -> None:
        for _, response in probes.responses:
            if response is not used:
                _bill(ctx, response)

    # ------------------------------------------------------------------ audit mode

    def _audit(
        self,
        ctx: RunContext[AgentDepsT],
        proposed: ModelRequestContext,
        before: _Snapshot,
        bridge: MessageBridge,
        event: CompactionEvent,
    ) -> ModelRequestContext:
        observed = ObservedModel(proposed.model)
        recorded = asyncio.ensure_future(probe(proposed, before.messages, ctx))
        task = asyncio.ensure_future(self._submit_audit(ctx, event, bridge, recorded, observed))
        with self._shared.lock:
            self._shared.audits.setdefault(ctx.run_id, []).append((task, observed))
        return replace(proposed, model=observed)

    async def _submit_audit(
        self,
        ctx: RunContext[AgentDepsT],
        event: CompactionEvent,
        bridge: MessageBridge,
        recorded: asyncio.Future[ModelResponse],
        observed: ObservedModel,
    ) -> None:
        """Once both next steps are known, hand the event to the guard's background worker."""
        try:
            proposed = await observed.response
        except BaseException:  # noqa: BLE001 - the step never got its answer: there is nothing to judge
            recorded.cancel()
            return
        update: dict[str, Any] = {"proposed_response": bridge.response_view(proposed)}
        try:
            full = await recorded
        except Exception as exc:  # noqa: BLE001 - the guard records it as a failed probe on the full context
            failure = exc

            def failed_probe(messages: list[Any]) -> Any:
                raise failure

            self._record(await self.guard.areview(event.model_copy(update=update), failed_probe))
            return
        _bill(ctx, full)
        update["recorded_response"] = bridge.response_view(full)
        self._record(await self.guard.areview(event.model_copy(update=update)))

    async def wrap_run(self, ctx: RunContext[AgentDepsT], *, handler: Any) -> Any:
        try:
            return await super().wrap_run(ctx, handler=handler)
        finally:
            await self._drain_audits(ctx.run_id)

    async def _drain_audits(self, run_id: str | None) -> None:
        """Wait for this run's audit probes; a step that never reached the model has nothing to judge."""
        with self._shared.lock:
            pending = self._shared.audits.pop(run_id, [])
        for _, observed in pending:
            observed.response.cancel()
        if pending:
            await asyncio.gather(*(task for task, _ in pending), return_exceptions=True)

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


def _instructions(request_context: ModelRequestContext) -> str | None:
    parts = request_context.model_request_parameters.instruction_parts
    return InstructionPart.join(parts) if parts else None
