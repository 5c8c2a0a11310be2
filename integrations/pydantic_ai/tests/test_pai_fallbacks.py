"""A compaction capability as a memguard strategy: run on the agent's own messages and loop."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from pai_doubles import ScriptedModel, make_agent
from pydantic_ai.capabilities import AbstractCapability
from pydantic_ai.messages import ModelMessage
from pydantic_ai.models import ModelRequestContext, ModelRequestParameters
from pydantic_ai.tools import RunContext
from pydantic_ai.usage import RunUsage
from pydantic_ai_harness.compaction import ClearToolResults
from pydantic_ai_memguard import CapabilityStrategy, MessageBridge, compact_with, strategy_name


@dataclass
class LoopRecordingClear(AbstractCapability[None]):
    """Clears every tool result; notes the event loop its `compact` ran on."""

    loops: list[Any] = field(default_factory=list)

    async def compact(self, messages: list[ModelMessage], ctx: RunContext[None]) -> list[ModelMessage]:
        self.loops.append(asyncio.get_running_loop())
        return await ClearToolResults(max_messages=1, keep_pairs=0).compact(messages, ctx)


@dataclass
class HookOnly(AbstractCapability[None]):
    """A compaction with no `compact`: it rewrites the run's history in `before_model_request`."""

    async def before_model_request(self, ctx: RunContext[None], request_context: ModelRequestContext) -> ModelRequestContext:
        ctx.messages[:] = ctx.messages[-1:]
        request_context.messages = list(ctx.messages)
        return request_context


def history() -> list[ModelMessage]:
    model = ScriptedModel(n_steps=2)
    return make_agent(model).run_sync("go").all_messages()[:-1]  # ends in the last tool return


def contexts(messages: list[ModelMessage]) -> tuple[RunContext[None], ModelRequestContext]:
    ctx = RunContext(deps=None, model=ScriptedModel().model, usage=RunUsage(), messages=list(messages))
    request = ModelRequestContext(model=ctx.model, messages=list(messages), model_settings=None,  # type: ignore[arg-type]
                                  model_request_parameters=ModelRequestParameters())
    return ctx, request


def test_a_call_from_a_worker_thread_runs_on_the_agent_loop():
    messages = history()
    capability, bridge = LoopRecordingClear(), MessageBridge()
    ctx, request = contexts(messages)

    async def main() -> tuple[Any, list[Any], list[Any]]:
        loop = asyncio.get_running_loop()
        strategy = CapabilityStrategy(capability, bridge, ctx, request, loop, "clear")
        view = bridge.to_view(messages)
        from_thread = await asyncio.to_thread(strategy, view)  # a core that runs sync strategies off the loop
        on_loop = strategy(view)  # a core that calls strategies on the loop's own thread
        return loop, from_thread, on_loop

    loop, from_thread, on_loop = asyncio.run(main())
    assert capability.loops[0] is loop and capability.loops[1] is not loop
    assert [(m.role, m.content) for m in from_thread] == [(m.role, m.content) for m in on_loop]
    cleared = [m.content for m in from_thread if m.role == "tool"]
    assert cleared and all(c == "[tool result cleared]" for c in cleared)


def test_a_hook_only_capability_compacts_a_scratch_copy():
    messages = history()
    ctx, request = contexts(messages)
    compacted = asyncio.run(compact_with(HookOnly(), messages, ctx, request))
    assert compacted == messages[-1:]
    assert ctx.messages == messages and request.messages == messages  # the real contexts are untouched


def test_strategy_names():
    assert strategy_name(ClearToolResults(max_messages=4, keep_pairs=2)) == "clear_tool_results_keep_pairs_2"
    assert strategy_name(HookOnly()) == "hook_only"
