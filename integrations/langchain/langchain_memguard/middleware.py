"""`MemGuardMiddleware`: enforce mode for `create_agent` agents.

The guard must own the compaction call: once `RemoveMessage(REMOVE_ALL_MESSAGES)` reaches the
state, nothing downstream can see what was removed. So the inner middleware is *not* registered
with the agent; this middleware runs it inside `wrap_model_call`, where it can probe the agent's
own model on both contexts through `handler`. The probe on the context that wins *is* that step's
model response (one extra model call per compaction, never two):

- commit / fallback: the response is returned together with
  ``Command(update={"messages": [RemoveMessage(REMOVE_ALL_MESSAGES), *chosen, *response]})``.
  `create_agent` applies that command *after* the response through `add_messages`, which is why
  the response is added again after the compacted messages;
- veto: the full-context response is returned alone, and the graph state is left as it was.

With `Guard(mode="audit")` the inner compaction is applied exactly as without the guard, the
step's own response (on the compacted context) is the proposed action, and the full-context probe
and the score run on the guard's background worker (one extra model call per compaction, off the
agent's path).

A `wrap_model_call` compaction (`ContextEditingMiddleware`) only edits the request, never the
state; the guard then decides which context this one model call sees.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse
from langchain.agents.middleware.types import ExtendedModelResponse
from langchain_core.messages import AIMessage, BaseMessage, RemoveMessage
from langgraph.graph.message import REMOVE_ALL_MESSAGES
from langgraph.types import Command
from memguard import CompactionEvent, Decision, Guard, Verdict, as_strategy, run_coroutine_blocking

from langchain_memguard.compaction import (
    MiddlewareStrategy,
    apply_update,
    hook_kind,
    strategy_name,
    with_messages,
)
from langchain_memguard.views import GuardView

__all__ = ["MemGuardMiddleware"]

logger = logging.getLogger("memguard.langchain")

Handler = Callable[[ModelRequest], Any]
AsyncHandler = Callable[[ModelRequest], Awaitable[Any]]


def _as_model_response(result: Any) -> ModelResponse:
    if isinstance(result, ModelResponse):
        return result
    if isinstance(result, AIMessage):
        return ModelResponse(result=[result])
    if isinstance(result, ExtendedModelResponse):
        return result.model_response
    raise TypeError(f"the model handler returned {type(result).__name__}, not a ModelResponse")


def _action_message(response: ModelResponse) -> BaseMessage:
    """The message MemRM judges: the model's AI message (first one, as `create_agent` emits it)."""
    for message in response.result:
        if isinstance(message, AIMessage):
            return message
    if not response.result:
        raise ValueError("the model handler returned an empty ModelResponse")
    return response.result[0]


def _conversation_id() -> str | None:
    """The run's LangGraph `thread_id`; None lets the guard derive one from the conversation."""
    try:
        from langgraph.config import get_config

        thread = (get_config().get("configurable") or {}).get("thread_id")
    except Exception:  # noqa: BLE001 - outside a graph run there is simply no thread
        return None
    return str(thread) if thread is not None else None


class _Probes:
    """The model responses probed during one review, found again from the message the guard saw."""

    def __init__(self) -> None:
        self._by_message: dict[int, tuple[BaseMessage, ModelResponse]] = {}

    def keep(self, result: Any) -> BaseMessage:
        response = _as_model_response(result)
        message = _action_message(response)
        self._by_message[id(message)] = (message, response)
        return message

    def response_for(self, message: Any) -> ModelResponse | None:
        found = self._by_message.get(id(message))
        return found[1] if found is not None and found[0] is message else None


