"""MemGuardCompaction on real `pydantic_ai.Agent` runs with pydantic-ai-harness compaction capabilities."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from memguard import Guard, JSONLSink, ObservationMasking, Verdict
from memguard.testing.contract import ConstantScorer, RecordingSink
from pydantic_ai.capabilities import AbstractCapability
from pydantic_ai.messages import ModelResponse, TextPart, ToolReturnPart
from pydantic_ai.models.function import FunctionModel
from pydantic_ai_harness.compaction import ClearToolResults, SlidingWindowCompaction, SummarizingCompaction

from pai_doubles import (
    FACT,
    INSTRUCTIONS,
    TASK,
    ActionScorer,
    ScriptedModel,
    harmful_when_forgotten,
    make_agent,
    stream_events,
    transcript,
)
from pydantic_ai_memguard import MemGuardCompaction

SLIDING = "sliding_window_compaction_keep_messages_3"


def sliding_window(keep: int = 3) -> SlidingWindowCompaction[None]:
    return SlidingWindowCompaction(max_messages=6, keep_messages=keep)


def run(agent: Any, mode: str = "sync") -> Any:
    return agent.run_sync(TASK) if mode == "sync" else asyncio.run(agent.run(TASK))


def unguarded(capabilities: list[Any]) -> tuple[Any, ScriptedModel]:
    model = ScriptedModel()
    return run(make_agent(model, capabilities)), model


def guarded(scorer: Any, *, mode: str = "sync", inner: Any = None, guard_options: dict[str, Any] | None = None,
            **options: Any) -> tuple[Any, list[Any], ScriptedModel, MemGuardCompaction[None]]:
    decisions: list[Any] = []
    model = ScriptedModel()
    guard = Guard(scorer, **(guard_options or {}))
    capability = MemGuardCompaction(inner or sliding_window(), guard, on_decision=decisions.append, **options)
    try:
        result = run(make_agent(model, [capability]), mode)
        assert guard.flush(30.0)
    finally:
        guard.close()
    return result, decisions, model, capability


def tool_returns(result: Any) -> list[ToolReturnPart]:
    return [p for m in result.all_messages() if m.kind == "request" for p in m.parts if isinstance(p, ToolReturnPart)]


def mask_unneeded(messages: list[Any]) -> list[Any]:
    """A memguard-side strategy: mask old tool outputs except the one holding the fact."""
    last_tool = max(i for i, m in enumerate(messages) if m.role == "tool")
    return [m.model_copy(update={"content": "<MASKED>"}) if m.role == "tool" and FACT not in m.text() and i != last_tool
            else m for i, m in enumerate(messages)]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_veto_keeps_the_whole_history_and_answers_from_the_full_context_probe(mode):
    plain, plain_model = unguarded([])
    result, decisions, model, capability = guarded(harmful_when_forgotten(), mode=mode, guard_options={"cooldown": 0})
    assert transcript(result.all_messages()) == transcript(plain.all_messages())
    assert result.output == f"done, the fact is {FACT}"
    assert decisions and all(d.verdict is Verdict.VETO for d in decisions)
    assert all(d.p_harmful == pytest.approx(0.97) for d in decisions)
    assert capability.last_decision is decisions[-1]
    assert model.calls == plain_model.calls + len(decisions)  # one extra call per review, never two
    assert result.usage.requests == model.calls  # the unused probes are billed to the run


def test_safe_verdicts_commit_and_reuse_the_compacted_probe():
    compacting, compacting_model = unguarded([sliding_window()])
    result, decisions, model, _ = guarded(ActionScorer(default=0.02), guard_options={"identical_is_safe": False})
    assert transcript(result.all_messages()) == transcript(compacting.all_messages())
    assert decisions and all(d.verdict is Verdict.COMMIT for d in decisions)
    assert model.calls == compacting_model.calls + len(decisions)
    assert result.usage.requests == model.calls


def test_probes_use_the_real_request_tools_and_instructions():
    _, decisions, model, _ = guarded(harmful_when_forgotten(), guard_options={"cooldown": 0})
    assert decisions
    assert all([t.name for t in info.function_tools] == ["bash"] for info in model.infos)
    assert all(info.instructions == INSTRUCTIONS for info in model.infos)
    assert all(info.allow_text_output for info in model.infos)


def test_prompt_shows_the_instructions_and_the_strategy_as_in_training():
    scorer = ActionScorer(default=0.02)
    guarded(scorer, guard_options={"identical_is_safe": False})
    assert len(scorer.prompts) >= 2
    assert scorer.prompts[0].startswith(
        f"[System]\n{INSTRUCTIONS}\n\n[User]\n{TASK}\n\n[Assistant]\n$ echo step 1\n\n[Tool]\nstep 1 {FACT}\n\n")
    assert all(p.startswith(f"[System]\n{INSTRUCTIONS}\n\n[User]\n{TASK}\n\n") for p in scorer.prompts)
    assert all(f"'strategy_swap__{SLIDING}'" in p for p in scorer.prompts)


def test_summaries_reach_memrm_as_training_saw_them():
    summarizer = FunctionModel(lambda messages, info: ModelResponse(parts=[TextPart("The agent ran echo commands.")]))
    scorer = ActionScorer(default=0.02)
    guarded(scorer, inner=SummarizingCompaction(summarizer, max_messages=6, keep_messages=2),
            guard_options={"identical_is_safe": False})
    assert len(scorer.prompts) >= 2
    assert "[User]\n[Summary] The agent ran echo commands.\n\n[Assistant]\n" in scorer.prompts[-1]


def test_fallbacks_in_order_capability_then_memguard_strategy():
    result, decisions, _, _ = guarded(harmful_when_forgotten(), guard_options={"cooldown": 0},
                                      fallbacks=[ClearToolResults(max_messages=100, keep_pairs=1), mask_unneeded])
    first = decisions[0]
    assert first.verdict is Verdict.FALLBACK and first.strategy == "mask_unneeded"
    assert [c.strategy for c in first.candidates] == [SLIDING, "clear_tool_results_keep_pairs_1", "mask_unneeded"]
    assert [c.p_harmful for c in first.candidates[:2]] == [pytest.approx(0.97)] * 2
    assert first.candidates[2].identical
    returns = tool_returns(result)
    assert [p.tool_call_id for p in returns] == [f"call_{k}" for k in range(1, 7)]  # nothing dropped
    assert FACT in returns[0].content and "<MASKED>" in [p.content for p in returns]
    assert result.output == f"done, the fact is {FACT}"


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_capability_fallback_is_applied_to_the_history(mode):
    scorer = ActionScorer(by_strategy={SLIDING: 0.9, "clear_tool_results_keep_pairs_1": 0.1})
    result, decisions, _, _ = guarded(scorer, mode=mode, fallbacks=[ClearToolResults(max_messages=100, keep_pairs=1)],
                                      guard_options={"identical_is_safe": False})
    assert decisions and all(d.verdict is Verdict.FALLBACK for d in decisions)
    assert all(d.strategy == "clear_tool_results_keep_pairs_1" for d in decisions)
    returns = tool_returns(result)
    assert [p.tool_call_id for p in returns] == [f"call_{k}" for k in range(1, 7)]
    assert returns[0].content == "[tool result cleared]"


def test_audit_mode_applies_the_compaction_and_scores_in_the_background(tmp_path):
    compacting, compacting_model = unguarded([sliding_window()])
    sink = RecordingSink()
    result, decisions, model, capability = guarded(
        harmful_when_forgotten(),
        guard_options={"mode": "audit", "identical_is_safe": False, "sinks": [sink, JSONLSink(tmp_path / "a.jsonl")]})
    assert transcript(result.all_messages()) == transcript(compacting.all_messages())
    assert decisions and all(d.pending and d.verdict is Verdict.AUDIT for d in decisions)
    assert capability.last_decision is decisions[-1]
    scored = sink.decisions
    assert len(scored) == len(decisions) and all(not d.pending and d.verdict is Verdict.AUDIT for d in scored)
    assert [d.recorded_action for d in scored][:2] == ["echo step 4", "ls -la # step 5"]  # probed on the full context
    assert all(d.p_harmful == pytest.approx(0.97) for d in scored)  # the compacted answers: the agent forgot
    assert all("enforce would not commit" in " ".join(d.reasons) for d in scored)
    assert model.calls == compacting_model.calls + len(decisions)  # the compacted answer is the real one
    assert len((tmp_path / "a.jsonl").read_text().splitlines()) == len(decisions)


def test_the_event_loop_keeps_running_while_the_scorer_works():
    class SlowScorer(ConstantScorer):
        def score(self, prompts: list[str]) -> Any:
            time.sleep(0.3)
            return super().score(prompts)

    model = ScriptedModel()
    guard = Guard(SlowScorer(0.0), identical_is_safe=False)
    agent = make_agent(model, [MemGuardCompaction(sliding_window(), guard)])
    gaps: list[float] = []

    async def main() -> Any:
        done = asyncio.Event()

        async def ticker() -> None:
            last = time.perf_counter()
            while not done.is_set():
                await asyncio.sleep(0.01)
                now = time.perf_counter()
                gaps.append(now - last)
                last = now

        tick = asyncio.create_task(ticker())
        try:
            return await agent.run(TASK)
        finally:
            done.set()
            await tick

    start = time.perf_counter()
    asyncio.run(main())
    assert time.perf_counter() - start >= 0.3 * 4  # four reviews, each scored
    assert max(gaps) < 0.2, max(gaps)


def test_concurrent_runs_share_one_capability():
    decisions: list[Any] = []
    model = ScriptedModel()
    guard = Guard(harmful_when_forgotten(), cooldown=0)
    agent = make_agent(model, [MemGuardCompaction(sliding_window(), guard, on_decision=decisions.append)])

    async def both() -> list[Any]:
        return list(await asyncio.gather(agent.run(TASK), agent.run(TASK)))

    results = asyncio.run(both())
    assert [r.output for r in results] == [f"done, the fact is {FACT}"] * 2
    assert len({d.conversation_id for d in decisions}) == 2


def test_a_failing_on_decision_hook_does_not_break_the_run(caplog):
    def broken(decision: Any) -> None:
        raise RuntimeError("hook bug")

    model = ScriptedModel()
    capability = MemGuardCompaction(sliding_window(), Guard(ConstantScorer(0.0)), on_decision=broken)
    result = run(make_agent(model, [capability]))
    assert result.output == "done, I forgot the fact"
    assert capability.last_decision is not None and "on_decision hook failed (RuntimeError)" in caplog.text


def test_bad_configuration_is_refused():
    guard = Guard(ConstantScorer(0.0))
    with pytest.raises(TypeError, match="memguard.Guard"):
        MemGuardCompaction(sliding_window(), object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="capability"):
        MemGuardCompaction(lambda messages: messages, guard)  # type: ignore[arg-type]

    class NotACompaction(AbstractCapability[None]):
        pass

    with pytest.raises(TypeError, match="no compaction to guard"):
        MemGuardCompaction(NotACompaction(), guard)
    with pytest.raises(TypeError, match="a fallback must be"):
        MemGuardCompaction(sliding_window(), guard, fallbacks=["observation_masking"])
    with pytest.raises(TypeError, match="no compaction to guard"):
        MemGuardCompaction(sliding_window(), guard, fallbacks=[NotACompaction()])
    assert MemGuardCompaction(sliding_window(), guard, fallbacks=[ObservationMasking()]).strategy == SLIDING


def test_streamed_runs_stream_the_replayed_probe_as_it_streamed():
    model = ScriptedModel()
    guard = Guard(ActionScorer(default=0.02), identical_is_safe=False)
    events, result = stream_events(make_agent(model, [MemGuardCompaction(sliding_window(), guard)]))
    unguarded_events, compacting = stream_events(make_agent(ScriptedModel(), [sliding_window()]))
    assert transcript(result.all_messages()) == transcript(compacting.all_messages())
    assert events == unguarded_events  # the served probe streams its own events, as the model streamed them
    assert model.calls == 7 + 4  # every step streamed once; each of the 4 reviews added one probe


def test_audit_records_a_failed_full_context_probe_and_leaves_the_run_alone():
    from pai_doubles import _last_step, _texts

    class FailsOnTheFullContext(ScriptedModel):
        """Fails only where the agent still remembers at step 3+: the audit probes, never the run."""

        def _note(self, messages: list[Any], info: Any) -> Any:
            response = super()._note(messages, info)
            if FACT in _texts(messages) and _last_step(messages) >= 3:
                raise RuntimeError("provider unavailable")
            return response

    compacting, _ = unguarded([sliding_window()])
    sink = RecordingSink()
    guard = Guard(ConstantScorer(0.5), mode="audit", sinks=[sink])
    model = FailsOnTheFullContext()
    result = run(make_agent(model, [MemGuardCompaction(sliding_window(), guard)]))
    assert guard.flush(30.0)
    guard.close()
    assert transcript(result.all_messages()) == transcript(compacting.all_messages())
    failed = [d for d in sink.decisions if d.error]
    assert failed and "agent probe on the full context failed: RuntimeError" in failed[0].error
    assert all(d.verdict is Verdict.AUDIT and not d.pending for d in sink.decisions)


def keep_task_and_last_step(messages: list[Any]) -> list[Any]:
    """A history processor: the task and the latest tool call with its result."""
    return messages if len(messages) <= 6 else [messages[0], *messages[-2:]]


async def akeep_task_and_last_step(messages: list[Any]) -> list[Any]:
    await asyncio.sleep(0)
    return keep_task_and_last_step(messages)


@pytest.mark.parametrize("processor", [keep_task_and_last_step, akeep_task_and_last_step], ids=["sync", "async"])
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_history_processor_sync_or_async_is_guarded(processor, mode):
    from pydantic_ai.capabilities import ProcessHistory

    compacting, _ = unguarded([ProcessHistory(processor)])
    plain, _ = unguarded([])
    safe, safe_decisions, _, _ = guarded(ConstantScorer(0.0), mode=mode, inner=ProcessHistory(processor),
                                         guard_options={"identical_is_safe": False})
    harmful, harmful_decisions, _, _ = guarded(ConstantScorer(1.0), mode=mode, inner=ProcessHistory(processor),
                                               guard_options={"identical_is_safe": False})
    assert transcript(safe.all_messages()) == transcript(compacting.all_messages()) != transcript(plain.all_messages())
    assert transcript(harmful.all_messages()) == transcript(plain.all_messages())
    assert {d.verdict for d in safe_decisions} == {Verdict.COMMIT}
    assert Verdict.VETO in {d.verdict for d in harmful_decisions}
