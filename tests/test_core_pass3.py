"""Guard core, third pass (issue 20): each defect a reviewer or a real transcript hit, caught by a test.

The gate and the cooldown rule; per-call decisions; decorator copies that cannot fail; audit
work isolated from the agent (its loop, its context, its thread, its latency) and never lost;
one bounded scorer path; the parallel search deciding like the sequential one; counters that
count what they say; redacted records without exception text; must-reduce reviews that never veto.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import json
import logging
import math
import threading
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from memguard import CompactionEvent, Gate, Guard, JSONLSink, ObservationMasking, Verdict, guarded
from memguard.scoring.base import Score
from memguard.testing.contract import RecordingSink
from memguard.testing.loops import longest_loop_stall

from tests.doubles import AsyncFactPolicy, FactPolicy, KeyedScorer, ValueScorer, swe_conversation

FACT = "FACT-42"


def lossy(messages: list[Any], tail: int = 4) -> list[Any]:
    return [*messages[:2], {"role": "user", "content": "[Summary] some files were read"}, *messages[-tail:]]


def grown(messages: list[Any], turns: int) -> list[Any]:
    """The same conversation `turns` steps later (what a framework re-proposes after a veto)."""
    out = list(messages)
    for i in range(turns):
        out += [{"role": "assistant", "content": f"more {i}"}, {"role": "user", "content": f"ok {i}"}]
    return out


def audit_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "memguard-audit" and t.is_alive()]


# ---------------------------------------------------------------------- 10. cooldown=N skips exactly N steps


@pytest.mark.parametrize("cooldown", [0, 1, 2, 3])
def test_cooldown_n_skips_exactly_the_n_steps_after_a_veto(cooldown):
    guard = Guard(ValueScorer(0.97), cooldown=cooldown)
    before = swe_conversation(6, fact=FACT)
    assert guard.review(CompactionEvent(before=before, candidate=lossy(before), step=10),
                        FactPolicy(FACT)).verdict is Verdict.VETO
    reviewed = {}
    for step in range(10, 10 + cooldown + 3):
        gate = guard.gate(before, conversation_id=None, step=step)
        reviewed[step] = gate.review
    skipped = [step for step, review in reviewed.items() if not review]
    assert skipped == ([10, *range(11, 11 + cooldown)] if cooldown else [])  # s itself, then s+1 .. s+N
    assert reviewed[11 + cooldown]
    assert guard.stats()["cooldown_skips"] == len(skipped)
    assert [guard.cooldown_left(guard.gate(before, step=99).conversation_id, s) for s in (11, 10 + cooldown + 1)] == (
        [cooldown, 0] if cooldown else [0, 0])


# ---------------------------------------------------------------------- 12. derived ids never silence another user


def test_two_users_whose_chats_open_alike_never_silence_each_other():
    scorer = KeyedScorer({"ls -la": 0.97}, default=0.01)
    guard = Guard(scorer, cooldown=5)
    opening = swe_conversation(4, fact=FACT)
    alice = opening + [{"role": "assistant", "content": "alice's step"}, {"role": "user", "content": "alice"}]
    bob = opening + [{"role": "assistant", "content": "bob's step"}, {"role": "user", "content": "bob"}]
    assert guard.gate(alice).conversation_id == guard.gate(bob).conversation_id  # same opening, same derived id
    assert guard.review(CompactionEvent(before=alice, candidate=lossy(alice)), FactPolicy(FACT)).verdict is Verdict.VETO
    assert guard.gate(bob).review  # Bob's context does not extend Alice's vetoed one
    assert not guard.gate(grown(alice, 1)).review  # Alice, one step on: cooling down
    bob_decision = guard.review(CompactionEvent(before=bob, candidate=lossy(bob)), FactPolicy(FACT))
    assert bob_decision.reviewed and len(scorer.calls) == 2


# ---------------------------------------------------------------------- the gate API


def test_the_gate_names_what_it_judged_and_skip_publishes_the_untouched_context():
    sink = RecordingSink()
    guard = Guard(ValueScorer(0.97), sinks=[sink], cooldown=2)
    before = swe_conversation(6, fact=FACT)
    guard.review(CompactionEvent(before=before, candidate=lossy(before), conversation_id="t-1", step=4),
                 FactPolicy(FACT))
    gate = guard.gate(None, conversation_id="t-1", step=5)
    assert isinstance(gate, Gate) and (gate.review, gate.conversation_id, gate.step) == (False, "t-1", 5)
    assert gate.reason.startswith("cooldown after the veto at step") and gate.reason.endswith(f"resume at step {gate.step + 2}")
    decision = guard.skip(gate, before, strategy="summarization")
    assert decision.verdict is Verdict.VETO and not decision.reviewed and decision.skipped == "cooldown"
    assert decision.messages == before and decision is sink.decisions[-1]
    assert guard.gate(None, conversation_id="t-1", step=5, must_reduce=True).review  # never skipped
    assert guard.gate(None, conversation_id="t-1", step=5, audit=True).review
    with pytest.raises(ValueError, match="review"):
        guard.skip(guard.gate(before, conversation_id="other"), before)
    decision = asyncio.run(guard.askip(gate, before))
    assert decision.skipped == "cooldown" and sink.decisions[-1] is decision


# ---------------------------------------------------------------------- 9. no inner compaction during a cooldown


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_during_a_cooldown_the_decorated_function_is_not_called(kind):
    calls = []

    def summarise(messages):
        calls.append(len(messages))
        return lossy(messages)

    async def asummarise(messages):
        return summarise(messages)

    guard = Guard(ValueScorer(0.97), cooldown=3)
    before = swe_conversation(6, fact=FACT)
    if kind == "sync":
        compact = guard.compaction(policy=FactPolicy(FACT))(summarise)
        results = [compact(grown(before, k)) for k in range(5)]
    else:
        compact = guard.compaction(policy=AsyncFactPolicy(FACT))(asummarise)

        async def run():
            return [await compact(grown(before, k)) for k in range(5)]

        results = asyncio.run(run())
    assert len(calls) == 2  # the veto at step s, then s+4: s+1 .. s+3 skipped without a summariser call
    assert all(r == grown(before, k) for k, r in enumerate(results))
    assert guard.stats()["cooldown_skips"] == 3 and guard.stats()["veto"] == 2


# ---------------------------------------------------------------------- 8. per-call decisions


def test_eight_threads_each_get_their_own_decision_and_response():
    guard = Guard(KeyedScorer({}, default=0.01), cooldown=0, identical_is_safe=False)

    class Echo:
        def __call__(self, messages):
            time.sleep(0.0005)  # calls from the threads interleave
            return {"role": "assistant", "content": f"cat {messages[1]['content']}"}

    compact = guard.compaction(policy=Echo())(lambda messages: lossy(messages))
    wrong: list[str] = []

    def worker(t: int) -> None:
        for k in range(100):
            before = swe_conversation(3, fact=FACT)
            before[1] = {"role": "user", "content": f"task-{t}-{k}"}
            compact(before)
            time.sleep(0.0005)  # another thread writes in between, as in the report
            decision = compact.last_decision
            messages, own = compact.with_decision(before)
            if decision.response["content"] != f"cat task-{t}-{k}" or own.response["content"] != f"cat task-{t}-{k}":
                wrong.append(f"{t}/{k}")
            if messages[1]["content"] != f"task-{t}-{k}":
                wrong.append(f"{t}/{k} messages")

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not wrong, f"{len(wrong)} of 800 steps got another conversation's decision: {wrong[:5]}"
    assert compact.last_decision is None  # this thread never called it


def test_eight_asyncio_tasks_each_get_their_own_decision():
    guard = Guard(KeyedScorer({}, default=0.01), cooldown=0, identical_is_safe=False)

    async def echo(messages):
        await asyncio.sleep(0)
        return {"role": "assistant", "content": f"cat {messages[1]['content']}"}

    async def asummarise(messages):
        await asyncio.sleep(0)
        return lossy(messages)

    compact = guard.compaction(policy=echo)(asummarise)

    async def task(t: int) -> list[str]:
        wrong = []
        for k in range(20):
            before = swe_conversation(3, fact=FACT)
            before[1] = {"role": "user", "content": f"task-{t}-{k}"}
            await compact(before)
            await asyncio.sleep(0)
            own = (await compact.with_decision(before)).decision
            for decision in (compact.last_decision, own):
                if decision.response["content"] != f"cat task-{t}-{k}":
                    wrong.append(f"{t}/{k}")
        return wrong

    async def main():
        return await asyncio.gather(*(task(t) for t in range(8)))

    assert not [w for ws in asyncio.run(main()) for w in ws]


def test_the_decorator_keeps_the_function_s_identity():
    import inspect

    guard = Guard(ValueScorer(0.01))

    async def summarise(messages: list, tail: int = 4) -> list:
        """Summarise."""
        return messages

    wrapped = guarded(guard=guard, policy=AsyncFactPolicy(FACT))(summarise)
    assert inspect.iscoroutinefunction(wrapped) and inspect.iscoroutinefunction(wrapped.with_decision)
    assert (wrapped.__name__, wrapped.__doc__, str(inspect.signature(wrapped))) == (
        "summarise", "Summarise.", "(messages: 'list', tail: 'int' = 4) -> 'list'")
    assert wrapped.__wrapped__ is summarise and wrapped.last_decision is None


# ---------------------------------------------------------------------- 4. no copy can fail


class Connection:
    """Holds an OS resource: cannot be deep-copied (like a socket or a client in a ToolMessage artifact)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()


