"""`StrandsView`: Bedrock-Converse messages shown to MemRM as turns with tool calls, and back without loss."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from memguard import ObservationMasking, RecentWindow, render_action, render_prompt

from strands_memguard import REF, StrandsView, assistant_turns


def _use(call_id: str, command: str, name: str = "shell") -> dict[str, Any]:
    return {"toolUse": {"toolUseId": call_id, "name": name, "input": {"command": command}}}


def _result(call_id: str, text: str, status: str = "success") -> dict[str, Any]:
    return {"toolResult": {"toolUseId": call_id, "status": status, "content": [{"text": text}]}}


@pytest.fixture
def history() -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": [{"text": "Find the fact."}], "tracking_id": "t0"},
        {"role": "assistant", "content": [{"reasoningContent": {"reasoningText": {"text": "think"}}},
                                          {"text": "Running step 1."}, _use("c1", "echo step 1")],
         "tracking_id": "t1", "metadata": {"usage": {"inputTokens": 3}}},
        {"role": "user", "content": [_result("c1", "ran: echo step 1 -> FACT-42")], "tracking_id": "t2"},
        {"role": "assistant", "content": [_use("c2", "ls step 2"), _use("c3", "cat notes.md", name="read")],
         "tracking_id": "t3"},
        {"role": "user", "content": [_result("c2", "a.py b.py"), {"cachePoint": {"type": "default"}},
                                     _result("c3", "notes", status="error")], "tracking_id": "t4"},
        {"role": "assistant", "content": [{"text": "done"}], "tracking_id": "t5"},
    ]


def strip(turns: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in turn.items() if k != REF and v is not None} for turn in turns]


def test_tool_calls_and_results_are_shown_as_such(history):
    view = StrandsView("You are a shell agent.")
    turns = strip(view.to_view(history))
    assert turns[0] == {"role": "system", "content": "You are a shell agent."}
    assert turns[2] == {"role": "assistant", "content": "Running step 1.", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "bash", "arguments": '{"command": "echo step 1"}'}}]}
    assert turns[3] == {"role": "tool", "content": "ran: echo step 1 -> FACT-42", "tool_call_id": "c1"}
    assert [t["role"] for t in turns] == ["system", "user", "assistant", "tool", "assistant", "tool", "tool",
                                          "assistant"]
    prompt = render_prompt(view.to_view(history), step=assistant_turns(history), recorded="a", proposed="b",
                           perturbation="p")
    assert "[Assistant]\nRunning step 1.\n$ echo step 1\n\n[Tool]\nran: echo step 1 -> FACT-42\n\n" in prompt
    assert "[Assistant]\n$ ls step 2\nread({'command': 'cat notes.md'})\n\n[Tool]\na.py b.py\n\n[Tool]\nnotes" in prompt
    assert "think" not in prompt and "cachePoint" not in prompt  # reasoning and cache points are not shown
    assert assistant_turns(history) == 3


def test_an_unchanged_view_maps_back_to_the_very_same_messages(history):
    view = StrandsView("system")
    back = view.from_view(view.to_view(history))
    assert len(back) == len(history) and all(a is b for a, b in zip(back, history, strict=True))


def test_a_masked_tool_result_is_a_copy_that_keeps_everything_else(history):
    pristine = copy.deepcopy(history)
    view = StrandsView("system")
    masked = ObservationMasking(keep_last=1)(view.to_view(history))
    back = view.from_view(masked)
    assert history == pristine, "the agent's own messages must never be edited"
    assert back[0] is history[0] and back[1] is history[1] and back[5] is history[5]
    edited = back[2]
    assert edited is not history[2]
    assert edited == {"role": "user", "tracking_id": "t2", "content": [
        {"toolResult": {"toolUseId": "c1", "status": "success", "content": [{"text": "<MASKED>"}]}}]}
    assert back[4]["content"][1] == {"cachePoint": {"type": "default"}}  # hidden blocks stay in place
    assert back[4]["content"][2]["toolResult"]["status"] == "error"


def test_an_edited_assistant_text_keeps_reasoning_and_calls(history):
    view = StrandsView()
    turns = view.to_view(history)
    turns[1] = {**turns[1], "content": "Step one, shorter."}
    back = view.from_view(turns)
    assert back[1]["content"] == [history[1]["content"][0], {"text": "Step one, shorter."}, history[1]["content"][2]]
    assert back[1]["metadata"] == history[1]["metadata"] and back[1]["tracking_id"] == "t1"


def test_a_window_drops_whole_messages_and_keeps_the_rest_as_they_are(history):
    view = StrandsView("system")
    kept = RecentWindow(keep_last=4, keep_first=2)(view.to_view(history))
    back = view.from_view(kept)
    assert [m["tracking_id"] for m in back] == ["t0", "t3", "t4", "t5"]
    assert all(any(m is original for original in history) for m in back)


def test_dropping_one_result_of_a_message_keeps_its_other_blocks(history):
    view = StrandsView()
    turns = view.to_view(history)
    back = view.from_view([t for t in turns if t.get("tool_call_id") != "c3"])
    assert back[4]["content"] == history[4]["content"][:2]


def test_a_summary_is_shown_as_in_training_and_comes_back_without_the_marker():
    summary = {"role": "user", "content": [{"text": "Commands ran up to step 4."}]}
    messages = [summary, {"role": "assistant", "content": [{"text": "ok"}]}]
    view = StrandsView()
    turns = view.to_view(messages, summary=summary)
    assert strip(turns)[0] == {"role": "user", "content": "[Summary] Commands ran up to step 4."}
    turns[0] = {**turns[0], "content": "[Summary] Commands ran up to step 5."}
    assert view.from_view(turns)[0]["content"] == [{"text": "Commands ran up to step 5."}]
    assert strip(view.to_view(messages))[0]["content"].startswith("[Summary] "), "a summary stays one in this view"


def test_turns_memguard_writes_become_messages():
    view = StrandsView()
    back = view.from_view([
        {"role": "user", "content": "[Summary] steps 1-4 ran"},
        {"role": "assistant", "content": "next", "tool_calls": [
            {"id": "n1", "type": "function", "function": {"name": "shell", "arguments": '{"command": "ls"}'}}]},
        {"role": "tool", "tool_call_id": "n1", "content": "a.py"},
    ])
    assert back == [
        {"role": "user", "content": [{"text": "steps 1-4 ran"}]},
        {"role": "assistant", "content": [
            {"text": "next"}, {"toolUse": {"toolUseId": "n1", "name": "shell", "input": {"command": "ls"}}}]},
        {"role": "user", "content": [{"toolResult": {"toolUseId": "n1", "status": "success",
                                                     "content": [{"text": "a.py"}]}}]},
    ]


def test_media_and_json_results_are_named_not_inlined():
    messages = [
        {"role": "user", "content": [{"text": "look"}, {"image": {"format": "png", "source": {"bytes": b"\x89PNG"}}},
                                     {"document": {"name": "spec.pdf", "format": "pdf", "source": {"bytes": b"%"}}}]},
        {"role": "assistant", "content": [_use("j1", "stat", name="inspect")]},
        {"role": "user", "content": [{"toolResult": {"toolUseId": "j1", "status": "success",
                                                     "content": [{"json": {"size": 3}}, {"text": "ok"}]}}]},
    ]
    turns = strip(StrandsView().to_view(messages))
    assert turns[0]["content"] == "look\n[image png]\n[document spec.pdf]"
    assert turns[2]["content"] == '{"size": 3}\nok'


def test_actions_render_as_commands_or_calls():
    view = StrandsView()
    command = view.response({"role": "assistant", "content": [{"text": "Go."}, _use("x", "grep -rn foo src | head")]})
    assert render_action(command) == "grep -rn foo src | head"
    other = view.response({"role": "assistant", "content": [_use("y", "a.py", name="read_file")]})
    assert render_action(other) == "read_file({'command': 'a.py'})"
    answer = view.response({"role": "assistant", "content": [{"text": "done: FACT-42"}]})
    assert render_action(answer) == "done: FACT-42"
