"""Sessions saved guarded restore unguarded and back; fallbacks; the probe is only served to its own request."""

from __future__ import annotations

from typing import Any

import pytest
from memguard import Guard, ObservationMasking, RecentWindow, Verdict
from memguard.testing.contract import ConstantScorer, RecordingSink
from strands import Agent
from strands.agent.conversation_manager import SlidingWindowConversationManager
from strands.hooks import BeforeModelCallEvent, HookProvider, HookRegistry
from strands.session.file_session_manager import FileSessionManager

from sa_doubles import FACT, QUESTION, TASK, TagScorer, build_agent, manager_for, run, transcript
from strands_memguard import MemGuardConversationManager


def _guarded(inner: Any, p_harmful: float) -> MemGuardConversationManager:
    return MemGuardConversationManager(inner, Guard(ConstantScorer(p_harmful), identical_is_safe=False))


@pytest.mark.parametrize("path", ["end", "proactive"])
@pytest.mark.parametrize("p_harmful", [0.0, 1.0])
def test_a_session_saved_guarded_restores_unguarded_and_back(tmp_path, path, p_harmful):
    saved = run(path, _guarded(manager_for(path), p_harmful),
                session_manager=FileSessionManager(session_id="s1", storage_dir=str(tmp_path)))
    reduced = saved.agent.conversation_manager.removed_message_count
    assert (reduced > 0) == (p_harmful == 0.0)

    plain, _, _ = build_agent(path, manager_for(path),
                              session_manager=FileSessionManager(session_id="s1", storage_dir=str(tmp_path)))
    assert transcript(plain.messages) == transcript(saved.agent.messages)
    assert plain.conversation_manager.removed_message_count == reduced
    assert plain.conversation_manager.get_state() == saved.agent.conversation_manager.get_state()
    plain(QUESTION)

    again, _, _ = build_agent(path, _guarded(manager_for(path), p_harmful),
                              session_manager=FileSessionManager(session_id="s1", storage_dir=str(tmp_path)))
    assert transcript(again.messages) == transcript(plain.messages)
    assert again.conversation_manager.get_state() == plain.conversation_manager.get_state()


def _reviewed(path: str, scorer: Any, fallbacks: tuple[Any, ...], **guard: Any) -> tuple[Any, RecordingSink]:
    sink = RecordingSink()
    manager = MemGuardConversationManager(manager_for(path),
                                          Guard(scorer, sinks=[sink], identical_is_safe=False, **guard),
                                          fallbacks=fallbacks)
    return run(path, manager), sink


def test_a_masking_fallback_keeps_every_message_and_masks_old_results():
    result, sink = _reviewed("end", TagScorer({"observation_masking": 0.1}, default=0.9),
                             (ObservationMasking(keep_last=1),))
    assert sink.reviews[0].verdict is Verdict.FALLBACK and sink.reviews[0].strategy == "observation_masking"
    # Later, everything old is masked already: masking again would change nothing (a no-op, not a candidate).
    assert all(d.verdict in (Verdict.FALLBACK, Verdict.VETO) for d in sink.reviews)
    messages = result.agent.messages
    assert result.agent.conversation_manager.removed_message_count == 0  # masking drops no message
    first = messages[2]["content"][0]["toolResult"]
    assert first["toolUseId"] == "call-1" and first["content"] == [{"text": "<MASKED>"}]
    assert all(m.get("tracking_id") for m in messages)
    assert result.outputs[1] == "the fact is forgotten\n"  # the masked result no longer holds the fact


def test_a_window_fallback_counts_what_it_dropped():
    result, sink = _reviewed("end", TagScorer({"recent_window": 0.1}, default=0.9),
                             (RecentWindow(keep_last=6, keep_first=1),), cooldown=0)
    assert [d.verdict for d in sink.reviews] == [Verdict.FALLBACK, Verdict.FALLBACK]
    plain = run("end", None)
    assert result.agent.conversation_manager.removed_message_count == \
        len(plain.agent.messages) - len(result.agent.messages)


def test_a_conversation_manager_fallback_runs_on_a_copy():
    keeps_more = SlidingWindowConversationManager(window_size=11)  # drops the task only, keeps the fact
    result, sink = _reviewed("end", TagScorer({"sliding_window_11": 0.1}, default=0.9), (keeps_more,))
    assert sink.reviews and all(d.verdict is Verdict.FALLBACK and d.strategy == "sliding_window_11"
                                for d in sink.reviews)
    assert keeps_more.removed_message_count == 0  # the manager passed in is never used itself
    assert result.outputs[1] == f"the fact is {FACT}\n"
    plain = run("end", None)
    assert result.agent.conversation_manager.removed_message_count == \
        len(plain.agent.messages) - len(result.agent.messages)


class ChangesSettings(HookProvider):
    """After the guard's hook, changes the model's settings for every model call (so after a review too)."""

    def __init__(self) -> None:
        self.calls = 0

    def register_hooks(self, registry: HookRegistry, **kwargs: Any) -> None:
        registry.add_callback(BeforeModelCallEvent, self.change)

    def change(self, event: BeforeModelCallEvent) -> None:
        self.calls += 1
        event.agent.model.update_config(temperature=self.calls / 10)


@pytest.mark.parametrize("settings_change", [False, True])
def test_a_probe_is_served_only_to_the_identical_request(settings_change):
    sink = RecordingSink()
    manager = MemGuardConversationManager(manager_for("proactive"),
                                          Guard(ConstantScorer(0.0), sinks=[sink], identical_is_safe=False))
    hooks = [ChangesSettings()] if settings_change else []
    agent, model, _ = build_agent("proactive", manager, hooks=hooks)
    compacting, compacting_model, _ = build_agent("proactive", manager_for("proactive"),
                                                  hooks=[ChangesSettings()] if settings_change else [])
    assert str(agent(TASK)) == str(compacting(TASK))
    assert transcript(agent.messages) == transcript(compacting.messages)
    reviews = len(sink.reviews)
    assert reviews == 2
    served = 0 if settings_change else reviews
    assert manager._replay.served == served
    assert model.calls == compacting_model.calls + 2 * reviews - served


@pytest.mark.skipif(not hasattr(Agent, "add_middleware"), reason="public model middleware arrived in Strands 1.62")
def test_middleware_added_before_the_first_call_sees_a_served_probe_as_the_model_call():
    from strands.middleware import InvokeModelStage

    seen: list[int] = []

    async def count(context: Any, next_fn: Any) -> Any:
        seen.append(len(context.messages))
        async for event in next_fn(context):
            yield event

    manager = _guarded(manager_for("proactive"), 0.0)
    agent, model, _ = build_agent("proactive", manager)
    agent.add_middleware(InvokeModelStage, count)
    compacting, compacting_model, _ = build_agent("proactive", manager_for("proactive"))
    assert str(agent(TASK)) == str(compacting(TASK))
    assert manager._replay.served == 2
    assert len(seen) == compacting_model.calls == model.calls - manager._replay.served
