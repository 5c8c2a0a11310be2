"""What real transcripts broke (issue 20, items 15 rails, 16-20): fields kept, humans never masked,
developer turns and the task kept, actions compared as messages, content blocks rendered as text."""

from __future__ import annotations

import json
import socket

import pytest
from memguard import (
    CompactionEvent,
    Guard,
    ObservationMasking,
    RecentWindow,
    Verdict,
    default_fallbacks,
    render_action,
    render_prompt,
    restore_messages,
    same_action,
    to_messages,
)
from memguard.messages import MessageFormat
from memguard.rails import check_candidate
from memguard.testing.contract import ConstantScorer

from tests.doubles import swe_conversation


def call(name: str, arguments: dict, call_id: str = "c1") -> dict:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}


def custom(name: str, text: str, call_id: str = "c1") -> dict:
    return {"id": call_id, "type": "custom", "custom": {"name": name, "input": text}}


# ---------------------------------------------------------------------- 16. a changed message keeps its fields


@pytest.mark.langchain
def test_a_masked_langchain_tool_message_keeps_every_field_but_its_content():
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

    connection = socket.socket()  # an artifact nothing can copy
    try:
        messages = [SystemMessage("sys"), HumanMessage("task")]
        for i in range(4):
            messages.append(AIMessage("", tool_calls=[{"name": "run", "args": {"i": i}, "id": f"t{i}"}], id=f"a{i}"))
            messages.append(ToolMessage(f"output {i} " + "x" * 50, tool_call_id=f"t{i}", status="error", id=f"r{i}",
                                        name="run", artifact={"conn": connection}, additional_kwargs={"k": i},
                                        response_metadata={"latency": i}))
        out = ObservationMasking(keep_last=1)(messages)
        masked = [m for m, o in zip(out, messages, strict=True) if m is not o]
        assert masked and all(m.content == "<MASKED>" for m in masked)
        for new in masked:
            old = next(o for o in messages if getattr(o, "id", None) == new.id)
            assert type(new) is ToolMessage and new.status == "error" and new.artifact["conn"] is connection
            assert (new.additional_kwargs, new.response_metadata, new.name, new.tool_call_id) == (
                old.additional_kwargs, old.response_metadata, old.name, old.tool_call_id)
    finally:
        connection.close()


def test_a_masked_openai_dict_keeps_every_key():
    messages = swe_conversation(4)
    for m in messages:
        if m["role"] == "tool":
            m.update(is_error=True, name="bash", metadata={"exit": 1})
    out = ObservationMasking(keep_last=1)(messages)
    masked = [(o, m) for o, m in zip(messages, out, strict=True) if m is not o]
    assert masked
    for old, new in masked:
        assert set(new) == set(old) and {k: v for k, v in new.items() if k != "content"} == {
            k: v for k, v in old.items() if k != "content"}


# ---------------------------------------------------------------------- 17. observations only, never a human


def tau_bench_like() -> list[dict]:
    """A customer-service agent: the user's words come between tool calls."""
    messages = [{"role": "system", "content": "You are an airline agent."},
                {"role": "user", "content": "I want to change my flight."},
                {"role": "assistant", "content": "Sure. What is your user ID?"},
                {"role": "user", "content": "Sure, my user ID is mia_li_3668"}]
    for i in range(6):
        messages.append({"role": "assistant", "content": None, "tool_calls": [call("get_user", {"id": i}, f"c{i}")]})
        messages.append({"role": "tool", "tool_call_id": f"c{i}", "content": f"record {i} " + "x" * 80})
        messages.append({"role": "user", "content": f"Please use the card ending in 12{i}"})
    return messages


def test_masking_never_touches_a_human_in_a_tool_calling_conversation():
    messages = tau_bench_like()
    out = ObservationMasking(keep_last=1)(messages)
    assert [m["content"] for m in out if m["role"] == "user"] == [m["content"] for m in messages if m["role"] == "user"]
    assert sum(m["content"] == "<MASKED>" for m in out if m["role"] == "tool") == 5


def test_masking_text_only_agents_masks_observations_not_answers_to_questions():
    messages = [{"role": "system", "content": "You run commands."}, {"role": "user", "content": "Fix the bug."}]
    for i in range(4):
        messages.append({"role": "assistant", "content": f"Let me look.\n```bash\ncat file{i}.py\n```"})
        messages.append({"role": "user", "content": f"OBSERVATION:\ncontents {i} " + "y" * 80})
    messages.append({"role": "assistant", "content": "Should I also update the docs?"})
    messages.append({"role": "user", "content": "Yes, please update the docs too."})
    messages.append({"role": "assistant", "content": "```bash\nls docs\n```"})
    out = ObservationMasking(keep_last=1)(messages)
    assert [i for i, m in enumerate(out) if m["content"] == "<MASKED>"] == [3, 5, 7, 9]
    assert out[11]["content"] == "Yes, please update the docs too."


# ---------------------------------------------------------------------- 18. developer turns and the task


def codex_like() -> list[dict]:
    messages = [{"role": "system", "content": "You are Codex."},
                {"role": "developer", "content": [{"type": "text", "text": "<permissions>sandboxed</permissions>"}]},
                {"role": "user", "content": [{"type": "text", "text": "# AGENTS.md\nUse the graph tools."}]},
                {"role": "user", "content": [{"type": "text", "text": "Rename parse() to parse_config()."}]}]
    for i in range(8):
        messages.append({"role": "assistant", "content": None,
                         "tool_calls": [call("shell", {"cmd": f"rg {i}"}, f"c{i}")]})
        messages.append({"role": "tool", "tool_call_id": f"c{i}", "content": f"hit {i}"})
        if i == 4:
            messages.append({"role": "developer", "content": "Approval mode changed to never."})
    return messages


