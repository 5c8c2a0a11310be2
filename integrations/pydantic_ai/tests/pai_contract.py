"""The shared contract's driver for Pydantic AI: a real `pydantic_ai.Agent` run to the end.

`run_sync` / `run` and streamed runs (`run_stream_sync` / `run_stream_events`) of the scripted
offline agent (`pai_doubles`), compacted by `make_compaction()`, unguarded or guarded by
`MemGuardCompaction`, sent with non-default settings (temperature, max tokens, tool choice) so a
probe that dropped them would show in `requests`. `streamed` is what a consumer of the run's events
saw (an `event_stream_handler`, or the stream itself). Subclasses pick the compaction, the run
kind, and (`must_reduce_variant`) a run whose model refuses an overflowing context.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Hashable
from typing import Any

from memguard import Guard
from memguard.testing.contract import AgentRun, IntegrationContract, RunMode, Variant
from pydantic_ai.capabilities import AbstractCapability, WrapperCapability
from pydantic_ai.messages import ModelMessage, PartDeltaEvent, PartStartEvent
from pydantic_ai.models import ModelRequestContext
from pydantic_ai.models.function import AgentInfo
from pydantic_ai.tools import RunContext

from pai_doubles import TASK, ScriptedModel, make_agent, transcript
from pydantic_ai_memguard import MemGuardCompaction, strategy_name
from pydantic_ai_memguard.fallbacks import compacts_history

SETTINGS: Any = {"temperature": 0.3, "max_tokens": 512, "tool_choice": "auto"}


class CountingCompaction(WrapperCapability[None]):
    """The inner compaction, counting its invocations: proposals in `before_model_request`, calls
    of `compact_history` (shared by Pydantic AI's per-run copies)."""

    def __init__(self, wrapped: AbstractCapability[None]) -> None:
        super().__init__(wrapped=wrapped)
        self.counter = [0]

    @property
    def _has_compact_history(self) -> bool:  # the inner's kind, not this wrapper's (it has both hooks)
        return compacts_history(self.wrapped)

    def _handles_compact_history(self, ctx: RunContext[None]) -> bool:
        handles = getattr(self.wrapped, "_handles_compact_history", None)
        return bool(handles(ctx)) if callable(handles) else False

    async def before_model_request(
        self, ctx: RunContext[None], request_context: ModelRequestContext
    ) -> ModelRequestContext:
        before = list(request_context.messages)
        proposed = await self.wrapped.before_model_request(ctx, request_context)
        if list(proposed.messages) != before:
            self.counter[0] += 1
        return proposed

    async def compact_history(self, ctx: RunContext[None], request: Any) -> Any:
        self.counter[0] += 1
        inner: Any = self.wrapped
        return await inner.compact_history(ctx, request)


def signature(info: AgentInfo) -> Hashable:
    """What a model call was sent besides its messages: settings, tools, output schema, instructions."""
    tools = [(t.name, json.dumps(t.parameters_json_schema, sort_keys=True)) for t in info.function_tools]
    outputs = [(t.name, json.dumps(t.parameters_json_schema, sort_keys=True)) for t in info.output_tools]
    settings = json.dumps(dict(info.model_settings or {}), sort_keys=True, default=repr)
    return (settings, tuple(tools), tuple(outputs), info.allow_text_output, info.instructions)


class PydanticAIContract(IntegrationContract):
    """`run_sync` ("sync") and `run` ("async") of the scripted agent with `make_compaction()`."""

    @staticmethod
    def make_compaction() -> Any:
        raise NotImplementedError

    def make_must_reduce(self) -> tuple[ScriptedModel, Any]:
        """The model and compaction of a run that must shrink (`must_reduce_variant`)."""
        raise NotImplementedError

    def _setup(self, variant: Variant, guard: Guard | None) -> tuple[ScriptedModel, Any, CountingCompaction | None]:
        model, inner = self.make_must_reduce() if variant == "must_reduce" else (ScriptedModel(), None)
        counting = None
        capabilities: list[Any] = []
        if variant != "plain":
            inner = inner if inner is not None else self.make_compaction()
            counting = CountingCompaction(inner)
            if guard is None:
                capabilities.append(counting)
            else:
                capabilities.append(MemGuardCompaction(counting, guard, strategy=strategy_name(inner)))
        return model, make_agent(model, capabilities), counting

    @staticmethod
    def _result(model: ScriptedModel, counting: CountingCompaction | None, messages: list[ModelMessage],
                usage: Any, streamed: Any) -> AgentRun:
        return AgentRun(
            transcript=transcript(messages),
            model_calls=model.calls,
            compactions=None if counting is None else counting.counter[0],
            requests=[signature(info) for info in model.infos],
            streamed=streamed,
            usage=usage,
        )

    def run_agent(self, variant: Variant, guard: Guard | None, *, mode: RunMode, conversation: int = 0) -> AgentRun:
        if mode == "async":
            return asyncio.run(self.arun_agent(variant, guard, conversation=conversation))
        model, agent, counting = self._setup(variant, guard)
        messages, usage, streamed = self.run_sync(agent, self.task(conversation), f"conversation-{conversation}")
        return self._result(model, counting, messages, usage, streamed)

    async def arun_agent(self, variant: Variant, guard: Guard | None, *, conversation: int = 0) -> AgentRun:
        model, agent, counting = self._setup(variant, guard)
        messages, usage, streamed = await self.arun(agent, self.task(conversation), f"conversation-{conversation}")
        return self._result(model, counting, messages, usage, streamed)

    @staticmethod
    def task(conversation: int) -> str:
        return TASK if conversation == 0 else f"{TASK} (conversation {conversation})"

    def run_sync(self, agent: Any, task: str, conversation_id: str) -> tuple[list[ModelMessage], Any, Any]:
        events, handler = _event_stream()
        result = agent.run_sync(task, model_settings=SETTINGS, conversation_id=conversation_id,
                                event_stream_handler=handler)
        return result.all_messages(), result.usage, events

    async def arun(self, agent: Any, task: str, conversation_id: str) -> tuple[list[ModelMessage], Any, Any]:
        events, handler = _event_stream()
        result = await agent.run(task, model_settings=SETTINGS, conversation_id=conversation_id,
                                 event_stream_handler=handler)
        return result.all_messages(), result.usage, events


def _event_stream() -> tuple[list[Any], Any]:
    """A run's `event_stream_handler` and the part events it received (what a consumer of the run sees)."""
    events: list[Any] = []

    async def handler(ctx: Any, stream: Any) -> None:
        async for event in stream:
            if isinstance(event, (PartStartEvent, PartDeltaEvent)):
                events.append(event)

    return events, handler


class StreamedContract(PydanticAIContract):
    """Streamed runs: `run_stream_sync` ("sync") and `run_stream_events` ("async").

    `streamed` is what the streaming consumer saw: the text deltas, or every part event.
    """

    def run_sync(self, agent: Any, task: str, conversation_id: str) -> tuple[list[ModelMessage], Any, Any]:
        with agent.run_stream_sync(task, model_settings=SETTINGS, conversation_id=conversation_id) as stream:
            deltas = list(stream.stream_text(delta=True))
            return stream.all_messages(), stream.usage, deltas

    async def arun(self, agent: Any, task: str, conversation_id: str) -> tuple[list[ModelMessage], Any, Any]:
        from pydantic_ai import AgentRunResultEvent

        result, events = None, []
        async with agent.run_stream_events(task, model_settings=SETTINGS, conversation_id=conversation_id) as stream:
            async for event in stream:
                if isinstance(event, (PartStartEvent, PartDeltaEvent)):
                    events.append(event)
                elif isinstance(event, AgentRunResultEvent):
                    result = event.result
        assert result is not None
        return result.all_messages(), result.usage, events
