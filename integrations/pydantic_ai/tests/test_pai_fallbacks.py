"""A compaction capability as a memguard strategy: run on the agent's own messages and loop."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from pydantic_ai.capabilities import AbstractCapability
from pydantic_ai.messages import ModelMessage, ToolReturnPart
from pydantic_ai.models import ModelRequestContext, ModelRequestParameters
from pydantic_ai.tools import RunContext
from pydantic_ai.usage import RunUsage
from pydantic_ai_harness.compaction import ClearToolResults, SlidingWindowCompaction

from pai_doubles import ScriptedModel, make_agent
from pydantic_ai_memguard import CapabilityStrategy, MemGuardCompaction, MessageBridge, compact_with, strategy_name


@dataclass
class LoopRecordingClear(AbstractCapability[None]):
    """Clears all but the latest tool result; notes the event loop its `compact` ran on."""

    loops: list[Any] = field(default_factory=list)

    async def compact(self, messages: list[ModelMessage], ctx: RunContext[None]) -> list[ModelMessage]:
        self.loops.append(asyncio.get_running_loop())
        return await ClearToolResults(max_messages=1, keep_pairs=1).compact(messages, ctx)


@dataclass
class HookOnly(AbstractCapability[None]):
    """A compaction with no `compact`: it rewrites the run's history in `before_model_request`."""

    async def before_model_request(
        self, ctx: RunContext[None], request_context: ModelRequestContext
    ) -> ModelRequestContext:
        ctx.messages[:] = ctx.messages[-1:]
        request_context.messages = list(ctx.messages)
        return request_context


def history() -> list[ModelMessage]:
    model = ScriptedModel(n_steps=2)
    return make_agent(model).run_sync("go").all_messages()[:-1]  # ends in the last tool return


def contexts(messages: list[ModelMessage]) -> tuple[RunContext[None], ModelRequestContext]:
    ctx = RunContext(deps=None, model=ScriptedModel().model, usage=RunUsage(), messages=list(messages))
    request = ModelRequestContext(
        model=ctx.model,
        messages=list(messages),
        model_settings=None,  # type: ignore[arg-type]
        model_request_parameters=ModelRequestParameters(),
    )
    return ctx, request


def test_the_guard_awaits_a_capability_fallback_on_the_agent_loop():
    from memguard import Guard

    from pai_doubles import TASK, ActionScorer

    capability = LoopRecordingClear()
    scorer = ActionScorer(by_strategy={"sliding_window_compaction_keep_messages_3": 0.9})
    guard = Guard(scorer, identical_is_safe=False)
    model = ScriptedModel()
    agent = make_agent(
        model,
        [MemGuardCompaction(SlidingWindowCompaction(max_messages=6, keep_messages=3), guard, fallbacks=[capability])],
    )

    async def main() -> Any:
        return asyncio.get_running_loop(), await agent.run(TASK)

    loop, result = asyncio.run(main())
    assert capability.loops and all(used is loop for used in capability.loops)
    returns = [p for m in result.all_messages() for p in m.parts if isinstance(p, ToolReturnPart)]
    assert returns[0].content == "[tool result cleared]"  # the fallback was committed to the history


def test_a_capability_strategy_speaks_memguard_messages():
    messages = history()
    bridge = MessageBridge()
    ctx, request = contexts(messages)
    strategy = CapabilityStrategy(LoopRecordingClear(), bridge, ctx, request, "clear")
    view = asyncio.run(strategy(bridge.to_view(messages)))
    assert [m.role for m in view] == [m.role for m in bridge.to_view(messages)]
    assert [m.content for m in view if m.role == "tool"] == ["[tool result cleared]", "step 2"]
    back = bridge.from_view(view)
    assert back[0] is messages[0] and back[1] is messages[1]  # untouched turns are the agent's own


def test_a_hook_only_capability_compacts_a_scratch_copy():
    messages = history()
    ctx, request = contexts(messages)
    compacted = asyncio.run(compact_with(HookOnly(), messages, ctx, request))
    assert compacted == messages[-1:]
    assert ctx.messages == messages and request.messages == messages  # the real contexts are untouched


def test_strategy_names():
    assert strategy_name(ClearToolResults(max_messages=4, keep_pairs=2)) == "clear_tool_results_keep_pairs_2"
    assert strategy_name(HookOnly()) == "hook_only"
