"""The shared integration contract on a real `Runner` with the SDK's own `ToolOutputTrimmer`.

plain: no input filter; compacting: `ToolOutputTrimmer` as the run's `call_model_input_filter`;
guarded: the same trimmer wrapped by `MemGuardInputFilter`, the agent's `ScriptedModel` wrapped
by `wrap_model` (the review runs at its calls). Three turns under non-default run settings;
sync runs use `Runner.run_sync`, async runs stream (`Runner.run_streamed`), so the contract also
sees what a streaming consumer saw.
"""

from __future__ import annotations

import asyncio
from typing import Any

from agents import Runner
from agents.run import CallModelData, ModelInputData
from memguard import Guard
from memguard.testing.contract import AgentRun, IntegrationContract, RunMode, Variant

from oa_agent import (
    Observer,
    make_agent,
    normalise,
    run_config,
    scripted_model,
    signature,
    stream_turns,
    trimmer,
    turns_for,
    usage_of,
)
from openai_agents_memguard import MemGuardInputFilter, filter_name


class Proposals:
    """The trimmer, counting the calls where it changed the input (the compactions it proposed)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = filter_name(inner)
        self.count = 0

    def __call__(self, data: CallModelData[Any]) -> ModelInputData:
        result = self.inner(data)
        before = data.model_data
        if result.instructions != before.instructions or result.input != before.input:
            self.count += 1
        return result


class TestOpenAIAgentsContract(IntegrationContract):
    def _setup(self, variant: Variant, guard: Guard | None, conversation: int) -> tuple[Any, Any, Any, Proposals]:
        model = scripted_model()
        proposals = Proposals(trimmer())
        agent = make_agent(model)
        config = run_config()
        if variant == "compacting":
            config.call_model_input_filter = proposals
        elif variant == "guarded":
            assert guard is not None
            guarded = MemGuardInputFilter(proposals, guard, conversation_id=f"chat-{conversation}")
            agent = make_agent(guarded.wrap_model(model))
            config.call_model_input_filter = guarded
        return model, agent, config, proposals

    def _result(self, variant: Variant, model: Any, proposals: Proposals, history: list[Any], results: list[Any],
                streamed: Any) -> AgentRun:
        return AgentRun(transcript=normalise(history), model_calls=len(model.calls),
                         compactions=None if variant == "plain" else proposals.count,
                         requests=[signature(call) for call in model.calls], streamed=streamed,
                         usage=usage_of(results))

    def run_agent(self, variant: Variant, guard: Guard | None, *, mode: RunMode, conversation: int = 0) -> AgentRun:
        if mode == "async":  # an older contract drives async runs through here
            return asyncio.run(self.arun_agent(variant, guard, conversation=conversation))
        model, agent, config, proposals = self._setup(variant, guard, conversation)
        history: list[Any] = []
        results = []
        observer = Observer()  # a sync run has no stream: its hooks are what an observer sees
        for turn in turns_for(conversation):
            result = Runner.run_sync(agent, [*history, {"role": "user", "content": turn}], run_config=config,
                                     hooks=observer)
            history = result.to_input_list()
            results.append(result)
        return self._result(variant, model, proposals, history, results, observer.seen)

    async def arun_agent(self, variant: Variant, guard: Guard | None, *, conversation: int = 0) -> AgentRun:
        model, agent, config, proposals = self._setup(variant, guard, conversation)
        history, streamed, results = await stream_turns(agent, config, turns_for(conversation))
        return self._result(variant, model, proposals, history, results, streamed)
