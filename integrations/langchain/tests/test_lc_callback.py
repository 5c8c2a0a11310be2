"""MemGuardCallbackHandler: audit-only detection of real compactions from an agent's callbacks."""

from __future__ import annotations

import asyncio
import json

import pytest
from langchain.agents.middleware import SummarizationMiddleware
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langgraph.checkpoint.memory import InMemorySaver
from memguard import Guard, JSONLSink, Verdict

from langchain_memguard import LANGCHAIN_SUMMARY_PREFIX, MemGuardCallbackHandler
from langchain_memguard.callback import rebuild_before
from lc_doubles import FACT, FactAgentModel, FixedSummarizer, PrefixScorer, bash, make_agent, signature

TASK = "Find the fact, then report it."


def summarizing_agent(model, summarizer, checkpointer=None):
    middleware = SummarizationMiddleware(model=summarizer, trigger=("messages", 6), keep=("messages", 2))
    return make_agent(model, [middleware], checkpointer)


def audit(tmp_path, scorer=None, probe_model=None, **options):
    sink = JSONLSink(tmp_path / "audit.jsonl")
    guard = Guard(scorer or PrefixScorer({"ls -la": 0.97, "done, I forgot": 0.97}), mode="audit", sinks=[sink],
                  **options)
    handler = MemGuardCallbackHandler(guard, probe_model=probe_model or agent_model())
    return guard, handler, tmp_path / "audit.jsonl"


def agent_model():
    """The probe model a user passes: the agent's model with the agent's tools bound, as create_agent binds them."""
    return FactAgentModel().bind_tools([bash], tool_choice=None)


def records(path):
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.parametrize("mode", ["invoke", "ainvoke"])
def test_detects_real_summarization_and_writes_decisions(tmp_path, mode):
    guard, handler, path = audit(tmp_path)
    model, summarizer = FactAgentModel(), FixedSummarizer()
    plain_model, plain_summarizer = FactAgentModel(), FixedSummarizer()
    expected = summarizing_agent(plain_model, plain_summarizer).invoke({"messages": [HumanMessage(TASK)]})
    agent = summarizing_agent(model, summarizer)
    config = {"callbacks": [handler]}
    if mode == "invoke":
        result = agent.invoke({"messages": [HumanMessage(TASK)]}, config)
    else:
        result = asyncio.run(agent.ainvoke({"messages": [HumanMessage(TASK)]}, config))
    assert handler.flush(10)

    # The agent ran exactly as without the handler (audit never changes anything).
    assert signature(result["messages"]) == signature(expected["messages"])
    assert len(model.inputs) == len(plain_model.inputs)
    # One decision per real compaction, written to the JSONL sink.
    assert summarizer.calls >= 2 and handler.detected == summarizer.calls
    rows = records(path)
    assert len(rows) == summarizer.calls and handler.failures == 0
    first = rows[0]
    assert first["verdict"] == Verdict.AUDIT.value and first["mode"] == "audit"
    assert first["proposed_strategy"] == "summarization"
    assert first["recorded_action"] == "echo step 4"  # probed on the rebuilt full context
    assert first["candidates"][0]["proposed_action"] == "ls -la # step 4"  # the agent's actual output
    assert first["candidates"][0]["p_harmful"] == pytest.approx(0.97)
    assert "enforce would not commit" in " ".join(first["reasons"])


def test_rebuilt_context_is_what_the_agent_would_have_seen(tmp_path):
    """The pre-compaction view equals the uncompacted agent's input at the same step."""
    seen = []
    scorer = PrefixScorer({"ls -la": 0.97})
    original = scorer.score

    def spy(prompts):
        seen.extend(prompts)
        return original(prompts)

    scorer.score = spy
    guard, handler, _ = audit(tmp_path, scorer)
    summarizing_agent(FactAgentModel(), FixedSummarizer()).invoke(
        {"messages": [HumanMessage(TASK)]}, {"callbacks": [handler]}
    )
    assert handler.flush(10)

    plain = FactAgentModel()
    make_agent(plain).invoke({"messages": [HumanMessage(TASK)]})
    from memguard.protocol import render_turns

    full_context_at_step_4 = plain.inputs[3]
    assert seen and seen[0].startswith(
        render_turns([m for m in full_context_at_step_4]) + "\n\n[User]\nRecorded action at step 3:"
    )


def test_summary_rendered_as_training_saw_it(tmp_path):
    scorer = PrefixScorer(default=0.02)
    guard, handler, _ = audit(tmp_path, scorer, identical_is_safe=False)
    summarizing_agent(FactAgentModel(), FixedSummarizer()).invoke(
        {"messages": [HumanMessage(TASK)]}, {"callbacks": [handler]}
    )
    assert handler.flush(10)
    later = scorer.prompts[-1]
    assert "[User]\n[Summary] The agent ran a few echo commands." in later
    assert LANGCHAIN_SUMMARY_PREFIX.strip() not in later


def test_threads_with_a_checkpointer_continue_across_invocations(tmp_path):
    guard, handler, path = audit(tmp_path)
    agent = make_agent(FactAgentModel(n_steps=2), checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "t-1"}, "callbacks": [handler]}
    agent.invoke({"messages": [HumanMessage(TASK)]}, config)
    asyncio.run(agent.ainvoke({"messages": [HumanMessage("And again.")]}, config))
    assert handler.flush(10)
    assert handler.detected == 0 and records(path) == []  # growth only: nothing compacted


