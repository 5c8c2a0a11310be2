"""Built-in fallback strategies keep the system prompt, the task, and tool-call/result pairs."""

from __future__ import annotations

import pytest

from memguard import KeepMore, ObservationMasking, RecentWindow, default_fallbacks
from memguard.messages import to_messages
from memguard.rails import check_candidate
from memguard.strategies import as_strategy, tool_groups

from tests.doubles import swe_conversation
from tests.trajdata import load, trajectory_paths


def test_masking_masks_only_old_observations():
    msgs = swe_conversation(12)
    out = ObservationMasking(keep_last=3)(msgs)
    assert len(out) == len(msgs)
    masked = [i for i, m in enumerate(out) if m["content"] == "<MASKED>"]
    assert masked == [3 + 2 * k for k in range(9)]  # tool results of turns 0..8
    assert all(out[i]["tool_call_id"] == msgs[i]["tool_call_id"] for i in masked)
    # Dicts in, dicts out; every message it did not mask is the caller's very object.
    assert all(out[i] is msgs[i] for i in range(len(msgs)) if i not in masked)
    assert all(msgs[i]["content"] != "<MASKED>" for i in masked)  # the input was not mutated


def test_masking_keeps_tracebacks():
    msgs = swe_conversation(4)
    msgs[3]["content"] = "noise\nTraceback (most recent call last):\n  File \"a.py\", line 1\nValueError: bad\nmore noise"
    out = ObservationMasking(keep_last=1, keep_errors=True)(msgs)
    assert out[3]["content"].startswith("<MASKED>\nTraceback") and "ValueError: bad" in out[3]["content"]
    assert "noise" not in out[3]["content"]


def test_masking_text_agent_user_observations():
    path = next(p for p in trajectory_paths() if "marshmallow" in p.name and not load(p)[2].get("tool_calls"))
    msgs = load(path)
    out = ObservationMasking(keep_last=2)(msgs)
    assert out[1] is msgs[1]  # the task statement survives
    assert sum(m["content"] == "<MASKED>" for m in out) > 0
    assert all(m["role"] != "user" or i < 2 or m["content"] == "<MASKED>" or i > len(msgs) - 6
               for i, m in enumerate(out))


@pytest.mark.parametrize("keep_last", [1, 2, 3, 5, 8])
def test_recent_window_never_splits_tool_groups(keep_last):
    msgs = swe_conversation(10)
    out = RecentWindow(keep_last=keep_last, keep_first=3)(msgs)
    assert out[0]["role"] == "system" and out[1]["role"] == "user"
    assert check_candidate(to_messages(msgs), to_messages(out)) is None
    assert len(out) < len(msgs) and all(any(m is o for o in msgs) for m in out)


@pytest.mark.parametrize("path", trajectory_paths(), ids=lambda p: p.stem[:20])
def test_every_builtin_passes_rails_on_real_trajectories(path):
    msgs = to_messages(load(path))
    for strategy in (*default_fallbacks(), RecentWindow(keep_last=3), ObservationMasking(keep_last=1)):
        out = strategy(msgs)
        assert check_candidate(msgs, out) is None, strategy.name
        assert out[0].content == msgs[0].content


def test_keep_more_grows_the_tail():
    msgs = swe_conversation(12)
    base = ObservationMasking(keep_last=3)
    more = KeepMore(base, 2.0)
    assert more.name == "observation_masking+keep_more_x2"
    masked = lambda out: sum(m["content"] == "<MASKED>" for m in out)  # noqa: E731
    assert masked(more(msgs)) == masked(base(msgs)) - 3
    with pytest.raises(TypeError, match="widened"):
        KeepMore(as_strategy(lambda m: m))(msgs)


@pytest.mark.langchain
@pytest.mark.parametrize("strategy", [ObservationMasking(keep_last=2), RecentWindow(keep_last=3)], ids=lambda s: s.name)
def test_builtins_answer_in_the_callers_message_type(strategy):
    from langchain_core.messages import BaseMessage

    from memguard.messages import Message, restore_messages

    msgs = swe_conversation(8)
    as_memguard = to_messages(msgs)
    as_langchain = restore_messages(as_memguard, "langchain")
    assert all(isinstance(m, dict) for m in strategy(msgs))
    assert all(isinstance(m, Message) for m in strategy(as_memguard))
    lc_out = strategy(as_langchain)
    assert all(isinstance(m, BaseMessage) for m in lc_out)
    assert [m.content for m in to_messages(lc_out)] == [m["content"] for m in strategy(msgs)]


def test_tool_groups():
    msgs = to_messages(swe_conversation(2))
    assert tool_groups(msgs) == [(0, 1), (1, 2), (2, 4), (4, 6)]


def test_as_strategy_names_plain_functions():
    def my_summary(messages):
        return messages[:2]

    s = as_strategy(my_summary)
    assert s.name == "my_summary" and len(s(swe_conversation(2))) == 2
    with pytest.raises(TypeError):
        as_strategy(42)
