"""Real transcripts (tau-bench, SWE-agent, mini-swe-agent, OpenHands, Claude Code, Codex, Gemini CLI).

The corpus lives outside the project (`../shared/real-trajectories`, with its PROVENANCE.md) and
is read through `MEMGUARD_REAL_CORPUS`; CI sets it, and without it these tests are skipped. Each
JSONL line is one trajectory: `{"id", "source", "messages": [OpenAI-style chat dicts], ...}`.

At every cut point (every prefix that ends where the agent is about to act) it checks what real
transcripts broke before: a review runs without a crash; conversions lose nothing (OpenAI dicts
and LangChain messages, changed messages included); no user turn of a tool-calling conversation
is ever masked; and every built-in strategy keeps the task (everything before the first action).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from memguard import (
    CompactionEvent,
    Guard,
    ObservationMasking,
    RecentWindow,
    default_fallbacks,
    render_action,
    render_prompt,
    restore_messages,
    to_messages,
)
from memguard.messages import MessageFormat
from memguard.testing.contract import ConstantScorer

from tests import figures

STRATEGIES = (*default_fallbacks(), RecentWindow(keep_last=3, keep_first=1), ObservationMasking(keep_last=1))


def _corpus_dir() -> Path:
    value = os.environ.get("MEMGUARD_REAL_CORPUS")
    if not value:
        pytest.skip("MEMGUARD_REAL_CORPUS is not set: point it at the real-trajectories folder "
                    "(CI: ../shared/real-trajectories beside the clone)")
    path = Path(value).expanduser().resolve()
    if not path.is_dir() or not any(path.glob("*.jsonl")):
        pytest.skip(f"MEMGUARD_REAL_CORPUS={value} holds no *.jsonl trajectories")
    return path


def _trajectories() -> list[tuple[str, list[dict[str, Any]]]]:
    out = []
    for file in sorted(_corpus_dir().glob("*.jsonl")):
        for line in file.read_text(encoding="utf-8").splitlines():
            if line.strip():
                record = json.loads(line)
                out.append((str(record["id"]), record["messages"]))
    return out


@pytest.fixture(scope="module")
def corpus() -> list[tuple[str, list[dict[str, Any]]]]:
    trajectories = _trajectories()
    assert trajectories, "the corpus is empty"
    return trajectories


def _cut_points(messages: list[Any]) -> list[int]:
    """Prefix lengths that end just before an assistant turn (the agent is about to act)."""
    return [i for i, m in enumerate(to_messages(messages)) if m.role == "assistant" and i > 0]


def _calls_tools(messages: list[dict[str, Any]]) -> bool:
    return any(m.get("role") == "tool" or m.get("tool_calls") for m in messages)


def _task_length(messages: list[dict[str, Any]]) -> int:
    """What the agent was given before it first acted (system/developer prompts, instructions, task)."""
    return next((i for i, m in enumerate(messages) if m.get("role") == "assistant"), len(messages))


def _to_langchain(messages: list[dict[str, Any]]) -> list[Any]:
    """LangChain messages that carry what real ones do: extras, error status, an artifact."""
    lc = pytest.importorskip("langchain_core.messages")
    out: list[Any] = []
    for index, m in enumerate(messages):
        role = m.get("role")
        extras = {k: v for k, v in m.items() if k not in ("role", "content", "tool_calls", "tool_call_id", "name")}
        content = m.get("content")
        content = content if isinstance(content, (str, list)) else ("" if content is None else str(content))
        common = {"additional_kwargs": {"extra": extras}, "response_metadata": {"index": index}, "id": f"m{index}"}
        if role == "assistant":
            calls = []
            for call in m.get("tool_calls") or []:
                function = call.get("function") or {}
                try:
                    args = json.loads(function.get("arguments") or "{}")
                except json.JSONDecodeError:
                    args = {"__raw__": function.get("arguments")}
                if function:
                    calls.append({"name": function.get("name") or "tool", "id": call.get("id"),
                                  "args": args if isinstance(args, dict) else {"__value__": args}})
            out.append(lc.AIMessage(content=content, tool_calls=calls, **common))
        elif role == "tool":
            out.append(lc.ToolMessage(content=content, tool_call_id=m.get("tool_call_id") or "",
                                      status="error" if m.get("is_error") else "success",
                                      artifact={"raw": index}, **common))
        elif role in ("system", "developer"):
            out.append(lc.SystemMessage(content=content, **common))
        else:
            out.append(lc.HumanMessage(content=content, **common))
    return out


def _fields(message: Any) -> dict[str, Any]:
    return message.model_dump() if hasattr(message, "model_dump") else dict(message)


def test_every_cut_point_reviews_without_a_crash(corpus):
    guard = Guard(ConstantScorer(0.3), identical_is_safe=False, cooldown=0)
    cuts = 0
    for name, messages in corpus:
        for cut in _cut_points(messages):
            before, action = messages[:cut], messages[cut]
            candidate = ObservationMasking(keep_last=1)(before)
            prompt = render_prompt(before, step=cut, recorded=render_action(action), proposed="",
                                   perturbation="strategy_swap__observation_masking")
            assert prompt.endswith("\n\nAnswer:"), name
            decision = guard.review(CompactionEvent(before=before, candidate=candidate, strategy="observation_masking",
                                                    recorded_response=action, proposed_response=action))
            assert decision.error is None, (name, cut, decision.error)
            cuts += 1
    figures.note("real corpus: cut points reviewed", f"{cuts} over {len(corpus)} trajectories, 0 crashes")


def _check_lossless(name: str, messages: list[Any], fmt: MessageFormat) -> int:
    """Round trips give back the caller's objects; a masked message differs only in its content."""
    assert all(a is b for a, b in zip(restore_messages(to_messages(messages), fmt), messages, strict=True)), name
    changed = 0
    for cut in _cut_points(messages):
        given = messages[:cut]
        for old, new in zip(given, ObservationMasking(keep_last=1)(given), strict=True):
            if new is old:
                continue
            changed += 1
            before_fields, after_fields = _fields(old), _fields(new)
            assert type(new) is type(old), name
            assert {k for k in before_fields if before_fields[k] != after_fields.get(k)} == {"content"}, (name, cut)
            assert set(after_fields) == set(before_fields), (name, cut)
    return changed


