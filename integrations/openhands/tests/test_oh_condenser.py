"""MemGuardCondenser on a real OpenHands agent: SOFT vetoes, HARD requirements, fallbacks, restore."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from memguard import Decision, Guard, ObservationMasking, RecentWindow, Verdict
from memguard.testing.contract import ConstantScorer, RecordingSink
from openhands.sdk import Agent
from openhands.sdk.context.condenser import LLMSummarizingCondenser, NoOpCondenser
from openhands.sdk.event import Condensation, CondensationRequest, MessageEvent, ObservationEvent

from oh_doubles import (
    FACT,
    TagScorer,
    agent_llm,
    commands,
    make_agent,
    run,
    summarizing,
    transcript,
)
from openhands_memguard import MemGuardCondenser, guard_agent
from openhands_memguard.views import GuardView


def guarded_run(scorer: Any, condenser: Any = None, mode: str = "sync", *, llm: Any = None,
                fallbacks: tuple[Any, ...] = (), **guard_options: Any) -> tuple[Any, RecordingSink, Any]:
    sink = RecordingSink()
    guard = Guard(scorer, sinks=[sink], identical_is_safe=False, **guard_options)
    llm = llm or agent_llm()
    agent = guard_agent(make_agent(llm, condenser or summarizing()), guard, fallbacks=fallbacks)
    return run(agent, mode), sink, llm


def final_message(conversation: Any) -> str:
    last = conversation.state.events[-1]
    assert isinstance(last, MessageEvent) and last.source == "agent", transcript(conversation.state.events)[-3:]
    return last.llm_message.content[0].text


# ---------------------------------------------------------------------------------- what MemRM reads


def test_memrm_reads_commands_and_summaries_as_in_training():
    scorer = ConstantScorer(0.0)
    _, sink, _ = guarded_run(scorer)
    assert len(sink.reviews) >= 2
    first, later = scorer.prompts[0], scorer.prompts[-1]
    assert "[Assistant]\n$ echo step 1\n\n[Tool]\nran: echo step 1 -> FACT-42" in first
    assert "Recorded action at step 4:\necho step 5\n\nProposed action under perturbation " in first
    assert "\nls step 5\n\nIs the proposed action safe" in first
    # After a committed condensation, the summary is its own user turn with the training marker.
    assert "\n\n[User]\nFind the fact, then report it.\n\n[User]\n[Summary] Commands ran up to step 4.\n\n" in later


# ---------------------------------------------------------------------------------- SOFT


def test_soft_vetoes_lose_nothing_and_cooldown_spares_the_summarizer():
    plain_llm = agent_llm()
    plain = run(make_agent(plain_llm, None))
    condenser = summarizing()
    conversation, sink, llm = guarded_run(ConstantScorer(1.0), condenser)
    assert not any(isinstance(e, Condensation) for e in conversation.state.events)
    assert transcript(conversation.state.events) == transcript(plain.state.events)
    assert final_message(conversation) == f"done: {FACT}"
    reviews = sink.reviews
    assert len(reviews) >= 2 and all(d.verdict is Verdict.VETO for d in sink.decisions)
    # Cooling steps skip the inner condenser: one summary per review, none thrown away.
    assert condenser.llm.calls == len(reviews)  # type: ignore[attr-defined]
    assert llm.calls == plain_llm.calls + 2 * len(reviews)
    assert [d.step for d in reviews] == [4, 8]  # cooldown=3: steps 5, 6 and 7 skipped


def test_soft_masking_fallback_is_a_view_for_this_step_only():
    scorer = TagScorer({"observation_masking": 0.1}, default=0.9)
    conversation, sink, llm = guarded_run(scorer, fallbacks=(ObservationMasking(keep_last=2),))
    events = conversation.state.events
    assert not any(isinstance(e, Condensation) for e in events), "a View fallback must not be stored"
    assert sink.reviews and all(d.verdict is Verdict.FALLBACK and d.strategy == "observation_masking"
                                for d in sink.reviews)
    # The agent saw the masked view (so it forgot FACT and listed instead of echoing) ...
    assert any("<MASKED>" in context and FACT not in context for context in llm.contexts)
    assert commands(events)[4] == "ls step 5"
    # ... while the conversation still holds every observation as it was.
    first = next(e for e in events if isinstance(e, ObservationEvent))
    assert first.observation.text == f"ran: echo step 1 -> {FACT}"


def test_a_condenser_fallback_commits_its_own_condensation():
    primary = summarizing(max_size=12, keep_first=2)
    keeps_more = summarizing(max_size=12, keep_first=4)
    scorer = TagScorer({"keep_first_4": 0.1}, default=0.9)
    conversation, sink, _ = guarded_run(scorer, primary, fallbacks=(keeps_more,))
    assert sink.reviews and all(d.verdict is Verdict.FALLBACK for d in sink.reviews)
    assert {d.strategy for d in sink.reviews} == {"llm_summarizing_keep_first_4_max_size_12"}
    condensations = [e for e in conversation.state.events if isinstance(e, Condensation)]
    assert condensations and all(c.llm_response_id.startswith("test-response") for c in condensations)
    assert final_message(conversation) == f"done: {FACT}"  # the fallback kept the fact in view


# ---------------------------------------------------------------------------------- HARD


def test_an_explicit_request_is_hard_forced_never_vetoed():
    conversation, sink, _ = guarded_run(ConstantScorer(1.0), summarizing(max_size=100))
    assert not sink.decisions  # event count never triggered a SOFT condensation
    conversation.condense()
    (decision,) = sink.decisions
    assert decision.verdict is Verdict.FORCED and decision.reviewed  # must reduce: scored, never vetoed
    events = conversation.state.events
    assert isinstance(events[-2], CondensationRequest) and isinstance(events[-1], Condensation)
    assert conversation.state.view.unhandled_condensation_request is False


def test_hard_commits_the_lowest_risk_candidate_that_can_be_stored():
    scorer = TagScorer({"recent_window": 0.7, "observation_masking": 0.0}, default=0.9)
    fallbacks = (ObservationMasking(keep_last=1), RecentWindow(keep_last=4, keep_first=2))
    conversation, sink, _ = guarded_run(scorer, summarizing(max_size=100), fallbacks=fallbacks)
    conversation.condense()
    (decision,) = sink.decisions
    assert decision.verdict is Verdict.FORCED and decision.strategy == "recent_window"
    masking = next(c for c in decision.candidates if c.strategy == "observation_masking")
    assert masking.rejected and "cannot resolve a HARD requirement" in masking.rejected
    condensation = conversation.state.events[-1]
    assert isinstance(condensation, Condensation) and condensation.summary is None
    kept = [e for e in conversation.state.view.events]
    assert [type(e).__name__ for e in kept[:2]] == ["SystemPromptEvent", "MessageEvent"]
    assert len(kept) == 7  # system, task, and the last two steps with the final answer


def test_an_async_user_fallback_writing_its_own_summary_is_stored_as_a_condensation():
    async def keep_task_and_summarize(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [*messages[:2], {"role": "user", "content": f"[Summary] {FACT} was found at step 1."}, *messages[-3:]]

    scorer = TagScorer({"keep_task_and_summarize": 0.1}, default=0.9)
    conversation, sink, _ = guarded_run(scorer, summarizing(max_size=100), fallbacks=(keep_task_and_summarize,))
    conversation.condense()  # HARD: only what can be stored is allowed, and this can
    (decision,) = sink.decisions
    assert decision.verdict is Verdict.FALLBACK and decision.strategy == "keep_task_and_summarize"
    condensation = conversation.state.events[-1]
    assert isinstance(condensation, Condensation)
    assert (condensation.summary, condensation.summary_offset) == (f"{FACT} was found at step 1.", 2)
    assert len(conversation.state.view.events) == 6


@pytest.mark.parametrize("on_error", ["open", "closed"])
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_context_window_overflow_never_loops(mode: str, on_error: str):
    llm = agent_llm(overflow_at=8)
    conversation, sink, _ = guarded_run(ConstantScorer(1.0), summarizing(max_size=100), mode, llm=llm,
                                        on_error=on_error)
    events = conversation.state.events
    requests = [e for e in events if isinstance(e, CondensationRequest)]
    condensations = [e for e in events if isinstance(e, Condensation)]
    assert requests and len(requests) == len(condensations) == len(sink.decisions)
    expected = Verdict.COMMIT if on_error == "open" else Verdict.FORCED
    assert all(d.verdict is expected for d in sink.decisions), [d.reasons for d in sink.decisions]
    assert all("agent probe on the full context failed" in (d.error or "") for d in sink.decisions)
    assert final_message(conversation).startswith("done:")


# ---------------------------------------------------------------------------------- audit, hooks


def test_audit_mode_returns_the_inner_condensation_and_scores_in_the_background():
    seen: list[Decision] = []
    sink = RecordingSink()
    guard = Guard(ConstantScorer(1.0), mode="audit", sinks=[sink], identical_is_safe=False)
    agent = guard_agent(make_agent(agent_llm(), summarizing()), guard, on_decision=seen.append)
    conversation = run(agent)
    assert guard.flush(30)
    assert any(isinstance(e, Condensation) for e in conversation.state.events)
    assert seen and all(d.pending for d in seen)
    assert sink.decisions and all(d.verdict is Verdict.AUDIT and d.p_harmful == 1.0 for d in sink.decisions)
    assert agent.condenser.last_decision is seen[-1]  # type: ignore[union-attr]
    guard.close()


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_audit_mode_builds_the_views_on_the_worker_and_scores_what_enforce_scores(monkeypatch, mode):
    agent_threads: list[str] = []
    view_threads: list[str] = []
    prepare, init = MemGuardCondenser._prepare, GuardView.__init__

    def spy_prepare(self: Any, *args: Any) -> Any:
        agent_threads.append(threading.current_thread().name)
        return prepare(self, *args)

    def spy_init(self: Any, *args: Any, **kwargs: Any) -> None:
        view_threads.append(threading.current_thread().name)
        init(self, *args, **kwargs)

    monkeypatch.setattr(MemGuardCondenser, "_prepare", spy_prepare)
    monkeypatch.setattr(GuardView, "__init__", spy_init)
    audit_scorer, enforce_scorer = ConstantScorer(0.0), ConstantScorer(0.0)
    audit_sink, enforce_sink = RecordingSink(), RecordingSink()
    audit = Guard(audit_scorer, mode="audit", sinks=[audit_sink], identical_is_safe=False)
    audit_run = run(guard_agent(make_agent(agent_llm(), summarizing()), audit), mode)
    assert audit.flush(30)
    audit.close()
    audited = list(view_threads)
    enforce = Guard(enforce_scorer, sinks=[enforce_sink], identical_is_safe=False)
    enforce_run = run(guard_agent(make_agent(agent_llm(), summarizing()), enforce), mode)

    assert agent_threads and audited and not set(audited) & set(agent_threads)
    assert all(d.verdict is Verdict.AUDIT and d.reviewed and d.p_harmful == 0.0 for d in audit_sink.decisions)
    assert all(d.verdict is Verdict.COMMIT for d in enforce_sink.decisions)
    # The same reviews: the same steps, the same views scored (MemRM's prompts), the same candidates.
    assert [d.step for d in audit_sink.decisions] == [d.step for d in enforce_sink.decisions] != []
    assert audit_scorer.prompts == enforce_scorer.prompts
    assert ([[plain(m) for m in d.messages] for d in audit_sink.decisions]
            == [[plain(m) for m in d.messages] for d in enforce_sink.decisions])
    assert transcript(audit_run.state.events) == transcript(enforce_run.state.events)


def plain(message: Any) -> tuple[Any, ...]:
    return message["role"], message["content"], json.dumps(message.get("tool_calls"), sort_keys=True)


# ---------------------------------------------------------------------------------- restore


def test_the_guard_is_not_serialized_and_a_restored_agent_works_once_guarded():
    scorer = ConstantScorer(1.0)
    guard = Guard(scorer, identical_is_safe=False)
    agent = guard_agent(make_agent(agent_llm(), summarizing()), guard)
    dumped = agent.model_dump_json()
    assert '"kind":"MemGuardCondenser"' in dumped and '"kind":"LLMSummarizingCondenser"' in dumped
    for private in ("scorer", "sinks", "threshold", "cooldown", "ConstantScorer"):
        assert private not in dumped

    restored = Agent.model_validate_json(dumped)
    condenser = restored.condenser
    assert isinstance(condenser, MemGuardCondenser) and condenser.guard is None
    assert isinstance(condenser.inner, LLMSummarizingCondenser) and condenser.inner.max_size == 8
    with pytest.raises(RuntimeError, match="guard_agent"):
        run(restored)

    # Scripted LLMs are code, not data: they replace the restored (network) ones before running.
    llm = agent_llm()
    scripted = restored.model_copy(update={
        "llm": llm, "condenser": condenser.model_copy(update={"inner": summarizing()})})
    sink = RecordingSink()
    again = run(guard_agent(scripted, Guard(scorer, sinks=[sink], identical_is_safe=False)))
    assert isinstance(again.agent.condenser, MemGuardCondenser)
    assert not isinstance(again.agent.condenser.inner, MemGuardCondenser)
    assert sink.reviews and all(d.verdict is Verdict.VETO for d in sink.decisions)
    assert final_message(again) == f"done: {FACT}"


# ---------------------------------------------------------------------------------- errors


def test_clear_errors_for_bad_setups():
    guard = Guard(ConstantScorer(0.0))
    with pytest.raises(ValueError, match="no condenser"):
        guard_agent(make_agent(agent_llm(), None), guard)
    with pytest.raises(TypeError, match=r"memguard\.Guard"):
        guard_agent(make_agent(agent_llm(), summarizing()), object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="OpenHands agent"):
        guard_agent(object(), guard)  # type: ignore[type-var]
    with pytest.raises(ValueError, match="already a MemGuardCondenser"):
        MemGuardCondenser(MemGuardCondenser(NoOpCondenser(), guard), guard)
    with pytest.raises(ValueError, match="need a guard"):
        MemGuardCondenser(NoOpCondenser(), fallbacks=(RecentWindow(),))
    with pytest.raises(TypeError, match="fallback"):
        MemGuardCondenser(NoOpCondenser(), guard, fallbacks=(42,))


def test_guard_agent_leaves_the_original_agent_alone_and_does_not_wrap_twice():
    guard = Guard(ConstantScorer(0.0))
    agent = make_agent(agent_llm(), summarizing())
    once = guard_agent(agent, guard)
    twice = guard_agent(once, Guard(ConstantScorer(1.0)), strategy="summary")
    assert isinstance(agent.condenser, LLMSummarizingCondenser)
    assert isinstance(twice.condenser, MemGuardCondenser) and isinstance(twice.condenser.inner, LLMSummarizingCondenser)
    assert twice.condenser.strategy == "summary" and twice.condenser.guard is not once.condenser.guard  # type: ignore[union-attr]
    assert twice.condenser.handles_condensation_requests() and twice.condenser.get_llm() is agent.condenser.llm
