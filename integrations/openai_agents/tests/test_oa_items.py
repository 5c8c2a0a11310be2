"""SDK input items <-> memguard messages: nothing lost, the caller's objects back where unchanged."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from agents.testing import function_call
from memguard import MessageFormat, ObservationMasking, render_prompt, restore_messages, to_messages

from openai_agents_memguard import ITEMS_KEY, from_view, input_digest, is_opaque, to_view

INSTRUCTIONS = "You are careful."


def history() -> list[dict]:
    """One of each kind of item a Runner puts into a model input."""
    return [
        {"role": "developer", "content": [{"type": "input_text", "text": "Answer in English."}]},
        {"role": "user", "content": "Find the launch code."},
        {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "Look it up."}],
         "encrypted_content": "gAAA"},
        {"id": "msg_1", "type": "message", "role": "assistant", "status": "completed",
         "content": [{"type": "output_text", "text": "Looking it up.", "annotations": [], "logprobs": []}]},
        {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "lookup",
         "arguments": "{\"topic\":\"alpha\"}", "status": "completed"},
        {"type": "function_call_output", "call_id": "call_1", "output": "Report on alpha: the code is FACT-42."},
        {"type": "web_search_call", "id": "ws_1", "status": "completed",
         "action": {"type": "search", "query": "alpha launch"}},
        {"type": "custom_tool_call", "id": "ct_1", "call_id": "call_2", "name": "grep", "input": "FACT"},
        {"type": "custom_tool_call_output", "call_id": "call_2",
         "output": [{"type": "input_text", "text": "FACT-42"}]},
        {"id": "msg_2", "type": "message", "role": "assistant", "status": "completed",
         "content": [{"type": "output_text", "text": "The code is FACT-42.", "annotations": []}]},
        {"role": "user", "content": "Thanks. Anything else?"},
        {"type": "mcp_approval_response", "approval_request_id": "mcpr_1", "approve": True},
        {"type": "compaction", "id": "cmp_1", "encrypted_content": "opaque-bytes"},
        {"type": "item_reference", "id": "msg_0"},
    ]


def test_items_come_back_as_the_same_objects():
    items = history()
    snapshot = copy.deepcopy(items)
    view = to_view(items, INSTRUCTIONS)
    instructions, back = from_view(view)
    assert instructions == INSTRUCTIONS
    assert len(back) == len(items) and all(a is b for a, b in zip(back, items, strict=True))
    assert items == snapshot  # nothing was mutated on the way


def test_items_survive_memguards_own_message_model():
    items = history()
    view = to_view(items, INSTRUCTIONS)
    through = restore_messages(to_messages(view), MessageFormat.OPENAI)
    assert all(a is b for a, b in zip(through, view, strict=True))  # unchanged messages: the caller's dicts
    rebuilt = [m.to_openai() for m in to_messages(view)]  # new dicts, as an edit would give
    instructions, back = from_view(rebuilt)
    assert instructions == INSTRUCTIONS and back == items


def test_one_model_response_is_one_assistant_turn():
    view = to_view(history(), INSTRUCTIONS)
    roles = [m["role"] for m in view]
    assert roles == ["system", "system", "user", "assistant", "tool", "assistant", "tool", "assistant", "user",
                     "mcp_approval_response", "user", "item_reference"]
    turn = view[3]
    assert turn["content"] == "Looking it up."
    assert turn["tool_calls"] == [{"id": "call_1", "type": "function",
                                   "function": {"name": "lookup", "arguments": "{\"topic\":\"alpha\"}"}}]
    assert [i["type"] for i in turn[ITEMS_KEY]] == ["reasoning", "message", "function_call"]
    hosted = view[5]
    assert hosted["content"].startswith("web_search_call(") and "alpha launch" in hosted["content"]
    assert hosted["tool_calls"][0]["function"]["name"] == "grep"
    assert view[6]["tool_call_id"] == "call_2"


def test_the_view_renders_as_memrm_reads_conversations():
    prompt = render_prompt(to_view(history(), INSTRUCTIONS), step=3, recorded="a", proposed="b",
                           perturbation="strategy_swap__x")
    assert prompt.startswith(
        "[System]\nYou are careful.\n\n[System]\nAnswer in English.\n\n[User]\nFind the launch code."
    )
    assert "[Assistant]\nLooking it up.\nlookup({'topic': 'alpha'})\n\n[Tool]\nReport on alpha" in prompt
    assert "[User]\n[Summary] (compaction item" in prompt
    assert "gAAA" not in prompt  # encrypted reasoning is not shown


def test_a_masked_tool_result_keeps_every_other_field():
    items = history()[:6] + [
        {"type": "function_call", "id": "fc_9", "call_id": "call_9", "name": "lookup", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_9", "output": "later"},
    ]
    view = to_view(items, INSTRUCTIONS)
    masked = restore_messages(ObservationMasking(keep_last=1)(to_messages(view)), MessageFormat.OPENAI)
    instructions, back = from_view(masked)
    assert instructions == INSTRUCTIONS
    assert back[5] == {"type": "function_call_output", "call_id": "call_1", "output": "<MASKED>"}
    assert back[5] is not items[5] and items[5]["output"].startswith("Report")
    unchanged = [i for i in range(len(items)) if i != 5]
    assert all(back[i] is items[i] for i in unchanged)


def test_an_edited_assistant_turn_keeps_its_reasoning_and_calls():
    items = history()[:6]
    view = to_view(items)
    turn = dict(view[2])
    turn["content"] = "Let me check."
    _, back = from_view([view[0], view[1], turn, view[3]])
    assert back[2] is items[2]  # the reasoning item
    assert back[3] == {"role": "assistant", "content": "Let me check."}
    assert back[4] is items[4] and back[5] is items[5]


def test_a_dropped_call_and_a_changed_argument_follow_the_edit():
    items = history()[:6]
    view = to_view(items)
    turn = dict(view[2])
    turn["tool_calls"] = [{"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}]
    _, back = from_view([view[0], view[1], turn, view[3]])
    assert back[4] == {**items[4], "arguments": "{}"}
    turn["tool_calls"] = []
    _, back = from_view([view[0], view[1], turn])
    assert [i.get("type") for i in back] == [None, None, "reasoning", "message"]


def test_messages_a_strategy_creates_become_easy_input_messages():
    view = to_view(history()[:2])
    summary = {"role": "user", "content": "[Summary] The code is FACT-42."}
    call = {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "c7", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}],
    }
    result = {"role": "tool", "tool_call_id": "c7", "content": "ok"}
    _, back = from_view([*view, summary, call, result])
    assert back[2:] == [
        {"role": "user", "content": "[Summary] The code is FACT-42."},
        {"type": "function_call", "call_id": "c7", "name": "lookup", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c7", "output": "ok"},
    ]


def test_sdk_output_objects_are_accepted_and_returned_as_they_were():
    call = function_call("lookup", {"topic": "alpha"}, call_id="call_1")
    items = [{"role": "user", "content": "hi"}, call]
    view = to_view(items)
    assert view[1]["tool_calls"][0]["function"]["name"] == "lookup"
    assert from_view(view)[1][1] is call


@pytest.mark.parametrize("bad", ["text", {"role": "user"}, None, 3])
def test_a_conversation_that_is_not_a_list_is_refused(bad):
    with pytest.raises(ValueError, match="list of Responses input items"):
        to_view(bad)


def test_an_element_that_is_not_an_item_is_named_by_index():
    with pytest.raises(ValueError, match="item 1: not a Responses input item: int"):
        to_view([{"role": "user", "content": "hi"}, 7])


def test_an_edit_that_cannot_be_expressed_as_items_is_refused():
    view = to_view(history())
    reference = dict(view[-1], content="something else")
    with pytest.raises(ValueError, match="cannot rebuild an item of type 'item_reference'"):
        from_view([reference])
    moved = dict(view[3], tool_call_id="call_other", content="x")
    with pytest.raises(ValueError, match="moved to another call id"):
        from_view([moved])


def test_opaque_items_and_digests():
    items = history()
    assert [i.get("type") for i in items if is_opaque(i)] == ["compaction", "item_reference"]
    assert input_digest(INSTRUCTIONS, items) == input_digest(INSTRUCTIONS, json.loads(json.dumps(items)))
    assert input_digest(INSTRUCTIONS, items) != input_digest("other", items)
    assert input_digest(None, items) != input_digest(None, items[:-1])


# ---------------------------------------------------------------------- the gate's opening, in audit mode


def _exchange(n: int, calls: int = 1) -> list[dict[str, Any]]:
    """A user turn, then one model response of `calls` tool calls, then their outputs."""
    made: list[dict[str, Any]] = [{"role": "user", "content": f"question {n}"}]
    made += [{"type": "function_call", "call_id": f"c{n}-{i}", "name": "lookup", "arguments": f'{{"q": {i}}}'}
             for i in range(calls)]
    made += [{"type": "function_call_output", "call_id": f"c{n}-{i}", "output": f"answer {n}.{i}"}
             for i in range(calls)]
    return made


@pytest.mark.parametrize(("items", "instructions"), [
    ([item for n in range(300) for item in _exchange(n)], "Be brief."),  # a long conversation
    ([item for n in range(300) for item in _exchange(n)], None),
    ([*_exchange(0, calls=40), *(i for n in range(1, 50) for i in _exchange(n))], "Be brief."),  # a wide first step
    ([{"role": "user", "content": f"note {n}"} for n in range(200)], None),  # no assistant turn at all
    (_exchange(0), "Be brief."),  # shorter than the opening: the whole view
], ids=["long", "no-instructions", "wide-first-step", "users-only", "short"])
def test_the_opening_view_derives_the_same_conversation_id_as_the_whole_view_from_a_prefix(items, instructions):
    """An audit gate with no conversation id converts only enough items for the opening (the first <= 8 turns)."""
    from memguard import conversation_key

    from openai_agents_memguard.items import opening_view

    whole = to_view(items, instructions)
    opening = opening_view(items, instructions)
    assert conversation_key(opening) == conversation_key(whole)
    assert opening[:-1] == whole[:len(opening) - 1]  # a prefix of the view, at most its last turn cut short
    if len(items) > 100:
        assert len(opening) < len(whole) // 4  # a prefix, not the conversation
    else:
        assert opening == whole


def test_gate_view_is_the_whole_view_to_enforce_the_opening_or_nothing_to_audit():
    from memguard import conversation_key

    from openai_agents_memguard.items import gate_view

    items = [{"role": "user", "content": f"question {i}"} for i in range(100)]
    whole = to_view(items, "Be brief.")
    assert gate_view(items, "Be brief.", audit=False, conversation_id="c1") == whole  # a cooldown counts it all
    assert gate_view(items, "Be brief.", audit=True, conversation_id="c1") is None
    opening = gate_view(items, "Be brief.", audit=True, conversation_id=None)
    assert opening is not None and len(opening) < len(whole) and opening == whole[:len(opening)]
    assert conversation_key(opening) == conversation_key(whole)
