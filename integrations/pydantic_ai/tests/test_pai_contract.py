"""memguard's integration contract on a real `pydantic_ai.Agent` with pydantic-ai-harness compaction.

`run_sync`, `run`, and streamed runs (`run_stream_sync`, `run_stream_events`) of a scripted
offline agent whose next action depends on what it still remembers, compacted by a real harness
capability, unguarded or guarded by `MemGuardCompaction`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from typing import Any

from memguard import Guard
from memguard.testing.contract import AgentRun, IntegrationContract, RunMode, Variant
from pydantic_ai.capabilities import AbstractCapability
from pydantic_ai.messages import ModelMessage
from pydantic_ai.models import ModelRequestContext
from pydantic_ai.tools import RunContext
from pydantic_ai_harness.compaction import ClearToolResults, SlidingWindowCompaction

from pai_doubles import TASK, ScriptedModel, make_agent, transcript
from pydantic_ai_memguard import MemGuardCompaction


def sliding_window() -> Any:
    return SlidingWindowCompaction(max_messages=6, keep_messages=3)


def clear_tool_results() -> Any:
    return ClearToolResults(max_messages=4, keep_pairs=1)


@dataclass
class KeepTaskAndLastStep(AbstractCapability[None]):
    """A hand-written compaction (no harness): the task and the latest tool call with its result."""

    async def before_model_request(
        self, ctx: RunContext[None], request_context: ModelRequestContext
    ) -> ModelRequestContext:
        if len(ctx.messages) <= 6:
            return request_context
        ctx.messages[:] = [ctx.messages[0], *ctx.messages[-2:]]
        return replace(request_context, messages=list(ctx.messages))


class _Contract(IntegrationContract):
    make_compaction = staticmethod(sliding_window)

    def run_agent(self, variant: Variant, guard: Guard | None, *, mode: RunMode) -> AgentRun:
        model = ScriptedModel()
        capabilities: list[Any] = []
        if variant != "plain":
            compaction = self.make_compaction()
            capabilities.append(compaction if guard is None else MemGuardCompaction(compaction, guard))
        messages = self.run(make_agent(model, capabilities), mode)
        return AgentRun(transcript=transcript(messages), model_calls=model.calls)

    def run(self, agent: Any, mode: RunMode) -> list[ModelMessage]:
        if mode == "sync":
            return agent.run_sync(TASK).all_messages()
        return asyncio.run(agent.run(TASK)).all_messages()


class TestSlidingWindowContract(_Contract):
    """`run_sync` and `run` with `SlidingWindowCompaction` (drops the oldest messages)."""


class TestClearToolResultsContract(_Contract):
    """`run_sync` and `run` with `ClearToolResults` (blanks old tool outputs in place)."""

    make_compaction = staticmethod(clear_tool_results)


class TestOwnCapabilityContract(_Contract):
    """A compaction capability of the user's own, without pydantic-ai-harness."""

    make_compaction = KeepTaskAndLastStep


class TestStreamingContract(_Contract):
    """Streamed runs: `run_stream_sync` ("sync") and `run_stream_events` ("async")."""

    def run(self, agent: Any, mode: RunMode) -> list[ModelMessage]:
        if mode == "sync":
            with agent.run_stream_sync(TASK) as stream:
                "".join(stream.stream_text(delta=True))
                return stream.all_messages()

        async def events() -> list[ModelMessage]:
            from pydantic_ai import AgentRunResultEvent

            result = None
            async with agent.run_stream_events(TASK) as stream:
                async for event in stream:
                    if isinstance(event, AgentRunResultEvent):
                        result = event.result
            assert result is not None
            return result.all_messages()

        return asyncio.run(events())
