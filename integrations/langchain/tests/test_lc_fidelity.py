"""LangChain messages survive memguard whole (issue 20, items 16 and 20).

- A fallback that changes a message (observation masking) changes its content only: a failed tool
  result stays ``status="error"``, its artifact, name and ids stay.
- An AI message whose content is a list of blocks (what ChatAnthropic returns) reaches MemRM as its
  text, not as the Python repr of the list.
"""

from __future__ import annotations

import re

from langchain.agents.middleware import SummarizationMiddleware
from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.tools import ToolException, tool
from memguard import Guard, ObservationMasking, Verdict
from memguard.scoring.base import Score
from memguard.strategies import MASK

from langchain_memguard import MemGuardMiddleware
from lc_doubles import FACT, PROPOSED, FactAgentModel, FixedSummarizer, PrefixScorer, make_agent

TASK = "Find the fact, then report it."


@tool(response_format="content_and_artifact")
def bash(command: str) -> tuple[str, dict[str, str]]:
    """Run a shell command (step 2 fails)."""
    step = re.search(r"step (\d+)", command).group(1)
    if step == "2":
        raise ToolException("step 2 failed: disk full")
    return f"step {step}" + (f" {FACT}" if step == "1" else ""), {"step": step}


bash.handle_tool_error = True


class SummaryIsHarmful:
    """Judges by the strategy under review: the summary harmful, anything else safe."""

    def __init__(self) -> None:
        self.prompts: list[str] = []

    def score(self, prompts: list[str]) -> list[Score]:
        self.prompts.extend(prompts)
        tags = [PROPOSED.search(p).group(1) for p in prompts]
        return [Score(p_harmful=0.97 if "summarization" in tag else 0.02, n_tokens=len(p) // 4)
                for tag, p in zip(tags, prompts, strict=True)]


def summarization() -> SummarizationMiddleware:
    return SummarizationMiddleware(model=FixedSummarizer(), trigger=("messages", 6), keep=("messages", 2))


def test_a_masked_tool_result_keeps_every_field_but_its_content():
    decisions = []
    model = FactAgentModel()
    guarded = MemGuardMiddleware(summarization(), Guard(SummaryIsHarmful(), cooldown=0, identical_is_safe=False),
                                 fallbacks=[ObservationMasking(keep_last=1)], on_decision=decisions.append)
    state = make_agent(model, [guarded], tools=[bash]).invoke({"messages": [HumanMessage(TASK)]})
    # The tool results as the model first saw them (before any masking).
    originals = {}
    for call in model.inputs:
        for m in call:
            if isinstance(m, ToolMessage):
                originals.setdefault(m.tool_call_id, m)
    assert originals["call_2"].status == "error" and originals["call_1"].artifact == {"step": "1"}

    assert decisions and decisions[0].verdict is Verdict.FALLBACK
    masked = [m for m in state["messages"] if isinstance(m, ToolMessage) and m.content == MASK]
    assert {m.tool_call_id for m in masked} >= {"call_1", "call_2"}
    for message in masked:
        original = originals[message.tool_call_id]
        kept = ("id", "name", "tool_call_id", "status", "artifact", "additional_kwargs", "response_metadata")
        assert {k: getattr(message, k) for k in kept} == {k: getattr(original, k) for k in kept}


def test_block_contents_reach_memrm_as_text():
    scorer = PrefixScorer(default=0.02)
    summarize = summarization()
    make_agent(FactAgentModel(blocks=True), [MemGuardMiddleware(summarize, Guard(scorer, identical_is_safe=False))]
               ).invoke({"messages": [HumanMessage(TASK)]})
    assert scorer.prompts
    assert "[Assistant]\nRunning step 1." in scorer.prompts[0]  # an assistant turn's text block, as text
    assert all("'type': 'text'" not in p and "[{" not in p for p in scorer.prompts)
