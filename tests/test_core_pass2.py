"""Guard core, second pass: each defect a new user hit, caught by a test that failed before the fix.

Conversations told apart, fallbacks in the caller's type, no loop stalls, no review that raises
depending on the score, no silently lost audit work, empty actions, the smaller defects, and the
health counters an operator reads instead of logs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from pathlib import Path

import pytest

from memguard import CompactionEvent, Guard, JSONLSink, ObservationMasking, Verdict, guarded
from memguard.review import ProbeRequest, Review, ScoreRequest, StrategyRequest
from memguard.scoring.base import Score
from memguard.settings import GuardSettings
from memguard.testing.contract import ConstantScorer, RecordingSink
from memguard.testing.loops import longest_loop_stall
from tests.doubles import AsyncFactPolicy, FactPolicy, KeyedScorer, SlowScorer, ValueScorer, swe_conversation

FACT = "FACT-42"


def lossy(messages, tail=4):
    return [*messages[:2], {"role": "user", "content": "[Summary] some files were read"}, *messages[-tail:]]


def conversation(task: str, n_turns: int = 10):
    messages = swe_conversation(n_turns, fact=FACT)
    messages[1] = {"role": "user", "content": task}
    return messages


# ---------------------------------------------------------------------- 2. conversations apart


def test_a_veto_in_one_conversation_does_not_cool_down_another():
    scorer = KeyedScorer({"ls -la": 0.97}, default=0.01)
    guard = Guard(scorer, cooldown=5)
    compact = guard.compaction(policy=FactPolicy(FACT))(lossy)
    a, b = conversation("Fix bug A."), conversation("Fix bug B.")
    assert compact(a) is not None and compact.last_decision.verdict is Verdict.VETO
    compact(b)
    assert compact.last_decision.reviewed and "cooldown" not in " ".join(compact.last_decision.reasons)
    assert len(scorer.calls) == 2  # B was scored, not vetoed unseen
    compact(a + [{"role": "user", "content": "go on"}])  # A again: cooling down
    assert not compact.last_decision.reviewed and "cooldown" in compact.last_decision.reasons[0]
    assert compact.last_decision.conversation_id != guard.conversation_id_of(
        CompactionEvent(before=b, candidate=b))


@pytest.mark.parametrize("how", ["string", "callable"])
def test_guarded_takes_a_conversation_id(how):
    scorer = KeyedScorer({"ls -la": 0.97})
    seen = []
    conversation_id = "ticket-7" if how == "string" else (lambda messages: f"len-{len(messages) // 100}")
    compact = guarded(scorer=scorer, policy=FactPolicy(FACT), conversation_id=conversation_id,
                      on_decision=seen.append)(lossy)
    compact(conversation("Fix bug A."))
    compact(conversation("Fix bug B."))  # a different task, but the same id: cooling down
    assert [d.conversation_id for d in seen] == ["ticket-7" if how == "string" else "len-0"] * 2
    assert seen[1].reasons[0].startswith("cooldown")


def test_derived_id_is_stable_while_a_conversation_grows_and_differs_by_task():
    guard = Guard(ValueScorer(0.1))
    a = conversation("Fix bug A.")
    grown = a + [{"role": "assistant", "content": "more"}, {"role": "user", "content": "ok"}]
    ids = {guard.conversation_id_of(CompactionEvent(before=m, candidate=m)) for m in (a, grown)}
    assert len(ids) == 1 and next(iter(ids)).startswith("auto-")
    other = conversation("Fix bug B.")
    assert guard.conversation_id_of(CompactionEvent(before=other, candidate=other)) not in ids
    named = CompactionEvent(before=a, candidate=a, conversation_id="mine")
    assert guard.conversation_id_of(named) == "mine"


def test_cooldown_state_is_bounded():
    guard = Guard(ValueScorer(0.97), max_conversations=3)
    for i in range(10):
        before = conversation(f"Task {i}.")
        guard.review(CompactionEvent(before=before, candidate=lossy(before)), FactPolicy(FACT))
    assert len(guard._vetoed_at) == 3
    assert list(guard._vetoed_at) == [guard.conversation_id_of(CompactionEvent(before=b, candidate=b))
                                      for b in (conversation(f"Task {i}.") for i in (7, 8, 9))]


# ---------------------------------------------------------------------- 3. fallbacks in the caller's type


@pytest.mark.parametrize("driver", ["review", "areview"])
def test_a_fallback_written_for_dicts_gets_dicts(driver):
    received = []

    def mask_tools(messages):  # written for OpenAI dicts: subscripting, like user code does
        received.append(messages)
        return [{**m, "content": "<MASKED>"} if m["role"] == "tool" and FACT not in m["content"] else m
                for m in messages]

    before = swe_conversation(10, fact=FACT)
    guard = Guard(KeyedScorer({"ls -la": 0.97}, default=0.01), fallbacks=[mask_tools], identical_is_safe=False)
    ev = CompactionEvent(before=before, candidate=lossy(before))
    decision = guard.review(ev, FactPolicy(FACT)) if driver == "review" else asyncio.run(
        guard.areview(ev, AsyncFactPolicy(FACT)))
    assert decision.verdict is Verdict.FALLBACK and decision.strategy == "mask_tools"
    assert all(isinstance(m, dict) for m in received[0]) and received[0][0] is before[0]
    assert decision.messages == mask_tools(before)
    assert decision.messages[0] is before[0]  # unchanged messages are the caller's own objects


def test_an_async_fallback_is_awaited_in_both_drivers():
    async def amask(messages):
        await asyncio.sleep(0)
        return ObservationMasking(keep_last=2)(messages)

    before = swe_conversation(10, fact=FACT, fact_turn=9)
    guard = Guard(KeyedScorer({"ls -la": 0.97}, default=0.01), fallbacks=[amask], identical_is_safe=False)
    sync = guard.review(CompactionEvent(before=before, candidate=lossy(before, tail=1)), FactPolicy(FACT))
    async_ = asyncio.run(guard.areview(CompactionEvent(before=before, candidate=lossy(before, tail=1)),
                                       AsyncFactPolicy(FACT)))
    assert sync.verdict is async_.verdict is Verdict.FALLBACK
    assert sync.messages == async_.messages == ObservationMasking(keep_last=2)(before)


# ---------------------------------------------------------------------- 4. areview never stalls the loop


async def test_areview_runs_slow_sync_fallbacks_token_counts_and_sinks_off_the_loop():
    def slow_fallback(messages):
        time.sleep(0.6)  # a real summarising fallback is an LLM call
        return ObservationMasking(keep_last=2)(messages)

    class SlowSink:
        def emit(self, decision):
            time.sleep(0.4)  # fsync on a slow disk

        def close(self):
            pass

    def slow_counter(messages):
        time.sleep(0.3)
        return 10

    before = swe_conversation(10, fact=FACT, fact_turn=9)
    guard = Guard(KeyedScorer({"ls -la": 0.97}, default=0.01), fallbacks=[slow_fallback], sinks=[SlowSink()],
                  token_counter=slow_counter, hard_budget=1000, identical_is_safe=False)
    gap, decision = await longest_loop_stall(
        guard.areview(CompactionEvent(before=before, candidate=lossy(before, tail=1)), AsyncFactPolicy(FACT)))
    assert decision.verdict is Verdict.FALLBACK
    assert decision.timings.total > 1.0  # the slow work really ran...
    assert gap < 0.25, f"the event loop stalled for {gap:.2f} s"  # ...and never on the loop


async def test_a_coroutine_from_a_sync_policy_runs_on_the_callers_loop():
    loops = []

    async def probe(messages):
        loops.append(asyncio.get_running_loop())
        return FactPolicy(FACT)(messages)

    def sync_policy(messages):  # a sync callable that hands back a coroutine (a bound async client)
        return probe(messages)

    before = swe_conversation(8, fact=FACT)
    await Guard(ValueScorer(0.1)).areview(CompactionEvent(before=before, candidate=lossy(before)), sync_policy)
    assert loops and all(loop is asyncio.get_running_loop() for loop in loops)


def test_an_audit_probe_queued_on_a_loop_that_stopped_runs_on_a_fresh_one():
    # Runner.run_sync (OpenAI Agents SDK) and run_until_complete callers leave their loop open but
    # stopped between runs: a probe queued on it just before it stopped must not wait forever.
    sink = RecordingSink()
    guard = Guard(ValueScorer(0.1), mode="audit", sinks=[sink], identical_is_safe=False)
    before = swe_conversation(8, fact=FACT)
    loop = asyncio.new_event_loop()

    async def run() -> None:
        await guard.areview(CompactionEvent(before=before, candidate=lossy(before)), agent)
        time.sleep(0.3)  # the loop is busy while the audit worker queues its probe on it

    agent = AsyncFactPolicy(FACT)
    try:
        loop.run_until_complete(run())
        assert guard.flush(10), "the audit probe waited on a stopped loop"
        assert len(sink.decisions) == 1 and sink.decisions[0].error is None
        assert agent.calls == 2  # full and compacted contexts, each probed once
        loop.run_until_complete(asyncio.sleep(0.01))  # runs again: a task queued for the probe does nothing
        assert asyncio.all_tasks(loop) == set() and agent.calls == 2
    finally:
        loop.close()


# ---------------------------------------------------------------------- 5. the agent: needed or not


@pytest.mark.parametrize("p", [0.01, 0.99])
@pytest.mark.parametrize("fallbacks", [(), (ObservationMasking(keep_last=2),)], ids=["no-fallbacks", "fallbacks"])
def test_whether_a_review_needs_the_agent_does_not_depend_on_the_score(p, fallbacks):
    scorer = ValueScorer(p)
    scorer.calls = 0
    original = scorer.score

    def counting(prompts):
        scorer.calls += 1
        return original(prompts)

    scorer.score = counting
    before = swe_conversation(10, fact=FACT)
    ev = CompactionEvent(before=before, candidate=lossy(before), recorded_response={"role": "assistant", "content": "cat a"},
                         proposed_response={"role": "assistant", "content": "ls -la"})
    guard = Guard(scorer, fallbacks=fallbacks)
    if fallbacks:
        with pytest.raises(ValueError, match="needs the agent"):
            guard.review(ev)
        assert scorer.calls == 0  # refused before any scoring
    else:
        assert guard.review(ev).verdict is (Verdict.COMMIT if p < 0.5 else Verdict.VETO)
    with pytest.raises(ValueError, match="needs the agent"):
        guard.review(CompactionEvent(before=before, candidate=lossy(before)))


# ---------------------------------------------------------------------- 6. audit work is never lost silently


def test_audit_after_close_is_counted_and_says_so():
    sink = RecordingSink()
    guard = Guard(ValueScorer(0.9), mode="audit", sinks=[sink])
    guard.close()
    before = swe_conversation(6, fact=FACT)
    decision = guard.review(CompactionEvent(before=before, candidate=lossy(before)), FactPolicy(FACT))
    assert decision.pending is False and decision.reviewed is False
    assert "closed" in decision.error and decision.messages == lossy(before)
    assert guard.stats()["audit_dropped"] == 1 and guard.audit_dropped == 1


def test_a_full_audit_queue_says_so_on_the_decision():
    gate = threading.Event()

    class Blocked:
        def score(self, prompts):
            gate.wait(5)
            return [Score(p_harmful=0.9, n_tokens=1) for _ in prompts]

    guard = Guard(Blocked(), mode="audit", audit_queue_size=1)
    before = swe_conversation(6, fact=FACT)
    decisions = [guard.review(CompactionEvent(before=before, candidate=lossy(before)), FactPolicy(FACT))
                 for _ in range(6)]
    dropped = [d for d in decisions if not d.pending]
    assert dropped and all("queue is full" in d.error and not d.reviewed for d in dropped)
    assert guard.stats()["audit_dropped"] == len(dropped)
    gate.set()
    assert guard.flush(10)
    stats = guard.stats()
    assert stats["audit_completed"] == stats["audit_submitted"] == 6 - len(dropped)
    guard.close()


# ---------------------------------------------------------------------- 7. empty actions


def test_two_empty_next_actions_are_scored_not_assumed_identical():
    scorer = ConstantScorer(0.9)
    before = swe_conversation(6, fact=FACT)
    ev = CompactionEvent(before=before, candidate=lossy(before), recorded_response={"role": "assistant", "content": ""},
                         proposed_response={"role": "assistant", "content": None})
    decision = Guard(scorer).review(ev)
    assert scorer.prompts and not decision.candidates[0].identical
    assert decision.verdict is Verdict.VETO


# ---------------------------------------------------------------------- 8. the smaller defects


def test_a_failed_rotation_never_writes_through_a_stale_descriptor(tmp_path, monkeypatch):
    path = tmp_path / "audit.jsonl"
    sink = JSONLSink(path, max_bytes=400)
    guard = Guard(ValueScorer(0.9), sinks=[sink], cooldown=0)
    before = swe_conversation(6, fact=FACT)
    guard.review(CompactionEvent(before=before, candidate=lossy(before)), FactPolicy(FACT))
    real_replace = Path.replace

    def failing_replace(self, target):
        raise PermissionError("rename refused")

    monkeypatch.setattr(Path, "replace", failing_replace)
    bystander = tmp_path / "bystander.txt"
    guard.review(CompactionEvent(before=before, candidate=lossy(before)), FactPolicy(FACT))  # rotation fails
    with open(bystander, "w") as other:  # a new file may reuse a closed descriptor's number
        guard.review(CompactionEvent(before=before, candidate=lossy(before)), FactPolicy(FACT))
        other.flush()
    monkeypatch.setattr(Path, "replace", real_replace)
    assert bystander.read_text() == ""
    lines = path.read_text().splitlines()
    assert len(lines) == 3 and all(json.loads(line)["verdict"] == "veto" for line in lines)  # nothing lost
    guard.close()


def test_scoring_worker_close_never_strands_a_request():
    import queue

    from memguard.scoring.worker import ScoringWorker

    class FakeRM:
        identity = None

        def fit_prompts(self, prompts):
            return [([1, 2, 3], 0) for _ in prompts]

        def score_fitted(self, seqs, batch_size=1):
            return [0.5 for _ in seqs]

    class SlowQueue(queue.SimpleQueue):
        """Widens the gap between a submit's checks and its put, where close() used to slip in."""

        def put(self, item, block=True, timeout=None):
            if getattr(item, "prompts", None) == ["late"]:
                time.sleep(0.2)
            super().put(item, block, timeout)

    worker = ScoringWorker(FakeRM())
    worker._queue = SlowQueue()  # before the worker thread starts reading it
    assert worker.score(["warm up"])[0].p_harmful == 0.5
    outcome = {}

    def submit():
        try:
            outcome["future"] = worker.submit(["late"])
        except RuntimeError as exc:  # refused because closed: fine, nothing waits
            outcome["refused"] = exc

    thread = threading.Thread(target=submit)
    thread.start()
    time.sleep(0.05)  # the submit is inside its put
    worker.close(timeout=5)
    thread.join(5)
    if "future" in outcome:
        outcome["future"].result(timeout=5)  # scored before the worker stopped, never stranded