@pytest.mark.parametrize("mode", ["enforce", "audit"])
def test_a_message_that_cannot_be_copied_is_passed_by_reference_never_a_veto(mode):
    before = swe_conversation(6, fact=FACT)
    before[3] = {**before[3], "artifact": Connection()}
    received = []

    def summarise(messages):
        received.append(messages)
        return lossy(messages)

    guard = Guard(ValueScorer(0.01), mode=mode)
    compact = guard.compaction(policy=FactPolicy(FACT))(summarise)
    result = compact(before)
    decision = compact.last_decision
    assert decision.error is None and decision.verdict is (Verdict.COMMIT if mode == "enforce" else Verdict.AUDIT)
    assert result == lossy(before) and received[0][3] is before[3]  # by reference
    guard.close()


def test_enforce_mode_protects_the_history_from_a_function_that_edits_in_place():
    before = swe_conversation(6, fact=FACT)
    snapshot = json.dumps(before)

    def careless(messages):
        for m in messages:
            m["content"] = "overwritten"  # edits its input in place
        return messages[:2]

    guard = Guard(ValueScorer(0.97))
    out = guard.compaction(policy=FactPolicy(FACT))(careless)(before)
    assert out == before and json.dumps(before) == snapshot  # the veto hands back the untouched history


# ---------------------------------------------------------------------- 7. the audit caller's path is O(1)


