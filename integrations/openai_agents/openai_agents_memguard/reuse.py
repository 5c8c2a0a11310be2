"""The run's model, wrapped: where a per-call review runs and where a winning probe is reused.

`MemGuardModel` wraps the model the run calls, and does two things at a call:

- A `call_model_input_filter` cannot see the request it shapes (the settings, tools and per-turn
  `tool_choice` are resolved around it), so `MemGuardInputFilter` leaves its proposal with the
  call (`expect_call`) and the review runs here, on the exact request: the probes are that
  request on the full and the filtered input, and the winning probe *is* the call's answer.
- A history rewrite (a handoff filter, a session input callback) is reviewed before the next
  agent's first call, with that call's request built as the Runner builds it; the winning probe
  is kept in a `ProbeStore` under the whole request (input, settings, tools, tool_choice, schema,
  handoffs, prompt, model) and answers only an identical call. Any other call goes to the wrapped
  model untouched.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextvars import ContextVar
from typing import Any, Protocol

from agents import Model, ModelResponse, Usage
from memguard import Decision, Guard
from openai.types.responses import (
    Response,
    ResponseCompletedEvent,
    ResponseCreatedEvent,
    ResponseOutputItemAddedEvent,
    ResponseOutputItemDoneEvent,
)

from openai_agents_memguard.requests import ModelRequest

__all__ = ["MemGuardModel", "PendingCall", "ProbeStore", "expect_call", "store_for"]


class PendingCall(Protocol):
    """A compaction proposed for the next model call, reviewed when that call arrives."""

    def claim(self, request: ModelRequest) -> bool:
        """True once, for the call this proposal shapes (the input the filter passed on)."""

    async def answer(self, model: Model, request: ModelRequest) -> ModelResponse | None:
        """The call's answer after the review, or None: send `request` as it is."""


_PENDING: ContextVar[PendingCall | None] = ContextVar("memguard_openai_agents_pending_call", default=None)


def expect_call(pending: PendingCall | None) -> PendingCall | None:
    """Leave `pending` for the model call that follows in this run; returns the one it replaces.

    The filter and the model call run in the same task of the Runner, so a context variable
    carries the proposal from one to the other and never to another conversation's call.
    """
    previous = _PENDING.get()
    _PENDING.set(pending)
    return previous


class ProbeStore:
    """Winning probes waiting for the model call they answer (bounded; each is used at most once).

    Keyed by the whole request (`ModelRequest.key`), so a probe answers only an identical call.

    Args:
        max_entries: How many probes wait at most; the oldest is dropped first.
    """

    def __init__(self, max_entries: int = 64) -> None:
        self._entries: OrderedDict[str, ModelResponse] = OrderedDict()
        self._max = max_entries
        self._lock = threading.Lock()
        self.hits = 0
        """Calls answered from the store so far."""

    def put(self, key: str, response: ModelResponse) -> None:
        """Keep `response` for the request whose `ModelRequest.key` is `key`.

        Args:
            key: The request's key.
            response: The winning probe's answer.
        """
        with self._lock:
            self._entries[key] = response
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)

    def take(self, key: str) -> ModelResponse | None:
        """Remove and return the stored response for exactly this request.

        Args:
            key: The call's `ModelRequest.key`.

        Returns:
            The response, or None on a miss.
        """
        with self._lock:
            response = self._entries.pop(key, None)
            if response is not None:
                self.hits += 1
            return response

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


_STORES: weakref.WeakKeyDictionary[Guard, ProbeStore] = weakref.WeakKeyDictionary()
_STORES_LOCK = threading.Lock()


def store_for(guard: Guard) -> ProbeStore:
    """The probe store every wrapper of `guard` shares, so one `MemGuardModel` serves them all.

    Args:
        guard: The guard (held weakly: its store goes with it).

    Returns:
        The guard's store, made on first use.
    """
    with _STORES_LOCK:
        store = _STORES.get(guard)
        if store is None:
            store = _STORES[guard] = ProbeStore()
        return store


