"""`to_view`/`from_view` (lossless) and `ListState` (restore in place, by identity)."""

from __future__ import annotations

import asyncio
import copy

from agent_framework import (
    Content,
    Message,
    SlidingWindowStrategy,
    ToolResultCompactionStrategy,
    annotate_message_groups,
    apply_compaction,
    included_messages,
)
from agent_framework._compaction import EXCLUDED_KEY, GROUP_ANNOTATION_KEY
from memguard import ObservationMasking, render_prompt

from agent_framework_memguard import INSTRUCTIONS, ListState, from_view, to_view


def conversation() -> list[Message]:
    """A task, two tool steps (one with two parallel results), reasoning, and a final answer."""
    return [
        Message("user", ["Find the fact."], message_id="u1"),
        Message("assistant", [Content.from_text_reasoning(text="thinking"),
                              Content.from_function_call("c1", "bash", arguments='{"command": "echo step 1"}')],
                message_id="a1"),
        Message("tool", [Content.from_function_result("c1", result="step 1 FACT-42")], message_id="t1",
                additional_properties={"custom": {"kept": [1, 2]}}),
        Message("assistant", [Content.from_function_call("c2", "bash", arguments={"command": "echo step 2"}),
                              Content.from_function_call("c3", "read", arguments={"path": "a.py"})], message_id="a2"),
        Message("tool", [Content.from_function_result("c2", result="step 2"),
                         Content.from_function_result("c3", result={"lines": 3})], message_id="t2"),
        Message("assistant", ["done, the fact is FACT-42"], message_id="a3"),
    ]


def test_the_view_is_what_memrm_reads() -> None:
    messages = conversation()
    view = to_view(messages, "Be careful.")
    assert [m.role for m in view] == ["system", "user", "assistant", "tool", "assistant", "tool", "tool", "assistant"]
    assert view[0].content == "Be careful." and (view[0].model_extra or {}).get(INSTRUCTIONS)
    assert view[2].content is None  # reasoning is not shown
    assert view[2].tool_calls == [{"id": "c1", "type": "function",
                                   "function": {"name": "bash", "arguments": '{"command": "echo step 1"}'}}]
    assert [m.tool_call_id for m in view if m.role == "tool"] == ["c1", "c2", "c3"]
    assert view[6].content == '{"lines": 3}'
    prompt = render_prompt(view, step=3, recorded="a", proposed="b", perturbation="strategy_swap__x")
    assert "[System]\nBe careful." in prompt and "$ echo step 1" in prompt and "read({'command'" not in prompt


def test_an_unchanged_view_gives_back_the_very_objects() -> None:
    messages = conversation()
    back = from_view(to_view(messages, "Be careful."))
    assert len(back) == len(messages) and all(a is b for a, b in zip(back, messages, strict=True))


def test_a_changed_turn_changes_only_its_content() -> None:
    messages = conversation()
    view = to_view(messages)
    masked = ObservationMasking(keep_last=1)(view)
    back = from_view(masked)
    assert back[0] is messages[0] and back[1] is messages[1] and back[3] is messages[3] and back[5] is messages[5]
    changed = back[2]
    assert changed is not messages[2]
    assert changed.message_id == "t1" and changed.role == "tool"
    assert changed.additional_properties == messages[2].additional_properties
    assert changed.additional_properties["custom"] is not messages[2].additional_properties["custom"]
    assert changed.contents[0].result == "<MASKED>" and changed.contents[0].call_id == "c1"
    assert messages[2].contents[0].result == "step 1 FACT-42"  # the original is untouched
    two = back[4]  # both results of the parallel step masked, the message otherwise the same
    assert [c.call_id for c in two.contents] == ["c2", "c3"] and two.message_id == "t2"


def test_dropped_parts_and_new_turns() -> None:
    messages = conversation()
    view = to_view(messages)
    edited = [*view[:4], *view[5:]]  # drop the c2 result, keep c3's
    back = from_view([*edited, {"role": "user", "content": "new turn"}])
    assert [c.call_id for c in back[4].contents] == ["c3"] and back[4] is not messages[4]
    assert back[5] is messages[5]
    assert back[6].role == "user" and back[6].text == "new turn" and back[6].message_id is None


def test_an_assistant_text_change_keeps_hidden_content_and_calls() -> None:
    messages = [Message("assistant", [Content.from_text_reasoning(text="hmm"), "old",
                                      Content.from_function_call("c9", "bash", arguments="{}")], message_id="x")]
    view = to_view(messages)
    view[0] = view[0].model_copy(update={"content": "new"})
    (back,) = from_view(view)
    assert [c.type for c in back.contents] == ["text_reasoning", "text", "function_call"]
    assert back.text == "new" and back.contents[2] is messages[0].contents[2]


def test_a_framework_summary_reads_as_a_summary_turn() -> None:
    messages = conversation()[:5]
    annotate_message_groups(messages)
    asyncio.run(ToolResultCompactionStrategy(keep_last_tool_call_groups=1)(messages))
    view = to_view(included_messages(messages))
    summary = next(m for m in view if m.role == "user" and str(m.content).startswith("[Summary] "))
    assert "[Tool results: bash: step 1 FACT-42]" in summary.content
    back = from_view(view)
    assert all(a is b for a, b in zip(back, included_messages(messages), strict=True))


def snapshot(messages: list[Message]) -> list[object]:
    return [(id(m), m.message_id, copy.deepcopy(m.additional_properties), [id(c) for c in m.contents],
             [copy.deepcopy(c.additional_properties) for c in m.contents]) for m in messages]


def test_restore_puts_back_the_same_objects_in_place() -> None:
    messages = conversation()
    annotate_message_groups(messages)
    listed = messages
    groups = [m.additional_properties[GROUP_ANNOTATION_KEY] for m in messages]
    before = snapshot(messages)
    state = ListState.take(messages)
    first, tool = messages[0], messages[2]
    asyncio.run(ToolResultCompactionStrategy(keep_last_tool_call_groups=0)(messages))
    first.message_id = "renamed"
    tool.contents[0].additional_properties["consumed"] = True
    tool.additional_properties["custom"]["kept"].append(3)
    assert len(messages) > len(before) and snapshot(messages) != before
    assert any(m.additional_properties.get(EXCLUDED_KEY) for m in messages)
    state.restore()
    assert messages is listed and snapshot(messages) == before
    assert all(m.additional_properties[GROUP_ANNOTATION_KEY] is g for m, g in zip(messages, groups, strict=True))


def test_copies_run_a_strategy_without_touching_the_agents_messages() -> None:
    messages = conversation()
    annotate_message_groups(messages)
    before = snapshot(messages)
    scratch = ListState.take(messages).copies()
    asyncio.run(apply_compaction(scratch.messages, strategy=SlidingWindowStrategy(keep_last_groups=1)))
    assert snapshot(messages) == before
    assert [scratch.original(m) for m in scratch.messages] == messages
    scratch.transplant(messages)
    assert [m.additional_properties[EXCLUDED_KEY] for m in messages] == [True] * 5 + [False]
    assert all(scratch.original(c) is c for c in scratch.messages) is False
