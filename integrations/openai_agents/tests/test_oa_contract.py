"""The shared integration contract on a real `Runner` with the SDK's own `ToolOutputTrimmer`.

plain: no input filter; compacting: `ToolOutputTrimmer` as the run's `call_model_input_filter`;
guarded: the same trimmer wrapped by `MemGuardInputFilter`, the agent's `ScriptedModel` wrapped
by `wrap_model` so the winning probe answers the run's own call. Three turns, sync
(`Runner.run_sync`) and async (`Runner.run`).
"""

from __future__ import annotations

from agents import RunConfig
from memguard import Guard
from memguard.testing.contract import AgentRun, IntegrationContract, RunMode, Variant

from oa_agent import make_agent, normalise, run_turns, scripted_model, trimmer
from openai_agents_memguard import MemGuardInputFilter


class TestOpenAIAgentsContract(IntegrationContract):
    def run_agent(self, variant: Variant, guard: Guard | None, *, mode: RunMode) -> AgentRun:
        model = scripted_model()
        agent = make_agent(model)
        config = RunConfig(tracing_disabled=True)
        if variant == "compacting":
            config = RunConfig(tracing_disabled=True, call_model_input_filter=trimmer())
        elif variant == "guarded":
            assert guard is not None
            guarded = MemGuardInputFilter(trimmer(), guard)
            agent = make_agent(guarded.wrap_model(model))
            config = RunConfig(tracing_disabled=True, call_model_input_filter=guarded)
        history = run_turns(agent, config, mode=mode)
        return AgentRun(transcript=normalise(history), model_calls=len(model.calls))
