"""What `MemGuardSummarizer` and its plugin promise beyond the shared contract, on real ADK runs."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest
from google.adk.agents.invocation_context import LlmCallsLimitExceededError
from google.adk.apps.app import App
from google.adk.apps.llm_event_summarizer import LlmEventSummarizer
from memguard import Guard, ObservationMasking, Verdict
from memguard.testing.contract import ConstantScorer, FailingScorer, RecordingSink

import conftest
from adk_doubles import (
    FACT,
    SCRIPTS,
    ActionScorer,
    DroppingSummarizer,
    KeepingSummarizer,
    RaisingSummarizer,
    ScriptedLlm,
    Shape,
    compactions,
    harmful_when_forgotten,
    make_agent,
    make_app,
    run_conversation,
    transcript,
    usage,
)
from google_adk_memguard import MemGuardPlugin, MemGuardSummarizer, guard_app, rebuild
from google_adk_memguard import summarizer as summarizer_module
from google_adk_memguard.review import summary_of
from google_adk_memguard.views import ContentBridge


class Run:
    """One conversation of the scripted agent, unguarded (`guard=None`) or guarded."""

    def __init__(self, shape: Shape, guard: Guard | None = None, inner: Any = "dropping", *,
                 streaming: bool = False, max_llm_calls: int = 500, **options: Any) -> None:
        script = SCRIPTS[shape]
        self.llm = ScriptedLlm(steps_per_turn=script.steps_per_turn)
        # inner: "dropping" (the default), None (no compaction at all), "adk" (ADK's default summarizer)
        self.inner = DroppingSummarizer() if inner == "dropping" else None if inner == "adk" else inner
        app = make_app(self.llm, self.inner, shape, compacting=inner is not None)
        self.summarizer: MemGuardSummarizer | None = None
        if guard is not None:
            app = guard_app(app, guard, **options)
            assert app.events_compaction_config is not None
            self.summarizer = app.events_compaction_config.summarizer  # type: ignore[assignment]
        self.outcome = run_conversation(app, script, streaming=streaming, max_llm_calls=max_llm_calls)
        self.transcript = transcript(self.outcome)


def guard_with(scorer: Any, sink: RecordingSink, **options: Any) -> Guard:
    return Guard(scorer, sinks=[sink], identical_is_safe=False, **options)


# ---------------------------------------------------------------------- costs


@pytest.mark.parametrize("shape", ["in_flow", "post_invocation"])
@pytest.mark.parametrize("p_harmful", [0.0, 1.0])
def test_a_review_costs_one_extra_call_in_flow_and_two_after_a_run(shape: Shape, p_harmful: float):
    baseline = Run(shape, inner="dropping" if p_harmful == 0.0 else None)
    sink = RecordingSink()
    run = Run(shape, guard_with(ConstantScorer(p_harmful), sink))
    assert run.summarizer is not None
    stats = run.summarizer.stats()
    assert stats["in_flow_reviews"] + stats["post_invocation_reviews"] == len(sink.reviews) > 0
    assert stats["served"] == stats["in_flow_reviews"]  # every in-flow review served its winning probe
    expected = baseline.llm.n_calls + stats["in_flow_reviews"] + 2 * stats["post_invocation_reviews"]
    assert run.llm.n_calls == expected


# ---------------------------------------------------------------------- cooldown


@pytest.mark.parametrize("shape", ["in_flow", "post_invocation"])
def test_during_a_cooldown_the_inner_summarizer_is_not_called(shape: Shape):
    sink = RecordingSink()
    guard = guard_with(ConstantScorer(1.0), sink, cooldown=50)
    run = Run(shape, guard)
    assert len(sink.reviews) == 1  # the first proposal is vetoed; every later one falls in the cooldown
    skipped = [d for d in sink.decisions if not d.reviewed]
    assert skipped and all(d.verdict is Verdict.VETO and d.skipped == "cooldown" and not d.candidates
                           for d in skipped)
    assert guard.stats()["cooldown_skips"] == len(skipped)  # the core's gate said so, not the integration
    assert run.inner.calls == 1  # ADK re-proposed every time; the summarizer was asked once
    assert run.summarizer is not None and run.summarizer.stats()["skipped"] == len(skipped)
    assert compactions(run.outcome) == 0


def test_the_conversation_is_the_adk_session():
    sink = RecordingSink()
    Run("in_flow", guard_with(ConstantScorer(0.0), sink))
    assert sink.decisions and {d.conversation_id for d in sink.decisions} == {"session-0"}
    assert all(d.step > 0 for d in sink.decisions)


# ---------------------------------------------------------------------- hard limit


@pytest.mark.parametrize("shape", ["in_flow", "post_invocation"])
def test_past_the_hard_limit_every_decision_is_forced_and_the_run_completes(shape: Shape):
    sink = RecordingSink()
    compacting = Run(shape)
    run = Run(shape, guard_with(ConstantScorer(1.0), sink), hard_token_limit=1)
    assert sink.reviews and all(d.verdict is Verdict.FORCED for d in sink.decisions), [
        (d.verdict, d.reasons) for d in sink.decisions]
    assert compactions(run.outcome) == compactions(compacting.outcome) > 0
    assert run.transcript == compacting.transcript  # the proposal was the only candidate, so it was committed


def test_below_the_hard_limit_a_veto_is_allowed():
    sink = RecordingSink()
    Run("in_flow", guard_with(ConstantScorer(1.0), sink), hard_token_limit=10**9)
    assert sink.reviews and all(d.verdict is Verdict.VETO for d in sink.reviews)


# ---------------------------------------------------------------------- fallbacks


@pytest.mark.parametrize("shape", ["in_flow", "post_invocation"])
def test_a_fallback_summarizer_stands_in_for_a_harmful_proposal(shape: Shape):
    sink = RecordingSink()
    keeping = KeepingSummarizer()
    scorer = ActionScorer(by_strategy={"dropping_summarizer": 0.97, "keeping_summarizer": 0.03})
    run = Run(shape, guard_with(scorer, sink), fallbacks=[keeping])
    assert sink.reviews and all(d.verdict is Verdict.FALLBACK for d in sink.reviews)
    assert {d.strategy for d in sink.reviews} == {"keeping_summarizer"}
    summaries = [event.actions.compaction.compacted_content.parts[0].text
                 for event in run.outcome.events if event.actions.compaction]
    assert summaries and all(FACT in text for text in summaries)  # the fallback's event was committed
    assert keeping.calls == len(sink.reviews)
    assert "I forgot" not in str(run.transcript["outputs"])


def test_fallbacks_must_be_events_summarizers():
    with pytest.raises(TypeError, match="BaseEventsSummarizer"):
        MemGuardSummarizer(DroppingSummarizer(), Guard(ConstantScorer(0.0)), fallbacks=[ObservationMasking()])


def test_an_rm_that_judges_forgetting_harmful_keeps_the_agent_on_track():
    sink = RecordingSink()
    run = Run("in_flow", guard_with(harmful_when_forgotten(), sink))
    assert any(d.verdict is Verdict.VETO and d.reviewed for d in sink.decisions)
    assert f"the fact is {FACT}" in str(run.transcript["outputs"])


# ---------------------------------------------------------------------- serving a response


def test_a_served_response_counts_against_max_llm_calls():
    compacting = Run("in_flow")
    limit = compacting.llm.n_calls - 1  # one call short of what the unguarded run needs
    with pytest.raises(LlmCallsLimitExceededError):
        Run("in_flow", max_llm_calls=limit)
    with pytest.raises(LlmCallsLimitExceededError):  # served responses are counted, probes are not
        Run("in_flow", guard_with(ConstantScorer(0.0), RecordingSink()), max_llm_calls=limit)
    Run("in_flow", guard_with(ConstantScorer(0.0), RecordingSink()), max_llm_calls=compacting.llm.n_calls)


def test_a_served_response_keeps_the_probes_usage_metadata():
    compacting = Run("in_flow")
    run = Run("in_flow", guard_with(ConstantScorer(0.0), RecordingSink()))
    assert run.summarizer is not None and run.summarizer.stats()["served"] > 0
    assert usage(run.outcome) == usage(compacting.outcome)
    model_events = [event for event in run.outcome.events if event.content and event.content.role == "model"]
    assert all(event.usage_metadata and event.usage_metadata.prompt_token_count for event in model_events)


def test_streamed_runs_serve_a_whole_response():
    sink = RecordingSink()
    compacting = Run("in_flow", streaming=True)
    run = Run("in_flow", guard_with(ConstantScorer(0.0), sink), streaming=True)
    assert run.transcript == compacting.transcript
    assert any(event.partial for event in run.outcome.yielded)  # unreviewed steps still stream


# ---------------------------------------------------------------------- failures


@pytest.mark.parametrize("shape", ["in_flow", "post_invocation"])
def test_a_failing_inner_summarizer_is_published_and_compacts_nothing(shape: Shape):
    sink = RecordingSink()
    plain = Run(shape, inner=None)
    run = Run(shape, guard_with(ConstantScorer(0.0), sink), inner=RaisingSummarizer())
    assert sink.decisions and all(d.error and "ConnectionError" in d.error and not d.reviewed
                                  for d in sink.decisions)
    assert run.transcript == plain.transcript


@pytest.mark.parametrize("on_error", ["open", "closed"])
def test_a_failing_scorer_follows_on_error_and_the_run_goes_on(on_error: str):
    sink = RecordingSink()
    expected = Run("in_flow", inner="dropping" if on_error == "open" else None)
    run = Run("in_flow", guard_with(FailingScorer(), sink, on_error=on_error))
    assert sink.reviews and all(d.error for d in sink.reviews)
    assert run.transcript == expected.transcript


def test_a_plugin_failure_is_published_as_a_decision_not_raised(monkeypatch: pytest.MonkeyPatch):
    import google_adk_memguard.plugin as plugin_module

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise KeyError("boom")

    monkeypatch.setattr(plugin_module, "contents_with", broken)
    sink = RecordingSink()
    plain = Run("in_flow", inner=None)
    run = Run("in_flow", guard_with(ConstantScorer(0.0), sink))
    failures = [d for d in sink.decisions if d.error]
    assert failures and all("KeyError" in (d.error or "") and d.verdict is Verdict.VETO for d in failures)
    assert run.transcript["outputs"] == plain.transcript["outputs"]  # the run completed on its full context
    assert run.summarizer is not None and run.summarizer.stats()["failures"] == len(failures)


def test_without_its_plugin_the_summarizer_compacts_nothing_and_says_why(caplog: pytest.LogCaptureFixture):
    llm = ScriptedLlm()
    guarded = MemGuardSummarizer(DroppingSummarizer(), Guard(ConstantScorer(0.0)))
    app = make_app(llm, guarded, "in_flow")  # the plugin left out
    with caplog.at_level(logging.ERROR, logger="memguard.google_adk"):
        outcome = run_conversation(app, SCRIPTS["in_flow"])
    assert compactions(outcome) == 0
    assert "ran without its plugin" in caplog.text


# ---------------------------------------------------------------------- audit


@pytest.mark.parametrize("shape", ["in_flow", "post_invocation"])
def test_audit_decisions_are_scored_with_the_session_id_and_the_observed_response(shape: Shape):
    sink = RecordingSink()
    compacting = Run(shape)
    guard = guard_with(ActionScorer(default=0.4), sink, mode="audit")
    run = Run(shape, guard)
    assert guard.flush(30.0)
    assert run.transcript == compacting.transcript
    assert sink.decisions and all(d.verdict is Verdict.AUDIT and not d.pending and d.p_harmful == 0.4
                                  for d in sink.decisions)
    assert {d.conversation_id for d in sink.decisions} == {"session-0"}
    if shape == "in_flow":  # in-flow, the proposed action is what the real call answered, not a probe
        assert run.summarizer is not None
        actions = [c.proposed_action or "" for d in sink.decisions for c in d.candidates]
        answered = [str(part.function_call.args["command"]) for event in compacting.outcome.events
                    if event.content for part in event.content.parts or () if part.function_call]
        observed = [action for action in actions if any(command in action for command in answered)]
        assert len(observed) == run.summarizer.stats()["in_flow_reviews"] > 0


@pytest.mark.parametrize("shape", ["in_flow", "post_invocation"])
def test_audit_builds_requests_and_views_on_the_guard_s_worker_not_the_run_s_thread(shape: Shape, monkeypatch):
    """The run's path does no per-event work: ADK's request building and memguard's views run on the worker."""
    seen: list[tuple[str, threading.Thread]] = []
    to_view, build_contents = ContentBridge.to_view, rebuild.build_contents

    def spy_view(self: ContentBridge, contents: Any) -> Any:
        seen.append(("to_view", threading.current_thread()))
        return to_view(self, contents)

    async def spy_build(*args: Any, **kwargs: Any) -> Any:
        seen.append(("build_contents", threading.current_thread()))
        return await build_contents(*args, **kwargs)

    monkeypatch.setattr(ContentBridge, "to_view", spy_view)
    monkeypatch.setattr(rebuild, "build_contents", spy_build)
    monkeypatch.setattr(summarizer_module, "build_contents", spy_build)
    sink = RecordingSink()
    guard = guard_with(ActionScorer(default=0.4), sink, mode="audit")
    run = Run(shape, guard)  # the run's event loop runs on this thread
    assert guard.flush(30.0)
    assert {kind for kind, _ in seen} == {"to_view", "build_contents"}
    assert all(thread is not threading.current_thread() for _, thread in seen)
    # The decisions the worker wrote hold the views it built: scored, the proposal's summary shown.
    assert sink.decisions and all(d.verdict is Verdict.AUDIT and d.reviewed and d.p_harmful == 0.4
                                  for d in sink.decisions)
    assert all(any(m.role == "user" and "Summary of" in m.text() for m in d.messages)  # ADK 1.x fences it
               for d in sink.decisions)
    if shape == "in_flow":  # the proposed view is the request the agent's model really received after it
        summaries = [s for s in (summary_of(e) for e in run.outcome.events) if s is not None]

        def turns(messages: Any) -> list[tuple[str, str]]:
            return [(m.role, m.text()) for m in messages if m.role != "system"]

        sent = [turns(to_view(ContentBridge(None, summaries), call)) for call in run.llm.calls]
        assert all(turns(d.messages) in sent for d in sink.decisions)


