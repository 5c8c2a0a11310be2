"""Where decisions go: JSONL files, Python logging, OpenTelemetry — and the audit worker.

Audit logs hold user conversations, so files are created private (0600), every sink can redact
text to hashes and sizes, and a JSONL line is flushed as soon as it is written (a crash loses at
most the line being written). The worker keeps audit-mode scoring off the agent's path: a bounded
queue that drops (and counts) rather than blocks, drained at exit.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import queue
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from memguard.events import Decision
from memguard.text import safe_text  # a lone surrogate is written as U+FFFD: the line stays UTF-8

__all__ = ["AuditWorker", "JSONLSink", "LoggingSink", "OpenTelemetrySink", "Sink", "emit_all"]

logger = logging.getLogger("memguard")


@runtime_checkable
class Sink(Protocol):
    """Receives every Decision a guard publishes.

    Any object with these two methods is a sink (no subclassing needed). An exception a sink
    raises never reaches the agent: the guard logs it (by type only) and goes on. A sink may
    also have ``attach(stats)``: the guard calls it once with its `Guard.stats`.
    """

    def emit(self, decision: Decision) -> None:
        """Record one decision.

        Called from whichever thread published it (the agent's, a guard thread, the audit
        worker), so it must be thread-safe.

        Args:
            decision: The decision to record.
        """
        ...

    def close(self) -> None:
        """Release what the sink holds; the guard calls it once, from `Guard.close`."""
        ...


def emit_all(sinks: Iterable[Sink], decision: Decision) -> None:
    for sink in sinks:
        try:
            sink.emit(decision)
        except Exception as exc:  # noqa: BLE001 - type only: a message may quote the conversation
            logger.error("memguard: sink %s failed (%s); decision %s not recorded there",
                         type(sink).__name__, type(exc).__name__, decision.event_id)


class JSONLSink:
    """One JSON line per decision, flushed per line, in a file only its owner can read.

    Each line is `Decision.to_record`. The file is created 0600, and an existing one is made
    0600. Each line is one ``write`` to a file opened for appending, so lines from several
    threads never interleave, and a crash loses at most the line being written. `memguard
    report` turns the file into an HTML report.

    Args:
        path: The JSONL file (its folder is created if missing).
        redact: Store hashes and sizes instead of any text (actions, messages, quoted
            exception texts).
        include_messages: Add the chosen context to each line (full text, or fingerprints
            when redacting).
        max_bytes: Rotate the file when the next line would take it past this size
            (``audit.jsonl`` → ``audit.jsonl.1`` …); None never rotates.
        backups: Rotated files kept (0: the old file is deleted).
        fsync: Also ``fsync`` after each line, so a line survives a power loss (slower).

    Raises:
        OSError: The file cannot be created or opened.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        redact: bool = False,
        include_messages: bool = False,
        max_bytes: int | None = None,
        backups: int = 5,
        fsync: bool = False,
    ) -> None:
        self.path = Path(path)
        self.redact = redact
        self.include_messages = include_messages
        self.max_bytes = max_bytes
        self.backups = backups
        self.fsync = fsync
        self.written = 0
        """Lines written so far."""
        self._lock = threading.Lock()
        self._closed = False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = self._open()

    def _open(self) -> int:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.fchmod(fd, 0o600)  # an existing file keeps whatever mode it had: make it private
        return fd

    def emit(self, decision: Decision) -> None:
        """Append the decision as one JSON line (rotating first when `max_bytes` says so).

        A failed rotation is logged and the line still goes to `path`.

        Args:
            decision: The decision to write.

        Raises:
            RuntimeError: The sink is closed.
            OSError: The line cannot be written.
        """
        record = decision.to_record(redact=self.redact, include_messages=self.include_messages)
        line = (safe_text(json.dumps(record, ensure_ascii=False, default=str)) + "\n").encode("utf-8")
        with self._lock:
            if self._closed:
                raise RuntimeError(f"JSONLSink({self.path}) is closed")
            if self._fd < 0:  # a failed rotation left no file open: try again before writing
                self._fd = self._open()
            if self.max_bytes and os.fstat(self._fd).st_size + len(line) > self.max_bytes:
                self._rotate()
            os.write(self._fd, line)  # one write per line, O_APPEND: lines never interleave
            if self.fsync:
                os.fsync(self._fd)
            self.written += 1

    def _rotate(self) -> None:
        """Shift the backups and reopen `path`.

        A failed rename is logged and the line still goes to `path` (late rotation beats a lost
        line). A failed reopen leaves the sink without a file (`_fd = -1`, retried at the next
        line), never holding a stale descriptor number the process may have reused elsewhere.
        """
        fd, self._fd = self._fd, -1
        os.close(fd)
        try:
            for index in range(self.backups - 1, 0, -1):
                older = self.path.with_name(f"{self.path.name}.{index}")
                if older.exists():
                    older.replace(self.path.with_name(f"{self.path.name}.{index + 1}"))
            if self.backups > 0:
                self.path.replace(self.path.with_name(f"{self.path.name}.1"))
            else:
                self.path.unlink(missing_ok=True)
        except OSError as exc:
            logger.error("memguard: rotating %s failed (%s); appending to it unrotated",
                         self.path.name, type(exc).__name__)
        self._fd = self._open()

    def close(self) -> None:
        """Close the file; later `emit` calls raise."""
        with self._lock:
            self._closed = True
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


