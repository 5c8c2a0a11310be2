"""Running user callables (policies, strategies, scorers) with timeouts, from sync and async code.

Timed calls run on daemon threads: a hung model or agent call must never keep the process from
exiting, which a `ThreadPoolExecutor` worker (joined at interpreter exit) would. A call that
times out keeps running on its thread; a `StallTracker` counts those until they end.
From async code, a coroutine that a sync callable returns is awaited on the caller's own loop
(never on a second one: loop-bound clients such as httpx's `AsyncClient` break there).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import enum
import inspect
import queue
import sys
import threading
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

T = TypeVar("T")

__all__ = [
    "DaemonPool",
    "Handoff",
    "StallTracker",
    "await_on_loop",
    "call_async",
    "call_blocking",
    "in_running_loop",
    "run_coroutine_blocking",
    "start_daemon",
]


class StallTracker(Protocol):
    """Told when a timed-out call's thread is left running, and when it finally ends."""

    def stall_started(self) -> None: ...

    def stall_ended(self) -> None: ...


def in_running_loop() -> bool:
    """True when called from code that an event loop is running (blocking here blocks that loop)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class DaemonPool:
    """At most `size` daemon threads running submitted calls in order; idle ones end after `idle_s`.

    For calls that must never hold up `asyncio.run`'s exit or the interpreter's (the default
    executor's threads are joined at both), many at a time: a thread per call would make a burst
    of a hundred calls start a hundred threads, each start waiting for the GIL the busy ones hold.
    """

    def __init__(self, size: int, *, name: str = "memguard-pool", idle_s: float = 2.0) -> None:
        self.size = size
        self.name = name
        self.idle_s = idle_s
        self._queue: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0

    @property
    def threads(self) -> int:
        """Threads alive now."""
        return self._threads

    def submit(self, call: Callable[[], None]) -> None:
        """Run `call()` on a pool thread (it must not raise)."""
        self._queue.put(call)
        with self._lock:
            if self._idle > 0 or self._threads >= self.size:
                return
            self._threads += 1
        threading.Thread(target=self._work, name=self.name, daemon=True).start()

    def _work(self) -> None:
        while True:
            with self._lock:
                self._idle += 1
            try:
                call = self._queue.get(timeout=self.idle_s)
            except queue.Empty:
                with self._lock:
                    self._idle -= 1
                    if self._queue.empty():
                        self._threads -= 1
                        return
                continue
            with self._lock:
                self._idle -= 1
            call()
            del call


def start_daemon(fn: Callable[..., T], *args: Any, name: str = "memguard-call") -> concurrent.futures.Future[T]:
    """Run `fn(*args)` on a new daemon thread; its outcome arrives in the returned future.

    Unlike the default executor (`asyncio.to_thread`, `run_in_executor`), a daemon thread is
    never joined by `asyncio.run`'s shutdown nor by the interpreter's: a call that hangs cannot
    hold either up.
    """
    future: concurrent.futures.Future[T] = concurrent.futures.Future()

    def runner() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(fn(*args))
        except BaseException as exc:  # noqa: BLE001 - delivered through the future
            future.set_exception(exc)

    threading.Thread(target=runner, name=name, daemon=True).start()
    return future


def run_coroutine_blocking(awaitable: Awaitable[T]) -> T:
    """Drive a coroutine to completion from sync code, even inside a running event loop.

    Without a running loop it is `asyncio.run`. Inside one (a sync callback called from async
    code) the coroutine runs on a fresh loop in a new thread while this thread waits, so it
    never re-enters the running loop (which `asyncio.run` refuses). That wait blocks the
    running loop: use it only where sync code has no other way to await. What the awaitable
    raises is raised here, in the caller's thread.

    Args:
        awaitable: The coroutine (or any awaitable) to run.

    Returns:
        What it returns.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_await(awaitable))
    box: dict[str, Any] = {}

    def runner() -> None:
        try:
            box["value"] = asyncio.run(_await(awaitable))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=runner, name="memguard-coroutine", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    value: T = box["value"]
    return value


async def _await(awaitable: Awaitable[T]) -> T:
    return await awaitable


def _resolve(value: Any) -> Any:
    return run_coroutine_blocking(value) if inspect.isawaitable(value) else value