@pytest.mark.parametrize("strategy", [*default_fallbacks(), RecentWindow(keep_last=2, keep_first=1),
                                      ObservationMasking(keep_last=1)], ids=lambda s: s.name)
def test_every_builtin_keeps_developer_turns_and_the_request_after_agents_md(strategy):
    messages = codex_like()
    out = strategy(messages)
    assert all(a is b for a, b in zip(out[:4], messages[:4], strict=True))  # system, developer, AGENTS.md, request
    assert [m for m in out if m["role"] == "developer"] == [m for m in messages if m["role"] == "developer"]


def test_a_candidate_without_the_developer_prompt_is_refused():
    before = to_messages([{"role": "developer", "content": "rules"}, {"role": "user", "content": "task"},
                          {"role": "assistant", "content": "ok"}])
    assert check_candidate(before, before[1:]) == "the system prompt was dropped"


# ---------------------------------------------------------------------- 15. rails: error messages, not errors mentioned


@pytest.mark.parametrize("text", ["Error: rate limit exceeded", "Error code: 429 - rate limited", "ERROR 500",
                                  "ValueError: could not parse", "Exception: boom", "Rate limit exceeded"])
def test_the_rails_refuse_an_error_message_stored_as_the_summary(text):
    before = to_messages(swe_conversation(4))
    assert check_candidate(before, [*before[:2], *to_messages([{"role": "user", "content": text}])]) == (
        "summary is an error message")


@pytest.mark.parametrize("text", ["Error handling in parse() was rewritten to raise ConfigError.",
                                  "Exception safety of the writer was checked; tests pass.",
                                  "Rate limiting was added to the client."])
def test_the_rails_accept_a_summary_that_talks_about_errors(text):
    before = to_messages(swe_conversation(4))
    summary = to_messages([{"role": "user", "content": "[Summary] " + text}])
    assert check_candidate(before, [*before[:2], *summary]) is None


# ---------------------------------------------------------------------- 19. identical means the same action


def test_two_different_patches_are_not_the_same_action():
    a = {"role": "assistant", "content": None, "tool_calls": [custom("apply_patch", "*** Begin Patch\n+a")]}
    b = {"role": "assistant", "content": None, "tool_calls": [custom("apply_patch", "*** Begin Patch\n+b")]}
    assert render_action(a) == render_action(b) == "tool()"  # what the protocol renders: alike
    assert not same_action(a, b)
    assert same_action(a, {**a, "tool_calls": [custom("apply_patch", "*** Begin Patch\n+a", call_id="other")]})


def test_actions_that_differ_after_the_500th_character_are_not_the_same():
    long = "x" * 600
    a = {"role": "assistant", "content": None, "tool_calls": [call("book", {"note": long + "A"})]}
    b = {"role": "assistant", "content": None, "tool_calls": [call("book", {"note": long + "B"})]}
    assert render_action(a) == render_action(b)
    assert not same_action(a, b)
    assert same_action(a, {**a, "tool_calls": [call("book", {"note": long + "A"}, call_id="c9")]})


def test_identical_is_safe_scores_two_different_patches():
    before = swe_conversation(6)
    scorer = ConstantScorer(0.9)
    recorded = {"role": "assistant", "content": None, "tool_calls": [custom("apply_patch", "+fix")]}
    proposed = {"role": "assistant", "content": None, "tool_calls": [custom("apply_patch", "+wrong")]}
    decision = Guard(scorer).review(CompactionEvent(before=before, candidate=[*before[:2], *before[-2:]],
                                                    recorded_response=recorded, proposed_response=proposed))
    assert scorer.prompts and not decision.candidates[0].identical and decision.verdict is Verdict.VETO


# ---------------------------------------------------------------------- 20. content blocks render their text


@pytest.mark.langchain
def test_a_langchain_ai_message_with_content_blocks_renders_their_text():
    from langchain_core.messages import AIMessage

    blocks = [{"type": "text", "text": "I will read the file."},
              {"type": "tool_use", "id": "t1", "name": "read", "input": {"path": "a.py"}}]
    message = AIMessage(content=blocks, tool_calls=[{"name": "read", "args": {"path": "a.py"}, "id": "t1"}])
    as_dict = {"role": "assistant", "content": "I will read the file.",
               "tool_calls": [call("read", {"path": "a.py"}, "t1")]}
    assert render_action(message) == render_action(as_dict) == "I will read the file.\nread({'path': 'a.py'})"
    assert render_prompt([message], step=1, recorded="a", proposed="b", perturbation="p") == render_prompt(
        [as_dict], step=1, recorded="a", proposed="b", perturbation="p")


def test_openai_style_assistant_list_content_still_renders_as_training_did():
    # Protocol §3: list content on an assistant turn is dropped. OpenAI-style input stays byte-identical.
    message = {"role": "assistant", "content": [{"type": "text", "text": "hidden"}]}
    assert render_prompt([message], step=1, recorded="a", proposed="b", perturbation="p").startswith("[Assistant]\n\n")
    assert restore_messages(to_messages([message]), MessageFormat.OPENAI)[0] is message
