"""The memguard integration contract on a real OpenHands `Agent` and `Conversation`.

SOFT triggers only (event count with `LLMSummarizingCondenser`), so a veto keeps the view and
"harmful" runs end like runs that never condense. A `Condensation` ends the agent's step, so the
probes cannot be reused as the step's response: two extra LLM calls per review.
"""

from __future__ import annotations

from memguard import Guard
from memguard.testing.contract import AgentRun, IntegrationContract, RunMode, Variant

from oh_doubles import agent_llm, make_agent, run, summarizing, transcript
from openhands_memguard import guard_agent


class TestOpenHandsContract(IntegrationContract):
    extra_calls_per_review = 2

    def run_agent(self, variant: Variant, guard: Guard | None, *, mode: RunMode) -> AgentRun:
        llm = agent_llm()
        agent = make_agent(llm, None if variant == "plain" else summarizing())
        if guard is not None:
            agent = guard_agent(agent, guard)
        conversation = run(agent, mode)
        try:
            return AgentRun(transcript=transcript(conversation.state.events), model_calls=llm.calls)
        finally:
            conversation.close()  # an open conversation (registered for exit) keeps its agent and guard alive