class LoggingSink:
    """A one-line summary per decision on a standard `logging` logger (no conversation text).

    The line shows verdict, step, strategies, P(HARMFUL) and time; the redacted record
    (`Decision.to_record` with ``redact=True``) rides along as ``extra["memguard_decision"]``
    for structured log handlers.

    Args:
        logger_name: The logger to write to.
        level: The level of each line.
    """

    def __init__(self, logger_name: str = "memguard.decisions", level: int = logging.INFO) -> None:
        self.logger = logging.getLogger(logger_name)
        self.level = level

    def emit(self, decision: Decision) -> None:
        """Log one line for the decision.

        Args:
            decision: The decision to log.
        """
        p = decision.p_harmful
        self.logger.log(
            self.level,
            "memguard %s step=%s strategy=%s chosen=%s p_harmful=%s total=%.3fs%s",
            decision.verdict.value, decision.step, decision.proposed_strategy, decision.strategy,
            "n/a" if p is None else f"{p:.3f}", decision.timings.total,
            f" error={decision.error}" if decision.error else "",
            extra={"memguard_decision": decision.to_record(redact=True)},
        )

    def close(self) -> None:
        """Nothing to release: the logger belongs to `logging`."""
        return None


class OpenTelemetrySink:
    """One span per decision, and the guard's health counters as metrics (extra: ``otel``).

    Spans carry verdict, scores and timings as attributes. Metrics are the very figures of
    `Guard.stats()`, observed at export time: ``memguard.<counter>`` (monotonic counters such as
    ``memguard.veto``, ``memguard.errors``, ``memguard.timeouts``, ``memguard.audit_dropped``) and
    gauges (``memguard.stalled_scorer_calls``, ``memguard.latency_p99_ms``, ...). Each guard the
    sink is attached to reports under its own ``memguard.guard`` attribute.

    Args:
        tracer_provider: The tracer provider; None uses OpenTelemetry's global one.
        meter_provider: The meter provider; None uses OpenTelemetry's global one.
        name: The instrumentation scope's name.

    Raises:
        ImportError: OpenTelemetry is not installed (``pip install 'memguard[otel]'``).
    """

    def __init__(self, tracer_provider: Any = None, *, meter_provider: Any = None, name: str = "memguard") -> None:
        try:
            from opentelemetry import metrics, trace
        except ImportError as exc:  # pragma: no cover - exercised only without the extra
            raise ImportError("OpenTelemetrySink needs the otel extra: pip install 'memguard[otel]'") from exc
        self._tracer = trace.get_tracer(name, tracer_provider=tracer_provider)
        self._meter = metrics.get_meter(name, meter_provider=meter_provider)
        self._sources: list[Callable[[], dict[str, Any]]] = []
        self._instruments_made = False

    def attach(self, stats: Callable[[], dict[str, Any]]) -> None:
        """Export a guard's health counters as metrics; `Guard` calls this itself.

        The instruments are created with the first guard; each later guard adds its counters
        under the next ``memguard.guard`` index.

        Args:
            stats: The guard's `Guard.stats`, read at each export.
        """
        self._sources.append(stats)
        if self._instruments_made:
            return
        self._instruments_made = True
        from memguard.stats import GuardStats

        for counter in GuardStats.COUNTERS:
            self._meter.create_observable_counter(f"memguard.{counter}", callbacks=[self._observe(counter)])
        for gauge, unit in (("stalled_scorer_calls", "1"), ("latency_p50_ms", "ms"), ("latency_p90_ms", "ms"),
                            ("latency_p99_ms", "ms"), ("latency_max_ms", "ms")):
            self._meter.create_observable_gauge(f"memguard.{gauge}", callbacks=[self._observe(gauge)], unit=unit)

    def _observe(self, key: str) -> Callable[[Any], list[Any]]:
        from opentelemetry.metrics import Observation

        def callback(options: Any) -> list[Any]:
            return [Observation(source()[key], {"memguard.guard": index}) for index, source in enumerate(self._sources)]

        return callback

    def emit(self, decision: Decision) -> None:
        """Record the decision as one ``memguard.decision`` span (no conversation text).

        Args:
            decision: The decision to record.
        """
        attributes: dict[str, Any] = {
            "memguard.verdict": decision.verdict.value,
            "memguard.mode": decision.mode,
            "memguard.step": decision.step,
            "memguard.conversation_id": decision.conversation_id,
            "memguard.proposed_strategy": decision.proposed_strategy,
            "memguard.chosen_strategy": decision.strategy or "",
            "memguard.candidates": len(decision.candidates),
            "memguard.timing.total_s": decision.timings.total,
            "memguard.timing.score_s": decision.timings.score,
            "memguard.timing.probe_s": decision.timings.probe,
            "memguard.truncated_tokens": decision.truncated_tokens,
        }
        if decision.p_harmful is not None:
            attributes["memguard.p_harmful"] = decision.p_harmful
        if decision.error:
            attributes["memguard.error"] = decision.error
        with self._tracer.start_as_current_span("memguard.decision", attributes=attributes):
            pass

    def close(self) -> None:
        """Nothing to release: the providers belong to the application, which shuts them down."""
        return None