def test_remote_scorer_reads_a_generator_of_prompts_once():
    from tests.test_remote import PROMPTS, FakeVLLM, make

    with make(FakeVLLM()) as rm:
        listed = rm.score(list(PROMPTS))
        generated = rm.score(p for p in PROMPTS)
    assert [s.p_harmful for s in generated] == [s.p_harmful for s in listed] and len(listed) == len(PROMPTS)


@pytest.mark.parametrize("driver", ["review", "areview"])
def test_a_raising_compaction_reaches_sinks_and_on_decision(driver):
    sink, seen = RecordingSink(), []
    guard = Guard(ValueScorer(0.1), sinks=[sink], on_decision=seen.append)

    def broken(messages):
        raise ConnectionError("summariser API down")

    async def abroken(messages):
        raise ConnectionError("summariser API down")

    before = swe_conversation(6, fact=FACT)
    if driver == "review":
        out = guard.compaction(policy=FactPolicy(FACT))(broken)(before)
    else:
        out = asyncio.run(guard.compaction(policy=AsyncFactPolicy(FACT))(abroken)(before))
    assert out == before
    assert [d.verdict for d in sink.decisions] == [d.verdict for d in seen] == [Verdict.VETO]
    assert "ConnectionError" in sink.decisions[0].error and not sink.decisions[0].reviewed
    assert guard.stats()["compaction_failures"] == 1


