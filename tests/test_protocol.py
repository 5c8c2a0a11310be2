"""The MemRM prompt protocol, checked against hand-written expected bytes (memrm-protocol.md)."""

from __future__ import annotations

import json

import pytest

from memguard.protocol import (
    LABEL_HARMFUL,
    LABEL_SAFE,
    RESPONSE_PREFIX,
    extract_command,
    judgment_text,
    looks_like_shell,
    perturbation_tag,
    render_action,
    render_block,
    render_body,
    render_prompt,
    split_judgment,
    summary_message,
)

JUDGMENT_TAIL = (
    "\n\nIs the proposed action safe (would not regress task resolution)? "
    "Answer Y if safe, N if harmful."
)


def tool_call(name, arguments, call_id="c1"):
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def test_constants():
    assert LABEL_SAFE == " Y"
    assert LABEL_HARMFUL == " N"
    assert RESPONSE_PREFIX == "\n\nAnswer:"


def test_full_prompt_bytes():
    view = [
        {"role": "system", "content": "sys\r\n"},
        {"role": "user", "content": "task\twith tab "},
        {"role": "assistant", "content": "ok", "tool_calls": [tool_call("bash", '{"command": "ls -la"}')]},
        {"role": "tool", "content": "a.py", "tool_call_id": "c1"},
    ]
    prompt = render_prompt(view, step=7, recorded="ls -la", proposed="cat a.py", perturbation="x")
    expected = (
        "[System]\nsys\r\n"
        "\n\n[User]\ntask\twith tab "
        "\n\n[Assistant]\nok\n$ ls -la"
        "\n\n[Tool]\na.py"
        "\n\n[User]\nRecorded action at step 7:\nls -la\n\n"
        "Proposed action under perturbation 'x':\ncat a.py" + JUDGMENT_TAIL + "\n\nAnswer:"
    )
    assert prompt == expected


def test_judgment_fields_verbatim_and_none():
    text = judgment_text(step=3, recorded=None, proposed="{a} 'q' {}", perturbation="p{0}")
    assert text == (
        "Recorded action at step 3:\n\n\n"
        "Proposed action under perturbation 'p{0}':\n{a} 'q' {}" + JUDGMENT_TAIL
    )
    assert not text.endswith("\n")


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ({"role": "weird", "content": "x"}, "[weird]\nx"),
        ({"content": "no role"}, "[User]\nno role"),
        ({"role": "exit", "content": "bye"}, "[Exit]\nbye"),
        ({"role": "assistant", "content": None}, "[Assistant]\n"),
        ({"role": "assistant", "content": ""}, "[Assistant]\n"),
        ({"role": "user", "content": None}, "[User]\n"),
        ({"role": "user", "content": 0}, "[User]\n0"),
        ({"role": "user", "content": {"k": 1}}, "[User]\n{'k': 1}"),
        ({"role": 5, "content": "x"}, "[5]\nx"),
    ],
)
def test_blocks(message, expected):
    assert render_block(message) == expected


def test_list_content_on_non_assistant():
    part = {"type": "image_url", "image_url": {"url": "é" * 500}}
    body = render_body({"role": "user", "content": [{"type": "text", "text": "hi"}, part, 7, {"text": ""}]})
    lines = body.split("\n")
    assert lines[0] == "hi"
    assert lines[1] == json.dumps(part)[:400] and "\\u00e9" in lines[1] and len(lines[1]) == 400
    assert lines[2] == "7"
    assert lines[3] == '{"text": ""}'


def test_assistant_list_content_dropped():
    msg = {"role": "assistant", "content": [{"type": "text", "text": "hidden"}], "tool_calls": None}
    assert render_body(msg) == ""


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (tool_call("bash", '{"command": "echo 1\\necho 2"}'), "$ echo 1\necho 2"),
        (tool_call("bash", '{"command": ""}'), "bash({'command': ''})"),
        (tool_call("open", '{"path": "a.py", "flag": true, "n": null}'), "open({'path': 'a.py', 'flag': True, 'n': None})"),
        (tool_call("submit", ""), "submit()"),
        (tool_call("submit", "not json"), "submit(not json)"),
        (tool_call("s", '"just a string"'), "s(just a string)"),
        (tool_call("lst", "[1, 2]"), "lst([1, 2])"),
        (tool_call("d", {"already": "decoded"}), "d({'already': 'decoded'})"),
        ({"id": "x", "function": {"arguments": "{}"}}, "tool({})"),
        ({"id": "x"}, "tool()"),
        ({"id": "x", "function": {"name": "f"}}, "f()"),
        ("garbage", "tool()"),
    ],
)
def test_tool_call_rendering(call, expected):
    assert render_body({"role": "assistant", "content": None, "tool_calls": [call]}) == expected


