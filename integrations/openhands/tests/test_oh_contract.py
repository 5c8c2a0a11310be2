"""The memguard integration contract on a real OpenHands `Agent` and `Conversation`.

SOFT triggers (event count with `LLMSummarizingCondenser`), so a veto keeps the view and
"harmful" runs end like runs that never condense; the must-reduce variant overflows the agent
LLM's context window, so every condensation there is a HARD one that may not be vetoed. A
`Condensation` ends the agent's step, so the probes cannot be reused as the step's response: two
extra LLM calls per review. The agent's LLM has non-default settings (temperature, max output
tokens): every probe must carry them.
"""

from __future__ import annotations

from typing import Any

from memguard import Guard
from memguard.testing.contract import AgentRun, IntegrationContract, RunMode

from oh_doubles import agent_llm, make_agent, new_conversation, summarizing, transcript
from openhands_memguard import guard_agent


def _usage(conversation: Any) -> Any:
    """The conversation's own LLM accounting (OpenHands' stats): responses recorded and cost."""
    metrics = conversation.conversation_stats.get_combined_metrics()
    return (len(metrics.token_usages), metrics.accumulated_cost)


class TestOpenHandsContract(IntegrationContract):
    extra_calls_per_review = 2
    must_reduce_variant = True

    def _setup(self, variant: str, guard: Guard | None, conversation: int) -> tuple[Any, Any, Any, list[Any]]:
        must_reduce = variant == "must_reduce"
        llm = agent_llm(overflow_at=8 if must_reduce else None)
        condenser = None if variant == "plain" else summarizing(max_size=100 if must_reduce else 8)
        agent = make_agent(llm, condenser)
        if guard is not None:
            agent = guard_agent(agent, guard)
        seen: list[Any] = []  # what the conversation's event callbacks (its stream of events) received
        return llm, condenser, new_conversation(agent, conversation, callbacks=[seen.append]), seen

    def _result(self, llm: Any, condenser: Any, started: Any, seen: list[Any]) -> AgentRun:
        run = AgentRun(transcript=transcript(started.state.events), model_calls=llm.calls,
                        compactions=None if condenser is None else condenser.llm.calls,
                        requests=list(llm.requests), streamed=transcript(seen), usage=_usage(started))
        started.close()  # OpenHands keeps an unclosed conversation (and so its agent and guard) until exit
        return run

    def run_agent(self, variant: Any, guard: Guard | None, *, mode: RunMode, conversation: int = 0) -> AgentRun:
        llm, condenser, started, seen = self._setup(variant, guard, conversation)
        if mode == "sync":
            started.run()
        else:  # an older contract drives async runs through here
            import asyncio

            asyncio.run(started.arun())
        return self._result(llm, condenser, started, seen)

    async def arun_agent(self, variant: Any, guard: Guard | None, *, conversation: int = 0) -> AgentRun:
        llm, condenser, started, seen = self._setup(variant, guard, conversation)
        await started.arun()
        return self._result(llm, condenser, started, seen)
