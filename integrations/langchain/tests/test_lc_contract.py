"""memguard's integration contract on real `create_agent` graphs (summarisation and context editing)."""

from __future__ import annotations

import asyncio

from langchain.agents.middleware import ClearToolUsesEdit, ContextEditingMiddleware, SummarizationMiddleware
from langchain_core.messages import HumanMessage
from memguard import Guard
from memguard.testing.contract import AgentRun, IntegrationContract, RunMode, Variant

from langchain_memguard import MemGuardMiddleware
from lc_doubles import FactAgentModel, FixedSummarizer, make_agent, signature

TASK = "Find the fact, then report it."


class _LangChainContract(IntegrationContract):
    def compaction(self) -> object:
        raise NotImplementedError

    def run_agent(self, variant: Variant, guard: Guard | None, *, mode: RunMode) -> AgentRun:
        model = FactAgentModel()
        middleware = []
        if variant == "compacting":
            middleware = [self.compaction()]
        elif variant == "guarded":
            assert guard is not None
            middleware = [MemGuardMiddleware(self.compaction(), guard)]
        agent = make_agent(model, middleware)
        inputs = {"messages": [HumanMessage(TASK)]}
        state = agent.invoke(inputs) if mode == "sync" else asyncio.run(agent.ainvoke(inputs))
        return AgentRun(transcript=signature(state["messages"]), model_calls=len(model.inputs))


class TestSummarizationContract(_LangChainContract):
    def compaction(self) -> object:
        return SummarizationMiddleware(model=FixedSummarizer(), trigger=("messages", 6), keep=("messages", 2))


class TestContextEditingContract(_LangChainContract):
    def compaction(self) -> object:
        return ContextEditingMiddleware(edits=[ClearToolUsesEdit(trigger=0, keep=1)])