def test_the_audit_caller_converts_no_message(monkeypatch):
    import memguard.messages as messages_module

    caller = threading.get_ident()
    converted_here = []
    real = messages_module.to_message

    def spy(item, *, index=None):
        if threading.get_ident() == caller:
            converted_here.append(index)
        return real(item, index=index)

    monkeypatch.setattr(messages_module, "to_message", spy)
    sink = RecordingSink()
    guard = Guard(ValueScorer(0.2), mode="audit", sinks=[sink])
    before = swe_conversation(250, fact=FACT)  # 502 messages
    decision = guard.review(CompactionEvent(before=before, candidate=lossy(before)), FactPolicy(FACT))
    assert decision.pending and not converted_here
    assert guard.flush(10) and sink.decisions[0].step == 250  # the step was counted in the background
    guard.close()


# ---------------------------------------------------------------------- 1. close/flush inside a running loop


class SlowAsyncAgent(AsyncFactPolicy):
    async def __call__(self, messages):  # type: ignore[override]
        await asyncio.sleep(0.3)  # an HTTP call in flight on the agent's own loop
        return await super().__call__(messages)


async def _longest_stall(work) -> float:
    """The longest the loop went without turning while the sync call `work()` ran on it."""

    async def run() -> None:
        work()
        await asyncio.sleep(0.05)

    gap, _ = await longest_loop_stall(run())
    return gap


