"""End to end with the real scorer code path: a tiny MemRM with forced label logits, loaded by
`MemRM.from_pretrained` like the real weights, decides for a real `create_agent` graph."""

from __future__ import annotations

import math

import pytest
from langchain.agents.middleware import SummarizationMiddleware
from langchain_core.messages import HumanMessage
from memguard import Guard, Verdict

from langchain_memguard import MemGuardMiddleware
from lc_doubles import FACT, FactAgentModel, FixedSummarizer, make_agent

# The in-process MemRM needs memguard[local]; the LangChain-only venvs (oldest, deepagents) have no torch.
pytest.importorskip("torch", reason="needs memguard[local] (torch)")


@pytest.fixture(scope="module", params=[-4.0, 4.0], ids=["forced-safe", "forced-harmful"])
def forced_rm(request, tmp_path_factory):
    from memguard.scoring.local import MemRM
    from memguard.testing import build_tiny_rm

    root = build_tiny_rm(tmp_path_factory.mktemp("rm"), forced=request.param, tokenizer="byte")
    rm = MemRM.from_pretrained(base=str(root / "base"), adapter=str(root / "adapter"), subfolder="checkpoint-500")
    return request.param, rm


def test_tiny_memrm_decides_for_a_real_agent(forced_rm):
    gap, rm = forced_rm
    decisions = []
    summarize = SummarizationMiddleware(model=FixedSummarizer(), trigger=("messages", 6), keep=("messages", 2))
    middleware = MemGuardMiddleware(summarize, Guard(rm, cooldown=0), on_decision=decisions.append)
    result = make_agent(FactAgentModel(), [middleware]).invoke({"messages": [HumanMessage("Find the fact.")]})
    first = decisions[0]
    assert first.p_harmful == pytest.approx(1 / (1 + math.exp(-gap)), abs=1e-3)
    assert first.scorer is not None and first.candidates[0].prompt_tokens > 0
    if gap > 0:
        assert first.verdict is Verdict.VETO and f"the fact is {FACT}" in result["messages"][-1].content
    else:
        assert first.verdict is Verdict.COMMIT and "I forgot the fact" in result["messages"][-1].content
