"""MemGuardConversationManager on a real Strands `Agent`, on every path Strands reduces on, sync and async.

Per path: a SAFE scorer ends exactly like the inner manager alone (outputs and ``agent.messages``)
within the documented extra model calls (one per review before a model call, two at the end of
an invocation, none at an overflow); a HARMFUL scorer ends like a `NullConversationManager` run,
except after an overflow, where the context must shrink and the guard never vetoes.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from memguard import Guard, Verdict
from memguard.testing.contract import ConstantScorer, RecordingSink

from sa_doubles import FACT, PATHS, CountingSliding, build_agent, manager_for, run, transcript
from strands_memguard import MemGuardConversationManager

MODES = ("sync", "async")


def guarded(path: str, scorer: Any, run_mode: str = "sync", *, fallbacks: tuple[Any, ...] = (),
            inner: Any = None, **guard_options: Any) -> tuple[Any, RecordingSink, MemGuardConversationManager]:
    sink = RecordingSink()
    guard = Guard(scorer, sinks=[sink], identical_is_safe=False, **guard_options)
    manager = MemGuardConversationManager(inner or manager_for(path), guard, fallbacks=fallbacks)
    try:
        result = run(path, manager, run_mode)
        assert guard.flush(30.0)
    finally:
        guard.close()
    return result, sink, manager


def extra_calls(sink: RecordingSink) -> int:
    """The documented cost: one call per review before a model call, two at the end, none at an overflow."""
    per_path = {"before_model_call": 1, "end_of_invocation": 2, "overflow": 0}
    return sum(per_path[_path(d)] for d in sink.reviews)


_PATHS_BY_EVENT: dict[str, str] = {}


def _path(decision: Any) -> str:
    return _PATHS_BY_EVENT[decision.event_id]


def track_paths(manager: MemGuardConversationManager) -> None:
    """Remember each event's path (the guard's decisions name the event, the event names its path)."""
    review = manager._review

    def remembering(round_: Any, snapshot: Any) -> Any:
        prepared = review(round_, snapshot)
        _PATHS_BY_EVENT[prepared.event.event_id] = prepared.event.metadata["path"]
        return prepared

    manager._review = remembering  # type: ignore[method-assign]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("path", PATHS)
def test_safe_ends_like_the_inner_manager_within_the_documented_calls(path, mode):
    compacting = run(path, manager_for(path), mode)
    sink = RecordingSink()
    guard = Guard(ConstantScorer(0.0), sinks=[sink], identical_is_safe=False)
    manager = MemGuardConversationManager(manager_for(path), guard)
    track_paths(manager)
    result = run(path, manager, mode)
    guard.close()
    assert sink.reviews and all(d.verdict is Verdict.COMMIT for d in sink.decisions)
    assert result.outputs == compacting.outputs
    assert transcript(result.agent.messages) == transcript(compacting.agent.messages)
    assert manager.removed_message_count == compacting.agent.conversation_manager.removed_message_count
    assert result.model.calls == compacting.model.calls + extra_calls(sink)
    assert result.summarizer.calls == compacting.summarizer.calls  # the inner's own summaries, not one more
    # Probes are the agent's own request: model settings, tool specs, tool choice and system prompt.
    assert set(result.model.requests) == set(compacting.model.requests)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("path", [p for p in PATHS if p != "overflow"])
def test_harmful_ends_like_a_run_without_reduction(path, mode):
    plain = run(path, None, mode)
    result, sink, manager = guarded(path, ConstantScorer(1.0), mode)
    assert sink.reviews and all(d.verdict is Verdict.VETO for d in sink.decisions)
    assert all(d.p_harmful == 1.0 for d in sink.reviews)
    assert result.outputs == plain.outputs and FACT in result.outputs[-1]
    assert transcript(result.agent.messages) == transcript(plain.agent.messages)
    assert manager.removed_message_count == 0
    # During a cooldown the inner manager does not reduce at all: one reduction per review.
    assert manager.inner.reductions == len(sink.reviews)


OVERFLOW_MANAGERS = {
    "summarizing": lambda: manager_for("overflow"),
    "sliding_window": lambda: CountingSliding(window_size=40),  # trims only when the model overflows
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("on_error", ["open", "closed"])
@pytest.mark.parametrize("kind", sorted(OVERFLOW_MANAGERS))
def test_an_overflow_must_reduce_harmful_never_vetoes_and_never_loops(mode, on_error, kind):
    make = OVERFLOW_MANAGERS[kind]
    compacting = run("overflow", make(), mode)
    result, sink, _ = guarded("overflow", ConstantScorer(1.0), mode, inner=make(), on_error=on_error)
    assert sink.decisions and all(d.verdict is not Verdict.VETO for d in sink.decisions)
    assert {d.verdict for d in sink.decisions} == {Verdict.COMMIT if on_error == "open" else Verdict.FORCED}
    assert all("not probed" in (d.error or "") for d in sink.decisions)  # the full context just overflowed
    assert result.outputs == compacting.outputs
    assert transcript(result.agent.messages) == transcript(compacting.agent.messages)
    assert result.model.overflows == compacting.model.overflows == len(sink.decisions) >= 1
    # The reduced context's probe is the retried call itself: no extra model call at all.
    assert result.model.calls == compacting.model.calls


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("path", PATHS)
def test_audit_ends_like_the_inner_manager_and_records_every_reduction(path, mode):
    compacting = run(path, manager_for(path), mode)
    result, sink, _ = guarded(path, ConstantScorer(1.0), mode, mode="audit")
    assert result.outputs == compacting.outputs
    assert transcript(result.agent.messages) == transcript(compacting.agent.messages)
    assert result.streamed == compacting.streamed, "audit probes must not reach the stream"
    assert result.agent.event_loop_metrics.accumulated_usage == compacting.agent.event_loop_metrics.accumulated_usage
    assert sink.decisions and all(d.verdict is Verdict.AUDIT and not d.pending for d in sink.decisions)
    if path == "overflow":  # nothing to score against: the full context did not fit the model
        assert all("not probed" in (d.error or "") for d in sink.decisions)
    else:
        assert all(d.p_harmful == 1.0 for d in sink.decisions)


def test_memrm_reads_the_tool_calls_and_results():
    scorer = ConstantScorer(0.0)
    guarded("per_turn", scorer)
    first = scorer.prompts[0]
    assert first.startswith("[System]\nYou are a careful shell agent.\n\n[User]\nFind the fact, then report it.\n\n")
    assert "[Assistant]\nRunning step 1.\n$ echo step 1\n\n[Tool]\nran: echo step 1 -> FACT-42" in first
    assert "\n\n[User]\nRecorded action at step 3:\necho step 4\n\nProposed action under perturbation " \
           "'strategy_swap__counting_sliding_6':\necho step 4\n\n" in first  # the window kept the fact
    forgot = "Proposed action under perturbation 'strategy_swap__counting_sliding_6':\nls step 5\n\n"
    assert any("Recorded action at step 4:\necho step 5\n\n" + forgot in prompt for prompt in scorer.prompts)


class FirstSafe:
    """SAFE for the first review's prompts, HARMFUL after."""

    def __init__(self) -> None:
        self.calls = 0
        self.prompts: list[str] = []

    def score(self, prompts: list[str]) -> list[Any]:
        self.calls += 1
        self.prompts.extend(prompts)
        return ConstantScorer(0.0 if self.calls == 1 else 1.0).score(prompts)