def test_openai_dicts_lose_nothing(corpus):
    changed = sum(_check_lossless(name, messages, MessageFormat.OPENAI) for name, messages in corpus)
    assert changed, "no cut point changed any message: the check proved nothing"
    figures.note("real corpus: masked OpenAI dicts that kept every other key", str(changed))


@pytest.mark.langchain
def test_langchain_messages_lose_nothing(corpus):
    changed = sum(_check_lossless(name, _to_langchain(messages), MessageFormat.LANGCHAIN) for name, messages in corpus)
    assert changed, "no cut point changed any message: the check proved nothing"
    figures.note("real corpus: masked LangChain messages that kept every other field", str(changed))


def test_no_user_turn_is_masked_in_a_tool_calling_conversation(corpus):
    checked = 0
    for name, messages in corpus:
        if not _calls_tools(messages):
            continue
        for cut in _cut_points(messages):
            before = messages[:cut]
            originals = {id(m) for m in before}
            for strategy in STRATEGIES:
                # A strategy hands back the caller's own object for every message it left alone:
                # a user turn that is not one of them was rewritten (masked).
                out = strategy(before)
                rewritten = [i for i, m in enumerate(out) if m["role"] == "user" and id(m) not in originals]
                assert not rewritten, (name, cut, strategy.name, rewritten)
                checked += 1
    assert checked


def test_every_builtin_strategy_keeps_the_task(corpus):
    checked = 0
    for name, messages in corpus:
        for cut in _cut_points(messages):
            before = messages[:cut]
            head = _task_length(before)
            assert head >= 1, name
            for strategy in STRATEGIES:
                out = strategy(before)
                assert len(out) >= head and all(a is b for a, b in zip(out[:head], before[:head], strict=True)), (
                    name, cut, strategy.name)
                checked += 1
    figures.note("real corpus: strategy runs that kept the task", str(checked))