# ---------------------------------------------------------------------- wiring


def test_guard_app_wires_a_copy_and_refuses_what_it_cannot_guard():
    llm = ScriptedLlm()
    app = make_app(llm, DroppingSummarizer(), "in_flow")
    guard = Guard(ConstantScorer(0.0))
    guarded = guard_app(app, guard, hard_token_limit=10_000)
    assert guarded is not app and isinstance(guarded.plugins[-1], MemGuardPlugin)
    assert app.plugins == [] and isinstance(app.events_compaction_config.summarizer, DroppingSummarizer)
    summarizer = guarded.events_compaction_config.summarizer
    assert isinstance(summarizer, MemGuardSummarizer) and summarizer.plugin is guarded.plugins[-1]
    assert summarizer.hard_token_limit == 10_000
    with pytest.raises(ValueError, match="already guarded"):
        guard_app(guarded, guard)
    with pytest.raises(ValueError, match="no events_compaction_config"):
        guard_app(App(name="plain", root_agent=make_agent(llm)), guard)
    with pytest.raises(ValueError, match="hard_token_limit"):
        MemGuardSummarizer(None, guard, hard_token_limit=0)
    with pytest.raises(TypeError, match="memguard.Guard"):
        MemGuardSummarizer(None, object())  # type: ignore[arg-type]


