"""ADK request contents to memguard's view and back: what MemRM reads, and nothing lost on the way back."""

from __future__ import annotations

from google.genai import types
from memguard import Message, render_prompt

from google_adk_memguard import ContentBridge, response_view
from google_adk_memguard.views import REF


def text(value: str, **extra: object) -> types.Part:
    return types.Part(text=value, **extra)  # type: ignore[arg-type]


def call(name: str, args: dict[str, object], call_id: str | None = None) -> types.Part:
    return types.Part(function_call=types.FunctionCall(name=name, args=args, id=call_id))


def result(name: str, response: dict[str, object], call_id: str | None = None) -> types.Part:
    return types.Part(function_response=types.FunctionResponse(name=name, response=response, id=call_id))


def conversation() -> list[types.Content]:
    return [
        types.Content(role="user", parts=[text("Fix the test."), text("It fails on CI.")]),
        types.Content(role="model", parts=[
            text("thinking about it", thought=True, thought_signature=b"sig"),
            text("Let me look."),
            call("bash", {"command": "ls"}),
            call("bash", {"command": "cat a.py"}),
        ]),
        types.Content(role="user", parts=[result("bash", {"result": "a.py b.py"}),
                                          result("bash", {"result": "print(1)"})]),
        types.Content(role="model", parts=[call("read", {"path": "b.py"}, "toolu_1")]),
        types.Content(role="user", parts=[result("read", {"lines": 3, "ok": True}, "toolu_1")]),
    ]


def test_each_visible_piece_is_one_turn_with_the_system_instruction_first():
    view = ContentBridge("You are careful.").to_view(conversation())
    assert [(m.role, m.text()) for m in view] == [
        ("system", "You are careful."),
        ("user", "Fix the test.\nIt fails on CI."),
        ("assistant", "Let me look."),  # the thought is not part of what MemRM judges
        ("tool", "a.py b.py"),
        ("tool", "print(1)"),
        ("assistant", ""),
        ("tool", '{"lines": 3, "ok": true}'),
    ]
    assert view[2].tool_calls[0]["function"] == {"name": "bash", "arguments": '{"command": "ls"}'}


def test_stripped_call_ids_are_synthesized_so_no_tool_result_is_an_orphan():
    view = ContentBridge().to_view(conversation())
    calls = [call["id"] for message in view if message.tool_calls for call in message.tool_calls]
    answers = [message.tool_call_id for message in view if message.role == "tool"]
    assert calls == ["call_1", "call_2", "toolu_1"]  # real ids are kept
    assert answers == ["call_1", "call_2", "toolu_1"]  # oldest unanswered call of that name first
    prompt = render_prompt(view, recorded=view[1], proposed=view[1], step=3, perturbation="summary")
    assert "[Assistant]\nLet me look.\n$ ls\n$ cat a.py\n\n[Tool]\na.py b.py\n\n[Tool]\nprint(1)" in prompt


def test_summaries_are_shown_as_memrm_saw_them_in_training():
    summary = types.Content(role="model", parts=[text("Summary: ran ls.")])
    contents = [summary.model_copy(deep=True), types.Content(role="user", parts=[text("go on")])]
    bridge = ContentBridge(None, [summary])
    view = bridge.to_view(contents)
    assert [(m.role, m.text()) for m in view] == [("user", "[Summary] Summary: ran ls."), ("user", "go on")]
    assert all(a is b for a, b in zip(bridge.from_view(view), contents, strict=True))
    written = [Message(role="user", content="[Summary] shorter"), Message(role="user", content="go on")]
    assert ContentBridge().from_view(written) == [  # a summary memguard wrote comes back as ADK shows one
        types.Content(role="model", parts=[text("shorter")]), types.Content(role="user", parts=[text("go on")])]


def test_an_unchanged_view_gives_back_the_very_same_contents():
    contents = conversation()
    bridge = ContentBridge("sys")
    back = bridge.from_view(bridge.to_view(contents))
    assert len(back) == len(contents) and all(a is b for a, b in zip(back, contents, strict=True))


def test_a_changed_message_keeps_everything_but_what_changed():
    contents = conversation()
    bridge = ContentBridge()
    view = bridge.to_view(contents)
    view[2] = view[2].model_copy(update={"content": "<MASKED>"})  # the first tool result
    view[1] = view[1].model_copy(update={"content": "Let me look again."})
    back = bridge.from_view(view)
    assert back[0] is contents[0] and back[3] is contents[3] and back[4] is contents[4]
    model = back[1]
    assert model is not contents[1]
    assert model.parts[0] is contents[1].parts[0]  # the thought and its signature stay
    assert model.parts[1].text == "Let me look again."
    assert model.parts[2] is contents[1].parts[2] and model.parts[3] is contents[1].parts[3]
    assert [p.function_call.id for p in model.parts[2:]] == [None, None]  # synthesized ids never go back
    tools = back[2]
    assert tools.parts[0].function_response.response == {"result": "<MASKED>"}
    assert tools.parts[0].function_response.name == "bash"
    assert tools.parts[1] is contents[2].parts[1]


def test_dropped_and_added_messages():
    contents = conversation()
    bridge = ContentBridge()
    view = bridge.to_view(contents)
    kept = [view[0], view[1], view[2], Message(role="user", content="(one result dropped)")]
    back = bridge.from_view(kept)
    assert back[0] is contents[0] and back[1] is contents[1]
    assert len(back[2].parts) == 1 and back[2].parts[0] is contents[2].parts[0]
    assert back[3].role == "user" and back[3].parts[0].text == "(one result dropped)"
    new_turn = Message.model_validate({"role": "assistant", "content": "done", "tool_calls": [
        {"id": "call_9", "type": "function", "function": {"name": "bash", "arguments": '{"command": "pwd"}'}}]})
    (added,) = ContentBridge().from_view([new_turn])
    assert added.role == "model" and added.parts[0].text == "done"
    assert added.parts[1].function_call.args == {"command": "pwd"}


def test_the_system_turn_never_goes_back_into_contents():
    bridge = ContentBridge("sys")
    view = bridge.to_view([types.Content(role="user", parts=[text("hi")])])
    assert (view[0].model_extra or {})[REF] == "system"
    assert [c.parts[0].text for c in bridge.from_view(view)] == ["hi"]


def test_response_view_is_the_assistant_turn_memrm_judges():
    from google.adk.models.llm_response import LlmResponse

    response = LlmResponse(content=types.Content(role="model", parts=[call("bash", {"command": "echo step 2"})]))
    shown = response_view(response)
    assert shown.role == "assistant" and shown.tool_calls[0]["function"]["name"] == "bash"
    assert response_view(LlmResponse()).content is None
