"""A bound on in-flight work shared by threads and event loops: the scorer's, not the call's.

`asyncio.Semaphore` belongs to one event loop and `threading.Semaphore` blocks the loop that waits
on it, so neither can bound one `RemoteMemRM`'s requests across sync callers (threads) and async
callers (tasks, in one loop or several) at once. `SharedLimit` can: a slot is a counter under a
lock, a waiter is a thread's `Event` or a loop's `Future`, and a released slot is handed to the
oldest waiter directly (first come, first served; never more than `limit` holders).
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque

__all__ = ["SharedLimit"]

_Waiter = threading.Event | tuple[asyncio.AbstractEventLoop, "asyncio.Future[None]"]


class SharedLimit:
    """At most `limit` holders at once, whether they wait with `acquire` or `await aacquire`.

    Args:
        limit: How many may hold a slot at the same time (>= 1).
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        self.limit = limit
        self._lock = threading.Lock()
        self._held = 0
        self._waiters: deque[_Waiter] = deque()

    @property
    def held(self) -> int:
        """Slots held now."""
        return self._held

    def _take(self) -> bool:
        """Take a free slot if no one is queued before us (call under the lock)."""
        if self._held < self.limit and not self._waiters:
            self._held += 1
            return True
        return False

    def acquire(self) -> None:
        """Block this thread until a slot is free, and take it."""
        with self._lock:
            if self._take():
                return
            event = threading.Event()
            self._waiters.append(event)
        event.wait()  # `release` hands its slot over, then sets the event

    async def aacquire(self) -> None:
        """Wait (without blocking the loop) until a slot is free, and take it.

        Raises:
            asyncio.CancelledError: Cancelled while waiting; no slot is held then.
        """
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._take():
                return
            future: asyncio.Future[None] = loop.create_future()
            waiter = (loop, future)
            self._waiters.append(waiter)
        try:
            await future
        except asyncio.CancelledError:
            with self._lock:
                queued = waiter in self._waiters
                if queued:
                    self._waiters.remove(waiter)
            if not queued and future.done() and not future.cancelled():
                self.release()  # the slot reached us as we were cancelled: pass it on
            # (a hand-over still on its way finds the future cancelled and passes the slot on)
            raise

    def release(self) -> None:
        """Give a slot back: to the oldest waiter if there is one, else to the pool."""
        with self._lock:
            while self._waiters:
                waiter = self._waiters.popleft()
                if isinstance(waiter, threading.Event):
                    waiter.set()
                    return
                loop, future = waiter
                try:
                    loop.call_soon_threadsafe(self._hand_over, future)
                except RuntimeError:  # its loop is closed: nobody is waiting there any more
                    continue
                return
            self._held -= 1

    def _hand_over(self, future: asyncio.Future[None]) -> None:
        if future.cancelled():
            self.release()
        else:
            future.set_result(None)