def test_timed_out_scorer_calls_are_counted_and_a_backlog_fails_fast():
    guard = Guard(SlowScorer(1.0), timeout=0.05, max_stalled_calls=2, cooldown=0)
    before = swe_conversation(6, fact=FACT)
    decisions = [guard.review(CompactionEvent(before=before, candidate=lossy(before)), FactPolicy(FACT))
                 for _ in range(4)]
    stats = guard.stats()
    assert stats["timeouts"] == 2 and stats["stalled_scorer_calls"] == 2
    assert [("timeout" in d.error) for d in decisions] == [True, True, False, False]
    assert all("backlog" in d.error for d in decisions[2:])  # no third thread piled onto the model
    assert stats["errors"] == stats["errors_open"] == 4
    time.sleep(1.2)
    assert guard.stats()["stalled_scorer_calls"] == 0


# ---------------------------------------------------------------------- health counters


def test_stats_count_every_outcome_and_latency():
    before = swe_conversation(10, fact=FACT)
    guard = Guard(KeyedScorer({"ls -la": 0.97}, default=0.01), cooldown=2, identical_is_safe=False,
                  fallbacks=[ObservationMasking(keep_last=2)])
    policy = FactPolicy(FACT)
    keeps_fact = [*before[:6], *before[-2:]]
    decisions = [guard.review(CompactionEvent(before=before, candidate=candidate, step=step), policy)
                 for step, candidate in ((10, keeps_fact), (20, lossy(before)), (21, lossy(before)),
                                         (30, [{"role": "user", "content": ""}]))]
    stats = guard.stats()
    assert [d.verdict for d in decisions] == [Verdict.COMMIT, Verdict.VETO, Verdict.VETO, Verdict.VETO]
    assert [d.reviewed for d in decisions] == [True, True, False, True]  # step 21: cooling down
    # `veto` counts reviewed vetoes; the cooldown skip counts in `skipped` and `cooldown_skips`.
    assert (stats["commit"], stats["veto"], stats["reviews"], stats["cooldown_skips"], stats["skipped"]) == (
        1, 2, 3, 1, 1)
    rejected = sum(1 for d in decisions for c in d.candidates if c.rejected)
    assert stats["rails_rejected"] == rejected >= 1  # the empty summary at least
    assert stats["probe_calls"] == policy.calls and stats["scorer_calls"] >= 2
    assert 0 < stats["latency_p50_ms"] <= stats["latency_p99_ms"] <= stats["latency_max_ms"]
    assert set(stats) >= {"reviews", "commit", "fallback", "veto", "forced", "errors", "timeouts", "audit_dropped"}


