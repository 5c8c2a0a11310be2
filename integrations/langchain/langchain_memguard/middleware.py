"""`MemGuardMiddleware`: guard a compaction middleware of a `create_agent` agent.

Enforce mode. The guard must own the compaction call: once `RemoveMessage(REMOVE_ALL_MESSAGES)`
reaches the state, nothing downstream can see what was removed. So the inner middleware is *not*
registered with the agent; at every model call this middleware

1. asks the guard's gate first (`Guard.gate`): during a cooldown after a veto it does not run the
   inner compaction at all (no summariser call, no context edit) and sends the full context;
2. runs the inner compaction: `before_model` for a state compaction (`SummarizationMiddleware`),
   or `wrap_model_call` for a request edit (`ContextEditingMiddleware`, which edits a copy of
   the request at every call and never the state: guarded per call, with the same rules);
3. probes the agent's own model through `handler` on both contexts (see `probes`); the probe on
   the context that wins *is* the step's response (one extra model call per review, never two):
   - commit / fallback of a state compaction: the response is returned with
     ``Command(update={"messages": [RemoveMessage(REMOVE_ALL_MESSAGES), *chosen, *response]})``
     (`create_agent` applies that command *after* the response through `add_messages`, which is
     why the response is added again after the compacted messages);
   - veto: the full-context response alone; the state is left as it was.

Audit mode (`Guard(mode="audit")`, or ``audit=True`` here) changes nothing the agent or its user
can see. A state compaction runs where it runs without memguard, in this middleware's
`before_model`, so its update reaches the state and the stream unchanged; the step's own model
call (on the compacted context) is the proposed action; the full-context probe and the score run
on the guard's worker, in an empty context (no run callbacks, stream writers or usage).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse
from langchain.agents.middleware.types import ExtendedModelResponse
from langchain_core.messages import BaseMessage, RemoveMessage
from langgraph.graph.message import REMOVE_ALL_MESSAGES
from langgraph.types import Command
from memguard import CompactionEvent, Decision, Gate, Guard, Verdict, as_strategy, run_coroutine_blocking

from langchain_memguard.compaction import (
    MiddlewareStrategy,
    apply_update,
    hook_kind,
    refuse_unguardable,
    strategy_name,
    with_messages,
)
from langchain_memguard.pending import PendingCompactions
from langchain_memguard.probes import (
    AsyncHandler,
    Handler,
    Probes,
    aaudit_policy,
    action_message,
    aenforce_policy,
    as_model_response,
    audit_policy,
    enforce_policy,
)
from langchain_memguard.runs import conversation_id, must_reduce
from langchain_memguard.views import GuardView

__all__ = ["MemGuardMiddleware"]

logger = logging.getLogger("memguard.langchain")


class MemGuardMiddleware(AgentMiddleware):
    """Guard a compaction middleware of a `create_agent` agent with MemRM.

    Pass it *instead of* the compaction middleware it wraps (the guard must own the compaction
    call: once ``RemoveMessage(REMOVE_ALL_MESSAGES)`` reaches the state, nothing downstream can
    see what was removed):

    ```python
    create_agent(model, tools, middleware=[MemGuardMiddleware(SummarizationMiddleware(...), guard)])
    ```

    In enforce mode each compaction is committed, replaced by a fallback's or vetoed on MemRM's
    word, at the cost of one extra model call per review. In audit mode the agent and its user
    see no change; the review runs on the guard's worker.

    Args:
        inner: The compaction middleware: a `before_model` state compaction
            (`SummarizationMiddleware`) or a `wrap_model_call` request edit
            (`ContextEditingMiddleware`).
        guard: The guard (its mode, cooldown, fallbacks, sinks apply).
        fallbacks: Tried, in order, before the guard's own when the proposal is judged harmful:
            other compaction middlewares or memguard strategies.
        strategy: The proposal's name in audit records (default: from the inner middleware).
        on_decision: Called with each decision (the guard's sinks receive them as usual).
        audit: True audits this middleware's compactions even when the guard enforces (on the
            guard's own worker: no second guard needed).
        name: The middleware's name in the graph (default ``MemGuard[<inner name>]``). A deep
            agent replaces its default summarisation in place with a middleware named
            ``"SummarizationMiddleware"``.

    Raises:
        TypeError: `guard` is not a `Guard`, `inner` compacts nothing, or it is a compaction
            this middleware cannot guard (see `compaction.refuse_unguardable`).
    """

    def __init__(
        self,
        inner: AgentMiddleware,
        guard: Guard,
        *,
        fallbacks: Sequence[Any] = (),
        strategy: str | None = None,
        on_decision: Callable[[Decision], Any] | None = None,
        audit: bool = False,
        name: str | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(guard, Guard):
            raise TypeError(f"guard must be a memguard.Guard, got {type(guard).__name__}")
        refuse_unguardable(inner)
        self.inner = inner
        """The wrapped compaction middleware (not registered with the agent itself)."""
        self.guard = guard
        """The guard that reviews each compaction."""
        self._kind = hook_kind(inner)
        self.strategy = strategy or strategy_name(inner)
        """The proposal's name in audit records."""
        self.fallbacks = tuple(fallbacks)
        """This middleware's own fallbacks, tried before the guard's."""
        for fallback in self.fallbacks:
            if not isinstance(fallback, AgentMiddleware):
                as_strategy(fallback)  # a clear error now rather than at the first compaction
            else:
                hook_kind(fallback)
        self.on_decision = on_decision
        self.audit = audit
        self.last_decision: Decision | None = None
        """The decision about the latest compaction this middleware saw (None before the first)."""
        self.state_schema = inner.state_schema
        self.tools = list(getattr(inner, "tools", None) or [])
        self._name = name
        self._pending = PendingCompactions()

    @property
    def name(self) -> str:
        """The node name in the graph: `name=`, else ``MemGuard[<inner name>]``."""
        return self._name or f"MemGuard[{self.inner.name}]"

    @property
    def audits(self) -> bool:
        """Whether this middleware only records (the guard's mode, or ``audit=True``)."""
        return self.audit or self.guard.mode == "audit"

    # ------------------------------------------------------------------ audit: the compaction in place

    def before_model(self, state: Any, runtime: Any) -> dict[str, Any] | None:
        """Run the inner state compaction here in audit mode, where it runs without memguard.

        In audit mode the inner middleware's update reaches the state and the stream unchanged, and
        the context before it is kept for this step's model call, which reviews it. In enforce mode
        this does nothing: the compaction runs in `wrap_model_call`, where it can still be vetoed.

        See `langchain.agents.middleware.AgentMiddleware.before_model`.

        Returns:
            The inner middleware's update in audit mode when it compacts, else None.
        """
        if not self.audits or self._kind != "state":
            return None
        update = self._usable(self._inner_before_model(state, runtime))
        return None if update is None else self._remember(state, update)

    async def abefore_model(self, state: Any, runtime: Any) -> dict[str, Any] | None:
        """`before_model` for async runs.

        See `langchain.agents.middleware.AgentMiddleware.abefore_model`.

        Returns:
            The inner middleware's update in audit mode when it compacts, else None.
        """
        if not self.audits or self._kind != "state":
            return None
        update = self._usable(await self._ainner_before_model(state, runtime))
        return None if update is None else self._remember(state, update)

    def _remember(self, state: Any, update: dict[str, Any]) -> dict[str, Any]:
        """Leave the pre-compaction context for this step's model call; the update goes on unchanged.

        The audit gate is asked at the model call (it never skips: asking it first would change
        nothing), where the system prompt that leads MemRM's view is known.
        """
        before = list(state["messages"])
        self._pending.put(apply_update(before, update["messages"]), before)  # gives new messages their ids
        return update

    # ------------------------------------------------------------------ sync model call

    def wrap_model_call(self, request: ModelRequest, handler: Handler) -> Any:
        """Guard one model call: ask the gate, run the inner compaction, review it, answer the step.

        Enforce mode: during a cooldown after a veto the inner compaction is not run and the full
        context is sent. Otherwise the inner compaction runs (its `before_model`, or its
        `wrap_model_call` edit of the request), the agent's model is probed through `handler` on
        both contexts, and the probe on the context that wins *is* the step's response: one extra
        model call per review, never two. Audit mode: the step's own call (on the compacted
        context) is the proposed action; the full-context probe and the score run on the guard's
        worker, in an empty context.

        See `langchain.agents.middleware.AgentMiddleware.wrap_model_call`.

        Returns:
            The step's model response. For a committed state compaction, an
            `ExtendedModelResponse` whose command replaces the state's messages with the chosen
            context followed by the response; a veto leaves the state as it was.
        """
        if self.audits:
            return self._audit_call(request, handler)
        view = GuardView(request.system_message)
        before = view.to_view(request.messages)
        gate = self.guard.gate(before, conversation_id=conversation_id(), must_reduce=must_reduce(request))
        if not gate.review:
            self._record(self.guard.skip(gate, before, strategy=self.strategy))
            return handler(request)
        if self._kind == "request":
            return self.inner.wrap_model_call(
                request, lambda edited: self._enforce_edit(request, edited, handler, gate, view, before)
            )
        update = self._usable(self._inner_before_model(request.state, request.runtime))
        if update is None:
            return handler(request)
        candidate = apply_update(request.messages, update["messages"])
        decision, response = self._enforce(request, request, candidate, handler, gate, view, before)
        return self._commit(decision, view, response, update)

    def _enforce_edit(self, request: ModelRequest, edited: ModelRequest, handler: Handler, gate: Gate,
                      view: GuardView, before: list[Any]) -> Any:
        if list(edited.messages) == list(request.messages):
            return handler(edited)  # nothing edited at this call
        return self._enforce(request, edited, edited.messages, handler, gate, view, before)[1]

    def _enforce(self, request: ModelRequest, sent: ModelRequest, candidate: Sequence[BaseMessage],
                 handler: Handler, gate: Gate, view: GuardView,
                 before: list[Any]) -> tuple[Decision, ModelResponse]:
        probes = Probes()
        decision = self.guard.review(
            self._event(gate, before, view.to_view(candidate)), enforce_policy(handler, sent, view, probes),
            gate=gate, fallbacks=self._fallbacks_for(request, view),
        )
        self._record(decision)
        response = probes.response_for(decision.response)
        if response is None:  # no probe on the chosen context (e.g. an error): ask the model once
            response = as_model_response(handler(with_messages(sent, self._chosen(decision, view, request))))
        return decision, response

    def _audit_call(self, request: ModelRequest, handler: Handler) -> Any:
        if self._kind == "request":
            return self.inner.wrap_model_call(request, lambda edited: self._audit_edit(request, edited, handler))
        before = self._pending.take(request.messages)
        result = handler(request)
        if before is not None:
            self._audit(request, before, request.messages, result, handler)
        return result

    def _audit_edit(self, request: ModelRequest, edited: ModelRequest, handler: Handler) -> Any:
        result = handler(edited)
        if list(edited.messages) != list(request.messages):
            self._audit(edited, request.messages, edited.messages, result, handler)
        return result

    def _audit(self, sent: ModelRequest, before: Sequence[BaseMessage], candidate: Sequence[BaseMessage],
               result: Any, handler: Handler) -> None:
        event, gate, view = self._audit_event(sent, before, candidate, result)
        self._record(self.guard.review(event, audit_policy(handler, sent, view), gate=gate))  # queued: returns at once

    def _audit_event(self, sent: ModelRequest, before_messages: Sequence[BaseMessage],
                     candidate: Sequence[BaseMessage], result: Any) -> tuple[CompactionEvent, Gate, GuardView]:
        """One step's audit review: the context before, the compacted one, and the step's own answer."""
        view = GuardView(sent.system_message)
        before = view.to_view(before_messages)
        gate = self.guard.gate(before, conversation_id=conversation_id(), audit=True)
        event = self._event(gate, before, view.to_view(candidate), action_message(as_model_response(result)))
        return event, gate, view

    def _inner_before_model(self, state: Any, runtime: Any) -> dict[str, Any] | None:
        if type(self.inner).before_model is not AgentMiddleware.before_model:
            update: dict[str, Any] | None = self.inner.before_model(state, runtime)
            return update
        update = run_coroutine_blocking(self.inner.abefore_model(state, runtime))
        return update

    # ------------------------------------------------------------------ async model call

    async def awrap_model_call(self, request: ModelRequest, handler: AsyncHandler) -> Any:
        """`wrap_model_call` for async runs: the probes are awaited in the step's own task.

        See `langchain.agents.middleware.AgentMiddleware.awrap_model_call`.

        Returns:
            The step's model response, as `wrap_model_call` returns it.
        """
        if self.audits:
            return await self._aaudit_call(request, handler)
        view = GuardView(request.system_message)
        before = view.to_view(request.messages)
        gate = self.guard.gate(before, conversation_id=conversation_id(), must_reduce=must_reduce(request))
        if not gate.review:
            self._record(await self.guard.askip(gate, before, strategy=self.strategy))
            return await handler(request)
        if self._kind == "request":

            async def guarded(edited: ModelRequest) -> Any:
                if list(edited.messages) == list(request.messages):
                    return await handler(edited)
                return (await self._aenforce(request, edited, edited.messages, handler, gate, view, before))[1]

            return await self.inner.awrap_model_call(request, guarded)
        update = self._usable(await self._ainner_before_model(request.state, request.runtime))
        if update is None:
            return await handler(request)
        candidate = apply_update(request.messages, update["messages"])
        decision, response = await self._aenforce(request, request, candidate, handler, gate, view, before)
        return self._commit(decision, view, response, update)

    async def _aenforce(self, request: ModelRequest, sent: ModelRequest, candidate: Sequence[BaseMessage],
                        handler: AsyncHandler, gate: Gate, view: GuardView,
                        before: list[Any]) -> tuple[Decision, ModelResponse]:
        probes = Probes()
        decision = await self.guard.areview(
            self._event(gate, before, view.to_view(candidate)), aenforce_policy(handler, sent, view, probes),
            gate=gate, fallbacks=self._fallbacks_for(request, view),
        )
        self._record(decision)
        response = probes.response_for(decision.response)
        if response is None:
            response = as_model_response(await handler(with_messages(sent, self._chosen(decision, view, request))))
        return decision, response

    async def _aaudit_call(self, request: ModelRequest, handler: AsyncHandler) -> Any:
        if self._kind == "request":

            async def audited(edited: ModelRequest) -> Any:
                result = await handler(edited)
                if list(edited.messages) != list(request.messages):
                    await self._aaudit(edited, request.messages, edited.messages, result, handler)
                return result

            return await self.inner.awrap_model_call(request, audited)
        before = self._pending.take(request.messages)
        result = await handler(request)
        if before is not None:
            await self._aaudit(request, before, request.messages, result, handler)
        return result

    async def _aaudit(self, sent: ModelRequest, before: Sequence[BaseMessage], candidate: Sequence[BaseMessage],
                      result: Any, handler: AsyncHandler) -> None:
        event, gate, view = self._audit_event(sent, before, candidate, result)
        # Queued at once; the guard awaits the probe on this loop, in an empty context.
        self._record(await self.guard.areview(event, aaudit_policy(handler, sent, view), gate=gate))

    async def _ainner_before_model(self, state: Any, runtime: Any) -> dict[str, Any] | None:
        if type(self.inner).abefore_model is not AgentMiddleware.abefore_model:
            update: dict[str, Any] | None = await self.inner.abefore_model(state, runtime)
            return update
        return await asyncio.to_thread(self.inner.before_model, state, runtime)

    # ------------------------------------------------------------------ shared

    @staticmethod
    def _usable(update: dict[str, Any] | None) -> dict[str, Any] | None:
        return update if update and update.get("messages") else None

    def _event(self, gate: Gate, before: list[Any], candidate: list[Any],
               proposed: BaseMessage | None = None) -> CompactionEvent:
        return CompactionEvent(
            before=before,
            candidate=candidate,
            strategy=self.strategy,
            conversation_id=gate.conversation_id,
            step=gate.step,
            metadata={"framework": "langchain", "middleware": self.inner.name},
            proposed_response=proposed,
        )

    def _fallbacks_for(self, request: ModelRequest, view: GuardView) -> tuple[Any, ...] | None:
        """This middleware's fallbacks bound to this model call, before the guard's own chain."""
        if not self.fallbacks:
            return None
        bound: list[Any] = []
        for fallback in self.fallbacks:
            if isinstance(fallback, AgentMiddleware):
                bound.append(MiddlewareStrategy(fallback, request, view, strategy_name(fallback)))
            else:
                bound.append(as_strategy(fallback))
        return (*bound, *self.guard.fallbacks)

    @staticmethod
    def _chosen(decision: Decision, view: GuardView, request: ModelRequest) -> list[BaseMessage]:
        if decision.verdict is Verdict.VETO:
            return list(request.messages)
        return view.from_view(decision.messages)

    @staticmethod
    def _commit(decision: Decision, view: GuardView, response: ModelResponse, update: dict[str, Any]) -> Any:
        """The step's result for a state compaction: the response, and the chosen context unless vetoed."""
        if decision.verdict is Verdict.VETO:
            return response
        chosen = view.from_view(decision.messages)
        own = decision.strategy == decision.proposed_strategy  # the inner's own compaction: its other keys too
        extra = {k: v for k, v in update.items() if k != "messages"} if own else {}
        messages = [RemoveMessage(id=REMOVE_ALL_MESSAGES), *chosen, *response.result]
        return ExtendedModelResponse(model_response=response, command=Command(update={**extra, "messages": messages}))

    def _record(self, decision: Decision) -> None:
        self.last_decision = decision
        if self.on_decision is None:
            return
        try:
            self.on_decision(decision)
        except Exception as exc:  # noqa: BLE001 - a user hook must not break the agent
            # Type only: a traceback's frames and messages may quote the conversation.
            logger.error("memguard: on_decision hook failed (%s)", type(exc).__name__)
