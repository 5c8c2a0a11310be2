"""Reusing the winning probe as the run's own model call.

A `call_model_input_filter` can change what the model receives but cannot answer in its place.
The guard has already asked the model for its next turn on the context it chose (the probe
that won the review), so calling the model again on the same input would pay twice for the same
answer. `MemGuardModel` wraps the run's model: when a call arrives whose instructions and items
are exactly those of a winning probe, it returns that probe's response instead of calling the
model; any other call goes to the wrapped model untouched. A call that differs (the SDK
deduplicated an item, another filter ran after ours) simply misses and is paid for as usual.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from typing import Any

from agents import Model, ModelResponse
from openai.types.responses import (
    Response,
    ResponseCompletedEvent,
    ResponseCreatedEvent,
    ResponseOutputItemAddedEvent,
    ResponseOutputItemDoneEvent,
)

from openai_agents_memguard.items import input_digest

__all__ = ["MemGuardModel", "ProbeStore"]


class ProbeStore:
    """Winning probes waiting for the model call they answer (bounded; each is used at most once)."""

    def __init__(self, max_entries: int = 64) -> None:
        self._entries: OrderedDict[str, ModelResponse] = OrderedDict()
        self._max = max_entries
        self._lock = threading.Lock()
        self.hits = 0

    def put(self, instructions: str | None, items: Sequence[Any], response: ModelResponse) -> None:
        key = input_digest(instructions, items)
        with self._lock:
            self._entries[key] = response
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)

    def take(self, instructions: str | None, items: Any) -> ModelResponse | None:
        """The stored response for exactly this input, removed from the store; None on a miss."""
        if not isinstance(items, list):
            return None
        with self._lock:
            if not self._entries:
                return None
        key = input_digest(instructions, items)
        with self._lock:
            response = self._entries.pop(key, None)
            if response is not None:
                self.hits += 1
            return response

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


class MemGuardModel(Model):
    """The run's model, answering a call with the guard's winning probe when it has one for it."""

    def __init__(self, inner: Model, store: ProbeStore) -> None:
        if not isinstance(inner, Model):
            raise TypeError(f"MemGuardModel wraps an agents.Model, got {type(inner).__name__}")
        self.inner = inner
        self.store = store

    async def get_response(self, system_instructions: Any, input: Any, model_settings: Any, tools: Any,
                           output_schema: Any, handoffs: Any, tracing: Any, *, previous_response_id: Any,
                           conversation_id: Any, prompt: Any) -> ModelResponse:
        if previous_response_id is None and conversation_id is None:
            reused = self.store.take(system_instructions, input)
            if reused is not None:
                return reused
        return await self.inner.get_response(
            system_instructions, input, model_settings, tools, output_schema, handoffs, tracing,
            previous_response_id=previous_response_id, conversation_id=conversation_id, prompt=prompt,
        )

    async def stream_response(self, system_instructions: Any, input: Any, model_settings: Any, tools: Any,
                              output_schema: Any, handoffs: Any, tracing: Any, *, previous_response_id: Any,
                              conversation_id: Any, prompt: Any) -> AsyncIterator[Any]:
        reused = None
        if previous_response_id is None and conversation_id is None:
            reused = self.store.take(system_instructions, input)
        if reused is not None:
            for event in _replay(reused):
                yield event
            return
        async for event in self.inner.stream_response(
            system_instructions, input, model_settings, tools, output_schema, handoffs, tracing,
            previous_response_id=previous_response_id, conversation_id=conversation_id, prompt=prompt,
        ):
            yield event

    def get_retry_advice(self, request: Any) -> Any:
        return self.inner.get_retry_advice(request)

    async def close(self) -> None:
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
