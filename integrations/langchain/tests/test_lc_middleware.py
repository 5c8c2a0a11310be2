"""MemGuardMiddleware on real `create_agent` graphs with a real SummarizationMiddleware."""

from __future__ import annotations

import asyncio
import json

import pytest
from langchain.agents.middleware import (
    AgentMiddleware,
    ClearToolUsesEdit,
    ContextEditingMiddleware,
    SummarizationMiddleware,
)
from langchain_core.messages import BaseMessage, HumanMessage, ToolMessage
from langgraph.checkpoint.memory import InMemorySaver
from memguard import Guard, JSONLSink, Verdict

from langchain_memguard import LANGCHAIN_SUMMARY_PREFIX, MemGuardMiddleware
from lc_doubles import FACT, FactAgentModel, FixedSummarizer, PrefixScorer, make_agent, signature

MODES = ["invoke", "ainvoke", "stream", "astream"]
TASK = "Find the fact, then report it."


def harmful_when_forgotten() -> PrefixScorer:
    """The RM's verdict, played by a double: every action of a forgetful agent is harmful."""
    return PrefixScorer({"ls -la": 0.97, "done, I forgot": 0.97})


def summarization(keep: int = 2) -> SummarizationMiddleware:
    return SummarizationMiddleware(model=FixedSummarizer(), trigger=("messages", 6), keep=("messages", keep))


def context_editing() -> ContextEditingMiddleware:
    return ContextEditingMiddleware(edits=[ClearToolUsesEdit(trigger=0, keep=1)])


def run(agent, mode: str, checkpointer=None):
    """Run the agent to the end; returns the final messages (checked against the checkpoint)."""
    inputs = {"messages": [HumanMessage(TASK)]}
    config = {"configurable": {"thread_id": "t1"}} if checkpointer is not None else {}

    async def astream():
        last = None
        async for chunk in agent.astream(inputs, config, stream_mode="values"):
            last = chunk
        return last

    if mode == "invoke":
        state = agent.invoke(inputs, config)
    elif mode == "ainvoke":
        state = asyncio.run(agent.ainvoke(inputs, config))
    elif mode == "stream":
        state = list(agent.stream(inputs, config, stream_mode="values"))[-1]
    else:
        state = asyncio.run(astream())
    messages = state["messages"]
    if checkpointer is not None:
        assert signature(agent.get_state(config).values["messages"]) == signature(messages)
    return messages


def guarded_run(inner, scorer, mode="invoke", checkpointer=None, **options):
    decisions = []
    model = FactAgentModel()
    guard_options = {k: options.pop(k) for k in list(options) if k in ("cooldown", "sinks", "identical_is_safe")}
    guard = Guard(scorer, **guard_options)
    middleware = MemGuardMiddleware(inner, guard, on_decision=decisions.append, **options)
    messages = run(make_agent(model, [middleware], checkpointer), mode, checkpointer)
    return messages, decisions, model, middleware


