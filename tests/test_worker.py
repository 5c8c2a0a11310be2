"""ScoringWorker: many threads and asyncio tasks share one model and get direct-scoring results."""

from __future__ import annotations

import asyncio
import statistics
import threading
import time

import pytest

from memguard import CompactionEvent, Guard, MemRM, Verdict
from memguard.protocol import perturbation_tag, render_action, render_prompt
from memguard.scoring import Scorer, ScoringWorker
from tests.trajdata import load, trajectory_paths

TOL = 1e-5


@pytest.fixture(scope="module")
def conversations(qwen_tokenizer):
    """Per agent: (view, recorded, proposals) from real trajectories, ~1K tokens each."""
    out = []
    for path in trajectory_paths():
        messages = load(path)
        turns = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
        if len(turns) < 3:
            continue
        view = messages[: turns[1]]
        from memguard.protocol import render_turns

        if len(qwen_tokenizer.encode(render_turns(view))) > 1600:
            continue
        proposals = [render_action(messages[t]) for t in (turns[0], turns[2])]
        out.append((view, turns[1], render_action(messages[turns[1]]), proposals))
    assert len(out) >= 3
    return out


def agent_prompts(conversations, agent: int) -> list[str]:
    view, step, recorded, proposals = conversations[agent % len(conversations)]
    tags = ("observation_masking", f"agent_{agent}")  # a per-agent tag: distinct prompts per agent
    return [render_prompt(view, step=step, recorded=recorded, proposed=p, perturbation=perturbation_tag(t))
            for p, t in zip(proposals, tags)]


@pytest.fixture(scope="module")
def rm(qwen_rm):
    return MemRM.from_model(qwen_rm.model, qwen_rm.tokenizer, prefix_cache_bytes=0)


@pytest.fixture(scope="module")
def direct(rm, conversations):
    return {a: [s.p_harmful for s in rm.score(agent_prompts(conversations, a))] for a in range(6)}


def test_worker_is_a_scorer(rm):
    with ScoringWorker(rm) as worker:
        assert isinstance(worker, Scorer)
        assert worker.identity == rm.identity
        assert worker.count_tokens("hello world") == rm.count_tokens("hello world")


def test_threads_get_direct_results(rm, conversations, direct):
    results: dict[int, list[float]] = {}
    with ScoringWorker(rm, max_batch=8, max_wait_ms=20) as worker:
        def agent(a: int) -> None:
            results[a] = [s.p_harmful for s in worker.score(agent_prompts(conversations, a))]

        threads = [threading.Thread(target=agent, args=(a,)) for a in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert worker.batches < 6  # concurrent requests were micro-batched
    for a in range(6):
        assert max(abs(x - y) for x, y in zip(results[a], direct[a])) < TOL


async def test_tasks_get_direct_results_and_loop_stays_responsive(rm, conversations, direct):
    lags: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        while not stop.is_set():
            t = time.perf_counter()
            await asyncio.sleep(0.005)
            lags.append(time.perf_counter() - t - 0.005)

    with ScoringWorker(rm, max_batch=4, max_wait_ms=5) as worker:
        tick = asyncio.create_task(ticker())
        started = time.perf_counter()
        got = await asyncio.gather(*(worker.ascore(agent_prompts(conversations, a)) for a in range(6)))
        scoring = time.perf_counter() - started
        stop.set()
        await tick
        assert worker.batches >= 3  # max_batch=4 prompts: 12 prompts need 3+ batches
    for a in range(6):
        assert max(abs(s.p_harmful - y) for s, y in zip(got[a], direct[a])) < TOL
    # the loop kept ticking while the model ran: lag far below the scoring time
    assert len(lags) > 5
    assert max(lags) < max(0.1, 0.25 * scoring), (max(lags), statistics.median(lags), scoring)


def test_a_bad_request_fails_alone(rm, conversations, direct):
    with ScoringWorker(rm) as worker:
        with pytest.raises(TypeError):
            worker.submit("just a string")
        with pytest.raises(ValueError):
            worker.submit(["ok", ""])
        assert worker.score([]) == []
        good = worker.submit(agent_prompts(conversations, 0))
        assert max(abs(s.p_harmful - y) for s, y in zip(good.result(60), direct[0])) < TOL
    with pytest.raises(RuntimeError):
        worker.submit(["x"])
    with pytest.raises(ValueError):
        ScoringWorker(rm, max_batch=0)
    with pytest.raises(TypeError):
        ScoringWorker(object())


def test_guard_over_a_worker(rm, conversations, direct):
    view, step, _, _ = conversations[0]
    recorded_msg = {"role": "assistant", "content": "```bash\nls -la\n```"}
    proposed_msg = {"role": "assistant", "content": "```bash\ncat setup.py\n```"}
    event = CompactionEvent(before=view, candidate=view[:2], strategy="observation_masking", step=step,
                            recorded_response=recorded_msg, proposed_response=proposed_msg)
    with ScoringWorker(rm) as worker:
        decision = Guard(worker, band=None).review(event)
        expected = rm.score([render_prompt(view, step=step, recorded="ls -la", proposed="cat setup.py",
                                           perturbation=perturbation_tag("observation_masking"))])[0]
        assert decision.verdict in (Verdict.COMMIT, Verdict.VETO)
        assert abs(decision.candidates[0].p_harmful - expected.p_harmful) < TOL


class GatedMemRM:
    """A MemRM look-alike whose forward waits for a gate, recording every prompt it runs."""

    def __init__(self):
        self.gate = threading.Event()
        self.started = threading.Event()
        self.ran: list[list[int]] = []
        self.identity = None

    def fit_prompts(self, prompts):
        return [([len(p)], 0) for p in prompts]

    def score_fitted(self, seqs, batch_size=1):
        self.started.set()
        self.gate.wait(10)
        self.ran.extend(seqs)
        return [0.25 for _ in seqs]


def test_a_timed_out_request_is_never_run():
    """Before: the request stayed queued and was scored later, holding the model for nobody."""
    memrm = GatedMemRM()
    with ScoringWorker(memrm, max_wait_ms=0) as worker:
        first = worker.submit(["a" * 7])
        assert memrm.started.wait(5)  # the worker is busy with the first request
        with pytest.raises(TimeoutError):
            worker.score(["b" * 11], timeout=0.05)
        memrm.gate.set()
        assert [s.p_harmful for s in first.result(5)] == [0.25]
        assert [s.p_harmful for s in worker.score(["c" * 13], timeout=5)] == [0.25]
    assert memrm.ran == [[7], [13]]  # the timed-out request (11) never reached the model