class MemGuardMiddleware(AgentMiddleware):
    """Guard a compaction middleware of a `create_agent` agent with MemRM.

    Pass it *instead of* the compaction middleware it wraps::

        create_agent(model, tools, middleware=[MemGuardMiddleware(SummarizationMiddleware(...), guard)])

    `fallbacks` are tried, in order, before the guard's own when the proposed compaction is
    judged harmful: other compaction middlewares (a `SummarizationMiddleware` with a larger
    `keep`, `ContextEditingMiddleware(edits=[ClearToolUsesEdit()])`) or memguard strategies.
    `last_decision` holds the latest `Decision`; `on_decision` is called with each one (the
    guard's sinks receive them as usual).
    """

    def __init__(
        self,
        inner: AgentMiddleware,
        guard: Guard,
        *,
        fallbacks: Sequence[Any] = (),
        strategy: str | None = None,
        on_decision: Callable[[Decision], Any] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(guard, Guard):
            raise TypeError(f"guard must be a memguard.Guard, got {type(guard).__name__}")
        self.inner = inner
        self.guard = guard
        self._kind = hook_kind(inner)
        self.strategy = strategy or strategy_name(inner)
        self.fallbacks = tuple(fallbacks)
        for fallback in self.fallbacks:
            if not isinstance(fallback, AgentMiddleware):
                as_strategy(fallback)  # a clear error now rather than at the first compaction
            else:
                hook_kind(fallback)
        self.on_decision = on_decision
        self.last_decision: Decision | None = None
        self.state_schema = inner.state_schema
        self.tools = list(getattr(inner, "tools", None) or [])

    @property
    def name(self) -> str:
        return f"MemGuard[{self.inner.name}]"

    # ------------------------------------------------------------------ sync

    def wrap_model_call(self, request: ModelRequest, handler: Handler) -> Any:
        if self._kind == "request":
            return self.inner.wrap_model_call(request, lambda edited: self._review_request(request, edited, handler))
        update = self._inner_update(request)
        if update is None:
            return handler(request)
        candidate = apply_update(request.messages, update["messages"])
        view = GuardView(request.system_message)
        probes = _Probes()
        context = contextvars.copy_context()

        def policy(messages: list[Any]) -> BaseMessage:
            probe = with_messages(request, view.from_view(messages))
            # Probes may run on the guard's threads: carry the run's callbacks/config along.
            return probes.keep(context.copy().run(handler, probe))

        if self.guard.mode == "audit":
            response = _as_model_response(handler(with_messages(request, candidate)))
            decision = self.guard.review(self._event(request, candidate, view, response), policy)
            return self._finish(decision, view, request, response, update)
        decision = self.guard.review(
            self._event(request, candidate, view), policy, fallbacks=self._fallbacks_for(request, view)
        )
        reused = probes.response_for(decision.response)
        if reused is not None:
            response = reused
        else:
            response = _as_model_response(handler(with_messages(request, self._chosen(decision, view, request))))
        return self._finish(decision, view, request, response, update)

    def _review_request(self, request: ModelRequest, edited: ModelRequest, handler: Handler) -> Any:
        if list(edited.messages) == list(request.messages):
            return handler(edited)
        view = GuardView(request.system_message)
        probes = _Probes()
        context = contextvars.copy_context()

        def policy(messages: list[Any]) -> BaseMessage:
            return probes.keep(context.copy().run(handler, with_messages(edited, view.from_view(messages))))

        if self.guard.mode == "audit":
            response = _as_model_response(handler(edited))
            self._record(self.guard.review(self._event(request, edited.messages, view, response), policy))
            return response
        decision = self.guard.review(
            self._event(request, edited.messages, view), policy, fallbacks=self._fallbacks_for(request, view)
        )
        self._record(decision)
        reused = probes.response_for(decision.response)
        if reused is not None:
            response = reused
        else:
            response = _as_model_response(handler(with_messages(edited, self._chosen(decision, view, request))))
        return response

    def _inner_update(self, request: ModelRequest) -> dict[str, Any] | None:
        if type(self.inner).before_model is not AgentMiddleware.before_model:
            update = self.inner.before_model(request.state, request.runtime)
        else:
            update = run_coroutine_blocking(self.inner.abefore_model(request.state, request.runtime))
        return self._usable(update)

    # ------------------------------------------------------------------ async

    async def awrap_model_call(self, request: ModelRequest, handler: AsyncHandler) -> Any:
        if self._kind == "request":

            async def guarded(edited: ModelRequest) -> Any:
                return await self._areview_request(request, edited, handler)

            return await self.inner.awrap_model_call(request, guarded)
        update = await self._ainner_update(request)
        if update is None:
            return await handler(request)
        candidate = apply_update(request.messages, update["messages"])
        view = GuardView(request.system_message)
        probes = _Probes()

        async def policy(messages: list[Any]) -> BaseMessage:
            return probes.keep(await handler(with_messages(request, view.from_view(messages))))

        if self.guard.mode == "audit":
            response = _as_model_response(await handler(with_messages(request, candidate)))
            decision = await self.guard.areview(self._event(request, candidate, view, response), policy)
            return self._finish(decision, view, request, response, update)
        decision = await self.guard.areview(
            self._event(request, candidate, view), policy, fallbacks=self._fallbacks_for(request, view)
        )
        reused = probes.response_for(decision.response)
        if reused is not None:
            response = reused
        else:
            response = _as_model_response(
                await handler(with_messages(request, self._chosen(decision, view, request)))
            )
        return self._finish(decision, view, request, response, update)

    async def _areview_request(self, request: ModelRequest, edited: ModelRequest, handler: AsyncHandler) -> Any:
        if list(edited.messages) == list(request.messages):
            return await handler(edited)
        view = GuardView(request.system_message)
        probes = _Probes()

        async def policy(messages: list[Any]) -> BaseMessage:
            return probes.keep(await handler(with_messages(edited, view.from_view(messages))))

        if self.guard.mode == "audit":
            response = _as_model_response(await handler(edited))
            self._record(await self.guard.areview(self._event(request, edited.messages, view, response), policy))
            return response
        decision = await self.guard.areview(
            self._event(request, edited.messages, view), policy, fallbacks=self._fallbacks_for(request, view)
        )
        self._record(decision)
        reused = probes.response_for(decision.response)
        if reused is not None:
            response = reused
        else:
            response = _as_model_response(
                await handler(with_messages(edited, self._chosen(decision, view, request)))
            )
        return response

    async def _ainner_update(self, request: ModelRequest) -> dict[str, Any] | None:
        if type(self.inner).abefore_model is not AgentMiddleware.abefore_model:
            update = await self.inner.abefore_model(request.state, request.runtime)
        else:
            import asyncio

            update = await asyncio.to_thread(self.inner.before_model, request.state, request.runtime)
        return self._usable(update)

    # ------------------------------------------------------------------ shared

    @staticmethod
    def _usable(update: dict[str, Any] | None) -> dict[str, Any] | None:
        return update if update and update.get("messages") else None

    def _event(
        self,
        request: ModelRequest,
        candidate: Sequence[BaseMessage],
        view: GuardView,
        proposed: ModelResponse | None = None,
    ) -> CompactionEvent:
        return CompactionEvent(
            before=view.to_view(request.messages),
            candidate=view.to_view(candidate),
            strategy=self.strategy,
            conversation_id=_conversation_id(),
            metadata={"framework": "langchain", "middleware": self.inner.name},
            proposed_response=None if proposed is None else _action_message(proposed),
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

    def _finish(
        self,
        decision: Decision,
        view: GuardView,
        request: ModelRequest,
        response: ModelResponse,
        update: dict[str, Any],
    ) -> Any:
        self._record(decision)
        if decision.verdict is Verdict.VETO:
            return response
        chosen = view.from_view(decision.messages)
        own = decision.verdict in (Verdict.COMMIT, Verdict.AUDIT)  # the inner middleware's own update
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