@pytest.mark.parametrize("checkpointer", [None, "memory"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("make_inner", [summarization, context_editing], ids=["summarization", "context_editing"])
def test_safe_verdicts_end_in_the_state_of_the_unguarded_agent(make_inner, mode, checkpointer):
    saver = InMemorySaver() if checkpointer else None
    plain_model = FactAgentModel()
    expected = run(make_agent(plain_model, [make_inner()]), "invoke")
    assert "I forgot the fact" in expected[-1].content  # the unguarded compaction is lossy

    scorer = PrefixScorer(default=0.02)
    messages, decisions, model, middleware = guarded_run(make_inner(), scorer, mode, saver)

    assert signature(messages) == signature(expected)
    assert decisions and all(d.verdict is Verdict.COMMIT for d in decisions)
    assert scorer.calls  # the forgetting changed the action: the RM was consulted
    assert middleware.last_decision is decisions[-1]
    assert len(model.inputs) == len(plain_model.inputs) + len(decisions)  # one extra call per event


@pytest.mark.parametrize("checkpointer", [None, "memory"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("make_inner", [summarization, context_editing], ids=["summarization", "context_editing"])
def test_harmful_verdicts_lose_no_history(make_inner, mode, checkpointer):
    saver = InMemorySaver() if checkpointer else None
    plain_model = FactAgentModel()
    never_compacted = run(make_agent(plain_model), "invoke")

    scorer = harmful_when_forgotten()
    messages, decisions, model, _ = guarded_run(make_inner(), scorer, mode, saver, cooldown=0)

    assert signature(messages) == signature(never_compacted)
    assert f"the fact is {FACT}" in messages[-1].content
    assert not any(LANGCHAIN_SUMMARY_PREFIX in str(m.content) for m in messages)
    assert decisions and all(d.verdict is Verdict.VETO for d in decisions)
    assert all(d.p_harmful == pytest.approx(0.97) for d in decisions)
    assert len(model.inputs) == len(plain_model.inputs) + len(decisions)


def test_prompt_shows_summaries_and_system_prompt_as_in_training():
    scorer = PrefixScorer(default=0.02)
    guarded_run(summarization(), scorer, identical_is_safe=False)
    prompts = scorer.prompts
    assert len(prompts) >= 2
    assert all(p.startswith("[System]\nYou are a careful programmer.\n\n[User]\n") for p in prompts)
    later = prompts[-1]
    assert "[User]\n[Summary] The agent ran a few echo commands.\n\n" in later
    assert not any("Here is a summary" in p for p in prompts)
    assert "Recorded action at step" in later and "'strategy_swap__summarization_keep_messages_2'" in later


@pytest.mark.parametrize("mode", ["invoke", "ainvoke"])
def test_middleware_fallbacks_in_order_first_acceptable_wins(mode):
    scorer = harmful_when_forgotten()
    messages, decisions, model, _ = guarded_run(
        summarization(), scorer, mode, cooldown=0, fallbacks=[context_editing(), summarization(keep=6)])
    first = decisions[0]
    assert first.verdict is Verdict.FALLBACK
    assert [c.strategy for c in first.candidates] == [
        "summarization_keep_messages_2", "context_editing_keep_1", "summarization_keep_messages_6"]
    assert [c.p_harmful for c in first.candidates[:2]] == [pytest.approx(0.97)] * 2
    assert first.candidates[2].identical and first.strategy == "summarization_keep_messages_6"
    # The wider summary was committed (a summary is in the state) and the agent never forgot.
    assert any(str(m.content).startswith(LANGCHAIN_SUMMARY_PREFIX) for m in messages)
    assert any(isinstance(m, ToolMessage) and FACT in m.content for m in messages)
    assert f"the fact is {FACT}" in messages[-1].content


def test_memguard_strategy_fallback_keeps_system_prompt_out_of_the_state():
    scorer = harmful_when_forgotten()

    def mask_unneeded(messages):
        """A user's fallback, written for LangChain messages: mask old tool outputs but the fact's."""
        assert all(isinstance(m, BaseMessage) for m in messages)  # the agent's own message type
        last_tool = max(i for i, m in enumerate(messages) if m.type == "tool")
        return [m.model_copy(update={"content": "<MASKED>"})
                if m.type == "tool" and FACT not in m.content and i != last_tool else m
                for i, m in enumerate(messages)]

    messages, decisions, _, _ = guarded_run(summarization(), scorer, cooldown=0, fallbacks=[mask_unneeded])
    first = decisions[0]
    assert first.verdict is Verdict.FALLBACK and first.strategy == "mask_unneeded"
    assert any(isinstance(m, ToolMessage) and m.content == "<MASKED>" for m in messages)
    assert messages[0].type == "human" and messages[0].content == TASK  # no system message in state
    assert f"the fact is {FACT}" in messages[-1].content


def test_decisions_reach_the_guard_sinks(tmp_path):
    path = tmp_path / "audit.jsonl"
    scorer = harmful_when_forgotten()
    _, decisions, _, _ = guarded_run(summarization(), scorer, cooldown=0, sinks=[JSONLSink(path)])
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["verdict"] for r in records] == [d.verdict.value for d in decisions]
    assert all(r["proposed_strategy"] == "summarization_keep_messages_2" for r in records)


def test_cooldown_veto_still_answers_from_the_full_context():
    scorer = harmful_when_forgotten()
    messages, decisions, _, _ = guarded_run(summarization(), scorer, cooldown=2)
    assert any("cooldown" in " ".join(d.reasons) for d in decisions)
    assert f"the fact is {FACT}" in messages[-1].content


def test_bad_configuration_is_refused():
    class NotACompaction(AgentMiddleware):
        pass

    with pytest.raises(TypeError, match="no compaction"):
        MemGuardMiddleware(NotACompaction(), Guard(PrefixScorer()))
    with pytest.raises(TypeError, match="memguard.Guard"):
        MemGuardMiddleware(summarization(), object())


@pytest.mark.parametrize("mode", ["stream", "astream"])
def test_probes_run_under_the_agent_run_config(mode):
    """Both probes are traced and streamed like ordinary model calls (callbacks carried to threads)."""
    from langchain_core.callbacks import BaseCallbackHandler

    class AgentCalls(BaseCallbackHandler):
        def __init__(self):
            self.count = 0

        def on_chat_model_start(self, serialized, messages, *, metadata=None, **kwargs):
            if (metadata or {}).get("lc_source") != "summarization":
                self.count += 1

    model, calls = FactAgentModel(), AgentCalls()
    middleware = MemGuardMiddleware(summarization(), Guard(harmful_when_forgotten(), cooldown=0))
    agent = make_agent(model, [middleware])
    inputs, config = {"messages": [HumanMessage(TASK)]}, {"callbacks": [calls]}
    if mode == "stream":
        chunks = list(agent.stream(inputs, config, stream_mode="messages"))
    else:
        async def collect():
            return [chunk async for chunk in agent.astream(inputs, config, stream_mode="messages")]

        chunks = asyncio.run(collect())
    assert calls.count == len(model.inputs) > 7  # 7 steps, plus one probe per reviewed compaction
    # Every model call streamed its message (older langgraph also re-streams the messages a state
    # update re-adds, under the same ids: count messages, not chunks; langchain < 1.3 streams the
    # summariser's answer too).
    streamed = {message.id for message, meta in chunks
                if message.type == "ai" and meta.get("lc_source") != "summarization"}
    assert len(streamed) == len(model.inputs)


def test_a_failing_hook_is_logged_by_type_without_traceback_or_text(caplog):
    """Logs never quote the conversation: no traceback (its frames hold locals), no message text."""
    import logging

    def broken(decision):
        raise RuntimeError(f"hook saw {FACT}")

    middleware = MemGuardMiddleware(summarization(), Guard(harmful_when_forgotten(), cooldown=0), on_decision=broken)
    with caplog.at_level(logging.DEBUG):
        messages = run(make_agent(FactAgentModel(), [middleware]), "invoke")
    assert f"the fact is {FACT}" in messages[-1].content  # the agent was not affected
    failures = [r for r in caplog.records if "on_decision hook failed" in r.getMessage()]
    assert failures and all(r.exc_info is None and "RuntimeError" in r.getMessage() for r in failures)
    assert FACT not in caplog.text
