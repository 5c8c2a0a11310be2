"""One thread owns the model; many agents' scoring requests are micro-batched onto it.

Agents in one process (threads, asyncio tasks, or both) call `score`/`ascore` on a shared
`ScoringWorker`. Requests that arrive within `max_wait_ms` of each other are scored together:
`MemRM` groups the candidates of one event by shared prefix and pads only short prompts of
similar length, so long prompts still run maskless on SDPA's fused kernels. Async callers await
a future resolved from the worker thread, so the event loop never runs a forward pass.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from memguard.scoring.base import Score, ScorerIdentity

__all__ = ["ScoringWorker"]

_STOP = object()


@dataclass
class _Request:
    prompts: list[str]
    future: Future[list[Score]] = field(default_factory=Future)


class ScoringWorker:
    """A `Scorer` that serialises all forwards on one thread and micro-batches callers.

    Many agents in one process share one model this way, and the event loop never runs a
    forward pass. The thread starts with the first request. Use as a context manager or call
    `close()` to stop it.

    Args:
        memrm: The in-process `MemRM` to run (anything with its ``fit_prompts`` and
            ``score_fitted``).
        max_batch: Prompts scored together at most.
        max_wait_ms: How long the worker waits for more requests after the first one arrives
            (0: take only what is already queued).
        name: The thread's name.

    Raises:
        ValueError: `max_batch` < 1 or `max_wait_ms` < 0.
        TypeError: `memrm` is not an in-process MemRM (a remote scorer has nothing to batch).
    """

    def __init__(self, memrm: Any, *, max_batch: int = 16, max_wait_ms: float = 2.0,
                 name: str = "memguard-scoring") -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        for needed in ("fit_prompts", "score_fitted"):
            if not callable(getattr(memrm, needed, None)):
                raise TypeError(f"ScoringWorker needs an in-process MemRM (missing {needed}())")
        self.memrm = memrm
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._name = name
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._closed = False
        self.batches = 0
        """Forward batches run so far."""
        self.requests = 0
        """Requests scored so far (several may share one batch)."""

    # --------------------------------------------------------------------- Scorer protocol

    @property
    def identity(self) -> ScorerIdentity:
        """The weights of the model it runs (`MemRM.identity`)."""
        identity: ScorerIdentity = self.memrm.identity
        return identity

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` in the model's tokenizer (on the calling thread: no forward pass).

        Args:
            text: Any text.

        Returns:
            The token count.
        """
        return int(self.memrm.count_tokens(text))

    def submit(self, prompts: list[str]) -> Future[list[Score]]:
        """Queue `prompts` without waiting for them.

        Args:
            prompts: Rendered MemRM prompts.

        Returns:
            A future that resolves to one `Score` per prompt, in order (at once for an empty
            list), or to the error that scoring raised.

        Raises:
            TypeError: `prompts` is a single string, or holds a non-string.
            ValueError: A prompt is empty.
            RuntimeError: The worker is closed.
        """
        _check_prompts(prompts)
        request = _Request(list(prompts))
        if not request.prompts:
            request.future.set_result([])
            return request.future
        with self._start_lock:  # queued under the lock `close` takes: nothing lands after _STOP
            if self._closed:
                raise RuntimeError("ScoringWorker is closed")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._queue.put(request)
        return request.future

    def score(self, prompts: list[str], timeout: float | None = None) -> list[Score]:
        """Score `prompts` on the worker thread and wait for the result.

        Args:
            prompts: Rendered MemRM prompts.
            timeout: Seconds to wait at most (None: no limit).

        Returns:
            One `Score` per prompt, in order.

        Raises:
            TypeError: `prompts` is a single string, or holds a non-string.
            ValueError: A prompt is empty.
            RuntimeError: The worker is closed.
            TimeoutError: No result in time. A request still queued is cancelled (the worker
                skips it: no forward runs for a caller that stopped waiting); one already
                running finishes, and its result is dropped.
        """
        future = self.submit(prompts)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise

    async def ascore(self, prompts: list[str]) -> list[Score]:
        """Await the scores; the event loop stays free while the worker thread runs the model.

        Args:
            prompts: Rendered MemRM prompts.

        Returns:
            One `Score` per prompt, in order.

        Raises:
            TypeError: `prompts` is a single string, or holds a non-string.
            ValueError: A prompt is empty.
            RuntimeError: The worker is closed.
        """
        return await asyncio.wrap_future(self.submit(prompts))

    # --------------------------------------------------------------------- lifecycle

    def close(self, timeout: float | None = 30.0) -> None:
        """Finish queued requests, then stop the thread. Later submissions raise.

        Submissions and the stop marker are queued under one lock, so no request can land behind
        the marker; any left once the thread has ended fail with `RuntimeError`, never hang.
        Calling it again does nothing.

        Args:
            timeout: Seconds to wait for the thread (None: until it ends). A thread still
                scoring then serves what is queued and stops on its own.
        """
        with self._start_lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
            if thread is not None:
                self._queue.put(_STOP)
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():  # still scoring: it serves what is queued, then stops
                return
        self._fail_queued()

    def _fail_queued(self) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, _Request) and item.future.set_running_or_notify_cancel():
                item.future.set_exception(RuntimeError("ScoringWorker closed before this request was scored"))

    def __enter__(self) -> ScoringWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --------------------------------------------------------------------- the worker thread

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                return
            batch, size = [first], len(first.prompts)
            deadline = time.monotonic() + self.max_wait
            while size < self.max_batch:
                try:
                    left = deadline - time.monotonic()
                    item = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
                batch.append(item)
                size += len(item.prompts)
            self._score_batch(batch)

    def _score_batch(self, batch: list[_Request]) -> None:
        live = [r for r in batch if r.future.set_running_or_notify_cancel()]
        fitted: list[tuple[_Request, list[tuple[list[int], int]]]] = []
        for request in live:
            try:
                fitted.append((request, self.memrm.fit_prompts(request.prompts)))
            except BaseException as exc:  # noqa: BLE001 - a bad request fails alone
                request.future.set_exception(exc)
        if not fitted:
            return
        self.batches += 1
        self.requests += len(fitted)
        seqs = [ids for _, fit in fitted for ids, _ in fit]
        try:
            p_harmful = self.memrm.score_fitted(seqs, batch_size=self.max_batch)
        except BaseException as exc:  # noqa: BLE001 - OOM and friends go to every waiting caller
            for request, _ in fitted:
                request.future.set_exception(exc)
            return
        at = 0
        for request, fit in fitted:
            scores = [
                Score(p_harmful=p, n_tokens=len(ids), n_truncated=cut)
                for p, (ids, cut) in zip(p_harmful[at : at + len(fit)], fit, strict=True)
            ]
            at += len(fit)
            request.future.set_result(scores)


def _check_prompts(prompts: Any) -> None:
    """Fail in the caller's thread, not in everyone's batch."""
    if isinstance(prompts, str) or not isinstance(prompts, (list, tuple)):
        raise TypeError("score() takes a list of prompts, not a single string")
    for prompt in prompts:
        if not isinstance(prompt, str):
            raise TypeError(f"prompts must be strings, got {type(prompt).__name__}")
        if not prompt:
            raise ValueError("cannot score an empty prompt")