def test_the_default_inner_is_adks_own_summarizer_over_the_agents_model():
    sink = RecordingSink()
    run = Run("in_flow", guard_with(ConstantScorer(0.0), sink), inner="adk")
    assert run.summarizer is not None and isinstance(run.summarizer.inner, LlmEventSummarizer)
    assert run.llm.summaries > 0 and sink.reviews


def test_post_invocation_probes_end_with_the_probe_message():
    sink = RecordingSink()
    run = Run("post_invocation", guard_with(ConstantScorer(0.0), sink), probe_message="What next?")
    asked = [call for call in run.llm.calls if call[-1].parts[0].text == "What next?"]
    assert sink.reviews and len(asked) == 2 * len(sink.reviews)  # both probes of every review


def test_the_tests_stay_offline():
    assert conftest.attempts == []


def test_probes_go_to_the_model_given():
    sink = RecordingSink()
    prober = ScriptedLlm(steps_per_turn=SCRIPTS["in_flow"].steps_per_turn)
    compacting = Run("in_flow")
    run = Run("in_flow", guard_with(ConstantScorer(0.0), sink), model=prober)
    assert run.summarizer is not None
    stats = run.summarizer.stats()
    assert prober.n_calls == 2 * (stats["in_flow_reviews"] + stats["post_invocation_reviews"]) > 0
    assert run.llm.n_calls == compacting.llm.n_calls - stats["served"]  # served steps never reached the agent's
    assert run.transcript == compacting.transcript