_live_workers: weakref.WeakSet[AuditWorker] = weakref.WeakSet()
_EXIT_DRAIN_S = 10.0


@atexit.register
def _drain_at_exit() -> None:
    for worker in list(_live_workers):
        worker.stop(timeout=_EXIT_DRAIN_S)


_STOP = object()


class AuditWorker:
    """A daemon thread running audit jobs from a bounded queue; `submit` never blocks.

    The thread starts with the first job and holds no reference to whoever submits jobs (a job
    drops its own when it ends), so a guard dropped without `close()` can be collected, and its
    finalizer (`abandon`) ends the thread. A job may have ``drop(reason)``: called instead of
    running it when the worker stops before reaching it. `notify` queues small follow-ups
    (publishing a dropped job's decision) that run on the worker, never on the submitter's path.
    Jobs still queued at interpreter exit get up to 10 seconds to finish.

    Args:
        maxsize: Jobs waiting at most; `submit` refuses more.
        name: The thread's name.
    """

    def __init__(self, maxsize: int = 1024, *, name: str = "memguard-audit") -> None:
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=maxsize)
        self._notes: deque[Callable[[], None]] = deque()
        self._name = name
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._busy = 0  # jobs taken from the queue and still running
        self.dropped = 0
        """Jobs refused (queue full, worker stopped) or dropped at `stop`."""
        self.completed = 0
        """Jobs that ran to the end."""
        self.failed = 0
        """Jobs that raised (logged by type, never passed on)."""
        _live_workers.add(self)

    @property
    def queued(self) -> int:
        """Jobs waiting or running (approximate: the queue moves while it is read)."""
        return self._queue.qsize() + self._busy

    @property
    def started(self) -> bool:
        """Whether the thread was ever started (it starts with the first job)."""
        return self._thread is not None

    def idle(self) -> bool:
        """Whether nothing is queued, running, or left to notify.

        Returns:
            True when the worker has no work left.
        """
        return self._queue.unfinished_tasks == 0 and not self._notes

    def submit(self, job: Callable[[], None]) -> bool:
        """Queue `job` without blocking; the thread starts with the first job.

        Args:
            job: A callable of no arguments. It may also have ``drop(reason)``, called instead
                when the worker stops before reaching it.

        Returns:
            True when queued; False (counted in `dropped`) when the queue is full or the worker
            stopped.
        """
        start = None
        with self._lock:
            if self._stopped:
                self.dropped += 1
                return False
            if self._thread is None:
                self._thread = start = threading.Thread(
                    target=_run_jobs, args=(self._queue, self._notes, self._counts), name=self._name, daemon=True
                )
            try:
                self._queue.put_nowait(job)
                accepted = True
            except queue.Full:
                self.dropped += 1
                accepted = False
        if start is not None:  # outside the lock: other submitters need not wait for the thread to start
            start.start()
        return accepted

    def notify(self, note: Callable[[], None]) -> None:
        """Run `note` on the worker before its next job (or at `stop`), not on this thread.

        When no thread runs (none started yet, or stopped), `note` runs here at once: nothing
        else would run it.

        Args:
            note: A callable of no arguments; an exception it raises is logged.
        """
        self._notes.append(note)
        with self._lock:
            idle = self._thread is None or self._stopped
        if idle:  # no thread to run it: run it here (nothing else would)
            _run_notes(self._notes)
        else:
            try:
                self._queue.put_nowait(_WAKE)
            except queue.Full:  # the worker is busy: it runs the notes before its next job
                pass

    def _counts(self, outcome: str) -> None:
        if outcome == "busy":
            self._busy += 1
            return
        self._busy -= 1
        if outcome == "completed":
            self.completed += 1
        elif outcome == "failed":
            self.failed += 1

    def join(self, timeout: float | None = None) -> bool:
        """Wait for queued jobs to finish.

        Args:
            timeout: Seconds to wait at most (None: until done).

        Returns:
            True when the queue drained in time.
        """
        if self._thread is None:
            _run_notes(self._notes)
            return True
        done = threading.Event()

        def waiter() -> None:
            self._queue.join()
            done.set()

        threading.Thread(target=waiter, name=f"{self._name}-join", daemon=True).start()
        return done.wait(timeout)

    def stop(self, timeout: float | None = 30.0, *, reason: str = "the guard closed before the job ran") -> bool:
        """Finish queued jobs within `timeout`, drop the rest (``drop(reason)``), end the thread.

        Later submissions are refused. Calling it again does nothing.

        Args:
            timeout: Seconds to let queued jobs run (None: until done).
            reason: Passed to each dropped job's ``drop``.

        Returns:
            True when every job ran (also on a second call).
        """
        with self._lock:
            if self._stopped:
                return True
            self._stopped = True
            thread = self._thread
        drained = self.join(timeout) if thread is not None else True
        left = 0
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            try:
                if job is not _STOP and job is not _WAKE:
                    left += 1
                    drop = getattr(job, "drop", None)
                    if callable(drop):
                        try:
                            drop(reason)
                        except Exception as exc:  # noqa: BLE001 - never raise out of close()
                            logger.error("memguard: dropping an audit job failed (%s)", type(exc).__name__)
            finally:
                self._queue.task_done()
        self.dropped += left
        _run_notes(self._notes)
        if thread is not None:
            try:
                self._queue.put_nowait(_STOP)
            except queue.Full:  # pragma: no cover - just emptied
                pass
            if thread is not threading.current_thread() and thread.ident is not None:  # started
                thread.join(timeout=1.0)
        return drained and left == 0

    def abandon(self) -> None:
        """End the thread without waiting (its owner is gone, so nothing is left to run)."""
        with self._lock:
            self._stopped = True
            thread = self._thread
        if thread is not None:
            try:
                self._queue.put_nowait(_STOP)
            except queue.Full:
                pass


_WAKE = object()


def _run_notes(notes: deque[Callable[[], None]]) -> None:
    while True:
        try:
            note = notes.popleft()
        except IndexError:
            return
        try:
            note()
        except Exception as exc:  # noqa: BLE001 - an audit follow-up never reaches the agent
            logger.error("memguard: audit follow-up failed (%s)", type(exc).__name__)


def _run_jobs(jobs: queue.Queue[Any], notes: deque[Callable[[], None]], counts: Callable[[str], None]) -> None:
    """The worker thread: holds the queue, never the guard (a finished job is let go at once)."""
    while True:
        job = jobs.get()
        try:
            _run_notes(notes)
            if job is _STOP:
                return
            if job is _WAKE:
                continue
            counts("busy")
            try:
                job()
            except Exception as exc:  # noqa: BLE001 - an audit failure never reaches the agent
                counts("failed")
                logger.error("memguard: audit job failed (%s)", type(exc).__name__)
            else:
                counts("completed")
            job = None  # let the job (and the guard it holds) go before waiting for the next one
            _run_notes(notes)  # follow-ups queued while it ran (the queue was full: no wake-up came)
        finally:
            job = None
            jobs.task_done()
