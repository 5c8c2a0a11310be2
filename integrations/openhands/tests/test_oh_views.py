"""OpenHands events <-> the guard's messages: nothing MemRM reads is lost, nothing comes back changed."""

from __future__ import annotations

import json

import pytest
from memguard import ObservationMasking, RecentWindow, render_action, render_prompt
from openhands.sdk.context.view import View
from openhands.sdk.event import ActionEvent, Condensation, LLMConvertibleEvent, MessageEvent, ObservationEvent
from openhands.sdk.event.condenser import CondensationSummaryEvent
from openhands.sdk.llm import Message, MessageToolCall, TextContent

from oh_doubles import FACT, ShellAction, ShellObservation, agent_llm, make_agent, run
from openhands_memguard import GuardedMessageEvent, GuardView
from openhands_memguard.views import MARK


@pytest.fixture(scope="module")
def events() -> list[LLMConvertibleEvent]:
    """A real, finished run without condensation: system, task, 9 command steps, the answer."""
    conversation = run(make_agent(agent_llm(), None))
    return list(conversation.state.view.events)


def strip(messages: list[dict]) -> list[dict]:
    return [{k: v for k, v in m.items() if k != MARK} for m in messages]


def test_the_guard_sees_the_messages_the_agent_sends(events):
    view = GuardView(View(events=events))
    sent = LLMConvertibleEvent.events_to_messages(events)
    assert [m["role"] for m in view.messages] == [m.role for m in sent]
    assert view.messages[1]["content"] == "Find the fact, then report it."
    call = view.messages[2]["tool_calls"][0]
    assert call["function"]["name"] == "bash"  # OpenHands' terminal tool, shown as training's bash
    assert json.loads(call["function"]["arguments"])["command"] == "echo step 1"
    assert view.messages[3] == {"role": "tool", "content": f"ran: echo step 1 -> {FACT}",
                                "tool_call_id": call["id"], "name": "terminal", MARK: [events[3].id]}
    assert view.step == 10  # nine command turns and the answer
    prompt = render_prompt(view.messages, step=view.step, recorded="a", proposed="b", perturbation="p")
    assert "[Assistant]\n$ echo step 1\n\n[Tool]\nran: echo step 1 -> FACT-42\n\n" in prompt


def test_unchanged_messages_map_back_to_the_very_same_events(events):
    view = GuardView(View(events=events))
    back = view.to_events(view.messages)
    assert len(back) == len(events) and all(a is b for a, b in zip(back, events, strict=True))
    assert view.as_condensation(back) is None  # nothing forgotten: not a condensation


def test_a_condensation_is_shown_with_a_training_summary_and_comes_back_as_itself(events):
    view = GuardView(View(events=events))
    condensation = Condensation(forgotten_event_ids={e.id for e in events[2:16]}, summary="ran steps 1-7",
                                summary_offset=2, llm_response_id="r1")
    shown = view.apply(condensation)
    assert strip(shown)[2] == {"role": "user", "content": "[Summary] ran steps 1-7"}
    assert shown[0] is view.messages[0] and shown[3] is view.messages[16 - 14 + 14]
    assert view.as_result(shown) is condensation
    probe_messages = LLMConvertibleEvent.events_to_messages(view.to_events(shown))
    # OpenHands merges the summary into the task turn when it sends it; the guard keeps them apart.
    assert len(probe_messages) == len(shown) - 1
    assert probe_messages[1].content[-1].text == "ran steps 1-7"


def test_a_removal_only_fallback_becomes_a_condensation(events):
    view = GuardView(View(events=events))
    kept = RecentWindow(keep_last=4, keep_first=2)(view.messages)
    result = view.as_result(kept)
    assert isinstance(result, Condensation) and result.summary is None
    assert result.forgotten_event_ids == {e.id for e in events[2:16]}
    assert view.persistable(kept)


def test_a_new_summary_turn_from_a_fallback_is_stored_as_the_condensation_summary(events):
    view = GuardView(View(events=events))
    candidate = [*view.messages[:2], {"role": "user", "content": "[Summary] steps 1-8 ran"}, *view.messages[-3:]]
    result = view.as_result(candidate)
    assert isinstance(result, Condensation)
    assert (result.summary, result.summary_offset) == ("steps 1-8 ran", 2)
    assert result.forgotten_event_ids == {e.id for e in events[2:-3]}


