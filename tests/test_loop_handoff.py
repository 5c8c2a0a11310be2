"""await_on_loop: a worker thread hands an agent's coroutine to the agent's own event loop.

That loop can stop under the worker (asyncio.run's shutdown, a loop left open between
run_until_complete calls): the coroutine must then come back untouched (awaited elsewhere, no
second model call) and nothing may be left pending on the stopped loop.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from memguard._concurrency import Handoff, await_on_loop


@contextmanager
def loop_in_thread() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield loop
    finally:
        if loop.is_running():
            loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


class Probe:
    """An agent call: counts how often its body actually ran, and on which loop."""

    def __init__(self) -> None:
        self.ran = 0
        self.loops: list[asyncio.AbstractEventLoop] = []

    async def __call__(self, answer: str = "ok") -> str:
        self.ran += 1
        self.loops.append(asyncio.get_running_loop())
        await asyncio.sleep(0)
        if answer == "boom":
            raise ValueError("the agent failed")
        return answer


def test_runs_on_the_given_loop_and_returns_its_value():
    probe = Probe()
    with loop_in_thread() as loop:
        assert await_on_loop(probe("done"), loop) == (Handoff.DONE, "done")
        assert probe.loops == [loop] and probe.ran == 1


def test_the_coroutine_s_own_error_propagates():
    with loop_in_thread() as loop, pytest.raises(ValueError, match="the agent failed"):
        await_on_loop(Probe()("boom"), loop)


def test_a_loop_that_stops_before_it_starts_the_coroutine_gives_it_back_untouched_and_holds_no_task():
    probe = Probe()
    loop = asyncio.new_event_loop()
    busy = threading.Event()
    answer: list[tuple[Handoff, object]] = []

    async def agent_step() -> None:
        busy.set()
        # The worker queues its probe while the loop is busy; the loop then stops (end of the
        # step) before it reaches the queue, as with Runner.run_sync between two runs.
        time.sleep(0.3)

    worker_coro = probe("late")

    def worker() -> None:
        busy.wait(5)
        answer.append(await_on_loop(worker_coro, loop))

    thread = threading.Thread(target=worker)
    thread.start()
    try:
        loop.run_until_complete(agent_step())
        thread.join(5)
        assert answer and answer[0][0] is Handoff.NOT_STARTED
        assert probe.ran == 0  # nothing ran on the stopped loop ...
        assert asyncio.run(worker_coro) == "late" and probe.ran == 1  # ... the same coroutine runs elsewhere
        loop.run_until_complete(asyncio.sleep(0.01))  # the loop runs again: the queued start does nothing
        assert asyncio.all_tasks(loop) == set() and probe.ran == 1
    finally:
        loop.close()


def test_asyncio_run_shutting_down_before_the_coroutine_starts_gives_it_back_untouched():
    probe = Probe()
    queued = threading.Event()
    answer: list[tuple[Handoff, object]] = []
    coro = probe("after shutdown")

    async def main() -> None:
        loop = asyncio.get_running_loop()

        def worker() -> None:
            queued.set()
            answer.append(await_on_loop(coro, loop))

        threading.Thread(target=worker, daemon=True).start()
        queued.wait(5)
        time.sleep(0.1)  # the start is queued behind this step; asyncio.run then cancels its task

    asyncio.run(main())
    deadline = time.monotonic() + 5
    while not answer and time.monotonic() < deadline:
        time.sleep(0.01)
    assert answer and answer[0][0] is Handoff.NOT_STARTED
    assert asyncio.run(coro) == "after shutdown" and probe.ran == 1


def test_a_coroutine_cut_off_mid_way_is_reported_interrupted():
    started = threading.Event()

    async def slow_agent_call() -> str:
        started.set()
        await asyncio.sleep(30)
        return "never"

    answer: list[tuple[Handoff, object]] = []
    with loop_in_thread() as loop:
        worker = threading.Thread(target=lambda: answer.append(await_on_loop(slow_agent_call(), loop)))
        worker.start()
        assert started.wait(5)
        loop.call_soon_threadsafe(loop.stop)
        worker.join(5)
        assert answer == [(Handoff.INTERRUPTED, None)]
        (stranded,) = asyncio.all_tasks(loop)
        loop.run_until_complete(asyncio.sleep(0.01))  # the loop runs again: the cut-off task is cancelled
        assert stranded.cancelled()