class _Abandon:
    """Shared by a timed call and its thread: who finishes last reports the stall's end.

    A call given up before its thread began it (waiting for a slot) never starts and is no
    stall; one given up while it runs is a stall until it ends.
    """

    def __init__(self, stalls: StallTracker | None) -> None:
        self.stalls = stalls
        self.lock = threading.Lock()
        self.started = False
        self.finished = False
        self.abandoned = False

    def begin(self) -> bool:
        """Called by the thread before the call: False when the caller gave up already."""
        with self.lock:
            if self.abandoned:
                return False
            self.started = True
            return True

    def abandon(self) -> None:
        with self.lock:
            if self.finished or self.abandoned:
                return
            self.abandoned = True
            stalled = self.started
        if stalled and self.stalls is not None:
            self.stalls.stall_started()

    def finish(self) -> None:
        with self.lock:
            self.finished = True
            ended = self.abandoned and self.started
        if ended and self.stalls is not None:
            self.stalls.stall_ended()


def call_blocking(fn: Callable[..., Any], *args: Any, timeout: float | None = None,
                  stalls: StallTracker | None = None) -> Any:
    """Call `fn` (sync, or returning an awaitable) and wait at most `timeout` seconds."""
    if timeout is None:
        return _resolve(fn(*args))
    box: dict[str, Any] = {}
    done = threading.Event()
    state = _Abandon(stalls)

    def runner() -> None:
        try:
            if state.begin():
                box["value"] = _resolve(fn(*args))
        except BaseException as exc:  # noqa: BLE001
            box["error"] = exc
        finally:
            done.set()
            state.finish()

    threading.Thread(target=runner, name="memguard-call", daemon=True).start()
    if not done.wait(timeout):
        state.abandon()
        raise TimeoutError(f"no answer within {timeout:g} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def is_async_callable(fn: Any) -> bool:
    """A coroutine function, or an object whose `__call__` is one."""
    return inspect.iscoroutinefunction(fn) or (callable(fn) and inspect.iscoroutinefunction(type(fn).__call__))


async def call_async(fn: Callable[..., Any], *args: Any, timeout: float | None = None,
                     stalls: StallTracker | None = None, pool: DaemonPool | None = None) -> Any:
    """Await `fn(*args)`: coroutine functions on this loop, sync ones on a daemon thread.

    An awaitable returned by a sync `fn` is awaited here, on the caller's loop, within what is
    left of `timeout`. With `pool`, the thread is one of the pool's (a call given up while it
    waits there never runs); otherwise a new one.
    """
    if is_async_callable(fn):
        return await asyncio.wait_for(fn(*args), timeout)
    loop = asyncio.get_running_loop()
    started = loop.time()
    value = await _in_thread(loop, fn, args, timeout, stalls, pool)
    if inspect.isawaitable(value):
        left = None if timeout is None else max(0.0, timeout - (loop.time() - started))
        value = await asyncio.wait_for(_await(value), left)
    return value


async def _in_thread(loop: asyncio.AbstractEventLoop, fn: Callable[..., Any], args: tuple[Any, ...],
                     timeout: float | None, stalls: StallTracker | None, pool: DaemonPool | None) -> Any:
    future: asyncio.Future[Any] = loop.create_future()
    state = _Abandon(stalls)

    def settle(setter: Callable[[Any], None], value: Any) -> None:
        if not future.done():
            setter(value)

    def deliver(setter: Callable[[Any], None], value: Any) -> None:
        try:
            loop.call_soon_threadsafe(settle, setter, value)
        except RuntimeError:  # the caller gave up (timeout) and its loop has closed since
            pass

    def runner() -> None:
        try:
            if not state.begin():
                return  # the caller gave up while this waited in the pool: never run it
            value = fn(*args)
        except BaseException as exc:  # noqa: BLE001
            deliver(future.set_exception, exc)
        else:
            deliver(future.set_result, value)
        finally:
            state.finish()

    if pool is not None:
        pool.submit(runner)
    else:
        threading.Thread(target=runner, name="memguard-acall", daemon=True).start()
    try:
        return await asyncio.wait_for(future, timeout)
    except TimeoutError:
        state.abandon()
        raise


class Handoff(enum.Enum):
    """How an awaitable handed to another thread's event loop ended (see `await_on_loop`)."""

    DONE = "done"  # it ran there; the value is returned
    NOT_STARTED = "not-started"  # the loop stopped before it began: the caller still owns it, untouched
    INTERRUPTED = "interrupted"  # it began there and was cancelled: its work is lost


LOOP_POLL_S = 0.05
"""How often a thread waiting on another thread's loop checks that the loop still runs."""


def await_on_loop(awaitable: Awaitable[T], loop: asyncio.AbstractEventLoop, *,
                  owner: asyncio.Task[Any] | None = None) -> tuple[Handoff, T | None]:
    """Await `awaitable` on `loop` (running in another thread) and wait here for the outcome.

    The task made on `loop` runs in a new, empty `contextvars.Context`: nothing of the caller's
    context (framework callbacks, stream writers, run configuration) reaches it.

    `owner` is the task that handed the work over (the agent's run). When it has ended by the
    time the hand-over would start, the run is over and its loop may be closing (`asyncio.run`
    past its main task, in its cleanup steps): no task is made there, which a closing loop
    would destroy pending, and the awaitable comes back untouched (`NOT_STARTED`).

    Loops stop under their waiters: `asyncio.run` cancels what is pending on exit, and
    `run_until_complete` callers (`Runner.run_sync`) leave the loop open but stopped between runs,
    often with the task made for `awaitable` queued but not yet started. The loop's task and this
    thread race to claim `awaitable` when the task first runs: when this thread wins, the awaitable
    is untouched and the caller awaits it elsewhere (no second model call, no "never awaited"
    warning); the task, if one was made, is cancelled for when the loop runs again, and does
    nothing. Python >= 3.12 starts the task at once (eager start), which closes that window for
    loops that stop mid-iteration. The awaitable's own exceptions propagate.
    """
    claim = threading.Lock()
    outcome: concurrent.futures.Future[T] = concurrent.futures.Future()
    tasks: list[asyncio.Task[Any]] = []

    async def run() -> T | None:
        if not claim.acquire(blocking=False):
            return None  # this thread took `awaitable` back first
        try:
            value = await awaitable
        except asyncio.CancelledError:
            outcome.cancel()
            raise
        except BaseException as exc:  # noqa: BLE001 - it travels through `outcome` to the waiter
            outcome.set_exception(exc)
            return None
        outcome.set_result(value)
        return value

    def start() -> None:  # on the loop
        if owner is not None and owner.done():
            if claim.acquire(blocking=False):  # the run is over: hand it back rather than start it
                outcome.set_exception(_Declined())
            return
        context = contextvars.Context()
        if _EAGER:
            tasks.append(asyncio.Task(run(), loop=loop, context=context, **_EAGER))
        else:
            tasks.append(loop.create_task(run(), context=context))

    try:
        loop.call_soon_threadsafe(start)
    except RuntimeError:  # the loop closed meanwhile
        return Handoff.NOT_STARTED, None
    while True:
        try:
            return Handoff.DONE, outcome.result(timeout=LOOP_POLL_S)
        except _Declined:
            return Handoff.NOT_STARTED, None
        except concurrent.futures.CancelledError:  # cancelled mid-way (asyncio.run's shutdown)
            return Handoff.INTERRUPTED, None
        except concurrent.futures.TimeoutError:
            pass
        if loop.is_running() and not loop.is_closed():
            continue
        if claim.acquire(blocking=False):  # the loop stopped before the task began (if one was made)
            _cancel_soon(loop, tasks)
            return Handoff.NOT_STARTED, None
        if outcome.done():
            continue
        _cancel_soon(loop, tasks)  # it began there and the loop stopped under it
        return Handoff.INTERRUPTED, None


class _Declined(Exception):
    """The loop was shutting down when the hand-over came: nothing was started there."""


# Python 3.12+: a task's first step runs when it is made, not on the loop's next iteration.
_EAGER: dict[str, Any] = {"eager_start": True} if sys.version_info >= (3, 12) else {}


def _cancel_soon(loop: asyncio.AbstractEventLoop, tasks: list[asyncio.Task[Any]]) -> None:
    try:
        for task in tasks:
            loop.call_soon_threadsafe(task.cancel)
    except RuntimeError:  # the loop closed
        pass