@pytest.mark.parametrize(("p_harmful", "verdict"), [(1.0, Verdict.VETO), (0.0, Verdict.COMMIT)])
def test_a_veto_restores_messages_state_counts_and_pins(p_harmful, verdict):
    history = run("per_turn", None).agent.messages  # 12 messages, nothing reduced
    sink = RecordingSink()
    guard = Guard(ConstantScorer(p_harmful), sinks=[sink], identical_is_safe=False)
    inner = manager_for("per_turn")
    inner.pin_first = 2
    manager = MemGuardConversationManager(inner, guard)
    agent, model, _ = build_agent("per_turn", manager)
    agent.messages[:] = copy.deepcopy(history)
    inner._model_call_count = 7
    before = copy.deepcopy(agent.messages)
    manager.reduce_context(agent)
    guard.close()
    (decision,) = sink.decisions
    assert decision.verdict is verdict and model.calls == 2  # nothing pending: both contexts probed
    assert inner._model_call_count == 7
    if verdict is Verdict.VETO:
        assert agent.messages == before  # pins undone too: the deep copy taken before the inner ran
        assert (inner._pin_first_applied, inner.removed_message_count) == (False, 0)
    else:
        assert len(agent.messages) < len(before) and agent.messages[0]["metadata"]["custom"]["pinned"] is True
        assert inner._pin_first_applied is True and inner.removed_message_count == len(before) - len(agent.messages)


