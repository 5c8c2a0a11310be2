"""The shared contract's driver for Pydantic AI: a real `pydantic_ai.Agent` run to the end.

`run_sync`, `run`, and streamed runs (`run_stream_sync`, `run_stream_events`) of the scripted
offline agent (`pai_doubles`), compacted by `make_compaction()`, unguarded or guarded by
`MemGuardCompaction`. Subclasses pick the compaction (and the run kind).
"""

from __future__ import annotations

import asyncio
from typing import Any

from memguard import Guard
from memguard.testing.contract import AgentRun, IntegrationContract, RunMode, Variant
from pydantic_ai.messages import ModelMessage

from pai_doubles import TASK, ScriptedModel, make_agent, transcript
from pydantic_ai_memguard import MemGuardCompaction


class PydanticAIContract(IntegrationContract):
    """`run_sync` ("sync") and `run` ("async") of the scripted agent with `make_compaction()`."""

    @staticmethod
    def make_compaction() -> Any:
        raise NotImplementedError

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


class StreamedContract(PydanticAIContract):
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