def test_never_raises_into_the_agent(tmp_path):
    class Broken:
        def invoke(self, messages, config=None):
            raise RuntimeError("probe model down")

    guard, handler, path = audit(tmp_path, probe_model=Broken())
    result = summarizing_agent(FactAgentModel(), FixedSummarizer()).invoke(
        {"messages": [HumanMessage(TASK)]}, {"callbacks": [handler]}
    )
    assert handler.flush(10)
    assert "I forgot the fact" in result["messages"][-1].content
    rows = records(path)
    assert rows and all("probe" in (r["error"] or "") for r in rows)


def test_rebuild_before_kinds():
    system, task = SystemMessage("sys"), HumanMessage("task", id="h")
    call = AIMessage("", tool_calls=[{"name": "bash", "args": {"command": "echo step 1"}, "id": "c1"}], id="a1")
    result = ToolMessage(f"step 1 {FACT}", tool_call_id="c1", id="t1")
    call2 = AIMessage("", tool_calls=[{"name": "bash", "args": {"command": "echo step 2"}, "id": "c2"}], id="a2")
    result2 = ToolMessage("step 2", tool_call_id="c2", id="t2")
    previous = [system, task, call, result]
    grown = [*previous, call2, result2]
    assert rebuild_before(previous, call2, grown) is None

    summary = HumanMessage(LANGCHAIN_SUMMARY_PREFIX + "ran things", id="s")
    before, kind = rebuild_before(previous, call2, [system, summary, call2, result2])
    assert kind == "summarization" and before == grown

    cleared = result.model_copy(update={"content": "[cleared]"})
    before, kind = rebuild_before(previous, call2, [system, task, call, cleared, call2, result2])
    assert kind == "context_editing" and before == grown

    before, kind = rebuild_before(previous, call2, [system, call2, result2])
    assert kind == "compaction" and before == grown


def test_requires_an_audit_guard():
    with pytest.raises(ValueError, match="audit"):
        MemGuardCallbackHandler(Guard(PrefixScorer()), probe_model=FactAgentModel())
    with pytest.raises(TypeError, match="probe_model"):
        MemGuardCallbackHandler(Guard(PrefixScorer(), mode="audit"), probe_model=object())


def test_the_agents_own_model_is_probed_with_the_agents_tools_and_settings(tmp_path):
    """probe_model=<the agent's chat model>: each probe carries the agent's tools, tool_choice and
    model settings at that step, as LangChain reported them for the agent's own call."""
    from lc_doubles import RunSettings

    scorer = PrefixScorer({"ls -la": 0.97})
    probe_model = FactAgentModel()
    guard, handler, path = audit(tmp_path, scorer, probe_model=probe_model)
    agent_model = FactAgentModel()
    middleware = [RunSettings(), SummarizationMiddleware(model=FixedSummarizer(), trigger=("messages", 6),
                                                         keep=("messages", 2))]
    make_agent(agent_model, middleware).invoke({"messages": [HumanMessage(TASK)]}, {"callbacks": [handler]})
    assert handler.flush(10)
    rows = records(path)
    assert rows and all(r["error"] is None for r in rows) and rows[0]["p_harmful"] == pytest.approx(0.97)
    assert probe_model.requests and set(probe_model.requests) <= set(agent_model.requests)
    assert ("temperature", "0.3") in probe_model.requests[0][2]


@pytest.mark.parametrize("probe_model", [
    FactAgentModel().bind_tools([bash], tool_choice=None, temperature=0.9),  # another temperature
    FixedSummarizer(),  # another model
], ids=["other-temperature", "other-model"])
def test_a_probe_not_sent_like_the_agent_is_refused_and_never_scored(tmp_path, probe_model):
    scorer = PrefixScorer({"ls -la": 0.97})
    guard, handler, path = audit(tmp_path, scorer, probe_model=probe_model)
    summarizing_agent(FactAgentModel(), FixedSummarizer()).invoke(
        {"messages": [HumanMessage(TASK)]}, {"callbacks": [handler]}
    )
    assert handler.flush(10)
    rows = records(path)
    assert rows and all("ProbeMismatchError" in (r["error"] or "") for r in rows)
    assert all(r["recorded_action"] is None for r in rows)
    assert scorer.calls == []  # nothing was scored on a probe the agent would not have sent


def test_a_growing_history_is_recognised_without_converting_a_message(tmp_path, monkeypatch):
    """On the agent's path: a graph hands the model the same message objects call after call, so
    telling growth from compaction compares references, not message contents."""
    import langchain_memguard.callback as callback

    converted = []
    real_key = callback._message_key
    monkeypatch.setattr(callback, "_message_key", lambda m: converted.append(m) or real_key(m))
    guard, handler, path = audit(tmp_path)
    make_agent(FactAgentModel()).invoke({"messages": [HumanMessage(TASK)]}, {"callbacks": [handler]})
    assert handler.flush(10)
    assert handler.detected == 0 and converted == []