class MemGuardModel(Model):
    """The run's model: runs the review of a filtered call, and answers a call with a winning probe.

    A `call_model_input_filter` cannot see the request it shapes, so `MemGuardInputFilter` leaves
    its proposal with the call and the review runs here, on the exact request. A history rewrite
    (handoff filter, session input callback) is reviewed before the next agent's first call, and
    its winning probe waits in the `ProbeStore` for that identical call. Any other call goes to
    the wrapped model untouched. A response that carries a server-side compaction item
    (`ModelSettings.context_management`) is audited in the background when `guard` is given.
    Make one with a wrapper's ``wrap_model(model)``.

    Args:
        inner: The model the run calls (a `MemGuardModel` is unwrapped, never nested).
        store: Where winning probes wait for their call.
        guard: The guard that audits server-side compaction (None: not audited).
        on_decision: Called with each audit decision.

    Raises:
        TypeError: `inner` is not an `agents.Model`.
    """

    def __init__(self, inner: Model, store: ProbeStore, *, guard: Guard | None = None,
                 on_decision: Callable[[Decision], Any] | None = None) -> None:
        if not isinstance(inner, Model):
            raise TypeError(f"MemGuardModel wraps an agents.Model, got {type(inner).__name__}")
        while isinstance(inner, MemGuardModel):
            inner = inner.inner
        self.inner: Model = inner
        """The wrapped model."""
        self.store = store
        """Where winning probes wait for their call."""
        self.guard = guard
        self.on_decision = on_decision

    async def _audit_server_compaction(self, request: ModelRequest, response: ModelResponse) -> None:
        if self.guard is not None:
            from openai_agents_memguard.server_compaction import audit_server_compaction

            await audit_server_compaction(self.guard, self.inner, request, response, self.on_decision)

    async def _answer(self, request: ModelRequest) -> ModelResponse | None:
        pending = _PENDING.get()
        if pending is not None and pending.claim(request):
            return await pending.answer(self.inner, request)
        if request.server_managed:
            return None
        return self.store.take(request.key(self.inner))

    async def get_response(self, system_instructions: Any, input: Any, model_settings: Any, tools: Any,
                           output_schema: Any, handoffs: Any, tracing: Any, *, previous_response_id: Any,
                           conversation_id: Any, prompt: Any) -> ModelResponse:
        """Answer the call: reviewed when a filter left a proposal, from the store when a probe waits.

        Otherwise the wrapped model answers, and a server-side compaction in its response is
        audited.

        See `agents.Model.get_response`.

        Returns:
            The winning probe's response, or the wrapped model's.
        """
        request = ModelRequest(system_instructions, input, model_settings, tools, output_schema, handoffs, tracing,
                               prompt, previous_response_id, conversation_id)
        answered = await self._answer(request)
        if answered is not None:
            return answered
        response = await request.get_response(self.inner)
        await self._audit_server_compaction(request, response)
        return response

    async def stream_response(self, system_instructions: Any, input: Any, model_settings: Any, tools: Any,
                              output_schema: Any, handoffs: Any, tracing: Any, *, previous_response_id: Any,
                              conversation_id: Any, prompt: Any) -> AsyncIterator[Any]:
        """`get_response` for a streamed call: a probe's answer is replayed as stream events.

        See `agents.Model.stream_response`.

        Yields:
            The stream events of the winning probe, or the wrapped model's.
        """
        request = ModelRequest(system_instructions, input, model_settings, tools, output_schema, handoffs, tracing,
                               prompt, previous_response_id, conversation_id)
        answered = await self._answer(request)
        if answered is not None:
            for event in _replay(answered):
                yield event
            return
        async for event in request.stream_response(self.inner):
            yield event
            if getattr(event, "type", None) == "response.completed":
                completed = event.response
                await self._audit_server_compaction(request, ModelResponse(
                    output=list(completed.output), usage=Usage(), response_id=completed.id))

    def get_retry_advice(self, request: Any) -> Any:
        """The wrapped model's retry advice.

        See `agents.Model.get_retry_advice`.

        Returns:
            Whatever the wrapped model advises.
        """
        return self.inner.get_retry_advice(request)

    async def close(self) -> None:
        """Close the wrapped model.

        See `agents.Model.close`.
        """
        await self.inner.close()

    async def _cleanup_on_run_end(self, owner: object) -> None:
        await self.inner._cleanup_on_run_end(owner)

    def __repr__(self) -> str:
        return f"MemGuardModel({self.inner!r})"


def _replay(reused: ModelResponse) -> list[Any]:
    """A finished response as the stream events a streamed run needs (items done, then completed)."""
    response = Response(
        id=reused.response_id or "memguard-reused-probe", created_at=time.time(), model="memguard-reused-probe",
        object="response", output=list(reused.output), parallel_tool_calls=True, tool_choice="auto", tools=[],
    )
    events: list[Any] = [ResponseCreatedEvent(type="response.created", sequence_number=0,
                                              response=response.model_copy(update={"output": []}))]
    for index, item in enumerate(reused.output):
        events.append(ResponseOutputItemAddedEvent(type="response.output_item.added", item=item,
                                                   output_index=index, sequence_number=len(events)))
        events.append(ResponseOutputItemDoneEvent(type="response.output_item.done", item=item,
                                                  output_index=index, sequence_number=len(events)))
    events.append(ResponseCompletedEvent(type="response.completed", response=response, sequence_number=len(events)))
    return events