@pytest.mark.parametrize("call", ["close", "flush", "with"])
def test_sync_close_or_flush_inside_the_running_loop_never_blocks_it(tmp_path, caplog, call):
    path = tmp_path / "audit.jsonl"
    guard = Guard(ValueScorer(0.1), mode="audit", sinks=[JSONLSink(path)], identical_is_safe=False)
    before = swe_conversation(8, fact=FACT)

    def close_with_block():
        with guard:
            pass

    async def main():
        await guard.areview(CompactionEvent(before=before, candidate=lossy(before)), SlowAsyncAgent(FACT))
        await asyncio.sleep(0.05)  # the probe is in flight on this loop
        work = {"close": guard.close, "flush": guard.flush, "with": close_with_block}[call]
        stall = await _longest_stall(work)
        await (guard.aclose() if call != "flush" else guard.aflush())
        return stall

    with caplog.at_level(logging.WARNING, logger="memguard"):
        stall = asyncio.run(main())
    assert stall < 2.0, f"the event loop was blocked {stall:.1f} s"  # it was ~31 s
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["verdict"] for r in records] == ["audit"] and records[0]["error"] is None
    assert guard.stats()["audit_completed"] == 1
    assert sum("await guard.a" in r.message for r in caplog.records) == 1  # said once what to call
    guard.close()


def test_aclose_aflush_and_async_with(tmp_path):
    path = tmp_path / "audit.jsonl"
    before = swe_conversation(8, fact=FACT)

    async def main():
        async with Guard(ValueScorer(0.1), mode="audit", sinks=[JSONLSink(path)]) as guard:
            for _ in range(3):
                await guard.areview(CompactionEvent(before=before, candidate=lossy(before)), SlowAsyncAgent(FACT))
            assert await guard.aflush(10)
            assert len(path.read_text().splitlines()) == 3
            await guard.areview(CompactionEvent(before=before, candidate=lossy(before)), SlowAsyncAgent(FACT))
        return guard

    guard = asyncio.run(main())
    assert len(path.read_text().splitlines()) == 4 and guard.stats()["audit_completed"] == 4


def test_asyncio_run_ending_during_an_audit_probe_leaves_no_pending_task(caplog):
    """The probe is handed to the agent's loop just as `asyncio.run` shuts it down (between its
    cleanup steps): no task may be left there for the closing loop to destroy, and the probe
    must still run exactly once."""
    sink = RecordingSink()
    guard = Guard(ValueScorer(0.1), mode="audit", sinks=[sink], identical_is_safe=False)
    before = swe_conversation(8, fact=FACT)
    handed_over = threading.Event()
    calls = []

    async def probe(messages):
        calls.append(1)
        await asyncio.sleep(0.2)
        return FactPolicy(FACT)(messages)

    def agent(messages):  # a sync agent handing back a coroutine (a bound async client)
        coroutine = probe(messages)
        handed_over.set()  # the worker hands it to the loop right after this
        return coroutine

    async def lingering():
        try:
            yield
        finally:  # runs in asyncio.run's shutdown_asyncgens step, after the main task ended
            handed_over.wait(5)
            time.sleep(0.3)  # the hand-over is queued on the loop meanwhile

    async def main():
        generator = lingering()
        await generator.__anext__()  # left open: asyncio.run closes it on the way out
        await guard.areview(CompactionEvent(before=before, candidate=lossy(before)), agent)

    with caplog.at_level(logging.DEBUG):
        asyncio.run(main())
        assert guard.flush(20)
        gc.collect()
    assert not [r for r in caplog.records if "destroyed but it is pending" in r.getMessage()]
    assert len(sink.decisions) == 1 and sink.decisions[0].error is None
    assert len(calls) == 2  # full and compacted context, each probed once: nothing was lost and redone
    guard.close()


# ---------------------------------------------------------------------- audit probes in an empty context


RUN_CONFIG: contextvars.ContextVar[str] = contextvars.ContextVar("run_config", default="<unset>")


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_audit_probes_run_in_an_empty_context(kind):
    seen: list[str] = []

    def note(messages):
        seen.append(RUN_CONFIG.get())
        RUN_CONFIG.set("set by an earlier probe")  # must not leak into the next job either
        return FactPolicy(FACT)(messages)

    async def anote(messages):
        return note(messages)

    guard = Guard(ValueScorer(0.1), mode="audit", identical_is_safe=False)
    before = swe_conversation(8, fact=FACT)
    RUN_CONFIG.set("the run's stream writer")
    if kind == "sync":
        for _ in range(2):
            guard.review(CompactionEvent(before=before, candidate=lossy(before)), note)
        assert guard.flush(10)
    else:
        async def main():
            for _ in range(2):
                await guard.areview(CompactionEvent(before=before, candidate=lossy(before)), anote)
            assert await guard.aflush(10)

        asyncio.run(main())
    assert seen == ["<unset>"] * 4
    guard.close()