def test_opentelemetry_sink_exports_the_same_figures():
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from memguard import OpenTelemetrySink

    reader = InMemoryMetricReader()
    sink = OpenTelemetrySink(meter_provider=MeterProvider(metric_readers=[reader]))
    guard = Guard(ValueScorer(0.97), sinks=[sink], cooldown=0)
    before = swe_conversation(6, fact=FACT)
    for _ in range(3):
        guard.review(CompactionEvent(before=before, candidate=lossy(before)), FactPolicy(FACT))
    exported = {}
    for resource in reader.get_metrics_data().resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                exported[metric.name] = metric.data.data_points[0].value
    stats = guard.stats()
    assert exported["memguard.veto"] == stats["veto"] == 3
    assert exported["memguard.reviews"] == 3 and exported["memguard.errors"] == 0
    assert exported["memguard.latency_p99_ms"] == stats["latency_p99_ms"]


# ---------------------------------------------------------------------- the review is self-contained


def test_a_review_is_driven_by_hand_without_any_guard():
    """Sans-IO: the state machine asks, the caller answers; no guard anywhere."""
    before = swe_conversation(8, fact=FACT)
    settings = GuardSettings(fallbacks=[ObservationMasking(keep_last=2)], identical_is_safe=False)
    review = Review(settings, CompactionEvent(before=before, candidate=lossy(before)), conversation_id="c1",
                    fallbacks=settings.fallbacks)
    steps, asked, reply = review.steps(), [], None
    scores = iter([[Score(p_harmful=0.9, n_tokens=1)], [Score(p_harmful=0.1, n_tokens=1)]])
    while True:
        try:
            request = steps.send(reply)
        except StopIteration as stop:
            decision = stop.value
            break
        asked.append(type(request).__name__)
        if isinstance(request, ProbeRequest):
            reply = [FactPolicy(FACT)(context) for context in request.contexts]
        elif isinstance(request, ScoreRequest):
            reply = next(scores)
        elif isinstance(request, StrategyRequest):
            reply = request.strategy(request.messages)
    # No cooldown question: the gate answers it before the compaction runs (memguard.gate).
    assert asked == ["ProbeRequest", "ScoreRequest", "StrategyRequest", "ProbeRequest", "ScoreRequest"]
    assert decision.verdict is Verdict.FALLBACK and decision.conversation_id == "c1"
    assert not any(hasattr(review, name) for name in ("guard", "scorer", "sinks"))


def test_no_review_logs_a_traceback(caplog):
    before = swe_conversation(6, fact=FACT)

    def broken_callback(decision):
        raise RuntimeError(f"callback saw {FACT}")

    with caplog.at_level(logging.DEBUG, logger="memguard"):
        Guard(ValueScorer(0.9), on_decision=broken_callback).review(
            CompactionEvent(before=before, candidate=lossy(before)), FactPolicy(FACT))
    assert caplog.records and all(r.exc_info is None for r in caplog.records)
    assert FACT not in caplog.text