def test_a_masking_fallback_becomes_a_view_with_edited_copies(events):
    view = GuardView(View(events=events, unhandled_condensation_request=True))
    masked = ObservationMasking(keep_last=2)(view.messages)
    assert not view.persistable(masked)
    result = view.as_result(masked)
    assert isinstance(result, View) and result.unhandled_condensation_request
    replaced = [e for e in result.events if isinstance(e, GuardedMessageEvent)]
    assert replaced and replaced[0].replaces == [events[3].id]
    message = replaced[0].to_llm_message()
    assert (message.role, message.tool_call_id, message.name) == ("tool", events[2].tool_call_id, "terminal")
    assert message.content[0].text == "<MASKED>"
    untouched = [e for e in result.events if not isinstance(e, GuardedMessageEvent)]
    assert all(any(e is original for original in events) for e in untouched)
    sent = LLMConvertibleEvent.events_to_messages(result.events)
    assert len(sent) == len(events)
    assert f"-> {FACT}" not in json.dumps([m.model_dump(mode="json") for m in sent])


def _action(call_id: str, command: str, response_id: str, thought: str = "") -> ActionEvent:
    return ActionEvent(
        thought=[TextContent(text=thought)] if thought else [], action=ShellAction(command=command),
        tool_name="terminal", tool_call_id=call_id, llm_response_id=response_id,
        tool_call=MessageToolCall(id=call_id, name="terminal", arguments=json.dumps({"command": command}),
                                  origin="completion"),
    )


def _observation(action: ActionEvent, text: str) -> ObservationEvent:
    return ObservationEvent(observation=ShellObservation.from_text(text), action_id=action.id,
                            tool_name="terminal", tool_call_id=action.tool_call_id)


def test_parallel_calls_are_one_turn_and_user_turns_stay_apart(events):
    first, second = _action("c1", "ls", "r9", thought="two at once"), _action("c2", "pwd", "r9")
    user_a = MessageEvent(source="user", llm_message=Message(role="user", content=[TextContent(text="a")]))
    user_b = MessageEvent(source="user", llm_message=Message(role="user", content=[TextContent(text="b")]))
    batch = [events[0], user_a, user_b, first, second, _observation(first, "x"), _observation(second, "/w")]
    view = GuardView(View(events=batch))
    assert [m["role"] for m in view.messages] == ["system", "user", "user", "assistant", "tool", "tool"]
    turn = view.messages[3]
    assert turn["content"] == "two at once" and [c["id"] for c in turn["tool_calls"]] == ["c1", "c2"]
    assert turn[MARK] == [first.id, second.id]
    assert view.to_events(view.messages) == batch
    assert view.step == 1


def test_actions_render_the_way_memrm_was_trained(events):
    view = GuardView(View(events=events))
    call = MessageToolCall(id="x", name="terminal", origin="completion",
                           arguments=json.dumps({"command": "grep -rn foo src | head", "security_risk": "LOW"}))
    response = view.response(Message(role="assistant", content=[TextContent(text="")], tool_calls=[call]))
    assert render_action(response) == "grep -rn foo src | head"
    other = MessageToolCall(id="y", name="file_editor", origin="completion", arguments='{"path": "a.py"}')
    edit = view.response(Message(role="assistant", content=[TextContent(text="")], tool_calls=[other]))
    assert render_action(edit) == "file_editor({'path': 'a.py'})"
    assert render_action(view.response(Message(role="assistant", content=[TextContent(text="done")]))) == "done"


def test_a_stored_summary_event_is_shown_with_the_marker(events):
    summary = CondensationSummaryEvent(summary="earlier work", id="c-summary")
    view = GuardView(View(events=[events[0], events[1], summary, *events[-3:]]))
    assert strip(view.messages)[2] == {"role": "user", "content": "[Summary] earlier work"}
    assert view.to_events(view.messages)[2] is summary