# ---------------------------------------------------------------------- 5. no thread left behind


def test_the_audit_thread_starts_lazily_and_a_dropped_guard_leaves_none():
    gc.collect()
    baseline = len(audit_threads())
    enforce = Guard(ValueScorer(0.1))
    audit = Guard(ValueScorer(0.1), mode="audit")
    assert len(audit_threads()) == baseline  # nothing started yet
    before = swe_conversation(6, fact=FACT)
    guards = [Guard(ValueScorer(0.1), mode="audit") for _ in range(20)]
    for guard in guards:
        guard.review(CompactionEvent(before=before, candidate=lossy(before)), FactPolicy(FACT))
    for guard in guards:
        assert guard.flush(10)
    assert len(audit_threads()) == baseline + 20
    del guards, guard, enforce, audit
    gc.collect()
    deadline = time.monotonic() + 5
    while len(audit_threads()) > baseline and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(audit_threads()) == baseline


def test_a_per_call_audit_review_uses_the_guard_s_own_worker():
    sink = RecordingSink()
    guard = Guard(ValueScorer(0.9), sinks=[sink])  # enforce
    before = swe_conversation(6, fact=FACT)
    decision = guard.review(CompactionEvent(before=before, candidate=lossy(before)), FactPolicy(FACT), audit=True)
    assert decision.pending and decision.verdict is Verdict.AUDIT and decision.messages == lossy(before)
    assert guard.flush(10)
    assert [d.verdict for d in sink.decisions] == [Verdict.AUDIT] and sink.decisions[0].p_harmful == 0.9
    stats = guard.stats()
    assert (stats["audit"], stats["audit_completed"], stats["veto"]) == (1, 1, 0)
    gate = guard.gate(before, audit=True)
    guard.review(CompactionEvent(before=before, candidate=lossy(before)), FactPolicy(FACT), gate=gate)
    assert guard.flush(10) and guard.stats()["audit"] == 2
    guard.close()


# ---------------------------------------------------------------------- 6. every audit job ends somewhere


def test_an_audit_job_that_fails_is_written_and_counted(tmp_path):
    path = tmp_path / "audit.jsonl"
    guard = Guard(ValueScorer(0.1), mode="audit", sinks=[JSONLSink(path)])
    before = swe_conversation(6, fact=FACT)
    pending = guard.review(CompactionEvent(before=before, candidate=lossy(before)), lambda messages: 42)
    assert pending.pending
    assert guard.flush(10)
    (record,) = [json.loads(line) for line in path.read_text().splitlines()]
    assert record["skipped"] == "audit_failed" and record["error"] == "audit failed: ValueError"
    assert record["event_id"] == pending.event_id and not record["pending"]
    stats = guard.stats()
    assert (stats["audit_submitted"], stats["audit_failed"], stats["audit_completed"], stats["skipped"]) == (1, 1, 0, 1)
    guard.close()


def test_audit_work_left_at_close_is_written_as_dropped(tmp_path):
    release = threading.Event()

    class Stuck:
        def score(self, prompts):
            release.wait(10)
            return [Score(p_harmful=0.5, n_tokens=1) for _ in prompts]

    path = tmp_path / "audit.jsonl"
    guard = Guard(Stuck(), mode="audit", sinks=[JSONLSink(path)], audit_queue_size=4)
    before = swe_conversation(6, fact=FACT)
    decisions = [guard.review(CompactionEvent(before=before, candidate=lossy(before)), FactPolicy(FACT))
                 for _ in range(8)]
    worker = guard._worker
    assert worker is not None
    threading.Timer(0.3, release.set).start()
    worker.stop(timeout=0.1)  # what close() does, with a short wait: what is still queued is dropped
    guard.close()
    records = [json.loads(line) for line in path.read_text().splitlines()]
    stats = guard.stats()
    assert len(records) == len(decisions) == 8  # every request ends as a line
    assert stats["audit_completed"] + stats["audit_dropped"] + stats["audit_failed"] == 8
    assert {r["skipped"] for r in records} <= {None, "audit_dropped"}


