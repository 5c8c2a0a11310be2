"""`CompactionEvent.deferred`: an integration hands over the O(n) conversion of its messages.

An audit review builds the messages on the guard's worker thread (the agent's path does no
per-message work); an enforce review builds them at once; a build that fails ends as a counted,
written `audit_failed`, never silently.
"""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import pytest
from memguard import CompactionEvent, Guard, JSONLSink, Verdict
from memguard.testing.contract import RecordingSink

from tests.doubles import AsyncFactPolicy, FactPolicy, KeyedScorer, ValueScorer, swe_conversation

FACT = "FACT-42"


def lossy(messages: list[Any], tail: int = 4) -> list[Any]:
    return [*messages[:2], *messages[-tail:]]


class Build:
    """A build that records the thread it ran on (the integration's view conversion)."""

    def __init__(self, before: list[Any], candidate: list[Any]) -> None:
        self.before, self.candidate = before, candidate
        self.threads: list[str] = []

    def __call__(self) -> tuple[list[Any], list[Any]]:
        self.threads.append(threading.current_thread().name)
        return self.before, self.candidate


def test_an_audit_review_builds_the_messages_off_the_agent_s_path(tmp_path):
    before = swe_conversation(8, fact=FACT)
    build = Build(before, lossy(before))
    path = tmp_path / "audit.jsonl"
    guard = Guard(ValueScorer(0.8), mode="audit", sinks=[JSONLSink(path, include_messages=True)])
    gate = guard.gate(before, conversation_id="c1", step=4)
    pending = guard.review(CompactionEvent.deferred(build, strategy="summary", conversation_id="c1", step=4),
                           FactPolicy(FACT), gate=gate)
    assert pending.pending and pending.verdict is Verdict.AUDIT and pending.messages == []
    assert build.threads == [] or threading.current_thread().name not in build.threads
    assert guard.flush(10)
    assert len(build.threads) == 1 and build.threads[0] != threading.current_thread().name
    (record,) = [json.loads(line) for line in path.read_text().splitlines()]
    assert record["event_id"] == pending.event_id and record["strategy"] == "summary"
    assert record["candidates"][0]["p_harmful"] == pytest.approx(0.8)
    assert len(record["messages"]) == len(lossy(before))  # the built candidate, not the empty placeholder
    guard.close()


def test_an_async_audit_review_builds_on_the_worker_and_probes_on_the_loop():
    before = swe_conversation(8, fact=FACT)
    build = Build(before, lossy(before))
    sink = RecordingSink()

    async def main() -> None:
        async with Guard(ValueScorer(0.3), mode="audit", sinks=[sink]) as guard:
            gate = guard.gate(before, conversation_id="c1", step=4)
            event = CompactionEvent.deferred(build, conversation_id="c1", step=4)
            pending = await guard.areview(event, AsyncFactPolicy(FACT), gate=gate)
            assert pending.pending
            assert await guard.aflush(10)

    asyncio.run(main())
    assert len(build.threads) == 1 and build.threads[0] != threading.current_thread().name
    assert [d.verdict for d in sink.decisions] == [Verdict.AUDIT] and sink.decisions[0].p_harmful == pytest.approx(0.3)


@pytest.mark.parametrize("p_harmful, verdict", [(0.1, Verdict.COMMIT), (0.9, Verdict.VETO)])
def test_an_enforce_review_builds_at_once_and_decides_as_on_a_plain_event(p_harmful, verdict):
    before = swe_conversation(8, fact=FACT)
    build = Build(before, lossy(before))
    guard = Guard(ValueScorer(p_harmful))
    deferred = guard.review(CompactionEvent.deferred(build, conversation_id="c1"), FactPolicy(FACT))
    plain = Guard(ValueScorer(p_harmful)).review(CompactionEvent(before=before, candidate=lossy(before),
                                                                 conversation_id="c1"), FactPolicy(FACT))
    assert build.threads == [threading.current_thread().name]
    assert deferred.verdict is plain.verdict is verdict
    assert deferred.messages == plain.messages and deferred.step == plain.step
    guard.close()


def test_without_a_conversation_id_the_messages_are_built_to_derive_one():
    before = swe_conversation(8, fact=FACT)
    guard = Guard(KeyedScorer(default=0.1), mode="audit")
    pending = guard.review(CompactionEvent.deferred(Build(before, lossy(before))), FactPolicy(FACT))
    expected = guard.conversation_id_of(CompactionEvent(before=before, candidate=lossy(before)))
    assert pending.conversation_id == expected  # not the id of an empty conversation
    guard.close()


def test_a_build_that_raises_ends_as_a_counted_written_failure(tmp_path):
    def broken() -> tuple[list[Any], list[Any]]:
        raise KeyError("tool_call_id")

    path = tmp_path / "audit.jsonl"
    guard = Guard(ValueScorer(0.1), mode="audit", sinks=[JSONLSink(path)])
    gate = guard.gate([], conversation_id="c1", step=3)
    pending = guard.review(CompactionEvent.deferred(broken, conversation_id="c1", step=3), FactPolicy(FACT), gate=gate)
    assert pending.pending
    assert guard.flush(10)
    (record,) = [json.loads(line) for line in path.read_text().splitlines()]
    assert record["skipped"] == "audit_failed" and record["error"] == "audit failed: KeyError"
    assert guard.stats()["audit_failed"] == 1
    guard.close()


def test_a_build_that_returns_no_pair_or_bad_messages_is_refused():
    with pytest.raises(ValueError, match=r"must return \(before, candidate\)"):
        CompactionEvent.deferred(lambda: [{"role": "user", "content": "x"}]).materialized()  # type: ignore[arg-type, return-value]
    with pytest.raises(ValueError, match="candidate: expected a list of messages, got str"):
        CompactionEvent.deferred(lambda: ([{"role": "user", "content": "x"}], "x")).materialized()


def test_deferred_refuses_messages_given_twice_and_a_build_that_cannot_be_called():
    with pytest.raises(TypeError, match="before="):
        CompactionEvent.deferred(lambda: ([], []), before=[])
    with pytest.raises(TypeError, match="callable"):
        CompactionEvent.deferred([])  # type: ignore[arg-type]


def test_materialized_builds_once_into_a_plain_event():
    before = swe_conversation(4, fact=FACT)
    build = Build(before, lossy(before, 2))
    event = CompactionEvent.deferred(build, strategy="s")
    assert event.is_deferred and event.before == [] and event.candidate == []
    built = event.materialized()
    assert not built.is_deferred and built.materialized() is built
    assert built.before == before and built.candidate == lossy(before, 2) and built.event_id == event.event_id
    assert len(build.threads) == 1
    assert CompactionEvent(before=before, candidate=before).materialized().before == before
