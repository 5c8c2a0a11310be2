"""MessageBridge: Pydantic AI messages to memguard's view and back, without loss."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from memguard import Message, ObservationMasking, RecentWindow, render_prompt
from pydantic_ai.messages import (
    CachePoint,
    CompactionPart,
    ImageUrl,
    ModelRequest,
    ModelResponse,
    RetryFeedbackPart,
    RetryInfo,
    SystemPromptPart,
    TextPart,
    ThinkingPart,
    ToolAvailabilityDeltaPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)

from pydantic_ai_memguard import ENCRYPTED_SUMMARY, REF, SUMMARY_PREFIX, MessageBridge

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def history() -> list:
    """Every kind of part an agent's history holds: system, user (text and files), calls, returns,
    a tool retry, an output retry, a harness summary, thinking, and a request MemRM cannot read."""
    return [
        ModelRequest(
            parts=[SystemPromptPart("Be careful.", timestamp=T0), UserPromptPart("Find the fact.", timestamp=T0)],
            instructions="Use bash.",
            run_id="r1",
        ),
        ModelResponse(
            parts=[
                ThinkingPart("hmm"),
                TextPart("Looking."),
                ToolCallPart("bash", {"command": "echo step 1"}, tool_call_id="c1"),
            ],
            model_name="m",
        ),
        ModelRequest(
            parts=[ToolReturnPart("bash", "step 1 FACT-42", tool_call_id="c1", timestamp=T0, metadata={"k": 1})]
        ),
        ModelRequest(parts=[ToolAvailabilityDeltaPart(tools_added=["grep"])]),
        ModelResponse(parts=[ToolCallPart("bash", '{"command": 2}', tool_call_id="c2")]),
        ModelRequest(
            parts=[
                ToolReturnPart(
                    "bash",
                    "command must be a string",
                    tool_call_id="c2",
                    outcome="retried",
                    retry=RetryInfo(cause="model_retry", attempt=1, max_retries=1),
                )
            ]
        ),
        ModelResponse(parts=[ToolCallPart("bash", {"command": "echo step 2"}, tool_call_id="c3")]),
        ModelRequest(parts=[ToolReturnPart("bash", {"stdout": "step 2"}, tool_call_id="c3")]),
        ModelResponse(parts=[TextPart("bad")]),
        ModelRequest(parts=[RetryFeedbackPart("not good", retry=RetryInfo(cause="model_retry", attempt=1))]),
        ModelRequest(parts=[CompactionPart(content="Ran two echos.", metadata={"summary": True})]),
        ModelRequest(
            parts=[UserPromptPart(["Also look at", ImageUrl("https://example.com/a.png"), CachePoint(), "this."])]
        ),
        ModelResponse(parts=[TextPart("Done.")]),
    ]


def test_unchanged_view_gives_back_the_agent_own_objects():
    messages = history()
    bridge = MessageBridge("Use bash.")
    back = bridge.from_view(bridge.to_view(messages))
    assert len(back) == len(messages)
    assert all(a is b for a, b in zip(back, messages, strict=True))


def test_the_view_is_what_memrm_should_read():
    bridge = MessageBridge("Use bash.")
    view = bridge.to_view(history())
    shown = [(m.role, m.text()) for m in view]
    assert shown[:3] == [("system", "Use bash."), ("system", "Be careful."), ("user", "Find the fact.")]
    assistant = view[3]
    assert assistant.content == "Looking." and assistant.tool_calls[0]["function"] == {
        "name": "bash",
        "arguments": '{"command":"echo step 1"}',
    }
    assert (view[4].role, view[4].tool_call_id, view[4].name, view[4].content) == (
        "tool",
        "c1",
        "bash",
        "step 1 FACT-42",
    )
    assert "command must be a string" in view[6].content  # the tool retry, as the model is shown it
    assert view[8].content == '{"stdout":"step 2"}'
    assert view[10].role == "user" and "not good" in view[10].content  # the output retry
    assert view[11].content == SUMMARY_PREFIX + "Ran two echos."
    assert view[12].content == [
        {"type": "text", "text": "Also look at"},
        {"type": "text", "text": "[image-url https://example.com/a.png]"},
        {"type": "text", "text": "this."},
    ]
    assert len(view) == 14  # the tool-availability request is not shown
    prompt = render_prompt(view, step=3, recorded="ls", proposed="ls", perturbation="p")
    assert prompt.startswith(
        "[System]\nUse bash.\n\n[System]\nBe careful.\n\n[User]\nFind the fact.\n\n[Assistant]\nLooking.\n"
    )
    assert "[User]\n[Summary] Ran two echos." in prompt and prompt.endswith("\n\nAnswer:")


def test_masking_replaces_only_the_masked_parts():
    messages = history()
    bridge = MessageBridge()
    masked = ObservationMasking(keep_last=2)(bridge.to_view(messages))
    back = bridge.from_view(masked)
    assert len(back) == len(messages)
    first_return = back[2].parts[0]
    assert isinstance(first_return, ToolReturnPart) and first_return.content == "<MASKED>"
    assert (first_return.tool_call_id, first_return.timestamp, first_return.metadata) == ("c1", T0, {"k": 1})
    assert back[2] is not messages[2] and back[2].parts[0] is not messages[2].parts[0]
    assert back[0] is messages[0] and back[1] is messages[1] and back[3] is messages[3]
    assert back[-1] is messages[-1] and back[-2] is messages[-2]


def test_dropping_messages_keeps_hidden_parts_with_their_turn():
    messages = history()
    bridge = MessageBridge()
    window = RecentWindow(keep_last=5, keep_first=2)(bridge.to_view(messages))
    back = bridge.from_view(window)
    assert back[0] is messages[0]
    assert messages[2] not in back and messages[3] not in back  # the hidden request went with its turn
    assert back[1:] == messages[-5:] and all(a is b for a, b in zip(back[1:], messages[-5:], strict=True))


def test_hidden_request_survives_when_its_turn_does():
    messages = history()
    bridge = MessageBridge()
    view = bridge.to_view(messages)
    without_summary = [m for m in view if not m.text().startswith(SUMMARY_PREFIX)]
    back = bridge.from_view(without_summary)
    assert messages[3] in back and back.index(messages[3]) == back.index(messages[2]) + 1
    assert messages[10] not in back and len(back) == len(messages) - 1


def test_new_and_changed_turns_are_built_from_the_view():
    messages = history()
    bridge = MessageBridge()
    view = bridge.to_view(messages)
    summary = Message(role="user", content="[Summary] earlier work")
    changed_call = view[2].model_copy(
        update={
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "bash", "arguments": '{"command":"ls"}'}}
            ],
        }
    )
    back = bridge.from_view([view[0], view[1], summary, changed_call, *view[3:]])
    assert isinstance(back[1], ModelRequest) and back[1].parts == [
        UserPromptPart("[Summary] earlier work", timestamp=back[1].parts[0].timestamp)
    ]
    response = back[2]
    assert isinstance(response, ModelResponse) and response is not messages[1]
    assert [type(p).__name__ for p in response.parts] == ["ThinkingPart", "ToolCallPart"]  # text gone, thinking kept
    assert response.parts[1].args == '{"command":"ls"}' and response.parts[1].tool_call_id == "c1"
    assert response.model_name == "m"
    assert back[3:] == messages[2:] and all(a is b for a, b in zip(back[3:], messages[2:], strict=True))


def test_changed_summary_and_multimodal_prompt_keep_their_shape():
    messages = history()
    bridge = MessageBridge()
    view = bridge.to_view(messages)
    view[10] = view[10].model_copy(update={"content": SUMMARY_PREFIX + "Shorter."})
    items = list(view[11].content)
    items[2] = {"type": "text", "text": "that."}
    view[11] = view[11].model_copy(update={"content": items})
    back = bridge.from_view(view)
    summary = back[10].parts[0]
    assert (
        isinstance(summary, CompactionPart) and summary.content == "Shorter." and summary.metadata == {"summary": True}
    )
    prompt = back[11].parts[0]
    original = messages[11].parts[0].content
    assert prompt.content == ["Also look at", original[1], original[2], "that."]
    assert prompt.content[1] is original[1]


@pytest.mark.parametrize("instructions", [None, "Use bash."])
def test_instruction_turn_never_goes_back(instructions):
    bridge = MessageBridge(instructions)
    view = bridge.to_view(history())
    assert (view[0].model_extra or {}).get(REF) == ("instructions" if instructions else "0:0")
    assert bridge.from_view(view)[0].parts[0].content == "Be careful."


@pytest.mark.parametrize(("content", "shown"), [("The agent ran ls.", "The agent ran ls."), (None, ENCRYPTED_SUMMARY)])
def test_a_provider_compaction_reads_as_a_summary_and_is_never_edited(content, shown):
    part = CompactionPart(content=content, provider_name="openai", id="cmp_1",
                          provider_details=None if content else {"encrypted_content": "gAAAA"})
    compacted = ModelResponse(parts=[part], provider_name="openai", timestamp=T0)
    messages = [compacted, ModelRequest(parts=[UserPromptPart("go on", timestamp=T0)])]
    bridge = MessageBridge()
    view = bridge.to_view(messages)
    assert view[0].role == "user" and view[0].content == SUMMARY_PREFIX + shown
    back = bridge.from_view(view)
    assert back[0] is compacted and back[1] is messages[1]
    assert bridge.from_view(view[1:]) == [messages[1]]  # dropped whole: fine
    with pytest.raises(ValueError, match="not edited"):
        bridge.from_view([view[0].model_copy(update={"content": "[Summary] rewritten"}), view[1]])
