"""Coercion into the one message model and back to the caller's own type."""

from __future__ import annotations

import pytest

from memguard.messages import Conversation, Message, MessageFormat, detect_format, restore_messages, to_messages


def test_openai_dicts_roundtrip_and_extra_fields_kept():
    msgs = [
        {"role": "user", "content": [{"type": "text", "text": "hi"}], "custom": {"k": 1}},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "a", "type": "function", "function": {"name": "f", "arguments": "{bad"}}]},
        {"role": "tool", "content": "r", "tool_call_id": "a"},
    ]
    conv = Conversation.coerce(msgs)
    assert conv.fmt is MessageFormat.OPENAI
    assert conv.messages[0].model_extra == {"custom": {"k": 1}}
    assert conv.messages[1].tool_call_ids() == ["a"]
    assert conv.restore() == msgs
    changed = conv.messages[2].model_copy(update={"content": "<MASKED>"})
    out = restore_messages([conv.messages[0], changed], "openai")
    assert out[0] is msgs[0]
    assert out[1] == {"role": "tool", "content": "<MASKED>", "tool_call_id": "a"}
    assert msgs[2]["content"] == "r"  # never mutated in place


@pytest.mark.parametrize(
    ("bad", "needle"),
    [
        ("just a string", "expected a list of messages"),
        ({"role": "user"}, "expected a list of messages"),
        ([{"role": "user", "content": "x"}, 42], "message 1"),
        ([{"role": "assistant", "tool_calls": "nope"}], "message 0: tool_calls must be a list"),
        (None, "expected a list of messages"),
    ],
)
def test_bad_input_names_the_problem(bad, needle):
    with pytest.raises(ValueError, match=needle):
        to_messages(bad)


def test_missing_role_counts_as_user():
    assert to_messages([{"content": "x"}])[0].role == "user"


def test_langchain_roundtrip():
    lc = pytest.importorskip("langchain_core.messages")
    original = [
        lc.SystemMessage("sys", id="s1"),
        lc.HumanMessage("task", id="h1"),
        lc.AIMessage("thinking", tool_calls=[{"name": "bash", "args": {"command": "ls -la"}, "id": "c1"}], id="a1"),
        lc.ToolMessage("out", tool_call_id="c1", id="t1"),
    ]
    assert detect_format(original) is MessageFormat.LANGCHAIN
    conv = Conversation.coerce(original)
    assert [m.role for m in conv.messages] == ["system", "user", "assistant", "tool"]
    assert conv.messages[2].tool_calls[0]["function"] == {"name": "bash", "arguments": '{"command": "ls -la"}'}
    back = conv.restore()
    assert all(a is b for a, b in zip(back, original))
    edited = conv.messages[3].model_copy(update={"content": "<MASKED>"})
    summary = Message(role="user", content="[Summary] s")
    rebuilt = restore_messages([conv.messages[2], edited, summary], "langchain")
    assert rebuilt[0] is original[2]
    assert isinstance(rebuilt[1], lc.ToolMessage) and rebuilt[1].tool_call_id == "c1" and rebuilt[1].id == "t1"
    assert rebuilt[1].content == "<MASKED>"
    assert isinstance(rebuilt[2], lc.HumanMessage) and rebuilt[2].content == "[Summary] s"
    ai = restore_messages([conv.messages[2].model_copy(update={"content": "new"})], "langchain")[0]
    assert ai.tool_calls[0]["args"] == {"command": "ls -la"} and ai.id == "a1"
