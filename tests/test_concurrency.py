"""Concurrency: one Guard and one MemRM shared by many threads and coroutines.

The tiny random MemRM (`build_tiny_rm`, byte vocabulary, loaded by `MemRM.from_pretrained`) scores
every event (`identical_is_safe=False`), so the comparison with a sequential run covers the scorer's locks,
the guard's shared state and the decision logic together. Audit mode under a burst larger than
its queue must drop and count, never block the caller.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest

from memguard import CompactionEvent, Guard, JSONLSink, Verdict
from memguard.protocol import summary_message
from tests import figures
from tests.doubles import KeyedScorer

THREADS = 16
EVENTS_PER_THREAD = 100
CONCURRENT_AREVIEWS = 100
DISTINCT = 16


class CountingScorer:
    """Delegates to the shared MemRM and counts prompts (so every event provably scored)."""

    def __init__(self, rm):
        self.rm = rm
        self.identity = rm.identity
        self.count_tokens = rm.count_tokens
        self.prompts = 0
        self._lock = threading.Lock()

    def _counted(self, prompts):
        with self._lock:
            self.prompts += len(prompts)

    def score(self, prompts):
        self._counted(prompts)
        return self.rm.score(prompts)

    async def ascore(self, prompts):
        self._counted(prompts)
        return await self.rm.ascore(prompts)


class Agent:
    """A deterministic agent: its next command depends on its context (not on timing)."""

    def __call__(self, messages):
        last = str(messages[-1].get("content"))
        return {"role": "assistant", "content": f"grep -n {len(messages)} {last[:12]}"}


def make_event(i: int) -> CompactionEvent:
    before = [
        {"role": "system", "content": "You fix bugs."},
        {"role": "user", "content": f"Task {i}: fix app{i}.py"},
        {"role": "assistant", "content": f"cat app{i}.py"},
        {"role": "user", "content": f"line {i * 7}: error"},
    ]
    return CompactionEvent(before=before, candidate=[*before[:2], summary_message(f"read app{i}.py")],
                           strategy="summary", conversation_id=f"c{i}")


def outcome(decision):
    return decision.verdict, decision.p_harmful, decision.strategy, len(decision.messages)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """One intra-op thread: on 2 busy cores, 2 torch threads per forward made each tiny forward
    15-25x slower (spinning workers); the 16 guard threads are the concurrency under test."""
    torch = pytest.importorskip("torch")
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def shared(byte_rm):
    """One scorer and one guard for every test here, with the sequential reference decisions."""
    scorer = CountingScorer(byte_rm)
    guard = Guard(scorer, identical_is_safe=False, cooldown=0)
    expected = [outcome(guard.review(make_event(i), Agent())) for i in range(DISTINCT)]
    assert scorer.prompts == DISTINCT
    assert len({p for _, p, _, _ in expected}) > 1  # the scores differ between events
    return scorer, guard, expected


def test_threads_give_the_sequential_decisions(shared):
    scorer, guard, expected = shared
    before_count = scorer.prompts
    results: list[list[tuple]] = [[] for _ in range(THREADS)]
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS)

    def worker(t: int) -> None:
        try:
            start.wait()
            for k in range(EVENTS_PER_THREAD):
                i = (t + k) % DISTINCT
                results[t].append((i, outcome(guard.review(make_event(i), Agent()))))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    began = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began

    assert not errors, errors
    total = THREADS * EVENTS_PER_THREAD
    assert scorer.prompts - before_count == total  # every event really scored
    mismatches = [(i, got) for rows in results for i, got in rows if got != expected[i]]
    assert not mismatches, mismatches[:3]
    figures.note("concurrency: threads x events (tiny MemRM, one shared scorer)",
                 f"{THREADS} x {EVENTS_PER_THREAD} = {total} events, {len(mismatches)} mismatches vs sequential, "
                 f"{elapsed:.1f} s ({1000 * elapsed / total:.0f} ms/event)")


async def test_concurrent_areviews_give_the_sequential_decisions(shared):
    scorer, guard, expected = shared
    before_count = scorer.prompts
    gaps: list[float] = []
    done = asyncio.Event()

    async def heartbeat() -> None:  # the event loop must keep turning while 100 reviews run
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    beat = asyncio.create_task(heartbeat())
    began = time.perf_counter()
    decisions = await asyncio.gather(*(guard.areview(make_event(n % DISTINCT), Agent())
                                       for n in range(CONCURRENT_AREVIEWS)))
    elapsed = time.perf_counter() - began
    done.set()
    await beat

    assert scorer.prompts - before_count == CONCURRENT_AREVIEWS
    mismatches = [n for n, d in enumerate(decisions) if outcome(d) != expected[n % DISTINCT]]
    assert not mismatches
    # The first tick waits while 100 reviews start (each does ~ms of sync prep on the loop);
    # after that the loop must keep turning while the forwards run in worker threads.
    startup, steady = gaps[0], max(gaps[1:])
    assert steady < 0.25
    figures.note("concurrency: concurrent areview calls",
                 f"{CONCURRENT_AREVIEWS} at once, {len(mismatches)} mismatches, {elapsed:.1f} s, "
                 f"event loop stalled {1000 * startup:.0f} ms while they started, then at most {1000 * steady:.0f} ms")


def test_audit_burst_drops_and_counts_never_blocks(tmp_path):
    gate = threading.Event()

    class Stuck(KeyedScorer):
        def score(self, prompts):
            gate.wait(30)  # the scorer is stuck for the whole burst
            return super().score(prompts)

    queue_size, burst, callers = 8, 400, 4
    path = tmp_path / "audit.jsonl"
    guard = Guard(Stuck({"grep": 0.2}), mode="audit", audit_queue_size=queue_size, sinks=[JSONLSink(path)],
                  identical_is_safe=False)
    latencies: list[float] = []
    lock = threading.Lock()
    first: list[float] = []  # the guard's first audit review starts its worker thread

    def caller(c: int) -> None:
        for k in range(burst // callers):
            event = make_event(k % DISTINCT)
            started = time.perf_counter()
            decision = guard.review(event, Agent())
            took = time.perf_counter() - started
            assert decision.verdict is Verdict.AUDIT and decision.messages == event.candidate
            assert decision.pending or (not decision.reviewed and "queue is full" in decision.error)
            with lock:
                (latencies if first else first).append(took)

    threads = [threading.Thread(target=caller, args=(c,)) for c in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert not any(t.is_alive() for t in threads), "an audit-mode caller blocked"
    dropped = guard.audit_dropped
    gate.set()
    assert guard.flush(30)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    written = sum(1 for r in records if r["reviewed"])
    guard.close()

    assert len(latencies) + len(first) == burst
    assert dropped >= burst - queue_size - 1  # the queue plus the job the stuck worker holds
    assert dropped + written == burst  # every event either recorded or counted as dropped...
    # ...and a dropped one is a line too, saying so (published by the worker, not the caller)
    assert len(records) == burst and sum(1 for r in records if r["skipped"] == "audit_dropped") == dropped
    assert all(r["verdict"] == "audit" for r in records)
    worst = max(latencies)
    assert max(worst, *first) < 1.0  # far below the 30 s the stuck scorer would impose on a blocking caller
    figures.note("audit burst", f"{burst} events from {callers} threads into a queue of {queue_size} with a stuck "
                 f"scorer: {dropped} dropped and counted, {written} reviewed, every one a line; max caller latency "
                 f"{1000 * worst:.1f} ms ({1000 * first[0]:.1f} ms for the first, which starts the worker thread)")