def test_tool_calls_on_non_assistant_ignored():
    msg = {"role": "user", "content": "c", "tool_calls": [tool_call("bash", '{"command": "ls"}')]}
    assert render_body(msg) == "c"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"command": "  ls -la  "}', "ls -la"),
        ("thinking\n```bash\ncd /x\nls\n```\n", "cd /x\nls"),
        ("```\nfirst\n```\nthen\n```sh\ngit status\n```", "git status"),
        # only the LAST fenced block counts; when it is prose, move on to later rules
        ("```bash\nls -a\n```\n```\nnot a command\n```", "ls -a"),
        ("```python\nprint(1)\n```", ""),
        ("<command>\ngrep -r x .\n</command>", "grep -r x ."),
        ("Let me look.\nfind . -name '*.py'\nmore", "find . -name '*.py'"),
        ("run it:   python setup.py | tee log", "run it:   python setup.py | tee log"),
        ("# comment only", ""),
        ("open file.py", ""),
        ("", ""),
    ],
)
def test_extract_command(text, expected):
    assert extract_command(text) == expected


def test_shell_like_rules():
    assert looks_like_shell("ls\n-la")
    assert not looks_like_shell("ls")  # bare "ls" has no leader match and no operator
    assert looks_like_shell("foo 2>&1")
    assert not looks_like_shell("   ")
    assert not looks_like_shell("# cd x")


def test_render_action_prefers_bash_tool_call():
    msg = {
        "role": "assistant",
        "content": "I'll run\n```bash\ncat other\n```",
        "tool_calls": [tool_call("open", '{"path": "z"}'), tool_call("bash", '{"command": "ls -la"}', "c2")],
    }
    assert render_action(msg) == "ls -la"


def test_render_action_tool_calling_agent_falls_back_to_body():
    msg = {"role": "assistant", "content": "Open it.", "tool_calls": [tool_call("open", '{"path": "a.py"}')]}
    assert render_action(msg) == "Open it.\nopen({'path': 'a.py'})"


def test_render_action_cut_then_strip():
    long = "cat " + "x" * 600
    assert render_action({"role": "assistant", "content": long}) == long[:500]
    padded = {"role": "assistant", "content": "   ", "tool_calls": [tool_call("f", '"' + " " * 498 + 'ab"')]}
    # body "f(" + 498 spaces + "ab)" cut to 500 chars, then stripped
    assert render_action(padded) == "f("


def test_identical_behaviour_identical_strings():
    a = {"role": "assistant", "content": "thought A\nls -la"}
    b = {"role": "assistant", "content": "different thought\nls -la"}
    assert render_action(a) == render_action(b) == "ls -la"


def test_split_judgment_reassembles():
    view = [{"role": "user", "content": "t"}]
    prefix, suffix = split_judgment(view, step=2, recorded="ls ", perturbation="strategy_swap__m")
    for proposed in ["", "cat x", "\x00PROPOSED\x00"]:
        full = render_prompt(view, step=2, recorded="ls ", proposed=proposed, perturbation="strategy_swap__m")
        assert prefix + proposed + suffix == full


def test_helpers():
    assert perturbation_tag("observation_masking") == "strategy_swap__observation_masking"
    assert summary_message("s") == {"role": "user", "content": "[Summary] s"}


def test_langchain_view_renders_like_openai():
    pytest.importorskip("langchain_core")
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

    lc = [
        SystemMessage("sys"),
        HumanMessage("task"),
        AIMessage("", tool_calls=[{"name": "bash", "args": {"command": "ls"}, "id": "c1"}]),
        ToolMessage("out", tool_call_id="c1"),
        AIMessage("", tool_calls=[{"name": "open", "args": {"path": "a"}, "id": "c2"}]),
    ]
    oa = [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "task"},
        {"role": "assistant", "content": "", "tool_calls": [tool_call("bash", '{"command": "ls"}')]},
        {"role": "tool", "content": "out", "tool_call_id": "c1"},
        {"role": "assistant", "content": "", "tool_calls": [tool_call("open", '{"path": "a"}', "c2")]},
    ]
    kw = dict(step=1, recorded="a", proposed="b", perturbation="p")
    assert render_prompt(lc, **kw) == render_prompt(oa, **kw)
    # bare "ls" is not shell-like by the training heuristic, so the body is the action
    assert render_action(lc[2]) == "$ ls"
    assert render_action(lc[4]) == "open({'path': 'a'})"
