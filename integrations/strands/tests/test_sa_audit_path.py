"""Audit mode on the agent's path: the O(n) view conversion runs on the guard's worker, on copies.

`docs/audit.md` promises that in audit mode the agent's path does the same small amount of work
whatever the conversation's length. The wrapper hands both views' conversion to the worker
(`CompactionEvent.deferred`), and what the worker converts is a private copy taken at the review:
the worker can lag behind the agent while earlier reviews probe the model, and Strands managers
edit messages in place, so a later reduction must never show in an earlier review.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from memguard import Guard, Score, Verdict
from memguard.testing.contract import ConstantScorer, RecordingSink
from strands.agent.conversation_manager import ConversationManager

from sa_doubles import PATHS, build_agent, manager_for, run
from strands_memguard import MemGuardConversationManager, StrandsView

WORKER = "memguard-audit"  # the guard's audit worker thread


@pytest.fixture
def to_view_threads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The name of the thread of every `StrandsView.to_view` call."""
    threads: list[str] = []
    real = StrandsView.to_view

    def spy(self: StrandsView, messages: Any, *, summary: Any = None) -> list[dict[str, Any]]:
        threads.append(threading.current_thread().name)
        return real(self, messages, summary=summary)

    monkeypatch.setattr(StrandsView, "to_view", spy)
    return threads


def scored(path: str, mode: str, scorer: Any) -> RecordingSink:
    """Run a scenario with a guard in `mode` (identical contexts scored too); its decisions."""
    sink = RecordingSink()
    guard = Guard(scorer, sinks=[sink], identical_is_safe=False, mode=mode)
    try:
        run(path, MemGuardConversationManager(manager_for(path), guard))
        assert guard.flush(30.0)
    finally:
        guard.close()
    return sink


@pytest.mark.parametrize("path", PATHS)
def test_audit_converts_both_views_on_the_worker_and_scores_what_enforce_scores(path, to_view_threads):
    audit_scorer = ConstantScorer(0.0)
    sink = scored(path, "audit", audit_scorer)
    assert sink.decisions and all(d.verdict is Verdict.AUDIT and not d.pending for d in sink.decisions)
    assert to_view_threads, "the reviews were never converted"
    assert set(to_view_threads) == {WORKER}, "the agent's path converted a history (O(n)) in audit mode"
    assert len(to_view_threads) == 2 * len(sink.decisions)  # before and candidate, once each
    # The views the worker built are those an enforce review builds at once: a SAFE enforce run
    # ends like the inner manager, as audit does, so both score the very same prompts.
    enforce_scorer = ConstantScorer(0.0)
    enforced = scored(path, "enforce", enforce_scorer)
    assert audit_scorer.prompts == enforce_scorer.prompts
    assert [d.step for d in sink.decisions] == [d.step for d in enforced.decisions]  # counted on the worker


def test_enforce_converts_at_once_on_the_agent_s_path(to_view_threads):
    sink = scored("per_turn", "enforce", ConstantScorer(0.0))
    assert sink.reviews and all(d.verdict is Verdict.COMMIT for d in sink.reviews)
    assert WORKER not in to_view_threads and len(to_view_threads) == 2 * len(sink.reviews)


class ClearingManager(ConversationManager):
    """Clears the oldest tool result it has not cleared yet, in place, as Strands' truncation does."""

    def apply_management(self, agent: Any, **kwargs: Any) -> None:
        self.reduce_context(agent)

    def reduce_context(self, agent: Any, e: Exception | None = None, **kwargs: Any) -> None:
        for message in agent.messages:
            for block in message["content"]:
                result = block.get("toolResult")
                if result is not None and result["content"] != [{"text": "[cleared]"}]:
                    result["content"] = [{"text": "[cleared]"}]
                    return


class HeldScorer:
    """Holds the worker in its first score until released: later reviews queue up behind it."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.prompts: list[str] = []

    def score(self, prompts: list[str]) -> list[Score]:
        if not self.prompts:
            assert self.release.wait(30.0)
        self.prompts.extend(prompts)
        return [Score(p_harmful=0.5, n_tokens=len(p) // 4) for p in prompts]


def steps(n: int) -> list[dict[str, Any]]:
    """A prompt, then `n` shell calls, each with its result ``output k``."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": [{"text": "Run the steps."}]}]
    for k in range(1, n + 1):
        use = {"toolUseId": f"c{k}", "name": "shell", "input": {"command": f"echo step {k}"}}
        result = {"toolUseId": f"c{k}", "status": "success", "content": [{"text": f"output {k}"}]}
        messages += [{"role": "assistant", "content": [{"toolUse": use}]},
                     {"role": "user", "content": [{"toolResult": result}]}]
    return messages


def held_audit(inner: ConversationManager, reduce: Any, rounds: int, n_steps: int) -> tuple[HeldScorer, RecordingSink]:
    """`rounds` reductions while the worker is held in its first score, then the worker let go."""
    scorer, sink = HeldScorer(), RecordingSink()
    guard = Guard(scorer, sinks=[sink], identical_is_safe=False, mode="audit")
    manager = MemGuardConversationManager(inner, guard)
    agent, _, _ = build_agent("end", manager)
    agent.messages[:] = steps(n_steps)
    try:
        for _ in range(rounds):
            reduce(manager, agent)
        assert sink.decisions == [], "the worker was held: nothing written yet"
        scorer.release.set()
        assert guard.flush(30.0)
    finally:
        guard.close()
    assert [d.verdict for d in sink.decisions] == [Verdict.AUDIT] * rounds
    return scorer, sink


def tool_texts(decision: Any) -> list[str]:
    """The tool results of a decision's messages (the reduced history the review scored)."""
    return [turn["content"] for turn in decision.messages if turn.get("role") == "tool"]


def test_a_lagging_worker_scores_each_reduction_as_it_was_when_the_agent_made_it():
    # Each reduction clears one more tool result in place, in messages the earlier reviews hold.
    scorer, sink = held_audit(ClearingManager(), lambda manager, agent: manager.reduce_context(agent), 3, 4)
    for cleared, decision in enumerate(sink.decisions, start=1):
        assert tool_texts(decision) == ["[cleared]"] * cleared + [f"output {k}" for k in range(cleared + 1, 5)]
    # MemRM reads each review's history before its reduction: one cleared result fewer.
    assert len(scorer.prompts) == 3
    for cleared, prompt in enumerate(scorer.prompts, start=1):
        assert prompt.count("[cleared]") == cleared - 1 and f"output {cleared}" in prompt


class DirectManager(ConversationManager):
    """Reduces without its reduce_context: drops the oldest step, clears the next result in place."""

    def apply_management(self, agent: Any, **kwargs: Any) -> None:
        del agent.messages[1:3]
        agent.messages[2]["content"][0]["toolResult"]["content"] = [{"text": "[cleared]"}]

    def reduce_context(self, agent: Any, e: Exception | None = None, **kwargs: Any) -> None:
        raise AssertionError("this manager reduces in apply_management only")


def test_a_reduction_made_outside_reduce_context_is_audited_from_copies_too():
    scorer, sink = held_audit(DirectManager(), lambda manager, agent: manager.apply_management(agent), 3, 5)
    for round_, decision in enumerate(sink.decisions, start=1):
        assert tool_texts(decision) == ["[cleared]"] + [f"output {k}" for k in range(round_ + 2, 6)]
    # The history before each reduction (seen after it: its own in-place edit shows, no later one).
    for round_, prompt in enumerate(scorer.prompts, start=1):
        assert f"output {round_ + 2}" in prompt and prompt.count("[cleared]") == (1 if round_ == 1 else 2)
