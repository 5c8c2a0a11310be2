"""Reading MemGym pair rows and memguard event rows."""

from __future__ import annotations

import json

import pytest

from memguard.datasets import BadRow, iter_jsonl, parse_row, read_rows
from memguard.protocol import judgment_text, render_action, render_prompt

from tests.trajdata import load, trajectory_paths

VIEW = [
    {"role": "system", "content": "You are a coding agent."},
    {"role": "user", "content": "Fix the failing test."},
    {"role": "assistant", "content": "Let me look.", "tool_calls": [
        {"function": {"name": "bash", "arguments": json.dumps({"command": "pytest -x"})}}]},
    {"role": "tool", "content": "1 failed"},
]
JUDGMENT = dict(step=3, recorded="cat tests/test_a.py", proposed="ls -la", perturbation="strategy_swap__mask")
PROMPT = render_prompt(VIEW, **JUDGMENT)


def parse(obj: dict, line: int = 1, **kw):
    return parse_row(obj, line=line, raw=json.dumps(obj), **kw)


def test_all_prompt_sources_agree():
    messages = VIEW + [{"role": "user", "content": judgment_text(**JUDGMENT)}]
    event = {"before": VIEW, "candidate": VIEW[:1], "recorded": "cat tests/test_a.py",
             "proposed": {"role": "assistant", "content": "```bash\nls -la\n```"},
             "strategy": "mask", "step": 3}  # fmt: skip
    sources = [
        {"prompt": PROMPT},
        {"input": PROMPT.removesuffix("\n\nAnswer:")},
        {"input": PROMPT},  # tolerated: already has the suffix
        {"messages": messages},
        event,
    ]
    for source in sources:
        assert parse(source).prompt == PROMPT, source
    assert parse(event).perturbation == "strategy_swap__mask"


def test_event_row_on_a_real_trajectory():
    before = load(trajectory_paths()[0])[:12]
    row = parse({"before": before, "recorded": before[-1], "proposed": "ls", "strategy": "drop", "step": 6})
    assert row.prompt == render_prompt(
        before, step=6, recorded=render_action(before[-1]), proposed="ls",
        perturbation="strategy_swap__drop",
    )  # fmt: skip


def test_labels():
    assert parse({"prompt": PROMPT, "label": 0}).is_harmful is True
    assert parse({"prompt": PROMPT, "label": 1}).is_harmful is False
    assert parse({"prompt": PROMPT, "completion": " N"}).label == 0
    assert parse({"prompt": PROMPT}).label is None
    for bad in ({"label": 2}, {"label": "1"}, {"label": True}, {"label": 1, "completion": " N"},
                {"completion": "Y"}):  # fmt: skip
        with pytest.raises(BadRow):
            parse({"prompt": PROMPT, **bad})


def test_keys_use_id_else_line_and_hash():
    assert parse({"prompt": PROMPT, "id": "r7"}).key == "id:r7"
    a, b = parse({"prompt": PROMPT}, line=4), parse({"prompt": PROMPT + ""}, line=5)
    assert a.key.startswith("line:4:") and a.key.split(":")[2] == b.key.split(":")[2]
    assert a.key != parse({"prompt": PROMPT, "label": 1}, line=4).key


def test_scored_rows_need_no_prompt_unless_asked():
    row = parse({"p_harmful": 0.3, "label": 1}, need_prompt=False)
    assert row.p_harmful == 0.3 and row.prompt is None
    with pytest.raises(BadRow, match="no prompt source"):
        parse({"p_harmful": 0.3, "label": 1})
    with pytest.raises(BadRow, match="p_harmful"):
        parse({"p_harmful": 1.5}, need_prompt=False)


@pytest.mark.parametrize(
    "obj, message",
    [
        ({"prompt": "no suffix"}, "ending in"),
        ({"messages": "not a list"}, "list of messages"),
        ({"before": VIEW, "recorded": "a", "proposed": "b", "strategy": "s"}, "needs `step`"),
        ({"before": VIEW, "recorded": "a", "step": 1, "strategy": "s"}, "needs `proposed`"),
        ({"before": VIEW, "recorded": "a", "proposed": "b", "step": 1}, "needs `strategy`"),
        ({"prompt": PROMPT, "step": "three"}, "step must be an integer"),
    ],
)
def test_bad_rows_say_why(obj, message):
    with pytest.raises(BadRow, match=message) as info:
        parse(obj, line=9, path="data.jsonl")
    assert str(info.value).startswith("data.jsonl:9: ")


def test_bad_lines_stop_or_skip(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text(
        json.dumps({"prompt": PROMPT, "label": 1}) + "\n"
        + "{not json\n\n"
        + "[1, 2]\n"
        + json.dumps({"prompt": "bad"}) + "\n"
        + json.dumps({"input": "x", "label": 0}) + "\n"
    )  # fmt: skip
    with pytest.raises(BadRow) as info:
        read_rows(path)
    assert info.value.line == 2 and "not valid JSON" in str(info.value)
    skipped: list[BadRow] = []
    rows = read_rows(path, on_bad_line="skip", on_skip=skipped.append)
    assert [r.line for r in rows] == [1, 6]
    assert [s.line for s in skipped] == [2, 4, 5]
    assert "expected a JSON object, got list" in str(skipped[1])
    assert len(list(iter_jsonl(path, on_bad_line="skip"))) == 3  # blank line ignored silently