def test_a_vetoed_summary_leaves_the_previous_summary_in_place():
    sink = RecordingSink()
    scorer = FirstSafe()
    guard = Guard(scorer, sinks=[sink], identical_is_safe=False, cooldown=0)
    inner = manager_for("proactive")
    manager = MemGuardConversationManager(inner, guard)
    result = run("proactive", manager)
    verdicts = [d.verdict for d in sink.reviews]
    assert verdicts[0] is Verdict.COMMIT and Verdict.VETO in verdicts[1:]
    first_summary = inner._summary_message
    assert first_summary is not None and any(m is first_summary for m in result.agent.messages)
    assert "step" in first_summary["content"][0]["text"]
    committed_removed = inner.removed_message_count
    assert committed_removed > 0
    assert manager.get_state()["summary_message"] is first_summary
    # MemRM reads the kept summary as training showed summaries: its own user turn with the marker.
    assert "\n\n[User]\n[Summary] Commands ran up to step" in scorer.prompts[-1]


def test_the_inner_managers_face_is_the_wrappers():
    inner = manager_for("per_turn")
    manager = MemGuardConversationManager(inner, Guard(ConstantScorer(0.0)))
    assert manager.window_size == 6 and manager.per_turn is True
    manager.removed_message_count = 3
    assert inner.removed_message_count == 3
    state = manager.get_state()
    assert state["__name__"] == type(inner).__name__
    manager.restore_from_session({**state, "removed_message_count": 5, "model_call_count": 2})
    assert (inner.removed_message_count, inner._model_call_count) == (5, 2)
    with pytest.raises(TypeError, match="already guarded"):
        MemGuardConversationManager(manager, Guard(ConstantScorer(0.0)))
    with pytest.raises(TypeError, match="ConversationManager"):
        MemGuardConversationManager(object(), Guard(ConstantScorer(0.0)))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        MemGuardConversationManager(inner, Guard(ConstantScorer(0.0)), fallbacks=[42])


def test_decisions_reach_on_decision_and_the_sinks_alike():
    seen: list[Any] = []
    sink = RecordingSink()
    guard = Guard(ConstantScorer(0.0), sinks=[sink], identical_is_safe=False)
    manager = MemGuardConversationManager(manager_for("end"), guard, on_decision=seen.append,
                                          conversation_id="thread-7")
    run("end", manager)
    assert seen == sink.decisions and manager.last_decision is seen[-1]
    assert {d.conversation_id for d in seen} == {"thread-7"}


def test_conversations_are_told_apart_by_session_and_agent():
    sink = RecordingSink()
    guard = Guard(ConstantScorer(1.0), sinks=[sink], identical_is_safe=False)
    first = run("end", MemGuardConversationManager(manager_for("end"), guard), agent_id="alpha")
    second = run("end", MemGuardConversationManager(manager_for("end"), guard), agent_id="beta")
    guard.close()
    ids = {d.conversation_id for d in sink.reviews}
    assert ids == {f"strands:{first.agent.session_id}:alpha", f"strands:{second.agent.session_id}:beta"}
    assert transcript(first.agent.messages)[1:] == transcript(second.agent.messages)[1:]  # neither cooled the other


def test_cooldown_skips_the_inner_reduction_and_keeps_counting_model_calls():
    sink = RecordingSink()
    guard = Guard(ConstantScorer(1.0), sinks=[sink], identical_is_safe=False, cooldown=2)
    manager = MemGuardConversationManager(manager_for("per_turn"), guard)
    track_paths(manager)
    result = run("per_turn", manager)
    skipped = [d for d in sink.decisions if not d.reviewed]
    assert sink.reviews and skipped and all(d.verdict is Verdict.VETO for d in skipped)
    assert manager.inner.reductions == len(sink.reviews)
    assert manager.inner._model_call_count == result.model.calls - extra_calls(sink)