# ---------------------------------------------------------------------- 13. one bounded scorer path


class HangingScore:
    """`score` hangs (a stuck forward); `ascore` awaits it on the default executor, as MemRM's did."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.finished = 0

    def score(self, prompts):
        self.release.wait(15)
        self.finished += 1
        return [Score(p_harmful=0.1, n_tokens=1) for _ in prompts]

    async def ascore(self, prompts):
        return await asyncio.to_thread(self.score, prompts)


class HangingAscore:
    """`ascore` never answers; `score` works."""

    def score(self, prompts):
        return [Score(p_harmful=0.1, n_tokens=1) for _ in prompts]

    async def ascore(self, prompts):
        await asyncio.Event().wait()


def test_a_hung_scorer_is_counted_bounded_and_never_holds_up_asyncio_run():
    scorer = HangingScore()
    guard = Guard(scorer, timeout=0.2, max_stalled_calls=2, cooldown=0, identical_is_safe=False)
    before = swe_conversation(6, fact=FACT)

    async def main():
        return [await guard.areview(CompactionEvent(before=before, candidate=lossy(before)), AsyncFactPolicy(FACT))
                for _ in range(3)]

    decisions = asyncio.run(main())
    assert scorer.finished == 0  # asyncio.run returned while the hung calls still ran
    stats = guard.stats()
    assert stats["timeouts"] == 2 and stats["stalled_scorer_calls"] == 2
    assert ["timeout" in d.error for d in decisions] == [True, True, False]
    assert "backlog" in decisions[2].error  # the bound held in async too
    scorer.release.set()


def test_a_scorer_whose_ascore_hangs_is_never_awaited():
    guard = Guard(HangingAscore(), timeout=0.5, cooldown=0, identical_is_safe=False)
    before = swe_conversation(6, fact=FACT)
    decision = asyncio.run(guard.areview(CompactionEvent(before=before, candidate=lossy(before)),
                                         AsyncFactPolicy(FACT)))
    assert decision.error is None and decision.p_harmful == 0.1


# ---------------------------------------------------------------------- 14. parallel and sequential agree


class TagScorer:
    """The outcome per candidate (keyed by the prompt's perturbation tag): a score, NaN, or a raise.

    A raise fails the whole call (as a server error would), whichever prompts it held.
    """

    def __init__(self, outcomes: dict[str, Any]) -> None:
        self.outcomes = outcomes

    def score(self, prompts):
        scores = []
        for prompt in prompts:
            tag = prompt.rsplit("Proposed action under perturbation '", 1)[1].split("'", 1)[0]
            outcome = self.outcomes.get(tag, 0.5)
            if outcome == "raise":
                raise ConnectionError("scoring server error")
            scores.append(Score(p_harmful=outcome, n_tokens=1))
        return scores


def _mask(n: int):
    def mask(messages):
        return ObservationMasking(keep_last=n)(messages)

    mask.__name__ = f"mask{n}"
    return mask


def test_a_nan_on_a_fallback_falls_back_in_both_searches():
    before = swe_conversation(12, fact=FACT)
    outcomes = {"strategy_swap__compaction": 0.95, "strategy_swap__mask2": math.nan, "strategy_swap__mask4": 0.01}
    verdicts = {}
    for search in ("sequential", "parallel"):
        guard = Guard(TagScorer(outcomes), search=search, fallbacks=[_mask(2), _mask(4)], identical_is_safe=False)
        decision = guard.review(CompactionEvent(before=before, candidate=lossy(before)), FactPolicy(FACT))
        verdicts[search] = (decision.verdict, decision.strategy)
    # on_error="open": the candidate whose score failed is committed, in both searches
    assert verdicts["sequential"] == verdicts["parallel"] == (Verdict.FALLBACK, "mask2")


OUTCOME = st.one_of(st.sampled_from([0.01, 0.3, 0.6, 0.95, math.nan, "raise"]))


@settings(max_examples=60, deadline=None)
@given(proposal=OUTCOME, first=OUTCOME, second=OUTCOME, on_error=st.sampled_from(["open", "closed"]),
       empty_first=st.booleans())
def test_sequential_and_parallel_pick_the_same_winner(proposal, first, second, on_error, empty_first):
    before = swe_conversation(12, fact=FACT)
    fallbacks = [(lambda messages: []) if empty_first else _mask(2), _mask(4)]  # [] is refused by the rails
    if empty_first:
        fallbacks[0].__name__ = "mask2"
    outcomes = {"strategy_swap__compaction": proposal, "strategy_swap__mask2": first, "strategy_swap__mask4": second}
    results = []
    for search in ("sequential", "parallel"):
        guard = Guard(TagScorer(outcomes), search=search, fallbacks=fallbacks, on_error=on_error,
                      identical_is_safe=False)
        decision = guard.review(CompactionEvent(before=before, candidate=lossy(before)), FactPolicy(FACT))
        results.append((decision.verdict, decision.strategy))
    assert results[0] == results[1]


# ---------------------------------------------------------------------- 15. counters and redaction


def test_counters_count_what_they_say():
    sink = RecordingSink()
    guard = Guard(ValueScorer(0.97), sinks=[sink], cooldown=3)
    before = swe_conversation(6, fact=FACT)
    compact = guard.compaction(policy=FactPolicy(FACT))(lossy)
    for k in range(4):
        compact(grown(before, k))  # one reviewed veto, then three cooldown skips

    def broken(messages):
        raise ConnectionError("summariser down")

    guard.compaction(policy=FactPolicy(FACT), conversation_id="other")(broken)(before)
    stats = guard.stats()
    assert (stats["reviews"], stats["veto"], stats["cooldown_skips"], stats["compaction_failures"],
            stats["skipped"]) == (1, 1, 3, 1, 4)
    assert stats["veto"] <= stats["reviews"]
    assert [d.skipped for d in sink.decisions] == [None, "cooldown", "cooldown", "cooldown", "compaction_failed"]


def test_redacted_records_hold_no_exception_text(tmp_path):
    raw_answer = "model said: {'plan': 'rm -rf build'} <<unparseable>>"

    def failing_agent(messages):
        raise ValueError(f"could not parse the output: {raw_answer}")

    path = tmp_path / "audit.jsonl"
    guard = Guard(ValueScorer(0.1), sinks=[JSONLSink(path, redact=True)])
    before = swe_conversation(6, fact=FACT)
    decision = guard.review(CompactionEvent(before=before, candidate=lossy(before)), failing_agent)
    assert raw_answer in decision.error  # in memory the caller sees it...
    text = path.read_text()
    assert "could not parse" not in text and "rm -rf" not in text  # ...no record holds it
    record = json.loads(text)
    assert "ValueError" in record["error"] and "<redacted" in record["error"]
    assert all("could not parse" not in r for r in record["reasons"])


# ---------------------------------------------------------------------- must-reduce reviews never veto


@pytest.mark.parametrize("on_error", ["open", "closed"])
@pytest.mark.parametrize("scorer", [ValueScorer(0.99), ValueScorer(math.nan)], ids=["harmful", "nan"])
def test_a_must_reduce_review_never_vetoes(scorer, on_error):
    guard = Guard(scorer, on_error=on_error, fallbacks=[ObservationMasking(keep_last=2)], identical_is_safe=False)
    before = swe_conversation(10, fact=FACT)
    gate = guard.gate(before, must_reduce=True)
    decision = guard.review(CompactionEvent(before=before, candidate=lossy(before)), FactPolicy(FACT), gate=gate)
    assert decision.verdict is not Verdict.VETO and decision.messages != before
    # the same review without must_reduce would veto
    assert guard.review(CompactionEvent(before=before, candidate=lossy(before), conversation_id="x"),
                        FactPolicy(FACT)).verdict is Verdict.VETO or on_error == "open"


def test_must_reduce_commits_the_proposal_when_nothing_else_is_usable():
    guard = Guard(ValueScorer(0.99), on_error="closed")
    before = swe_conversation(6, fact=FACT)
    empty_summary = [*before[:2], {"role": "user", "content": ""}, *before[-2:]]  # refused by the rails
    decision = guard.review(CompactionEvent(before=before, candidate=empty_summary), FactPolicy(FACT),
                            gate=guard.gate(before, must_reduce=True))
    assert decision.verdict is Verdict.FORCED and decision.messages == empty_summary
